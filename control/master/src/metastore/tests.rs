//! The sync policies against real redb files. A crash is stood for by
//! copying the files while the metastore is open: the copy holds what the
//! disk (or, for the journal, the page cache) holds at that moment, and
//! opening it runs redb's recovery as a restart after kill -9 would.

use std::path::Path;
use std::time::Duration;

use super::*;

fn policy(mode: MetastoreSync, ms: u64) -> SyncPolicy {
    SyncPolicy {
        mode,
        batch: Duration::from_millis(ms),
        defer: DEFER,
    }
}

fn inode(id: u64, tag: &str) -> MetaOp {
    MetaOp::PutInode {
        id,
        record: tag.as_bytes().to_vec(),
    }
}

/// Copies the open metastore in `from` to a fresh directory: the redb file
/// and, with `journal`, the journal first. (In that order a sync between
/// the two copies leaves a newer redb file and stale records, as a crash
/// at that moment could; the other order would lose what the sync moved.)
fn crash_copy(from: &Path, journal: bool) -> tempfile::TempDir {
    let to = tempfile::tempdir().unwrap();
    if journal {
        std::fs::copy(
            from.join(crate::journal::FILE_NAME),
            to.path().join(crate::journal::FILE_NAME),
        )
        .unwrap();
    }
    std::fs::copy(
        from.join("metastore.redb"),
        to.path().join("metastore.redb"),
    )
    .unwrap();
    to
}

/// The inode records a restart from `dir` loads.
fn inodes_after_restart(dir: &Path) -> Vec<String> {
    let (_store, loaded) = Metastore::open(dir, SyncPolicy::default()).unwrap();
    let mut v: Vec<String> = loaded
        .inodes
        .iter()
        .map(|r| String::from_utf8_lossy(r).into_owned())
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn always_has_every_answered_change_in_the_redb_file() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Metastore::open(dir.path(), policy(MetastoreSync::Always, 100)).unwrap();
    store.submit(vec![inode(1, "a")]).await.unwrap();
    let copy = crash_copy(dir.path(), false);
    assert_eq!(inodes_after_restart(copy.path()), ["a"]);
}

#[tokio::test]
async fn batch_answers_before_the_sync_and_the_journal_keeps_it_past_a_process_crash() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Metastore::open(dir.path(), policy(MetastoreSync::Batch, 60_000)).unwrap();
    store
        .submit(vec![inode(1, "a"), inode(2, "b")])
        .await
        .unwrap();
    store.submit(vec![MetaOp::DeleteInode(2)]).await.unwrap();
    // Not synced: the redb file alone (a host crash that lost the page
    // cache) does not have the changes ...
    let disk_only = crash_copy(dir.path(), false);
    assert!(inodes_after_restart(disk_only.path()).is_empty());
    // ... and with the journal (a process crash) every one is back, in
    // order, including under the default policy (a switch back to always).
    let with_journal = crash_copy(dir.path(), true);
    assert_eq!(inodes_after_restart(with_journal.path()), ["a"]);
    assert_eq!(
        std::fs::metadata(with_journal.path().join(crate::journal::FILE_NAME))
            .unwrap()
            .len(),
        0,
        "a replayed journal is emptied"
    );
    assert_eq!(*store.syncs().borrow(), 0);
}

#[tokio::test]
async fn batch_sync_puts_everything_in_the_redb_file() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Metastore::open(dir.path(), policy(MetastoreSync::Batch, 60_000)).unwrap();
    store.submit(vec![inode(1, "a")]).await.unwrap();
    store.sync().await.unwrap();
    assert_eq!(*store.syncs().borrow(), 1);
    let copy = crash_copy(dir.path(), false);
    assert_eq!(inodes_after_restart(copy.path()), ["a"]);
}

