//! Short-circuit reads against baselines measured in the same run, single
//! thread, a 1 GiB file fully cached in a worker on this host:
//!
//! - zero-copy scan (sum the bytes through `map_range`) vs the same scan of
//!   an in-process buffer;
//! - `read_at` into a 1 MiB buffer vs `memcpy` of the same bytes;
//! - sequential reads: short-circuit vs the TCP path vs `pread` of a
//!   page-cached local file;
//! - open + read 4 KiB + close of a cached small file (p50, p99) vs one
//!   Unix-socket round trip, and a re-read of a mapped block.
//!
//! Run: `cargo bench -p eddy-bench --bench shortcircuit` (`EDDY_BENCH_BYTES`
//! changes the size). The cluster runs in a child process.

use std::hint::black_box;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use eddy_client::{ClientOptions, CreateOptions, FileSystem, OpenOptions};

const RUNS: usize = 3;
const MIB: usize = 1 << 20;

fn main() {
    if eddy_bench::handled_before_main() {
        return;
    }
    eddy_bench::run_main(run);
}

/// The read-sum both scans use: 8 bytes at a time, so it runs at memory speed.
fn sum(b: &[u8]) -> u64 {
    let mut acc = [0u64; 4];
    let mut chunks = b.chunks_exact(32);
    for c in &mut chunks {
        for (i, a) in acc.iter_mut().enumerate() {
            *a = a.wrapping_add(u64::from_le_bytes(c[i * 8..i * 8 + 8].try_into().unwrap()));
        }
    }
    let tail: u64 = chunks.remainder().iter().map(|&x| u64::from(x)).sum();
    acc.iter().fold(tail, |s, a| s.wrapping_add(*a))
}

fn best(v: &[Duration]) -> Duration {
    *v.iter().min().unwrap()
}

fn gbps(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e9
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p) as usize]
}

/// What the phases measured, for the report.
#[derive(Default)]
struct Measured {
    scan_eddy: Vec<Duration>,
    scan_local: Vec<Duration>,
    first_touch: Duration,
    map_time: Duration,
    blocks: u64,
    read_at: Vec<Duration>,
    memcpy: Vec<Duration>,
    seq_sc: Vec<Duration>,
    seq_tcp: Vec<Duration>,
    seq_pread: Vec<Duration>,
    /// open + read 4 KiB + close of a small file.
    orc: Vec<Duration>,
    reread: Vec<Duration>,
    rtt: Vec<Duration>,
    write_sc: Vec<Duration>,
    write_memcpy: Vec<Duration>,
    burst_sc: Vec<Duration>,
    burst_memcpy: Vec<Duration>,
}

/// The two clients: short-circuit and TCP only.
struct Clients {
    sc: FileSystem,
    tcp: FileSystem,
}

async fn run(bytes: u64) {
    let dir = tempfile::tempdir().unwrap();
    let (mut cluster, master) = eddy_bench::spawn_cluster(dir.path());
    let c = Clients {
        sc: FileSystem::connect(&master).await.unwrap(),
        tcp: FileSystem::connect_with(
            &master,
            ClientOptions {
                short_circuit: false,
                ..Default::default()
            },
        )
        .await
        .unwrap(),
    };

    // The in-process baseline data, and the same bytes in Eddy.
    let data: Vec<u8> = (0..bytes as usize).map(|i| (i * 31 % 251) as u8).collect();
    let mut w = c
        .tcp
        .create("/big", &CreateOptions::default())
        .await
        .unwrap();
    for chunk in data.chunks(8 * MIB) {
        w.write(chunk).await.unwrap();
    }
    w.close().await.unwrap();

    let mut m = Measured::default();
    scan_and_read_at(&c, &data, &mut m).await;
    sequential(&c, &data, &dir.path().join("local.bin"), &mut m).await;
    small_files(&c, &data, &mut m).await;
    m.rtt = uds_round_trips(&dir.path().join("worker.sock"), 1000).await;
    writes(&c, &data, &mut m).await;
    bursts(&c, dir.path(), &data, &mut m).await;

    drop(cluster.stdin.take());
    cluster.wait().unwrap();
    report(bytes, m);
}

