//! Shared set-up for Eddy's benchmarks.

use eddy_master::{MasterConfig, RunningMaster};

/// A master on a loopback ephemeral port with its metastore in a temp dir.
pub async fn start_master(dir: &std::path::Path) -> RunningMaster {
    start_master_with(dir, |_| {}).await
}

/// As [`start_master`], with `tune` applied to the configuration.
pub async fn start_master_with(
    dir: &std::path::Path,
    tune: impl FnOnce(&mut MasterConfig),
) -> RunningMaster {
    let mut cfg = MasterConfig {
        bind: "127.0.0.1:0".into(),
        metastore_dir: dir.join("meta"),
        root_ufs: dir.join("ufs").display().to_string(),
        ..Default::default()
    };
    tune(&mut cfg);
    eddy_master::start(cfg).await.expect("master starts")
}

/// The authentication a cluster child runs with: `EDDY_BENCH_AUTH`
/// (`none`, `simple`, `token`), else the default.
fn child_auth() -> eddy_proto::auth::AuthMode {
    use eddy_proto::auth::AuthMode;
    match std::env::var("EDDY_BENCH_AUTH").as_deref() {
        Ok("none") => AuthMode::None,
        Ok("token") => AuthMode::Token,
        _ => AuthMode::default(),
    }
}

/// Resident set size of this process in bytes (from /proc/self/statm).
pub fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// The TLS files of a benchmark cluster in `dir` (a CA of its own,
/// generated on first use): what [`spawn_cluster_tls`]'s servers serve and
/// what its clients trust.
pub fn cluster_certs(dir: &std::path::Path) -> eddy_proto::tls::LocalCerts {
    eddy_proto::tls::generate_local(&dir.join("tls"), &["127.0.0.1"]).expect("certificates")
}

/// The child side of [`spawn_cluster`]: a master and one worker (8 GiB
/// memory tier, Unix socket `DIR/worker.sock`) in this process, until stdin
/// closes; with `tls`, both serve TLS with [`cluster_certs`]. Benchmarks
/// call it when started with `--child-cluster DIR` (`--child-cluster-tls`).
/// `EDDY_BENCH_RDMA` (a libfabric provider) turns on the worker's remote
/// leases, its fabric bound to `EDDY_BENCH_HOST` (default 127.0.0.1).
pub fn cluster_child(dir: &std::path::Path, tls: bool) {
    use std::io::Read;
    let security = match tls {
        false => Default::default(),
        true => {
            let c = cluster_certs(dir);
            eddy_proto::auth::SecurityConfig {
                tls_cert: c.cert,
                tls_key: c.key,
                tls_ca: c.ca,
                ..Default::default()
            }
        }
    };
    let rdma_provider = std::env::var("EDDY_BENCH_RDMA").ok();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let cfg = MasterConfig {
            bind: "127.0.0.1:0".into(),
            metastore_dir: dir.join("meta"),
            root_ufs: dir.join("ufs").display().to_string(),
            security: eddy_proto::auth::SecurityConfig {
                authentication: child_auth(),
                ..security.clone()
            },
            ..Default::default()
        };
        let master = eddy_master::start(cfg).await.expect("master starts");
        let worker = eddy_worker::start(eddy_worker::WorkerConfig {
            security: eddy_proto::auth::SecurityConfig {
                token: master
                    .state
                    .keys
                    .worker_token("eddy-worker", 3_600_000)
                    .unwrap(),
                ..security
            },
            master: master.addr.to_string(),
            bind: format!("{}:0", bench_host()),
            memory_capacity: 8 << 30,
            rdma: rdma_provider.is_some(),
            rdma_provider: rdma_provider.unwrap_or_default(),
            domain_socket: dir.join("worker.sock").display().to_string(),
            // `EDDY_BENCH_WRITE_POOL` (bytes) compares write-pool budgets.
            write_pool_bytes: write_pool_budget(
                eddy_worker::WorkerConfig::default().write_pool_bytes,
            ),
            ..Default::default()
        })
        .await
        .unwrap();
        std::fs::write(dir.join("worker.addr"), worker.data_addr.to_string()).unwrap();
        println!("READY {}", master.addr);
        tokio::task::spawn_blocking(|| {
            let mut sink = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut sink);
        })
        .await
        .unwrap();
        worker.shutdown().await;
        master.shutdown().await;
    });
}

/// Re-executes the current benchmark binary as a cluster process (see
/// [`cluster_child`]); returns it and the master's address. Closing the
/// child's stdin stops it.
pub fn spawn_cluster(dir: &std::path::Path) -> (std::process::Child, String) {
    spawn_cluster_with(dir, "simple")
}

/// As [`spawn_cluster`], the master with authentication `mode`.
pub fn spawn_cluster_with(dir: &std::path::Path, mode: &str) -> (std::process::Child, String) {
    spawn_child(dir, "--child-cluster", mode, &[])
}

/// As [`spawn_cluster`], the worker serving remote leases on the libfabric
/// `provider` (bound to [`bench_host`]).
pub fn spawn_cluster_rdma(dir: &std::path::Path, provider: &str) -> (std::process::Child, String) {
    spawn_child(
        dir,
        "--child-cluster",
        "simple",
        &[("EDDY_BENCH_RDMA", provider)],
    )
}

/// The address the benchmark cluster's worker binds: `EDDY_BENCH_HOST`
/// (an RDMA device's address on real hardware), else 127.0.0.1.
pub fn bench_host() -> String {
    std::env::var("EDDY_BENCH_HOST")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "127.0.0.1".into())
}

/// As [`spawn_cluster`], the master and the worker serving TLS with
/// [`cluster_certs`] (generated here first, so the child only reads them).
pub fn spawn_cluster_tls(dir: &std::path::Path) -> (std::process::Child, String) {
    cluster_certs(dir);
    spawn_child(dir, "--child-cluster-tls", "simple", &[])
}