#[tokio::test]
async fn batch_syncs_on_its_own_within_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Metastore::open(dir.path(), policy(MetastoreSync::Batch, 20)).unwrap();
    let mut syncs = store.syncs();
    store.submit(vec![inode(1, "a")]).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), syncs.changed())
        .await
        .expect("no periodic sync within 10 s")
        .unwrap();
    let copy = crash_copy(dir.path(), false);
    assert_eq!(inodes_after_restart(copy.path()), ["a"]);
    // Nothing pending: no further sync is scheduled.
    assert!(
        tokio::time::timeout(Duration::from_millis(100), syncs.changed())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn an_old_journal_the_disk_did_not_see_emptied_brings_nothing_back() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Metastore::open(dir.path(), policy(MetastoreSync::Batch, 60_000)).unwrap();
    store.submit(vec![inode(5, "five")]).await.unwrap();
    let old_journal = std::fs::read(dir.path().join(crate::journal::FILE_NAME)).unwrap();
    assert!(!old_journal.is_empty());
    store.sync().await.unwrap();
    store.submit(vec![MetaOp::DeleteInode(5)]).await.unwrap();
    store.sync().await.unwrap();
    // A host crash after which the journal shows its content from before
    // the truncations: its records are of an old epoch and are skipped.
    let copy = crash_copy(dir.path(), false);
    std::fs::write(copy.path().join(crate::journal::FILE_NAME), &old_journal).unwrap();
    assert!(inodes_after_restart(copy.path()).is_empty());
}

#[tokio::test]
async fn dropping_the_store_syncs_what_was_committed() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Metastore::open(dir.path(), policy(MetastoreSync::Batch, 60_000)).unwrap();
    let mut syncs = store.syncs();
    store.submit(vec![inode(1, "a")]).await.unwrap();
    drop(store);
    tokio::time::timeout(Duration::from_secs(10), syncs.changed())
        .await
        .expect("no sync when the store closed")
        .unwrap();
    let copy = crash_copy(dir.path(), false);
    assert_eq!(inodes_after_restart(copy.path()), ["a"]);
}

/// Syncs every millisecond, and when asked, while 8 tasks submit; crash
/// images taken meanwhile hold everything answered before each was taken
/// (a sync that empties the journal must first have its records in redb).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submissions_racing_syncs_are_all_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Metastore::open(dir.path(), policy(MetastoreSync::Batch, 1)).unwrap();
    let lock = Arc::new(tokio::sync::Mutex::new(()));
    let answered = Arc::new(parking_lot::Mutex::new(Vec::<String>::new()));
    let mut tasks = Vec::new();
    for t in 0..8u64 {
        let (store, lock, answered) = (store.clone(), lock.clone(), answered.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..300u64 {
                let tag = format!("{t}-{i}");
                // Submission under a lock, as the namespace's.
                let done = {
                    let _g = lock.lock().await;
                    store.submit(vec![inode(t * 1000 + i, &tag)])
                };
                done.await.unwrap();
                answered.lock().push(tag);
            }
        }));
    }
    // And syncs asked for, one after the other, while they run.
    let syncer = {
        let store = store.clone();
        tokio::spawn(async move {
            for _ in 0..50 {
                store.sync().await.unwrap();
            }
        })
    };
    let mut images = 0;
    while !tasks.iter().all(|t| t.is_finished()) && images < 20 {
        let before: Vec<String> = answered.lock().clone();
        let dir = dir.path().to_path_buf();
        let after = tokio::task::spawn_blocking(move || {
            let copy = crash_copy(&dir, true);
            inodes_after_restart(copy.path())
        })
        .await
        .unwrap();
        let after: std::collections::HashSet<String> = after.into_iter().collect();
        let lost: Vec<&String> = before.iter().filter(|t| !after.contains(*t)).collect();
        assert!(
            lost.is_empty(),
            "image {images} lost answered changes {lost:?}"
        );
        images += 1;
    }
    for t in tasks {
        t.await.unwrap();
    }
    syncer.await.unwrap();
    assert!(images > 0 && *store.syncs().borrow() >= 50);
    let copy = crash_copy(dir.path(), true);
    assert_eq!(inodes_after_restart(copy.path()).len(), 2400);
}

