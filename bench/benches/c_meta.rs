//! Small-file metadata through the C ABI (issue 18, part 0): a C program
//! (bench/c/meta.c, built with `gcc -O2` against the release `libeddy.a`)
//! creates and closes, stats and deletes empty files against a local
//! cluster (master + worker, durable `sync = "always"`), with one thread
//! and with 16 sharing one client. It reports operations per second, the
//! client process's CPU per operation and, for one thread, median
//! latencies. The two baselines the targets name are measured in the same
//! run, against the same cluster and disk: a null RPC (ListMounts, one at a
//! time from a current-thread runtime, as the C ABI calls) and one durable
//! metastore transaction of what a create + complete writes. It prints
//! create+close p50 against one commit plus two null RPCs (target at most
//! 1) and stat p50 against one null RPC (target at most 1.3).
//!
//! Run: `cargo build --release -p eddy-ffi && cargo bench -p eddy-bench --bench c_meta`
//! (the library is looked for under `CARGO_TARGET_DIR` when that is set)
//! (`EDDY_BENCH_FILES` changes the files per phase from 10,000).

use std::process::Command;
use std::time::Instant;

fn main() {
    if eddy_bench::handled_before_main() {
        return;
    }
    let files: u64 = eddy_bench::env_u64("EDDY_BENCH_FILES", 10_000);
    let dir = tempfile::tempdir().unwrap();
    let exe = eddy_bench::build_c_bench("meta", dir.path());
    let (mut cluster, master) = eddy_bench::spawn_cluster(dir.path());
    println!("C ABI metadata: {files} empty files per phase, durable master");
    let mut p50 = std::collections::HashMap::new();
    for threads in [1u32, 16] {
        let o = Command::new(&exe)
            .args([&master, &files.to_string(), &threads.to_string()])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let out = String::from_utf8_lossy(&o.stdout);
        let get = |k: &str| {
            out.lines()
                .find_map(|l| l.strip_prefix(k)?.trim().parse::<f64>().ok())
        };
        for phase in ["create", "stat", "delete"] {
            let median = get(&format!("{phase}_p50_us"));
            if let Some(v) = median {
                p50.insert(phase, v);
            }
            let median = median
                .map(|v| format!(", p50 {v:.0} us"))
                .unwrap_or_default();
            println!(
                "{threads:>2} thread(s) {phase:<6}: {:>7.0} ops/s, client CPU {:>5.1} us/op{median}",
                get(&format!("{phase}_ops_per_s")).unwrap_or(0.0),
                get(&format!("{phase}_cpu_us")).unwrap_or(0.0),
            );
        }
    }
    let (null, commit) = baselines(&master, dir.path());
    println!("baselines: null RPC p50 {null:.0} us, metastore commit p50 {commit:.0} us");
    let (create, stat) = (p50["create"], p50["stat"]);
    println!(
        "create+close p50 / (commit + 2 null RPCs) = {:.2} (target <= 1); stat p50 / null RPC = {:.2} (target <= 1.3)",
        create / (commit + 2.0 * null),
        stat / null
    );
    drop(cluster.stdin.take());
    cluster.wait().unwrap();
}

/// Medians, in microseconds, of a null RPC to `master` and of one durable
/// metastore transaction (a create + complete's three records) in a fresh
/// metastore under `dir`.
fn baselines(master: &str, dir: &std::path::Path) -> (f64, f64) {
    use eddy_master::metastore::{MetaOp, Metastore, SyncPolicy};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    rt.block_on(async {
        let c = eddy_client::MasterClient::connect(master).await.unwrap();
        let mut null = Vec::new();
        for _ in 0..2_000 {
            let t = Instant::now();
            c.list_mounts().await.unwrap();
            null.push(t.elapsed().as_secs_f64() * 1e6);
        }
        let (store, _) =
            Metastore::open(&dir.join("baseline-meta"), SyncPolicy::default()).unwrap();
        let record = vec![7u8; 96];
        let put = |id: u64| MetaOp::PutInode {
            id,
            record: record.clone(),
        };
        let mut commit = Vec::new();
        for id in 2..502 {
            let t = Instant::now();
            store.submit(vec![put(id), put(1), put(id)]).await.unwrap();
            commit.push(t.elapsed().as_secs_f64() * 1e6);
        }
        (median(null), median(commit))
    })
}
