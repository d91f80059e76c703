//! The write session without a socket: a real block store, a master that is
//! away (commits are then carried by the next heartbeat, so they succeed)
//! and an under-storage writer that records what it got and can fail.
//! `with_master` drives it from `WriteSession::open` against the stand-in
//! master (`crate::shared::fake_master`) and a local under-storage directory.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use eddy_ufs::{UfsError, UfsStatus};
use parking_lot::Mutex;

use super::*;

const BS: u64 = 10;

#[derive(Default)]
struct Seen {
    bytes: Vec<u8>,
    completed: bool,
    aborted: bool,
}

/// Records bytes; fails the write that would take it past `fail_past`.
struct FakeUfs {
    seen: Arc<Mutex<Seen>>,
    fail_past: u64,
}

type Fut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

impl UfsWriter for FakeUfs {
    fn write<'life0, 'life1, 'async_trait>(
        &'life0 mut self,
        data: &'life1 [u8],
    ) -> Fut<'async_trait, eddy_ufs::Result<()>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            let mut s = self.seen.lock();
            if (s.bytes.len() + data.len()) as u64 > self.fail_past {
                return Err(UfsError::NotFound("staging file".into()));
            }
            s.bytes.extend_from_slice(data);
            Ok(())
        })
    }

    fn complete<'async_trait>(self: Box<Self>) -> Fut<'async_trait, eddy_ufs::Result<UfsStatus>>
    where
        Self: 'async_trait,
    {
        Box::pin(async move {
            self.seen.lock().completed = true;
            Ok(UfsStatus {
                name: "f".into(),
                is_dir: false,
                length: self.seen.lock().bytes.len() as u64,
                mtime_ms: 0,
                fingerprint: "fp".into(),
            })
        })
    }

    fn abort<'async_trait>(self: Box<Self>) -> Fut<'async_trait, ()>
    where
        Self: 'async_trait,
    {
        Box::pin(async move { self.seen.lock().aborted = true })
    }
}

/// A worker's shared state whose master is away (also for the copy
/// tests in `replicate`).
pub(crate) fn shared(capacity: u64) -> Shared {
    let store = BlockStore::new(capacity);
    let master =
        eddy_client::MasterClient::lazy_with_timeout("127.0.0.1:1", Duration::from_millis(500))
            .unwrap();
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    Shared {
        link: Arc::new(crate::master_link::MasterLink::new(
            master,
            Default::default(),
            store.clone(),
            tx,
            Default::default(),
        )),
        store,
        admit: Default::default(),
        timeouts: crate::conn::Timeouts {
            idle: Duration::from_secs(5),
            write: Duration::from_secs(5),
            frame: Duration::from_secs(5),
        },
        max_per_peer: 4,
        tls: Default::default(),
        rdma: None,
        leases: crate::conn::LeasePolicy {
            ttl: std::time::Duration::from_secs(60),
            max_per_client: 64,
        },
    }
}

fn session(sh: &Shared, wt: WriteType, fail_past: u64) -> (WriteSession, Arc<Mutex<Seen>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let ufs: Option<Box<dyn UfsWriter>> = (wt != WriteType::MustCache).then(|| {
        Box::new(FakeUfs {
            seen: seen.clone(),
            fail_past,
        }) as Box<dyn UfsWriter>
    });
    let open = WriteOpen {
        file_id: 3,
        block_size: BS,
        write_type: wt,
        target: None,
        token: Vec::new(),
    };
    (WriteSession::new(sh.store.clone(), &open, ufs, None), seen)
}

/// Drives a streamed write as the TCP server does: each frame's bytes
/// straight into a mapped segment (huge pages, on a host with a hugetlb
/// pool) or to the session, dropped once it has failed.
async fn stream(s: &mut WriteSession, frames: &[&[u8]]) {
    for f in frames {
        let mut left = *f;
        while !left.is_empty() && !s.progress().failed() {
            if !s.progress().caches() {
                s.through(left).await;
                break;
            }
            if let Some(buf) = s.mapped_buf(left.len() as u64).await {
                let n = buf.len();
                buf.copy_from_slice(&left[..n]);
                s.received(n).await;
                left = &left[n..];
                continue;
            }
            s.stream(left).await;
            break;
        }
    }
}

