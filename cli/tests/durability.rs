//! Every acknowledged mutation survives `kill -9` of the master.

mod common;

use std::collections::HashSet;

use common::MasterProc;
use eddy_client::CreateOptions;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_creates_survive_kill_9() {
    creates_survive_kill_9("").await;
}

/// With `sync = "batch"` and a window far longer than the test, nothing is
/// synced before the kill: what comes back comes from the journal, which a
/// crash of the process does not lose (docs/CONSISTENCY.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_sync_batch_acknowledged_creates_survive_kill_9() {
    creates_survive_kill_9("sync = \"batch\"\nsync_batch_ms = 60000").await;
}

async fn creates_survive_kill_9(config: &str) {
    let dir = tempfile::tempdir().unwrap();
    let m = MasterProc::start(dir.path(), config);
    let c = m.client().await;
    c.mkdir("/d", false).await.unwrap();
    let ext = tempfile::tempdir().unwrap();
    c.mount(
        "/ext",
        ext.path().to_str().unwrap(),
        true,
        [("k".to_string(), "v".to_string())].into(),
        Some(5),
    )
    .await
    .unwrap();
    // 16 concurrent writers, 25 files each: the group commit batches them.
    let mut tasks = Vec::new();
    for t in 0..16 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..25 {
                let p = format!("/d/t{t}-{i}");
                c.create_file(&p, &CreateOptions::default()).await.unwrap();
                c.complete_file(&p, (t * 1000 + i) as u64, false)
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    c.rename("/d/t0-0", "/d/renamed").await.unwrap();
    m.kill9();

    let m = MasterProc::start(dir.path(), config);
    let c = m.client().await;
    let entries = c.list("/d").await.unwrap();
    assert_eq!(entries.len(), 400, "every acknowledged file is back");
    for e in &entries {
        assert!(
            e.complete,
            "{:?} came back complete",
            String::from_utf8_lossy(&e.path)
        );
    }
    assert_eq!(c.stat("/d/t3-7").await.unwrap().length, 3007);
    assert!(c.exists("/d/renamed").await.unwrap());
    assert!(!c.exists("/d/t0-0").await.unwrap());
    let mounts = c.list_mounts().await.unwrap();
    let ext_mount = mounts
        .iter()
        .find(|m| m.path == b"/ext")
        .expect("mount recovered");
    assert!(ext_mount.read_only);
    assert_eq!(ext_mount.sync_interval_ms, 5);
    assert_eq!(ext_mount.options.get("k").map(String::as_str), Some("v"));
    // Ids are never reused after a restart.
    let fresh = c
        .create_file("/d/after", &CreateOptions::default())
        .await
        .unwrap();
    assert!(entries.iter().all(|e| e.id < fresh.id));
}

/// A create answers before it is durable and commits with its file's
/// completion (docs/CONSISTENCY.md, "Creates commit with their close"):
/// here its window is longer than the test. A create someone else has
/// seen, or that its writer closed, survives kill -9; one no one else saw
/// may be lost, its writer's close then answers NOT_FOUND, and its id is
/// never given to another file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_is_lost_at_a_crash_only_if_no_one_else_saw_it() {
    let dir = tempfile::tempdir().unwrap();
    let hold = [("EDDY_DEFER_COMMIT_MS", "600000")];
    let m = MasterProc::start_full(dir.path(), "127.0.0.1:0", "", &hold);
    let addr = m.addr.clone();
    let (a, b) = (m.client().await, m.client().await);
    a.mkdir("/d", false).await.unwrap();
    a.create_file("/d/closed", &CreateOptions::default())
        .await
        .unwrap();
    a.complete_file("/d/closed", 5, false).await.unwrap();
    a.create_file("/d/seen", &CreateOptions::default())
        .await
        .unwrap();
    // A read commits the creates it may see before it answers.
    assert!(!b.stat("/d/seen").await.unwrap().complete);
    let lost = a
        .create_file("/d/unseen", &CreateOptions::default())
        .await
        .unwrap();
    m.kill9();

    let m = MasterProc::start_bound(dir.path(), &addr, "");
    let c = m.client().await;
    assert_eq!(c.stat("/d/closed").await.unwrap().length, 5);
    assert!(!c.stat("/d/seen").await.unwrap().complete);
    assert!(
        !c.exists("/d/unseen").await.unwrap(),
        "its create was never durable"
    );
    let e = c.complete_file("/d/unseen", 0, false).await.unwrap_err();
    assert_eq!(common::code_of(e), eddy_client::EddyCode::NotFound);
    let fresh = c
        .create_file("/d/unseen", &CreateOptions::default())
        .await
        .unwrap();
    assert!(
        fresh.id > lost.id,
        "id {} was given out before the crash",
        lost.id
    );
}

