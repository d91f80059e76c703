//! The background jobs the master hands out (`super::Job`), worked
//! through by `replicate::run` in process: a copy filled from the
//! under-storage, a copy of a block already here, and persists of cached
//! blocks to the under-storage, against the stand-in master.

use std::sync::atomic::Ordering::Relaxed;

use eddy_client::pb;
use eddy_proto::block_id;
use eddy_wire::{ReadRequest, ReadType, UfsSource};

use super::Job;
use crate::shared::fake_master::{FakeWorld, MOUNT};

const BS: u64 = 64 * 1024;

fn content(len: u64) -> Vec<u8> {
    (0..len)
        .map(|i| (i % 251) as u8 ^ (i >> 12) as u8)
        .collect()
}

/// Runs `jobs` through the job loop and returns once it has done them all.
async fn run_jobs(w: &FakeWorld, jobs: Vec<Job>) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let (_stop_tx, stop) = tokio::sync::watch::channel(false);
    for j in jobs {
        tx.send(j).unwrap();
    }
    // Closing the queue ends the loop after the last job.
    drop(tx);
    crate::replicate::run(w.shared.clone(), rx, stop).await;
}

fn replicate(block: u64, length: u64, file_offset: u64) -> pb::ReplicateBlock {
    pb::ReplicateBlock {
        block_id: block,
        length,
        sources: Vec::new(),
        ufs: Some(pb::UfsLocation {
            mount_id: MOUNT,
            key: "data/f".into(),
        }),
        file_offset,
    }
}

async fn world(len: u64) -> (tempfile::TempDir, FakeWorld, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    let bytes = content(len);
    std::fs::write(dir.path().join("data/f"), &bytes).unwrap();
    let w = FakeWorld::start(dir.path(), 16 * BS).await;
    w.add_persisted(7, "data/f", BS).await;
    (dir, w, bytes)
}

fn block_bytes(w: &FakeWorld, block: u64) -> Vec<u8> {
    match w.shared.store.get(block).expect("cached") {
        crate::store::Block::Mem(s) => s.as_slice().to_vec(),
        crate::store::Block::Disk(_) => panic!("memory only"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_with_no_peer_is_filled_from_the_ufs_and_committed() {
    let len = BS + 500;
    let (_dir, w, bytes) = world(len).await;
    let (b0, b1) = (block_id(7, 0), block_id(7, 1));
    run_jobs(
        &w,
        vec![Job::Replicate(vec![
            replicate(b0, BS, 0),
            replicate(b1, 500, BS),
        ])],
    )
    .await;
    assert!(block_bytes(&w, b0) == bytes[..BS as usize]);
    assert!(block_bytes(&w, b1) == bytes[BS as usize..]);
    let stats = &w.shared.store.stats;
    assert_eq!(stats.replicas_made.load(Relaxed), 2);
    let committed: Vec<u64> = w.master.commits.lock().iter().map(|c| c.0).collect();
    assert_eq!(committed, [b0, b1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_of_a_block_already_here_only_tells_the_master() {
    let (_dir, w, _) = world(BS).await;
    let b0 = block_id(7, 0);
    let req = ReadRequest {
        block_id: b0,
        offset: 0,
        length: BS,
        block_length: BS,
        file_offset: 0,
        read_type: ReadType::Cache,
        source: Some(UfsSource {
            mount_id: MOUNT,
            key: "data/f".into(),
        }),
        token: Vec::new(),
    };
    crate::cache::cached(&w.shared, &req).await.unwrap();
    let reads = w.shared.store.stats.ufs_reads.load(Relaxed);
    run_jobs(&w, vec![Job::Replicate(vec![replicate(b0, BS, 0)])]).await;
    assert_eq!(w.shared.store.stats.ufs_reads.load(Relaxed), reads);
    assert_eq!(w.master.commits.lock().len(), 2, "committed again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_with_no_source_at_all_makes_nothing() {
    let (_dir, w, _) = world(BS).await;
    let b0 = block_id(7, 0);
    let nowhere = pb::ReplicateBlock {
        ufs: None,
        ..replicate(b0, BS, 0)
    };
    run_jobs(&w, vec![Job::Replicate(vec![nowhere])]).await;
    assert!(!w.shared.store.contains(b0));
    assert_eq!(w.shared.store.stats.replicas_made.load(Relaxed), 0);
    assert!(w.master.commits.lock().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persist_writes_the_cached_blocks_to_the_ufs_and_reports_back() {
    let len = 2 * BS + 77;
    let (dir, w, bytes) = world(len).await;
    let blocks: Vec<pb::BlockReport> = (0..3)
        .map(|i| pb::BlockReport {
            block_id: block_id(7, i),
            length: (len - i * BS).min(BS),
            tier: String::new(),
        })
        .collect();
    let copies = blocks
        .iter()
        .enumerate()
        .map(|(i, b)| replicate(b.block_id, b.length, i as u64 * BS))
        .collect();
    let target = pb::UfsLocation {
        mount_id: MOUNT,
        key: "staging/7".into(),
    };
    let persist = pb::PersistFile {
        file_id: 7,
        ufs: Some(target.clone()),
        blocks: blocks.clone(),
        length: len,
    };
    // The blocks are cached first (copied in), then persisted.
    run_jobs(&w, vec![Job::Replicate(copies), Job::Persist(persist)]).await;
    assert_eq!(std::fs::read(dir.path().join("staging/7")).unwrap(), bytes);
    let reports = w.master.persisted.lock().clone();
    assert_eq!(reports.len(), 1);
    let r = &reports[0];
    assert_eq!((r.file_id, r.length), (7, len));
    assert_eq!(r.ufs.as_ref(), Some(&target));
    assert!(r.error.is_empty(), "{}", r.error);
    assert!(!r.fingerprint.is_empty());
    assert_eq!(w.shared.store.stats.persists.load(Relaxed), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persist_missing_a_block_reports_the_failure_and_leaves_no_file() {
    let (dir, w, _) = world(BS).await;
    let persist = pb::PersistFile {
        file_id: 7,
        ufs: Some(pb::UfsLocation {
            mount_id: MOUNT,
            key: "staging/7".into(),
        }),
        blocks: vec![pb::BlockReport {
            block_id: block_id(7, 0),
            length: BS,
            tier: String::new(),
        }],
        length: BS,
    };
    run_jobs(&w, vec![Job::Persist(persist)]).await;
    let reports = w.master.persisted.lock().clone();
    assert_eq!(reports.len(), 1);
    assert!(
        reports[0].error.contains("not on this worker"),
        "{}",
        reports[0].error
    );
    assert!(reports[0].fingerprint.is_empty());
    assert!(!dir.path().join("staging/7").exists());
    let left = std::fs::read_dir(dir.path().join("staging")).map_or(0, |d| d.count());
    assert_eq!(left, 0, "the writer was aborted: no partial file is left");
    let stats = &w.shared.store.stats;
    assert_eq!(stats.persist_failures.load(Relaxed), 1);
    assert_eq!(stats.persists.load(Relaxed), 0);
}
