//! Durable metadata in an embedded `redb` file, written by group commit.
//!
//! Mutations are applied to the in-memory namespace under its write lock and,
//! still under that lock, handed to [`Metastore::submit`] as a batch of
//! [`MetaOp`]s; the RPC then awaits the returned future outside the lock. A
//! single committer thread drains every batch waiting at that moment into one
//! redb write transaction with immediate durability (one fsync for many
//! requests), then answers them all. Order of batches = order of in-memory
//! application, because submission happens under the namespace lock.
//!
//! Architecture invariant: with `[master] sync = "always"` (the default) an
//! RPC that mutates metadata answers OK only after the transaction holding
//! its batch has committed durably. With `sync = "batch"` it answers once
//! the transaction is in the journal (written, not synced: it outlives the
//! process) and committed without a sync; a durable commit follows within
//! `sync_batch_ms`, and a clean stop syncs first ([`Metastore::sync`]). See
//! `crate::journal` for what each crash loses.
//!
//! A deferred batch ([`Metastore::submit_as`], the create of a file) does
//! not start a transaction of its own with `always`: it waits in the
//! committer for the next batch that is not deferred (its file's
//! completion, as a rule) and goes into the same transaction, or is
//! committed alone when `SyncPolicy::defer` has passed. A create and a
//! completion then cost one fsync between them, not two.

use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::oneshot;

use crate::config::MetastoreSync;
use crate::error::{MasterError, Result};
use crate::inode::Inode;
use crate::journal::Journal;

const INODES: TableDefinition<u64, &[u8]> = TableDefinition::new("inodes");
const MOUNTS: TableDefinition<&str, &[u8]> = TableDefinition::new("mounts");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Pending under-storage operations (see `crate::intent`).
const INTENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("intents");
/// In `META`: the epoch of journal records not yet in redb (`crate::journal`).
const JOURNAL_EPOCH: &str = "journal_epoch";

const FORMAT_VERSION: u64 = 1;
/// Batches larger than this are split across transactions.
const MAX_OPS_PER_TXN: usize = 50_000;

pub use crate::metaop::MetaOp;

/// What the master reads back at start.
pub struct Loaded {
    pub inodes: Vec<Vec<u8>>,
    pub mounts: Vec<(String, Vec<u8>)>,
    pub next_id: u64,
    /// Intents left by a master that stopped mid-operation: (id, record).
    pub intents: Vec<(u64, Vec<u8>)>,
}

/// When commits reach the disk (`[master] sync`, `sync_batch_ms`).
#[derive(Debug, Clone, Copy)]
pub struct SyncPolicy {
    pub mode: MetastoreSync,
    /// With `Batch`: the longest a commit waits for its sync.
    pub batch: Duration,
    /// With `Always`: the longest a deferred batch waits for a commit to
    /// join.
    pub defer: Duration,
}

/// How long a deferred create waits for its file's completion to commit
/// with ([`SyncPolicy::defer`]): a small file is written and closed well
/// within it, and a crash can lose no more than this of creates nothing
/// else has seen.
pub const DEFER: Duration = Duration::from_millis(10);

impl Default for SyncPolicy {
    fn default() -> Self {
        Self {
            mode: MetastoreSync::Always,
            batch: Duration::from_millis(100),
            defer: DEFER,
        }
    }
}

struct Batch {
    ops: Vec<MetaOp>,
    /// Answer only once this batch and everything before it are synced,
    /// whatever the policy ([`Metastore::sync`]).
    sync: bool,
    /// With `always`: wait for the next batch that is not deferred, or
    /// `SyncPolicy::defer`, before committing.
    deferred: bool,
    /// Answered when the batch's transaction commits (`None`: the batch
    /// was answered when it was journaled). A failed commit stops the
    /// master (`or_abort`), so there is no error to send.
    done: Option<oneshot::Sender<()>>,
}

impl Batch {
    /// Nothing to commit or answer: a nudge to the committer.
    fn empty() -> Self {
        Self {
            ops: Vec::new(),
            sync: false,
            deferred: false,
            done: None,
        }
    }
}

/// With `batch`: the journal, shared by submitters (who append under the
/// namespace lock) and the committer (which empties it at a sync), and the
/// batches journaled since the last sync. Those stay here, not in the
/// committer's channel, until it syncs (or they grow past a transaction's
/// worth): a journaled change needs no commit before its answer, so it
/// costs no wake-up of the committer thread and no transaction of its
/// own. Only the first after a sync tells the committer, whose sync is
/// then due within `SyncPolicy::batch`.
struct Journaled {
    journal: Journal,
    pending: Vec<Batch>,
    pending_ops: usize,
}

