//! [`FileSystem`]: the client's entry point. Names go to the master; bytes
//! go to workers over the data protocol (`eddy-wire`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use std::sync::atomic::{AtomicBool, Ordering};

use crate::io::{FileInfo, FileReader, FileWriter};
use crate::local::LocalWorker;
use crate::pool::Pool;
use crate::{ClientError, CreateOptions, EddyCode, MasterClient, Result, pb};
use eddy_wire::ReadType;

/// Client-wide options.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Read blocks cached by a worker on this host through shared memory
    /// (mapped, no copy through a socket). Falls back to TCP, logged once,
    /// when there is no such worker or its socket cannot be reached.
    pub short_circuit: bool,
    /// The longest one exchange with the master or a worker may wait for its
    /// answer, connecting included (a block read or write on a worker, one
    /// RPC). Past it the call fails with `DEADLINE_EXCEEDED`; reads try
    /// another worker first.
    pub timeout: Duration,
    /// How long a complete file's metadata (status, block list, locations)
    /// may be reused by `open` without asking the master again: the
    /// staleness bound for changes made by *other* clients (a delete,
    /// rename or rewrite there may go unseen here for up to this long, also
    /// while no master is running). This client's own create, close,
    /// rename, delete, free and unmount drop what it cached at once, so it
    /// always reads its own writes. Zero: nothing is cached, every open
    /// asks the master.
    pub metadata_ttl: Duration,
}

/// The default [`ClientOptions::metadata_ttl`].
pub const DEFAULT_METADATA_TTL: Duration = Duration::from_secs(1);

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            short_circuit: true,
            timeout: crate::transport::DEFAULT_TIMEOUT,
            metadata_ttl: DEFAULT_METADATA_TTL,
        }
    }
}

/// Options of [`FileSystem::open`].
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    pub read_type: ReadType,
}

/// Where a `load` is.
#[derive(Debug, Clone, Default)]
pub struct LoadProgress {
    pub files_total: u64,
    pub bytes_total: u64,
    pub files_done: u64,
    pub bytes_done: u64,
    /// Of `bytes_done`, the bytes that were cached already (nothing moved).
    pub bytes_already_cached: u64,
}

/// A connection to an Eddy cluster. Cheap to clone; clones share the
/// master connection, the worker connection pool and the metadata cache.
#[derive(Clone)]
pub struct FileSystem {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub master: MasterClient,
    pub pool: Pool,
    /// This host as workers see it (for local-first placement).
    pub host: String,
    meta: Mutex<MetaCache>,
    pub opts: ClientOptions,
    locals: Mutex<HashMap<String, Arc<LocalWorker>>>,
    /// The worker on this host with a Unix socket, from the master's worker
    /// list, and when that was asked.
    local_hint: Mutex<Option<(Instant, Option<String>)>>,
    fallback_noted: AtomicBool,
}

/// How long the answer to "which worker is on this host" is reused.
const LOCAL_HINT_TTL: Duration = Duration::from_secs(5);

/// Complete files' metadata, reused for `ClientOptions::metadata_ttl`. Any
/// error on a read drops an entry early; this client's own changes drop
/// the entries under the paths they touch, and incomplete files are never
/// kept (a file opens the moment its writer's close returns, in any client).
#[derive(Default)]
struct MetaCache {
    /// Path -> (when its request was sent, what came back).
    entries: HashMap<Vec<u8>, (Instant, Arc<FileInfo>)>,
    /// Bumped by every invalidation. An answer is kept only if none came
    /// between sending its request and keeping it: an open that asked
    /// before this client's rename or delete went through must not put the
    /// old file back after that change dropped it.
    generation: u64,
}

/// Past this many entries the expired ones are dropped on the next insert.
const META_PRUNE_AT: usize = 4096;

impl MetaCache {
    fn get(&self, path: &[u8], ttl: Duration) -> Option<Arc<FileInfo>> {
        let (at, info) = self.entries.get(path)?;
        (at.elapsed() < ttl).then(|| info.clone())
    }

    /// Keeps `info`, fetched by a request sent at `at` when the generation
    /// was `generation`, unless something was invalidated since.
    fn insert(&mut self, generation: u64, at: Instant, info: Arc<FileInfo>, ttl: Duration) {
        if self.generation != generation || ttl.is_zero() {
            return;
        }
        if self.entries.len() >= META_PRUNE_AT {
            self.entries.retain(|_, (t, _)| t.elapsed() < ttl);
        }
        self.entries.insert(info.path.clone(), (at, info));
    }