/// Phases 1 and 2: zero-copy scan vs in-process scan, then `read_at` into
/// 1 MiB vs `memcpy` into 1 MiB.
async fn scan_and_read_at(c: &Clients, data: &[u8], m: &mut Measured) {
    let bytes = data.len() as u64;
    let expect = sum(data);
    let r = c.sc.open("/big", &OpenOptions::default()).await.unwrap();
    let bs = r.block_size();
    let mut views = Vec::new();
    let t = Instant::now();
    let mut off = 0;
    while off < bytes {
        let n = (bytes - off).min(bs);
        views.push(r.map_range(off, n).await.unwrap());
        off += n;
    }
    m.map_time = t.elapsed();
    m.blocks = bytes.div_ceil(bs);
    let t = Instant::now();
    let first: u64 = views.iter().fold(0u64, |s, v| s.wrapping_add(sum(v)));
    m.first_touch = t.elapsed();
    assert_eq!(first, expect);
    for _ in 0..RUNS {
        let t = Instant::now();
        let s = views.iter().fold(0u64, |s, v| s.wrapping_add(sum(v)));
        m.scan_eddy.push(t.elapsed());
        assert_eq!(black_box(s), expect);
        let t = Instant::now();
        let s = sum(black_box(data));
        m.scan_local.push(t.elapsed());
        assert_eq!(s, expect);
    }

    let mut buf = vec![0u8; MIB];
    for _ in 0..RUNS {
        let t = Instant::now();
        let mut off = 0;
        while off < bytes {
            let n = r.read_at(off, &mut buf).await.unwrap();
            off += n as u64;
        }
        m.read_at.push(t.elapsed());
        black_box(&buf);
        let t = Instant::now();
        for chunk in data.chunks(MIB) {
            buf[..chunk.len()].copy_from_slice(black_box(chunk));
            black_box(&buf);
        }
        m.memcpy.push(t.elapsed());
    }
}

/// Phase 3: sequential reads, short-circuit vs TCP vs `pread` of a
/// page-cached file at `local`.
async fn sequential(c: &Clients, data: &[u8], local: &std::path::Path, m: &mut Measured) {
    let bytes = data.len() as u64;
    std::fs::File::create(local)
        .unwrap()
        .write_all(data)
        .unwrap();
    let mut big = vec![0u8; 8 * MIB];
    for _ in 0..RUNS {
        for (fs, out) in [(&c.sc, &mut m.seq_sc), (&c.tcp, &mut m.seq_tcp)] {
            let t = Instant::now();
            let mut r = fs.open("/big", &OpenOptions::default()).await.unwrap();
            assert_eq!(eddy_bench::read_all(&mut r, &mut big).await, bytes);
            out.push(t.elapsed());
        }
        let f = std::fs::File::open(local).unwrap();
        let t = Instant::now();
        let mut off = 0;
        loop {
            let n = f.read_at(&mut big, off).unwrap();
            if n == 0 {
                break;
            }
            off += n as u64;
        }
        m.seq_pread.push(t.elapsed());
    }
}

/// Phase 4: open + read 4 KiB + close of a cached small file, and a re-read
/// of a mapped block.
async fn small_files(c: &Clients, data: &[u8], m: &mut Measured) {
    let mut w = c
        .tcp
        .create("/small", &CreateOptions::default())
        .await
        .unwrap();
    w.write(&data[..4096]).await.unwrap();
    w.close().await.unwrap();
    let mut small = [0u8; 4096];
    for i in 0..1200 {
        let t = Instant::now();
        let r = c.sc.open("/small", &OpenOptions::default()).await.unwrap();
        r.read_at(0, &mut small).await.unwrap();
        drop(r);
        if i >= 200 {
            m.orc.push(t.elapsed());
        }
    }
    assert!(small[..] == data[..4096]);
    let r = c.sc.open("/small", &OpenOptions::default()).await.unwrap();
    r.read_at(0, &mut small).await.unwrap();
    for _ in 0..1000 {
        let t = Instant::now();
        r.read_at(0, &mut small).await.unwrap();
        m.reread.push(t.elapsed());
    }
}

/// Phase 5: short-circuit write (MUST_CACHE) vs `memcpy` into memory
/// already touched (the baseline: what a write costs once page
/// allocation is off its path).
async fn writes(c: &Clients, data: &[u8], m: &mut Measured) {
    (m.write_sc, m.write_memcpy) = write_vs_memcpy(c, "written", data, RUNS, None).await;
}

/// A burst the write pool holds: 128 MiB (two 64 MiB blocks, the default
/// `write_pool_bytes`), written once the pool is full (as after an idle
/// spell) vs `memcpy` of it into touched memory.
const BURST: usize = 128 * MIB;

/// Phase 6: short-circuit bursts.
async fn bursts(c: &Clients, dir: &std::path::Path, data: &[u8], m: &mut Measured) {
    let data = &data[..BURST.min(data.len())];
    let pool = (dir, eddy_bench::write_pool_budget(BURST as u64));
    (m.burst_sc, m.burst_memcpy) = write_vs_memcpy(c, "burst", data, RUNS + 4, Some(pool)).await;
}