type SharedJournal = Arc<parking_lot::Mutex<Journaled>>;

/// Handle to the metastore's committer thread.
#[derive(Clone)]
pub struct Metastore {
    tx: mpsc::Sender<Batch>,
    /// `Some` with `sync = "batch"`.
    journal: Option<SharedJournal>,
    /// How many `batch` syncs the committer has done.
    syncs: tokio::sync::watch::Receiver<u64>,
}

impl Metastore {
    /// Opens (or creates) `dir/metastore.redb` and starts the committer
    /// thread, which syncs as `policy` says.
    pub fn open(dir: &Path, policy: SyncPolicy) -> Result<(Self, Loaded)> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        // The metastore holds mount options, credentials among them: it is
        // the master's own (0700 folder, 0600 file), set again on every
        // start so a copy restored with looser bits is closed too.
        let owner_only = |p: &Path, mode: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).map_err(|e| {
                MasterError::Metastore(format!("cannot restrict {} to its owner: {e}", p.display()))
            })
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| MasterError::Metastore(format!("cannot create {}: {e}", dir.display())))?;
        owner_only(dir, 0o700)?;
        let file = dir.join("metastore.redb");
        let db = Database::create(&file)
            .map_err(|e| MasterError::Metastore(format!("cannot open {}: {e}", file.display())))?;
        owner_only(&file, 0o600)?;
        let db = Arc::new(db);
        prepare(&db).map_err(|e| MasterError::Metastore(e.to_string()))?;
        let journal = replay_journal(&db, dir)?;
        let loaded = load(&db).map_err(|e| MasterError::Metastore(e.to_string()))?;
        let journal = (policy.mode == MetastoreSync::Batch).then(|| {
            Arc::new(parking_lot::Mutex::new(Journaled {
                journal,
                pending: Vec::new(),
                pending_ops: 0,
            }))
        });
        let (tx, rx) = mpsc::channel::<Batch>();
        let (synced, syncs) = tokio::sync::watch::channel(0);
        let committer = Committer {
            rx,
            policy,
            journal: journal.clone(),
            sync_by: None,
            held: Vec::new(),
            held_by: None,
            synced,
        };
        std::thread::Builder::new()
            .name("eddy-metastore".into())
            .spawn(move || committer.run(&db))
            .map_err(|e| MasterError::Metastore(format!("cannot start committer: {e}")))?;
        Ok((Self { tx, journal, syncs }, loaded))
    }

    /// Counts the syncs of `sync = "batch"` (periodic, asked for, at the end).
    pub fn syncs(&self) -> tokio::sync::watch::Receiver<u64> {
        self.syncs.clone()
    }

    /// Queues `ops` for the next group commit; the future resolves once they
    /// are durable: committed with `always`, journaled with `batch` (see the
    /// module doc). Call with the namespace lock held (submission order is
    /// commit order), await without it.
    pub fn submit(&self, ops: Vec<MetaOp>) -> impl Future<Output = Result<()>> + use<> {
        self.submit_as(ops, false)
    }

    /// As [`Self::submit`]; `deferred`: with `always` the batch waits for
    /// the next one that is not deferred (or `SyncPolicy::defer`) to share
    /// its transaction, and its submitter answers without awaiting it
    /// (`crate::durable`). With `batch` the journal answers at once anyway.
    pub fn submit_as(
        &self,
        ops: Vec<MetaOp>,
        deferred: bool,
    ) -> impl Future<Output = Result<()>> + use<> {
        // `(None, sent)`: journaled, answered at once if it reached the
        // committer.
        let (waited, sent) = match &self.journal {
            Some(j) if !ops.is_empty() => {
                let mut j = j.lock();
                // In the page cache before the answer; a failed write stops
                // the master as a failed commit does.
                or_abort(j.journal.append(ops.iter()));
                // Queued under the journal lock: a sync that empties the
                // journal takes every record it held.
                let first = j.pending.is_empty();
                j.pending_ops += ops.len();
                j.pending.push(Batch {
                    ops,
                    sync: false,
                    deferred: false,
                    done: None,
                });
                // The first since the last sync makes one due; a queue of a
                // transaction's worth goes into redb at once (memory stays
                // bounded however long `sync_batch_ms` is).
                let tell = first || j.pending_ops >= MAX_OPS_PER_TXN;
                let sent = !tell || self.tx.send(Batch::empty()).is_ok();
                (None, sent)
            }
            _ => (Some(self.send(ops, false, deferred)), true),
        };
        async move {
            match waited {
                Some(w) => w.await,
                None if sent => Ok(()),
                None => Err(stopped()),
            }
        }
    }

    /// Resolves once every change submitted before it is on disk: at once
    /// in effect with `sync = "always"`; a clean stop calls it so `batch`
    /// loses nothing then.
    pub fn sync(&self) -> impl Future<Output = Result<()>> + use<> {
        self.send(Vec::new(), true, false)
    }

    /// Asks the committer to commit the deferred batches it holds now (a
    /// reader may see them: `crate::durable`).
    pub fn flush_deferred(&self) {
        // Nothing to answer, and a stopped committer has nothing to commit.
        let _ = self.tx.send(Batch::empty());
    }

    fn send(
        &self,
        ops: Vec<MetaOp>,
        sync: bool,
        deferred: bool,
    ) -> impl Future<Output = Result<()>> + use<> {
        let (done, rx) = oneshot::channel();
        let sent = self
            .tx
            .send(Batch {
                ops,
                sync,
                deferred,
                done: Some(done),
            })
            .is_ok();
        async move {
            if !sent {
                return Err(stopped());
            }
            rx.await.map_err(|_| stopped())
        }
    }
}

