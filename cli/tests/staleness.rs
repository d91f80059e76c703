//! The client's metadata cache: a client always reads its own changes, and
//! another client's are seen within `ClientOptions::metadata_ttl`.

mod common;

use std::time::{Duration, Instant};

use common::{Cluster, eventually, get, pattern, put};
use eddy_client::{ClientOptions, EddyCode, FileSystem, OpenOptions, pb};

const SMALL_BLOCKS: &str = "default_block_size = 1048576";
const MC: pb::WriteType = pb::WriteType::MustCache;

/// A TCP-only client whose metadata lives `ttl`.
async fn client(c: &Cluster, ttl: Duration) -> FileSystem {
    let opts = ClientOptions {
        short_circuit: false,
        metadata_ttl: ttl,
        ..Default::default()
    };
    FileSystem::connect_with(&c.master.addr, opts)
        .await
        .unwrap()
}

async fn open_code(fs: &FileSystem, path: &str) -> Result<Vec<u8>, EddyCode> {
    let mut r = fs
        .open(path, &OpenOptions::default())
        .await
        .map_err(|e| e.code())?;
    r.read_to_end().await.map_err(|e| e.code())
}

fn signal(pid: u32, sig: rustix::process::Signal) {
    let pid = rustix::process::Pid::from_raw(pid as i32).expect("a real pid");
    rustix::process::kill_process(pid, sig).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_reads_its_own_renames_and_deletes_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path(), 1, SMALL_BLOCKS, "");
    // A long bound: anything stale would show.
    let fs = client(&c, Duration::from_secs(60)).await;
    fs.mkdir("/d", false).await.unwrap();
    let (one, two) = (pattern(5000, 1), pattern(7000, 2));
    put(&fs, "/d/a", &one, MC).await;
    assert_eq!(get(&fs, "/d/a").await, one, "read once: cached");

    fs.rename("/d/a", "/d/b").await.unwrap();
    assert_eq!(open_code(&fs, "/d/a").await.err(), Some(EddyCode::NotFound));
    assert_eq!(get(&fs, "/d/b").await, one);
    // A new file at the old name: its bytes, not the old ones.
    put(&fs, "/d/a", &two, MC).await;
    assert_eq!(get(&fs, "/d/a").await, two);
    // Renaming over the directory moves the cached entries under it too.
    fs.rename("/d", "/e").await.unwrap();
    assert_eq!(open_code(&fs, "/d/b").await.err(), Some(EddyCode::NotFound));
    assert_eq!(get(&fs, "/e/b").await, one);
    fs.delete("/e/b", false).await.unwrap();
    assert_eq!(open_code(&fs, "/e/b").await.err(), Some(EddyCode::NotFound));
    assert_eq!(get(&fs, "/e/a").await, two);
    fs.delete("/e", true).await.unwrap();
    assert_eq!(open_code(&fs, "/e/a").await.err(), Some(EddyCode::NotFound));
}

/// An open whose request reached the master before this client's rename,
/// and whose answer (the old file) arrives after the rename dropped the
/// path, must not put the old file back into the cache. The master is
/// stopped (SIGSTOP) while both requests go out, so the open's is ahead of
/// the rename's on the connection and is answered first.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_open_racing_a_rename_never_caches_the_old_file_again() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path(), 1, SMALL_BLOCKS, "");
    let fs = client(&c, Duration::from_secs(60)).await;
    let master = c.master.pid();
    let mut built = false;
    // No signal tells when a request has left the client. It goes out at
    // once, so a moment is plenty to have the open's ahead of the rename's;
    // on a loaded machine a try may miss, and the next waits longer.
    for attempt in 1..=5u64 {
        let (old, new) = (format!("/a{attempt}"), format!("/b{attempt}"));
        let data = pattern(3000, attempt);
        put(&fs, &old, &data, MC).await;
        let moment = Duration::from_millis(100 * attempt);
        signal(master, rustix::process::Signal::STOP);
        let open = {
            let (fs, old) = (fs.clone(), old.clone());
            tokio::spawn(async move { open_code(&fs, &old).await })
        };
        tokio::time::sleep(moment).await;
        let rename = {
            let (fs, old, new) = (fs.clone(), old.clone(), new.clone());
            tokio::spawn(async move { fs.rename(&old, &new).await })
        };
        tokio::time::sleep(moment).await;
        signal(master, rustix::process::Signal::CONT);
        // Ok: the open was answered before the rename (the race built).
        let opened = open.await.unwrap();
        rename.await.unwrap().unwrap();
        assert_eq!(
            open_code(&fs, &old).await.err(),
            Some(EddyCode::NotFound),
            "the renamed file is not served from the cache under its old name"
        );
        assert_eq!(get(&fs, &new).await, data);
        if opened == Ok(data) {
            built = true;
            break;
        }
    }
    assert!(built, "the open was never answered before the rename");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_no_metadata_cache_another_clients_changes_are_seen_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path(), 1, SMALL_BLOCKS, "");
    let writer = client(&c, Duration::from_secs(1)).await;
    let reader = client(&c, Duration::ZERO).await;
    let (one, two) = (pattern(4000, 4), pattern(4500, 5));
    put(&writer, "/x", &one, MC).await;
    assert_eq!(get(&reader, "/x").await, one);
    writer.delete("/x", false).await.unwrap();
    assert_eq!(
        open_code(&reader, "/x").await.err(),
        Some(EddyCode::NotFound)
    );
    put(&writer, "/x", &two, MC).await;
    assert_eq!(get(&reader, "/x").await, two);
    writer.rename("/x", "/y").await.unwrap();
    assert_eq!(
        open_code(&reader, "/x").await.err(),
        Some(EddyCode::NotFound)
    );
    assert_eq!(get(&reader, "/y").await, two);
}