fn block(sh: &Shared, index: u64) -> Option<Vec<u8>> {
    match sh.store.get(eddy_proto::block_id(3, index))? {
        crate::store::Block::Mem(seg) => Some(seg.as_slice().to_vec()),
        other => panic!("a write's block went to {}", sh.store.tier_name(&other)),
    }
}

#[tokio::test]
async fn a_streamed_write_caches_its_blocks_and_persists_every_byte() {
    let sh = shared(1 << 20);
    let (mut s, seen) = session(&sh, WriteType::CacheThrough, u64::MAX);
    let data: Vec<u8> = (0..25u8).collect();
    stream(&mut s, &[&data[..7], &data[7..21], &data[21..]]).await;
    // Full blocks are in the store before the close, the last one after.
    assert_eq!(block(&sh, 0).unwrap(), &data[..10]);
    assert_eq!(block(&sh, 1).unwrap(), &data[10..20]);
    assert!(block(&sh, 2).is_none());
    let ok = s.close_streamed(&sh, 25).await.unwrap();
    assert_eq!(
        (ok.length, ok.blocks, ok.fingerprint.as_str()),
        (25, 3, "fp")
    );
    assert_eq!(block(&sh, 2).unwrap(), &data[20..]);
    let seen = seen.lock();
    assert_eq!(seen.bytes, data);
    assert!(seen.completed && !seen.aborted);
}

/// With the write pool on, blocks after the first land in pooled
/// segments (pages allocated ahead), streamed and short-circuit alike, and
/// read back the same; a pooled segment handed to a client is sealed
/// against it like a fresh one.
#[tokio::test]
async fn writes_take_pooled_segments_once_the_pool_has_stock() {
    let sh = shared(1 << 20);
    sh.store.pool.set_budget(2 * 4096);
    let (mut s, _) = session(&sh, WriteType::MustCache, u64::MAX);
    let data: Vec<u8> = (0..25u8).collect();
    stream(&mut s, &[&data[..10]]).await;
    sh.store.pool.wait_stocked();
    stream(&mut s, &[&data[10..]]).await;
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    if crate::segment::hugetlb_free_bytes(&meminfo) == 0 {
        assert_eq!(sh.store.pool.hits_and_misses(), (2, 1));
    } else {
        // Huge pages first, where the host has a pool: none taken.
        assert_eq!(sh.store.pool.hits_and_misses(), (0, 0));
    }
    let ok = s.close_streamed(&sh, 25).await.unwrap();
    assert_eq!((ok.length, ok.blocks), (25, 3));
    for (i, want) in data.chunks(BS as usize).enumerate() {
        assert_eq!(block(&sh, i as u64).unwrap(), want);
    }

    let sh = shared(1 << 20);
    sh.store.pool.set_budget(4096);
    assert!(
        sh.store.pool.take(BS).is_none(),
        "the first ask starts the pool"
    );
    sh.store.pool.wait_stocked();
    let (mut s, _) = session(&sh, WriteType::MustCache, u64::MAX);
    assert_eq!(commit(&mut s, &[7u8; 10]).await.unwrap(), 10);
    assert_eq!(sh.store.pool.hits_and_misses(), (1, 1));
    let seg = match sh.store.get(eddy_proto::block_id(3, 0)).unwrap() {
        crate::store::Block::Mem(seg) => seg,
        _ => unreachable!("a write's block is in memory"),
    };
    assert_eq!(seg.as_slice(), &[7u8; 10]);
    let seals = rustix::fs::fcntl_get_seals(seg.fd()).unwrap();
    assert!(seals.contains(rustix::fs::SealFlags::WRITE));
}

