//! The worker's side of the control plane: registration, heartbeats (with
//! the commands they bring back), block commits, and mount lookups.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use eddy_client::{ClientError, EddyCode, MasterClient, pb};
use eddy_ufs::UnderFileSystem;
use parking_lot::Mutex;
use tokio::sync::{mpsc, watch};

use crate::error::Result;
use crate::store::BlockStore;

pub use crate::store::MEM as TIER_MEM;

/// How often a failing heartbeat is tried again (at most the interval).
/// A refused connection costs next to nothing, and this is what makes a
/// worker register again promptly with a restarted master.
pub const RETRY_WHILE_FAILING: Duration = Duration::from_millis(100);

pub struct MasterLink {
    master: MasterClient,
    address: pb::WorkerAddress,
    store: Arc<BlockStore>,
    worker_id: AtomicU64,
    interval_ms: AtomicU64,
    /// Opened under-storages by mount id (resolved through the master).
    mounts: Mutex<HashMap<u64, Arc<dyn UnderFileSystem>>>,
    /// Serialises re-registration.
    registering: tokio::sync::Mutex<()>,
    /// Copy requests, to the replicator task.
    copies: mpsc::UnboundedSender<crate::jobs::Job>,
    /// This worker's object-store defaults (the config file's `[ufs.*]`).
    ufs_defaults: eddy_ufs::UfsDefaults,
    /// The block keys of the last registration (`crate::access`).
    pub keys: crate::access::BlockKeys,
    /// Where this worker's credential came from, to read it again (none:
    /// the one given is kept).
    creds: Option<crate::credentials::CredentialSource>,
}

impl MasterLink {
    pub fn new(
        master: MasterClient,
        address: pb::WorkerAddress,
        store: Arc<BlockStore>,
        copies: mpsc::UnboundedSender<crate::jobs::Job>,
        ufs_defaults: eddy_ufs::UfsDefaults,
    ) -> Self {
        Self {
            ufs_defaults,
            master,
            address,
            store,
            copies,
            worker_id: AtomicU64::new(0),
            interval_ms: AtomicU64::new(1_000),
            mounts: Mutex::new(HashMap::new()),
            registering: tokio::sync::Mutex::new(()),
            keys: Default::default(),
            creds: None,
        }
    }

    /// This link re-reads its credential from `src` when the master refuses
    /// it and before it expires.
    pub fn with_credentials(mut self, src: crate::credentials::CredentialSource) -> Self {
        self.creds = Some(src);
        self
    }

    /// Reads the credential again after the master refused it (a replaced
    /// token file, a rotated key file) or ahead of its expiry; true when
    /// another one is in use from now on.
    fn reread_credentials(&self, why: &str) -> bool {
        let Some(src) = &self.creds else {
            return false;
        };
        let Some(creds) = src.reread() else {
            return false;
        };
        match self.master.set_credentials(&creds) {
            Ok(()) => {
                tracing::info!("read this worker's credential again ({why})");
                true
            }
            Err(e) => {
                tracing::warn!("the worker credential read again is unusable: {e}");
                false
            }
        }
    }

    /// As [`MasterLink::reread_credentials`] when `e` is the master's
    /// refusal of the credential.
    fn refused(&self, e: &ClientError) -> bool {
        e.code() == EddyCode::Unauthenticated
            && self.reread_credentials("the master refused the one in use")
    }

    pub fn worker_id(&self) -> u64 {
        self.worker_id.load(Ordering::Relaxed)
    }

    fn tiers(&self) -> Vec<pb::TierUsage> {
        self.store
            .tiers()
            .into_iter()
            .map(|t| pb::TierUsage {
                tier: t.alias,
                capacity_bytes: t.capacity,
                used_bytes: t.used,
                evictable_bytes: t.evictable,
                block_count: t.blocks,
                dirs: t
                    .dirs
                    .into_iter()
                    .map(|d| pb::TierDir {
                        path: d.path,
                        capacity_bytes: d.capacity,
                        used_bytes: d.used,
                        error: d.error,
                    })
                    .collect(),
            })
            .collect()
    }

