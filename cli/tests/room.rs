//! Room for new blocks: a cache full of blocks it may drop still takes
//! writes over TCP, a disk-tier directory taken out of service takes out
//! only itself and comes back once it works again, and a load moves on
//! from a worker whose disk failed.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Cluster, MasterProc, WorkerProc, eventually, pattern};
use eddy_client::pb::{PlacementKind, WriteType};
use eddy_client::{CreateOptions, EddyCode, FileSystem};

const MIB: usize = 1 << 20;
/// 1 MiB blocks and heartbeats every 100 ms, so the master's view of the
/// worker's tiers follows quickly.
const MASTER: &str = "default_block_size = 1048576\nworker_heartbeat_interval_ms = 100";

/// Bytes of `tier` used on every live worker, as the master sees them.
async fn master_used(fs: &FileSystem, tier: &str) -> u64 {
    let info = fs.master().cluster_info().await.unwrap();
    info.tiers
        .iter()
        .filter(|t| t.tier == tier)
        .map(|t| t.used_bytes)
        .sum()
}

/// Writes a whole file; the error of `create`, `write` or `close`.
async fn try_put(
    fs: &FileSystem,
    path: &str,
    data: &[u8],
    wt: WriteType,
) -> Result<(), eddy_client::ClientError> {
    let o = CreateOptions {
        write_type: wt,
        ..Default::default()
    };
    let mut w = fs.create(path, &o).await?;
    w.write(data).await?;
    w.close().await.map(|_| ())
}