#[tokio::test]
async fn a_through_write_caches_nothing() {
    let sh = shared(1 << 20);
    let (mut s, seen) = session(&sh, WriteType::Through, u64::MAX);
    stream(&mut s, &[b"hello ", b"world, longer than a block"]).await;
    let ok = s.close_streamed(&sh, 32).await.unwrap();
    assert_eq!((ok.length, ok.blocks), (32, 0));
    assert_eq!(sh.store.block_count(), 0);
    assert_eq!(seen.lock().bytes, b"hello world, longer than a block");
}

#[tokio::test]
async fn a_wrong_length_at_close_discards_the_write() {
    let sh = shared(1 << 20);
    let (mut s, seen) = session(&sh, WriteType::CacheThrough, u64::MAX);
    stream(&mut s, &[&[1u8; 15]]).await;
    assert_eq!(sh.store.block_count(), 1);
    let e = s.close_streamed(&sh, 16).await.unwrap_err();
    assert_eq!(e.to_string(), "the writer says 16 bytes but sent 15");
    assert_eq!(sh.store.block_count(), 0);
    assert_eq!(sh.store.reserved(), 0);
    assert!(seen.lock().aborted);
}

/// An under-storage write failing on the bytes that fill a block is not
/// forgotten when that block then joins the store: the close fails and
/// nothing is completed.
#[tokio::test]
async fn an_under_storage_failure_answers_the_close() {
    let sh = shared(1 << 20);
    let (mut s, seen) = session(&sh, WriteType::CacheThrough, 5);
    // The second frame's bytes fail in the under-storage and fill block 0.
    stream(&mut s, &[&[1u8; 4], &[2u8; 6]]).await;
    let e = s.close_streamed(&sh, 10).await.unwrap_err();
    assert_eq!(e.code(), eddy_proto::EddyCode::NotFound);
    assert_eq!(sh.store.block_count(), 0);
    let seen = seen.lock();
    assert!(seen.aborted && !seen.completed);
    assert_eq!(seen.bytes, [1u8; 4]);
}

#[tokio::test]
async fn no_room_fails_the_write_and_frees_its_reservations() {
    let sh = shared(15);
    let (mut s, _) = session(&sh, WriteType::MustCache, u64::MAX);
    stream(&mut s, &[&[7u8; 25]]).await;
    assert!(s.progress().failed());
    let e = s.close_streamed(&sh, 25).await.unwrap_err();
    assert_eq!(e.code(), eddy_proto::EddyCode::NoSpace);
    assert_eq!(sh.store.block_count(), 0);
    assert_eq!(sh.store.reserved(), 0);
}

#[tokio::test]
async fn a_cancelled_write_leaves_nothing() {
    let sh = shared(1 << 20);
    let (mut s, seen) = session(&sh, WriteType::CacheThrough, u64::MAX);
    stream(&mut s, &[&[1u8; 12]]).await;
    s.cancel().await;
    assert_eq!(sh.store.block_count(), 0);
    assert_eq!(sh.store.reserved(), 0);
    assert!(seen.lock().aborted);
}

/// Fills a segment handed out, through its descriptor, as a short-circuit
/// client does (which maps it), then commits it.
async fn commit(s: &mut WriteSession, bytes: &[u8]) -> Result<u64> {
    let id = s.hand_segment(BS).await?;
    let fd = s.segment_fd().expect("handed out");
    assert_eq!(rustix::io::pwrite(fd, bytes, 0).unwrap(), bytes.len());
    s.commit_segment(id, bytes.len() as u64).await
}

#[tokio::test]
async fn committed_segments_become_blocks() {
    let sh = shared(1 << 20);
    let (mut s, seen) = session(&sh, WriteType::CacheThrough, u64::MAX);
    assert_eq!(commit(&mut s, &[1u8; 10]).await.unwrap(), 10);
    assert_eq!(commit(&mut s, &[2u8; 3]).await.unwrap(), 13);
    let e = s.hand_segment(BS).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "only the last block of a file may be shorter than the block size"
    );
    assert_eq!(block(&sh, 1).unwrap(), [2u8; 3]);
    let ok = s.close_committed(&sh, 13).await.unwrap();
    assert_eq!(
        (ok.length, ok.blocks, ok.fingerprint.as_str()),
        (13, 2, "fp")
    );
    assert_eq!(seen.lock().bytes.len(), 13);
    assert_eq!(sh.store.block_count(), 2);
}

