//! The Hadoop FileSystem connector (ffi/java) through a real JVM: the
//! contract test in ffi/java/test runs against a real cluster, with
//! libeddy.so loaded over JNI. `ci/test.sh` installs pyspark (for the Hadoop
//! jars), builds target/eddy-hadoop.jar and libeddy.so first, and passes
//! the jars' directory in EDDY_PYSPARK_JARS.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::Cluster;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn target() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

/// The pyspark jars: EDDY_PYSPARK_JARS, else the venv ci/test.sh makes.
fn spark_jars() -> PathBuf {
    if let Some(d) = std::env::var_os("EDDY_PYSPARK_JARS") {
        return PathBuf::from(d);
    }
    let venv_lib = target().join("pyspark-venv/lib");
    let found = std::fs::read_dir(&venv_lib).ok().and_then(|mut it| {
        it.find_map(|e| {
            let d = e.ok()?.path().join("site-packages/pyspark/jars");
            d.exists().then_some(d)
        })
    });
    found.unwrap_or_else(|| {
        panic!(
            "no pyspark jars: run ci/test.sh (it installs pyspark into {})",
            venv_lib.display()
        )
    })
}

#[test]
fn the_hadoop_filesystem_contract_holds() {
    let jar = target().join("eddy-hadoop.jar");
    assert!(
        jar.exists(),
        "{} is missing: ci/test.sh builds it",
        jar.display()
    );
    let lib = target().join("debug/libeddy.so");
    assert!(
        lib.exists(),
        "{} is missing: `cargo build -p eddy-ffi` (ci/test.sh does)",
        lib.display()
    );
    let jars = spark_jars();
    let classpath = format!("{}:{}/*", jar.display(), jars.display());

    let dir = tempfile::tempdir().unwrap();
    let classes = dir.path().join("classes");
    let o = Command::new("javac")
        // Jar manifests in the Spark directory name jars it does not ship:
        // not this code's warnings.
        .args([
            "--release",
            "17",
            "-Xlint:all,-path",
            "-Werror",
            "-cp",
            &classpath,
            "-d",
        ])
        .arg(&classes)
        .arg(root().join("ffi/java/test/io/eddy/hadoop/EddyContractTest.java"))
        .output()
        .expect("javac runs");
    assert!(
        o.status.success(),
        "javac: {}",
        String::from_utf8_lossy(&o.stderr)
    );

    let c = Cluster::start(dir.path(), 1, "", "");
    let o = Command::new("java")
        .arg("-cp")
        .arg(format!("{}:{classpath}", classes.display()))
        .arg(format!(
            "-Djava.library.path={}",
            target().join("debug").display()
        ))
        .arg("io.eddy.hadoop.EddyContractTest")
        .arg(&c.master.addr)
        .output()
        .expect("java runs");
    assert!(
        o.status.success(),
        "contract test failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );

    // Without the library on the path: a clear message, not a bare link error.
    let o = Command::new("java")
        .arg("-cp")
        .arg(format!("{}:{classpath}", classes.display()))
        .arg("-Djava.library.path=/nonexistent")
        .arg("io.eddy.hadoop.EddyContractTest")
        .arg(&c.master.addr)
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("spark.executor.extraLibraryPath"), "{err}");
}

/// The venv's python (EDDY_PYSPARK_PYTHON, else target/pyspark-venv).
fn spark_python() -> PathBuf {
    std::env::var_os("EDDY_PYSPARK_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| target().join("pyspark-venv/bin/python"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spark_writes_and_reads_eddy_paths_and_rereads_from_cache() {
    let jar = target().join("eddy-hadoop.jar");
    assert!(
        jar.exists(),
        "{} is missing: ci/test.sh builds it",
        jar.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path(), 1, "", "");
    // A dataset that is already in the under-storage of the root mount.
    std::fs::create_dir_all(c.ufs().join("lake")).unwrap();
    let mut csv = String::from("v\n");
    let mut sum = 0u64;
    for i in 0..10_000u64 {
        csv.push_str(&format!("{}\n", i * 11));
        sum += i * 11;
    }
    std::fs::write(c.ufs().join("lake/part-0.csv"), csv).unwrap();
    let local = dir.path().join("local");
    std::fs::create_dir_all(&local).unwrap();

    let mut child = std::process::Command::new(spark_python())
        .arg(root().join("ffi/java/test/spark/job.py"))
        .arg(&c.master.addr)
        .arg(&jar)
        .arg(target().join("debug"))
        .arg(&local)
        .env("SPARK_LOCAL_IP", "127.0.0.1")
        .env("PYSPARK_PYTHON", spark_python())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the pyspark venv's python runs (ci/test.sh installs it)");
    // Bounded: a Spark job in local mode takes tens of seconds here.
    let start = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > std::time::Duration::from_secs(600) {
            let _ = child.kill();
            panic!("the Spark job did not finish in 10 minutes");
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let o = child.wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "spark job failed:\nstdout: {out}\nstderr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.contains("RESULT parquet ok 200000"), "{out}");
    assert!(out.contains("RESULT csv ok 200000"), "{out}");
    for run in [1, 2] {
        let line = format!("RESULT lake run {run} rows 10000 sum {sum}");
        assert!(out.contains(&line), "{line} in {out}");
    }
    let fs = c.fs().await;
    let stat = |name: &'static str| {
        let fs = fs.clone();
        let addr = c.workers[0].addr.clone();
        async move {
            let s = fs.worker_stats(&addr).await.unwrap();
            s.iter().find(|(k, _)| k == name).map_or(0, |(_, v)| *v)
        }
    };
    assert_eq!(
        stat("ufs_reads").await,
        1,
        "the lake file was read from the under-storage once; the second run hit the cache"
    );
    assert!(
        stat("leases_granted").await > 0,
        "Spark on the worker's host read through shared memory"
    );
    assert!(
        c.ufs().join("out/parquet/_SUCCESS").exists(),
        "CACHE_THROUGH output is in the under-storage"
    );
}
