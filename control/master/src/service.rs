//! The gRPC services: glue between requests, the namespace, the worker
//! registry, the under-storage and the metastore.
//!
//! Lock order: `ns` before `reg`, never the reverse; no lock is held across
//! an `.await` (under-storage I/O and durable commits happen outside).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use eddy_proto::pb;
use eddy_ufs::{UfsError, UfsPath, UnderFileSystem};
use parking_lot::{Mutex, RwLock};
use tonic::{Request, Response, Status};

use crate::config::MasterConfig;
use crate::error::{MasterError, Result};
use crate::inode::*;
use crate::intent::Intent;
use crate::limits;
use crate::metastore::{MetaOp, Metastore};
use crate::mount::{MountPoint, SYNC_NEVER};
use crate::namespace::{AttrChange, Effects, Namespace, NewAttrs};
use crate::path::EddyPath;
use crate::placement::{DeterministicHash, LocalFirst, PlacementPolicy, PlacementRequest};
use crate::replication;
use crate::workers::Registry;

/// Largest page `list_status` returns.
pub const MAX_LIST_PAGE: usize = 10_000;
const DEFAULT_LIST_PAGE: usize = 1_000;
/// Page size used when listing the under-storage during a sync.
const UFS_LIST_PAGE: usize = 1_000;

/// Test-only crash injection: with `EDDY_FAILPOINT=<name>` in its
/// environment the master exits on the spot at that point, committing
/// nothing more, as a `kill -9` would. Read once.
pub(crate) fn failpoint(name: &str) {
    static FAILPOINT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    if FAILPOINT
        .get_or_init(|| std::env::var("EDDY_FAILPOINT").ok())
        .as_deref()
        == Some(name)
    {
        eprintln!("eddy master: failpoint {name} reached, exiting");
        std::process::exit(86);
    }
}