    /// Drops `path` and everything under it.
    fn invalidate(&mut self, path: &[u8]) {
        self.generation = self.generation.wrapping_add(1);
        if path == b"/" {
            self.entries.clear();
            return;
        }
        self.entries.retain(|k, _| {
            !(k.starts_with(path) && (k.len() == path.len() || k[path.len()] == b'/'))
        });
    }
}

impl FileSystem {
    /// Connects to the master at `addr` (`host:port`).
    pub async fn connect(addr: &str) -> Result<Self> {
        Self::connect_with(addr, ClientOptions::default()).await
    }

    pub async fn connect_with(addr: &str, opts: ClientOptions) -> Result<Self> {
        let master = MasterClient::connect_with_timeout(addr, opts.timeout).await?;
        Ok(Self::with_master_opts(master, opts))
    }

    pub fn with_master(master: MasterClient) -> Self {
        Self::with_master_opts(master, ClientOptions::default())
    }

    pub fn with_master_opts(master: MasterClient, opts: ClientOptions) -> Self {
        let host = local_host_towards(master.address());
        Self {
            inner: Arc::new(Inner {
                master,
                pool: Pool::default(),
                host,
                meta: Mutex::new(MetaCache::default()),
                opts,
                locals: Mutex::new(HashMap::new()),
                local_hint: Mutex::new(None),
                fallback_noted: AtomicBool::new(false),
            }),
        }
    }

    /// The Unix socket of a worker on this host that can serve `b`: one that
    /// caches it, else (for a block to be filled) any worker on this host.
    pub(crate) async fn local_socket_for(
        &self,
        b: &pb::FileBlock,
        cached_only: bool,
    ) -> Option<String> {
        if !self.inner.opts.short_circuit {
            return None;
        }
        if let Some(l) = b
            .locations
            .iter()
            .find(|l| l.host == self.inner.host && !l.domain_socket.is_empty())
        {
            return Some(l.domain_socket.clone());
        }
        if cached_only {
            return None;
        }
        if let Some((at, hint)) = self.inner.local_hint.lock().clone()
            && at.elapsed() < LOCAL_HINT_TTL
        {
            return hint;
        }
        let hint = match self.inner.master.cluster_info().await {
            Ok(info) => info.workers.into_iter().find_map(|w| {
                let a = w.address?;
                (w.live && a.host == self.inner.host && !a.domain_socket.is_empty())
                    .then_some(a.domain_socket)
            }),
            Err(_) => None,
        };
        *self.inner.local_hint.lock() = Some((Instant::now(), hint.clone()));
        if hint.is_none() {
            self.note_fallback("no worker on this host has a Unix socket");
        }
        hint
    }

    /// The Unix socket of a worker on this host to write into, if any.
    pub(crate) async fn local_write_socket(&self) -> Option<String> {
        let none = pb::FileBlock::default();
        self.local_socket_for(&none, false).await
    }

    pub(crate) fn local_worker(&self, socket: &str) -> Arc<LocalWorker> {
        self.inner
            .locals
            .lock()
            .entry(socket.to_string())
            .or_insert_with(|| LocalWorker::new(socket, self.inner.opts.timeout))
            .clone()
    }

    /// Says once per client why reads go over TCP instead of shared memory.
    pub(crate) fn note_fallback(&self, why: &str) {
        if !self.inner.fallback_noted.swap(true, Ordering::Relaxed) {
            tracing::info!("short-circuit reads unavailable ({why}); reading over TCP");
        }
    }

    /// The master client, for everything about names.
    pub fn master(&self) -> &MasterClient {
        &self.inner.master
    }

    /// This client's host as workers and placement see it.
    pub fn host(&self) -> &str {
        &self.inner.host
    }

    /// Creates `path` and returns a writer; the file becomes visible to
    /// readers when the writer is closed.
    pub async fn create(&self, path: impl AsRef<[u8]>, opts: &CreateOptions) -> Result<FileWriter> {
        let path = path.as_ref();
        // Before and after, whatever the answer: a create whose answer was
        // lost may still have replaced what was cached for the path.
        self.invalidate(path);
        let r = FileWriter::create(self.clone(), path, opts).await;
        self.invalidate(path);
        r
    }

