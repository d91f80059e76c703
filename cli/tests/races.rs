//! Issue 14's regression tests: crashes and races act on inodes, not
//! paths. Real master and worker processes; `kill -9` (or a failpoint,
//! which exits as `kill -9` would) where the case needs a crash.

mod common;

use common::{MasterProc, WorkerProc, code_of, get, pattern, put};
use eddy_client::{ClientOptions, CreateOptions, EddyCode, FileSystem, pb};

fn tcp() -> ClientOptions {
    ClientOptions {
        short_circuit: false,
        ..Default::default()
    }
}

async fn client(addr: &str) -> FileSystem {
    FileSystem::connect_with(addr, tcp()).await.unwrap()
}

fn through() -> CreateOptions {
    CreateOptions {
        write_type: pb::WriteType::CacheThrough,
        ..Default::default()
    }
}

/// Objects under the under-storage directory `ufs`, relative paths,
/// sorted; the staging directory is listed as such.
fn ufs_files(ufs: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![ufs.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                let rel = e.path().strip_prefix(ufs).unwrap().display().to_string();
                out.push(rel);
            }
        }
    }
    out.sort();
    out
}

/// Item 1: two deletes of one persisted file race; the loser must not
/// leave an intent that, at the next start, deletes whatever file has
/// taken the path since.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_deletes_leave_no_intent_that_deletes_a_later_file() {
    let dir = tempfile::tempdir().unwrap();
    let m = MasterProc::start(dir.path(), "");
    let w = WorkerProc::start(&dir.path().join("w"), &m.addr, "");
    let (a, b) = (client(&m.addr).await, client(&m.addr).await);
    a.mkdir("/r", true).await.unwrap();
    for i in 0..10 {
        let p = format!("/r/x{i}");
        put(&a, &p, b"through", pb::WriteType::CacheThrough).await;
        let (ra, rb) = tokio::join!(a.delete(&p, false), b.delete(&p, false));
        assert!(
            ra.is_ok() || rb.is_ok(),
            "one of the racing deletes succeeds: {ra:?} {rb:?}"
        );
        for r in [ra, rb] {
            if let Err(e) = r {
                assert_eq!(code_of(e), EddyCode::NotFound);
            }
        }
        put(&a, &p, &pattern(1000, i), pb::WriteType::MustCache).await;
    }
    let addr = m.addr.clone();
    m.kill9();
    let m = MasterProc::start_bound(dir.path(), &addr, "");
    let c = client(&m.addr).await;
    wait_workers(&c, 1).await;
    for i in 0..10 {
        let p = format!("/r/x{i}");
        let st = c.stat(&p).await.expect("the acknowledged file survives");
        assert!(st.complete);
        assert_eq!(get(&c, &p).await, pattern(1000, i));
    }
    drop(w);
}

/// Waits until worker `w` caches no block (a free reaches it with its
/// next heartbeat).
async fn none_cached(fs: &FileSystem, w: &WorkerProc) {
    common::eventually(std::time::Duration::from_secs(10), "blocks dropped", || {
        let (fs, addr) = (fs.clone(), w.addr.clone());
        async move {
            fs.worker_stats(&addr)
                .await
                .unwrap()
                .iter()
                .any(|(k, v)| k == "blocks_cached" && *v == 0)
        }
    })
    .await;
}

/// Waits until `n` workers are registered with the master `fs` talks to
/// (after a master restart, until each worker's next heartbeat).
async fn wait_workers(fs: &FileSystem, n: usize) {
    let m = fs.master().clone();
    common::eventually(
        std::time::Duration::from_secs(20),
        "workers registered",
        || {
            let m = m.clone();
            async move {
                m.cluster_info()
                    .await
                    .is_ok_and(|c| c.workers.iter().filter(|w| w.live).count() >= n)
            }
        },
    )
    .await;
}

fn failing_master(dir: &std::path::Path, bind: &str, failpoint: &str) -> MasterProc {
    MasterProc::start_full(dir, bind, "", &[("EDDY_FAILPOINT", failpoint)])
}

