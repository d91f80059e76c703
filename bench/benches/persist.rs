//! Persisting files the workers hold to a local under-storage (the root
//! mount, a directory) against writing the same bytes there directly, in
//! the same run:
//!
//! | Eddy | baseline |
//! |------|----------|
//! | `persist` of a 1 MiB MUST_CACHE file until its status says persisted, polled as `eddy fs persist` polls (from 2 ms, doubling up to 200 ms): p50 and p90 of [`SMALL_FILES`] files | the same 1 MiB written straight into the directory through eddy-ufs's local store (create, write, fsync, rename) |
//! | `persist` of one `EDDY_BENCH_BYTES` file (1 GiB) | the same bytes written straight into the directory the same way |
//!
//! The small-file rows measure what a user waits for: the master hands the
//! persist to the worker at once (its heartbeat is a long poll) and the
//! worker writes and reports.
//!
//! Run: `cargo bench -p eddy-bench --bench persist`.

use std::time::{Duration, Instant};

use eddy_client::{CreateOptions, FileSystem, pb};
use eddy_ufs::{UfsPath, UnderFileSystem};

/// How many 1 MiB files the latency rows persist, one after another.
const SMALL_FILES: usize = 40;
const SMALL: usize = 1 << 20;
/// Pieces a file is written in, by Eddy's client and the baseline alike.
const CHUNK: usize = 8 << 20;

fn main() {
    if eddy_bench::handled_before_main() {
        return;
    }
    eddy_bench::run_main(run);
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32 % 251) as u8 ^ seed)
        .collect::<Vec<u8>>()
}

async fn put(fs: &FileSystem, path: &str, data: &[u8]) {
    let opts = CreateOptions {
        write_type: pb::WriteType::MustCache,
        ..Default::default()
    };
    let mut w = fs.create(path, &opts).await.unwrap();
    for c in data.chunks(CHUNK) {
        w.write(c).await.unwrap();
    }
    w.close().await.unwrap();
}

/// `persist` and wait for it the way `eddy fs persist` does.
async fn persist(fs: &FileSystem, path: &str) -> Duration {
    let t = Instant::now();
    fs.master().persist(path).await.unwrap();
    let mut gap = Duration::from_millis(2);
    loop {
        let s = fs.stat(path).await.unwrap();
        if s.persisted {
            return t.elapsed();
        }
        assert!(
            t.elapsed() < Duration::from_secs(600),
            "{path} not persisted"
        );
        tokio::time::sleep(gap).await;
        gap = (gap * 2).min(Duration::from_millis(200));
    }
}

/// The baseline: `data` written into the under-storage directory directly.
async fn direct(ufs: &dyn UnderFileSystem, name: &str, data: &[u8]) -> Duration {
    let t = Instant::now();
    let mut w = ufs.create(&UfsPath::parse(name).unwrap()).await.unwrap();
    for c in data.chunks(CHUNK) {
        w.write(c).await.unwrap();
    }
    w.complete().await.unwrap();
    t.elapsed()
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

async fn run(bytes: u64) {
    let dir = tempfile::tempdir().unwrap();
    let (mut cluster, master) = eddy_bench::spawn_cluster(dir.path());
    let fs = FileSystem::connect(&master).await.unwrap();
    let root = dir.path().join("ufs");
    let ufs = eddy_ufs::open(&root.display().to_string(), &Default::default())
        .await
        .unwrap();

    // Small files, one after another, each with its own baseline next to it.
    let small = pattern(SMALL, 1);
    let (mut eddy, mut base) = (Vec::new(), Vec::new());
    for i in 0..SMALL_FILES {
        let p = format!("/small-{i}");
        put(&fs, &p, &small).await;
        eddy.push(persist(&fs, &p).await);
        base.push(direct(ufs.as_ref(), &format!("direct-small-{i}"), &small).await);
        assert!(std::fs::read(root.join(&p[1..])).unwrap() == small);
    }
    eddy.sort();
    base.sort();

    // One large file.
    let big = pattern(bytes as usize, 2);
    put(&fs, "/big", &big).await;
    let big_eddy = persist(&fs, "/big").await;
    let big_base = direct(ufs.as_ref(), "direct-big", &big).await;
    assert_eq!(
        std::fs::metadata(root.join("big")).unwrap().len(),
        bytes,
        "the persisted copy has every byte"
    );
    drop(cluster.stdin.take());
    cluster.wait().unwrap();

    println!(
        "\npersist to a local under-storage directory ({SMALL_FILES} x 1 MiB, then 1 x {} MiB)",
        bytes >> 20
    );
    println!("{:<52} {:>9} {:>9}", "", "p50 ms", "p90 ms");
    println!(
        "{:<52} {:>9.1} {:>9.1}",
        "Eddy persist of 1 MiB (as `eddy fs persist` polls)",
        ms(pct(&eddy, 0.5)),
        ms(pct(&eddy, 0.9))
    );
    println!(
        "{:<52} {:>9.1} {:>9.1}",
        "direct write of 1 MiB (create, write, fsync, rename)",
        ms(pct(&base, 0.5)),
        ms(pct(&base, 0.9))
    );
    let mbps = |d: Duration| bytes as f64 / d.as_secs_f64() / 1e6;
    println!("{:<52} {:>9} {:>9}", "", "MB/s", "seconds");
    for (name, d) in [
        ("Eddy persist of the large file", big_eddy),
        ("direct write of the large file", big_base),
    ] {
        println!("{name:<52} {:>9.0} {:>9.2}", mbps(d), d.as_secs_f64());
    }
    println!(
        "1 MiB p50: {:.1} ms (target < 100); large: {:.2} of direct (target >= 0.7)",
        ms(pct(&eddy, 0.5)),
        big_base.as_secs_f64() / big_eddy.as_secs_f64()
    );
}