/// `runs` short-circuit writes of `data` (MUST_CACHE, each deleted after)
/// and as many copies of it into touched memory, alternating; with `pool`
/// (the cluster's directory and the pool's budget), each write waits for
/// the worker's write pool to be full first.
async fn write_vs_memcpy(
    c: &Clients,
    name: &str,
    data: &[u8],
    runs: usize,
    pool: Option<(&std::path::Path, u64)>,
) -> (Vec<Duration>, Vec<Duration>) {
    let mut touched = vec![1u8; data.len()];
    let (mut sc, mut memcpy) = (Vec::new(), Vec::new());
    for run in 0..runs {
        if let Some((dir, budget)) = pool {
            eddy_bench::wait_write_pool(&c.sc, dir, budget, 64 << 20).await;
        }
        let path = format!("/{name}-{run}");
        let t = Instant::now();
        let mut w = c.sc.create(&path, &CreateOptions::default()).await.unwrap();
        for chunk in data.chunks(8 * MIB) {
            w.write(chunk).await.unwrap();
        }
        w.close().await.unwrap();
        sc.push(t.elapsed());
        c.sc.delete(&path, false).await.unwrap();
        let t = Instant::now();
        touched.copy_from_slice(black_box(data));
        black_box(&touched);
        memcpy.push(t.elapsed());
    }
    (sc, memcpy)
}

fn report(bytes: u64, mut m: Measured) {
    let gib = bytes as f64 / (1u64 << 30) as f64;
    println!("short-circuit, {gib:.2} GiB cached, single thread, best of {RUNS}");
    println!(
        "{:<52} {:>10} {:>10} {:>7} {:>7}",
        "benchmark", "Eddy GB/s", "base GB/s", "ratio", "target"
    );
    let row = |name: &str, e: &[Duration], b: &[Duration], target: &str| {
        let (e, b) = (gbps(bytes, best(e)), gbps(bytes, best(b)));
        println!("{name:<52} {e:>10.2} {b:>10.2} {:>7.2} {target:>7}", e / b);
    };
    let scan = "zero-copy scan (map_range) vs in-process scan";
    row(scan, &m.scan_eddy, &m.scan_local, ">=0.9");
    row(
        "read_at 1 MiB vs memcpy 1 MiB",
        &m.read_at,
        &m.memcpy,
        ">=0.8",
    );
    let seq = "sequential read: short-circuit vs TCP path";
    row(seq, &m.seq_sc, &m.seq_tcp, "");
    let seq = "sequential read: short-circuit vs pread (page cache)";
    row(seq, &m.seq_sc, &m.seq_pread, "");
    let write = "short-circuit write (MUST_CACHE) vs memcpy to touched memory";
    row(write, &m.write_sc, &m.write_memcpy, ">=0.8");
    let burst = BURST.min(bytes as usize) as u64;
    let (e, b) = (
        gbps(burst, best(&m.burst_sc)),
        gbps(burst, best(&m.burst_memcpy)),
    );
    let name = "short-circuit 128 MiB burst vs memcpy to touched memory";
    println!(
        "{name:<52} {e:>10.2} {b:>10.2} {:>7.2} {:>7}",
        e / b,
        ">=0.8"
    );
    println!(
        "first scan after mapping (page faults): {:.2} GB/s; leasing + mapping {} blocks took {:?}",
        gbps(bytes, m.first_touch),
        m.blocks,
        m.map_time
    );
    let (p50, p99) = (pct(&mut m.orc, 0.5), pct(&mut m.orc, 0.99));
    let (r50, r99) = (pct(&mut m.rtt, 0.5), pct(&mut m.rtt, 0.99));
    println!(
        "open + read 4 KiB + close: p50 {p50:?} p99 {p99:?}; one Unix-socket round trip: p50 {r50:?} p99 {r99:?}; p50 ratio {:.2} (target <= 1.5)",
        p50.as_secs_f64() / r50.as_secs_f64()
    );
    println!(
        "re-read of a mapped 4 KiB block: p50 {:?} p99 {:?} (no round trip)",
        pct(&mut m.reread, 0.5),
        pct(&mut m.reread, 0.99)
    );
}

/// Round trips of an empty `Stats` request on the worker's Unix socket.
async fn uds_round_trips(path: &std::path::Path, n: usize) -> Vec<Duration> {
    use tokio::io::AsyncReadExt;
    let mut s = tokio::net::UnixStream::connect(path).await.unwrap();
    // The socket's handshake first: the worker closes a connection whose
    // first frame is anything else.
    let me = eddy_client::Credentials::current_user();
    eddy_wire::hello(&mut s, &me.user).await.unwrap().unwrap();
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        eddy_wire::write_frame(&mut s, eddy_wire::Kind::Stats, &[])
            .await
            .unwrap();
        let h = eddy_wire::read_header(&mut s).await.unwrap();
        let mut body = vec![0u8; h.body_len as usize];
        s.read_exact(&mut body).await.unwrap();
        out.push(t.elapsed());
    }
    out
}