/// Item 2: a master that dies after a CACHE_THROUGH writer's bytes reached
/// the under-storage but before the file completed leaves no object that
/// can surface as a file: deleting (or renaming) the incomplete file does
/// not bring its path back, and the staging object goes with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_mid_write_through_brings_no_path_back() {
    let dir = tempfile::tempdir().unwrap();
    let ufs = dir.path().join("ufs");
    let mut m = failing_master(dir.path(), "127.0.0.1:0", "before-complete");
    let addr = m.addr.clone();
    let w = WorkerProc::start(&dir.path().join("w"), &addr, "");
    let fs = client(&addr).await;
    fs.mkdir("/d", true).await.unwrap();
    for name in ["a", "b"] {
        wait_workers(&fs, 1).await;
        let mut wr = fs.create(format!("/d/{name}"), &through()).await.unwrap();
        wr.write(&pattern(5000, 1)).await.unwrap();
        // The worker writes the object, then the master dies at CompleteFile.
        assert!(wr.close().await.is_err(), "the master died mid-call");
        assert_eq!(m.wait().code(), Some(86));
        m = if name == "a" {
            failing_master(dir.path(), &addr, "before-complete")
        } else {
            MasterProc::start_bound(dir.path(), &addr, "")
        };
    }
    assert!(
        !ufs.join("d/a").exists() && !ufs.join("d/b").exists(),
        "nothing at the paths: {:?}",
        ufs_files(&ufs)
    );
    let c = client(&m.addr).await;
    let st = c.stat("/d/a").await.unwrap();
    assert!(!st.complete, "still incomplete after the restart");
    c.delete("/d/a", false).await.unwrap();
    assert_eq!(
        code_of(c.stat("/d/a").await.unwrap_err()),
        EddyCode::NotFound
    );
    c.rename("/d/b", "/d/c").await.unwrap();
    assert_eq!(
        code_of(c.stat("/d/b").await.unwrap_err()),
        EddyCode::NotFound
    );
    assert!(!c.stat("/d/c").await.unwrap().complete);
    // A listing (which syncs with the under-storage) finds no file either.
    let names: Vec<String> = c
        .master()
        .list("/d")
        .await
        .unwrap()
        .into_iter()
        .map(|s| String::from_utf8(s.name).unwrap())
        .collect();
    assert_eq!(names, ["c"]);
    let root: Vec<Vec<u8>> = c
        .list("/")
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(root, [b"d".to_vec()], "the staging directory is not listed");
    let files = ufs_files(&ufs);
    assert!(
        !files.iter().any(|f| f.starts_with("d/")),
        "no object under d/: {files:?}"
    );
    assert_eq!(
        code_of(c.create("/.eddy-staging", &through()).await.err().unwrap()),
        EddyCode::InvalidPath
    );
    // Deleting the renamed file removes its staging object too.
    c.delete("/d/c", false).await.unwrap();
    assert!(ufs_files(&ufs).is_empty(), "{:?}", ufs_files(&ufs));
    drop(w);
}

/// Item 4: a writer completes and cleans up *its* inode. A rename while it
/// writes moves the file it completes (and, written through, its object);
/// a cancel after another client reused the path deletes nothing of theirs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_complete_and_clean_up_their_own_inode() {
    let dir = tempfile::tempdir().unwrap();
    let ufs = dir.path().join("ufs");
    let m = MasterProc::start(dir.path(), "");
    let w = WorkerProc::start(&dir.path().join("w"), &m.addr, "");
    let (a, b) = (client(&m.addr).await, client(&m.addr).await);
    a.mkdir("/c", true).await.unwrap();

    for (wt, name) in [
        (pb::WriteType::MustCache, "cached"),
        (pb::WriteType::CacheThrough, "through"),
    ] {
        let opts = CreateOptions {
            write_type: wt,
            ..Default::default()
        };
        let (from, to) = (format!("/c/{name}"), format!("/c/{name}-moved"));
        let mut wr = a.create(&from, &opts).await.unwrap();
        wr.write(&pattern(3000, 7)).await.unwrap();
        b.rename(&from, &to).await.unwrap();
        let st = wr.close().await.expect("completes the renamed file");
        assert_eq!(st.path, to.as_bytes());
        assert_eq!(get(&b, &to).await, pattern(3000, 7));
        assert_eq!(
            code_of(b.stat(&from).await.unwrap_err()),
            EddyCode::NotFound
        );
        if wt == pb::WriteType::CacheThrough {
            assert!(st.persisted);
            assert_eq!(
                std::fs::read(ufs.join(&to[1..])).unwrap(),
                pattern(3000, 7),
                "the object is where the file is now"
            );
            assert!(!ufs.join(&from[1..]).exists(), "{:?}", ufs_files(&ufs));
        }
    }

    // A cancel (and a drop) after the path was reused deletes only the writer's own file.
    for cancel in [true, false] {
        let p = format!("/c/reused-{cancel}");
        let mut wr = a.create(&p, &through()).await.unwrap();
        wr.write(b"mine").await.unwrap();
        b.delete(&p, false).await.unwrap();
        put(&b, &p, b"theirs", pb::WriteType::CacheThrough).await;
        if cancel {
            wr.cancel()
                .await
                .expect("a writer whose file is gone cancels cleanly");
        } else {
            drop(wr);
        }
        // The drop's clean-up runs in the background; a close of another
        // writer on the same path answers only after it would have.
        let probe = format!("{p}-probe");
        put(&a, &probe, b"", pb::WriteType::MustCache).await;
        assert_eq!(get(&a, &p).await, b"theirs");
        assert_eq!(std::fs::read(ufs.join(&p[1..])).unwrap(), b"theirs");
    }
    // Completing a file id that was deleted is NOT_FOUND, not a completion
    // of whatever is at the path.
    let mut wr = a
        .create("/c/gone", &CreateOptions::default())
        .await
        .unwrap();
    wr.write(b"x").await.unwrap();
    b.delete("/c/gone", false).await.unwrap();
    put(&b, "/c/gone", b"new", pb::WriteType::MustCache).await;
    assert_eq!(code_of(wr.close().await.unwrap_err()), EddyCode::NotFound);
    assert_eq!(get(&a, "/c/gone").await, b"new");
    drop(w);
}

