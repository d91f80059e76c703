//! Data-plane throughput against baselines measured in the same run:
//!
//! | Eddy | baseline |
//! |------|----------|
//! | warm read of a cached file over loopback TCP, one stream | a raw TCP pump of the same bytes between two processes |
//! | cold read through the worker from the local-directory under-storage (page cache dropped) | reading the file directly (page cache dropped) |
//! | MUST_CACHE write of a file | writing the same bytes to a local file (page cache) |
//! | CACHE_THROUGH write to the local-directory under-storage | writing the file there directly (create, write, fsync, rename, through eddy-ufs as the worker does) |
//! | warm read with block tokens (authentication `simple`) | the same read on a cluster with authentication `none` (no tokens) |
//! | warm remote read over TLS (rustls, AES-GCM) | the same read over plaintext TCP, runs alternating |
//!
//! The cluster (master + worker) and the pump's sender run in child
//! processes (this binary, re-executed), so both sides of every stream are
//! separate processes, as in production.
//!
//! Run: `cargo bench -p eddy-bench --bench dataplane` (1 GiB; set
//! `EDDY_BENCH_BYTES` to change the size); `-- tls` runs only the TLS
//! comparison, `-- writes` only the writes. Prints a table; results are
//! recorded in bench/RESULTS.md.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use eddy_client::{CreateOptions, FileSystem, OpenOptions};

const CHUNK: usize = 8 << 20;
const RUNS: usize = 3;
/// TLS vs plaintext: alternating runs, so drift on a shared machine hits
/// both alike.
const TLS_RUNS: usize = 5;

fn main() {
    if eddy_bench::handled_before_main() {
        return;
    }
    let args: Vec<String> = std::env::args().collect();
    let only = |w: &str| args.iter().skip(1).any(|a| a == w);
    let mode = if only("tls") {
        Mode::Tls
    } else if only("writes") {
        Mode::Writes
    } else {
        Mode::All
    };
    eddy_bench::run_main(move |bytes| run(bytes, mode));
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    All,
    Tls,
    Writes,
}

fn gbps(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e9
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Writes `bytes` bytes (the `chunk` repeated) to a new local file.
fn write_local_file(path: &std::path::Path, chunk: &[u8], bytes: u64) {
    let mut f = std::fs::File::create(path).unwrap();
    let mut left = bytes;
    while left > 0 {
        let k = left.min(chunk.len() as u64) as usize;
        f.write_all(&chunk[..k]).unwrap();
        left -= k as u64;
    }
}

/// Drops `path` from the page cache (clean pages; no privilege needed).
fn drop_cache(path: &std::path::Path) {
    let f = std::fs::File::open(path).unwrap();
    f.sync_all().unwrap();
    // SAFETY: posix_fadvise on an open fd we own; it only advises the kernel.
    let r = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    assert_eq!(r, 0, "posix_fadvise");
}

/// Writes `bytes` bytes to a new Eddy file at `path`, `chunk` at a time.
async fn write_eddy_file(fs: &FileSystem, path: &str, chunk: &[u8], bytes: u64) {
    write_eddy_as(fs, path, chunk, bytes, &CreateOptions::default()).await
}

async fn write_eddy_as(
    fs: &FileSystem,
    path: &str,
    chunk: &[u8],
    bytes: u64,
    opts: &CreateOptions,
) {
    let mut w = fs.create(path, opts).await.unwrap();
    let mut left = bytes;
    while left > 0 {
        let k = left.min(chunk.len() as u64) as usize;
        w.write(&chunk[..k]).await.unwrap();
        left -= k as u64;
    }
    w.close().await.unwrap();
}

/// Reads the whole of `path` (which holds `bytes`) through `fs`; the time.
async fn timed_read(fs: &FileSystem, path: &str, buf: &mut [u8], bytes: u64) -> Duration {
    let start = Instant::now();
    let mut r = fs.open(path, &OpenOptions::default()).await.unwrap();
    assert_eq!(eddy_bench::read_all(&mut r, buf).await, bytes);
    start.elapsed()
}

/// `runs` reads of `path` through `a` and through `b`, alternating run by
/// run so both see the same drift of the machine.
async fn alternate_reads(
    a: &FileSystem,
    b: &FileSystem,
    path: &str,
    bytes: u64,
    runs: usize,
) -> (Vec<Duration>, Vec<Duration>) {
    let mut buf = vec![0u8; CHUNK];
    let (mut ta, mut tb) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        ta.push(timed_read(a, path, &mut buf, bytes).await);
        tb.push(timed_read(b, path, &mut buf, bytes).await);
    }
    (ta, tb)
}

