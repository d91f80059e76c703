//! Small-file metadata through the C ABI (issue 18, part 0): a C program
//! (bench/c/meta.c, built with `gcc -O2` against the release `libeddy.a`)
//! creates and closes, stats and deletes empty files against a local
//! cluster (master + worker, durable `sync = "always"`), with one thread
//! and with 16 sharing one client. It reports operations per second, the
//! client process's CPU per operation and, for one thread, median
//! latencies. The two baselines the targets name are measured in the same
//! run, against the same cluster and disk: a null RPC (ListMounts, one at a
//! time from a current-thread runtime, as the C ABI calls) and one durable
//! metastore transaction of what a create + complete writes. This host's
//! speed drifts by tens of percent within a minute, so the one-thread run
//! is split into rounds, each measured right after its own baselines, and
//! the ratios are per round: create+close p50 against one commit plus two
//! null RPCs (target at most 1), stat p50 against one null RPC (target at
//! most 1.3); it prints their medians.
//!
//! Run: `cargo build --release -p eddy-ffi && cargo bench -p eddy-bench --bench c_meta`
//! (the library is looked for under `CARGO_TARGET_DIR` when that is set)
//! (`EDDY_BENCH_FILES` changes the files per phase from 10,000).

use std::collections::HashMap;
use std::process::Command;
use std::time::Instant;

fn main() {
    if eddy_bench::handled_before_main() {
        return;
    }
    let files: u64 = eddy_bench::env_u64("EDDY_BENCH_FILES", 10_000);
    const ROUNDS: u64 = 5;
    let dir = tempfile::tempdir().unwrap();
    let exe = eddy_bench::build_c_bench("meta", dir.path());
    let (mut cluster, master) = eddy_bench::spawn_cluster(dir.path());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let base = rt.block_on(Baselines::start(&master, dir.path()));
    println!("C ABI metadata: {files} empty files per phase, durable master");
    let (mut create_ratio, mut stat_ratio, mut null_cpu) = (Vec::new(), Vec::new(), Vec::new());
    let mut rounds: Vec<Phases> = Vec::new();
    for _ in 0..ROUNDS {
        let (null, commit, cpu) = rt.block_on(base.measure());
        null_cpu.push(cpu);
        let r = run(&exe, &master, files / ROUNDS, 1);
        create_ratio.push(r.p50["create"] / (commit + 2.0 * null));
        stat_ratio.push(r.p50["stat"] / null);
        println!(
            "  round: null RPC p50 {null:.0} us, commit p50 {commit:.0} us; create+close p50 {:.0} us, stat p50 {:.0} us",
            r.p50["create"], r.p50["stat"]
        );
        rounds.push(r);
    }
    for phase in ["create", "stat", "delete"] {
        let each = |f: &dyn Fn(&Phases) -> f64| median(rounds.iter().map(f).collect());
        println!(
            " 1 thread(s) {phase:<6}: {:>7.0} ops/s, client CPU {:>5.1} us/op, p50 {:.0} us (medians of {ROUNDS} rounds)",
            each(&|r| r.ops[phase]),
            each(&|r| r.cpu[phase]),
            each(&|r| r.p50[phase]),
        );
    }
    let r = run(&exe, &master, files, 16);
    for phase in ["create", "stat", "delete"] {
        println!(
            "16 thread(s) {phase:<6}: {:>7.0} ops/s, client CPU {:>5.1} us/op",
            r.ops[phase], r.cpu[phase]
        );
    }
    println!(
        "a null RPC from a Rust client costs it {:.1} us of CPU (median of rounds): the floor of any call's",
        median(null_cpu)
    );
    println!(
        "create+close p50 / (commit + 2 null RPCs) = {:.2} (target <= 1); stat p50 / null RPC = {:.2} (target <= 1.3); medians of per-round ratios",
        median(create_ratio),
        median(stat_ratio)
    );
    drop(base);
    drop(cluster.stdin.take());
    cluster.wait().unwrap();
}

/// What one run of the C program printed, by phase.
#[derive(Default)]
struct Phases {
    ops: HashMap<&'static str, f64>,
    cpu: HashMap<&'static str, f64>,
    p50: HashMap<&'static str, f64>,
}

fn run(exe: &std::path::Path, master: &str, files: u64, threads: u32) -> Phases {
    let o = Command::new(exe)
        .args([master, &files.to_string(), &threads.to_string()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    let get = |k: String| {
        out.lines()
            .find_map(|l| l.strip_prefix(k.as_str())?.trim().parse::<f64>().ok())
    };
    let mut r = Phases::default();
    for phase in ["create", "stat", "delete"] {
        r.ops
            .insert(phase, get(format!("{phase}_ops_per_s")).unwrap_or(0.0));
        r.cpu
            .insert(phase, get(format!("{phase}_cpu_us")).unwrap_or(0.0));
        if let Some(v) = get(format!("{phase}_p50_us")) {
            r.p50.insert(phase, v);
        }
    }
    r
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The two baselines: a null RPC to the cluster's master, and one durable
/// metastore transaction (a create + complete's three records) in a fresh
/// metastore on the same disk.
struct Baselines {
    client: eddy_client::MasterClient,
    store: eddy_master::metastore::Metastore,
    next_id: std::cell::Cell<u64>,
}

impl Baselines {
    async fn start(master: &str, dir: &std::path::Path) -> Self {
        use eddy_master::metastore::{Metastore, SyncPolicy};
        let client = eddy_client::MasterClient::connect(master).await.unwrap();
        let (store, _) =
            Metastore::open(&dir.join("baseline-meta"), SyncPolicy::default()).unwrap();
        Self {
            client,
            store,
            next_id: std::cell::Cell::new(2),
        }
    }

    /// Medians, in microseconds, of 1,000 null RPCs and 200 commits, and
    /// the CPU one null RPC costs this client (user + system, this thread).
    async fn measure(&self) -> (f64, f64, f64) {
        use eddy_master::metastore::MetaOp;
        let mut null = Vec::new();
        let cpu0 = thread_cpu();
        for _ in 0..1_000 {
            let t = Instant::now();
            self.client.list_mounts().await.unwrap();
            null.push(t.elapsed().as_secs_f64() * 1e6);
        }
        let null_cpu = (thread_cpu() - cpu0) / 1_000.0 * 1e6;
        let record = vec![7u8; 96];
        let put = |id: u64| MetaOp::PutInode {
            id,
            record: record.clone(),
        };
        let mut commit = Vec::new();
        for _ in 0..200 {
            let id = self.next_id.get();
            self.next_id.set(id + 1);
            let t = Instant::now();
            self.store
                .submit(vec![put(id), put(1), put(id)])
                .await
                .unwrap();
            commit.push(t.elapsed().as_secs_f64() * 1e6);
        }
        (median(null), median(commit), null_cpu)
    }
}

/// This thread's CPU time so far (user + system), in seconds.
fn thread_cpu() -> f64 {
    // SAFETY: `getrusage` fills the zeroed struct it is given; all-zero is
    // a valid `rusage`.
    let u = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_THREAD, &mut u);
        u
    };
    let secs = u.ru_utime.tv_sec + u.ru_stime.tv_sec;
    let micros = u.ru_utime.tv_usec + u.ru_stime.tv_usec;
    secs as f64 + micros as f64 / 1e6
}