fn stopped() -> MasterError {
    MasterError::Metastore("metastore committer stopped".into())
}

/// Why the metastore cannot be read at start.
#[derive(Debug, thiserror::Error)]
enum LoadError {
    #[error("{0}")]
    Db(#[from] redb::Error),
    #[error(
        "metastore format version {0} is not supported by this master (expects {FORMAT_VERSION})"
    )]
    Format(u64),
}

fn db_error(e: impl Into<redb::Error>) -> LoadError {
    LoadError::Db(e.into())
}

/// Creates the tables and stamps the format on a fresh file.
fn prepare(db: &Database) -> Result<(), LoadError> {
    {
        let w = db.begin_write().map_err(db_error)?;
        {
            let mut meta = w.open_table(META).map_err(db_error)?;
            let existing = meta
                .get("format_version")
                .map_err(db_error)?
                .map(|v| v.value());
            match existing {
                None => {
                    meta.insert("format_version", FORMAT_VERSION)
                        .map_err(db_error)?;
                }
                Some(v) if v != FORMAT_VERSION => {
                    return Err(LoadError::Format(v));
                }
                Some(_) => {}
            }
            w.open_table(INODES).map_err(db_error)?;
            w.open_table(MOUNTS).map_err(db_error)?;
            w.open_table(INTENTS).map_err(db_error)?;
        }
        w.commit().map_err(db_error)?;
    }
    Ok(())
}

/// The epoch of the journal's records not yet in redb (see `crate::journal`).
fn journal_epoch(db: &Database) -> Result<u64, LoadError> {
    let r = db.begin_read().map_err(db_error)?;
    let meta = r.open_table(META).map_err(db_error)?;
    Ok(meta
        .get(JOURNAL_EPOCH)
        .map_err(db_error)?
        .map(|v| v.value())
        .unwrap_or(0))
}

/// Applies what the journal holds (a `batch` master that crashed) durably
/// and empties it; returns it open for appending.
fn replay_journal(db: &Database, dir: &Path) -> Result<Journal> {
    let epoch = journal_epoch(db).map_err(|e| MasterError::Metastore(e.to_string()))?;
    let (mut journal, replay) = Journal::open(dir, epoch)?;
    if replay.ops.is_empty() && replay.stale == 0 && replay.torn_bytes == 0 {
        return Ok(journal);
    }
    tracing::info!(
        ops = replay.ops.len(),
        stale_records = replay.stale,
        torn_bytes = replay.torn_bytes,
        "replaying the metastore journal of a master that stopped without syncing"
    );
    apply(db, replay.ops.iter(), true, Some(epoch + 1))
        .map_err(|e| MasterError::Metastore(format!("cannot replay the journal: {e}")))?;
    journal.reset(epoch + 1)?;
    Ok(journal)
}

fn load(db: &Database) -> Result<Loaded, LoadError> {
    let r = db.begin_read().map_err(db_error)?;
    let meta = r.open_table(META).map_err(db_error)?;
    let next_id = meta
        .get("next_id")
        .map_err(db_error)?
        .map(|v| v.value())
        .unwrap_or(0);
    let mut inodes = Vec::new();
    for row in r
        .open_table(INODES)
        .map_err(db_error)?
        .iter()
        .map_err(db_error)?
    {
        let (_, v) = row.map_err(db_error)?;
        inodes.push(v.value().to_vec());
    }
    let mut mounts = Vec::new();
    for row in r
        .open_table(MOUNTS)
        .map_err(db_error)?
        .iter()
        .map_err(db_error)?
    {
        let (k, v) = row.map_err(db_error)?;
        mounts.push((k.value().to_string(), v.value().to_vec()));
    }
    let mut intents = Vec::new();
    for row in r
        .open_table(INTENTS)
        .map_err(db_error)?
        .iter()
        .map_err(db_error)?
    {
        let (k, v) = row.map_err(db_error)?;
        intents.push((k.value(), v.value().to_vec()));
    }
    Ok(Loaded {
        inodes,
        mounts,
        next_id,
        intents,
    })
}