fn report(c: &Cluster) -> String {
    let out = c.master.cli(&["report"]);
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_memory_full_of_evictable_blocks_takes_tcp_writes() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(
        dir.path(),
        1,
        MASTER,
        "memory_capacity = 33554432\npromote_interval_ms = 0",
    );
    let fs = c.fs().await;
    // 32 MiB of persisted (CACHE_THROUGH) blocks: memory is full, and every
    // block in it may be dropped (the under-storage has it).
    for i in 0..8 {
        let d = pattern(4 * MIB, 100 + i);
        try_put(&fs, &format!("/old{i}"), &d, WriteType::CacheThrough)
            .await
            .unwrap();
    }
    eventually(
        Duration::from_secs(10),
        "the master sees memory full",
        || {
            let fs = &fs;
            async move { master_used(fs, "MEM").await == 32 * MIB as u64 }
        },
    )
    .await;

    // A fresh write over TCP finds room: the worker drops old blocks.
    let d = pattern(3 * MIB + 5, 7);
    try_put(&fs, "/fresh", &d, WriteType::CacheThrough)
        .await
        .unwrap();
    assert!(common::get(&fs, "/fresh").await == d);

    // Many writers at once against a full cache, 16 over TCP and 8 through
    // shared memory: none is turned away.
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..24u64 {
        let fs = if i < 16 {
            c.fs().await
        } else {
            c.fs_local().await
        };
        tasks.spawn(async move {
            let d = pattern(2 * MIB + 3, 1000 + i);
            let path = format!("/many{i}");
            let r = try_put(&fs, &path, &d, WriteType::CacheThrough).await;
            (i, r.map_err(|e| (e.code(), e.to_string())))
        });
    }
    let all = tokio::time::timeout(Duration::from_secs(60), async {
        let mut out = Vec::new();
        while let Some(r) = tasks.join_next().await {
            out.push(r.unwrap());
        }
        out
    })
    .await
    .expect("24 writers finish within a minute");
    for (i, r) in &all {
        assert!(r.is_ok(), "writer {i}: {r:?}");
    }
    for i in 0..24u64 {
        let want = pattern(2 * MIB + 3, 1000 + i);
        assert!(
            common::get(&fs, &format!("/many{i}")).await == want,
            "/many{i}"
        );
    }
    // What was dropped is still readable: the under-storage has it.
    assert!(common::get(&fs, "/old0").await == pattern(4 * MIB, 100));
    let s = fs.worker_stats(&c.workers[0].addr).await.unwrap();
    let evictions = s.iter().find(|(k, _)| k == "evictions").map_or(0, |x| x.1);
    assert!(evictions >= 8, "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_with_less_room_than_a_block_takes_short_files() {
    let dir = tempfile::tempdir().unwrap();
    // The default 64 MiB blocks over 8 MiB of memory: no worker has room
    // for a whole block, yet a short file fits.
    let c = Cluster::start(
        dir.path(),
        1,
        "worker_heartbeat_interval_ms = 100",
        "memory_capacity = 8388608\npromote_interval_ms = 0",
    );
    let fs = c.fs().await;
    let d = pattern(3 * MIB, 11);
    try_put(&fs, "/short", &d, WriteType::MustCache)
        .await
        .unwrap();
    assert!(common::get(&fs, "/short").await == d);
    // A file that does not fit is refused by the worker, saying why.
    let e = try_put(&fs, "/long", &pattern(12 * MIB, 12), WriteType::MustCache)
        .await
        .unwrap_err();
    assert_eq!(e.code(), EddyCode::NoSpace, "{e}");
    assert!(common::get(&fs, "/short").await == d);
}

/// `[worker]` keys: `mem` MiB of memory over one SSD tier of `dirs`.
fn ssd(mem: u64, dirs: &[(&Path, u64)]) -> String {
    let paths: Vec<String> = dirs
        .iter()
        .map(|(p, _)| format!("{:?}", p.display().to_string()))
        .collect();
    let quotas: Vec<String> = dirs.iter().map(|(_, q)| (q << 20).to_string()).collect();
    format!(
        "memory_capacity = {}\npromote_interval_ms = 0\n\
         tiers = [{{ alias = \"SSD\", dirs = [{}], quotas = [{}] }}]\n",
        mem << 20,
        paths.join(", "),
        quotas.join(", ")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bad_directory_takes_out_only_itself_and_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    let c = Cluster::start(dir.path(), 1, MASTER, &ssd(2, &[(&a, 8)]));
    let fs = c.fs().await;
    for i in 0..6 {
        let d = pattern(MIB, 300 + i);
        try_put(&fs, &format!("/f{i}"), &d, WriteType::CacheThrough)
            .await
            .unwrap();
    }
    // The directory stops being usable (its block folder replaced by a
    // file, which even root cannot write into): it is taken out.
    let blocks = a.join("eddy-blocks");
    std::fs::remove_dir_all(&blocks).unwrap();
    std::fs::write(&blocks, b"not a directory").unwrap();
    eventually(Duration::from_secs(10), "report shows the dir bad", || {
        let c = &c;
        async move { report(c).contains("BAD: ") }
    })
    .await;
    eventually(
        Duration::from_secs(10),
        "the master sees memory full",
        || {
            let fs = &fs;
            async move { master_used(fs, "MEM").await == 2 * MIB as u64 }
        },
    )
    .await;

    // Memory is full of blocks it may drop, and the only disk directory is
    // out: writes still go to memory.
    for i in 0..3 {
        let d = pattern(MIB, 400 + i);
        let r = try_put(&fs, &format!("/after{i}"), &d, WriteType::CacheThrough).await;
        if let Err(e) = &r {
            assert_ne!(e.code(), EddyCode::NoWorkerAvailable, "{e}");
        }
        r.unwrap();
        assert!(common::get(&fs, &format!("/after{i}")).await == d);
    }

    // The directory is repaired: the worker probes it again and puts it
    // back in service; blocks move down into it again.
    std::fs::remove_file(&blocks).unwrap();
    std::fs::create_dir(&blocks).unwrap();
    eventually(Duration::from_secs(15), "report shows the dir back", || {
        let c = &c;
        async move { !report(c).contains("BAD: ") }
    })
    .await;
    for i in 0..4 {
        let d = pattern(MIB, 500 + i);
        try_put(&fs, &format!("/back{i}"), &d, WriteType::CacheThrough)
            .await
            .unwrap();
    }
    eventually(
        Duration::from_secs(10),
        "blocks land in the dir again",
        || {
            let fs = &fs;
            async move { master_used(fs, "SSD").await >= 2 * MIB as u64 }
        },
    )
    .await;
    let on_disk = std::fs::read_dir(&blocks).unwrap().count();
    assert!(on_disk >= 2, "{on_disk} block files");
    for i in 0..4 {
        assert!(common::get(&fs, &format!("/back{i}")).await == pattern(MIB, 500 + i));
    }
}

/// Unmounts a test filesystem on drop.
struct Mounted(std::path::PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// A tmpfs of `mib` MiB at `at`, or None where mounting is not allowed.
fn small_fs(at: &Path, mib: u64) -> Option<Mounted> {
    std::fs::create_dir_all(at).unwrap();
    let ok = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
        .arg(at)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    ok.then(|| Mounted(at.to_path_buf()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_directory_is_taken_out_alone_and_returns_once_space_is_freed() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    // Directory a claims 16 MiB on a filesystem of 3: it fills up for real.
    let Some(_mounted) = small_fs(&a, 3) else {
        eprintln!("skipped: mounting a small filesystem needs root");
        return;
    };
    let c = Cluster::start(dir.path(), 1, MASTER, &ssd(2, &[(&a, 16), (&b, 4)]));
    let fs = c.fs().await;
    for i in 0..8 {
        let d = pattern(MIB, 600 + i);
        try_put(&fs, &format!("/f{i}"), &d, WriteType::CacheThrough)
            .await
            .unwrap();
    }
    eventually(Duration::from_secs(10), "report shows a full", || {
        let c = &c;
        async move { report(c).contains("No space left on device") }
    })
    .await;
    // Directory b and memory keep taking blocks: writes go on, though a
    // still holds the blocks it took before it filled.
    for i in 0..4 {
        let d = pattern(MIB, 700 + i);
        try_put(&fs, &format!("/g{i}"), &d, WriteType::CacheThrough)
            .await
            .unwrap();
        assert!(common::get(&fs, &format!("/g{i}")).await == d);
    }
    for i in 0..8 {
        assert!(common::get(&fs, &format!("/f{i}")).await == pattern(MIB, 600 + i));
    }
    let text = report(&c);
    assert_eq!(text.matches("BAD: ").count(), 1, "only a is out:\n{text}");

    // Space is freed (the files go, and their blocks with them): a is
    // probed again and comes back.
    for i in 0..8 {
        fs.delete(format!("/f{i}"), false).await.unwrap();
    }
    eventually(Duration::from_secs(20), "report shows a back", || {
        let c = &c;
        async move { !report(c).contains("BAD: ") }
    })
    .await;
    let before = std::fs::read_dir(a.join("eddy-blocks")).unwrap().count();
    for i in 0..4 {
        let d = pattern(MIB, 800 + i);
        try_put(&fs, &format!("/h{i}"), &d, WriteType::CacheThrough)
            .await
            .unwrap();
    }
    let after = std::fs::read_dir(a.join("eddy-blocks")).unwrap().count();
    assert!(
        after > before,
        "blocks move into a again: {before} -> {after}"
    );
    // It came back limited to what its filesystem holds: more blocks make
    // it move its own down (evict) instead of filling up again.
    for i in 0..6 {
        let d = pattern(MIB, 900 + i);
        try_put(&fs, &format!("/k{i}"), &d, WriteType::CacheThrough)
            .await
            .unwrap();
    }
    // Once a heartbeat newer than the writes has arrived, a is still in.
    let written = std::time::Instant::now();
    eventually(
        Duration::from_secs(10),
        "a heartbeat after the writes",
        || {
            let fs = &fs;
            async move {
                let info = fs.master().cluster_info().await.unwrap();
                u128::from(info.workers[0].last_heartbeat_ago_ms) < written.elapsed().as_millis()
            }
        },
    )
    .await;
    let text = report(&c);
    assert!(!text.contains("BAD: "), "{text}");
    for i in 0..4 {
        assert!(common::get(&fs, &format!("/h{i}")).await == pattern(MIB, 800 + i));
    }
}

/// A worker whose memory is taken (a block a client maps) and whose only
/// disk directory fails under a load answers INTERNAL, not NO_SPACE; `eddy
/// fs load` then moves on to the next worker placement names, which fills
/// the block from the under-storage, instead of failing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_load_moves_on_from_a_worker_whose_disk_failed() {
    let dir = tempfile::tempdir().unwrap();
    let ssd_dir = dir.path().join("a-ssd");
    let m = MasterProc::start(dir.path(), MASTER);
    // a: memory for one block over one SSD directory, and a socket for
    // short-circuit; b: memory only.
    let sock = dir.path().join("a.sock").display().to_string();
    let a_cfg = format!("domain_socket = {sock:?}\n{}", ssd(1, &[(&ssd_dir, 8)]));
    let a = WorkerProc::start(&dir.path().join("a"), &m.addr, &a_cfg);
    let b = WorkerProc::start(
        &dir.path().join("b"),
        &m.addr,
        "memory_capacity = 33554432\npromote_interval_ms = 0",
    );
    let fs = tcp_client(&m.addr).await;
    eventually(Duration::from_secs(10), "both workers registered", || {
        let fs = &fs;
        async move { fs.master().cluster_info().await.unwrap().workers.len() == 2 }
    })
    .await;
    // One-block files in the under-storage; the first two whose miss goes
    // to a (rendezvous hashing is fixed, so this is the worker a load asks
    // first): one to hold a's memory, one to load.
    let a_port: u32 = a.addr.rsplit_once(':').unwrap().1.parse().unwrap();
    let mut on_a = Vec::new();
    for i in 0..16 {
        let path = format!("/u{i}");
        std::fs::write(m.ufs().join(&path[1..]), pattern(MIB, 1100 + i)).unwrap();
        fs.stat(&path).await.unwrap();
        let blocks = fs.master().file_blocks(&path).await.unwrap();
        let block = blocks.blocks[0].block_id;
        let w = fs
            .master()
            .select_worker(block, "", MIB as u64, PlacementKind::DeterministicHash, &[])
            .await
            .unwrap();
        if w.address.unwrap().data_port == a_port {
            on_a.push((path, i));
        }
    }
    let [(held, _), (loaded, seed), ..] = on_a.as_slice() else {
        panic!("fewer than two of 16 blocks hash to a: {on_a:?}");
    };
    m.cli_ok(&["fs", "load", held]);
    // A client maps the block: it can neither leave a's memory nor move
    // down, so the next block must go to the disk.
    let local = eddy_client::FileSystem::connect(&m.addr).await.unwrap();
    let r = local.open(held, &Default::default()).await.unwrap();
    let view = r.map_range(0, MIB as u64).await.unwrap();
    // The disk directory breaks (its block folder replaced by a file).
    let blocks = ssd_dir.join("eddy-blocks");
    std::fs::remove_dir_all(&blocks).unwrap();
    std::fs::write(&blocks, b"not a directory").unwrap();

    let out = m.cli(&["fs", "load", loaded]);
    assert!(
        out.status.success(),
        "load moves on from a: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let blocks = fs.master().file_blocks(loaded).await.unwrap();
    let b_port: u32 = b.addr.rsplit_once(':').unwrap().1.parse().unwrap();
    let at: Vec<u32> = blocks.blocks[0]
        .locations
        .iter()
        .map(|l| l.data_port)
        .collect();
    assert_eq!(at, [b_port], "cached on b only");
    assert!(common::get(&fs, loaded).await == pattern(MIB, 1100 + seed));
    // a did refuse: its directory is out of service.
    eventually(Duration::from_secs(10), "report shows a's dir bad", || {
        let m = &m;
        async move { m.cli_ok(&["report"]).contains("BAD: ") }
    })
    .await;
    drop(view);
}

/// A client that reads over TCP only.
async fn tcp_client(master: &str) -> FileSystem {
    let opts = eddy_client::ClientOptions {
        short_circuit: false,
        ..Default::default()
    };
    FileSystem::connect_with(master, opts).await.unwrap()
}