/// Eddy-only files (written MUST_CACHE, not persisted) move by metadata
/// alone, so this checks the metastore's atomicity without the under-storage.
/// (A crash between an under-storage rename and its metastore commit is a
/// known window; see docs/METASTORE.md.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renames_interrupted_by_kill_9_are_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let m = MasterProc::start(dir.path(), "");
    let c = m.client().await;
    const N: usize = 40;
    c.mkdir("/a", false).await.unwrap();
    c.mkdir("/b", false).await.unwrap();
    for i in 0..N {
        c.create_file(format!("/a/f{i}"), &CreateOptions::default())
            .await
            .unwrap();
        c.complete_file(format!("/a/f{i}"), i as u64, false)
            .await
            .unwrap();
    }
    // Move files back and forth while the master is killed under us.
    let acked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let renamer = {
        let c = c.clone();
        let acked = acked.clone();
        tokio::spawn(async move {
            let mut done = 0usize;
            for round in 0..1000 {
                for i in 0..N {
                    let (from, to) = if round % 2 == 0 {
                        (format!("/a/f{i}"), format!("/b/f{i}"))
                    } else {
                        (format!("/b/f{i}"), format!("/a/f{i}"))
                    };
                    if c.rename(&from, &to).await.is_err() {
                        return done;
                    }
                    done += 1;
                    acked.store(done, std::sync::atomic::Ordering::Release);
                }
            }
            done
        })
    };
    // Let some renames be acknowledged, then kill mid-stream.
    while acked.load(std::sync::atomic::Ordering::Acquire) < 10 && !renamer.is_finished() {
        tokio::task::yield_now().await;
    }
    m.kill9();
    let done = renamer.await.unwrap();
    assert!(done > 0);

    let m = MasterProc::start(dir.path(), "");
    let c = m.client().await;
    let names = |v: Vec<eddy_client::pb::FileStatus>| -> HashSet<Vec<u8>> {
        v.into_iter().map(|e| e.name).collect()
    };
    let in_a = names(c.list("/a").await.unwrap());
    let in_b = names(c.list("/b").await.unwrap());
    for i in 0..N {
        let n = format!("f{i}").into_bytes();
        let (a, b) = (in_a.contains(&n), in_b.contains(&n));
        assert!(a ^ b, "file {i} exists exactly once (a: {a}, b: {b})");
        let p = if a {
            format!("/a/f{i}")
        } else {
            format!("/b/f{i}")
        };
        assert_eq!(
            c.stat(&p).await.unwrap().length,
            i as u64,
            "{p} kept its inode"
        );
    }
}

/// One client handle outlives a master restart: calls fail with UNAVAILABLE
/// while the master is down and work again once it is back, on the same
/// connection object (the transport dials again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_reconnects_after_a_master_restart() {
    let dir = tempfile::tempdir().unwrap();
    let m = MasterProc::start(dir.path(), "");
    let addr = m.addr.clone();
    let c = m.client().await;
    c.mkdir("/kept", false).await.unwrap();
    m.kill9();

    let e = c.stat("/kept").await.unwrap_err();
    assert_eq!(common::code_of(e), eddy_client::EddyCode::Unavailable);

    let _m = MasterProc::start_bound(dir.path(), &addr, "");
    assert!(c.stat("/kept").await.unwrap().is_dir);
}

