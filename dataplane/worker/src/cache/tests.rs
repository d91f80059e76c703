//! The cache core in process: fills from a local under-storage directory
//! checked against a stand-in master (`crate::shared::fake_master`), hits
//! that touch neither, refusals of a changed under-storage file, and
//! eviction.

use std::sync::atomic::Ordering::Relaxed;

use eddy_proto::{EddyCode, block_id};
use eddy_wire::{ReadRequest, ReadType, UfsSource};

use super::*;
use crate::shared::fake_master::{FakeWorld, MOUNT};

const BS: u64 = 64 * 1024;

/// A file of `len` bytes whose every byte says where it is.
fn content(len: u64, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 10) as u8)
        .collect()
}

/// A whole-block read of block `index` of file `file` (`len` bytes at `key`).
fn read(file: u64, index: u64, len: u64, key: &str) -> ReadRequest {
    let start = index * BS;
    let block_length = (len - start).min(BS);
    ReadRequest {
        block_id: block_id(file, index),
        offset: 0,
        length: block_length,
        block_length,
        file_offset: start,
        read_type: ReadType::Cache,
        source: Some(UfsSource {
            mount_id: MOUNT,
            key: key.into(),
        }),
        token: Vec::new(),
    }
}

fn bytes_of(b: &Block) -> Vec<u8> {
    match b {
        Block::Mem(s) => s.as_slice().to_vec(),
        Block::Disk(_) => panic!("a memory-only store holds blocks in memory"),
    }
}

fn ufs_reads(sh: &Shared) -> u64 {
    sh.store.stats.ufs_reads.load(Relaxed)
}

