//! Worker registry and block locations. Time is passed in, so the lost-worker
//! and command logic is plain code, tested without a network.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tokio::sync::Notify;

use eddy_proto::pb;

use crate::error::{MasterError, Result};
use crate::placement::Candidate;

#[derive(Debug, Clone)]
pub struct Worker {
    pub id: u64,
    pub address: pb::WorkerAddress,
    pub tiers: Vec<pb::TierUsage>,
    pub blocks: HashSet<u64>,
    pub live: bool,
    /// Monotonic ms of the last register or heartbeat.
    pub last_seen: u64,
    pub registered_ms: i64,
    /// The disk I/O engine the worker reports.
    pub io_engine: String,
    pending_removals: Vec<u64>,
    /// Copies to ask for on the next heartbeat (replication bounds).
    pending_copies: Vec<pb::ReplicateBlock>,
    /// Files to persist, asked on the next heartbeat.
    pending_persists: Vec<pb::PersistFile>,
}

impl Worker {
    /// Unused room in every tier. A disk tier counts only its healthy
    /// directories: the blocks still held in one taken out of service must
    /// not hide the room left in the others.
    pub fn free_bytes(&self) -> u64 {
        self.tiers.iter().map(tier_free).sum()
    }

    /// What the worker can make room for: free bytes plus the bytes of
    /// blocks it would drop (docs/TIERS.md). A cache is normally full, of
    /// blocks it may evict; counting only free bytes would turn writers
    /// away from it.
    pub fn room_bytes(&self) -> u64 {
        self.tiers
            .iter()
            .map(|t| tier_free(t).saturating_add(t.evictable_bytes))
            .fold(0, u64::saturating_add)
    }
}

fn tier_free(t: &pb::TierUsage) -> u64 {
    if t.dirs.is_empty() {
        return t.capacity_bytes.saturating_sub(t.used_bytes);
    }
    t.dirs
        .iter()
        .filter(|d| d.error.is_empty())
        .map(|d| d.capacity_bytes.saturating_sub(d.used_bytes))
        .fold(0, u64::saturating_add)
}

#[derive(Debug, Clone, Default)]
pub struct BlockMeta {
    pub length: u64,
    pub workers: Vec<u64>,
    /// The tier each worker in `workers` holds the block in (same order).
    pub tiers: Vec<String>,
}

impl BlockMeta {
    /// The tier `worker` holds this block in.
    pub fn tier_on(&self, worker: u64) -> &str {
        self.workers
            .iter()
            .position(|w| *w == worker)
            .map_or("", |i| &self.tiers[i])
    }

    fn drop_worker(&mut self, worker: u64) {
        if let Some(i) = self.workers.iter().position(|w| *w == worker) {
            self.workers.remove(i);
            self.tiers.remove(i);
        }
    }
}

/// How long a persist asked of a worker may take before it is asked again.
pub const PERSIST_TIMEOUT_MS: u64 = 120_000;

/// A file being persisted (ASYNC_THROUGH): asked of a worker, or waiting
/// out a backoff after a failed attempt.
#[derive(Debug, Clone, Default)]
struct Persisting {
    /// The worker asked last.
    worker: u64,
    in_flight_until: Option<u64>,
    not_before: u64,
    attempts: u32,
}

/// Backoff after the n-th failed attempt: 1 s, 2 s, 4 s ... at most 60 s.
pub fn persist_backoff_ms(attempts: u32) -> u64 {
    (1000u64 << attempts.saturating_sub(1).min(6)).min(60_000)
}

/// How long a copy asked of a worker counts as coming before it is asked
/// of another (a worker that failed or was too slow).
pub const COPY_TIMEOUT_MS: u64 = 30_000;

#[derive(Debug, Default)]
pub struct Registry {
    workers: HashMap<u64, Worker>,
    next_worker_id: u64,
    blocks: HashMap<u64, BlockMeta>,
    /// Copies asked for and not yet committed: (block, worker) -> deadline.
    copying: HashMap<(u64, u64), u64>,
    /// Files being persisted, by file id.
    persisting: HashMap<u64, Persisting>,
    /// From the last replication check (see `GetClusterInfoResponse`).
    pub under_replicated: u64,
    pub unsatisfiable: u64,
    /// In the registration grace period after a restart: workers may not
    /// have reported their blocks yet, so a block without a known copy is
    /// not lost (`crate::registration`).
    pub awaiting_workers: bool,
    /// Per worker, what its parked heartbeat waits on (`wake_of`).
    wakes: HashMap<u64, Arc<Notify>>,
}

