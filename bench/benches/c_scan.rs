//! A C program's zero-copy scan of a cached file (through `eddy_map`) vs the
//! same scan of an in-process buffer, both in C (bench/c/scan.c, built with
//! `gcc -O2` against the release `libeddy.a`).
//!
//! Run: `cargo build --release -p eddy-ffi && cargo bench -p eddy-bench --bench c_scan`
//! (`EDDY_BENCH_BYTES` changes the size from 1 GiB).

use std::process::Command;

fn main() {
    if eddy_bench::handled_before_main() {
        return;
    }
    let bytes = eddy_bench::bench_bytes().to_string();
    let dir = tempfile::tempdir().unwrap();
    let exe = eddy_bench::build_c_bench("scan", dir.path());
    let (mut cluster, master) = eddy_bench::spawn_cluster(dir.path());
    let o = Command::new(&exe).args([&master, &bytes]).output().unwrap();
    drop(cluster.stdin.take());
    cluster.wait().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    let get = |k: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(k)?.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    println!("C zero-copy scan of {bytes} cached bytes (single thread, best of 3)");
    println!(
        "eddy_map scan {:.2} GB/s vs in-process scan {:.2} GB/s: ratio {:.2} (target >= 0.9)",
        get("eddy_gbps"),
        get("local_gbps"),
        get("ratio")
    );
}