/// A world with file 7 (`len` bytes at `data/f`) in its under-storage.
async fn world(len: u64, capacity: u64) -> (tempfile::TempDir, FakeWorld, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    let bytes = content(len, 3);
    std::fs::write(dir.path().join("data/f"), &bytes).unwrap();
    let w = FakeWorld::start(dir.path(), capacity).await;
    w.add_persisted(7, "data/f", BS).await;
    (dir, w, bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miss_fills_the_block_from_the_ufs_and_commits_it() {
    let len = 2 * BS + 1000;
    let (_dir, w, bytes) = world(len, 16 * BS).await;
    let sh = &w.shared;
    for index in 0..3 {
        let b = cached(sh, &read(7, index, len, "data/f")).await.unwrap();
        let start = (index * BS) as usize;
        let end = (start + BS as usize).min(len as usize);
        assert!(bytes_of(&b) == bytes[start..end], "block {index}'s bytes");
        assert!(sh.store.contains(block_id(7, index)));
    }
    assert_eq!(ufs_reads(sh), 3, "one under-storage read per block");
    let commits = w.master.commits.lock().clone();
    assert_eq!(
        commits,
        [
            (block_id(7, 0), BS, "MEM".to_string(), false),
            (block_id(7, 1), BS, "MEM".to_string(), false),
            (block_id(7, 2), 1000, "MEM".to_string(), false),
        ],
        "each fill is recorded with the master, not as a written block"
    );
    assert_eq!(sh.store.used(), len);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_read_touches_neither_the_ufs_nor_the_master() {
    let len = BS + 10;
    let (dir, w, bytes) = world(len, 16 * BS).await;
    let sh = &w.shared;
    let r = read(7, 1, len, "data/f");
    let first = cached(sh, &r).await.unwrap();
    assert!(bytes_of(&first) == bytes[BS as usize..]);
    let (reads, infos) = (ufs_reads(sh), w.master.block_infos());
    // Gone from the under-storage: a hit does not notice.
    std::fs::remove_file(dir.path().join("data/f")).unwrap();
    for _ in 0..3 {
        let again = cached(sh, &r).await.unwrap();
        assert!(bytes_of(&again) == bytes[BS as usize..]);
    }
    assert_eq!(ufs_reads(sh), reads, "no under-storage read for a hit");
    assert_eq!(w.master.block_infos(), infos, "hits ask the master nothing");
    assert_eq!(w.master.commits.lock().len(), 1, "committed once");
    // The block not cached yet now has nothing to fill from.
    let miss = cached(sh, &read(7, 0, len, "data/f")).await;
    assert_eq!(miss.err().map(|e| e.code()), Some(EddyCode::NotFound));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ufs_file_of_another_length_is_refused_and_nothing_is_cached() {
    let len = 2 * BS;
    let (dir, w, _) = world(len, 16 * BS).await;
    let sh = &w.shared;
    // Replaced by a longer file after the master recorded it.
    std::fs::write(dir.path().join("data/f"), content(len + 1, 9)).unwrap();
    let r = read(7, 0, len, "data/f");
    let e = cached(sh, &r).await.err().expect("refused");
    assert_eq!(e.code(), EddyCode::UfsError, "{e}");
    assert!(e.to_string().contains("changed"), "{e}");
    assert!(!sh.store.contains(r.block_id));
    assert_eq!(sh.store.used(), 0);
    assert_eq!(sh.store.reserved(), 0, "the reservation is given back");
    assert!(w.master.commits.lock().is_empty());
    // Shorter, the same.
    std::fs::write(dir.path().join("data/f"), content(BS, 9)).unwrap();
    let e = cached(sh, &r).await.err().expect("refused");
    assert_eq!(e.code(), EddyCode::UfsError, "{e}");
    assert!(!sh.store.contains(r.block_id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ufs_file_with_new_content_of_the_same_length_is_refused() {
    let len = BS;
    let (dir, w, bytes) = world(len, 16 * BS).await;
    let sh = &w.shared;
    let path = dir.path().join("data/f");
    let old = std::fs::metadata(&path).unwrap().modified().unwrap();
    let mut other = bytes.clone();
    other.reverse();
    std::fs::write(&path, &other).unwrap();
    // Another version: the same length, another modification time.
    let f = std::fs::File::options().write(true).open(&path).unwrap();
    f.set_modified(old + std::time::Duration::from_secs(5))
        .unwrap();
    drop(f);
    let r = read(7, 0, len, "data/f");
    let e = cached(sh, &r).await.err().expect("refused");
    assert_eq!(e.code(), EddyCode::UfsError, "{e}");
    assert!(!sh.store.contains(r.block_id), "its bytes are never served");
    assert!(w.master.commits.lock().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fill_must_match_what_the_master_says() {
    let len = BS;
    let (_dir, w, _) = world(len, 16 * BS).await;
    let sh = &w.shared;
    let good = read(7, 0, len, "data/f");
    let short = ReadRequest {
        block_length: BS - 1,
        length: BS - 1,
        ..good.clone()
    };
    let elsewhere = ReadRequest {
        source: Some(UfsSource {
            mount_id: MOUNT,
            key: "data/other".into(),
        }),
        ..good.clone()
    };
    let no_source = ReadRequest {
        source: None,
        ..good.clone()
    };
    for (r, want) in [
        (short, EddyCode::InvalidArgument),
        (elsewhere, EddyCode::InvalidArgument),
        (no_source, EddyCode::NotFound),
    ] {
        let e = cached(sh, &r).await.err().expect("refused");
        assert_eq!(e.code(), want, "{e}");
    }
    w.master.files.lock().get_mut(&7).unwrap().complete = false;
    let e = cached(sh, &good).await.err().expect("refused");
    assert_eq!(e.code(), EddyCode::FileIncomplete, "{e}");
    assert_eq!(ufs_reads(sh), 0, "refused before any under-storage read");
    assert_eq!(sh.store.block_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fill_the_master_refuses_to_record_is_served_but_not_kept() {
    let len = BS;
    let (_dir, w, bytes) = world(len, 16 * BS).await;
    let sh = &w.shared;
    let r = read(7, 0, len, "data/f");
    w.master.refuse_commits.lock().push(r.block_id);
    let b = cached(sh, &r).await.unwrap();
    assert!(bytes_of(&b) == bytes[..]);
    assert!(!sh.store.contains(r.block_id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_through_caches_nothing() {
    let len = 2 * BS;
    let (_dir, w, bytes) = world(len, 16 * BS).await;
    let sh = &w.shared;
    let r = ReadRequest {
        offset: 100,
        length: 5000,
        read_type: ReadType::NoCache,
        ..read(7, 1, len, "data/f")
    };
    let got = read_through(sh, &r).await.unwrap();
    let at = (BS + 100) as usize;
    assert!(got[..] == bytes[at..at + 5000]);
    assert_eq!(sh.store.block_count(), 0);
    assert!(w.master.commits.lock().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fills_past_capacity_evict_the_least_recently_used_block() {
    let len = 3 * BS;
    // Room for two blocks.
    let (_dir, w, bytes) = world(len, 2 * BS).await;
    let sh = &w.shared;
    let block = |i| read(7, i, len, "data/f");
    cached(sh, &block(0)).await.unwrap();
    cached(sh, &block(1)).await.unwrap();
    // Block 0 read again: block 1 is now the least recently used.
    drop(cached(sh, &block(0)).await.unwrap());
    assert_eq!(ufs_reads(sh), 2);
    let b2 = cached(sh, &block(2)).await.unwrap();
    assert!(bytes_of(&b2) == bytes[2 * BS as usize..]);
    drop(b2);
    assert!(sh.store.contains(block_id(7, 0)));
    assert!(!sh.store.contains(block_id(7, 1)), "evicted");
    assert!(sh.store.contains(block_id(7, 2)));
    assert!(sh.store.used() <= 2 * BS, "within capacity");
    assert_eq!(sh.store.stats.evictions.load(Relaxed), 1);
    let (_, evicted) = sh.store.take_changes();
    assert_eq!(evicted, [block_id(7, 1)], "reported to the master");
    // Read again: filled again from the under-storage.
    let b1 = cached(sh, &block(1)).await.unwrap();
    assert!(bytes_of(&b1) == bytes[BS as usize..2 * BS as usize]);
    assert_eq!(ufs_reads(sh), 4);
}

/// A world whose store has memory for one block over one disk tier of one
/// directory (`ssd`, `quota` bytes), with file 7 of two blocks.
async fn tiered_world(quota: u64) -> (tempfile::TempDir, FakeWorld) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    std::fs::write(dir.path().join("data/f"), content(2 * BS, 3)).unwrap();
    let tier = crate::store::TierSpec {
        alias: "SSD".into(),
        dirs: vec![crate::disk::Dir::new(dir.path().join("ssd"), quota)],
    };
    let engine = std::sync::Arc::new(crate::io::Engine::pread());
    let store = crate::store::BlockStore::with_tiers(BS, vec![tier], engine);
    let w = FakeWorld::start_with(dir.path(), store).await;
    w.add_persisted(7, "data/f", BS).await;
    (dir, w)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_full_and_a_failed_disk_is_not_reported_as_no_space() {
    let (dir, w) = tiered_world(16 * BS).await;
    let sh = &w.shared;
    // Block 0 fills memory and is being read: it cannot move.
    let held = cached(sh, &read(7, 0, 2 * BS, "data/f")).await.unwrap();
    // The disk tier's directory breaks: its block folder is now a file.
    let blocks = dir.path().join("ssd").join(crate::disk::BLOCKS_DIR);
    std::fs::remove_dir_all(&blocks).unwrap();
    std::fs::write(&blocks, b"not a directory").unwrap();
    let e = cached(sh, &read(7, 1, 2 * BS, "data/f"))
        .await
        .err()
        .expect("refused");
    assert_eq!(e.code(), EddyCode::Internal, "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("the disk tier failed") && msg.contains("eddy report"),
        "{msg}"
    );
    assert!(!sh.store.contains(block_id(7, 1)));
    assert_eq!(sh.store.reserved(), 0);
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_full_and_no_room_on_disk_is_no_space() {
    // The disk tier is smaller than a block.
    let (_dir, w) = tiered_world(BS / 2).await;
    let sh = &w.shared;
    let held = cached(sh, &read(7, 0, 2 * BS, "data/f")).await.unwrap();
    let e = cached(sh, &read(7, 1, 2 * BS, "data/f"))
        .await
        .err()
        .expect("refused");
    assert_eq!(e.code(), EddyCode::NoSpace, "{e}");
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_full_and_a_healthy_disk_takes_the_block() {
    let (_dir, w) = tiered_world(16 * BS).await;
    let sh = &w.shared;
    let held = cached(sh, &read(7, 0, 2 * BS, "data/f")).await.unwrap();
    let b = cached(sh, &read(7, 1, 2 * BS, "data/f")).await.unwrap();
    assert!(
        matches!(b, Block::Disk(_)),
        "the block went to the disk tier"
    );
    drop(held);
}