/// Item 3: a fill reads only the under-storage version the block belongs
/// to. A reader with metadata of a file that was renamed away, while
/// another file of another length took its path, gets an error (and then
/// the new file), never the new file's bytes cut to the old length.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fill_never_reads_another_files_bytes() {
    let dir = tempfile::tempdir().unwrap();
    // Heartbeats every 50 ms: the blocks freed below are gone from the
    // worker well within the 1 s the client and worker keep answers.
    let m = MasterProc::start(dir.path(), "worker_heartbeat_interval_ms = 50");
    let w = WorkerProc::start(&dir.path().join("w"), &m.addr, "");
    let (a, b) = (client(&m.addr).await, client(&m.addr).await);
    let old = pattern(4000, 1);
    let new = pattern(6000, 2);
    put(&b, "/p", &old, pb::WriteType::CacheThrough).await;
    // `a` fills the block once (the worker keeps the master's answer about
    // it for a moment) and caches the file's metadata.
    b.free("/p", false, false).await.unwrap();
    none_cached(&b, &w).await;
    assert!(get(&a, "/p").await == old);
    b.free("/p", false, false).await.unwrap();
    none_cached(&b, &w).await;
    b.rename("/p", "/q").await.unwrap();
    put(&b, "/p", &new, pb::WriteType::CacheThrough).await;
    b.free("/p", false, false).await.unwrap();
    none_cached(&b, &w).await;
    match a.open("/p", &Default::default()).await {
        Ok(mut r) => match r.read_to_end().await {
            Ok(got) => assert!(
                got == new,
                "only the file now at the path, whole: read {} bytes (old: {}, prefix of new: {})",
                got.len(),
                got == old,
                new.starts_with(&got)
            ),
            // The worker refuses (another version at the path); the reader
            // re-resolves the path, which names another file now.
            Err(e) => assert_eq!(code_of(e), EddyCode::NotFound),
        },
        Err(e) => panic!("open: {e}"),
    }
    // The error dropped the stale metadata: the next read is the new file.
    assert!(get(&a, "/p").await == new);
    assert!(get(&a, "/q").await == old);
    drop(w);
}

/// Persist jobs write to the staging name too: a file renamed right after
/// an ASYNC_THROUGH close is persisted where it is, and nothing is left at
/// its old path or under the staging directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persist_lands_where_the_file_is_now() {
    let dir = tempfile::tempdir().unwrap();
    let ufs = dir.path().join("ufs");
    let m = MasterProc::start(
        dir.path(),
        "replication_check_interval_ms = 50\nworker_heartbeat_interval_ms = 50",
    );
    let w = WorkerProc::start(&dir.path().join("w"), &m.addr, "");
    let fs = client(&m.addr).await;
    for i in 0..4u64 {
        let (a, b) = (format!("/a{i}"), format!("/b{i}"));
        put(&fs, &a, &pattern(7000, i), pb::WriteType::AsyncThrough).await;
        fs.rename(&a, &b).await.unwrap();
        common::eventually(std::time::Duration::from_secs(20), "persisted", || {
            let (fs, b) = (fs.clone(), b.clone());
            async move { fs.stat(&b).await.is_ok_and(|s| s.persisted) }
        })
        .await;
        assert!(std::fs::read(ufs.join(&b[1..])).unwrap() == pattern(7000, i));
    }
    // THROUGH: nothing cached, the object in place at close.
    let st = put(&fs, "/t", b"through only", pb::WriteType::Through).await;
    assert!(st.persisted);
    assert_eq!(get(&fs, "/t").await, b"through only");
    let mut files = ufs_files(&ufs);
    files.retain(|f| !f.starts_with(".eddy-staging/"));
    assert_eq!(files, ["b0", "b1", "b2", "b3", "t"]);
    assert!(
        ufs_files(&ufs).len() == files.len(),
        "no staging object is left: {:?}",
        ufs_files(&ufs)
    );
    drop(w);
}