impl Registry {
    /// Registers a worker (or re-registers one at the same host and RPC/data
    /// port), replacing what the master knew of its blocks with `blocks`.
    /// `valid` says whether a reported block still belongs to a file; invalid
    /// ones are queued for removal on the worker's next heartbeat.
    pub fn register(
        &mut self,
        address: pb::WorkerAddress,
        tiers: Vec<pb::TierUsage>,
        blocks: &[pb::BlockReport],
        valid: impl Fn(u64, u64) -> bool,
        now_mono: u64,
        now_ms: i64,
    ) -> Result<u64> {
        if address.host.is_empty() || address.data_port == 0 || address.data_port > u16::MAX as u32
        {
            return Err(MasterError::InvalidArgument(
                "a worker must register with a host and a data port in 1..=65535".into(),
            ));
        }
        let existing = self.workers.values().find(|w| {
            w.address.host == address.host
                && w.address.data_port == address.data_port
                && w.address.rpc_port == address.rpc_port
        });
        let id = match existing {
            Some(w) => w.id,
            None => {
                self.next_worker_id += 1;
                self.next_worker_id
            }
        };
        self.drop_worker_blocks(id);
        // A restarted worker forgot what it was asked to persist: ask again
        // now rather than after the timeout.
        for p in self.persisting.values_mut() {
            if p.worker == id && p.in_flight_until.is_some() {
                p.in_flight_until = None;
            }
        }
        let mut w = Worker {
            id,
            address,
            tiers,
            blocks: HashSet::new(),
            live: true,
            last_seen: now_mono,
            registered_ms: now_ms,
            io_engine: String::new(),
            pending_removals: Vec::new(),
            pending_copies: Vec::new(),
            pending_persists: Vec::new(),
        };
        for b in blocks {
            if valid(b.block_id, b.length) {
                w.blocks.insert(b.block_id);
                self.link(b.block_id, b.length, &b.tier, id);
            } else {
                w.pending_removals.push(b.block_id);
            }
        }
        self.workers.insert(id, w);
        Ok(id)
    }

    /// Records the worker's disk I/O engine (empty: unchanged).
    pub fn set_io_engine(&mut self, id: u64, engine: &str) {
        if let Some(w) = self.workers.get_mut(&id)
            && !engine.is_empty()
            && w.io_engine != engine
        {
            w.io_engine = engine.to_string();
        }
    }

    fn drop_worker_blocks(&mut self, id: u64) {
        let Some(w) = self.workers.get_mut(&id) else {
            return;
        };
        for b in w.blocks.drain() {
            if let Some(meta) = self.blocks.get_mut(&b) {
                meta.drop_worker(id);
                if meta.workers.is_empty() {
                    self.blocks.remove(&b);
                }
            }
        }
    }

    fn live_worker(&mut self, id: u64) -> Result<&mut Worker> {
        match self.workers.get_mut(&id) {
            Some(w) if w.live => Ok(w),
            _ => Err(MasterError::UnknownWorker(id)),
        }
    }

    /// Applies a heartbeat and returns the commands for the worker.
    pub fn heartbeat(
        &mut self,
        req: &pb::HeartbeatRequest,
        valid: impl Fn(u64, u64) -> bool,
        now_mono: u64,
    ) -> Result<Vec<pb::WorkerCommand>> {
        let id = req.worker_id;
        let w = self.live_worker(id)?;
        w.last_seen = now_mono;
        if !req.tiers.is_empty() {
            w.tiers = req.tiers.clone();
        }
        for &b in &req.removed_blocks {
            w.blocks.remove(&b);
        }
        let mut invalid = Vec::new();
        let mut added = Vec::new();
        for b in &req.added_blocks {
            if valid(b.block_id, b.length) {
                w.blocks.insert(b.block_id);
                added.push(b);
            } else {
                invalid.push(b.block_id);
            }
        }
        w.pending_removals.extend(invalid);
        for &b in &req.removed_blocks {
            self.unlink(b, id);
        }
        for b in added {
            self.link(b.block_id, b.length, &b.tier, id);
        }
        Ok(self.take_commands(id))
    }

