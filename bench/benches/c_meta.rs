//! Small-file metadata through the C ABI (issue 18, part 0): a C program
//! (bench/c/meta.c, built with `gcc -O2` against the release `libeddy.a`)
//! creates and closes, stats and deletes empty files against a local
//! cluster (master + worker, durable `sync = "always"`), with one thread
//! and with 16 sharing one client. It reports operations per second, the
//! client process's CPU per operation and, for one thread, median
//! latencies. The null-RPC and metastore-commit baselines the targets name
//! are in `--bench master -- one_client`.
//!
//! Run: `cargo build --release -p eddy-ffi && cargo bench -p eddy-bench --bench c_meta`
//! (the library is looked for under `CARGO_TARGET_DIR` when that is set)
//! (`EDDY_BENCH_FILES` changes the files per phase from 10,000).

use std::process::Command;

fn main() {
    if eddy_bench::handled_before_main() {
        return;
    }
    let files: u64 = eddy_bench::env_u64("EDDY_BENCH_FILES", 10_000);
    let dir = tempfile::tempdir().unwrap();
    let exe = eddy_bench::build_c_bench("meta", dir.path());
    let (mut cluster, master) = eddy_bench::spawn_cluster(dir.path());
    println!("C ABI metadata: {files} empty files per phase, durable master");
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
            let p50 = get(&format!("{phase}_p50_us"))
                .map(|v| format!(", p50 {v:.0} us"))
                .unwrap_or_default();
            println!(
                "{threads:>2} thread(s) {phase:<6}: {:>7.0} ops/s, client CPU {:>5.1} us/op{p50}",
                get(&format!("{phase}_ops_per_s")).unwrap_or(0.0),
                get(&format!("{phase}_cpu_us")).unwrap_or(0.0),
            );
        }
    }
    drop(cluster.stdin.take());
    cluster.wait().unwrap();
}
