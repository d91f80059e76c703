//! Remote leases and one-sided RDMA reads (docs/RDMA.md) against Eddy's
//! TCP path, both measured in the same run against one cluster, runs
//! alternating so drift on a shared machine hits both alike:
//!
//! | Eddy over RDMA | baseline |
//! |----------------|----------|
//! | warm sequential read of a cached file, 8 MiB reads, one stream | the same read over TCP, and a raw TCP pump between two processes |
//! | positioned 1 MiB and 8 MiB reads, 1, 4 and 16 in flight | the same over TCP |
//! | positioned 8 MiB reads into `ReadBuf`s (`read_at_owned`: no copy out of a pooled buffer) | the same over TCP |
//! | one client's positioned reads of 4 KiB and 1 MiB: p50 and p99 latency | the same over TCP |
//! | the cluster process's CPU time per GiB served | the same over TCP |
//! | sequential 8 MiB reads through Eddy over RDMA | bare `fi_read`s of 8 MiB from a process that registered the same bytes (eddy-rdma alone: the provider's ceiling) |
//!
//! The cluster (master + worker with `[worker] rdma`) runs in a child
//! process (this binary, re-executed); the client is this process, forced
//! to `transport = "rdma"` or `"tcp"` (no short-circuit either way).
//! Without RDMA hardware the provider is `tcp;ofi_rxm`, libfabric's
//! emulation of RDMA over TCP sockets: the numbers then measure Eddy's
//! RDMA machinery over a software provider, not RDMA. On hardware set
//! `EDDY_BENCH_RDMA_PROVIDER=verbs;ofi_rxm` (or `efa`),
//! `EDDY_BENCH_HOST` to the device's IP address, and
//! `FI_MR_CACHE_MAX_COUNT=0`.
//!
//! Run: `cargo bench -p eddy-bench --bench rdma` (1 GiB file; set
//! `EDDY_BENCH_BYTES` to change it). Prints a table; results are recorded
//! in bench/RESULTS.md.

use std::sync::Arc;
use std::time::{Duration, Instant};

use eddy_client::{ClientOptions, CreateOptions, FileReader, FileSystem, TransportMode};

const CHUNK: usize = 8 << 20;
const PIECE: usize = 1 << 20;
const PIECES: [usize; 2] = [PIECE, CHUNK];
const RUNS: usize = 3;
/// Positioned reads per latency sample set (bounded in count).
const LATENCY_READS: usize = 2_000;
const IN_FLIGHT: [usize; 3] = [1, 4, 16];

fn main() {
    if eddy_bench::handled_before_main() {
        return;
    }
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child-owner") {
        return owner(&args[i + 1], args[i + 2].parse().unwrap());
    }
    eddy_bench::run_main(run);
}

/// Child: registers `n` bytes on `provider` with a progress thread and
/// prints its address and key (hex) until stdin closes.
fn owner(provider: &str, n: usize) {
    use std::io::Read;
    let mut o = eddy_rdma::FabricOptions::new(provider);
    o.node = Some(eddy_bench::bench_host());
    let fabric = eddy_rdma::Fabric::open_with(&o).unwrap();
    let progress = eddy_rdma::Progress::start_with(&fabric, Duration::from_micros(20)).unwrap();
    let reg = fabric.register_shared(Arc::new(vec![0x3cu8; n])).unwrap();
    let k = reg.remote_key();
    let hex: String = fabric
        .address()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    println!("OWNER {hex} {} {} {}", k.addr_or_offset, k.len, k.key);
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    drop(reg);
    drop(progress);
}

/// Bare one-sided reads: `RUNS` times the whole of an owner process's
/// `bytes`, in 8 MiB `fi_read`s into one registered buffer.
fn bare_reads(provider: &str, bytes: u64) -> Vec<Duration> {
    use std::io::BufRead;
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--child-owner", provider, &bytes.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let f: Vec<&str> = line
        .trim()
        .strip_prefix("OWNER ")
        .unwrap()
        .split(' ')
        .collect();
    let addr: Vec<u8> = (0..f[0].len() / 2)
        .map(|i| u8::from_str_radix(&f[0][2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let key = eddy_rdma::RemoteKey {
        addr_or_offset: f[1].parse().unwrap(),
        len: f[2].parse().unwrap(),
        key: f[3].parse().unwrap(),
    };
    let mut o = eddy_rdma::FabricOptions::new(provider);
    o.node = Some(eddy_bench::bench_host());
    let fabric = eddy_rdma::Fabric::open_with(&o).unwrap();
    let peer = fabric.connect(&addr).unwrap();
    let mut buf = fabric.alloc_buf(CHUNK).unwrap();
    let mut times = Vec::new();
    for _ in 0..RUNS {
        let start = Instant::now();
        let mut at = 0u64;
        while at < bytes {
            buf.set_window(0, (bytes - at).min(CHUNK as u64) as usize);
            let (back, r) = fabric.read(buf, peer, &key, at);
            r.unwrap();
            buf = back.unwrap();
            at += buf.len() as u64;
        }
        times.push(start.elapsed());
    }
    drop(child.stdin.take());
    child.wait().unwrap();
    times
}

/// The cluster process's user + system CPU time so far.
fn cpu_of(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command's closing parenthesis: utime is the 12th,
    // stime the 13th (fields 14 and 15 of proc(5)).
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_secs_f64(ticks as f64 / hz as f64)
}

fn gbps(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e9
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() - 1) as f64 * p) as usize]
}

