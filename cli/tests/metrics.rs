//! Prometheus endpoints of real master and worker processes: what a scrape
//! shows after real traffic, and a bad `metrics_bind` stopping start-up.

mod common;

use common::{Cluster, EDDY, get, pattern, put, sample, scrape};
use eddy_client::{EddyCode, pb};

const BS: usize = 1 << 20;

/// The value of the first sample whose series starts with `prefix` and
/// whose labels include every `labels` item.
fn find(text: &str, prefix: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(prefix) && labels.iter().all(|x| l.contains(x)))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn master_and_worker_endpoints_show_the_traffic() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path(), 1, "default_block_size = 1048576", "");
    let fs = c.fs().await;
    let d = pattern(3 * BS + 1, 5);
    put(&fs, "/a", &d, pb::WriteType::MustCache).await;
    assert!(get(&fs, "/a").await == d);
    let e = fs.stat("/missing").await.unwrap_err();
    assert_eq!(e.code(), EddyCode::NotFound);

    let m = scrape(&c.master.metrics);
    assert!(
        find(
            &m,
            "eddy_master_rpc_requests_total{",
            &["method=\"CreateFile\""]
        ) >= Some(1.0),
        "{m}"
    );
    assert!(
        find(
            &m,
            "eddy_master_rpc_errors_total{",
            &["method=\"GetStatus\"", "code=\"NOT_FOUND\""]
        ) >= Some(1.0),
        "{m}"
    );
    assert!(
        find(
            &m,
            "eddy_master_rpc_errors_total{",
            &["method=\"CreateFile\""]
        )
        .is_none(),
        "no CreateFile failed: {m}"
    );
    assert!(m.contains("eddy_master_rpc_duration_seconds"), "{m}");
    assert_eq!(
        sample(&m, "eddy_master_workers{state=\"live\"}"),
        Some(1.0),
        "{m}"
    );
    assert_eq!(sample(&m, "eddy_master_blocks"), Some(4.0), "{m}");
    assert!(sample(&m, "eddy_master_inodes") >= Some(2.0), "{m}");
    // Tier usage comes with the worker's heartbeats.
    let addr = c.master.metrics.clone();
    common::eventually(
        std::time::Duration::from_secs(10),
        "the master's MEM usage is the file's length",
        || async {
            find(&scrape(&addr), "eddy_master_used_bytes{", &["tier=\"MEM\""])
                == Some(d.len() as f64)
        },
    )
    .await;

    let w = scrape(&c.workers[0].metrics);
    assert_eq!(
        find(&w, "eddy_worker_blocks_written_total{", &[]),
        Some(4.0),
        "{w}"
    );
    assert_eq!(
        find(&w, "eddy_worker_blocks_cached{", &[]),
        Some(4.0),
        "{w}"
    );
    assert_eq!(
        find(&w, "eddy_worker_memory_used{", &[]),
        Some(d.len() as f64),
        "{w}"
    );
    assert!(
        find(&w, "eddy_worker_bytes_served_total{", &[]) >= Some(d.len() as f64),
        "{w}"
    );
    assert_eq!(
        find(&w, "eddy_worker_tier_blocks{", &["tier=\"MEM\""]),
        Some(4.0),
        "{w}"
    );
    assert_eq!(
        find(&w, "eddy_worker_info{", &["io_engine="]),
        Some(1.0),
        "{w}"
    );
    // Counters are counters: the exposition says so.
    assert!(
        w.contains("# TYPE eddy_worker_blocks_written_total counter"),
        "{w}"
    );
}

#[test]
fn a_metrics_port_in_use_stops_start_up_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let cfg = dir.path().join("eddy.toml");
    std::fs::write(
        &cfg,
        format!(
            "[master]\nbind = \"127.0.0.1:0\"\nmetastore_dir = {:?}\nroot_ufs = {:?}\nmetrics_bind = \"{}\"\n",
            dir.path().join("meta").display().to_string(),
            dir.path().join("ufs").display().to_string(),
            taken.local_addr().unwrap()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(EDDY)
        .arg("--config")
        .arg(&cfg)
        .arg("master")
        .env("EDDY_LOG", "error")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot serve metrics on 127.0.0.1:"), "{err}");
}