/// A persist is handed out once: while the master places and commits a
/// persisted file (slow here: every commit takes 300 ms), the persist
/// checker, running every 50 ms, does not see the file as waiting with no
/// job out and ask a worker to persist it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persist_being_placed_is_not_handed_out_again() {
    let dir = tempfile::tempdir().unwrap();
    let slow = [("EDDY_COMMIT_DELAY_MS", "300")];
    let m = MasterProc::start_full(
        dir.path(),
        "127.0.0.1:0",
        "replication_check_interval_ms = 50\nworker_heartbeat_interval_ms = 50",
        &slow,
    );
    let w = WorkerProc::start(&dir.path().join("w"), &m.addr, "");
    let fs = client(&m.addr).await;
    put(&fs, "/p", &pattern(5000, 9), pb::WriteType::AsyncThrough).await;
    common::eventually(std::time::Duration::from_secs(20), "persisted", || {
        let fs = fs.clone();
        async move { fs.stat("/p").await.is_ok_and(|s| s.persisted) }
    })
    .await;
    // Give a second job, were one handed out, time to run and report.
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    let stats: std::collections::HashMap<String, u64> = fs
        .worker_stats(&w.addr)
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(stats["persists"], 1, "persist jobs run: {stats:?}");
    assert_eq!(stats["persist_failures"], 0, "{stats:?}");
    drop(w);
}

/// A reader whose cached metadata names a file that was renamed away (its
/// blocks no longer cached) re-resolves the path when the worker refuses the
/// stale request: the path is gone, so NOT_FOUND — not an INVALID_ARGUMENT
/// about keys — and the renamed file reads at its new name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_reader_re_resolves_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let m = MasterProc::start(dir.path(), "worker_heartbeat_interval_ms = 50");
    let w = WorkerProc::start(&dir.path().join("w"), &m.addr, "");
    let (a, b) = (client(&m.addr).await, client(&m.addr).await);
    let data = pattern(3000, 9);
    put(&b, "/s", &data, pb::WriteType::CacheThrough).await;
    assert!(get(&a, "/s").await == data, "cached in a's metadata");
    b.free("/s", false, false).await.unwrap();
    none_cached(&b, &w).await;
    b.rename("/s", "/s2").await.unwrap();
    let r = a.open("/s", &Default::default()).await;
    let e = match r {
        Ok(mut r) => r
            .read_to_end()
            .await
            .expect_err("the file is not at /s any more"),
        Err(e) => e,
    };
    assert_eq!(code_of(e), EddyCode::NotFound);
    assert!(get(&a, "/s2").await == data);
    drop(w);
}

/// A file deleted while it is written through: its close answers NOT_FOUND
/// and its bytes are removed from the staging directory, not left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_deleted_while_written_through_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let ufs = dir.path().join("ufs");
    let m = MasterProc::start(dir.path(), "");
    let w = WorkerProc::start(&dir.path().join("w"), &m.addr, "");
    let (a, b) = (client(&m.addr).await, client(&m.addr).await);
    let mut wr = a.create("/del", &through()).await.unwrap();
    wr.write(&pattern(2000, 3)).await.unwrap();
    b.delete("/del", false).await.unwrap();
    assert_eq!(code_of(wr.close().await.unwrap_err()), EddyCode::NotFound);
    assert!(ufs_files(&ufs).is_empty(), "{:?}", ufs_files(&ufs));
    drop(w);
}

/// A read never answers from a change that is not durable yet: a stat
/// racing a delete whose commit is in flight waits for it, so when the
/// master dies before the commit the stat has not said NOT_FOUND of a file
/// that is still there after the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_wait_for_what_they_saw_to_be_durable() {
    let dir = tempfile::tempdir().unwrap();
    // Every commit takes 400 ms: a window to read and crash in.
    let slow = [("EDDY_COMMIT_DELAY_MS", "400")];
    let m = MasterProc::start_full(dir.path(), "127.0.0.1:0", "", &slow);
    let addr = m.addr.clone();
    let (a, b) = (m.client().await, m.client().await);
    a.create_file("/x", &CreateOptions::default())
        .await
        .unwrap();
    a.complete_file("/x", 0, false).await.unwrap();
    let deleting = tokio::spawn(async move { a.delete("/x", false).await });
    // The delete is applied in memory at once and durable 400 ms later;
    // there is no signal for the first, so give it a moment.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let reading = tokio::spawn(async move { b.stat("/x").await });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    m.kill9();
    let _ = deleting.await.unwrap();
    match reading.await.unwrap() {
        Ok(st) => assert_eq!(st.path, b"/x"),
        Err(e) => assert_ne!(
            code_of(e),
            EddyCode::NotFound,
            "the stat answered from a delete that was never durable"
        ),
    }
    let m = MasterProc::start_bound(dir.path(), &addr, "");
    let c = m.client().await;
    assert!(c.exists("/x").await.unwrap(), "the delete never committed");
}
