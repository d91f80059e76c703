//! Blocks and workers: registration, heartbeats, block commits, worker
//! selection, lost workers, where a file's blocks are cached, and the
//! cluster summary. Lock order as everywhere: `ns` before `reg`.

use std::collections::HashSet;

use eddy_proto::pb;

use crate::admin::mount_info;
use crate::error::{MasterError, Result};
use crate::inode::*;
use crate::limits;
use crate::namespace::Namespace;
use crate::path::EddyPath;
use crate::placement::{DeterministicHash, LocalFirst, PlacementPolicy, PlacementRequest};
use crate::service::{MasterState, now_ms};

/// The longest the master holds a heartbeat's answer
/// (`HeartbeatRequest::wait_ms`).
pub const HEARTBEAT_WAIT_CAP_MS: u64 = 10_000;

impl MasterState {
    /// A heartbeat as a long poll: applied at once, and answered at once
    /// when there is something to say (commands, a new pinned set);
    /// otherwise held for up to `wait_ms` (capped) until a command is
    /// queued for the worker, so a persist, copy or removal reaches it in
    /// a round trip instead of at its next heartbeat.
    pub async fn heartbeat_wait(&self, r: pb::HeartbeatRequest) -> Result<pb::HeartbeatResponse> {
        let (id, wait) = (r.worker_id, r.wait_ms.min(HEARTBEAT_WAIT_CAP_MS));
        let mut resp = self.heartbeat(r)?;
        resp.long_poll = wait > 0;
        if wait == 0 || !resp.commands.is_empty() || resp.pinned.is_some() {
            return Ok(resp);
        }
        let wake = self.reg.lock().wake_of(id);
        let mut stopping = self.stopping.subscribe();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(wait);
        while !*stopping.borrow_and_update() {
            tokio::select! {
                // A permit left by a command already answered wakes this
                // at once: then there is nothing, and the wait goes on.
                _ = wake.notified() => {}
                _ = stopping.changed() => break,
                _ = tokio::time::sleep_until(deadline) => break,
            }
            resp.commands = self.reg.lock().take_commands(id);
            if !resp.commands.is_empty() {
                return Ok(resp);
            }
        }
        resp.commands = self.reg.lock().take_commands(id);
        Ok(resp)
    }

    /// Whether a worker's block report is consistent with the namespace.
    fn block_valid(ns: &Namespace, block: u64, length: u64) -> bool {
        let file = eddy_proto::file_id_of_block(block);
        let index = eddy_proto::block_index(block);
        match ns.get(file) {
            Some(f) if !f.is_dir() => {
                if f.flag(FLAG_COMPLETE) {
                    index < f.block_count() && length == f.block_length(index)
                } else {
                    length <= f.block_size
                }
            }
            _ => false,
        }
    }

    fn invalid_blocks(&self, blocks: impl Iterator<Item = (u64, u64)>) -> HashSet<u64> {
        let ns = self.ns.read();
        blocks
            .filter(|&(b, l)| !Self::block_valid(&ns, b, l))
            .map(|(b, _)| b)
            .collect()
    }

