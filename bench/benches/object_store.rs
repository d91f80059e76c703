//! Reading an object from an S3-compatible server (moto's server on
//! loopback) through Eddy vs directly, in the same run:
//!
//! | Eddy | baseline |
//! |------|----------|
//! | cold read of a 1 GiB object through an `s3://` mount (the worker fills each 64 MiB block with one ranged GET) | the same object downloaded with ranged GETs of 64 MiB, two in flight, through the same client library (`object_store`, via eddy-ufs) |
//! | warm re-read (from the worker's memory) | the cold read |
//!
//! Run: `ci/test.sh` once (installs moto into target/moto-venv), then
//! `cargo bench -p eddy-bench --bench object_store`. `EDDY_BENCH_BYTES`
//! changes the size from 1 GiB.

use std::time::{Duration, Instant};

use eddy_client::{FileSystem, OpenOptions};
use eddy_ufs::UfsPath;
use eddy_ufs::testkit::S3Server;

const BLOCK: u64 = 64 << 20;

fn main() {
    if eddy_bench::handled_before_main() {
        return;
    }
    eddy_bench::run_main(run);
}

fn mbps(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e6
}

async fn run(bytes: u64) {
    let s3 = S3Server::start();
    s3.create_bucket("bench");
    let uri = "s3://bench/data";
    let ufs = eddy_ufs::open(uri, &s3.options()).await.unwrap();
    let key = UfsPath::parse("obj.bin").unwrap();
    let t = Instant::now();
    let mut w = ufs.create(&key).await.unwrap();
    let chunk: Vec<u8> = (0..8 << 20).map(|i: u32| (i % 251) as u8).collect();
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        w.write(&chunk[..n]).await.unwrap();
        left -= n as u64;
    }
    w.complete().await.unwrap();
    println!(
        "uploaded {} MiB to moto in {:.1}s",
        bytes >> 20,
        t.elapsed().as_secs_f64()
    );

    let dir = tempfile::tempdir().unwrap();
    let (mut cluster, master) = eddy_bench::spawn_cluster(dir.path());
    let fs = FileSystem::connect(&master).await.unwrap();
    fs.master()
        .mount(
            "/s3",
            uri,
            true,
            s3.options().into_iter().collect(),
            Some(-1),
        )
        .await
        .unwrap();

    // Baseline: ranged GETs of a block's size, two in flight (as the
    // client's two-block read-ahead keeps two fills going).
    let direct = {
        let t = Instant::now();
        let mut got = 0u64;
        let mut off = 0u64;
        while off < bytes {
            let a = ufs.read(&key, off..(off + BLOCK).min(bytes));
            let b_off = off + BLOCK;
            let b = ufs.read(&key, b_off.min(bytes)..(b_off + BLOCK).min(bytes));
            let (a, b) = tokio::join!(a, b);
            got += a.unwrap().len() as u64 + b.unwrap().len() as u64;
            off += 2 * BLOCK;
        }
        assert_eq!(got, bytes);
        t.elapsed()
    };
    let read = |label: &'static str| {
        let fs = fs.clone();
        async move {
            let t = Instant::now();
            let mut r = fs
                .open("/s3/obj.bin", &OpenOptions::default())
                .await
                .unwrap();
            let mut buf = vec![0u8; 8 << 20];
            let got = eddy_bench::read_all(&mut r, &mut buf).await;
            assert_eq!(got, bytes, "{label}");
            t.elapsed()
        }
    };
    let cold = read("cold").await;
    let warm = read("warm").await;
    drop(cluster.stdin.take());
    cluster.wait().unwrap();

    println!(
        "\n1 object of {} MiB on moto's S3 server (loopback)",
        bytes >> 20
    );
    println!("{:<44} {:>10} {:>9}", "", "MB/s", "seconds");
    for (name, d) in [
        ("direct ranged GETs (object_store, 2 x 64 MiB)", direct),
        ("Eddy cold read (fills from S3)", cold),
        ("Eddy warm re-read (worker memory)", warm),
    ] {
        println!(
            "{name:<44} {:>10.0} {:>9.2}",
            mbps(bytes, d),
            d.as_secs_f64()
        );
    }
    println!(
        "cold / direct: {:.2}; warm / cold: {:.1}x",
        direct.as_secs_f64() / cold.as_secs_f64(),
        cold.as_secs_f64() / warm.as_secs_f64()
    );
}