/// A master that dies between changing the under-storage and committing the
/// change to its metastore settles the difference at its next start, from
/// the intent it recorded first: the rename or delete is completed in Eddy
/// (same inode, Eddy-only children moved or deleted with it), or, when the
/// store was never touched, nothing changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_store_and_metastore_is_settled_at_restart() {
    let dir = tempfile::tempdir().unwrap();
    let ufs = dir.path().join("ufs");
    std::fs::create_dir_all(ufs.join("old")).unwrap();
    std::fs::write(ufs.join("old/p.parquet"), b"abc").unwrap();
    let crash_at =
        |fp: &str| MasterProc::start_full(dir.path(), "127.0.0.1:0", "", &[("EDDY_FAILPOINT", fp)]);

    // Crash before the store is touched: nothing happened anywhere.
    let m = crash_at("before-ufs-rename");
    let c = m.client().await;
    let before = c.stat("/old/p.parquet").await.unwrap();
    c.create_file("/old/cached-only", &CreateOptions::default())
        .await
        .unwrap();
    c.complete_file("/old/cached-only", 0, false).await.unwrap();
    assert!(
        c.rename("/old", "/new").await.is_err(),
        "the master died mid-call"
    );
    assert_eq!(m.wait().code(), Some(86));
    assert!(ufs.join("old/p.parquet").exists());

    // Crash after the store moved the directory: the restart moves it in Eddy.
    let m = crash_at("after-ufs-rename");
    let c = m.client().await;
    assert_eq!(c.stat("/old/p.parquet").await.unwrap().id, before.id);
    assert!(c.rename("/old", "/new").await.is_err());
    assert_eq!(m.wait().code(), Some(86));
    assert!(ufs.join("new/p.parquet").exists() && !ufs.join("old").exists());

    let m = crash_at("after-ufs-delete");
    let c = m.client().await;
    assert!(!c.exists("/old").await.unwrap());
    let moved = c.stat("/new/p.parquet").await.unwrap();
    assert_eq!(
        moved.id, before.id,
        "the same inode moved, not a rediscovered file"
    );
    assert!(
        c.exists("/new/cached-only").await.unwrap(),
        "Eddy-only files moved too"
    );

    // Crash after the store deleted the directory: the restart deletes it in Eddy.
    assert!(c.delete("/new", true).await.is_err());
    assert_eq!(m.wait().code(), Some(86));
    assert!(!ufs.join("new").exists());
    let m = MasterProc::start(dir.path(), "");
    let c = m.client().await;
    assert!(!c.exists("/new").await.unwrap());
    assert!(!c.exists("/new/cached-only").await.unwrap());
    assert!(c.list("/").await.unwrap().is_empty());
}

/// A clean stop with `sync = "batch"` syncs before it exits: the journal is
/// left empty and the redb file alone holds every answered change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_sync_batch_a_clean_stop_syncs_first() {
    let dir = tempfile::tempdir().unwrap();
    let config = "sync = \"batch\"\nsync_batch_ms = 60000";
    let m = MasterProc::start(dir.path(), config);
    let c = m.client().await;
    for i in 0..20 {
        let p = format!("/f{i}");
        c.create_file(&p, &CreateOptions::default()).await.unwrap();
        c.complete_file(&p, i, false).await.unwrap();
    }
    let journal = dir.path().join("meta/metastore.journal");
    assert!(
        std::fs::metadata(&journal).unwrap().len() > 0,
        "not synced yet"
    );
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(m.pid() as i32, libc::SIGTERM) }, 0);
    assert!(m.wait().success());
    assert_eq!(
        std::fs::metadata(&journal).unwrap().len(),
        0,
        "synced at stop"
    );
    std::fs::remove_file(&journal).unwrap();
    let m = MasterProc::start(dir.path(), "");
    let c = m.client().await;
    assert_eq!(c.list("/").await.unwrap().len(), 20);
    assert_eq!(c.stat("/f7").await.unwrap().length, 7);
}