fn spawn_child(
    dir: &std::path::Path,
    flag: &str,
    mode: &str,
    env: &[(&str, &str)],
) -> (std::process::Child, String) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([flag, dir.to_str().unwrap()])
        .env("EDDY_BENCH_AUTH", mode)
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let master = line.trim().strip_prefix("READY ").unwrap().to_string();
    (child, master)
}

/// What every harness-less benchmark's `main` handles first: the probe of
/// `cargo test --benches` (`--list`/`--test`: nothing to run) and its own
/// re-execution as a cluster process (`--child-cluster DIR`) or as
/// [`pump`]'s sender (`--child-pump ADDR N`). True when `main` has nothing
/// left to do.
pub fn handled_before_main() -> bool {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list" || a == "--test") {
        return true;
    }
    if let Some(i) = args.iter().position(|a| a == "--child-cluster") {
        cluster_child(std::path::Path::new(&args[i + 1]), false);
        return true;
    }
    if let Some(i) = args.iter().position(|a| a == "--child-cluster-tls") {
        cluster_child(std::path::Path::new(&args[i + 1]), true);
        return true;
    }
    if let Some(i) = args.iter().position(|a| a == "--child-pump") {
        pump_sender(&args[i + 1], args[i + 2].parse().unwrap());
        return true;
    }
    false
}

const PUMP_CHUNK: usize = 8 << 20;

/// The child side of [`pump`]: connects to `addr` and sends `n` bytes.
fn pump_sender(addr: &str, n: u64) {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    let buf = vec![0x5au8; PUMP_CHUNK];
    let mut left = n;
    while left > 0 {
        let k = left.min(PUMP_CHUNK as u64) as usize;
        s.write_all(&buf[..k]).unwrap();
        left -= k as u64;
    }
}

/// A raw TCP pump, the baseline of network reads: `bytes` from a child
/// process (this binary, `--child-pump`) over one loopback connection
/// into 8 MiB reads. Its time, connection included.
pub fn pump(bytes: u64) -> std::time::Duration {
    use std::io::Read;
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let start = std::time::Instant::now();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--child-pump", &addr, &bytes.to_string()])
        .spawn()
        .unwrap();
    let (mut s, _) = l.accept().unwrap();
    let mut buf = vec![0u8; PUMP_CHUNK];
    let mut got = 0u64;
    while got < bytes {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "the pump ended early");
        got += n as u64;
    }
    let d = start.elapsed();
    child.wait().unwrap();
    d
}

/// Reads a file to its end through `r` in `buf`-sized reads; returns the
/// bytes read.
pub async fn read_all(r: &mut eddy_client::FileReader, buf: &mut [u8]) -> u64 {
    let mut got = 0u64;
    loop {
        let n = r.read(buf).await.unwrap();
        if n == 0 {
            return got;
        }
        got += n as u64;
    }
}

/// Builds `bench/c/<name>.c` with `gcc -O2` against the release
/// `libeddy.a` (under `CARGO_TARGET_DIR` when that is set) into `dir`, as
/// `c-<name>` (not `<name>`: a cluster in `dir` keeps its `meta` there).
/// Exits with a hint when the library has not been built.
pub fn build_c_bench(name: &str, dir: &std::path::Path) -> std::path::PathBuf {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let lib = target.join("release/libeddy.a");
    if !lib.exists() {
        eprintln!(
            "{} is missing: run `cargo build --release -p eddy-ffi` first",
            lib.display()
        );
        std::process::exit(2);
    }
    let exe = dir.join(format!("c-{name}"));
    let o = std::process::Command::new("gcc")
        .args(["-O2", "-std=c11", "-D_POSIX_C_SOURCE=200809L", "-I"])
        .arg(root.join("include"))
        .arg(root.join(format!("bench/c/{name}.c")))
        .arg(&lib)
        .args(["-lpthread", "-ldl", "-lm", "-o"])
        .arg(&exe)
        .output()
        .expect("gcc runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    exe
}

/// A benchmark's size from the environment: `name` as a number, else
/// `default` (also when it does not parse).
pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The bytes a benchmark moves: `EDDY_BENCH_BYTES`, else 1 GiB.
pub fn bench_bytes() -> u64 {
    env_u64("EDDY_BENCH_BYTES", 1 << 30)
}

/// Runs `run(bench_bytes())` to completion on a multi-threaded runtime: the
/// body of every harness-less benchmark's `main`.
pub fn run_main<F, Fut>(run: F)
where
    F: FnOnce(u64) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(run(bench_bytes()));
}

/// Waits (bounded: 10 s, then carries on) until the worker of the
/// benchmark cluster in `dir` has its write pool as full as `budget` allows (`write_pool_bytes`
/// in its stats at `budget` rounded down to whole `segment`s), so a burst
/// measured next finds the pages allocated, as a write after an idle spell
/// does.
pub async fn wait_write_pool(
    fs: &eddy_client::FileSystem,
    dir: &std::path::Path,
    budget: u64,
    segment: u64,
) {
    let addr = std::fs::read_to_string(dir.join("worker.addr")).unwrap();
    let want = budget / segment * segment;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        let s = fs.worker_stats(&addr).await.unwrap();
        let stocked = s.iter().find(|(k, _)| k == "write_pool_bytes");
        if stocked.is_some_and(|(_, v)| *v >= want) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    eprintln!("the write pool did not fill within 10 s; measuring anyway");
}

/// The benchmark worker's `write_pool_bytes`: `EDDY_BENCH_WRITE_POOL`,
/// else `default`.
pub fn write_pool_budget(default: u64) -> u64 {
    env_u64("EDDY_BENCH_WRITE_POOL", default)
}