    /// The commands queued for worker `id` (none for an unknown one), in
    /// the order a heartbeat answer carries them.
    pub fn take_commands(&mut self, id: u64) -> Vec<pb::WorkerCommand> {
        let mut cmds = Vec::new();
        let mut cmds_persist = Vec::new();
        let Some(w) = self.workers.get_mut(&id).filter(|w| w.live) else {
            return cmds;
        };
        let removals = std::mem::take(&mut w.pending_removals);
        let copies = std::mem::take(&mut w.pending_copies);
        for p in std::mem::take(&mut w.pending_persists) {
            cmds_persist.push(pb::WorkerCommand {
                command: Some(pb::worker_command::Command::PersistFile(p)),
            });
        }
        if !copies.is_empty() {
            cmds.push(pb::WorkerCommand {
                command: Some(pb::worker_command::Command::ReplicateBlocks(
                    pb::ReplicateBlocks { blocks: copies },
                )),
            });
        }
        if !removals.is_empty() {
            cmds.push(pb::WorkerCommand {
                command: Some(pb::worker_command::Command::RemoveBlocks(
                    pb::RemoveBlocks {
                        block_ids: removals,
                    },
                )),
            });
        }
        cmds.extend(cmds_persist);
        cmds
    }

    /// What a parked heartbeat of worker `id` waits on: notified when a
    /// command is queued for it (a permit is kept if none waits).
    pub fn wake_of(&mut self, id: u64) -> Arc<Notify> {
        self.wakes.entry(id).or_default().clone()
    }

    fn wake(&self, id: u64) {
        if let Some(n) = self.wakes.get(&id) {
            n.notify_one();
        }
    }

    /// Copies asked for and still within their deadline.
    pub fn copies_coming(&mut self, now_mono: u64) -> std::collections::HashSet<(u64, u64)> {
        self.copying.retain(|_, deadline| *deadline > now_mono);
        self.copying.keys().copied().collect()
    }

    /// Asks `worker` (on its next heartbeat) to cache a copy.
    pub fn ask_copy(&mut self, worker: u64, cmd: pb::ReplicateBlock, now_mono: u64) {
        if let Some(w) = self.workers.get_mut(&worker).filter(|w| w.live) {
            self.copying
                .insert((cmd.block_id, worker), now_mono + COPY_TIMEOUT_MS);
            w.pending_copies.push(cmd);
            self.wake(worker);
        }
    }

    /// Whether file `file` should be (re)asked to persist now.
    pub fn persist_due(&self, file: u64, now_mono: u64) -> bool {
        self.persisting.get(&file).is_none_or(|p| {
            p.in_flight_until.is_none_or(|d| now_mono >= d) && now_mono >= p.not_before
        })
    }

    /// A live worker holding every one of `blocks`, the emptiest first.
    pub fn holder_of_all(&self, blocks: &[u64]) -> Option<u64> {
        let mut ids: Vec<&Worker> = self
            .workers
            .values()
            .filter(|w| w.live && blocks.iter().all(|b| w.blocks.contains(b)))
            .collect();
        ids.sort_by_key(|w| (std::cmp::Reverse(w.free_bytes()), w.id));
        ids.first().map(|w| w.id)
    }

    /// Asks `worker` (on its next heartbeat) to persist a file.
    pub fn ask_persist(&mut self, worker: u64, cmd: pb::PersistFile, now_mono: u64) {
        if let Some(w) = self.workers.get_mut(&worker).filter(|w| w.live) {
            let p = self.persisting.entry(cmd.file_id).or_default();
            p.worker = worker;
            p.in_flight_until = Some(now_mono + PERSIST_TIMEOUT_MS);
            p.attempts += 1;
            w.pending_persists.push(cmd);
            self.wake(worker);
        }
    }

    /// A persist attempt failed: wait out the backoff, then ask again.
    pub fn persist_failed(&mut self, file: u64, now_mono: u64) -> u32 {
        let p = self.persisting.entry(file).or_default();
        p.in_flight_until = None;
        p.not_before = now_mono + persist_backoff_ms(p.attempts);
        p.attempts
    }

    /// `worker` reports that its persist of `file` failed (or that placing
    /// what it wrote did). A worker other than the one asked last ran an
    /// older attempt, one that timed out or was asked again after the
    /// worker re-registered: its failure says nothing of the attempt in
    /// flight and must not cancel it (the checker would hand out a third).
    /// Returns the attempts so far, `None` for such a stale report.
    pub fn persist_failed_by(&mut self, file: u64, worker: u64, now_mono: u64) -> Option<u32> {
        if self
            .persisting
            .get(&file)
            .is_some_and(|p| p.worker != worker)
        {
            return None;
        }
        Some(self.persist_failed(file, now_mono))
    }

    /// `worker` wrote `file` and the master now places and commits it: the
    /// file stays in flight for another `PERSIST_TIMEOUT_MS` from now, so a
    /// placement slower than what was left of the deadline set at
    /// `ask_persist` does not see the persist handed out again. The worker
    /// asked is kept (a stale report extends, it does not take over).
    pub fn persist_placing(&mut self, file: u64, worker: u64, now_mono: u64) {
        let p = self.persisting.entry(file).or_insert_with(|| Persisting {
            worker,
            ..Persisting::default()
        });
        p.in_flight_until = Some(now_mono + PERSIST_TIMEOUT_MS);
    }