async fn run(bytes: u64, mode: Mode) {
    let dir = tempfile::tempdir_in(std::env::temp_dir()).unwrap();
    if mode == Mode::Tls {
        let (plain, tls) = tls_vs_plain(dir.path(), bytes).await;
        header(bytes, TLS_RUNS);
        row(bytes, TLS_ROW, &tls, &plain, "report");
        return;
    }
    let pump = (mode == Mode::All).then(|| pump_baseline(bytes));

    // The cluster in a child process. This benchmark measures the TCP
    // path, so the client does not use the worker's Unix socket.
    let (mut cluster, master) = eddy_bench::spawn_cluster(dir.path());
    let opts = eddy_client::ClientOptions {
        short_circuit: false,
        ..Default::default()
    };
    let fs = FileSystem::connect_with(&master, opts).await.unwrap();
    let (write_eddy, write_local) = writes(&fs, dir.path(), bytes).await;
    let (through, direct_ufs) = through_writes(&fs, dir.path(), bytes).await;
    let (burst, burst_local) = burst_writes(&fs, dir.path()).await;
    let Some(pump) = pump else {
        drop(cluster.stdin.take());
        cluster.wait().unwrap();
        header(bytes, RUNS);
        write_rows(bytes, [&write_eddy, &write_local, &through, &direct_ufs]);
        burst_row(&burst, &burst_local);
        return;
    };
    let warm = warm_reads(&fs, bytes).await;
    let (cold, direct) = cold_reads(&fs, dir.path(), bytes).await;
    let (tokens, no_tokens) = token_reads(&fs, bytes).await;
    drop(cluster.stdin.take());
    cluster.wait().unwrap();

    let (plain, tls) = tls_vs_plain(dir.path(), bytes).await;

    header(bytes, RUNS);
    row(
        bytes,
        "warm remote read vs raw TCP pump",
        &warm,
        &pump,
        ">=0.8",
    );
    let cold_name = "cold read via worker vs direct file read";
    row(bytes, cold_name, &cold, &direct, ">=0.7");
    write_rows(bytes, [&write_eddy, &write_local, &through, &direct_ufs]);
    burst_row(&burst, &burst_local);
    let token_name = "warm read, block tokens vs auth none";
    row(bytes, token_name, &tokens, &no_tokens, ">=0.95");
    row(bytes, TLS_ROW, &tls, &plain, "report");
}

/// MUST_CACHE vs a page-cache write; CACHE_THROUGH vs a direct write.
fn write_rows(bytes: u64, [eddy, local, through, direct]: [&Vec<Duration>; 4]) {
    let name = "MUST_CACHE write vs local file write";
    row(bytes, name, eddy, local, ">=0.8");
    let name = "CACHE_THROUGH write vs direct ufs write";
    row(bytes, name, through, direct, ">=0.7");
}

/// A burst the write pool holds: 128 MiB (two 64 MiB blocks, the default
/// `write_pool_bytes`), written MUST_CACHE once the pool is full, as after
/// an idle spell, vs the same bytes to a new local file.
const BURST: u64 = 128 << 20;
const BURST_RUNS: usize = 7;

async fn burst_writes(fs: &FileSystem, dir: &std::path::Path) -> (Vec<Duration>, Vec<Duration>) {
    let data = vec![0x3cu8; CHUNK];
    let budget = eddy_bench::write_pool_budget(BURST);
    let (mut eddy, mut local) = (Vec::new(), Vec::new());
    for r in 0..BURST_RUNS {
        eddy_bench::wait_write_pool(fs, dir, budget, 64 << 20).await;
        let path = format!("/burst-{r}");
        let start = Instant::now();
        write_eddy_file(fs, &path, &data, BURST).await;
        eddy.push(start.elapsed());
        fs.delete(&path, false).await.unwrap();
        eddy_bench::wait_write_pool(fs, dir, budget, 64 << 20).await;
        let file = dir.join(format!("burst-{r}"));
        let start = Instant::now();
        write_local_file(&file, &data, BURST);
        local.push(start.elapsed());
        std::fs::remove_file(&file).unwrap();
    }
    (eddy, local)
}