fn mount_info(m: &MountPoint, mask: bool) -> pb::MountInfo {
    let options = m
        .options
        .iter()
        .map(|(k, v)| {
            let v = if mask && eddy_ufs::is_secret_option(k) {
                eddy_ufs::MASKED.to_string()
            } else {
                v.clone()
            };
            (k.clone(), v)
        })
        .collect();
    pb::MountInfo {
        path: m.path.as_str().as_bytes().to_vec(),
        ufs_uri: m.uri.clone(),
        read_only: m.read_only,
        options,
        sync_interval_ms: m.sync_interval_ms,
        mount_id: m.id,
    }
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Everything the master holds; shared by the three gRPC services.
pub struct MasterState {
    pub(crate) ns: RwLock<Namespace>,
    pub(crate) reg: Mutex<Registry>,
    pub(crate) store: Metastore,
    ufs: Mutex<HashMap<u64, Arc<dyn UnderFileSystem>>>,
    pub(crate) cfg: MasterConfig,
    started: Instant,
    started_ms: i64,
    pub(crate) address: String,
    /// Next intent record id (see `crate::intent`).
    pub(crate) next_intent: AtomicU64,
    /// Under-storage changes of one mount, one at a time (`crate::staging`).
    pub(crate) ufs_locks: crate::staging::UfsLocks,
    /// The registration grace period after a restart.
    pub(crate) grace: crate::registration::Grace,
    /// Answers wait until what they read is durable (`crate::durable`).
    pub(crate) durability: Arc<crate::durable::Durability>,
}

impl MasterState {
    pub(crate) fn new(ns: Namespace, store: Metastore, cfg: MasterConfig, address: String) -> Self {
        Self {
            ns: RwLock::new(ns),
            reg: Mutex::new(Registry::default()),
            store,
            ufs: Mutex::new(HashMap::new()),
            cfg,
            started: Instant::now(),
            started_ms: now_ms(),
            address,
            next_intent: AtomicU64::new(1),
            ufs_locks: Default::default(),
            grace: Default::default(),
            durability: Default::default(),
        }
    }

    pub(crate) fn mono_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Runs a mutation under the namespace write lock, submits its durable
    /// changes before releasing the lock, and answers once they are durable.
    pub(crate) async fn mutate<T>(
        &self,
        f: impl FnOnce(&mut Namespace, &mut Effects) -> Result<T>,
    ) -> Result<T> {
        let mut fx = Effects::default();
        let (value, commit) = {
            let mut ns = self.ns.write();
            // A mutation that panics half-way leaves memory the metastore
            // will never have (and the lock does not poison): serving on
            // would hand out state a restart loses. Stop, as a failed commit
            // does; the restart recovers what is durable. Inputs are checked
            // before this point (`limits`), so this is a bug, not a request.
            let applied =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&mut ns, &mut fx)));
            let Ok(value) = applied else {
                tracing::error!("a namespace change panicked half-way; stopping the master");
                std::process::abort();
            };
            let value = value?;
            let dropped = (
                std::mem::take(&mut fx.dropped_blocks),
                std::mem::take(&mut fx.dropped_files),
            );
            let commit = (!fx.is_empty())
                .then(|| (self.durability.submit(), self.store.submit(fx.into_ops())));
            (value, (commit, dropped))
        };
        let (commit, (blocks, files)) = commit;
        if !blocks.is_empty() || !files.is_empty() {
            let mut reg = self.reg.lock();
            reg.drop_blocks(blocks);
            for f in files {
                reg.drop_file_blocks(f);
            }
        }
        if let Some((seq, c)) = commit {
            // Marked durable by a task of its own: this call may be dropped
            // (its client gave up) while the commit goes on, and readers
            // wait for the mark.
            let durability = self.durability.clone();
            tokio::spawn(async move {
                let r = c.await;
                if r.is_ok() {
                    durability.done(seq);
                }
                r
            })
            .await
            .map_err(|e| MasterError::Metastore(format!("commit task: {e}")))??;
        }
        Ok(value)
    }

    /// Durably records `intent` before its under-storage half runs; the
    /// batch that applies the Eddy half must delete it (`MetaOp::DeleteIntent`).
    pub(crate) async fn begin_intent(&self, intent: &Intent) -> Result<u64> {
        let id = self.next_intent.fetch_add(1, Ordering::Relaxed);
        let record = intent.encode();
        self.store
            .submit(vec![MetaOp::PutIntent { id, record }])
            .await?;
        Ok(id)
    }

    /// Forgets an intent whose under-storage half did not happen (or was
    /// undone). Not awaited: an intent that survives anyway resolves to
    /// "nothing happened" at the next start.
    pub(crate) fn drop_intent(&self, id: u64) {
        drop(self.store.submit(vec![MetaOp::DeleteIntent(id)]));
    }

    /// The under-storage of `mount`, opened on first use (so a store that is
    /// down at start-up does not stop the master; its paths fail until it is back).
    pub(crate) async fn ufs(&self, mount: &MountPoint) -> Result<Arc<dyn UnderFileSystem>> {
        if let Some(u) = self.ufs.lock().get(&mount.id) {
            return Ok(u.clone());
        }
        let u = eddy_ufs::open_configured(&mount.uri, &mount.options, &self.cfg.ufs).await?;
        self.ufs.lock().insert(mount.id, u.clone());
        Ok(u)
    }

    pub(crate) fn ufs_target(&self, path: &EddyPath) -> (MountPoint, UfsPath) {
        let ns = self.ns.read();
        let (m, key) = ns.mounts.ufs_path(path);
        (m.clone(), key)
    }

    fn interval(requested: Option<&pb::SyncPolicy>, mount: &MountPoint) -> i64 {
        requested
            .and_then(|s| s.interval_ms)
            .unwrap_or(mount.sync_interval_ms)
    }

    fn due(last_ms: i64, interval: i64, now: i64) -> bool {
        interval >= 0 && (interval == 0 || now - last_ms >= interval)
    }

    /// Brings Eddy's view of `path` up to date with the under-storage: loads
    /// it if Eddy has not seen it, re-checks it when the sync interval says so,
    /// and drops it if the under-storage no longer has it.
    pub(crate) async fn sync_path(
        &self,
        path: &EddyPath,
        policy: Option<&pb::SyncPolicy>,
    ) -> Result<()> {
        let now = now_ms();
        enum Plan {
            Done,
            Recheck { id: u64, parent: u64 },
            Load { from: u64, depth: usize },
        }
        let (plan, mount, key) = {
            let ns = self.ns.read();
            let (m, key) = ns.mounts.ufs_path(path);
            let interval = Self::interval(policy, m);
            let (id, depth) = ns.deepest_known(path);
            let ino = ns.get(id).expect("known");
            let plan = if !ino.flag(FLAG_PERSISTED) {
                Plan::Done
            } else if depth == path.depth() {
                if ino.flag(FLAG_MOUNT_POINT) || !Self::due(ino.synced_ms, interval, now) {
                    Plan::Done
                } else {
                    Plan::Recheck {
                        id,
                        parent: ino.parent,
                    }
                }
            } else if ino.is_dir() {
                Plan::Load { from: id, depth }
            } else {
                Plan::Done
            };
            (plan, m.clone(), key)
        };
        if matches!(plan, Plan::Done) {
            return Ok(());
        }
        // Not while the mount's store changes: a stat between a rename's
        // store half and its commit would load the new name as a new file.
        let _held = self.ufs_load_lock(mount.id).await;
        match plan {
            Plan::Done => Ok(()),
            Plan::Recheck { id, parent } => {
                let ufs = self.ufs(&mount).await?;
                match ufs.stat(&key).await {
                    Ok(st) => {
                        self.mutate(|ns, fx| {
                            if ns.get(id).is_some_and(|i| i.parent == parent) {
                                ns.merge_ufs_child(parent, &st, now, fx);
                            }
                            Ok(())
                        })
                        .await
                    }
                    Err(UfsError::NotFound(_)) => {
                        self.mutate(|ns, fx| {
                            ns.drop_if_gone(id, fx);
                            Ok(())
                        })
                        .await
                    }
                    Err(e) => Err(e.into()),
                }
            }
            Plan::Load { from, depth } => {
                let ufs = self.ufs(&mount).await?;
                // Stat each missing component below the deepest known one.
                let comps: Vec<&str> = path.components().collect();
                let mount_depth = mount.path.depth();
                let mut found = Vec::new();
                for d in depth + 1..=comps.len() {
                    let k = UfsPath::from_components(comps[mount_depth..d].iter().copied())
                        .expect("valid components");
                    if crate::staging::is_reserved(&k) {
                        // Writes in progress are not files (yet).
                        break;
                    }
                    match ufs.stat(&k).await {
                        Ok(mut st) => {
                            st.name = comps[d - 1].to_string();
                            let is_dir = st.is_dir;
                            found.push(st);
                            if !is_dir {
                                break;
                            }
                        }
                        Err(UfsError::NotFound(_)) | Err(UfsError::NotADirectory(_)) => break,
                        Err(e) => return Err(e.into()),
                    }
                }
                if found.is_empty() {
                    return Ok(());
                }
                self.mutate(|ns, fx| {
                    let mut parent = from;
                    for st in &found {
                        match ns.merge_ufs_child(parent, st, now, fx) {
                            Some(c) => parent = c,
                            None => break,
                        }
                    }
                    Ok(())
                })
                .await
            }
        }
    }

    /// Lists directory `dir` from the under-storage and merges it, when it
    /// was never listed or the sync interval says so. Pages through the store
    /// and merges page by page, so a huge directory is never held whole.
    pub(crate) async fn sync_listing(
        &self,
        path: &EddyPath,
        policy: Option<&pb::SyncPolicy>,
    ) -> Result<()> {
        let now = now_ms();
        let (dir, mount, key) = {
            let ns = self.ns.read();
            let Some(id) = ns.lookup(path) else {
                return Ok(());
            };
            let ino = ns.get(id).expect("known");
            let Some(d) = ino.dir.as_ref() else {
                return Ok(());
            };
            if !ino.flag(FLAG_PERSISTED) {
                return Ok(());
            }
            let (m, key) = ns.mounts.ufs_path(path);
            let interval = Self::interval(policy, m);
            if d.listed_ms != 0 && !Self::due(d.listed_ms, interval, now) {
                return Ok(());
            }
            (id, m.clone(), key)
        };
        let ufs = self.ufs(&mount).await?;
        let mut after: Option<String> = None;
        // As in `sync_path`; released before the path sync below takes it.
        let held = self.ufs_load_lock(mount.id).await;
        loop {
            let page = match ufs.list(&key, after.as_deref(), UFS_LIST_PAGE).await {
                Ok(p) => p,
                Err(UfsError::NotFound(_)) | Err(UfsError::NotADirectory(_)) => {
                    // Gone (or now a file): the path sync sorts out which.
                    drop(held);
                    return self
                        .sync_path(
                            path,
                            Some(&pb::SyncPolicy {
                                interval_ms: Some(0),
                            }),
                        )
                        .await;
                }
                Err(e) => return Err(e.into()),
            };
            let next = page.next_start_after.clone();
            self.mutate(|ns, fx| {
                if !ns.get(dir).is_some_and(|i| i.is_dir()) {
                    return Ok(());
                }
                let names: HashSet<&str> = page.entries.iter().map(|e| e.name.as_str()).collect();
                for st in &page.entries {
                    if key.is_root() && st.name == crate::staging::DIR {
                        continue;
                    }
                    ns.merge_ufs_child(dir, st, now, fx);
                }
                ns.drop_unlisted(dir, after.as_deref(), next.as_deref(), &names, fx);
                if next.is_none() {
                    ns.mark_listed(dir, now);
                    ns.mark_synced(dir, now);
                }
                Ok(())
            })
            .await?;
            match next {
                Some(n) => after = Some(n),
                None => return Ok(()),
            }
        }
    }

    fn percent_cached(reg: &Registry, ino: &Inode) -> u32 {
        if ino.is_dir() || ino.length == 0 {
            return 100;
        }
        let cached: u64 = (0..ino.block_count())
            .filter(|&i| reg.block(eddy_proto::block_id(ino.id, i)).is_some())
            .map(|i| ino.block_length(i))
            .sum();
        (cached.saturating_mul(100) / ino.length) as u32
    }

    /// Complete, never persisted, and some block has no copy on a live
    /// worker: nothing can serve those bytes (docs/UFS.md, "lost files").
    /// Not while workers may still register again after a restart.
    fn lost(reg: &Registry, ino: &Inode) -> bool {
        !reg.awaiting_workers
            && !ino.is_dir()
            && ino.flag(FLAG_COMPLETE)
            && !ino.flag(FLAG_PERSISTED)
            && (0..ino.block_count()).any(|i| reg.block(eddy_proto::block_id(ino.id, i)).is_none())
    }

    pub(crate) fn status(
        ns: &Namespace,
        reg: Option<&Registry>,
        ino: &Inode,
        path: &EddyPath,
    ) -> pb::FileStatus {
        let block_ids = if ino.flag(FLAG_COMPLETE) {
            (0..ino.block_count())
                .map(|i| eddy_proto::block_id(ino.id, i))
                .collect()
        } else {
            Vec::new()
        };
        pb::FileStatus {
            id: ino.id,
            path: path.as_str().as_bytes().to_vec(),
            name: ino.name.as_bytes().to_vec(),
            is_dir: ino.is_dir(),
            length: ino.length,
            block_size: ino.block_size,
            block_ids,
            mtime_ms: ino.mtime_ms,
            mode: ino.mode,
            owner: ino.owner.user.to_string(),
            group: ino.owner.group.to_string(),
            persisted: ino.flag(FLAG_PERSISTED),
            // A file waiting to be persisted is pinned until it is.
            pinned: ino.flag(FLAG_PINNED) || ino.flag(FLAG_PERSIST_PENDING),
            pin_allows_demotion: ino.flag(FLAG_PIN_DEMOTE),
            persist_pending: ino.flag(FLAG_PERSIST_PENDING),
            ttl_ms: ino.ttl_ms,
            ttl_action: ino.ttl_action as i32,
            percent_cached: reg.map_or(0, |r| Self::percent_cached(r, ino)),
            lost: reg.is_some_and(|r| Self::lost(r, ino)),
            complete: ino.flag(FLAG_COMPLETE),
            replication_min: ino.replication_min,
            replication_max: ino.replication_max,
            ufs_fingerprint: ino.fingerprint.to_string(),
            is_mount_point: ns.mounts.is_mount_point(path),
            created_ms: ino.created_ms,
        }
    }

    pub(crate) fn status_of(&self, path: &EddyPath) -> Result<pb::FileStatus> {
        let ns = self.ns.read();
        let id = ns.resolve(path)?;
        let ino = ns.get(id).expect("resolved");
        let reg = (!ino.is_dir() && ino.length > 0).then(|| self.reg.lock());
        Ok(Self::status(&ns, reg.as_deref(), ino, path))
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

    // ---- namespace operations ----

    pub async fn mkdir(&self, r: pb::MkdirRequest) -> Result<pb::FileStatus> {
        let path = EddyPath::parse_bytes(&r.path)?;
        let attrs = NewAttrs {
            mode: r.mode,
            owner: r.owner,
            group: r.group,
            ..Default::default()
        };
        self.load_parent(&path).await?;
        let exists = self
            .ns
            .read()
            .check_mkdir(&path, r.recursive, r.allow_exists, &attrs)?;
        if exists.is_none() {
            let (mount, key) = self.ufs_target(&path);
            self.ufs(&mount).await?.mkdir(&key).await?;
            let now = now_ms();
            self.mutate(|ns, fx| {
                ns.mkdir(&path, r.recursive, r.allow_exists, &attrs, true, now, fx)
            })
            .await?;
        } else {
            // Already there: an answer read from the namespace, as a stat.
            self.durability.settle().await;
        }
        self.status_of(&path)
    }

    /// Loads `path` and its parent from the under-storage if Eddy has not seen
    /// them, so creates and mkdirs see what is already there.
    pub(crate) async fn load_parent(&self, path: &EddyPath) -> Result<()> {
        self.sync_path(path, None).await?;
        if let Some(parent) = path.parent() {
            self.sync_path(&parent, None).await?;
        }
        Ok(())
    }

    /// Has the unpersisted files at `path` persisted in the background.
    pub async fn persist(&self, r: pb::PersistRequest) -> Result<u64> {
        let path = EddyPath::parse_bytes(&r.path)?;
        self.check_writable_ufs(&path)?;
        {
            // A lost file can never be persisted: say so instead of queueing.
            let ns = self.ns.read();
            let ino = ns.get(ns.resolve(&path)?).expect("resolved");
            if Self::lost(&self.reg.lock(), ino) {
                return Err(MasterError::DataLost(path.to_string()));
            }
        }
        let mut n = 0;
        self.mutate(|ns, fx| {
            n = ns.mark_persist(&path, fx)?;
            Ok(())
        })
        .await?;
        Ok(n)
    }

    /// See `CheckConsistencyRequest`: the persisted files at or below the
    /// path against their under-storage copies, 32 stats at a time.
    pub async fn check_consistency(
        &self,
        r: pb::CheckConsistencyRequest,
    ) -> Result<pb::CheckConsistencyResponse> {
        use futures::StreamExt;
        const MAX_LISTED: usize = 1000;
        let path = EddyPath::parse_bytes(&r.path)?;
        // What Eddy believes, gathered under the lock; the stores asked after.
        let files: Vec<(EddyPath, MountPoint, UfsPath, u64, Fingerprint)> = {
            let ns = self.ns.read();
            let id = ns.resolve(&path)?;
            ns.subtree(id)
                .into_iter()
                .filter_map(|i| {
                    let ino = ns.get(i)?;
                    if ino.is_dir() || !ino.flag(FLAG_COMPLETE) || !ino.flag(FLAG_PERSISTED) {
                        return None;
                    }
                    let p = ns.path_of(i)?;
                    let (m, key) = ns.mounts.ufs_path(&p);
                    Some((p, m.clone(), key, ino.length, ino.fingerprint))
                })
                .collect()
        };
        let files_checked = files.len() as u64;
        let mut found = futures::stream::iter(files)
            .map(|(p, m, key, length, fingerprint)| async move {
                let reason = match self.ufs(&m).await {
                    Err(e) => Some(format!("the under-storage cannot be opened: {e}")),
                    Ok(u) => match u.stat(&key).await {
                        Err(eddy_ufs::UfsError::NotFound(_)) => {
                            Some("missing from the under-storage".to_string())
                        }
                        Err(e) => Some(format!("cannot stat it in the under-storage: {e}")),
                        Ok(st) if st.is_dir => Some("a directory in the under-storage".to_string()),
                        Ok(st) if st.length != length => Some(format!(
                            "{length} bytes in Eddy, {} in the under-storage",
                            st.length
                        )),
                        Ok(st)
                            if !fingerprint.is_none()
                                && Fingerprint::of(&st.fingerprint) != fingerprint =>
                        {
                            Some(
                                "changed in the under-storage (its fingerprint differs)"
                                    .to_string(),
                            )
                        }
                        Ok(_) => None,
                    },
                };
                reason.map(|reason| pb::Inconsistency {
                    path: p.as_str().as_bytes().to_vec(),
                    reason,
                })
            })
            .buffer_unordered(32);
        let mut inconsistent = Vec::new();
        let mut truncated = false;
        while let Some(x) = found.next().await {
            if let Some(x) = x {
                if inconsistent.len() < MAX_LISTED {
                    inconsistent.push(x);
                } else {
                    truncated = true;
                }
            }
        }
        inconsistent.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(pb::CheckConsistencyResponse {
            files_checked,
            inconsistent,
            truncated,
        })
    }

    fn check_writable_ufs(&self, path: &EddyPath) -> Result<()> {
        let ns = self.ns.read();
        let (m, _) = ns.mounts.ufs_path(path);
        if m.read_only {
            return Err(MasterError::ReadOnly(format!(
                "{path} is in read-only mount {}",
                m.path
            )));
        }
        Ok(())
    }

    /// Asks workers to persist files waiting for it: one holding every
    /// block of the file, at most one attempt in flight per file, failed
    /// attempts retried with backoff. Returns how many were asked.
    pub fn check_persists(&self) -> usize {
        let now = self.mono_ms();
        // The requests, built under the namespace lock; workers chosen after.
        let jobs: Vec<pb::PersistFile> = {
            let ns = self.ns.read();
            let reg = self.reg.lock();
            ns.persist_pending()
                .into_iter()
                .filter(|id| reg.persist_due(*id, now))
                .filter_map(|id| {
                    let ino = ns.get(id)?;
                    let path = ns.path_of(id)?;
                    let (m, _) = ns.mounts.ufs_path(&path);
                    // Written to the staging name; moved into place when
                    // the worker reports back (`file_persisted`).
                    Some(pb::PersistFile {
                        file_id: id,
                        ufs: Some(pb::UfsLocation {
                            mount_id: m.id,
                            key: crate::staging::key(id).as_str().to_string(),
                        }),
                        blocks: (0..ino.block_count())
                            .map(|i| pb::BlockReport {
                                block_id: eddy_proto::block_id(id, i),
                                length: ino.block_length(i),
                                tier: String::new(),
                            })
                            .collect(),
                        length: ino.length,
                    })
                })
                .collect()
        };
        let mut reg = self.reg.lock();
        let mut asked = 0;
        for cmd in jobs {
            let ids: Vec<u64> = cmd.blocks.iter().map(|b| b.block_id).collect();
            let Some(worker) = reg.holder_of_all(&ids) else {
                if ids.iter().any(|b| reg.block(*b).is_none()) {
                    tracing::warn!(
                        "file {} waits to be persisted but is lost: a block has no copy on any live worker (retried in case its worker returns)",
                        cmd.file_id
                    );
                } else {
                    tracing::warn!(
                        "file {} waits to be persisted but no live worker holds all its blocks",
                        cmd.file_id
                    );
                }
                reg.persist_failed(cmd.file_id, now);
                continue;
            };
            reg.ask_persist(worker, cmd, now);
            asked += 1;
        }
        asked
    }

    pub async fn get_status(&self, r: pb::GetStatusRequest) -> Result<pb::FileStatus> {
        let path = EddyPath::parse_bytes(&r.path)?;
        self.sync_path(&path, r.sync.as_ref()).await?;
        self.status_of(&path)
    }

    pub async fn exists(&self, r: pb::ExistsRequest) -> Result<bool> {
        let path = EddyPath::parse_bytes(&r.path)?;
        self.sync_path(&path, r.sync.as_ref()).await?;
        Ok(self.ns.read().lookup(&path).is_some())
    }

    pub async fn list_status(&self, r: pb::ListStatusRequest) -> Result<pb::ListStatusResponse> {
        let path = EddyPath::parse_bytes(&r.path)?;
        let start_after = std::str::from_utf8(&r.start_after)
            .map_err(|_| MasterError::InvalidArgument("start_after is not valid UTF-8".into()))?;
        let limit = match r.limit as usize {
            0 => DEFAULT_LIST_PAGE,
            n => n.min(MAX_LIST_PAGE),
        };
        self.sync_path(&path, r.sync.as_ref()).await?;
        // Sync the listing only when starting a listing, not on every page.
        if start_after.is_empty() {
            self.sync_listing(&path, r.sync.as_ref()).await?;
        }
        let ns = self.ns.read();
        let id = ns.resolve(&path)?;
        let (ids, next) = ns.list(id, start_after, limit);
        let reg = self.reg.lock();
        let is_dir = ns.get(id).expect("resolved").is_dir();
        let entries = ids
            .into_iter()
            .map(|cid| {
                let ino = ns.get(cid).expect("listed");
                let p = if is_dir {
                    path.join(&ino.name)
                } else {
                    path.clone()
                };
                Self::status(&ns, Some(&reg), ino, &p)
            })
            .collect();
        Ok(pb::ListStatusResponse {
            entries,
            next_start_after: next.map(String::into_bytes).unwrap_or_default(),
        })
    }

    pub async fn set_attribute(&self, r: pb::SetAttributeRequest) -> Result<pb::FileStatus> {
        let path = EddyPath::parse_bytes(&r.path)?;
        self.sync_path(&path, None).await?;
        let ch = AttrChange {
            mode: r.mode,
            owner: r.owner,
            group: r.group,
            pinned: r.pinned,
            pin_allow_demotion: r.pin_allow_demotion,
            ttl_ms: r.ttl_ms,
            ttl_action: match r.ttl_action {
                0 => None,
                a => Some(limits::ttl_action(a)?),
            },
            replication_min: r.replication_min,
            replication_max: r.replication_max,
            recursive: r.recursive,
        };
        self.mutate(|ns, fx| ns.set_attribute(&path, &ch, fx))
            .await?;
        self.status_of(&path)
    }

    pub async fn mount(&self, r: pb::MountRequest) -> Result<()> {
        let path = EddyPath::parse_bytes(&r.path)?;
        if r.ufs_uri.is_empty() {
            return Err(MasterError::InvalidArgument(
                "a mount needs an under-storage URI".into(),
            ));
        }
        let sync_interval_ms = r.sync_interval_ms.unwrap_or(SYNC_NEVER);
        if sync_interval_ms < -1 {
            return Err(MasterError::InvalidArgument(format!(
                "sync interval {sync_interval_ms} ms is invalid (-1 never, 0 always, or a positive interval)"
            )));
        }
        let options: BTreeMap<String, String> = r.options.into_iter().collect();
        limits::mount(&r.ufs_uri, &options)?;
        // Reachability first: a mount that cannot be opened is refused.
        let ufs = eddy_ufs::open_configured(&r.ufs_uri, &options, &self.cfg.ufs).await?;
        self.load_parent(&path).await?;
        self.sync_listing(&path, None).await?;
        let now = now_ms();
        let id = self
            .mutate(|ns, fx| {
                let id = ns.mounts.next_id();
                ns.mount(
                    MountPoint {
                        id,
                        path: path.clone(),
                        uri: r.ufs_uri.clone(),
                        read_only: r.read_only,
                        options,
                        sync_interval_ms,
                    },
                    now,
                    fx,
                )?;
                Ok(id)
            })
            .await?;
        self.ufs.lock().insert(id, ufs);
        Ok(())
    }

    pub async fn unmount(&self, r: pb::UnmountRequest) -> Result<()> {
        let path = EddyPath::parse_bytes(&r.path)?;
        let m = self.mutate(|ns, fx| ns.unmount(&path, fx)).await?;
        self.ufs.lock().remove(&m.id);
        Ok(())
    }

    /// Every mount, secret options masked.
    pub fn list_mounts(&self) -> Vec<pb::MountInfo> {
        self.ns
            .read()
            .mounts
            .iter()
            .map(|m| mount_info(m, true))
            .collect()
    }

    pub async fn get_file_blocks(
        &self,
        r: pb::GetFileBlocksRequest,
    ) -> Result<pb::GetFileBlocksResponse> {
        let path = EddyPath::parse_bytes(&r.path)?;
        self.sync_path(&path, None).await?;
        let ns = self.ns.read();
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
        })
    }

    /// Drops the cached copies of `path`'s blocks from every worker (on their
    /// next heartbeat). Returns how many block copies were dropped.
    pub async fn free(&self, r: pb::FreeRequest) -> Result<u64> {
        let path = EddyPath::parse_bytes(&r.path)?;
        self.sync_path(&path, None).await?;
        let blocks = self.ns.read().free_targets(&path, r.recursive, r.force)?;
        Ok(self.reg.lock().drop_blocks(blocks))
    }

    /// Runs the action of every entry whose TTL has run out: `free` drops
    /// its cached copies (persisted data only, pins respected) and clears
    /// the TTL; `delete` removes it, from the under-storage too, as
    /// `eddy fs rm -R` would. Returns how many actions succeeded.
    pub async fn check_ttls(&self) -> usize {
        let expired = self.ns.read().expired_ttls(now_ms());
        let mut done = 0;
        for (path, action) in expired {
            let bytes = path.to_string().into_bytes();
            let r = match action {
                pb::TtlAction::Free => {
                    let freed = self
                        .free(pb::FreeRequest {
                            path: bytes.clone(),
                            recursive: true,
                            force: false,
                        })
                        .await;
                    match freed {
                        Ok(_) => self
                            .set_attribute(pb::SetAttributeRequest {
                                path: bytes,
                                ttl_ms: Some(-1),
                                ..Default::default()
                            })
                            .await
                            .map(|_| ()),
                        Err(e) => Err(e),
                    }
                }
                _ => {
                    self.delete(pb::DeleteRequest {
                        path: bytes,
                        recursive: true,
                        eddy_only: false,
                        file_id: 0,
                    })
                    .await
                }
            };
            match r {
                Ok(()) => {
                    tracing::info!("TTL expired: {} ({})", path, action.as_str_name());
                    done += 1;
                }
                Err(e) => tracing::warn!("TTL action on {path} failed, retrying later: {e}"),
            }
        }
        done
    }

    /// Checks every bounded file's blocks against its replication min and
    /// max, and asks workers (on their next heartbeats) to add or drop
    /// copies. Returns the plan's figures (for tests and logs).
    pub fn check_replication(&self) -> replication::Plan {
        // What the namespace knows: bounds, lengths, under-storage copies.
        let files = {
            let ns = self.ns.read();
            ns.replicated_files()
                .into_iter()
                .filter_map(|(id, blocks, min, max)| {
                    let ino = ns.get(id)?;
                    let ufs = if ino.flag(FLAG_PERSISTED) {
                        let path = ns.path_of(id)?;
                        let (mount, key) = ns.mounts.ufs_path(&path);
                        Some(pb::UfsLocation {
                            mount_id: mount.id,
                            key: key.as_str().to_string(),
                        })
                    } else {
                        None
                    };
                    let blocks: Vec<(u64, u64, u64)> = blocks
                        .iter()
                        .enumerate()
                        .map(|(i, b)| (*b, i as u64 * ino.block_size, ino.block_length(i as u64)))
                        .collect();
                    Some((blocks, min, max, ufs))
                })
                .collect::<Vec<_>>()
        };
        let now = self.mono_ms();
        let mut reg = self.reg.lock();
        let live: Vec<u64> = reg.workers().filter(|w| w.live).map(|w| w.id).collect();
        let targets: Vec<replication::Target> = reg
            .candidates()
            .into_iter()
            .map(|c| replication::Target {
                worker: c.worker_id,
                free_bytes: c.free_bytes,
            })
            .collect();
        let mut bounded = Vec::new();
        let mut source = HashMap::new();
        for (blocks, min, max, ufs) in &files {
            for &(block, offset, length) in blocks {
                let holders: Vec<u64> = reg
                    .block(block)
                    .map(|m| {
                        m.workers
                            .iter()
                            .copied()
                            .filter(|w| live.contains(w))
                            .collect()
                    })
                    .unwrap_or_default();
                bounded.push(replication::Bounded {
                    block,
                    length,
                    min: *min,
                    max: *max,
                    holders,
                    in_ufs: ufs.is_some(),
                });
                source.insert(block, (length, offset, ufs.clone()));
            }
        }
        let coming = reg.copies_coming(now);
        let plan = replication::plan(&bounded, &targets, &coming);
        for a in &plan.actions {
            match a {
                replication::Action::Copy { block, to, from } => {
                    let (length, file_offset, ufs) = source[block].clone();
                    let sources = from
                        .iter()
                        .filter_map(|w| reg.worker(*w))
                        .map(|w| w.address.clone())
                        .collect();
                    reg.ask_copy(
                        *to,
                        pb::ReplicateBlock {
                            block_id: *block,
                            length,
                            sources,
                            ufs,
                            file_offset,
                        },
                        now,
                    );
                }
                replication::Action::Drop { block, from } => reg.ask_drop(*from, *block),
            }
        }
        reg.under_replicated = plan.under;
        reg.unsatisfiable = plan.unsatisfiable;
        if !plan.actions.is_empty() {
            tracing::info!(
                "replication: {} copy or drop requests; {} blocks under their min, {} of them unsatisfiable",
                plan.actions.len(),
                plan.under,
                plan.unsatisfiable
            );
        }
        plan
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

    // ---- workers ----

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
        })
    }

    pub fn heartbeat(&self, r: pb::HeartbeatRequest) -> Result<Vec<pb::WorkerCommand>> {
        let invalid = self.invalid_blocks(r.added_blocks.iter().map(|b| (b.block_id, b.length)));
        let mut reg = self.reg.lock();
        let cmds = reg.heartbeat(&r, |b, _| !invalid.contains(&b), self.mono_ms())?;
        reg.set_io_engine(r.worker_id, &r.io_engine);
        Ok(cmds)
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

// ---- tonic glue: one line per RPC ----

/// Serves all three master services over one shared state.
#[derive(Clone)]
pub struct MasterRpc(pub Arc<MasterState>);

impl MasterRpc {
    /// A read's answer, once everything it may have seen is durable.
    async fn read<T>(&self, f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        let r = f.await;
        self.0.durability.settle().await;
        r
    }

    /// A change's answer. Success waited for its own commit, which follows
    /// every commit it depended on; a refusal may rest on a change not
    /// durable yet (ALREADY_EXISTS of a file whose create is in flight), so
    /// it waits as a read does.
    async fn change<T>(&self, f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        let r = f.await;
        if r.is_err() {
            self.0.durability.settle().await;
        }
        r
    }
}

type Rpc<T> = std::result::Result<Response<T>, Status>;

#[tonic::async_trait]
impl pb::file_system_master_server::FileSystemMaster for MasterRpc {
    async fn mkdir(&self, r: Request<pb::MkdirRequest>) -> Rpc<pb::MkdirResponse> {
        let status = self.change(self.0.mkdir(r.into_inner())).await?;
        Ok(Response::new(pb::MkdirResponse {
            status: Some(status),
        }))
    }
    async fn create_file(&self, r: Request<pb::CreateFileRequest>) -> Rpc<pb::CreateFileResponse> {
        let (status, ufs) = self.change(self.0.create_file(r.into_inner())).await?;
        Ok(Response::new(pb::CreateFileResponse {
            status: Some(status),
            ufs: Some(ufs),
        }))
    }
    async fn complete_file(
        &self,
        r: Request<pb::CompleteFileRequest>,
    ) -> Rpc<pb::CompleteFileResponse> {
        let status = self.change(self.0.complete_file(r.into_inner())).await?;
        Ok(Response::new(pb::CompleteFileResponse {
            status: Some(status),
        }))
    }
    async fn get_status(&self, r: Request<pb::GetStatusRequest>) -> Rpc<pb::GetStatusResponse> {
        let status = self.read(self.0.get_status(r.into_inner())).await?;
        Ok(Response::new(pb::GetStatusResponse {
            status: Some(status),
        }))
    }
    async fn exists(&self, r: Request<pb::ExistsRequest>) -> Rpc<pb::ExistsResponse> {
        let exists = self.read(self.0.exists(r.into_inner())).await?;
        Ok(Response::new(pb::ExistsResponse { exists }))
    }
    async fn list_status(&self, r: Request<pb::ListStatusRequest>) -> Rpc<pb::ListStatusResponse> {
        Ok(Response::new(
            self.read(self.0.list_status(r.into_inner())).await?,
        ))
    }
    async fn rename(&self, r: Request<pb::RenameRequest>) -> Rpc<pb::RenameResponse> {
        self.change(self.0.rename(r.into_inner())).await?;
        Ok(Response::new(pb::RenameResponse {}))
    }
    async fn delete(&self, r: Request<pb::DeleteRequest>) -> Rpc<pb::DeleteResponse> {
        self.change(self.0.delete(r.into_inner())).await?;
        Ok(Response::new(pb::DeleteResponse {}))
    }
    async fn set_attribute(
        &self,
        r: Request<pb::SetAttributeRequest>,
    ) -> Rpc<pb::SetAttributeResponse> {
        let status = self.change(self.0.set_attribute(r.into_inner())).await?;
        Ok(Response::new(pb::SetAttributeResponse {
            status: Some(status),
        }))
    }
    async fn mount(&self, r: Request<pb::MountRequest>) -> Rpc<pb::MountResponse> {
        self.change(self.0.mount(r.into_inner())).await?;
        Ok(Response::new(pb::MountResponse {}))
    }
    async fn unmount(&self, r: Request<pb::UnmountRequest>) -> Rpc<pb::UnmountResponse> {
        self.change(self.0.unmount(r.into_inner())).await?;
        Ok(Response::new(pb::UnmountResponse {}))
    }
    async fn list_mounts(&self, _: Request<pb::ListMountsRequest>) -> Rpc<pb::ListMountsResponse> {
        Ok(Response::new(pb::ListMountsResponse {
            mounts: self.0.list_mounts(),
        }))
    }
    async fn get_file_blocks(
        &self,
        r: Request<pb::GetFileBlocksRequest>,
    ) -> Rpc<pb::GetFileBlocksResponse> {
        Ok(Response::new(
            self.read(self.0.get_file_blocks(r.into_inner())).await?,
        ))
    }
    async fn free(&self, r: Request<pb::FreeRequest>) -> Rpc<pb::FreeResponse> {
        let blocks_freed = self.change(self.0.free(r.into_inner())).await?;
        Ok(Response::new(pb::FreeResponse { blocks_freed }))
    }
    async fn check_consistency(
        &self,
        r: Request<pb::CheckConsistencyRequest>,
    ) -> Rpc<pb::CheckConsistencyResponse> {
        Ok(Response::new(
            self.0.check_consistency(r.into_inner()).await?,
        ))
    }
    async fn persist(&self, r: Request<pb::PersistRequest>) -> Rpc<pb::PersistResponse> {
        let files = self.change(self.0.persist(r.into_inner())).await?;
        Ok(Response::new(pb::PersistResponse { files }))
    }
}

#[tonic::async_trait]
impl pb::block_master_server::BlockMaster for MasterRpc {
    async fn register_worker(
        &self,
        r: Request<pb::RegisterWorkerRequest>,
    ) -> Rpc<pb::RegisterWorkerResponse> {
        Ok(Response::new(self.0.register_worker(r.into_inner())?))
    }
    async fn heartbeat(&self, r: Request<pb::HeartbeatRequest>) -> Rpc<pb::HeartbeatResponse> {
        let r = r.into_inner();
        let known = r.pinned_version;
        let commands = self.0.heartbeat(r)?;
        let pinned = {
            let ns = self.0.ns.read();
            (ns.pin_version() != known).then(|| {
                let (version, file_ids) = ns.pinned_files();
                pb::PinnedFiles {
                    version,
                    file_ids,
                    demotable_file_ids: ns.pin_demotable(),
                }
            })
        };
        Ok(Response::new(pb::HeartbeatResponse { commands, pinned }))
    }
    async fn get_mount(&self, r: Request<pb::GetMountRequest>) -> Rpc<pb::GetMountResponse> {
        let r = r.into_inner();
        let mount = self.0.get_mount(r.mount_id, r.worker_id)?;
        Ok(Response::new(pb::GetMountResponse { mount: Some(mount) }))
    }
    async fn commit_block(
        &self,
        r: Request<pb::CommitBlockRequest>,
    ) -> Rpc<pb::CommitBlockResponse> {
        self.0.commit_block(r.into_inner())?;
        Ok(Response::new(pb::CommitBlockResponse {}))
    }
    async fn get_block_info(
        &self,
        r: Request<pb::GetBlockInfoRequest>,
    ) -> Rpc<pb::GetBlockInfoResponse> {
        Ok(Response::new(self.0.block_info(r.into_inner().block_id)?))
    }
    async fn file_persisted(
        &self,
        r: Request<pb::FilePersistedRequest>,
    ) -> Rpc<pb::FilePersistedResponse> {
        self.0.file_persisted(r.into_inner()).await?;
        Ok(Response::new(pb::FilePersistedResponse {}))
    }
    async fn select_worker(
        &self,
        r: Request<pb::SelectWorkerRequest>,
    ) -> Rpc<pb::SelectWorkerResponse> {
        Ok(Response::new(
            self.0.select_worker_in_grace(r.into_inner()).await?,
        ))
    }
}

#[tonic::async_trait]
impl pb::meta_master_server::MetaMaster for MasterRpc {
    async fn get_cluster_info(
        &self,
        _: Request<pb::GetClusterInfoRequest>,
    ) -> Rpc<pb::GetClusterInfoResponse> {
        Ok(Response::new(self.0.cluster_info()))
    }
}