    pub fn persist_finished(&mut self, file: u64) {
        self.persisting.remove(&file);
    }

    /// Tells `worker` to drop its copy of `block`, and forgets that copy now.
    pub fn ask_drop(&mut self, worker: u64, block: u64) {
        if let Some(w) = self.workers.get_mut(&worker) {
            if w.blocks.remove(&block) {
                w.pending_removals.push(block);
            }
            self.unlink(block, worker);
            self.wake(worker);
        }
    }

    fn link(&mut self, block: u64, length: u64, tier: &str, worker: u64) {
        self.copying.remove(&(block, worker));
        let meta = self.blocks.entry(block).or_default();
        meta.length = length;
        match meta.workers.iter().position(|w| *w == worker) {
            // A move between the worker's tiers.
            Some(i) => meta.tiers[i] = tier.to_string(),
            None => {
                meta.workers.push(worker);
                meta.tiers.push(tier.to_string());
            }
        }
    }

    fn unlink(&mut self, block: u64, worker: u64) {
        if let Some(meta) = self.blocks.get_mut(&block) {
            meta.drop_worker(worker);
            if meta.workers.is_empty() {
                self.blocks.remove(&block);
            }
        }
    }

    /// Records that `worker` now caches `block`.
    pub fn commit_block(&mut self, worker: u64, block: u64, length: u64, tier: &str) -> Result<()> {
        let w = self.live_worker(worker)?;
        w.blocks.insert(block);
        // A worker that (re)commits a block it was told to drop (a `load`
        // right after a `free`) keeps it: the removal is no longer wanted.
        w.pending_removals.retain(|&b| b != block);
        self.link(block, length, tier, worker);
        Ok(())
    }

    /// Forgets blocks (their file was deleted, changed or freed) and tells
    /// the workers holding them to drop them. Returns the copies dropped.
    pub fn drop_blocks(&mut self, blocks: impl IntoIterator<Item = u64>) -> u64 {
        let mut copies = 0;
        for b in blocks {
            if let Some(meta) = self.blocks.remove(&b) {
                for wid in meta.workers {
                    if let Some(w) = self.workers.get_mut(&wid) {
                        w.blocks.remove(&b);
                        w.pending_removals.push(b);
                        copies += 1;
                    }
                }
            }
        }
        copies
    }

    /// Drops every block of `file_id` (for incomplete files, whose block
    /// count is not known). Scans all locations: deletes of incomplete files are rare.
    pub fn drop_file_blocks(&mut self, file_id: u64) {
        let stale: Vec<u64> = self
            .blocks
            .keys()
            .copied()
            .filter(|&b| eddy_proto::file_id_of_block(b) == file_id)
            .collect();
        self.drop_blocks(stale);
    }

    /// Marks workers silent for longer than `timeout_ms` as lost and drops
    /// their block locations. Returns the ids newly lost.
    pub fn expire(&mut self, now_mono: u64, timeout_ms: u64) -> Vec<u64> {
        let lost: Vec<u64> = self
            .workers
            .values()
            .filter(|w| w.live && now_mono.saturating_sub(w.last_seen) > timeout_ms)
            .map(|w| w.id)
            .collect();
        for &id in &lost {
            self.drop_worker_blocks(id);
            let w = self.workers.get_mut(&id).expect("listed above");
            w.live = false;
            w.pending_removals.clear();
            w.pending_copies.clear();
            w.pending_persists.clear();
        }
        lost
    }

    pub fn block(&self, id: u64) -> Option<&BlockMeta> {
        self.blocks.get(&id)
    }

    pub fn worker(&self, id: u64) -> Option<&Worker> {
        self.workers.get(&id)
    }

    pub fn workers(&self) -> impl Iterator<Item = &Worker> {
        self.workers.values()
    }

    pub fn block_count(&self) -> usize {
        self.blocks.len()
    }

    /// Live workers with the room each can make (`Worker::room_bytes`).
    pub fn candidates(&self) -> Vec<Candidate> {
        let mut v: Vec<Candidate> = self
            .workers
            .values()
            .filter(|w| w.live)
            .map(|w| Candidate {
                worker_id: w.id,
                host: w.address.host.clone(),
                free_bytes: w.room_bytes(),
            })
            .collect();
        v.sort_by_key(|c| c.worker_id);
        v
    }
}

#[cfg(test)]
mod tests;
