//! `eddy local` (the README's first command) end to end, and a worker's
//! graceful shutdown in process.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::{EDDY, memfds, pattern};
use eddy_client::{CreateOptions, FileSystem, OpenOptions};

#[test]
fn eddy_local_serves_put_and_cat_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(EDDY)
        .args([
            "local",
            "--port",
            "0",
            "--memory",
            "268435456",
            "--metrics-port",
            "0",
            "--data-dir",
        ])
        .arg(dir.path().join("data"))
        .current_dir(dir.path())
        .env("EDDY_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut master = None;
    let mut metrics = None;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(a) = line.strip_prefix("eddy local metrics on http://") {
            metrics = Some(a.trim_end_matches("/metrics").to_string());
        }
        if let Some(a) = line.strip_prefix("eddy master listening on ") {
            master = Some(a.to_string());
        }
        if line.starts_with("eddy worker listening on ") {
            break;
        }
    }
    let master = master.expect("the master address is printed");
    assert!(master.starts_with("127.0.0.1:"), "{master}");
    let eddy = |args: &[&str]| {
        let o = Command::new(EDDY)
            .arg("--master")
            .arg(&master)
            .args(args)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        o.stdout
    };
    let local = dir.path().join("in.bin");
    let data = pattern(3 << 20, 1);
    std::fs::write(&local, &data).unwrap();
    eddy(&["fs", "put", local.to_str().unwrap(), "/in.bin"]);
    assert_eq!(eddy(&["fs", "cat", "/in.bin"]), data);
    assert_eq!(eddy(&["fs", "head", "-c", "5", "/in.bin"]), data[..5]);
    assert_eq!(
        eddy(&["fs", "tail", "-c", "7", "/in.bin"]),
        data[data.len() - 7..]
    );
    let back = dir.path().join("back.bin");
    eddy(&["fs", "get", "/in.bin", back.to_str().unwrap()]);
    assert_eq!(std::fs::read(&back).unwrap(), data);
    let count = String::from_utf8(eddy(&["fs", "count", "/"])).unwrap();
    assert!(
        count
            .lines()
            .nth(1)
            .unwrap()
            .split_whitespace()
            .eq(["1", "1", "3145728"]),
        "{count}"
    );
    let report = String::from_utf8(eddy(&["report"])).unwrap();
    assert!(report.contains("Live workers:   1"), "{report}");
    // One endpoint for both halves of the process.
    let text = common::scrape(&metrics.expect("the metrics address is printed"));
    assert!(text.contains("eddy_master_rpc_requests_total{"), "{text}");
    assert!(text.contains("eddy_worker_blocks_written_total{"), "{text}");
    // SAFETY: kill(2) on our own child's pid; no memory is involved.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    drop(lines);
    assert!(child.wait().unwrap().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn worker_shutdown_ends_reads_cleanly_and_frees_every_segment() {
    let dir = tempfile::tempdir().unwrap();
    let master = eddy_master::start(eddy_master::MasterConfig {
        bind: "127.0.0.1:0".into(),
        metastore_dir: dir.path().join("meta"),
        root_ufs: dir.path().join("ufs").display().to_string(),
        default_block_size: 8 << 20,
        ..Default::default()
    })
    .await
    .unwrap();
    let before = memfds("self");
    let worker = eddy_worker::start(eddy_worker::WorkerConfig {
        security: eddy_proto::auth::SecurityConfig {
            token: master
                .state
                .keys
                .worker_token("eddy-worker", 3_600_000)
                .unwrap(),
            ..Default::default()
        },
        master: master.addr.to_string(),
        bind: "127.0.0.1:0".into(),
        memory_capacity: 256 << 20,
        // Counted below: only the blocks' segments, not a write pool's.
        write_pool_bytes: 0,
        ..Default::default()
    })
    .await
    .unwrap();
    let fs = FileSystem::connect(&master.addr.to_string()).await.unwrap();
    let data = pattern(64 << 20, 2);
    let mut w = fs.create("/f", &CreateOptions::default()).await.unwrap();
    w.write(&data).await.unwrap();
    w.close().await.unwrap();
    assert_eq!(memfds("self"), before + 8, "one segment per 8 MiB block");

    let r = fs.open("/f", &OpenOptions::default()).await.unwrap();
    let mut first = vec![0u8; 8 << 20];
    r.read_at(0, &mut first).await.unwrap();
    assert!(first == data[..8 << 20]);
    let rest = tokio::spawn(async move {
        let mut buf = vec![0u8; 56 << 20];
        r.read_at(8 << 20, &mut buf).await.map(|_| buf)
    });
    worker.shutdown().await;
    match rest.await.unwrap() {
        Ok(buf) => assert!(
            buf == data[8 << 20..],
            "a finished read has the right bytes"
        ),
        Err(e) => assert!(
            matches!(
                e.code(),
                eddy_client::EddyCode::Unavailable
                    | eddy_client::EddyCode::NoWorkerAvailable
                    | eddy_client::EddyCode::NotFound
            ),
            "a failed read says why: {e}"
        ),
    }
    assert_eq!(memfds("self"), before, "no segment outlives the worker");
    master.shutdown().await;
}
