//! The memory tier: sealed segments by block id, a byte budget, LRU
//! eviction that never touches pinned files, and single-flight fills.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::evict::Lru;
use crate::segment::Segment;

/// Counters a worker exposes (`eddy report`, the data protocol's `Stats`).
#[derive(Debug, Default)]
pub struct Stats {
    pub cache_hits: AtomicU64,
    pub cache_misses: AtomicU64,
    /// Reads issued to the under-storage (fills and read-throughs).
    pub ufs_reads: AtomicU64,
    pub ufs_bytes_read: AtomicU64,
    pub evictions: AtomicU64,
    pub blocks_written: AtomicU64,
    pub bytes_served: AtomicU64,
    /// Leases held by co-located clients right now.
    pub leases: AtomicU64,
    /// Co-located clients connected right now.
    pub lease_clients: AtomicU64,
    /// Leases granted since the worker started (short-circuit reads).
    pub leases_granted: AtomicU64,
}

impl Stats {
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
}

#[derive(Debug, thiserror::Error)]
#[error(
    "the memory tier cannot fit {needed} more bytes: {used} of {capacity} used, the rest pinned or in use"
)]
pub struct NoSpace {
    pub needed: u64,
    pub used: u64,
    pub capacity: u64,
}

struct Inner {
    blocks: HashMap<u64, Arc<Segment>>,
    lru: Lru,
    /// Bytes of sealed segments held.
    used: u64,
    /// Bytes promised to fills and writes in progress.
    reserved: u64,
    pinned_files: HashSet<u64>,
    pinned_version: u64,
    /// Evicted since the last heartbeat, to report to the master.
    evicted: Vec<u64>,
    /// Cached since the last heartbeat without a commit to the master.
    added: Vec<(u64, u64)>,
    /// Blocks whose only copy is here (written MUST_CACHE): never evicted,
    /// only removed when the master says so (delete, free).
    sole_copies: HashSet<u64>,
}

pub struct BlockStore {
    inner: Mutex<Inner>,
    capacity: u64,
    fills: Mutex<HashMap<u64, Arc<tokio::sync::Mutex<()>>>>,
    pub stats: Stats,
}

/// Bytes set aside for a segment being filled; given back on drop unless
/// consumed by [`BlockStore::insert`].
pub struct Reservation {
    store: Arc<BlockStore>,
    bytes: u64,
}

impl Reservation {
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.store.inner.lock().reserved -= self.bytes;
        }
    }
}

impl BlockStore {
    pub fn new(capacity: u64) -> Arc<Self> {
        Arc::new(Self {
            inner: Mutex::new(Inner {
                blocks: HashMap::new(),
                lru: Lru::default(),
                used: 0,
                reserved: 0,
                pinned_files: HashSet::new(),
                pinned_version: 0,
                evicted: Vec::new(),
                added: Vec::new(),
                sole_copies: HashSet::new(),
            }),
            capacity,
            fills: Mutex::new(HashMap::new()),
            stats: Stats::default(),
        })
    }

    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Bytes held by sealed segments.
    pub fn used(&self) -> u64 {
        self.inner.lock().used
    }

    pub fn block_count(&self) -> usize {
        self.inner.lock().blocks.len()
    }

    /// A cached block, marked as just used.
    pub fn get(&self, block: u64) -> Option<Arc<Segment>> {
        let mut g = self.inner.lock();
        let s = g.blocks.get(&block).cloned();
        if s.is_some() {
            g.lru.touch(block);
        }
        s
    }

    pub fn contains(&self, block: u64) -> bool {
        self.inner.lock().blocks.contains_key(&block)
    }

    /// Sets aside `bytes`, evicting least recently used unpinned blocks as
    /// needed. Evicted blocks are reported to the master on the next heartbeat.
    pub fn reserve(self: &Arc<Self>, bytes: u64) -> Result<Reservation, NoSpace> {
        self.make_room(bytes)?;
        Ok(Reservation {
            store: self.clone(),
            bytes,
        })
    }

    /// Adds `bytes` to an existing reservation (a write that keeps coming).
    pub fn grow(&self, res: &mut Reservation, bytes: u64) -> Result<(), NoSpace> {
        self.make_room(bytes)?;
        res.bytes += bytes;
        Ok(())
    }

    fn make_room(&self, bytes: u64) -> Result<(), NoSpace> {
        let mut g = self.inner.lock();
        let want = g.used + g.reserved + bytes;
        if want > self.capacity {
            let need = want - self.capacity;
            let g2 = &*g;
            let victims = g2.lru.victims(
                need,
                |b| g2.blocks.get(&b).map_or(0, |s| s.len()),
                |b| {
                    g2.pinned_files.contains(&eddy_proto::file_id_of_block(b))
                        || g2.sole_copies.contains(&b)
                        // A segment someone is reading (or a client maps) stays.
                        || g2.blocks.get(&b).is_some_and(|s| Arc::strong_count(s) > 1)
                },
            );
            let Some(victims) = victims else {
                return Err(NoSpace {
                    needed: bytes,
                    used: g.used,
                    capacity: self.capacity,
                });
            };
            for b in victims {
                if let Some(s) = g.blocks.remove(&b) {
                    g.used -= s.len();
                    g.lru.remove(b);
                    g.evicted.push(b);
                    Stats::add(&self.stats.evictions, 1);
                }
            }
        }
        g.reserved += bytes;
        Ok(())
    }

