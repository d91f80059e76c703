//! The disk tier's read path (block files read through the I/O engine, as
//! the worker serves them) against fio on the same device, same size and
//! same queue depth, in the same run:
//! - sequential 1 MiB reads of a 4 GiB block set (64 blocks of 64 MiB),
//!   8 reads in flight through the engine, vs `fio --rw=read --bs=1M
//!   --iodepth=8`;
//! - random 4 KiB reads from 32 tasks vs `fio --rw=randread --bs=4k
//!   --iodepth=32` (each read through a `RangeReader`, as a request is served);
//!
//! each with the io_uring engine and with the pread fallback.
//!
//! Run: `cargo bench -p eddy-bench --bench disk_tier` (needs `fio`:
//! `apt-get install fio`). `EDDY_BENCH_DISK_BYTES` changes the set size;
//! `EDDY_BENCH_DIR` the directory (default: under target/, same disk);
//! `EDDY_BENCH_QUICK=1` runs only Eddy's random reads (for tuning).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use eddy_worker::disk::{self, CHUNK, Dir, DiskBlock, RangeReader, Source};
use eddy_worker::io::Engine;

const BLOCK: u64 = 64 << 20;
const RAND_TASKS: usize = 32;
const RAND_SECS: u64 = 6;
const ROUNDS: usize = 3;

fn main() {
    if eddy_bench::handled_before_main() {
        return;
    }
    let total: u64 = eddy_bench::env_u64("EDDY_BENCH_DISK_BYTES", 4 << 30);
    let base = std::env::var("EDDY_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-disk"));
    std::fs::create_dir_all(&base).unwrap();
    let tmp = tempfile::tempdir_in(&base).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let quick = std::env::var("EDDY_BENCH_QUICK").is_ok();
    let fio = !quick && Command::new("fio").arg("--version").output().is_ok();
    if !fio {
        eprintln!("fio not found (apt-get install fio): only Eddy's figures are printed");
    }
    let uring = Arc::new(Engine::detect(64, 4 << 20));
    let pread = Arc::new(Engine::pread());
    println!("engines: {} | {}", uring.describe(), pread.describe());

    // The block set, written once through the tier's own write path.
    let dir = Dir::new(tmp.path(), total);
    disk::scan(&dir).unwrap();
    let n = total / BLOCK;
    let data = bytes::Bytes::from(
        (0..BLOCK)
            .map(|i| (i * 31 % 251) as u8)
            .collect::<Vec<u8>>(),
    );
    let t = Instant::now();
    let blocks: Vec<Arc<DiskBlock>> = rt.block_on(async {
        let mut v = Vec::new();
        for id in 0..n {
            let p = disk::write_block(&uring, &dir, id, false, &Source::Bytes(data.clone()))
                .await
                .unwrap();
            v.push(Arc::new(DiskBlock::new(id, BLOCK, p, 0, 0, false)));
        }
        v
    });
    println!(
        "wrote {} blocks ({} GiB) in {:.1}s",
        n,
        total >> 30,
        t.elapsed().as_secs_f64()
    );
    let fio_file = tmp.path().join("fio.dat");

    let mut seq = [Vec::new(), Vec::new(), Vec::new()];
    let mut rand = [Vec::new(), Vec::new(), Vec::new()];
    for round in 0..ROUNDS {
        // Interleaved, so drift in the shared disk hits every column alike.
        if fio {
            seq[0].push(fio_run(&fio_file, total, "read", "1M", 8).0);
        }
        if !quick {
            seq[1].push(rt.block_on(seq_read(&uring, &blocks)));
            seq[2].push(rt.block_on(seq_read(&pread, &blocks)));
        }
        if fio {
            rand[0].push(fio_run(&fio_file, total, "randread", "4k", RAND_TASKS).1);
        }
        rand[1].push(rt.block_on(rand_read(&uring, &blocks)));
        rand[2].push(rt.block_on(rand_read(&pread, &blocks)));
        eprintln!(
            "round {round}: seq {:?} GB/s, rand {:?} IOPS",
            seq.iter().map(|v| v.last().copied()).collect::<Vec<_>>(),
            rand.iter().map(|v| v.last().copied()).collect::<Vec<_>>()
        );
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    };
    let (fs, us, ps) = (med(&mut seq[0]), med(&mut seq[1]), med(&mut seq[2]));
    let (fr, ur, pr) = (med(&mut rand[0]), med(&mut rand[1]), med(&mut rand[2]));
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    println!(
        "\nDisk tier vs fio, {} GiB O_DIRECT, median of {ROUNDS} interleaved rounds",
        total >> 30
    );
    println!("{:<34} {:>12} {:>12} {:>8}", "", "eddy", "fio", "ratio");
    println!(
        "{:<34} {:>10.2} GB/s {:>7.2} GB/s {:>8.2}  (target >= 0.9)",
        "sequential 1 MiB, QD8, io_uring",
        us,
        fs,
        ratio(us, fs)
    );
    println!(
        "{:<34} {:>10.2} GB/s {:>7.2} GB/s {:>8.2}",
        "sequential 1 MiB, QD8, pread",
        ps,
        fs,
        ratio(ps, fs)
    );
    println!(
        "{:<34} {:>9.0} IOPS {:>7.0} IOPS {:>8.2}  (target >= 0.8)",
        "random 4 KiB, QD32, io_uring",
        ur,
        fr,
        ratio(ur, fr)
    );
    println!(
        "{:<34} {:>9.0} IOPS {:>7.0} IOPS {:>8.2}",
        "random 4 KiB, QD32, pread",
        pr,
        fr,
        ratio(pr, fr)
    );
}

