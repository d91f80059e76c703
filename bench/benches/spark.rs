//! Spark and the Hadoop connector against baselines in the same run:
//!
//! - raw Java read throughput of a cached file through `EddyFileSystem`
//!   (heap `byte[]` and direct `ByteBuffer`) vs `FileSystem.getLocal`
//!   reading the same bytes from a page-cached local file (bench/java);
//! - a Spark job scanning a Parquet dataset: local path vs `eddy://` cold vs
//!   `eddy://` warm (bench/spark/scan.py).
//!
//! Run: `ci/test.sh` once (pyspark venv, target/eddy-hadoop.jar), then
//! `cargo build --release -p eddy-ffi && cargo bench -p eddy-bench --bench spark`.
//! `EDDY_BENCH_BYTES` changes the size from 1 GiB.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    if eddy_bench::handled_before_main() {
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let target = root.join("target");
    let need = |p: PathBuf, how: &str| {
        if !p.exists() {
            eprintln!("{} is missing: {how}", p.display());
            std::process::exit(2);
        }
        p
    };
    let jar = need(target.join("eddy-hadoop.jar"), "run ci/test.sh once");
    let python = need(
        target.join("pyspark-venv/bin/python"),
        "run ci/test.sh once",
    );
    let libdir = target.join("release");
    need(
        libdir.join("libeddy.so"),
        "cargo build --release -p eddy-ffi",
    );
    let jars = std::fs::read_dir(target.join("pyspark-venv/lib"))
        .unwrap()
        .find_map(|e| Some(e.ok()?.path().join("site-packages/pyspark/jars")))
        .unwrap();
    let bytes = std::env::var("EDDY_BENCH_BYTES").unwrap_or_else(|_| (1u64 << 30).to_string());
    let dir = tempfile::tempdir().unwrap();
    let (mut cluster, master) = eddy_bench::spawn_cluster(dir.path());

    // Raw Java reads.
    let classes = dir.path().join("classes");
    let cp = format!("{}:{}/*", jar.display(), jars.display());
    let o = Command::new("javac")
        .args(["--release", "17", "-cp", &cp, "-d"])
        .arg(&classes)
        .arg(root.join("bench/java/ReadBench.java"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = Command::new("java")
        .arg("-cp")
        .arg(format!("{}:{cp}", classes.display()))
        .arg(format!("-Djava.library.path={}", libdir.display()))
        .args(["ReadBench", &master])
        .arg(dir.path())
        .arg(&bytes)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let java = String::from_utf8_lossy(&o.stdout).to_string();

    // The Spark scan.
    let local = dir.path().join("local");
    std::fs::create_dir_all(&local).unwrap();
    let o = Command::new(&python)
        .arg(root.join("bench/spark/scan.py"))
        .arg(&master)
        .arg(&jar)
        .arg(&libdir)
        .arg(&local)
        .arg(dir.path().join("ufs"))
        .arg(&bytes)
        .env("SPARK_LOCAL_IP", "127.0.0.1")
        .env("PYSPARK_PYTHON", &python)
        .output()
        .unwrap();
    drop(cluster.stdin.take());
    cluster.wait().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let spark = String::from_utf8_lossy(&o.stdout).to_string();

    let get = |text: &str, key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.trim().parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    let (heap, direct, localr) = (
        get(&java, "eddy_heap_gbps"),
        get(&java, "eddy_direct_gbps"),
        get(&java, "local_gbps"),
    );
    println!("Java read of a cached {bytes}-byte file, single stream, best of 3");
    println!(
        "  EddyFileSystem, byte[]:      {heap:.2} GB/s ({:.2} of local)",
        heap / localr
    );
    println!(
        "  EddyFileSystem, direct buf:  {direct:.2} GB/s ({:.2} of local)",
        direct / localr
    );
    println!("  FileSystem.getLocal, byte[]: {localr:.2} GB/s");
    let ds = get(&spark, "BYTES");
    println!(
        "Spark scan (local[2]) of a {:.0}-MiB Parquet dataset (sum of 4 columns)",
        ds / (1u64 << 20) as f64
    );
    for k in ["local", "eddy_cold", "eddy_warm", "local2"] {
        let t = get(&spark, &format!("TIME {k}"));
        println!("  {k:<10} {t:.2} s");
    }
}
