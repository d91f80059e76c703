//! What a client's readers, writers and namespace calls share: the master
//! connection, the worker connection pool, the options, the metadata cache
//! and the workers on this host. `FileSystem` is a handle on it; readers and
//! writers hold it too, so they need nothing of the `fs` module.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::local::LocalWorker;
use crate::options::ClientOptions;
use crate::pool::Pool;
use crate::{MasterClient, Result, pb};

/// What a reader knows about its file.
#[derive(Debug)]
pub(crate) struct FileInfo {
    pub path: Vec<u8>,
    pub status: pb::FileStatus,
    pub blocks: Vec<pb::FileBlock>,
    pub ufs: Option<pb::UfsLocation>,
    /// What was left of the master's registration grace period (ms; 0: none).
    pub grace_left_ms: u64,
    /// The block token sent with every data request for this file (empty
    /// when the cluster requires none).
    pub block_token: Vec<u8>,
}

/// The state behind a [`crate::FileSystem`] and its clones.
pub(crate) struct Shared {
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
    /// One-sided reads of remote workers' memory, and bytes by transport.
    pub rdma: crate::rdma::Rdma,
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

impl Shared {
    pub fn new(master: MasterClient, mut opts: ClientOptions) -> Self {
        let host = local_host_towards(master.address());
        opts.transport = crate::rdma::mode_from_env(opts.transport);
        if opts.transport != crate::TransportMode::Auto {
            // "rdma" and "tcp" name the transport to remote workers: the
            // one on this host is reached the same way.
            opts.short_circuit = false;
        }
        Self {
            rdma: crate::rdma::Rdma::new(opts.transport, opts.timeout),
            master,
            pool: Pool::new(&opts.credentials.user, opts.timeout, opts.tls.clone()),
            host,
            meta: Mutex::new(MetaCache::default()),
            opts,
            locals: Mutex::new(HashMap::new()),
            local_hint: Mutex::new(None),
            fallback_noted: AtomicBool::new(false),
        }
    }

    /// The Unix socket of a worker on this host that can serve `b`: one that
    /// caches it, else (for a block to be filled) any worker on this host.
    pub async fn local_socket_for(&self, b: &pb::FileBlock, cached_only: bool) -> Option<String> {
        if !self.opts.short_circuit {
            return None;
        }
        if let Some(l) = b
            .locations
            .iter()
            .find(|l| l.host == self.host && !l.domain_socket.is_empty())
        {
            return Some(l.domain_socket.clone());
        }
        if cached_only {
            return None;
        }
        if let Some((at, hint)) = self.local_hint.lock().clone()
            && at.elapsed() < LOCAL_HINT_TTL
        {
            return hint;
        }
        let hint = match self.master.cluster_info().await {
            Ok(info) => info.workers.into_iter().find_map(|w| {
                let a = w.address?;
                (w.live && a.host == self.host && !a.domain_socket.is_empty())
                    .then_some(a.domain_socket)
            }),
            Err(_) => None,
        };
        *self.local_hint.lock() = Some((Instant::now(), hint.clone()));
        if hint.is_none() {
            self.note_fallback("no worker on this host has a Unix socket");
        }
        hint
    }

    /// The Unix socket of a worker on this host to write into, if any.
    pub async fn local_write_socket(&self) -> Option<String> {
        let none = pb::FileBlock::default();
        self.local_socket_for(&none, false).await
    }

    pub fn local_worker(&self, socket: &str) -> Arc<LocalWorker> {
        self.locals
            .lock()
            .entry(socket.to_string())
            .or_insert_with(|| LocalWorker::new(socket, self.user(), self.opts.timeout))
            .clone()
    }

    /// Says once per client why reads go over TCP instead of shared memory.
    pub fn note_fallback(&self, why: &str) {
        if !self.fallback_noted.swap(true, Ordering::Relaxed) {
            tracing::info!("short-circuit reads unavailable ({why}); reading over TCP");
        }
    }

    pub fn count_short_circuit(&self, n: usize) {
        self.rdma
            .bytes
            .short_circuit
            .fetch_add(n as u64, Ordering::Relaxed);
    }

    /// The user this client names in the data plane's handshake.
    pub fn user(&self) -> &str {
        &self.opts.credentials.user
    }

    /// The master client, for everything about names.
    pub fn master(&self) -> &MasterClient {
        &self.master
    }

    /// This client's host as workers and placement see it.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Status, blocks and locations of `path`, from the cache unless stale
    /// or `refresh`.
    pub async fn file_info(&self, path: &[u8], refresh: bool) -> Result<Arc<FileInfo>> {
        let ttl = self.opts.metadata_ttl;
        let (generation, sent) = {
            let m = self.meta.lock();
            if !refresh && let Some(info) = m.get(path, ttl) {
                return Ok(info);
            }
            // The answer's age counts from now, so it is never older than
            // `ttl` when reused.
            (m.generation, Instant::now())
        };
        let r = self.master.file_blocks(path).await;
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
            block_token: r.block_token,
        });
        // An incomplete file is never kept: its writer may close it any
        // moment (in this client or another), and readers must see it then.
        if info.status.complete {
            self.meta.lock().insert(generation, sent, info.clone(), ttl);
        }
        Ok(info)
    }

    /// Drops cached metadata of `path` and everything under it; an answer
    /// on its way from the master now is not kept either.
    pub fn invalidate(&self, path: &[u8]) {
        self.meta.lock().invalidate(path);
    }
}

/// The local IP this host uses to reach `master` (a UDP "connect" sends
/// nothing; it only asks the kernel for the route's source address).
fn local_host_towards(master: &str) -> String {
    let target = master
        .trim_start_matches("http://")
        .trim_start_matches("https://");
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
            block_token: Vec::new(),
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