    /// Opens a complete file for reading.
    pub async fn open(&self, path: impl AsRef<[u8]>, opts: &OpenOptions) -> Result<FileReader> {
        let info = self.file_info(path.as_ref(), false).await?;
        if info.status.is_dir {
            return Err(ClientError::Rpc(crate::RpcError::new(
                EddyCode::IsADirectory,
                format!("{} is a directory", String::from_utf8_lossy(path.as_ref())),
            )));
        }
        if !info.status.complete {
            return Err(ClientError::Rpc(crate::RpcError::new(
                EddyCode::FileIncomplete,
                format!(
                    "{} is still being written",
                    String::from_utf8_lossy(path.as_ref())
                ),
            )));
        }
        Ok(FileReader::new(self.clone(), info, opts.read_type))
    }

    /// Status, blocks and locations of `path`, from the cache unless stale
    /// or `refresh`.
    pub(crate) async fn file_info(&self, path: &[u8], refresh: bool) -> Result<Arc<FileInfo>> {
        let ttl = self.inner.opts.metadata_ttl;
        let (generation, sent) = {
            let m = self.inner.meta.lock();
            if !refresh && let Some(info) = m.get(path, ttl) {
                return Ok(info);
            }
            // The answer's age counts from now, so it is never older than
            // `ttl` when reused.
            (m.generation, Instant::now())
        };
        let r = self.inner.master.file_blocks(path).await;
        let r = match r {
            Ok(r) => r,
            Err(e) => {
                self.invalidate(path);
                return Err(e);
            }
        };
        let info = Arc::new(FileInfo {
            path: path.to_vec(),
            status: r.status.unwrap_or_default(),
            blocks: r.blocks,
            ufs: r.ufs,
            grace_left_ms: r.registration_grace_left_ms,
        });
        // An incomplete file is never kept: its writer may close it any
        // moment (in this client or another), and readers must see it then.
        if info.status.complete {
            self.inner
                .meta
                .lock()
                .insert(generation, sent, info.clone(), ttl);
        }
        Ok(info)
    }

    /// Drops cached metadata of `path` and everything under it; an answer
    /// on its way from the master now is not kept either.
    pub fn invalidate(&self, path: &[u8]) {
        self.inner.meta.lock().invalidate(path);
    }

    /// Runs a change of the namespace under `paths`, dropping what is cached
    /// there before it is sent and again after it answers, success or not
    /// (an answer lost on the way may hide a change that took effect).
    async fn changing<T>(
        &self,
        paths: &[&[u8]],
        change: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        for p in paths {
            self.invalidate(p);
        }
        let r = change.await;
        for p in paths {
            self.invalidate(p);
        }
        r
    }

    pub async fn stat(&self, path: impl AsRef<[u8]>) -> Result<pb::FileStatus> {
        self.inner.master.stat(path).await
    }

    pub async fn list(&self, path: impl AsRef<[u8]>) -> Result<Vec<pb::FileStatus>> {
        self.inner.master.list(path).await
    }

    pub async fn mkdir(&self, path: impl AsRef<[u8]>, recursive: bool) -> Result<pb::FileStatus> {
        self.inner.master.mkdir(path, recursive).await
    }

    pub async fn rename(&self, src: impl AsRef<[u8]>, dst: impl AsRef<[u8]>) -> Result<()> {
        let (src, dst) = (src.as_ref(), dst.as_ref());
        self.changing(&[src, dst], self.inner.master.rename(src, dst))
            .await
    }

    pub async fn delete(&self, path: impl AsRef<[u8]>, recursive: bool) -> Result<()> {
        let path = path.as_ref();
        self.changing(&[path], self.inner.master.delete(path, recursive))
            .await
    }

    pub async fn mount(
        &self,
        path: impl AsRef<[u8]>,
        uri: &str,
        read_only: bool,
        options: HashMap<String, String>,
        sync_interval_ms: Option<i64>,
    ) -> Result<()> {
        self.inner
            .master
            .mount(path, uri, read_only, options, sync_interval_ms)
            .await
    }

    pub async fn unmount(&self, path: impl AsRef<[u8]>) -> Result<()> {
        let path = path.as_ref();
        self.changing(&[path], self.inner.master.unmount(path))
            .await
    }

    /// Drops cached copies of `path` (a file, or a directory with
    /// `recursive`) from the workers; the under-storage keeps the data.
    pub async fn free(&self, path: impl AsRef<[u8]>, recursive: bool, force: bool) -> Result<u64> {
        let path = path.as_ref();
        self.changing(&[path], self.inner.master.free(path, recursive, force))
            .await
    }