fn burst_row(eddy: &[Duration], local: &[Duration]) {
    let name = "MUST_CACHE 128 MiB burst vs local file write";
    row(BURST, name, eddy, local, ">=0.8");
}

/// CACHE_THROUGH writes into the cluster's root mount (the directory
/// `dir/ufs`) vs writing the same bytes there directly through eddy-ufs
/// (create, write, fsync, rename: what the worker does), alternating.
async fn through_writes(
    fs: &FileSystem,
    dir: &std::path::Path,
    bytes: u64,
) -> (Vec<Duration>, Vec<Duration>) {
    use eddy_ufs::UfsPath;
    let data = vec![0x5au8; CHUNK];
    let root = dir.join("ufs").display().to_string();
    let ufs = eddy_ufs::open(&root, &Default::default()).await.unwrap();
    let opts = CreateOptions {
        write_type: eddy_proto::pb::WriteType::CacheThrough,
        ..Default::default()
    };
    let (mut eddy, mut direct) = (Vec::new(), Vec::new());
    for r in 0..RUNS {
        let path = format!("/through-{r}");
        let start = Instant::now();
        write_eddy_as(fs, &path, &data, bytes, &opts).await;
        eddy.push(start.elapsed());
        fs.delete(&path, false).await.unwrap();

        let name = format!("direct-{r}");
        let start = Instant::now();
        let mut w = ufs.create(&UfsPath::parse(&name).unwrap()).await.unwrap();
        let mut left = bytes;
        while left > 0 {
            let k = left.min(data.len() as u64) as usize;
            w.write(&data[..k]).await.unwrap();
            left -= k as u64;
        }
        w.complete().await.unwrap();
        direct.push(start.elapsed());
        ufs.delete(&UfsPath::parse(&name).unwrap(), false)
            .await
            .unwrap();
    }
    (eddy, direct)
}

const TLS_ROW: &str = "warm remote read, TLS vs plaintext";

fn header(bytes: u64, runs: usize) {
    let gib = bytes as f64 / (1u64 << 30) as f64;
    println!("data plane, {gib:.2} GiB per run, median of {runs} runs ({TLS_RUNS} for TLS)");
    println!(
        "{:<44} {:>10} {:>10} {:>7} {:>7}",
        "benchmark", "Eddy GB/s", "base GB/s", "ratio", "target"
    );
}

fn row(bytes: u64, name: &str, e: &[Duration], b: &[Duration], target: &str) {
    let (e, b) = (
        gbps(bytes, median(e.to_vec())),
        gbps(bytes, median(b.to_vec())),
    );
    println!("{name:<44} {e:>10.2} {b:>10.2} {:>7.2} {target:>7}", e / b);
}

/// Warm remote reads (TCP, no short-circuit) of one cached file from a
/// plaintext cluster and from a TLS one, both up at once, runs
/// alternating: (plaintext, TLS).
async fn tls_vs_plain(dir: &std::path::Path, bytes: u64) -> (Vec<Duration>, Vec<Duration>) {
    let (plain_dir, tls_dir) = (dir.join("plain"), dir.join("tls"));
    let (mut plain_cluster, plain_master) = eddy_bench::spawn_cluster(&plain_dir);
    let (mut tls_cluster, tls_master) = eddy_bench::spawn_cluster_tls(&tls_dir);
    let ca = eddy_bench::cluster_certs(&tls_dir).ca;
    let tcp = eddy_client::ClientOptions {
        short_circuit: false,
        ..Default::default()
    };
    let over_tls = eddy_client::ClientOptions {
        tls: Some(eddy_client::ClientTls::new(&ca, None).unwrap()),
        ..tcp.clone()
    };
    let plain_fs = FileSystem::connect_with(&plain_master, tcp).await.unwrap();
    let tls_fs = FileSystem::connect_with(&tls_master, over_tls)
        .await
        .unwrap();
    let data = vec![0xa5u8; CHUNK];
    for fs in [&plain_fs, &tls_fs] {
        write_eddy_file(fs, "/warm", &data, bytes).await;
    }
    let (plain, tls) = alternate_reads(&plain_fs, &tls_fs, "/warm", bytes, TLS_RUNS).await;
    for c in [&mut plain_cluster, &mut tls_cluster] {
        drop(c.stdin.take());
        c.wait().unwrap();
    }
    (plain, tls)
}