#[tokio::test]
async fn a_segment_commit_must_match_the_segment_handed_out() {
    let sh = shared(1 << 20);
    let (mut s, _) = session(&sh, WriteType::Through, u64::MAX);
    let e = s.commit_segment(1, 1).await.unwrap_err();
    assert_eq!(e.to_string(), "no segment to commit");
    let id = s.hand_segment(BS).await.unwrap();
    assert_eq!(sh.store.reserved(), BS);
    let e = s.commit_segment(id + 1, 1).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "segment 2 of 1 bytes does not match the segment handed out (1, capacity 10)"
    );
    // The mismatched segment is dropped with its reservation.
    assert_eq!(sh.store.reserved(), 0);
    assert_eq!(commit(&mut s, &[9u8; 10]).await.unwrap(), 10);
    // THROUGH: nothing cached.
    assert_eq!(sh.store.block_count(), 0);
    let id = s.hand_segment(BS).await.unwrap();
    assert_eq!(id, 3);
    let e = s.close_committed(&sh, 10).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "the writer says 10 bytes but committed 10 (a segment is still uncommitted)"
    );
    assert_eq!(sh.store.reserved(), 0);
}

// ---- with a master: admission at open, the under-storage target, commits ----

mod with_master {
    use super::*;
    use crate::shared::fake_master::{FakeFile, FakeWorld, MOUNT};
    use eddy_proto::EddyCode;

    const FILE: u64 = 9;

    /// A world whose master has file 9 being written (block size `BS`),
    /// through to `staging/9` when written through.
    async fn world() -> (tempfile::TempDir, FakeWorld) {
        let dir = tempfile::tempdir().unwrap();
        let w = FakeWorld::start(dir.path(), 1 << 20).await;
        w.master.files.lock().insert(
            FILE,
            FakeFile {
                key: "staging/9".into(),
                length: 0,
                block_size: BS,
                complete: false,
                persisted: false,
                digest: String::new(),
            },
        );
        (dir, w)
    }

    fn open(write_type: WriteType) -> WriteOpen {
        WriteOpen {
            file_id: FILE,
            block_size: BS,
            write_type,
            target: (write_type != WriteType::MustCache).then(|| eddy_wire::UfsSource {
                mount_id: MOUNT,
                key: "staging/9".into(),
            }),
            token: Vec::new(),
        }
    }

