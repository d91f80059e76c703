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
//! Architecture invariant: an RPC that mutates metadata answers OK only after
//! the transaction holding its batch has committed durably.

use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::oneshot;

use crate::error::{MasterError, Result};
use crate::inode::Inode;

const INODES: TableDefinition<u64, &[u8]> = TableDefinition::new("inodes");
const MOUNTS: TableDefinition<&str, &[u8]> = TableDefinition::new("mounts");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Pending under-storage operations (see `crate::intent`).
const INTENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("intents");

const FORMAT_VERSION: u64 = 1;
/// Batches larger than this are split across transactions.
const MAX_OPS_PER_TXN: usize = 50_000;

/// One durable change.
#[derive(Debug, Clone)]
pub enum MetaOp {
    PutInode { id: u64, record: Vec<u8> },
    DeleteInode(u64),
    PutMount { path: String, record: Vec<u8> },
    DeleteMount(String),
    SetNextId(u64),
    PutIntent { id: u64, record: Vec<u8> },
    DeleteIntent(u64),
}

/// What the master reads back at start.
pub struct Loaded {
    pub inodes: Vec<Vec<u8>>,
    pub mounts: Vec<(String, Vec<u8>)>,
    pub next_id: u64,
    /// Intents left by a master that stopped mid-operation: (id, record).
    pub intents: Vec<(u64, Vec<u8>)>,
}

struct Batch {
    ops: Vec<MetaOp>,
    /// The commit failed: shared by every batch of the transaction.
    done: oneshot::Sender<Result<(), Arc<redb::Error>>>,
}

/// Handle to the metastore's committer thread.
#[derive(Clone)]
pub struct Metastore {
    tx: mpsc::Sender<Batch>,
}

impl Metastore {
    /// Opens (or creates) `dir/metastore.redb` and starts the committer thread.
    pub fn open(dir: &Path) -> Result<(Self, Loaded)> {
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
        let loaded = load(&db).map_err(|e| MasterError::Metastore(e.to_string()))?;
        let (tx, rx) = mpsc::channel::<Batch>();
        std::thread::Builder::new()
            .name("eddy-metastore".into())
            .spawn(move || committer(&db, rx))
            .map_err(|e| MasterError::Metastore(format!("cannot start committer: {e}")))?;
        Ok((Self { tx }, loaded))
    }

    /// Queues `ops` for the next group commit; the future resolves once they
    /// are durable. Call with the namespace lock held, await without it.
    pub fn submit(&self, ops: Vec<MetaOp>) -> impl Future<Output = Result<()>> + use<> {
        let (done, rx) = oneshot::channel();
        let sent = self.tx.send(Batch { ops, done }).is_ok();
        async move {
            if !sent {
                return Err(MasterError::Metastore("metastore committer stopped".into()));
            }
            match rx.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(MasterError::Metastore(e.to_string())),
                Err(_) => Err(MasterError::Metastore("metastore committer stopped".into())),
            }
        }
    }
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

fn load(db: &Database) -> Result<Loaded, LoadError> {
    // Create tables and stamp the format on a fresh file.
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

fn committer(db: &Database, rx: mpsc::Receiver<Batch>) {
    // Test-only: `EDDY_COMMIT_DELAY_MS` holds every commit back that long,
    // so tests can act (read, kill -9) while a change is not durable yet.
    let delay = std::env::var("EDDY_COMMIT_DELAY_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map(std::time::Duration::from_millis);
    while let Ok(first) = rx.recv() {
        if let Some(d) = delay {
            std::thread::sleep(d);
        }
        let mut batches = vec![first];
        let mut n_ops = batches[0].ops.len();
        while n_ops < MAX_OPS_PER_TXN {
            match rx.try_recv() {
                Ok(b) => {
                    n_ops += b.ops.len();
                    batches.push(b);
                }
                Err(_) => break,
            }
        }
        let result = apply(db, &batches).map_err(Arc::new);
        if let Err(e) = &result {
            // The in-memory namespace already holds these changes; serving on
            // from memory that the disk does not have would lose them silently
            // at the next restart. Stop instead.
            tracing::error!("metastore commit failed, stopping the master: {e}");
            for b in batches {
                let _ = b.done.send(Err(e.clone()));
            }
            std::process::abort();
        }
        for b in batches {
            let _ = b.done.send(Ok(()));
        }
    }
}

fn apply(db: &Database, batches: &[Batch]) -> Result<(), redb::Error> {
    let w = db.begin_write()?;
    {
        let mut inodes = w.open_table(INODES)?;
        let mut mounts = w.open_table(MOUNTS)?;
        let mut meta = w.open_table(META)?;
        let mut intents = w.open_table(INTENTS)?;
        for op in batches.iter().flat_map(|b| &b.ops) {
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