/// Baseline 1: a raw TCP pump between two processes.
fn pump_baseline(bytes: u64) -> Vec<Duration> {
    (0..RUNS).map(|_| eddy_bench::pump(bytes)).collect()
}

/// Writes: MUST_CACHE vs a local file in `dir`. The last file written
/// stays, for the warm reads.
async fn writes(
    fs: &FileSystem,
    dir: &std::path::Path,
    bytes: u64,
) -> (Vec<Duration>, Vec<Duration>) {
    let data = vec![0xa5u8; CHUNK];
    let mut write_eddy = Vec::new();
    let mut write_local = Vec::new();
    for r in 0..RUNS {
        let path = format!("/w{r}");
        let start = Instant::now();
        write_eddy_file(fs, &path, &data, bytes).await;
        write_eddy.push(start.elapsed());
        if r + 1 < RUNS {
            fs.delete(&path, false).await.unwrap();
        }

        let local = dir.join(format!("local-{r}"));
        let start = Instant::now();
        write_local_file(&local, &data, bytes);
        write_local.push(start.elapsed());
        std::fs::remove_file(&local).unwrap();
    }
    (write_eddy, write_local)
}

/// Warm reads of the cached file, one stream.
async fn warm_reads(fs: &FileSystem, bytes: u64) -> Vec<Duration> {
    let mut warm = Vec::new();
    let mut buf = vec![0u8; CHUNK];
    let path = format!("/w{}", RUNS - 1);
    for _ in 0..RUNS {
        warm.push(timed_read(fs, &path, &mut buf, bytes).await);
    }
    warm
}

/// Cold reads: a file in the root under-storage that Eddy has never
/// cached (a new one per run), page cache dropped, through the worker vs
/// directly.
async fn cold_reads(
    fs: &FileSystem,
    dir: &std::path::Path,
    bytes: u64,
) -> (Vec<Duration>, Vec<Duration>) {
    let data = vec![0xa5u8; CHUNK];
    let mut buf = vec![0u8; CHUNK];
    let mut cold = Vec::new();
    let mut direct = Vec::new();
    for run in 0..RUNS {
        let name = format!("cold-{run}.bin");
        let ufs_file = dir.join("ufs").join(&name);
        write_local_file(&ufs_file, &data, bytes);
        drop_cache(&ufs_file);
        let start = Instant::now();
        let mut f = std::fs::File::open(&ufs_file).unwrap();
        let mut got = 0u64;
        loop {
            let n = f.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            got += n as u64;
        }
        assert_eq!(got, bytes);
        direct.push(start.elapsed());

        drop_cache(&ufs_file);
        let start = Instant::now();
        let mut r = fs
            .open(format!("/{name}"), &OpenOptions::default())
            .await
            .unwrap();
        assert_eq!(eddy_bench::read_all(&mut r, &mut buf).await, bytes);
        cold.push(start.elapsed());
        fs.delete(format!("/{name}"), false).await.unwrap();
    }
    (cold, direct)
}

async fn token_reads(fs: &FileSystem, bytes: u64) -> (Vec<Duration>, Vec<Duration>) {
    let dir = tempfile::tempdir_in(std::env::temp_dir()).unwrap();
    let (mut cluster, master) = eddy_bench::spawn_cluster_with(dir.path(), "none");
    let opts = eddy_client::ClientOptions {
        short_circuit: false,
        ..Default::default()
    };
    let plain = FileSystem::connect_with(&master, opts).await.unwrap();
    let name = format!("/w{}", RUNS - 1);
    let chunk = vec![0x5au8; CHUNK];
    write_eddy_file(&plain, &name, &chunk, bytes).await;
    let (with, without) = alternate_reads(fs, &plain, &name, bytes, RUNS).await;
    drop(cluster.stdin.take());
    cluster.wait().unwrap();
    (with, without)
}
