use super::*;
use crate::segment::SegmentWriter;

fn seg(len: u64) -> Segment {
    SegmentWriter::create("t", len, false)
        .unwrap()
        .seal(len)
        .unwrap()
}

#[tokio::test]
async fn budget_evicts_lru_and_spares_pins_and_readers() {
    // Block 0 of files 1..=4.
    let b = |f: u64| eddy_proto::block_id(f, 0);
    let s = BlockStore::new(300);
    for f in [1, 2, 3] {
        let r = s.reserve(100).await.unwrap();
        s.insert(b(f), seg(100), r, false);
    }
    assert_eq!(s.used(), 300);
    s.get(b(1)); // file 2's block is now the oldest
    let r = s.reserve(100).await.unwrap();
    assert!(!s.contains(b(2)), "least recently used went first");
    s.insert(b(4), seg(100), r, false);
    assert_eq!(s.take_changes().1, vec![b(2)]);

    // A reader holding file 3's block keeps it; pinned file 1's stays.
    let reading = s.get(b(3)).unwrap();
    s.set_pinned(7, [1], []);
    assert_eq!(s.pinned_version(), 7);
    let r = s.reserve(100).await.unwrap();
    assert!(s.contains(b(1)) && s.contains(b(3)) && !s.contains(b(4)));
    drop(r);
    let e = s.reserve(250).await.err().unwrap();
    assert_eq!(e.needed, 250);
    drop(reading);
    s.remove(&[b(1), b(3)]);
    assert_eq!(s.used(), 0);

    // A sole copy (MUST_CACHE) is never evicted.
    let r = s.reserve(200).await.unwrap();
    s.insert(b(5), seg(200), r, false);
    s.keep_sole_copies([b(5)]);
    assert!(s.reserve(200).await.is_err());
    s.remove(&[b(5)]);
    assert!(s.reserve(300).await.is_ok());
    assert_eq!(
        Arc::strong_count(&s),
        1,
        "reservations leave no handle behind"
    );
    assert_eq!(s.block_count(), 0);
}