    async fn refused(sh: &Shared, o: &WriteOpen) -> EddyCode {
        match WriteSession::open(sh, o).await {
            Ok(_) => panic!("admitted"),
            Err(e) => e.code(),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_open_must_match_the_file_the_master_knows() {
        let (_dir, w) = world().await;
        let sh = &w.shared;
        let wrong_size = WriteOpen {
            block_size: BS * 2,
            ..open(WriteType::MustCache)
        };
        assert_eq!(refused(sh, &wrong_size).await, EddyCode::InvalidArgument);
        let wrong_target = WriteOpen {
            target: Some(eddy_wire::UfsSource {
                mount_id: MOUNT,
                key: "elsewhere".into(),
            }),
            ..open(WriteType::CacheThrough)
        };
        assert_eq!(refused(sh, &wrong_target).await, EddyCode::InvalidArgument);
        let unknown = WriteOpen {
            file_id: FILE + 1,
            ..open(WriteType::MustCache)
        };
        assert_eq!(refused(sh, &unknown).await, EddyCode::NotFound);
        w.master.files.lock().get_mut(&FILE).unwrap().complete = true;
        assert_eq!(
            refused(sh, &open(WriteType::MustCache)).await,
            EddyCode::FileAlreadyComplete
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_session_per_file_until_it_is_closed_or_cancelled() {
        let (_dir, w) = world().await;
        let sh = &w.shared;
        let first = WriteSession::open(sh, &open(WriteType::MustCache))
            .await
            .unwrap();
        assert_eq!(
            refused(sh, &open(WriteType::MustCache)).await,
            EddyCode::AlreadyExists
        );
        first.cancel().await;
        let second = WriteSession::open(sh, &open(WriteType::MustCache))
            .await
            .unwrap();
        // A session dropped (a broken connection) frees the file too.
        drop(second);
        let mut third = WriteSession::open(sh, &open(WriteType::MustCache))
            .await
            .unwrap();
        stream(&mut third, &[&[5u8; 4]]).await;
        third.close_streamed(sh, 4).await.unwrap();
        assert!(
            WriteSession::open(sh, &open(WriteType::MustCache))
                .await
                .is_ok()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cache_through_write_appears_in_the_ufs_only_at_close() {
        let (dir, w) = world().await;
        let sh = &w.shared;
        let mut s = WriteSession::open(sh, &open(WriteType::CacheThrough))
            .await
            .unwrap();
        let data: Vec<u8> = (100..125u8).collect();
        stream(&mut s, &[&data[..13], &data[13..]]).await;
        let target = dir.path().join("staging/9");
        assert!(!target.exists(), "not visible before the close");
        assert!(
            w.master.commits.lock().is_empty(),
            "the master hears at close"
        );
        let ok = s.close_streamed(sh, 25).await.unwrap();
        assert_eq!((ok.length, ok.blocks), (25, 3));
        assert!(!ok.fingerprint.is_empty());
        assert_eq!(std::fs::read(&target).unwrap(), data);
        let commits = w.master.commits.lock().clone();
        let want: Vec<_> = [(0, 10), (1, 10), (2, 5)]
            .into_iter()
            .map(|(i, len)| (eddy_proto::block_id(FILE, i), len, "MEM".to_string(), true))
            .collect();
        assert_eq!(commits, want, "committed as written blocks");
        assert_eq!(sh.store.block_count(), 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cancelled_cache_through_write_leaves_nothing_in_the_ufs() {
        let (dir, w) = world().await;
        let sh = &w.shared;
        let mut s = WriteSession::open(sh, &open(WriteType::CacheThrough))
            .await
            .unwrap();
        stream(&mut s, &[&[1u8; 12]]).await;
        s.cancel().await;
        let left = std::fs::read_dir(dir.path().join("staging")).map_or(0, |d| d.count());
        assert_eq!(left, 0, "the under-storage write was aborted");
        assert_eq!(sh.store.block_count(), 0);
        assert!(w.master.commits.lock().is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_must_cache_write_the_master_will_not_record_fails_and_keeps_nothing() {
        let (_dir, w) = world().await;
        let sh = &w.shared;
        let second = eddy_proto::block_id(FILE, 1);
        w.master.refuse_commits.lock().push(second);
        let mut s = WriteSession::open(sh, &open(WriteType::MustCache))
            .await
            .unwrap();
        stream(&mut s, &[&[3u8; 15]]).await;
        let e = s.close_streamed(sh, 15).await.unwrap_err();
        assert_eq!(e.code(), EddyCode::NotFound, "{e}");
        // The cache held the only copy: nothing of the write stays.
        assert_eq!(sh.store.block_count(), 0);
        assert_eq!(sh.store.reserved(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cache_through_write_survives_losing_its_cache_copies() {
        let (dir, w) = world().await;
        let sh = &w.shared;
        w.master
            .refuse_commits
            .lock()
            .push(eddy_proto::block_id(FILE, 0));
        let mut s = WriteSession::open(sh, &open(WriteType::CacheThrough))
            .await
            .unwrap();
        stream(&mut s, &[&[4u8; 15]]).await;
        let ok = s.close_streamed(sh, 15).await.unwrap();
        assert_eq!(ok.length, 15);
        assert_eq!(
            std::fs::read(dir.path().join("staging/9")).unwrap(),
            [4u8; 15]
        );
        assert_eq!(
            sh.store.block_count(),
            0,
            "the unrecorded copies are dropped"
        );
    }
}
