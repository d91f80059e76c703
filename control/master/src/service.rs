//! The master's state and its core: the mutation path every change takes
//! (`MasterState::mutate`), intents, opening under-storages, and file
//! status (get_status, exists, list_status). The rest of `MasterState`
//! lives by responsibility in `sync` (under-storage sync), `files` (file
//! operations), `blocks` (blocks and workers), `checkers` (background
//! checks), `admin` (mounts, attributes, free, persist), `staging`,
//! `recover`, `registration` and `block_info`; `rpc` is the gRPC glue.
//!
//! Lock order: `ns` before `reg`, never the reverse; no lock is held across
//! an `.await` (under-storage I/O and durable commits happen outside).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use eddy_proto::pb;
use eddy_ufs::{UfsPath, UnderFileSystem};
use parking_lot::{Mutex, RwLock};

use crate::config::MasterConfig;
use crate::error::{MasterError, Result};
use crate::inode::*;
use crate::intent::Intent;
use crate::metastore::{MetaOp, Metastore};
use crate::mount::MountPoint;
use crate::namespace::perm::{Access, EXECUTE, Need, READ};
use crate::namespace::{Effects, Namespace};
use crate::path::EddyPath;
use crate::workers::Registry;

/// Largest page `list_status` returns.
pub const MAX_LIST_PAGE: usize = 10_000;
const DEFAULT_LIST_PAGE: usize = 1_000;

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
    pub(crate) ufs: Mutex<HashMap<u64, Arc<dyn UnderFileSystem>>>,
    pub(crate) cfg: MasterConfig,
    pub(crate) started: Instant,
    pub(crate) started_ms: i64,
    pub(crate) address: String,
    /// Next intent record id (see `crate::intent`).
    pub(crate) next_intent: AtomicU64,
    /// Under-storage changes of one mount, one at a time (`crate::staging`).
    pub(crate) ufs_locks: crate::ufs_lock::UfsLocks,
    /// The registration grace period after a restart.
    pub(crate) grace: crate::grace::Grace,
    /// Answers wait until what they read is durable (`crate::durable`).
    pub(crate) durability: Arc<crate::durable::Durability>,
    /// The keys that sign credentials and block tokens (`crate::identity`).
    pub keys: Arc<crate::identity::MasterKeys>,
    /// Superuser, supergroup and users' groups (`crate::authz`).
    pub authz: crate::authz::Authority,
    /// Set when the server stops: parked heartbeats answer at once.
    pub(crate) stopping: tokio::sync::watch::Sender<bool>,
}

impl MasterState {
    pub(crate) fn new(
        ns: Namespace,
        store: Metastore,
        cfg: MasterConfig,
        address: String,
        keys: crate::identity::MasterKeys,
        authz: crate::authz::Authority,
    ) -> Self {
        Self {
            authz,
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
            keys: Arc::new(keys),
            stopping: tokio::sync::watch::channel(false).0,
        }
    }

    /// Who the running RPC acts for (`crate::authz`).
    pub(crate) fn who(&self) -> Access {
        crate::authz::current(&self.authz.superuser)
    }