/// Another client may be stale, but for the bound at most; cached reads
/// within it need no master (documented in README.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn another_client_is_stale_for_the_bound_at_most() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path(), 1, SMALL_BLOCKS, "");
    let writer = c.fs().await;
    // The default bound, and a longer one.
    for ttl in [eddy_client::DEFAULT_METADATA_TTL, Duration::from_secs(3)] {
        let reader = client(&c, ttl).await;
        let data = pattern(6000, 6);
        put(&writer, "/s", &data, MC).await;
        let fetched = Instant::now();
        assert_eq!(get(&reader, "/s").await, data);
        writer.delete("/s", false).await.unwrap();
        eventually(
            ttl + Duration::from_secs(2),
            "the reader sees the delete",
            || async { open_code(&reader, "/s").await.err() == Some(EddyCode::NotFound) },
        )
        .await;
        assert!(
            fetched.elapsed() <= ttl + Duration::from_secs(2),
            "stale for the bound at most"
        );
    }

    // Cached metadata serves reads with the master stopped, within the bound.
    let reader = client(&c, Duration::from_secs(30)).await;
    let data = pattern(6000, 6);
    put(&writer, "/t", &data, MC).await;
    assert_eq!(get(&reader, "/t").await, data);
    signal(c.master.pid(), rustix::process::Signal::STOP);
    let r = open_code(&reader, "/t").await;
    signal(c.master.pid(), rustix::process::Signal::CONT);
    assert!(
        r == Ok(data),
        "read with cached metadata, no master needed: {:?}",
        r.err()
    );
}

/// The CLI takes the bound as `--metadata-cache` (or EDDY_METADATA_CACHE).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_takes_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path(), 1, SMALL_BLOCKS, "");
    let fs = c.fs().await;
    put(&fs, "/c", b"cli bytes", MC).await;
    let out = c
        .master
        .cli_ok(&["--metadata-cache", "0", "fs", "cat", "/c"]);
    assert_eq!(out, "cli bytes");
    let o = std::process::Command::new(common::EDDY)
        .args(["--master", &c.master.addr, "fs", "cat", "/c"])
        .env("EDDY_METADATA_CACHE", "soon")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "a bad duration is a usage error");
    let help = c.master.cli_ok(&["--help"]);
    assert!(help.contains("--metadata-cache"), "{help}");
}

/// A reader whose file was deleted and replaced under its path while it
/// was open, and whose block no worker can give it any more, asks the
/// master again by path: that names the new file now, whose bytes it must
/// not return as its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reader_of_a_replaced_file_never_gets_the_new_files_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Cluster::start(dir.path(), 1, SMALL_BLOCKS, "memory_capacity = 67108864");
    // A second worker with more room: placement puts new blocks there.
    c.workers.push(common::WorkerProc::start(
        dir.path(),
        &c.master.addr,
        "memory_capacity = 134217728",
    ));
    let fs = c.fs().await;
    let holder = |fs: FileSystem| async move {
        let b = fs.master().file_blocks("/r").await.unwrap().blocks;
        b[0].locations.first().map(|l| l.worker_id)
    };
    let (old, new) = (pattern(5000, 7), pattern(9000, 8));
    for attempt in 0..16 {
        // The old file: persisted, then dropped from the workers, so a read
        // goes to the worker the hash names for its block, which fills it
        // from the under-storage.
        put(&fs, "/r", &old, pb::WriteType::CacheThrough).await;
        let big = holder(fs.clone()).await.expect("cached where written");
        fs.free("/r", false, false).await.unwrap();
        let mut reader = fs.open("/r", &OpenOptions::default()).await.unwrap();
        let block = reader.status().block_ids[0];
        let miss = fs
            .master()
            .select_worker(block, "", 1, pb::PlacementKind::DeterministicHash, &[])
            .await
            .unwrap()
            .worker_id;
        fs.delete("/r", false).await.unwrap();
        if miss == big {
            // The new file's worker would be the one that failed the read
            // already: the client does not ask it twice. Another file id.
            assert!(attempt < 15, "the hash never named the other worker");
            continue;
        }
        // The new file, on the other worker than the one that will fail.
        put(&fs, "/r", &new, MC).await;
        assert_eq!(holder(fs.clone()).await, Some(big));
        match reader.read_to_end().await {
            Ok(bytes) => assert!(bytes == old, "another file's bytes came back"),
            Err(e) => assert_eq!(e.code(), EddyCode::NotFound, "{e}"),
        }
        assert_eq!(get(&fs, "/r").await, new);
        return;
    }
}