    /// Registers (again), reporting every block held.
    pub async fn register(&self) -> Result<u64, ClientError> {
        let _one = self.registering.lock().await;
        let blocks = self
            .store
            .report()
            .into_iter()
            .map(|(block_id, length, tier)| pb::BlockReport {
                block_id,
                length,
                tier,
            })
            .collect();
        let req = pb::RegisterWorkerRequest {
            address: Some(self.address.clone()),
            tiers: self.tiers(),
            blocks,
            io_engine: self.store.engine().describe(),
        };
        let r = match self
            .master
            .block_service()
            .register_worker(req.clone())
            .await
        {
            Ok(r) => r,
            Err(s) => {
                let e = ClientError::from(s);
                if !self.refused(&e) {
                    return Err(e);
                }
                self.master.block_service().register_worker(req).await?
            }
        }
        .into_inner();
        // Whatever was pending is part of the full report just sent.
        self.store.take_changes();
        self.keys
            .install(&r.block_keys, r.block_tokens_required, &r.authentication);
        self.worker_id.store(r.worker_id, Ordering::Relaxed);
        self.interval_ms
            .store(r.heartbeat_interval_ms.max(10), Ordering::Relaxed);
        Ok(r.worker_id)
    }

    /// Registers, retrying every second until the master answers or
    /// `shutdown` fires.
    pub async fn register_until_ok(&self, shutdown: &mut watch::Receiver<bool>) -> Option<u64> {
        let mut warned = false;
        loop {
            match self.register().await {
                Ok(id) => return Some(id),
                Err(e) => {
                    if !warned {
                        tracing::warn!("cannot register with the master, retrying: {e}");
                        warned = true;
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.changed() => return None,
            }
        }
    }

    /// Records a newly cached block with the master. A master that forgot
    /// this worker gets a registration (which reports the block).
    pub async fn commit(&self, block_id: u64, length: u64) -> Result<(), ClientError> {
        self.commit_in(block_id, length, TIER_MEM).await
    }

    /// As [`MasterLink::commit`], for a block held in `tier`.
    pub async fn commit_in(
        &self,
        block_id: u64,
        length: u64,
        tier: &str,
    ) -> Result<(), ClientError> {
        self.commit_block(block_id, length, tier, false).await
    }

    /// As [`MasterLink::commit`], for a block a write session wrote: the
    /// master refuses it once the file is complete.
    pub async fn commit_written(&self, block_id: u64, length: u64) -> Result<(), ClientError> {
        self.commit_block(block_id, length, TIER_MEM, true).await
    }

    /// What the master says about a block (its file, length, location).
    pub async fn block_info(&self, block_id: u64) -> Result<pb::GetBlockInfoResponse, ClientError> {
        let req = pb::GetBlockInfoRequest { block_id };
        match self.master.block_service().get_block_info(req).await {
            Ok(r) => Ok(r.into_inner()),
            Err(s) => {
                let e = ClientError::from(s);
                if !self.refused(&e) {
                    return Err(e);
                }
                let r = self.master.block_service().get_block_info(req).await?;
                Ok(r.into_inner())
            }
        }
    }

    async fn commit_block(
        &self,
        block_id: u64,
        length: u64,
        tier: &str,
        written: bool,
    ) -> Result<(), ClientError> {
        let req = pb::CommitBlockRequest {
            worker_id: self.worker_id(),
            block_id,
            length,
            tier: tier.into(),
            written,
        };
        let commit = |req| async { self.master.block_service().commit_block(req).await };
        let mut r = commit(req.clone()).await.map_err(ClientError::from);
        if let Err(e) = &r
            && self.refused(e)
        {
            r = commit(req).await.map_err(ClientError::from);
        }
        match r {
            Ok(_) => Ok(()),
            Err(e) => {
                match e.code() {
                    EddyCode::UnknownWorker => self.register().await.map(|_| ()),
                    // The master is away: the next heartbeat carries it.
                    EddyCode::Unavailable => {
                        self.store
                            .restore_changes(vec![(block_id, length, tier.into())], vec![]);
                        Ok(())
                    }
                    _ => Err(e),
                }
            }
        }
    }

    /// Tells the master how a persist request went (`error` empty: done).
    pub async fn file_persisted(
        &self,
        file_id: u64,
        ufs: pb::UfsLocation,
        fingerprint: String,
        length: u64,
        error: String,
    ) -> Result<(), ClientError> {
        self.master
            .block_service()
            .file_persisted(pb::FilePersistedRequest {
                worker_id: self.worker_id(),
                file_id,
                ufs: Some(ufs),
                fingerprint,
                length,
                error,
            })
            .await?;
        Ok(())
    }

    /// The under-storage of mount `id`, opened on first use.
    pub async fn ufs(&self, id: u64) -> Result<Arc<dyn UnderFileSystem>> {
        if let Some(u) = self.mounts.lock().get(&id) {
            return Ok(u.clone());
        }
        let m = self
            .master
            .block_service()
            .get_mount(pb::GetMountRequest {
                mount_id: id,
                worker_id: self.worker_id(),
            })
            .await
            .map_err(ClientError::from)?
            .into_inner()
            .mount
            .unwrap_or_default();
        let options = m.options.into_iter().collect();
        let u = eddy_ufs::open_configured(&m.ufs_uri, &options, &self.ufs_defaults).await?;
        // Two first uses at once both open it; every caller gets the one kept.
        Ok(self.mounts.lock().entry(id).or_insert(u).clone())
    }

    /// Heartbeats until `shutdown`; obeys the commands that come back.
    /// While heartbeats fail (the master is away) they are tried every
    /// [`RETRY_WHILE_FAILING`], so a restarted master hears from this worker
    /// (and has it register again) within that of answering, not a whole
    /// interval later: its registration grace period ends sooner for it.
    ///
    /// A heartbeat is a long poll: the master holds its answer for up to an
    /// interval until it has a command for this worker, so a persist, copy
    /// or removal arrives in a round trip; the next one is sent at once.
    /// Against a master that answers at once (`long_poll` false) the
    /// interval is kept between heartbeats.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut failing = false;
        let mut pause = Duration::ZERO;
        loop {
            let interval = Duration::from_millis(self.interval_ms.load(Ordering::Relaxed));
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = shutdown.changed() => return,
            }
            let started = tokio::time::Instant::now();
            let beat = tokio::select! {
                b = self.heartbeat(interval) => b,
                _ = shutdown.changed() => return,
            };
            pause = match beat {
                Ok(b) => {
                    if failing {
                        tracing::info!("master reachable again");
                    }
                    failing = false;
                    // Never faster than every 10 ms without commands (a
                    // master answering early again and again), and the
                    // whole interval against one that does not hold.
                    let floor = if b.long_poll {
                        MIN_HEARTBEAT_GAP
                    } else {
                        interval
                    };
                    if b.commands > 0 {
                        Duration::ZERO
                    } else {
                        floor.saturating_sub(started.elapsed())
                    }
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!("heartbeat failed: {e}");
                    }
                    failing = true;
                    interval.min(RETRY_WHILE_FAILING)
                }
            };
        }
    }

    async fn heartbeat(&self, wait: Duration) -> Result<Beat, ClientError> {
        if self
            .creds
            .as_ref()
            .is_some_and(|c| c.due(eddy_proto::auth::unix_ms()))
        {
            self.reread_credentials("the one in use is past half its life");
        }
        let (added, evicted) = self.store.take_changes();
        let req = pb::HeartbeatRequest {
            worker_id: self.worker_id(),
            tiers: self.tiers(),
            added_blocks: added
                .iter()
                .map(|(block_id, length, tier)| pb::BlockReport {
                    block_id: *block_id,
                    length: *length,
                    tier: tier.clone(),
                })
                .collect(),
            removed_blocks: evicted.clone(),
            pinned_version: self.store.pinned_version(),
            io_engine: self.store.engine().describe(),
            wait_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
        };
        let resp = match self.master.block_service().heartbeat(req).await {
            Ok(r) => r.into_inner(),
            Err(s) => {
                let e = ClientError::from(s);
                if e.code() == EddyCode::UnknownWorker {
                    // A restarted master: the registration reports everything.
                    self.register().await?;
                    return Ok(Beat::default());
                }
                self.store.restore_changes(added, evicted);
                // Tried again with it within RETRY_WHILE_FAILING.
                self.refused(&e);
                return Err(e);
            }
        };
        self.keys.roll(&resp.block_keys);
        if let Some(p) = resp.pinned {
            self.store
                .set_pinned(p.version, p.file_ids, p.demotable_file_ids);
        }
        let beat = Beat {
            long_poll: resp.long_poll,
            commands: resp.commands.len(),
        };
        for c in resp.commands {
            match c.command {
                Some(pb::worker_command::Command::RemoveBlocks(r)) => {
                    self.store.remove(&r.block_ids);
                }
                Some(pb::worker_command::Command::ReplicateBlocks(r)) => {
                    // Copies take a while: the heartbeat goes on meanwhile.
                    let _ = self.copies.send(crate::jobs::Job::Replicate(r.blocks));
                }
                Some(pb::worker_command::Command::PersistFile(p)) => {
                    let _ = self.copies.send(crate::jobs::Job::Persist(p));
                }
                Some(pb::worker_command::Command::Reregister(_)) => {
                    self.register().await?;
                }
                None => {}
            }
        }
        Ok(beat)
    }
}

/// What one heartbeat's answer said of the next.
#[derive(Default)]
struct Beat {
    /// The master held the answer (see `HeartbeatResponse::long_poll`).
    long_poll: bool,
    commands: usize,
}

/// The shortest gap between heartbeats that brought no command.
const MIN_HEARTBEAT_GAP: Duration = Duration::from_millis(10);
