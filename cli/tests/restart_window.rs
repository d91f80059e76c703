//! The window right after a master restart, before its workers have
//! registered again: new files wait for a worker instead of failing with
//! NO_WORKER_AVAILABLE, and a MUST_CACHE file whose blocks no worker has
//! reported yet is not lost (reads get a retryable UNAVAILABLE, never
//! DATA_LOST) until the registration grace period is over.
//!
//! The worker is stopped (SIGSTOP) across the restart so that it cannot
//! register early: the window is as long as the test needs, not a race.

mod common;

use std::time::{Duration, Instant};

use common::{Cluster, MasterProc, WorkerProc, get, pattern, put};
use eddy_client::{ClientOptions, EddyCode, FileSystem, OpenOptions, pb};

const BS: u64 = 1 << 20;
const SMALL_BLOCKS: &str = "default_block_size = 1048576";

fn signal(w: &WorkerProc, sig: rustix::process::Signal) {
    let pid = rustix::process::Pid::from_raw(w.pid() as i32).expect("a real pid");
    rustix::process::kill_process(pid, sig).unwrap();
}

/// A client that reads over TCP only, with `timeout` per exchange.
async fn tcp_client(addr: &str, timeout: Duration) -> FileSystem {
    let opts = ClientOptions {
        short_circuit: false,
        timeout,
        ..Default::default()
    };
    FileSystem::connect_with(addr, opts).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn right_after_a_restart_creates_wait_and_reads_are_not_lost() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path(), 1, SMALL_BLOCKS, "");
    let fs = c.fs().await;
    let data = pattern(2 * BS as usize + 1, 21);
    put(&fs, "/mem", &data, pb::WriteType::MustCache).await;
    let addr = c.master.addr.clone();
    let Cluster {
        master, workers, ..
    } = c;
    let w = &workers[0];
    signal(w, rustix::process::Signal::STOP);
    master.kill9();
    // A long grace period, so a slow machine cannot end it before SIGCONT;
    // the worker cannot register before that.
    let cfg = format!("{SMALL_BLOCKS}\nworker_registration_grace_ms = 30000");
    let m = MasterProc::start_bound(dir.path(), &addr, &cfg);
    let fs = tcp_client(&addr, Duration::from_secs(60)).await;
    let info = fs.master().cluster_info().await.unwrap();
    assert_eq!(info.workers.iter().filter(|w| w.live).count(), 0);
    assert!(info.registration_grace_left_ms > 0);
    let report = m.cli_ok(&["report"]);
    assert!(report.contains("workers are registering again"), "{report}");

    // Nothing is known of /mem's blocks yet, and that is not loss.
    let st = fs.stat("/mem").await.unwrap();
    assert!(!st.lost, "a file is not LOST while workers re-register");
    let quick = tcp_client(&addr, Duration::from_millis(300)).await;
    let e = quick
        .open("/mem", &OpenOptions::default())
        .await
        .unwrap()
        .read_to_end()
        .await
        .unwrap_err();
    assert_eq!(e.code(), EddyCode::Unavailable, "{e}");
    assert!(e.to_string().contains("registering again"), "{e}");

    // A create and a read issued now wait for the worker.
    let create = {
        let fs = fs.clone();
        tokio::spawn(async move {
            put(
                &fs,
                "/new",
                &pattern(BS as usize + 7, 22),
                pb::WriteType::MustCache,
            )
            .await
        })
    };
    let read = {
        let fs = fs.clone();
        tokio::spawn(async move {
            let mut r = fs.open("/mem", &OpenOptions::default()).await?;
            r.read_to_end().await
        })
    };
    let (mut create, read) = (create, read);
    // Before the fix both failed at once; they must still be waiting.
    assert!(
        tokio::time::timeout(Duration::from_millis(500), &mut create)
            .await
            .is_err(),
        "the create waits for a worker instead of failing"
    );
    assert!(!read.is_finished(), "the read waits for the worker too");
    signal(w, rustix::process::Signal::CONT);
    let st = create.await.unwrap();
    assert!(st.complete);
    assert_eq!(read.await.unwrap().unwrap(), data, "the MUST_CACHE bytes");
    assert_eq!(get(&fs, "/new").await, pattern(BS as usize + 7, 22));
    assert!(!fs.stat("/mem").await.unwrap().lost);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_the_grace_period_a_vanished_workers_files_are_lost() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path(), 1, SMALL_BLOCKS, "");
    let fs = c.fs().await;
    put(&fs, "/mem", &pattern(10, 23), pb::WriteType::MustCache).await;
    let addr = c.master.addr.clone();
    let Cluster {
        master, workers, ..
    } = c;
    for w in workers {
        w.kill9();
    }
    master.kill9();
    const GRACE_MS: u64 = 2_000;
    let cfg = format!("{SMALL_BLOCKS}\nworker_registration_grace_ms = {GRACE_MS}");
    let m = MasterProc::start_bound(dir.path(), &addr, &cfg);
    let started = Instant::now();
    let fs = tcp_client(&addr, Duration::from_secs(60)).await;
    assert!(
        !fs.stat("/mem").await.unwrap().lost,
        "not lost within the grace period"
    );
    // The read waits out the grace period, then the file is lost.
    let e = fs
        .open("/mem", &OpenOptions::default())
        .await
        .unwrap()
        .read_to_end()
        .await
        .unwrap_err();
    assert_eq!(e.code(), EddyCode::DataLost, "{e}");
    assert!(started.elapsed() >= Duration::from_millis(GRACE_MS - 200));
    assert!(fs.stat("/mem").await.unwrap().lost);
    let out = m.cli(&["fs", "stat", "/mem"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("LOST"));
    // And placement with no worker fails as before, at the first byte (a
    // MUST_CACHE file opens its worker session then), and discards the file.
    let mut w = fs.create("/x", &Default::default()).await.unwrap();
    let e = w.write(b"x").await.expect_err("no worker to write to");
    assert_eq!(e.code(), EddyCode::NoWorkerAvailable, "{e}");
    let e = w.close().await.expect_err("nothing was kept");
    assert_eq!(e.code(), EddyCode::InvalidArgument, "{e}");
    let e = fs.stat("/x").await.expect_err("discarded");
    assert_eq!(e.code(), EddyCode::NotFound, "{e}");
}