/// With `batch`, journaled changes wait for the sync in memory, but never
/// more than a transaction's worth: past that they go into redb at once
/// (not durably), and the sync then has them all, in submission order.
#[tokio::test]
async fn a_long_batch_window_queues_a_bounded_amount() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Metastore::open(dir.path(), policy(MetastoreSync::Batch, 60_000)).unwrap();
    store.submit(vec![inode(1, "gone")]).await.unwrap();
    let filler: Vec<MetaOp> = (0..MAX_OPS_PER_TXN as u64)
        .map(|i| inode(10 + i % 100, "filler"))
        .collect();
    store.submit(filler).await.unwrap();
    // An empty batch is answered by the committer after the nudge before it.
    store.submit(Vec::new()).await.unwrap();
    let journaled = store.journal.as_ref().unwrap();
    assert!(journaled.lock().pending.is_empty(), "applied early");
    // After the early apply: a later change of the same inode wins.
    store
        .submit(vec![MetaOp::DeleteInode(1), inode(2, "kept")])
        .await
        .unwrap();
    assert_eq!(journaled.lock().pending.len(), 1, "queued again");
    store.sync().await.unwrap();
    let copy = crash_copy(dir.path(), false);
    let after = inodes_after_restart(copy.path());
    assert!(after.contains(&"kept".to_string()), "{:?}", after.len());
    assert!(!after.contains(&"gone".to_string()));
    assert_eq!(after.len(), 101);
}

/// With `always`, a deferred batch joins the transaction of the next batch
/// that is not deferred: it is not on disk before that one, and both are
/// after it.
#[tokio::test]
async fn a_deferred_batch_commits_with_the_next_strict_one() {
    let dir = tempfile::tempdir().unwrap();
    let defer_all_day = SyncPolicy {
        defer: Duration::from_secs(3600),
        ..SyncPolicy::default()
    };
    let (store, _) = Metastore::open(dir.path(), defer_all_day).unwrap();
    let mut created = Box::pin(store.submit_as(vec![inode(7, "created")], true));
    let early = tokio::time::timeout(Duration::from_millis(200), &mut created).await;
    assert!(early.is_err(), "a deferred batch alone waits");
    let copy = crash_copy(dir.path(), false);
    assert!(inodes_after_restart(copy.path()).is_empty());
    store.submit(vec![inode(8, "completed")]).await.unwrap();
    created.await.unwrap();
    let copy = crash_copy(dir.path(), false);
    assert_eq!(inodes_after_restart(copy.path()), ["completed", "created"]);
}

/// A deferred batch is committed on its own when its window ends, and at
/// once when a reader asks (`flush_deferred`).
#[tokio::test]
async fn a_deferred_batch_commits_when_its_window_ends_or_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let short = SyncPolicy {
        defer: Duration::from_millis(20),
        ..SyncPolicy::default()
    };
    let (store, _) = Metastore::open(dir.path(), short).unwrap();
    store.submit_as(vec![inode(1, "a")], true).await.unwrap();
    assert_eq!(
        inodes_after_restart(crash_copy(dir.path(), false).path()),
        ["a"]
    );
    drop(store);

    let dir = tempfile::tempdir().unwrap();
    let long = SyncPolicy {
        defer: Duration::from_secs(3600),
        ..SyncPolicy::default()
    };
    let (store, _) = Metastore::open(dir.path(), long).unwrap();
    let created = store.submit_as(vec![inode(1, "b")], true);
    store.flush_deferred();
    tokio::time::timeout(Duration::from_secs(10), created)
        .await
        .expect("committed when asked")
        .unwrap();
    assert_eq!(
        inodes_after_restart(crash_copy(dir.path(), false).path()),
        ["b"]
    );
}