    /// Marks blocks as the only copy of their data (MUST_CACHE writes):
    /// eviction never picks them.
    pub fn keep_sole_copies(&self, blocks: impl IntoIterator<Item = u64>) {
        self.inner.lock().sole_copies.extend(blocks);
    }

    /// Adds a sealed block, consuming its reservation. With `report`, the
    /// block is announced on the next heartbeat (otherwise the caller
    /// commits it to the master itself).
    pub fn insert(
        &self,
        block: u64,
        seg: Segment,
        mut res: Reservation,
        report: bool,
    ) -> Arc<Segment> {
        let seg = Arc::new(seg);
        let bytes = std::mem::take(&mut res.bytes);
        drop(res);
        let mut g = self.inner.lock();
        g.reserved -= bytes;
        g.used += seg.len();
        if let Some(old) = g.blocks.insert(block, seg.clone()) {
            g.used -= old.len();
        }
        g.lru.touch(block);
        if report {
            g.added.push((block, seg.len()));
        }
        seg
    }

    /// Drops blocks (the master's command, or a failed commit). Readers that
    /// hold a segment finish with it; its memory goes when they let go.
    pub fn remove(&self, blocks: &[u64]) {
        let mut g = self.inner.lock();
        for &b in blocks {
            if let Some(s) = g.blocks.remove(&b) {
                g.used -= s.len();
                g.lru.remove(b);
            }
            g.sole_copies.remove(&b);
        }
    }

    /// Every block held, with its length (for registration).
    pub fn report(&self) -> Vec<(u64, u64)> {
        let g = self.inner.lock();
        g.blocks.iter().map(|(b, s)| (*b, s.len())).collect()
    }

    /// Blocks cached and evicted since the last call (for the heartbeat).
    pub fn take_changes(&self) -> (Vec<(u64, u64)>, Vec<u64>) {
        let mut g = self.inner.lock();
        (std::mem::take(&mut g.added), std::mem::take(&mut g.evicted))
    }

    /// Puts back changes a failed heartbeat could not deliver.
    pub fn restore_changes(&self, added: Vec<(u64, u64)>, evicted: Vec<u64>) {
        let mut g = self.inner.lock();
        g.added.extend(added);
        g.evicted.extend(evicted);
    }

    pub fn pinned_version(&self) -> u64 {
        self.inner.lock().pinned_version
    }

    pub fn set_pinned(&self, version: u64, files: impl IntoIterator<Item = u64>) {
        let mut g = self.inner.lock();
        g.pinned_files = files.into_iter().collect();
        g.pinned_version = version;
    }

    /// Returns the cached block, or runs `fill` (which inserts it) with at
    /// most one fill per block in flight: concurrent misses wait for the
    /// first and then find the block cached.
    pub async fn get_or_fill<F, Fut, E>(&self, block: u64, fill: F) -> Result<Arc<Segment>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Arc<Segment>, E>>,
    {
        if let Some(s) = self.get(block) {
            Stats::add(&self.stats.cache_hits, 1);
            return Ok(s);
        }
        let lock = self.fills.lock().entry(block).or_default().clone();
        let result = {
            let _turn = lock.lock().await;
            match self.get(block) {
                Some(s) => {
                    Stats::add(&self.stats.cache_hits, 1);
                    Ok(s)
                }
                None => {
                    Stats::add(&self.stats.cache_misses, 1);
                    fill().await
                }
            }
        };
        let mut fills = self.fills.lock();
        // This map's entry and `lock` are the last two handles: nobody waits.
        if Arc::strong_count(&lock) <= 2 {
            fills.remove(&block);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::SegmentWriter;

    fn seg(len: u64) -> Segment {
        SegmentWriter::create("t", len, false)
            .unwrap()
            .seal(len)
            .unwrap()
    }

    #[test]
    fn budget_evicts_lru_and_spares_pins_and_readers() {
        // Block 0 of files 1..=4.
        let b = |f: u64| eddy_proto::block_id(f, 0);
        let s = BlockStore::new(300);
        for f in [1, 2, 3] {
            let r = s.reserve(100).unwrap();
            s.insert(b(f), seg(100), r, false);
        }
        assert_eq!(s.used(), 300);
        s.get(b(1)); // file 2's block is now the oldest
        let r = s.reserve(100).unwrap();
        assert!(!s.contains(b(2)), "least recently used went first");
        s.insert(b(4), seg(100), r, false);
        assert_eq!(s.take_changes().1, vec![b(2)]);

        // A reader holding file 3's block keeps it; pinned file 1's stays.
        let reading = s.get(b(3)).unwrap();
        s.set_pinned(7, [1]);
        assert_eq!(s.pinned_version(), 7);
        let r = s.reserve(100).unwrap();
        assert!(s.contains(b(1)) && s.contains(b(3)) && !s.contains(b(4)));
        drop(r);
        let e = s.reserve(250).err().unwrap();
        assert_eq!(e.needed, 250);
        drop(reading);
        s.remove(&[b(1), b(3)]);
        assert_eq!(s.used(), 0);

        // A sole copy (MUST_CACHE) is never evicted.
        let r = s.reserve(200).unwrap();
        s.insert(b(5), seg(200), r, false);
        s.keep_sole_copies([b(5)]);
        assert!(s.reserve(200).is_err());
        s.remove(&[b(5)]);
        assert!(s.reserve(300).is_ok());
        assert_eq!(
            Arc::strong_count(&s),
            1,
            "reservations leave no handle behind"
        );
        assert_eq!(s.block_count(), 0);
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
                    let r = s2.reserve(10).unwrap();
                    Ok::<_, ()>(s2.insert(9, seg(10), r, false))
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
}