    pub async fn get_file_blocks(
        &self,
        r: pb::GetFileBlocksRequest,
    ) -> Result<pb::GetFileBlocksResponse> {
        let path = EddyPath::parse_bytes(&r.path)?;
        self.sync_path(&path, None).await?;
        let ns = self.ns.read();
        let read = crate::namespace::perm::Need {
            access: crate::namespace::perm::READ,
            ..Default::default()
        };
        ns.permit(&self.who(), &path, read)?;
        let id = ns.resolve(&path)?;
        let ino = ns.get(id).expect("resolved");
        if ino.is_dir() {
            return Err(MasterError::IsADirectory(path.to_string()));
        }
        let reg = self.reg.lock();
        let blocks = (0..ino.block_count())
            .map(|i| {
                let block_id = eddy_proto::block_id(id, i);
                let locations = reg
                    .block(block_id)
                    .map(|m| {
                        m.workers
                            .iter()
                            .filter_map(|w| reg.worker(*w))
                            .filter(|w| w.live)
                            .map(|w| pb::BlockLocation {
                                worker_id: w.id,
                                host: w.address.host.clone(),
                                data_port: w.address.data_port,
                                domain_socket: w.address.domain_socket.clone(),
                                tier: m.tier_on(w.id).to_string(),
                                rdma_provider: w.address.rdma_provider.clone(),
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                pb::FileBlock {
                    block_id,
                    offset: i * ino.block_size,
                    length: ino.block_length(i),
                    locations,
                }
            })
            .collect();
        let (mount, key) = ns.mounts.ufs_path(&path);
        Ok(pb::GetFileBlocksResponse {
            status: Some(Self::status(&ns, Some(&reg), ino, &path)),
            blocks,
            ufs: Some(pb::UfsLocation {
                mount_id: mount.id,
                key: key.as_str().to_string(),
            }),
            registration_grace_left_ms: self.grace.left_ms(reg.awaiting_workers, self.mono_ms()),
            // Signed by the RPC layer, which knows the caller.
            block_token: Vec::new(),
        })
    }

    /// A mount's under-storage URI and options (for workers filling misses).
    /// Mount `mount_id`, secrets in clear only for a live registered worker
    /// (which fills misses with them).
    pub fn get_mount(&self, mount_id: u64, worker_id: u64) -> Result<pb::MountInfo> {
        let mask = !self.reg.lock().worker(worker_id).is_some_and(|w| w.live);
        let ns = self.ns.read();
        ns.mounts
            .iter()
            .find(|m| m.id == mount_id)
            .map(|m| mount_info(m, mask))
            .ok_or_else(|| {
                MasterError::NotFound(format!(
                    "mount id {mount_id} (it was unmounted; re-read the file's metadata)"
                ))
            })
    }

    pub fn register_worker(
        &self,
        r: pb::RegisterWorkerRequest,
    ) -> Result<pb::RegisterWorkerResponse> {
        let address = r.address.ok_or_else(|| {
            MasterError::InvalidArgument("register needs the worker's address".into())
        })?;
        let invalid = self.invalid_blocks(r.blocks.iter().map(|b| (b.block_id, b.length)));
        let id = {
            let mut reg = self.reg.lock();
            let id = reg.register(
                address,
                r.tiers,
                &r.blocks,
                |b, _| !invalid.contains(&b),
                self.mono_ms(),
                now_ms(),
            )?;
            reg.set_io_engine(id, &r.io_engine);
            id
        };
        // Placement waiting for a worker (after a restart) looks again.
        self.grace.bump();
        tracing::info!("worker {id} registered with {} blocks", r.blocks.len());
        Ok(pb::RegisterWorkerResponse {
            worker_id: id,
            heartbeat_interval_ms: self.cfg.worker_heartbeat_interval_ms,
            lost_after_ms: self.cfg.worker_lost_after_ms,
            // Filled in by the RPC layer (`crate::identity`).
            ..Default::default()
        })
    }

    /// A worker's heartbeat: its block changes recorded, the commands
    /// waiting for it, and the pinned files when its copy of them is stale.
    pub fn heartbeat(&self, r: pb::HeartbeatRequest) -> Result<pb::HeartbeatResponse> {
        let known = r.pinned_version;
        let invalid = self.invalid_blocks(r.added_blocks.iter().map(|b| (b.block_id, b.length)));
        let commands = {
            let mut reg = self.reg.lock();
            let cmds = reg.heartbeat(&r, |b, _| !invalid.contains(&b), self.mono_ms())?;
            reg.set_io_engine(r.worker_id, &r.io_engine);
            cmds
        };
        let pinned = {
            let ns = self.ns.read();
            (ns.pin_version() != known).then(|| {
                let (version, file_ids) = ns.pinned_files();
                pb::PinnedFiles {
                    version,
                    file_ids,
                    demotable_file_ids: ns.pin_demotable(),
                }
            })
        };
        Ok(pb::HeartbeatResponse {
            commands,
            pinned,
            block_keys: Vec::new(),
            long_poll: false,
        })
    }

    pub fn commit_block(&self, r: pb::CommitBlockRequest) -> Result<()> {
        {
            let ns = self.ns.read();
            let file = eddy_proto::file_id_of_block(r.block_id);
            if ns.get(file).is_none_or(|f| f.is_dir()) {
                return Err(MasterError::NotFound(format!(
                    "block {} belongs to file id {file}, which does not exist",
                    r.block_id
                )));
            }
            if r.written && ns.get(file).is_some_and(|f| f.flag(FLAG_COMPLETE)) {
                return Err(MasterError::FileAlreadyComplete(format!(
                    "block {} belongs to file id {file}, which is complete: its blocks are not written again",
                    r.block_id
                )));
            }
            if !Self::block_valid(&ns, r.block_id, r.length) {
                return Err(MasterError::InvalidArgument(format!(
                    "block {} of length {} does not match its file",
                    r.block_id, r.length
                )));
            }
        }
        self.reg
            .lock()
            .commit_block(r.worker_id, r.block_id, r.length, &r.tier)
    }

    /// Whether the running RPC's caller may have a worker chosen for
    /// `block_id` (docs/SECURITY.md, "Who may call what"). A placement is
    /// for writing a file one is writing (incomplete, and the caller owns
    /// it: it created it, as `CompleteFile` checks) or for filling a miss
    /// of a file one may read (read on it, execute on its ancestors, as
    /// `GetFileBlocks` checks); for anything else it would only tell
    /// strangers which files exist and where their blocks are cached.
    pub(crate) fn permit_placement(&self, block_id: u64) -> Result<()> {
        let file = eddy_proto::file_id_of_block(block_id);
        let who = self.who();
        let ns = self.ns.read();
        let Some(ino) = ns.get(file).filter(|i| !i.is_dir()) else {
            return Err(MasterError::NotFound(format!(
                "block {block_id} belongs to file id {file}, which does not exist"
            )));
        };
        if !ino.flag(FLAG_COMPLETE) {
            return ns.permit_id_owner(&who, file);
        }
        let path = ns.path_of(file).ok_or_else(|| {
            MasterError::NotFound(format!("file id {file} is not in the namespace"))
        })?;
        let read = crate::namespace::perm::Need {
            access: crate::namespace::perm::READ,
            ..Default::default()
        };
        ns.permit(&who, &path, read)
    }

    pub fn select_worker(&self, r: pb::SelectWorkerRequest) -> Result<pb::SelectWorkerResponse> {
        let reg = self.reg.lock();
        let mut candidates = reg.candidates();
        candidates.retain(|c| !r.exclude_workers.contains(&c.worker_id));
        let req = PlacementRequest {
            block_id: r.block_id,
            client_host: r.client_host,
            bytes_needed: r.bytes_needed,
        };
        let chosen = match limits::placement(r.policy)? {
            pb::PlacementKind::DeterministicHash => DeterministicHash.choose(&candidates, &req),
            _ => LocalFirst.choose(&candidates, &req),
        };
        let id = chosen.ok_or_else(|| {
            MasterError::NoWorkerAvailable(format!(
                "{} live workers, none with room for new blocks (free or evictable)",
                candidates.len()
            ))
        })?;
        let w = reg.worker(id).expect("candidate exists");
        Ok(pb::SelectWorkerResponse {
            worker_id: id,
            address: Some(w.address.clone()),
        })
    }

    /// Declares silent workers lost. Called periodically.
    pub fn expire_workers(&self) {
        let lost = self
            .reg
            .lock()
            .expire(self.mono_ms(), self.cfg.worker_lost_after_ms);
        for id in lost {
            tracing::warn!(
                "worker {id} lost: no heartbeat for {} ms; its block locations are dropped",
                self.cfg.worker_lost_after_ms
            );
        }
    }

    pub fn cluster_info(&self) -> pb::GetClusterInfoResponse {
        let (inode_count, mount_count, persist_pending_files) = {
            let ns = self.ns.read();
            (
                ns.inode_count() as u64,
                ns.mounts.len() as u32,
                ns.persist_pending_count() as u64,
            )
        };
        let reg = self.reg.lock();
        let now = self.mono_ms();
        let mut tiers: Vec<pb::TierUsage> = Vec::new();
        let mut workers: Vec<pb::WorkerInfo> = reg
            .workers()
            .map(|w| {
                if w.live {
                    for t in &w.tiers {
                        match tiers.iter_mut().find(|x| x.tier == t.tier) {
                            Some(x) => {
                                x.capacity_bytes += t.capacity_bytes;
                                x.used_bytes += t.used_bytes;
                                x.evictable_bytes += t.evictable_bytes;
                                x.block_count += t.block_count;
                            }
                            None => tiers.push(pb::TierUsage {
                                dirs: Vec::new(),
                                ..t.clone()
                            }),
                        }
                    }
                }
                pb::WorkerInfo {
                    worker_id: w.id,
                    address: Some(w.address.clone()),
                    live: w.live,
                    tiers: w.tiers.clone(),
                    block_count: w.blocks.len() as u64,
                    last_heartbeat_ago_ms: now.saturating_sub(w.last_seen),
                    registered_ms: w.registered_ms,
                    io_engine: w.io_engine.clone(),
                }
            })
            .collect();
        workers.sort_by_key(|w| w.worker_id);
        // Public: counts, usage, versions and worker addresses (clients
        // find workers on their host by them, and file block lists name
        // them anyway; blocks need a token). The superuser's: the
        // directories on the workers' hosts.
        if !self.who().superuser {
            for w in &mut workers {
                for t in &mut w.tiers {
                    t.dirs.clear();
                }
            }
        }
        pb::GetClusterInfoResponse {
            version: env!("CARGO_PKG_VERSION").to_string(),
            master_address: self.address.clone(),
            uptime_ms: self.started.elapsed().as_millis() as u64,
            started_ms: self.started_ms,
            workers,
            tiers,
            block_count: reg.block_count() as u64,
            inode_count,
            mount_count,
            under_replicated_blocks: reg.under_replicated,
            unsatisfiable_blocks: reg.unsatisfiable,
            persist_pending_files,
            registration_grace_left_ms: self.grace.left_ms(reg.awaiting_workers, self.mono_ms()),
        }
    }
}