/// The committer thread: group commits and, with `batch`, the periodic
/// sync that empties the journal.
struct Committer {
    rx: mpsc::Receiver<Batch>,
    policy: SyncPolicy,
    /// `Some` with `sync = "batch"`.
    journal: Option<SharedJournal>,
    /// With `batch`: when the oldest commit not yet synced must be.
    sync_by: Option<Instant>,
    /// With `always`: deferred batches waiting for a commit to join, in
    /// submission order, and when the oldest must be committed anyway.
    held: Vec<Batch>,
    held_by: Option<Instant>,
    /// Bumped after each `batch` sync ([`Metastore::syncs`]).
    synced: tokio::sync::watch::Sender<u64>,
}

impl Committer {
    fn run(mut self, db: &Database) {
        // Test-only: `EDDY_COMMIT_DELAY_MS` holds every commit back that
        // long, so tests can act (read, kill -9) while a change is not
        // durable yet; `EDDY_DEFER_COMMIT_MS` widens the deferral window
        // for the same reason.
        let env_ms = |name: &str| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse::<u64>().ok())
                .map(Duration::from_millis)
        };
        let delay = env_ms("EDDY_COMMIT_DELAY_MS");
        if let Some(d) = env_ms("EDDY_DEFER_COMMIT_MS") {
            self.policy.defer = d;
        }
        loop {
            let now = Instant::now();
            // Due even while batches keep coming.
            if self.sync_by.is_some_and(|t| t <= now) {
                self.sync(db, Vec::new());
            }
            if self.held_by.is_some_and(|t| t <= now) {
                if let Some(d) = delay {
                    std::thread::sleep(d);
                }
                let held = self.take_held();
                self.commit(db, held);
                continue;
            }
            let first = match self.sync_by.into_iter().chain(self.held_by).min() {
                None => match self.rx.recv() {
                    Ok(b) => b,
                    Err(_) => break,
                },
                Some(t) => match self.rx.recv_timeout(t.saturating_duration_since(now)) {
                    Ok(b) => b,
                    Err(mpsc::RecvTimeoutError::Timeout) => continue,
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                },
            };
            if first.deferred {
                self.held_by.get_or_insert(now + self.policy.defer);
                self.held.push(first);
                continue;
            }
            if let Some(d) = delay {
                std::thread::sleep(d);
            }
            let mut batches = self.take_held();
            batches.push(first);
            self.take_ready(&mut batches);
            self.commit(db, batches);
        }
        // Every handle is gone: what is held is committed, what was
        // committed reaches the disk.
        let held = self.take_held();
        self.commit(db, held);
        let queued = (self.journal.as_ref()).is_some_and(|j| !j.lock().pending.is_empty());
        if self.sync_by.is_some() || queued {
            self.sync(db, Vec::new());
        }
    }

    /// The deferred batches held, oldest first; none is held after.
    fn take_held(&mut self) -> Vec<Batch> {
        self.held_by = None;
        std::mem::take(&mut self.held)
    }

    /// Adds the batches already queued to `batches`, up to a transaction's
    /// worth of ops.
    fn take_ready(&self, batches: &mut Vec<Batch>) {
        let mut n_ops: usize = batches.iter().map(|b| b.ops.len()).sum();
        while n_ops < MAX_OPS_PER_TXN {
            match self.rx.try_recv() {
                Ok(b) => {
                    n_ops += b.ops.len();
                    batches.push(b);
                }
                Err(_) => break,
            }
        }
    }

    /// Commits `batches` in one transaction and answers them: synced with
    /// `always`; with `batch` (already journaled) without a sync, then
    /// synced if a batch asks for it.
    fn commit(&mut self, db: &Database, batches: Vec<Batch>) {
        let ops = || batches.iter().flat_map(|b| &b.ops);
        if self.journal.is_none() {
            // An empty batch (a flush of held batches, a sync) with
            // nothing held needs no transaction: all before it is durable.
            if ops().next().is_some() {
                or_abort(apply(db, ops(), true, None));
            }
            answer(batches);
            return;
        }
        if ops().next().is_some() {
            // Journaled batches are queued, not sent: none has ops today,
            // but one that did would be committed, never dropped.
            or_abort(apply(db, ops(), false, None));
            self.make_sync_due();
        }
        if let Some(journal) = self.journal.clone() {
            let mut j = journal.lock();
            if !j.pending.is_empty() {
                self.make_sync_due();
            }
            if j.pending_ops >= MAX_OPS_PER_TXN {
                // Into redb now, synced with the rest later.
                let queued = std::mem::take(&mut j.pending);
                j.pending_ops = 0;
                drop(j);
                or_abort(apply(db, queued.iter().flat_map(|b| &b.ops), false, None));
            }
        }
        if batches.iter().any(|b| b.sync) {
            self.sync(db, batches);
        } else {
            answer(batches);
        }
    }

    /// With `batch`: a sync is due within `SyncPolicy::batch` of the first
    /// change not yet synced.
    fn make_sync_due(&mut self) {
        self.sync_by = self
            .sync_by
            .or_else(|| Some(Instant::now() + self.policy.batch));
    }

    /// With `batch`: makes every change journaled so far durable, empties
    /// the journal (the stored epoch moves on in the same commit, see
    /// `crate::journal`), then answers `waiting`.
    fn sync(&mut self, db: &Database, mut waiting: Vec<Batch>) {
        self.sync_by = None;
        let Some(journal) = self.journal.clone() else {
            answer(waiting);
            return;
        };
        // Submitters wait for the lock (a sync's time, every
        // `sync_batch_ms` at most): what the journal holds is then all
        // queued, and goes into redb before the journal is emptied.
        let mut j = journal.lock();
        // All of it, whatever its size: what stays queued would be lost
        // from the journal below.
        let mut pending = std::mem::take(&mut j.pending);
        j.pending_ops = 0;
        pending.extend(self.rx.try_iter());
        let epoch = j.journal.epoch() + 1;
        let ops = pending.iter().flat_map(|b| &b.ops);
        or_abort(apply(db, ops, true, Some(epoch)));
        or_abort(j.journal.reset(epoch));
        drop(j);
        self.synced.send_modify(|n| *n += 1);
        waiting.extend(pending);
        answer(waiting);
    }
}