/// One client forced to `mode`.
async fn client(master: &str, mode: TransportMode) -> FileSystem {
    let opts = ClientOptions {
        transport: mode,
        timeout: Duration::from_secs(60),
        ..Default::default()
    };
    FileSystem::connect_with(master, opts).await.unwrap()
}

/// A sequential read of the whole file in 8 MiB reads; its time.
async fn sequential(fs: &FileSystem, bytes: u64) -> Duration {
    let mut buf = vec![0u8; CHUNK];
    let start = Instant::now();
    let mut r = fs.open("/f", &Default::default()).await.unwrap();
    assert_eq!(eddy_bench::read_all(&mut r, &mut buf).await, bytes);
    start.elapsed()
}

/// The whole file in `piece`-byte positioned reads from `tasks` tasks at
/// once (task `t` reads pieces `t`, `t + tasks`, ...); its time. With
/// `owned`, each task reads into a `ReadBuf` of its own (`read_at_owned`:
/// over RDMA the bytes land in it, no copy out of a pooled buffer).
async fn in_flight(
    r: &Arc<FileReader>,
    (tasks, piece): (usize, usize),
    bytes: u64,
    owned: bool,
) -> Duration {
    let pieces = bytes.div_ceil(piece as u64);
    let start = Instant::now();
    let mut all = Vec::new();
    for t in 0..tasks as u64 {
        let r = r.clone();
        all.push(tokio::spawn(async move {
            let mut buf = vec![0u8; piece];
            let mut owned_buf = Some(eddy_client::ReadBuf::new(piece));
            let mut got = 0u64;
            let mut p = t;
            while p < pieces {
                let at = p * piece as u64;
                got += if owned {
                    let (b, n) = r.read_at_owned(at, owned_buf.take().unwrap()).await;
                    owned_buf = Some(b);
                    n.unwrap() as u64
                } else {
                    r.read_at(at, &mut buf).await.unwrap() as u64
                };
                p += tasks as u64;
            }
            got
        }));
    }
    let mut got = 0;
    for t in all {
        got += t.await.unwrap();
    }
    assert_eq!(got, bytes);
    start.elapsed()
}

/// Latencies of `LATENCY_READS` positioned reads of `len` bytes at
/// pseudo-random offsets (the same offsets for every client).
async fn latencies(r: &FileReader, len: usize, bytes: u64) -> Vec<Duration> {
    let mut buf = vec![0u8; len];
    let mut x = 88172645463325252u64;
    let mut out = Vec::with_capacity(LATENCY_READS);
    for _ in 0..LATENCY_READS {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let at = x % (bytes - len as u64);
        let start = Instant::now();
        assert_eq!(r.read_at(at, &mut buf).await.unwrap(), len);
        out.push(start.elapsed());
    }
    out
}

/// Runs of the same measurement on RDMA and TCP, alternating.
struct Pair {
    rdma: Vec<Duration>,
    tcp: Vec<Duration>,
}

