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
use crate::segment::{Segment, SegmentWriter};

mod dirs;

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
    /// Leases granted since the worker started (short-circuit reads).
    pub leases_granted: AtomicU64,
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
            stats: Stats::default(),
        })
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
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

    async fn make_room(&self, bytes: u64) -> Result<(), NoSpace> {
        // Blocks that could not move down (a sole copy with nowhere to go).
        let mut stuck: HashSet<u64> = HashSet::new();
        if bytes > self.capacity {
            // Could never fit: refused before anything is evicted for it.
            return Err(NoSpace {
                needed: bytes,
                used: self.inner.lock().used,
                capacity: self.capacity,
            });
        }
        loop {
            // Registered before looking, so a move finishing in between is seen.
            let moved = self.moved.notified();
            let victims = {
                let mut g = self.inner.lock();
                // Saturating: a request larger than anything (a length from
                // the wire) is refused as too big, never wrapped.
                let want = (g.used + g.reserved).saturating_add(bytes);
                if want <= self.capacity {
                    g.reserved += bytes;
                    return Ok(());
                }
                let need = want - self.capacity;
                if g.leaving_bytes >= need {
                    None
                } else {
                    let need = need - g.leaving_bytes;
                    let g2 = &*g;
                    let down = g2
                        .disk
                        .iter()
                        .any(|t| t.state.iter().any(|s| s.bad.is_none()));
                    let v = g2.lru.victims(
                        need,
                        |b| g2.blocks.get(&b).map_or(0, Block::len),
                        |b| {
                            stuck.contains(&b)
                                || g2.leaving.contains_key(&b)
                                || g2.held_in_memory(b)
                                || (!down && g2.must_stay(b))
                                // A segment someone reads (or a client maps) stays.
                                || g2.blocks.get(&b).is_some_and(Block::in_use)
                        },
                    );
                    match v {
                        None if g.leaving_bytes == 0 => {
                            return Err(NoSpace {
                                needed: bytes,
                                used: g.used,
                                capacity: self.capacity,
                            });
                        }
                        None => None,
                        Some(v) => {
                            for b in &v {
                                let len = g.blocks.get(b).map_or(0, Block::len);
                                g.leaving.insert(*b, len);
                                g.leaving_bytes += len;
                            }
                            Some(v)
                        }
                    }
                }
            };
            match victims {
                None => moved.await,
                Some(v) => {
                    for b in v {
                        if !self.move_out_of_memory(b).await {
                            stuck.insert(b);
                        }
                    }
                }
            }
        }
    }

    /// Moves a memory block to the first disk tier with room, or evicts it
    /// when it may leave the worker. False when it had to stay.
    async fn move_out_of_memory(&self, b: u64) -> bool {
        let turn = self.moves.lock().await;
        let found = {
            let g = self.inner.lock();
            match g.blocks.get(&b) {
                Some(Block::Mem(s)) => Some((s.clone(), g.must_stay(b))),
                _ => None,
            }
        };
        let placed = match &found {
            Some((seg, stay)) => Some(self.place(0, b, Source::Mem(seg.clone()), *stay).await),
            None => None,
        };
        let mut g = self.inner.lock();
        let len = g.leaving.remove(&b).unwrap_or(0);
        g.leaving_bytes -= len;
        let mut freed = true;
        if let (Some((seg, stay)), Some(placed)) = (found, placed) {
            let same = matches!(g.blocks.get(&b), Some(Block::Mem(s)) if Arc::ptr_eq(s, &seg));
            match (same, placed) {
                (false, Ok(d)) => {
                    let _ = std::fs::remove_file(&d.path);
                }
                (false, Err(_)) => {}
                (true, Ok(d)) => {
                    g.used -= seg.len();
                    g.lru.remove(b);
                    g.account(&d);
                    let alias = g.alias(d.tier);
                    g.note_added(b, d.len, alias);
                    g.blocks.insert(b, Block::Disk(d));
                    Stats::add(&self.stats.demotions, 1);
                }
                (true, Err(why)) if !stay => {
                    g.forget(b);
                    g.note_evicted(b);
                    Stats::add(&self.stats.evictions, 1);
                    tracing::debug!("block {b:016x} evicted from memory: {why}");
                }
                (true, Err(why)) => {
                    tracing::warn!("block {b:016x} must stay and cannot move down: {why}");
                    freed = false;
                }
            }
        }
        drop(g);
        drop(turn);
        self.moved.notify_waiters();
        freed
    }

    /// Writes a block into the first disk tier from `from` down that has a
    /// healthy directory with room (making room by moving that tier's least
    /// recently used blocks further down). The caller holds `moves`.
    fn place(
        &self,
        from: usize,
        id: u64,
        src: Source,
        sole: bool,
    ) -> Boxed<'_, Result<Arc<DiskBlock>, String>> {
        Box::pin(async move {
            let len = src.len();
            let tiers = self.inner.lock().disk.len();
            let mut why = "no disk tier below".to_string();
            for t in from..tiers {
                let mut tried = HashSet::new();
                // Bounded: each round takes one directory out of the running.
                let rounds = self.inner.lock().disk[t].dirs.len() + 1;
                for _ in 0..rounds {
                    let pick = self.inner.lock().disk[t].pick(len, &tried);
                    let d = match pick {
                        Some(d) => d,
                        None => match self.make_disk_room(t, len, &tried).await {
                            Some(d) => d,
                            None => {
                                why = format!("tier {} has no room", self.inner.lock().alias(t));
                                break;
                            }
                        },
                    };
                    tried.insert(d);
                    let dir = self.inner.lock().disk[t].dirs[d].clone();
                    match disk::write_block(&self.engine, &dir, id, sole, &src).await {
                        Ok(path) => return Ok(Arc::new(DiskBlock::new(id, len, path, t, d, sole))),
                        Err(e) => {
                            why = format!("writing a block in {}: {e}", dir.root.display());
                            // A full filesystem comes back once it has room
                            // for such a block again.
                            let want = if disk::is_full(&e) { len } else { 0 };
                            self.mark_bad(t, d, why.clone(), want);
                        }
                    }
                }
            }
            Err(why)
        })
    }

    /// Frees room for `len` bytes in one healthy directory of tier `t` by
    /// moving its least recently used blocks down (or evicting them from
    /// the last tier). Returns the directory, or None if it cannot be done.
    async fn make_disk_room(&self, t: usize, len: u64, skip: &HashSet<usize>) -> Option<usize> {
        let (d, victims) = {
            let g = self.inner.lock();
            let tier = &g.disk[t];
            let d = (0..tier.dirs.len())
                .filter(|d| !skip.contains(d) && tier.state[*d].bad.is_none())
                .filter(|d| tier.quota(*d) >= len)
                .max_by_key(|d| tier.quota(*d).saturating_sub(tier.state[*d].used))?;
            let free = tier.quota(d).saturating_sub(tier.state[d].used);
            let last = t + 1 == g.disk.len();
            let v = tier.lru.victims(
                len.saturating_sub(free),
                |b| g.blocks.get(&b).map_or(0, Block::len),
                |b| match g.blocks.get(&b) {
                    Some(blk @ Block::Disk(x)) => {
                        x.dir != d
                            || blk.in_use()
                            || g.held_in_memory(b)
                            || (last && g.must_stay(b))
                    }
                    _ => true,
                },
            )?;
            (d, v)
        };
        for b in victims {
            if !self.move_down_from_disk(t, b).await {
                return None;
            }
        }
        Some(d)
    }

    /// Moves a disk block from tier `t` to the tier below, or evicts it.
    async fn move_down_from_disk(&self, t: usize, b: u64) -> bool {
        let found = {
            let g = self.inner.lock();
            match g.blocks.get(&b) {
                Some(Block::Disk(d)) if d.tier == t => Some((d.clone(), g.must_stay(b))),
                _ => None,
            }
        };
        let Some((old, stay)) = found else {
            return true;
        };
        let placed = self
            .place(t + 1, b, Source::Disk(old.clone()), old.sole)
            .await;
        let mut g = self.inner.lock();
        let same = matches!(g.blocks.get(&b), Some(Block::Disk(x)) if Arc::ptr_eq(x, &old));
        match (same, placed) {
            (false, Ok(d)) => {
                let _ = std::fs::remove_file(&d.path);
            }
            (false, Err(_)) => {}
            (true, Ok(d)) => {
                g.unaccount(&old);
                let _ = std::fs::remove_file(&old.path);
                g.account(&d);
                let alias = g.alias(d.tier);
                g.note_added(b, d.len, alias);
                g.blocks.insert(b, Block::Disk(d));
                Stats::add(&self.stats.demotions, 1);
            }
            (true, Err(_)) if !stay => {
                g.forget(b);
                g.note_evicted(b);
                Stats::add(&self.stats.evictions, 1);
            }
            (true, Err(_)) => return false,
        }
        true
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
    pub async fn insert_on_disk(&self, id: u64, bytes: bytes::Bytes) -> Result<Block, String> {
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

    /// Moves a disk block up to memory (a CACHE_PROMOTE read). Returns the
    /// block where it is afterwards: in memory, or still on disk when
    /// memory has no room.
    pub async fn promote(self: &Arc<Self>, block: u64) -> Option<Block> {
        let d = match self.get(block) {
            Some(Block::Disk(d)) => d,
            other => return other,
        };
        match self.reserve(d.len).await {
            Ok(res) => self.promote_with(d, res).await,
            Err(_) => self.get(block),
        }
    }

    async fn promote_with(self: &Arc<Self>, d: Arc<DiskBlock>, res: Reservation) -> Option<Block> {
        let turn = self.moves.lock().await;
        let id = d.id;
        let still =
            |g: &Inner| matches!(g.blocks.get(&id), Some(Block::Disk(x)) if Arc::ptr_eq(x, &d));
        if !still(&self.inner.lock()) {
            drop(turn);
            return self.get(id);
        }
        let seg = match self.read_to_segment(&d).await {
            Ok(s) => s,
            Err(e) => {
                drop(turn);
                self.drop_broken(&d, &e);
                return None;
            }
        };
        let seg = Arc::new(seg);
        let mut g = self.inner.lock();
        if still(&g) {
            g.unaccount(&d);
            let _ = std::fs::remove_file(&d.path);
            g.blocks.remove(&id);
            drop(g);
            drop(d);
            self.put(id, seg.clone(), res, true);
            Stats::add(&self.stats.promotions, 1);
        } else {
            drop(g);
        }
        drop(turn);
        self.moved.notify_waiters();
        self.get(id)
    }

    async fn read_to_segment(&self, d: &DiskBlock) -> std::io::Result<Segment> {
        let mut w = SegmentWriter::create(&format!("eddy-block-{}", d.id), d.len, false)?;
        let mut r = disk::RangeReader::new(&self.engine, d, 0, d.len)?;
        let mut pos = 0usize;
        while let Some(piece) = r.next().await {
            let (buf, range) = piece?;
            let n = range.len();
            w.as_mut_slice()[pos..pos + n].copy_from_slice(&buf.as_slice()[range]);
            pos += n;
            r.recycle(buf);
        }
        w.seal(d.len)
    }

    /// Promotes disk blocks read at least twice since the last pass, hottest
    /// first, into free memory only (nothing is moved down for them), and
    /// not at all when `busy`. Returns how many moved.
    pub async fn promote_hot(self: &Arc<Self>, busy: bool, max: usize) -> usize {
        let hot: Vec<(u64, u32)> = {
            let mut g = self.inner.lock();
            let mut v: Vec<(u64, u32)> = g.disk_hits.drain().filter(|(_, n)| *n >= 2).collect();
            v.sort_by_key(|(b, n)| (std::cmp::Reverse(*n), *b));
            v
        };
        if busy {
            return 0;
        }
        let mut moved = 0;
        for (b, _) in hot.into_iter().take(max) {
            let d = match self.inner.lock().blocks.get(&b) {
                Some(Block::Disk(d)) => d.clone(),
                _ => continue,
            };
            let Some(res) = self.reserve_free(d.len) else {
                break;
            };
            if matches!(self.promote_with(d, res).await, Some(Block::Mem(_))) {
                moved += 1;
            }
        }
        moved
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
mod tests {
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
}