    /// Pins (or unpins) `path` and everything under it: workers never
    /// evict pinned files' blocks.
    pub async fn pin(&self, path: impl AsRef<[u8]>, pinned: bool) -> Result<pb::FileStatus> {
        self.inner
            .master
            .set_attribute(pb::SetAttributeRequest {
                path: path.as_ref().to_vec(),
                pinned: Some(pinned),
                recursive: true,
                ..Default::default()
            })
            .await
    }

    /// Caches `path` (a file, or every file under a directory) in the
    /// workers in advance. `progress` is called after each block.
    pub async fn load(
        &self,
        path: impl AsRef<[u8]>,
        mut progress: impl FnMut(&LoadProgress),
    ) -> Result<LoadProgress> {
        let mut files = Vec::new();
        let root = self.inner.master.stat(path.as_ref()).await?;
        if root.is_dir {
            let mut dirs = vec![root.path.clone()];
            while let Some(d) = dirs.pop() {
                for e in self.inner.master.list(&d).await? {
                    if e.is_dir {
                        dirs.push(e.path.clone());
                    } else {
                        files.push(e);
                    }
                }
            }
        } else {
            files.push(root);
        }
        let mut p = LoadProgress {
            files_total: files.len() as u64,
            bytes_total: files.iter().map(|f| f.length).sum(),
            ..Default::default()
        };
        progress(&p);
        for f in files {
            let info = self.file_info(&f.path, true).await?;
            let reader = FileReader::new(self.clone(), info.clone(), ReadType::Cache);
            for b in &info.blocks {
                if !b.locations.is_empty() {
                    p.bytes_already_cached += b.length;
                }
                reader.load_block(b).await?;
                p.bytes_done += b.length;
                progress(&p);
            }
            p.files_done += 1;
            progress(&p);
        }
        Ok(p)
    }

    /// The named counters of the worker at `addr` (`host:port`).
    pub async fn worker_stats(&self, addr: &str) -> Result<Vec<(String, u64)>> {
        crate::io::worker_stats(self, addr).await
    }
}

/// The local IP this host uses to reach `master` (a UDP "connect" sends
/// nothing; it only asks the kernel for the route's source address).
fn local_host_towards(master: &str) -> String {
    let target = master.trim_start_matches("http://");
    std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| {
            s.connect(target)?;
            s.local_addr()
        })
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|_| "127.0.0.1".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(path: &str) -> Arc<FileInfo> {
        Arc::new(FileInfo {
            path: path.as_bytes().to_vec(),
            status: pb::FileStatus {
                complete: true,
                ..Default::default()
            },
            blocks: Vec::new(),
            ufs: None,
            grace_left_ms: 0,
        })
    }

    const TTL: Duration = Duration::from_secs(60);

    #[test]
    fn an_answer_asked_for_before_an_invalidation_is_not_kept() {
        let mut m = MetaCache::default();
        // An open sends its request ...
        let (generation, sent) = (m.generation, Instant::now());
        // ... this client renames the file away meanwhile ...
        m.invalidate(b"/d/a");
        // ... and the old answer arrives after: it must not be cached.
        m.insert(generation, sent, info("/d/a"), TTL);
        assert!(m.get(b"/d/a", TTL).is_none());
        // Asked after the change: kept.
        m.insert(m.generation, Instant::now(), info("/d/a"), TTL);
        assert!(m.get(b"/d/a", TTL).is_some());
    }

    #[test]
    fn invalidation_drops_the_subtree_only_and_zero_ttl_keeps_nothing() {
        let mut m = MetaCache::default();
        for p in ["/d", "/d/a", "/d/b/c", "/dd", "/e"] {
            m.insert(m.generation, Instant::now(), info(p), TTL);
        }
        m.invalidate(b"/d");
        let left: Vec<bool> = ["/d", "/d/a", "/d/b/c", "/dd", "/e"]
            .iter()
            .map(|p| m.get(p.as_bytes(), TTL).is_some())
            .collect();
        assert_eq!(left, [false, false, false, true, true]);
        m.invalidate(b"/");
        assert!(m.entries.is_empty());
        m.insert(m.generation, Instant::now(), info("/z"), Duration::ZERO);
        assert!(m.entries.is_empty(), "metadata_ttl 0: nothing is cached");
        m.insert(m.generation, Instant::now(), info("/z"), TTL);
        assert!(m.get(b"/z", Duration::ZERO).is_none());
    }
}