#[tokio::test]
async fn evictable_bytes_leave_out_pins_sole_copies_and_readers() {
    let b = |f: u64| eddy_proto::block_id(f, 0);
    let s = BlockStore::new(800);
    for f in 1..=5 {
        let r = s.reserve(100).await.unwrap();
        s.insert(b(f), seg(100), r, false);
    }
    assert_eq!(s.tiers()[0].evictable, 500);
    s.set_pinned(1, [1], []);
    s.keep_sole_copies([b(2)]);
    let reading = s.get(b(3)).unwrap();
    assert_eq!(s.tiers()[0].evictable, 200, "only files 4 and 5");
    drop(reading);
    s.release_sole(&[b(2)]);
    assert_eq!(s.tiers()[0].evictable, 400);
    // What is counted can be dropped: with memory full, everything
    // but the pinned block can be reserved.
    let r = s.reserve(300).await.unwrap();
    s.insert(b(6), seg(300), r, false);
    assert_eq!(s.tiers()[0].evictable, 700);
    assert!(s.reserve(700).await.is_ok());
    assert!(s.reserve(701).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_fill_once() {
    let s = BlockStore::new(1 << 20);
    let fills = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (s, fills) = (s.clone(), fills.clone());
        tasks.push(tokio::spawn(async move {
            let s2 = s.clone();
            s.get_or_fill(9, || async move {
                fills.fetch_add(1, Ordering::SeqCst);
                tokio::task::yield_now().await;
                let r = s2.reserve(10).await.unwrap();
                Ok::<_, ()>(Block::Mem(s2.insert(9, seg(10), r, false)))
            })
            .await
            .unwrap()
            .len()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 10);
    }
    assert_eq!(fills.load(Ordering::SeqCst), 1);
    assert_eq!(s.stats.cache_misses.load(Ordering::SeqCst), 1);
    assert_eq!(s.stats.cache_hits.load(Ordering::SeqCst), 15);
    assert!(s.fills.lock().is_empty(), "no fill locks left behind");
}

// ---- tiers ----

use crate::disk::Dir;
use std::path::Path;

const K: u64 = 100 * 1024;

fn bid(f: u64) -> u64 {
    eddy_proto::block_id(f, 0)
}

fn data(f: u64, len: u64) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(13) ^ f as u8)
        .collect()
}

fn seg_of(bytes: &[u8]) -> Segment {
    let mut w = SegmentWriter::create("t", bytes.len() as u64, false).unwrap();
    w.as_mut_slice()[..bytes.len()].copy_from_slice(bytes);
    w.seal(bytes.len() as u64).unwrap()
}

/// MEM of `mem` bytes over disk tiers of one directory each under `root`.
fn tiered(root: &Path, engine: Engine, mem: u64, tiers: &[(&str, u64)]) -> Arc<BlockStore> {
    let specs = tiers
        .iter()
        .map(|(alias, quota)| TierSpec {
            alias: alias.to_string(),
            dirs: vec![Dir::new(root.join(alias), *quota)],
        })
        .collect();
    BlockStore::with_tiers(mem, specs, Arc::new(engine))
}

async fn put(s: &Arc<BlockStore>, f: u64, len: u64) {
    let r = s.reserve(len).await.unwrap();
    s.insert(bid(f), seg_of(&data(f, len)), r, true);
}

async fn bytes_of(s: &Arc<BlockStore>, f: u64) -> Option<Vec<u8>> {
    Some(match s.get(bid(f))? {
        Block::Mem(seg) => seg.as_slice().to_vec(),
        Block::Disk(d) => crate::disk::read_all(s.engine(), &d, 0, d.len)
            .await
            .unwrap(),
    })
}

fn tiers_of(s: &BlockStore, files: impl IntoIterator<Item = u64>) -> Vec<String> {
    files
        .into_iter()
        .map(|f| s.tier_of(bid(f)).unwrap_or_else(|| "-".into()))
        .collect()
}

/// The block-store contract: every store (memory only, or with disk
/// tiers on either engine) keeps what it holds byte-exact within its
/// budget, reports what it dropped, and removes cleanly.
async fn contract(s: Arc<BlockStore>) {
    for f in 1..=8 {
        put(&s, f, K + f).await;
        assert!(s.used() <= s.capacity());
    }
    let (added, evicted) = s.take_changes();
    for f in 1..=8u64 {
        match bytes_of(&s, f).await {
            Some(b) => assert!(b == data(f, K + f), "file {f} reads back"),
            None => assert!(evicted.contains(&bid(f)), "file {f} reported evicted"),
        }
    }
    let held: Vec<(u64, u64, String)> = {
        let mut r = s.report();
        r.sort();
        r
    };
    assert_eq!(held.len(), s.block_count());
    for (b, len, tier) in &held {
        assert_eq!(*len, K + eddy_proto::file_id_of_block(*b));
        assert_eq!(s.tier_of(*b).as_ref(), Some(tier));
        assert!(
            added.iter().any(|(a, _, t)| a == b && t == tier),
            "move of {b} reported"
        );
    }
    let info = s.tiers();
    assert_eq!(
        info.iter().map(|t| t.blocks).sum::<u64>(),
        held.len() as u64
    );
    for t in &info {
        assert!(t.used <= t.capacity, "{t:?}");
    }
    let ids: Vec<u64> = held.iter().map(|h| h.0).collect();
    s.remove(&ids);
    assert_eq!(s.block_count(), 0);
    assert!(s.tiers().iter().all(|t| t.used == 0 && t.blocks == 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_contract_holds_for_memory_and_both_disk_engines() {
    contract(BlockStore::new(4 * K)).await;
    for engine in [Engine::detect(32, 0), Engine::pread()] {
        let name = engine.describe();
        let dir = tempfile::tempdir().unwrap();
        let s = tiered(dir.path(), engine, 3 * K, &[("SSD", 4 * K)]);
        contract(s).await;
        // Nothing left on disk after the removes.
        let left = std::fs::read_dir(dir.path().join("SSD").join(crate::disk::BLOCKS_DIR))
            .unwrap()
            .count();
        assert_eq!(left, 0, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_tiers_demote_down_and_the_last_evicts() {
    let dir = tempfile::tempdir().unwrap();
    let s = tiered(
        dir.path(),
        Engine::detect(32, 0),
        2 * K,
        &[("SSD", 2 * K), ("HDD", 2 * K)],
    );
    for f in 1..=8 {
        put(&s, f, K).await;
    }
    assert_eq!(
        tiers_of(&s, 1..=8),
        ["-", "-", "HDD", "HDD", "SSD", "SSD", "MEM", "MEM"]
    );
    let (added, evicted) = s.take_changes();
    assert_eq!(evicted, [bid(1), bid(2)]);
    assert!(added.contains(&(bid(3), K, "HDD".into())));
    // Six moves from memory, four from SSD to HDD.
    assert_eq!(s.stats.demotions.load(Ordering::Relaxed), 10);
    for f in 3..=8 {
        assert!(bytes_of(&s, f).await.unwrap() == data(f, K));
    }

    // A CACHE_PROMOTE read moves file 3 up; memory's oldest moves down.
    assert!(matches!(s.promote(bid(3)).await, Some(Block::Mem(_))));
    assert_eq!(
        tiers_of(&s, 3..=8),
        ["MEM", "-", "HDD", "SSD", "SSD", "MEM"]
    );
    assert!(bytes_of(&s, 3).await.unwrap() == data(3, K));
    let (added, _) = s.take_changes();
    assert!(added.contains(&(bid(3), K, "MEM".into())));

    // Background promotion: a block read twice goes up when memory has room.
    s.remove(&[bid(8)]);
    s.get(bid(5));
    s.get(bid(5));
    s.get(bid(6)); // once: not hot
    assert_eq!(s.promote_hot(true, 8).await, 0, "busy: backs off");
    s.get(bid(5));
    s.get(bid(5));
    assert_eq!(s.promote_hot(false, 8).await, 1);
    assert_eq!(s.tier_of(bid(5)).as_deref(), Some("MEM"));
    assert_eq!(s.stats.promotions.load(Ordering::Relaxed), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pins_and_sole_copies_never_leave_the_worker() {
    let dir = tempfile::tempdir().unwrap();
    let s = tiered(dir.path(), Engine::pread(), 2 * K, &[("SSD", 2 * K)]);
    put(&s, 1, K).await;
    put(&s, 2, K).await;
    s.set_pinned(1, [1], []);
    s.keep_sole_copies([bid(2)]);
    // File 1 is pinned to memory; sole copy 2 may go down but not out.
    put(&s, 3, K).await;
    put(&s, 4, K).await;
    assert_eq!(tiers_of(&s, 1..=4), ["MEM", "SSD", "SSD", "MEM"]);
    put(&s, 5, K).await;
    assert_eq!(tiers_of(&s, 1..=5), ["MEM", "SSD", "-", "SSD", "MEM"]);
    // Everything left is pinned or a sole copy: new data is refused, loudly.
    s.keep_sole_copies([bid(4), bid(5)]);
    let e = s.reserve(K).await.err().expect("no room");
    assert_eq!(e.needed, K);
    // A pin that allows demotion lets file 1 go down (not out).
    s.set_pinned(2, [1], [1]);
    s.remove(&[bid(4)]);
    put(&s, 6, K).await;
    assert_eq!(tiers_of(&s, [1, 2, 5, 6]), ["SSD", "SSD", "MEM", "MEM"]);
    for f in [1, 2, 5, 6] {
        assert!(bytes_of(&s, f).await.unwrap() == data(f, K));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_recovers_disk_blocks_and_a_bad_directory_is_taken_out() {
    let dir = tempfile::tempdir().unwrap();
    let spec = |q| {
        vec![TierSpec {
            alias: "SSD".into(),
            dirs: vec![
                Dir::new(dir.path().join("a"), q),
                Dir::new(dir.path().join("b"), q),
            ],
        }]
    };
    let s = BlockStore::with_tiers(K, spec(2 * K), Arc::new(Engine::pread()));
    for f in 1..=4 {
        put(&s, f, K).await;
    }
    s.keep_sole_copies([bid(4)]);
    put(&s, 5, K).await;
    drop(s);
    // Memory is gone; the disk tier comes back from the directory scan.
    let s = BlockStore::with_tiers(K, spec(2 * K), Arc::new(Engine::pread()));
    let mut held = s.report();
    held.sort();
    let want: Vec<(u64, u64, String)> = (1..=4).map(|f| (bid(f), K, "SSD".into())).collect();
    assert_eq!(held, want);
    for f in 1..=4 {
        assert!(bytes_of(&s, f).await.unwrap() == data(f, K));
    }
    // The sole copy is still one after the restart: never evicted.
    assert!(s.inner.lock().sole_copies.contains(&bid(4)));

    // Directory a stops being a directory: it is taken out, its blocks
    // are reported lost, and b keeps working.
    let a_dir = |s: &BlockStore, f| matches!(s.get(bid(f)), Some(Block::Disk(d)) if d.dir == 0);
    let in_a: Vec<u64> = (1..=4).filter(|f| a_dir(&s, *f)).collect();
    assert!(!in_a.is_empty());
    let a = dir.path().join("a").join(crate::disk::BLOCKS_DIR);
    std::fs::remove_dir_all(&a).unwrap();
    std::fs::write(&a, b"not a directory").unwrap();
    s.take_changes();
    s.check_dirs();
    let (_, lost) = s.take_changes();
    let mut want: Vec<u64> = in_a.iter().map(|f| bid(*f)).collect();
    want.sort();
    let mut lost = lost;
    lost.sort();
    assert_eq!(lost, want);
    let ssd = &s.tiers()[1];
    assert!(ssd.dirs[0].error.contains("not a directory"), "{ssd:?}");
    assert!(ssd.dirs[1].error.is_empty());
    assert_eq!(ssd.capacity, 2 * K, "a bad directory's room is not counted");
    for f in (1..=4).filter(|f| !in_a.contains(f)) {
        assert!(bytes_of(&s, f).await.unwrap() == data(f, K));
    }
    // New demotions land in b only.
    put(&s, 6, K).await;
    put(&s, 7, K).await;
    assert!(matches!(s.get(bid(6)), Some(Block::Disk(d)) if d.dir == 1));
}

/// Unmounts on drop.
pub(crate) struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// A 256 KiB tmpfs at `small` (created), for real ENOSPC; `None` (the
/// test skips) when not root, since mounting needs it.
pub(crate) fn small_tmpfs(small: &Path) -> Option<Unmount> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: mounting a small filesystem needs root");
        return None;
    }
    std::fs::create_dir_all(small).unwrap();
    let ok = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
        .arg(small)
        .status()
        .unwrap()
        .success();
    assert!(ok, "mount a 256 KiB tmpfs");
    Some(Unmount(small.to_path_buf()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_directory_is_taken_out_and_the_next_one_takes_the_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("small");
    // A real filesystem smaller than its quota claims: writes hit ENOSPC.
    let Some(_unmount) = small_tmpfs(&small) else {
        return;
    };
    let specs = vec![TierSpec {
        alias: "SSD".into(),
        dirs: vec![
            Dir::new(&small, 10 * K),
            Dir::new(dir.path().join("big"), 4 * K),
        ],
    }];
    let s = BlockStore::with_tiers(K, specs, Arc::new(Engine::detect(8, 0)));
    for f in 1..=5 {
        put(&s, f, K).await;
    }
    let ssd = &s.tiers()[1];
    assert!(
        ssd.dirs[0].error.contains("No space left on device"),
        "{ssd:?}"
    );
    assert!(ssd.dirs[1].error.is_empty());
    let on = |f| match s.get(bid(f)) {
        Some(Block::Disk(d)) => d.dir,
        _ => 9,
    };
    assert_eq!((on(1), on(2), on(3), on(4)), (0, 0, 1, 1));
    for f in 1..=5 {
        assert!(bytes_of(&s, f).await.unwrap() == data(f, K), "file {f}");
    }
    // Nothing half-written is left in the full directory.
    let names: Vec<String> = std::fs::read_dir(small.join(crate::disk::BLOCKS_DIR))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}