    pub(crate) fn mono_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Runs a mutation under the namespace write lock, submits its durable
    /// changes before releasing the lock, and answers once they are durable
    /// (a deferred change: once what it read is, `crate::durable`).
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
            let commit = (!fx.is_empty()).then(|| self.submit(fx));
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
        if let Some((seq, wait, c)) = commit {
            let mut marking = Marking {
                durability: self.durability.clone(),
                seq,
                commit: Some(Box::pin(c)),
            };
            match wait {
                // A deferred change answers without its own commit: a task
                // sees it through.
                Some(before) => {
                    drop(marking);
                    self.durability.wait_for(before).await
                }
                None => std::future::poll_fn(|cx| marking.poll_commit(cx)).await?,
            }
        }
        Ok(value)
    }

    /// Numbers and submits a mutation's changes (under the namespace write
    /// lock): its sequence number, what a deferred one waits for instead of
    /// its own commit, and its commit.
    fn submit(&self, fx: Effects) -> (u64, Option<u64>, impl Future<Output = Result<()>> + use<>) {
        let deferred = fx.deferrable;
        let (seq, before) = if deferred {
            let (seq, before) = self.durability.submit_deferred();
            (seq, Some(before))
        } else {
            (self.durability.submit(), None)
        };
        (seq, before, self.store.submit_as(fx.into_ops(), deferred))
    }

    /// Waits until everything the caller may have read is durable; deferred
    /// changes it may have seen are committed now rather than when their
    /// window ends (`crate::durable`).
    pub(crate) async fn settle_reads(&self) {
        if self.durability.holds_deferred() {
            self.store.flush_deferred();
        }
        self.durability.settle().await;
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
    pub(crate) fn lost(reg: &Registry, ino: &Inode) -> bool {
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

    pub async fn get_status(&self, r: pb::GetStatusRequest) -> Result<pb::FileStatus> {
        let path = EddyPath::parse_bytes(&r.path)?;
        self.sync_path(&path, r.sync.as_ref()).await?;
        self.ns.read().permit(&self.who(), &path, Need::default())?;
        self.status_of(&path)
    }

    pub async fn exists(&self, r: pb::ExistsRequest) -> Result<bool> {
        let path = EddyPath::parse_bytes(&r.path)?;
        self.sync_path(&path, r.sync.as_ref()).await?;
        let ns = self.ns.read();
        ns.permit(&self.who(), &path, Need::default())?;
        Ok(ns.lookup(&path).is_some())
    }

    pub async fn list_status(&self, r: pb::ListStatusRequest) -> Result<pb::ListStatusResponse> {
        let path = EddyPath::parse_bytes(&r.path)?;
        let start_after = std::str::from_utf8(&r.start_after)
            .map_err(|_| MasterError::InvalidArgument("start_after is not valid UTF-8".into()))?;
        let limit = match r.limit as usize {
            0 => DEFAULT_LIST_PAGE,
            n => n.min(MAX_LIST_PAGE),
        };
        // A directory's names need read and execute on it (HDFS); checked
        // before resolving, so a path one may not traverse is not found
        // to be missing either; and before the syncs too, on what Eddy
        // knows, so a caller who may not list it cannot make the master
        // list the under-storage either.
        let permit = |ns: &Namespace| {
            let dir = ns
                .lookup(&path)
                .and_then(|i| ns.get(i))
                .is_some_and(|i| i.is_dir());
            let access = if dir { READ | EXECUTE } else { 0 };
            let need = Need {
                access,
                ..Need::default()
            };
            ns.permit(&self.who(), &path, need)
        };
        permit(&self.ns.read())?;
        self.sync_path(&path, r.sync.as_ref()).await?;
        // Sync the listing only when starting a listing, not on every page.
        if start_after.is_empty() {
            self.sync_listing(&path, r.sync.as_ref()).await?;
        }
        let ns = self.ns.read();
        permit(&ns)?;
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
}

/// A change's commit, marked durable when it lands (readers wait for the
/// mark). Awaited by the call itself, with no hand-off to another task;
/// if the call goes away first (its client gave up, or it answers without
/// waiting), a task finishes the commit and marks it.
struct Marking<F: Future<Output = Result<()>> + Send + 'static> {
    durability: Arc<crate::durable::Durability>,
    seq: u64,
    commit: Option<std::pin::Pin<Box<F>>>,
}

impl<F: Future<Output = Result<()>> + Send + 'static> Marking<F> {
    fn poll_commit(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<()>> {
        let Some(c) = self.commit.as_mut() else {
            return std::task::Poll::Ready(Ok(()));
        };
        let r = std::task::ready!(c.as_mut().poll(cx));
        self.commit = None;
        if r.is_ok() {
            self.durability.done(self.seq);
        }
        std::task::Poll::Ready(r)
    }
}

impl<F: Future<Output = Result<()>> + Send + 'static> Drop for Marking<F> {
    fn drop(&mut self) {
        // (No runtime: the master is stopping, and no reader is left to
        // wait for the mark; the batch itself is with the committer.)
        if let Some(c) = self.commit.take()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            let (durability, seq) = (self.durability.clone(), self.seq);
            rt.spawn(async move {
                if c.await.is_ok() {
                    durability.done(seq);
                }
            });
        }
    }
}
