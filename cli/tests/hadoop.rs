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
