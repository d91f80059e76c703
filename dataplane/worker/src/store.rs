//! The block store: tiers from the top down. Memory holds sealed segments
//! under a byte budget; disk tiers (docs/TIERS.md) hold block files in
//! directories with quotas. New blocks go to memory; when it is full, the
//! least recently used blocks move down a tier instead of being dropped,
//! and only the last tier evicts. Pinned files never leave the worker,
//! blocks being read never move, and MUST_CACHE sole copies may move down
//! but are never evicted. Misses fill once (single-flight).
//!
//! Moves between tiers are serialised (one at a time, `moves`): the bytes
//! are copied with no lock held, then the block's entry is switched under
//! the lock only if it is still the one that was copied.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::disk::{self, Dir, DiskBlock, Source};
use crate::evict::Lru;
use crate::io::Engine;
use crate::segment::{SealMode, Segment, SegmentWriter};

mod dirs;
mod error;
mod moves;

pub use error::{NoSpace, PlaceError};

/// The memory tier's name in reports and block locations.
pub const MEM: &str = "MEM";

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
    /// Leases granted since the worker started (short-circuit reads), and
    /// the bytes of the blocks they opened to their clients.
    pub leases_granted: AtomicU64,
    pub leased_bytes: AtomicU64,
    /// Remote (RDMA) leases held right now, granted since the start, and
    /// segment registrations the fabric refused.
    pub rdma_leases: AtomicU64,
    pub rdma_leases_granted: AtomicU64,
    /// Bytes of the blocks remote leases opened to one-sided reads.
    pub rdma_leased_bytes: AtomicU64,
    pub rdma_registration_failures: AtomicU64,
    /// Blocks moved down a tier.
    pub demotions: AtomicU64,
    /// Blocks moved up to memory.
    pub promotions: AtomicU64,
    /// Reads served from a disk tier.
    pub disk_reads: AtomicU64,
    /// Copies made at the master's request (replication bounds).
    pub replicas_made: AtomicU64,
    /// Files persisted at the master's request, and attempts that failed.
    pub persists: AtomicU64,
    pub persist_failures: AtomicU64,
    /// Data requests and handshakes refused for want of a valid block
    /// token or identity (`crate::access`).
    pub access_denied: AtomicU64,
}

impl Stats {
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    /// Takes `n` back off a gauge (never below zero).
    pub fn sub(c: &AtomicU64, n: u64) {
        let _ = c.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
            Some(v.saturating_sub(n))
        });
    }
}

/// A cached block, wherever it lives.
#[derive(Clone)]
pub enum Block {
    Mem(Arc<Segment>),
    Disk(Arc<DiskBlock>),
}