/// Reads every block start to end in 1 MiB pieces, 8 in flight across
/// block boundaries (as consecutive requests keep the engine busy); GB/s.
async fn seq_read(engine: &Arc<Engine>, blocks: &[Arc<DiskBlock>]) -> f64 {
    const QD: usize = 8;
    let t = Instant::now();
    let mut bytes = 0u64;
    let mut window = std::collections::VecDeque::new();
    let files: Vec<_> = blocks.iter().map(|b| b.file().unwrap()).collect();
    let mut pieces = files
        .iter()
        .flat_map(|f| (0..BLOCK).step_by(CHUNK).map(move |off| (f.clone(), off)));
    loop {
        while window.len() < QD {
            match pieces.next() {
                Some((f, off)) => {
                    window.push_back(engine.start_read(f, off, engine.buffer(CHUNK), CHUNK))
                }
                None => break,
            }
        }
        let Some(op) = window.pop_front() else { break };
        let (r, buf) = op.await;
        bytes += r.unwrap() as u64;
        engine.recycle(buf);
    }
    assert_eq!(bytes, blocks.len() as u64 * BLOCK);
    bytes as f64 / t.elapsed().as_secs_f64() / 1e9
}

/// 32 tasks reading random aligned 4 KiB ranges for a fixed time; IOPS.
async fn rand_read(engine: &Arc<Engine>, blocks: &[Arc<DiskBlock>]) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(RAND_SECS);
    let mut tasks = Vec::new();
    for k in 0..RAND_TASKS as u64 {
        let (engine, blocks, done) = (engine.clone(), blocks.to_vec(), done.clone());
        tasks.push(tokio::spawn(async move {
            let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ (k + 1);
            // Bounded in count as well as in time.
            for _ in 0..10_000_000u64 {
                if Instant::now() >= deadline {
                    break;
                }
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let b = &blocks[(x % blocks.len() as u64) as usize];
                let off = (x >> 20) % (BLOCK / 4096) * 4096;
                let mut r = RangeReader::new(&engine, b, off, 4096).unwrap();
                let (buf, range) = r.next().await.unwrap().unwrap();
                assert_eq!(range.len(), 4096);
                r.recycle(buf);
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let t = Instant::now();
    for task in tasks {
        task.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / t.elapsed().as_secs_f64()
}

/// Runs fio with io_uring and O_DIRECT on `file`; (GB/s, IOPS).
fn fio_run(file: &Path, size: u64, rw: &str, bs: &str, depth: usize) -> (f64, f64) {
    let o = Command::new("fio")
        .args([
            "--name=eddy-baseline",
            "--ioengine=io_uring",
            "--direct=1",
            "--time_based",
            "--output-format=json",
        ])
        .arg(format!("--filename={}", file.display()))
        .arg(format!("--size={size}"))
        .arg(format!("--rw={rw}"))
        .arg(format!("--bs={bs}"))
        .arg(format!("--iodepth={depth}"))
        .arg(format!("--runtime={RAND_SECS}"))
        .output()
        .expect("fio runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    // The first job's read figures (no JSON parser needed for two numbers).
    let read = &out[out.find("\"read\"").expect("fio JSON has a read section")..];
    let num = |key: &str| -> f64 {
        let at = read.find(&format!("\"{key}\"")).expect("key in fio JSON");
        read[at..]
            .split(':')
            .nth(1)
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    };
    (num("bw_bytes") / 1e9, num("iops"))
}