async fn run(bytes: u64) {
    let provider =
        std::env::var("EDDY_BENCH_RDMA_PROVIDER").unwrap_or_else(|_| "tcp;ofi_rxm".into());
    let dir = tempfile::tempdir_in(std::env::temp_dir()).unwrap();
    let (mut cluster, master) = eddy_bench::spawn_cluster_rdma(dir.path(), &provider);
    let pid = cluster.id();
    let (rdma, tcp) = (
        client(&master, TransportMode::Rdma).await,
        client(&master, TransportMode::Tcp).await,
    );
    let o = CreateOptions {
        write_type: eddy_client::pb::WriteType::MustCache,
        ..Default::default()
    };
    let mut w = tcp.create("/f", &o).await.unwrap();
    let chunk: Vec<u8> = (0..CHUNK).map(|i| (i % 251) as u8).collect();
    let mut left = bytes;
    while left > 0 {
        let k = left.min(CHUNK as u64) as usize;
        w.write(&chunk[..k]).await.unwrap();
        left -= k as u64;
    }
    w.close().await.unwrap();
    // Warm-up: leases asked for and keys cached, connections made.
    sequential(&rdma, bytes).await;
    sequential(&tcp, bytes).await;
    let st = rdma.transport_stats();
    assert_eq!(st.tcp_bytes, 0, "RDMA reads went by RDMA");
    assert!(st.rdma_read_ahead > 0, "sequential reads were read ahead");

    let mut seq = Pair {
        rdma: vec![],
        tcp: vec![],
    };
    let (mut cpu_rdma, mut cpu_tcp) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..RUNS {
        let c = cpu_of(pid);
        seq.rdma.push(sequential(&rdma, bytes).await);
        let m = cpu_of(pid);
        seq.tcp.push(sequential(&tcp, bytes).await);
        cpu_rdma += m - c;
        cpu_tcp += cpu_of(pid) - m;
    }
    let readers = (
        Arc::new(rdma.open("/f", &Default::default()).await.unwrap()),
        Arc::new(tcp.open("/f", &Default::default()).await.unwrap()),
    );
    let mut flights = Vec::new();
    let shapes = PIECES.iter().map(|&p| (p, false)).chain([(CHUNK, true)]);
    for (piece, owned) in shapes {
        for n in IN_FLIGHT {
            let mut p = Pair {
                rdma: vec![],
                tcp: vec![],
            };
            for _ in 0..RUNS {
                p.rdma
                    .push(in_flight(&readers.0, (n, piece), bytes, owned).await);
                p.tcp
                    .push(in_flight(&readers.1, (n, piece), bytes, owned).await);
            }
            flights.push((piece, n, owned, p));
        }
    }
    let pumped: Vec<Duration> = (0..RUNS).map(|_| eddy_bench::pump(bytes)).collect();
    let bare = bare_reads(&provider, bytes);
    let mut lat = Vec::new();
    for len in [4096usize, PIECE] {
        let a = latencies(&readers.0, len, bytes).await;
        let b = latencies(&readers.1, len, bytes).await;
        lat.push((len, a, b));
    }
    let s = rdma.transport_stats();
    assert_eq!((s.tcp_bytes, s.rdma_fallbacks), (0, 0), "{s:?}");
    drop(cluster.stdin.take());
    cluster.wait().unwrap();

    let pumped = Pair {
        rdma: seq.rdma.clone(),
        tcp: pumped,
    };
    let bare = Pair {
        rdma: seq.rdma.clone(),
        tcp: bare,
    };
    let all = Results {
        seq,
        pumped,
        bare,
        flights,
        lat,
        cpu: (cpu_rdma, cpu_tcp),
    };
    report(bytes, &provider, all);
}

struct Results {
    seq: Pair,
    /// RDMA's sequential runs against the raw pump's.
    pumped: Pair,
    /// RDMA's sequential runs against bare `fi_read`s.
    bare: Pair,
    /// Piece size, reads in flight, into `ReadBuf`s, the runs.
    flights: Vec<(usize, usize, bool, Pair)>,
    lat: Vec<(usize, Vec<Duration>, Vec<Duration>)>,
    cpu: (Duration, Duration),
}

fn report(bytes: u64, provider: &str, mut r: Results) {
    let gib = bytes as f64 / (1u64 << 30) as f64;
    println!("RDMA ({provider}) vs TCP, {gib:.2} GiB file, median of {RUNS} runs");
    println!(
        "{:<40} {:>12} {:>12} {:>7}",
        "benchmark (latency: lower is better)", "RDMA", "TCP", "ratio"
    );
    let row = |name: &str, p: &Pair| {
        let (a, b) = (
            gbps(bytes, median(p.rdma.clone())),
            gbps(bytes, median(p.tcp.clone())),
        );
        println!("{name:<40} {:>7.2} GB/s {:>7.2} GB/s {:>7.2}", a, b, a / b);
    };
    row("sequential 8 MiB reads, one stream", &r.seq);
    row("the same vs a raw TCP pump (TCP column)", &r.pumped);
    row("the same vs bare fi_reads (TCP column)", &r.bare);
    for (piece, n, owned, p) in &r.flights {
        let into = if *owned { " to ReadBufs" } else { "" };
        row(
            &format!("positioned {} MiB reads{into}, {n} in flight", piece >> 20),
            p,
        );
    }
    for (len, a, b) in r.lat.iter_mut() {
        for (q, name) in [(0.5, "p50"), (0.99, "p99")] {
            let (x, y) = (percentile(a, q), percentile(b, q));
            println!(
                "{:<40} {:>9.1} us {:>9.1} us {:>7.2}",
                format!("one client, {} KiB read, {name}", *len / 1024),
                x.as_secs_f64() * 1e6,
                y.as_secs_f64() * 1e6,
                x.as_secs_f64() / y.as_secs_f64()
            );
        }
    }
    let per_gib = |d: Duration| d.as_secs_f64() / (RUNS as f64 * gib);
    println!(
        "{:<40} {:>10.3} s {:>10.3} s {:>7.2}",
        "cluster CPU per GiB served (sequential)",
        per_gib(r.cpu.0),
        per_gib(r.cpu.1),
        per_gib(r.cpu.0) / per_gib(r.cpu.1)
    );
}