impl Block {
    pub fn len(&self) -> u64 {
        match self {
            Block::Mem(s) => s.len(),
            Block::Disk(d) => d.len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn in_use(&self) -> bool {
        match self {
            Block::Mem(s) => Arc::strong_count(s) > 1,
            Block::Disk(d) => Arc::strong_count(d) > 1,
        }
    }
}

/// A disk tier as configured: its name and directories.
#[derive(Debug, Clone)]
pub struct TierSpec {
    pub alias: String,
    pub dirs: Vec<Dir>,
}

/// One tier's figures (heartbeats, `eddy report`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TierInfo {
    pub alias: String,
    pub capacity: u64,
    pub used: u64,
    /// Bytes of blocks here the store would drop to make room
    /// (`Inner::evictable`).
    pub evictable: u64,
    pub blocks: u64,
    pub dirs: Vec<DirInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirInfo {
    pub path: String,
    pub capacity: u64,
    pub used: u64,
    /// Empty while the directory is healthy; else why it was taken out.
    pub error: String,
}

#[derive(Debug, Default)]
struct DirState {
    used: u64,
    blocks: u64,
    bad: Option<String>,
    /// Bytes the write that took the directory out needed: it comes back
    /// only with at least that much free (store/dirs.rs).
    want: u64,
    /// When a directory out of service was taken out or last probed.
    probed: Option<std::time::Instant>,
    /// Bytes the directory may hold when its filesystem turned out smaller
    /// than its quota (it filled up): held bytes plus what was free when
    /// it came back. Until a restart.
    limit: Option<u64>,
}

struct DiskTier {
    alias: String,
    dirs: Vec<Dir>,
    state: Vec<DirState>,
    lru: Lru,
}

impl DiskTier {
    /// Directory `d`'s quota, lowered to what its filesystem holds if it
    /// filled up before the quota did.
    fn quota(&self, d: usize) -> u64 {
        let q = self.dirs[d].quota;
        self.state[d].limit.map_or(q, |l| l.min(q))
    }

    /// The healthy directory with the most free space that fits `len`.
    fn pick(&self, len: u64, skip: &HashSet<usize>) -> Option<usize> {
        (0..self.dirs.len())
            .filter(|d| !skip.contains(d) && self.state[*d].bad.is_none())
            .filter(|d| self.state[*d].used + len <= self.quota(*d))
            .max_by_key(|d| self.quota(*d).saturating_sub(self.state[*d].used))
    }
}

struct Inner {
    blocks: HashMap<u64, Block>,
    /// Memory blocks, least recently used first.
    lru: Lru,
    /// Bytes of sealed segments held.
    used: u64,
    /// Bytes promised to fills and writes in progress.
    reserved: u64,
    disk: Vec<DiskTier>,
    /// Memory blocks on their way down, with their lengths.
    leaving: HashMap<u64, u64>,
    leaving_bytes: u64,
    pinned_files: HashSet<u64>,
    /// Pinned files whose pin allows moving down to a disk tier.
    pin_demotable: HashSet<u64>,
    pinned_version: u64,
    /// Evicted since the last heartbeat, to report to the master.
    evicted: Vec<u64>,
    /// Cached or moved since the last heartbeat, with the tier now holding it.
    added: Vec<(u64, u64, String)>,
    /// Blocks whose only copy is here (written MUST_CACHE): never evicted,
    /// only removed when the master says so (delete, free).
    sole_copies: HashSet<u64>,
    /// Reads of disk-tier blocks since the last promotion pass.
    disk_hits: HashMap<u64, u32>,
}

impl Inner {
    fn pinned(&self, b: u64) -> bool {
        self.pinned_files.contains(&eddy_proto::file_id_of_block(b))
    }

    /// Pinned without leave to move down: stays in memory.
    fn held_in_memory(&self, b: u64) -> bool {
        self.pinned(b)
            && !self
                .pin_demotable
                .contains(&eddy_proto::file_id_of_block(b))
    }

    /// May move between tiers but never leave the worker.
    fn must_stay(&self, b: u64) -> bool {
        self.pinned(b) || self.sole_copies.contains(&b)
    }

    /// Bytes per tier (memory first) of blocks that may leave the worker
    /// to make room: not pinned, not a sole copy, not being read, and on
    /// disk only in a healthy directory. What placement may count as room
    /// besides free bytes. Blocks that could only move down a tier are
    /// not counted: the free room below them already is. One pass over
    /// the blocks, once a heartbeat.
    fn evictable(&self) -> Vec<u64> {
        let mut out = vec![0; self.disk.len() + 1];
        for (&id, b) in &self.blocks {
            if b.in_use() || self.must_stay(id) {
                continue;
            }
            match b {
                Block::Mem(s) => out[0] += s.len(),
                Block::Disk(d) if self.disk[d.tier].state[d.dir].bad.is_none() => {
                    out[d.tier + 1] += d.len
                }
                Block::Disk(_) => {}
            }
        }
        out
    }

    fn alias(&self, tier: usize) -> String {
        self.disk[tier].alias.clone()
    }

    fn account(&mut self, d: &DiskBlock) {
        let st = &mut self.disk[d.tier].state[d.dir];
        st.used += d.len;
        st.blocks += 1;
        self.disk[d.tier].lru.touch(d.id);
    }

    fn unaccount(&mut self, d: &DiskBlock) {
        let st = &mut self.disk[d.tier].state[d.dir];
        st.used -= d.len;
        st.blocks -= 1;
        self.disk[d.tier].lru.remove(d.id);
        self.disk_hits.remove(&d.id);
    }

    /// Records an eviction for the master. A move of the same block still
    /// waiting to be reported is dropped: the heartbeat must not list the
    /// block as both added and removed.
    fn note_evicted(&mut self, b: u64) {
        self.added.retain(|a| a.0 != b);
        self.evicted.push(b);
    }

    /// Records a block now held in `tier`; an eviction of it still waiting
    /// to be reported is dropped (the block was cached again).
    fn note_added(&mut self, b: u64, len: u64, tier: String) {
        self.evicted.retain(|e| *e != b);
        self.added.push((b, len, tier));
    }

    /// Forgets a block wherever it is (its file is unlinked; readers that
    /// hold it finish first, as the descriptor keeps the bytes).
    fn forget(&mut self, b: u64) -> Option<Block> {
        let old = self.blocks.remove(&b)?;
        match &old {
            Block::Mem(s) => {
                self.used -= s.len();
                self.lru.remove(b);
            }
            Block::Disk(d) => {
                self.unaccount(d);
                let _ = std::fs::remove_file(&d.path);
            }
        }
        Some(old)
    }
}

pub struct BlockStore {
    inner: Mutex<Inner>,
    capacity: u64,
    fills: Mutex<HashMap<u64, Arc<tokio::sync::Mutex<()>>>>,
    engine: Arc<Engine>,
    /// One move between tiers at a time.
    moves: tokio::sync::Mutex<()>,
    /// Signalled after every move (reservations waiting for memory).
    moved: tokio::sync::Notify,
    /// Seal filled segments [`SealMode::Registrable`] (the worker's fabric
    /// registers only writable memory).
    registrable: std::sync::atomic::AtomicBool,
    /// Segments allocated ahead of writes (off until the budget is set).
    pub pool: crate::write_pool::WritePool,
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

type Boxed<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

impl BlockStore {
    /// A memory-only store.
    pub fn new(capacity: u64) -> Arc<Self> {
        Self::with_tiers(capacity, Vec::new(), Arc::new(Engine::pread()))
    }

    /// A store with disk tiers below memory. Each directory's block folder
    /// is created if needed and scanned: blocks left by an earlier run are
    /// kept (the master validates them at registration). A directory that
    /// cannot be used is marked bad, with the reason, instead of failing.
    pub fn with_tiers(capacity: u64, tiers: Vec<TierSpec>, engine: Arc<Engine>) -> Arc<Self> {
        let mut inner = Inner {
            blocks: HashMap::new(),
            lru: Lru::default(),
            used: 0,
            reserved: 0,
            disk: Vec::new(),
            leaving: HashMap::new(),
            leaving_bytes: 0,
            pinned_files: HashSet::new(),
            pin_demotable: HashSet::new(),
            pinned_version: 0,
            evicted: Vec::new(),
            added: Vec::new(),
            sole_copies: HashSet::new(),
            disk_hits: HashMap::new(),
        };
        for (t, spec) in tiers.into_iter().enumerate() {
            inner.disk.push(DiskTier {
                alias: spec.alias,
                state: spec.dirs.iter().map(|_| DirState::default()).collect(),
                dirs: spec.dirs,
                lru: Lru::default(),
            });
            for d in 0..inner.disk[t].dirs.len() {
                let dir = inner.disk[t].dirs[d].clone();
                match disk::scan(&dir) {
                    Ok(found) => {
                        for f in found {
                            if inner.blocks.contains_key(&f.id) {
                                // Two copies (a crash mid-move): keep the upper one.
                                let _ = std::fs::remove_file(&f.path);
                                continue;
                            }
                            let b = Arc::new(DiskBlock::new(f.id, f.len, f.path, t, d, f.sole));
                            if f.sole {
                                inner.sole_copies.insert(f.id);
                            }
                            inner.account(&b);
                            inner.blocks.insert(f.id, Block::Disk(b));
                        }
                    }
                    Err(e) => {
                        let why = format!("{}: {e}", dir.blocks.display());
                        tracing::error!("disk tier directory taken out: {why}");
                        inner.disk[t].state[d].bad = Some(why);
                    }
                }
            }
        }
        let recovered = inner.blocks.len();
        if recovered > 0 {
            tracing::info!("recovered {recovered} blocks from disk tiers");
        }
        Arc::new(Self {
            inner: Mutex::new(inner),
            capacity,
            fills: Mutex::new(HashMap::new()),
            engine,
            moves: tokio::sync::Mutex::new(()),
            moved: tokio::sync::Notify::new(),
            registrable: Default::default(),
            pool: Default::default(),
            stats: Stats::default(),
        })
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// How segments filled from now on are sealed.
    pub fn seal_mode(&self) -> SealMode {
        if self.registrable.load(std::sync::atomic::Ordering::Relaxed) {
            SealMode::Registrable
        } else {
            SealMode::ReadOnly
        }
    }

    /// Set once at start, before any block is filled, when the worker's
    /// fabric registers only writable memory.
    pub fn set_seal_mode(&self, mode: SealMode) {
        let on = mode == SealMode::Registrable;
        self.registrable
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Memory tier capacity.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Bytes set aside for fills and writes in progress.
    pub fn reserved(&self) -> u64 {
        self.inner.lock().reserved
    }

    /// Bytes held by sealed segments.
    pub fn used(&self) -> u64 {
        self.inner.lock().used
    }

    /// Blocks held in every tier.
    pub fn block_count(&self) -> usize {
        self.inner.lock().blocks.len()
    }

    /// Every tier's figures, memory first.
    pub fn tiers(&self) -> Vec<TierInfo> {
        let g = self.inner.lock();
        let evictable = g.evictable();
        let mut out = vec![TierInfo {
            alias: MEM.into(),
            capacity: self.capacity,
            used: g.used,
            evictable: evictable[0],
            blocks: g.lru.len() as u64,
            dirs: Vec::new(),
        }];
        for (i, t) in g.disk.iter().enumerate() {
            let dirs: Vec<DirInfo> = t
                .dirs
                .iter()
                .zip(&t.state)
                .enumerate()
                .map(|(n, (d, s))| DirInfo {
                    path: d.root.display().to_string(),
                    capacity: t.quota(n),
                    used: s.used,
                    error: s.bad.clone().unwrap_or_default(),
                })
                .collect();
            out.push(TierInfo {
                alias: t.alias.clone(),
                // A bad directory's room is not room.
                capacity: dirs
                    .iter()
                    .filter(|d| d.error.is_empty())
                    .map(|d| d.capacity)
                    .sum(),
                used: t.state.iter().map(|s| s.used).sum(),
                evictable: evictable[i + 1],
                blocks: t.state.iter().map(|s| s.blocks).sum(),
                dirs,
            });
        }
        out
    }

    /// A cached block, marked as just used.
    pub fn get(&self, block: u64) -> Option<Block> {
        let mut g = self.inner.lock();
        let b = g.blocks.get(&block).cloned();
        match &b {
            Some(Block::Mem(_)) => g.lru.touch(block),
            Some(Block::Disk(d)) => {
                g.disk[d.tier].lru.touch(block);
                *g.disk_hits.entry(block).or_default() += 1;
            }
            None => {}
        }
        b
    }

    pub fn contains(&self, block: u64) -> bool {
        self.inner.lock().blocks.contains_key(&block)
    }

    /// The name of the tier a block handle lives in.
    pub fn tier_name(&self, b: &Block) -> String {
        match b {
            Block::Mem(_) => MEM.into(),
            Block::Disk(d) => self.inner.lock().alias(d.tier),
        }
    }

    /// The tier holding `block` ("MEM", or a disk tier's alias).
    pub fn tier_of(&self, block: u64) -> Option<String> {
        let g = self.inner.lock();
        match g.blocks.get(&block)? {
            Block::Mem(_) => Some(MEM.into()),
            Block::Disk(d) => Some(g.alias(d.tier)),
        }
    }

    /// Sets aside `bytes` of memory, moving least recently used blocks down
    /// a tier (or evicting them from the last) as needed. Moved and evicted
    /// blocks are reported to the master on the next heartbeat.
    pub async fn reserve(self: &Arc<Self>, bytes: u64) -> Result<Reservation, NoSpace> {
        self.make_room(bytes).await?;
        Ok(Reservation {
            store: self.clone(),
            bytes,
        })
    }

    /// Sets aside `bytes` only if memory has that much free now (nothing moves).
    fn reserve_free(self: &Arc<Self>, bytes: u64) -> Option<Reservation> {
        let mut g = self.inner.lock();
        if (g.used + g.reserved).saturating_add(bytes) > self.capacity {
            return None;
        }
        g.reserved += bytes;
        Some(Reservation {
            store: self.clone(),
            bytes,
        })
    }

    /// Adds `bytes` to an existing reservation (a write that keeps coming).
    pub async fn grow(&self, res: &mut Reservation, bytes: u64) -> Result<(), NoSpace> {
        self.make_room(bytes).await?;
        res.bytes += bytes;
        Ok(())
    }

    /// Whether any disk tier has a healthy directory.
    pub fn has_disk(&self) -> bool {
        let g = self.inner.lock();
        g.disk
            .iter()
            .any(|t| t.state.iter().any(|s| s.bad.is_none()))
    }

    /// Puts a block straight on the first disk tier with room (memory had
    /// none). The caller commits it to the master, naming the tier returned.
    pub async fn insert_on_disk(&self, id: u64, bytes: bytes::Bytes) -> Result<Block, PlaceError> {
        let turn = self.moves.lock().await;
        let d = self.place(0, id, Source::Bytes(bytes), false).await?;
        let mut g = self.inner.lock();
        g.forget(id);
        g.evicted.retain(|e| *e != id);
        g.account(&d);
        g.blocks.insert(id, Block::Disk(d.clone()));
        drop(g);
        drop(turn);
        Ok(Block::Disk(d))
    }

    /// A disk block could not be read: forget it (the next read fills it
    /// again) and check its directory.
    pub fn drop_broken(&self, d: &DiskBlock, e: &std::io::Error) {
        tracing::warn!("disk-tier block {} unreadable: {e}", d.path.display());
        {
            let mut g = self.inner.lock();
            if matches!(g.blocks.get(&d.id), Some(Block::Disk(x)) if std::ptr::eq(&**x, d)) {
                g.forget(d.id);
                g.note_evicted(d.id);
            }
        }
        self.check_dirs();
    }

    /// Marks blocks as the only copy of their data (MUST_CACHE writes):
    /// eviction never picks them.
    pub fn keep_sole_copies(&self, blocks: impl IntoIterator<Item = u64>) {
        self.inner.lock().sole_copies.extend(blocks);
    }

    /// The blocks are no longer the only copy (their file was persisted):
    /// they may be evicted again. Disk-tier files lose their `.sole` mark.
    pub fn release_sole(&self, blocks: &[u64]) {
        let mut g = self.inner.lock();
        for &b in blocks {
            g.sole_copies.remove(&b);
            let Some(Block::Disk(d)) = g.blocks.get(&b).cloned() else {
                continue;
            };
            if !d.sole {
                continue;
            }
            let dir = g.disk[d.tier].dirs[d.dir].clone();
            let plain = dir.block_path(b, false);
            if std::fs::rename(&d.path, &plain).is_ok() {
                let nd = Arc::new(DiskBlock::new(b, d.len, plain, d.tier, d.dir, false));
                g.blocks.insert(b, Block::Disk(nd));
            }
        }
    }

    /// Adds a sealed block to memory, consuming its reservation. With
    /// `report`, the block is announced on the next heartbeat (otherwise
    /// the caller commits it to the master itself).
    pub fn insert(&self, block: u64, seg: Segment, res: Reservation, report: bool) -> Arc<Segment> {
        let seg = Arc::new(seg);
        self.put(block, seg.clone(), res, report);
        seg
    }

    fn put(&self, block: u64, seg: Arc<Segment>, mut res: Reservation, report: bool) {
        let bytes = std::mem::take(&mut res.bytes);
        drop(res);
        let mut g = self.inner.lock();
        g.reserved -= bytes;
        g.forget(block);
        g.used += seg.len();
        g.lru.touch(block);
        if report {
            g.note_added(block, seg.len(), MEM.into());
        } else {
            // Committed by the caller; an older eviction must not undo it.
            g.evicted.retain(|e| *e != block);
        }
        g.blocks.insert(block, Block::Mem(seg));
    }

    /// Drops blocks (the master's command, or a failed commit). Readers that
    /// hold a block finish with it; its memory or file goes when they let go.
    pub fn remove(&self, blocks: &[u64]) {
        let mut g = self.inner.lock();
        for &b in blocks {
            g.forget(b);
            g.sole_copies.remove(&b);
        }
    }

    /// Every block held, with its length and tier (for registration).
    pub fn report(&self) -> Vec<(u64, u64, String)> {
        let g = self.inner.lock();
        g.blocks
            .iter()
            .map(|(b, blk)| match blk {
                Block::Mem(s) => (*b, s.len(), MEM.to_string()),
                Block::Disk(d) => (*b, d.len, g.alias(d.tier)),
            })
            .collect()
    }

    /// Blocks cached or moved, and blocks evicted, since the last call (for
    /// the heartbeat).
    pub fn take_changes(&self) -> (Vec<(u64, u64, String)>, Vec<u64>) {
        let mut g = self.inner.lock();
        (std::mem::take(&mut g.added), std::mem::take(&mut g.evicted))
    }

    /// Puts back changes a failed heartbeat could not deliver.
    pub fn restore_changes(&self, added: Vec<(u64, u64, String)>, evicted: Vec<u64>) {
        let mut g = self.inner.lock();
        g.added.extend(added);
        g.evicted.extend(evicted);
    }

    pub fn pinned_version(&self) -> u64 {
        self.inner.lock().pinned_version
    }

    /// The pinned files; those in `demotable` may move down to disk tiers.
    pub fn set_pinned(
        &self,
        version: u64,
        files: impl IntoIterator<Item = u64>,
        demotable: impl IntoIterator<Item = u64>,
    ) {
        let mut g = self.inner.lock();
        g.pinned_files = files.into_iter().collect();
        g.pin_demotable = demotable.into_iter().collect();
        g.pinned_version = version;
    }

    /// Returns the cached block, or runs `fill` (which inserts it) with at
    /// most one fill per block in flight: concurrent misses wait for the
    /// first and then find the block cached.
    pub async fn get_or_fill<F, Fut, E>(&self, block: u64, fill: F) -> Result<Block, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Block, E>>,
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
mod tests;