fn answer(batches: Vec<Batch>) {
    for b in batches {
        if let Some(done) = b.done {
            let _ = done.send(());
        }
    }
}

/// A failed commit stops the master: the in-memory namespace already holds
/// these changes, and serving on from memory that the disk does not have
/// would lose them silently at the next restart.
fn or_abort<E: std::fmt::Display>(r: std::result::Result<(), E>) {
    if let Err(e) = r {
        tracing::error!("metastore commit failed, stopping the master: {e}");
        std::process::abort();
    }
}

/// One transaction of `ops`, synced with `durable`; `epoch` stores a new
/// journal epoch with it.
fn apply<'a>(
    db: &Database,
    ops: impl Iterator<Item = &'a MetaOp>,
    durable: bool,
    epoch: Option<u64>,
) -> Result<(), redb::Error> {
    let mut w = db.begin_write()?;
    if !durable {
        w.set_durability(redb::Durability::None)
            .map_err(redb::Error::from)?;
    }
    {
        let mut inodes = w.open_table(INODES)?;
        let mut mounts = w.open_table(MOUNTS)?;
        let mut meta = w.open_table(META)?;
        let mut intents = w.open_table(INTENTS)?;
        if let Some(e) = epoch {
            meta.insert(JOURNAL_EPOCH, e)?;
        }
        for op in ops {
            match op {
                MetaOp::PutInode { id, record } => {
                    inodes.insert(id, record.as_slice())?;
                }
                MetaOp::DeleteInode(id) => {
                    inodes.remove(id)?;
                }
                MetaOp::PutMount { path, record } => {
                    mounts.insert(path.as_str(), record.as_slice())?;
                }
                MetaOp::DeleteMount(path) => {
                    mounts.remove(path.as_str())?;
                }
                MetaOp::SetNextId(n) => {
                    meta.insert("next_id", n)?;
                }
                MetaOp::PutIntent { id, record } => {
                    intents.insert(id, record.as_slice())?;
                }
                MetaOp::DeleteIntent(id) => {
                    intents.remove(id)?;
                }
            }
        }
    }
    w.commit()?;
    Ok(())
}

/// Convenience: the op that stores an inode.
pub fn put(inode: &Inode) -> MetaOp {
    MetaOp::PutInode {
        id: inode.id,
        record: inode.encode(),
    }
}

#[cfg(test)]
mod tests;
