//! Data lifecycle across real processes: TTL actions run by the master's
//! checker, and replication bounds enforced across two workers.

mod common;

use std::time::Duration;

use common::{Cluster, eventually, get, pattern, put};
use eddy_client::{FileSystem, pb};

const BS: usize = 1 << 20;

/// Copies of each block of `path`, as the master lists them.
async fn copies(fs: &FileSystem, path: &str) -> Vec<usize> {
    let r = fs.master().file_blocks(path).await.unwrap();
    r.blocks.iter().map(|b| b.locations.len()).collect()
}

fn run(c: &Cluster, args: &[&str]) -> (bool, String, String) {
    let out = c.master.cli(args);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ttl_free_and_delete_happen() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(
        dir.path(),
        1,
        "default_block_size = 1048576\nttl_check_interval_ms = 100",
        "",
    );
    let fs = c.fs().await;
    let data = pattern(2 * BS + 5, 1);
    put(&fs, "/gone", &data, pb::WriteType::CacheThrough).await;
    put(&fs, "/freed", &data, pb::WriteType::CacheThrough).await;
    put(&fs, "/kept", &data, pb::WriteType::CacheThrough).await;

    assert!(run(&c, &["fs", "setTtl", "/gone", "300ms"]).0);
    assert!(run(&c, &["fs", "setTtl", "--action", "free", "/freed", "300ms"]).0);
    assert!(run(&c, &["fs", "setTtl", "/kept", "1h"]).0);
    let st = fs.stat("/kept").await.unwrap();
    assert_eq!(
        (st.ttl_ms, st.ttl_action),
        (3_600_000, pb::TtlAction::Delete as i32)
    );

    eventually(Duration::from_secs(10), "the TTL delete runs", || async {
        fs.stat("/gone").await.is_err()
    })
    .await;
    assert!(
        !c.ufs().join("gone").exists(),
        "deleted from the under-storage too"
    );
    eventually(Duration::from_secs(10), "the TTL free runs", || async {
        let s = fs.stat("/freed").await.unwrap();
        s.percent_cached == 0 && s.ttl_ms == -1
    })
    .await;
    assert_eq!(
        get(&fs, "/freed").await,
        data,
        "freed data reads back from the under-storage"
    );
    let s = fs.stat("/kept").await.unwrap();
    assert_eq!(
        s.percent_cached, 100,
        "an unexpired TTL leaves the file alone"
    );

    // unsetTtl, and bad input gets a clear error.
    assert!(run(&c, &["fs", "unsetTtl", "/kept"]).0);
    assert_eq!(fs.stat("/kept").await.unwrap().ttl_ms, -1);
    let (ok, _, err) = run(&c, &["fs", "setTtl", "/kept", "soon"]);
    assert!(!ok && err.contains("invalid duration"), "{err}");
    let (ok, _, err) = run(&c, &["fs", "setTtl", "/kept", "5", "--action", "archive"]);
    assert!(!ok && err.contains("unknown TTL action"), "{err}");
    let (ok, _, err) = run(&c, &["fs", "setTtl", "/missing", "1s"]);
    assert!(!ok && err.contains("NOT_FOUND"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replication_bounds_are_enforced_across_two_workers() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(
        dir.path(),
        2,
        "default_block_size = 1048576\nreplication_check_interval_ms = 100",
        "",
    );
    let fs = c.fs().await;
    // A MUST_CACHE file exists only in the workers: copies come from a peer.
    let only = pattern(3 * BS + 7, 2);
    put(&fs, "/only", &only, pb::WriteType::MustCache).await;
    // A persisted file: copies may come from the under-storage.
    let kept = pattern(2 * BS, 3);
    put(&fs, "/kept", &kept, pb::WriteType::CacheThrough).await;
    assert_eq!(copies(&fs, "/only").await, [1, 1, 1, 1]);

    let (ok, _, err) = run(&c, &["fs", "setReplication", "--min", "2", "/only"]);
    assert!(ok && err.is_empty(), "{err}");
    assert!(run(&c, &["fs", "setReplication", "--min", "2", "/kept"]).0);
    eventually(
        Duration::from_secs(15),
        "every block gets a second copy",
        || async {
            copies(&fs, "/only").await == [2, 2, 2, 2] && copies(&fs, "/kept").await == [2, 2]
        },
    )
    .await;
    assert!(c.stat_sum(&fs, "replicas_made").await >= 6);
    // Every copy holds the right bytes: read from each worker alone.
    for w in &c.workers {
        let s = fs.worker_stats(&w.addr).await.unwrap();
        let blocks = s.iter().find(|(k, _)| k == "blocks_cached").unwrap().1;
        assert_eq!(blocks, 6, "each worker holds every block");
    }
    assert_eq!(get(&fs, "/only").await, only);

    // max 1: the extra copies go.
    assert!(
        run(
            &c,
            &["fs", "setReplication", "--min", "1", "--max", "1", "/only"]
        )
        .0
    );
    eventually(
        Duration::from_secs(15),
        "extra copies are dropped",
        || async { copies(&fs, "/only").await == [1, 1, 1, 1] },
    )
    .await;
    assert_eq!(get(&fs, "/only").await, only);

    // More than the cluster has: accepted, reported, nothing hangs.
    let (ok, _, err) = run(
        &c,
        &["fs", "setReplication", "--min", "3", "--max", "0", "/kept"],
    );
    assert!(ok && err.contains("cannot be met: 2 live worker"), "{err}");
    eventually(Duration::from_secs(10), "the report shows it", || async {
        let (_, out, _) = run(&c, &["report"]);
        out.contains("Under-replicated blocks: 2 (2 cannot reach")
    })
    .await;
    let (ok, _, err) = run(
        &c,
        &["fs", "setReplication", "--min", "3", "--max", "2", "/kept"],
    );
    assert!(!ok && err.contains("larger than replication_max"), "{err}");
    let (ok, _, err) = run(&c, &["fs", "setReplication", "/kept"]);
    assert!(!ok && err.contains("--min"), "{err}");
}

/// Persists reach a worker at once: the master hands one out when its
/// file completes (ASYNC_THROUGH) or `eddy fs persist` asks, and the
/// worker's heartbeat, held open by the master, brings it back in a round
/// trip. With the checker's tick and the heartbeat interval both an hour
/// here, neither could have carried it within the test's bounds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn persists_start_at_once_not_at_the_next_tick() {
    let dir = tempfile::tempdir().unwrap();
    let hour = "replication_check_interval_ms = 3600000\n\
                worker_heartbeat_interval_ms = 3600000\n\
                worker_lost_after_ms = 7200000\n";
    let c = Cluster::start(dir.path(), 1, hour, "");
    let fs = c.fs().await;
    let data = pattern(BS + 17, 4);
    put(&fs, "/a", &data, pb::WriteType::AsyncThrough).await;
    eventually(Duration::from_secs(20), "/a persisted", || async {
        fs.stat("/a").await.unwrap().persisted
    })
    .await;
    assert!(std::fs::read(dir.path().join("ufs/a")).unwrap() == data);

    let more = pattern(3 * BS, 5);
    put(&fs, "/b", &more, pb::WriteType::MustCache).await;
    let (ok, out, err) = run(&c, &["fs", "persist", "/b"]);
    assert!(ok, "{err}");
    assert!(out.contains("persisted /b (1 file(s))"), "{out}");
    assert!(std::fs::read(dir.path().join("ufs/b")).unwrap() == more);
    // A second file written while the worker's heartbeat is held open.
    put(&fs, "/c", &data, pb::WriteType::AsyncThrough).await;
    eventually(Duration::from_secs(20), "/c persisted", || async {
        fs.stat("/c").await.unwrap().persisted
    })
    .await;
    // A directory: each of its files is handed out at once.
    fs.mkdir("/d", false).await.unwrap();
    for i in 0..3u64 {
        put(
            &fs,
            &format!("/d/f{i}"),
            &pattern(1000, i),
            pb::WriteType::MustCache,
        )
        .await;
    }
    let (ok, out, err) = run(&c, &["fs", "persist", "/d"]);
    assert!(ok, "{err}");
    assert!(out.contains("persisted /d (3 file(s))"), "{out}");
    for i in 0..3u64 {
        let on_disk = std::fs::read(dir.path().join(format!("ufs/d/f{i}"))).unwrap();
        assert!(on_disk == pattern(1000, i), "/d/f{i}");
    }
    // Empty files open no worker session (the first byte would): one
    // written ASYNC_THROUGH is still persisted, and a MUST_CACHE one reads
    // back empty and complete.
    put(&fs, "/e", b"", pb::WriteType::AsyncThrough).await;
    eventually(Duration::from_secs(20), "/e persisted", || async {
        fs.stat("/e").await.unwrap().persisted
    })
    .await;
    assert_eq!(std::fs::read(dir.path().join("ufs/e")).unwrap(), b"");
    let st = put(&fs, "/m", b"", pb::WriteType::MustCache).await;
    assert!(st.complete && st.length == 0 && !st.persisted);
    assert_eq!(get(&fs, "/m").await, b"");
    drop(c);
}
