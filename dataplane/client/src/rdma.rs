//! One-sided RDMA reads of workers' memory (docs/RDMA.md): the client's
//! side of remote leases. Per worker that advertises a libfabric provider,
//! the client keeps one data connection of its own for leases (they end
//! with it, so a client that dies gives everything back), the worker's
//! fabric address inserted once into the client's fabric, and the keys of
//! the blocks it leased. A read then moves the bytes with `fi_read`s
//! straight into a registered buffer of the client's pool: no worker CPU
//! in the data path.
//!
//! Any failure here (no provider, a refused lease, a read error, a new
//! epoch) is not the user's: the read falls back to TCP (`io::route`),
//! logged once per worker, and this worker is asked again only for later
//! blocks (a worker whose fabric cannot be reached is left to TCP).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use eddy_rdma::{
    Fabric, FabricOptions, PeerId, Progress, RdmaError, ReadOp, RegisteredBuf, RemoteKey,
};
use eddy_wire::{Kind, ReadRequest, RemoteLease, RemoteLeaseOk, write_frame};
use parking_lot::Mutex;

use crate::pool::{Pool, PooledConn};

/// Which transports the client may use (`[client] transport`, the
/// `EDDY_TRANSPORT` environment variable overrides it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TransportMode {
    /// Short-circuit for a worker on this host (when `short_circuit`), else
    /// RDMA when the worker offers it, else TCP.
    #[default]
    Auto,
    /// RDMA for every worker that offers it (not short-circuit), else TCP.
    Rdma,
    /// TCP only: no short-circuit, no RDMA.
    Tcp,
}

impl TransportMode {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" | "" => Ok(Self::Auto),
            "rdma" => Ok(Self::Rdma),
            "tcp" => Ok(Self::Tcp),
            other => Err(format!(
                "transport {other:?} is not one of \"auto\", \"rdma\", \"tcp\""
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Rdma => "rdma",
            Self::Tcp => "tcp",
        }
    }
}

/// `EDDY_TRANSPORT`, when set and valid, instead of `configured`; an
/// invalid value is said (once per client) and ignored.
pub(crate) fn mode_from_env(configured: TransportMode) -> TransportMode {
    match std::env::var("EDDY_TRANSPORT") {
        Ok(v) if !v.trim().is_empty() => TransportMode::parse(&v).unwrap_or_else(|e| {
            tracing::warn!("EDDY_TRANSPORT: {e}; using {:?}", configured.name());
            configured
        }),
        _ => configured,
    }
}

/// Bytes this client read, by the transport that carried them.
#[derive(Debug, Default)]
pub struct TransportBytes {
    pub rdma: AtomicU64,
    pub tcp: AtomicU64,
    pub short_circuit: AtomicU64,
    /// Reads that tried RDMA and fell back to TCP.
    pub rdma_fallbacks: AtomicU64,
    /// Sequential reads whose range had been read ahead.
    pub rdma_read_ahead: AtomicU64,
}

/// What [`crate::FileSystem::transport_stats`] reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransportStats {
    pub rdma_bytes: u64,
    pub tcp_bytes: u64,
    pub short_circuit_bytes: u64,
    pub rdma_fallbacks: u64,
    /// Sequential reads served from a range read ahead over RDMA.
    pub rdma_read_ahead: u64,
    /// `fi_read`s this client posted, over all its fabrics.
    pub rdma_reads_posted: u64,
}

/// Largest piece one pooled buffer carries (bigger reads take several).
const BUF_BYTES: usize = 4 << 20;
/// Buffers kept for reuse per fabric.
const POOL_KEEP: usize = 16;
/// Blocks remembered as refused per worker (then forgotten and asked again).
const REFUSED_KEEP: usize = 4096;
/// The client's progress thread pauses this long at most while none of
/// its reads is in flight (a read posted wakes it at once).
const IDLE_PROGRESS: Duration = Duration::from_millis(5);

/// One fabric of this client (per provider and local address) and its
/// pool of registered read buffers.
pub(crate) struct ClientFabric {
    /// Reads the completions that wake `ReadOp`s (and, on manual-progress
    /// providers, moves their bytes). Dropped before `fabric`.
    _progress: Progress,
    pub(crate) fabric: Fabric,
    bufs: Mutex<Vec<RegisteredBuf>>,
}

impl ClientFabric {
    fn take_buf(&self, len: usize) -> Result<RegisteredBuf, RdmaError> {
        let pooled = self.bufs.lock().pop();
        let mut b = match pooled {
            Some(b) => b,
            None => self.fabric.alloc_buf(BUF_BYTES)?,
        };
        b.set_window(0, len);
        Ok(b)
    }

    fn give_back(&self, b: RegisteredBuf) {
        let mut bufs = self.bufs.lock();
        if bufs.len() < POOL_KEEP {
            bufs.push(b);
        }
    }
}

/// A client fabric is opened per provider and local address (`None`: it
/// would not open, and is not tried again).
type FabricKey = (String, String);

/// A worker's fabric as this client reaches it.
struct Peer {
    fabric: Arc<ClientFabric>,
    id: PeerId,
    epoch: u64,
}

/// A leased block: its key, until its lease ends.
#[derive(Clone)]
pub(crate) struct Leased {
    pub(crate) key: RemoteKey,
    length: u64,
    until: Instant,
    token: Vec<u8>,
}

/// One worker's remote leases.
pub(crate) struct RemoteWorker {
    addr: String,
    provider: String,
    /// The connection the leases live on, and the worker's fabric.
    conn: tokio::sync::Mutex<Option<(PooledConn, Option<Peer>)>>,
    leased: Mutex<HashMap<u64, Leased>>,
    /// Blocks the worker would not lease, with the token it refused: read
    /// over TCP until the token changes.
    refused: Mutex<HashMap<u64, Vec<u8>>>,
    /// Reads started ahead of sequential readers, by block.
    ahead: Mutex<HashMap<u64, Ahead>>,
}

/// Most blocks per worker with a read ahead in flight (one per
/// sequential reader; past it, the oldest is let go).
const AHEAD_KEEP: usize = 8;

/// The next range of a block, read ahead of a sequential reader: its
/// bytes move while the reader works on the range before it.
struct Ahead {
    offset: u64,
    len: usize,
    key: RemoteKey,
    reads: Vec<ReadOp>,
    deadline: tokio::time::Instant,
    fabric: Arc<ClientFabric>,
    started: Instant,
}

impl Ahead {
    /// Lets an unused read ahead finish in the background, so its buffers
    /// go back to the pool instead of being retired mid-read.
    fn discard(self) {
        let Ahead {
            reads,
            deadline,
            fabric,
            ..
        } = self;
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                for read in reads {
                    if let (Some(b), _) = wait_read(read, deadline, &fabric).await {
                        fabric.give_back(b);
                    }
                }
            });
        }
    }
}

/// The client's RDMA state: its fabrics, the workers it leases from, and
/// which workers it already said it falls back for.
pub(crate) struct Rdma {
    pub mode: TransportMode,
    fabrics: Mutex<HashMap<FabricKey, Option<Arc<ClientFabric>>>>,
    workers: Mutex<HashMap<String, Arc<RemoteWorker>>>,
    /// Worker address -> the provider it advertised.
    providers: Mutex<HashMap<String, String>>,
    /// Workers this client stopped trying RDMA with.
    given_up: Mutex<HashSet<String>>,
    /// Workers whose fallback was logged (once each).
    noted: Mutex<HashSet<String>>,
    pub bytes: TransportBytes,
    read_timeout: Duration,
}

/// Why a read did not go by RDMA (it goes over TCP instead).
#[derive(Debug)]
pub(crate) struct NotRdma {
    pub why: String,
    /// Stop trying RDMA with this worker (its fabric cannot be reached).
    pub give_up: bool,
}

pub(crate) fn not_rdma(why: impl Into<String>) -> NotRdma {
    NotRdma {
        why: why.into(),
        give_up: false,
    }
}

impl Rdma {
    pub fn new(mode: TransportMode, read_timeout: Duration) -> Self {
        Self {
            mode,
            fabrics: Default::default(),
            workers: Default::default(),
            providers: Default::default(),
            given_up: Default::default(),
            noted: Default::default(),
            bytes: Default::default(),
            read_timeout,
        }
    }

    pub fn stats(&self) -> TransportStats {
        let b = &self.bytes;
        TransportStats {
            rdma_bytes: b.rdma.load(Ordering::Relaxed),
            tcp_bytes: b.tcp.load(Ordering::Relaxed),
            short_circuit_bytes: b.short_circuit.load(Ordering::Relaxed),
            rdma_fallbacks: b.rdma_fallbacks.load(Ordering::Relaxed),
            rdma_read_ahead: b.rdma_read_ahead.load(Ordering::Relaxed),
            rdma_reads_posted: self
                .fabrics
                .lock()
                .values()
                .flatten()
                .map(|f| f.fabric.stats().reads_posted)
                .sum(),
        }
    }

    /// Records what a worker advertised (from block locations and worker
    /// lists): read by [`Rdma::provider_of`].
    pub fn note_provider(&self, addr: &str, provider: &str) {
        if provider.is_empty() || self.mode == TransportMode::Tcp {
            return;
        }
        let mut p = self.providers.lock();
        if p.get(addr).is_none_or(|have| have != provider) {
            p.insert(addr.to_string(), provider.to_string());
        }
    }

    /// The provider to read `addr`'s blocks with, if RDMA is to be tried.
    pub fn provider_of(&self, addr: &str) -> Option<String> {
        if self.mode == TransportMode::Tcp || self.given_up.lock().contains(addr) {
            return None;
        }
        self.providers.lock().get(addr).cloned()
    }

    /// Says once per worker why its reads go over TCP.
    pub fn fell_back(&self, addr: &str, e: &NotRdma) {
        self.bytes.rdma_fallbacks.fetch_add(1, Ordering::Relaxed);
        if e.give_up {
            self.given_up.lock().insert(addr.to_string());
        }
        if self.noted.lock().insert(addr.to_string()) {
            tracing::info!(
                "RDMA reads from worker {addr} fell back to TCP ({}){}",
                e.why,
                if e.give_up {
                    "; reading it over TCP from now on"
                } else {
                    ""
                }
            );
        }
    }

    fn fabric(&self, provider: &str, node: &str) -> Result<Arc<ClientFabric>, NotRdma> {
        let key = (provider.to_string(), node.to_string());
        let mut f = self.fabrics.lock();
        let slot = f.entry(key).or_insert_with(|| {
            let mut o = FabricOptions::new(provider);
            o.node = Some(node.to_string());
            o.read_timeout = self.read_timeout;
            let opened = Fabric::open_with(&o)
                .and_then(|f| Progress::start_with(&f, IDLE_PROGRESS).map(|p| (f, p)));
            match opened {
                Ok((fabric, progress)) => Some(Arc::new(ClientFabric {
                    _progress: progress,
                    fabric,
                    bufs: Mutex::new(Vec::new()),
                })),
                Err(e) => {
                    tracing::info!("cannot open libfabric provider {provider:?}: {e}");
                    None
                }
            }
        });
        slot.clone().ok_or_else(|| NotRdma {
            why: format!("this client cannot open libfabric provider {provider:?}"),
            give_up: true,
        })
    }

    fn worker(&self, addr: &str, provider: &str) -> Arc<RemoteWorker> {
        let mut w = self.workers.lock();
        let e = w.entry(addr.to_string()).or_insert_with(|| {
            Arc::new(RemoteWorker {
                addr: addr.to_string(),
                provider: provider.to_string(),
                conn: tokio::sync::Mutex::new(None),
                leased: Default::default(),
                refused: Default::default(),
                ahead: Default::default(),
            })
        });
        if e.provider != provider {
            *e = Arc::new(RemoteWorker {
                addr: addr.to_string(),
                provider: provider.to_string(),
                conn: tokio::sync::Mutex::new(None),
                leased: Default::default(),
                refused: Default::default(),
                ahead: Default::default(),
            });
        }
        e.clone()
    }

    /// Reads `req`'s range of its block from `addr` into `dst`, one-sided.
    /// With `ahead` (a sequential reader), the range after it in the block
    /// is read ahead, and a read that finds its range read ahead takes it.
    pub async fn fetch(
        &self,
        pool: &Pool,
        (addr, provider): (&str, &str),
        req: &ReadRequest,
        dst: &mut [u8],
        ahead: bool,
    ) -> Result<(), NotRdma> {
        let (w, leased, peer) = self.prepare(pool, addr, provider, req, dst.len()).await?;
        let early = w.take_ahead(req.block_id, req.offset, dst.len(), &leased.key);
        let r = match early {
            Some(a) => {
                self.bytes.rdma_read_ahead.fetch_add(1, Ordering::Relaxed);
                collect_into(&a.fabric, a.reads, a.deadline, dst).await
            }
            None => {
                let deadline = tokio::time::Instant::now() + peer.0.fabric.read_timeout();
                match start_reads(&peer.0, peer.1, &leased.key, req.offset, dst.len()) {
                    Ok(reads) => collect_into(&peer.0, reads, deadline, dst).await,
                    Err(e) => Err(e),
                }
            }
        };
        if ahead && r.is_ok() {
            let next = req.offset + dst.len() as u64;
            let n = (leased.length.saturating_sub(next) as usize).min(dst.len());
            if n > 0 {
                w.start_ahead(req.block_id, (next, n), &leased.key, &peer);
            }
        }
        self.finish(&w, req, dst.len(), r)
    }

    /// After a one-sided read of `len` bytes for `req`: counted, or (on
    /// error) the key forgotten and the reason for TCP.
    pub(crate) fn finish(
        &self,
        w: &RemoteWorker,
        req: &ReadRequest,
        len: usize,
        r: Result<(), RdmaError>,
    ) -> Result<(), NotRdma> {
        if let Err(e) = r {
            if e.unreachable() {
                // The worker's fabric is gone (restarted, say): every key
                // of it is stale. Its lease connection is let go, so the
                // next read leases anew and meets the new fabric.
                w.leased.lock().clear();
                if let Ok(mut c) = w.conn.try_lock() {
                    *c = None;
                }
                return Err(not_rdma(format!("one-sided read failed: {e}")));
            }
            // The key may be stale (lease ended, worker restarted): lease
            // again next time.
            w.leased.lock().remove(&req.block_id);
            return Err(not_rdma(format!("one-sided read failed: {e}")));
        }
        self.bytes.rdma.fetch_add(len as u64, Ordering::Relaxed);
        Ok(())
    }

    /// The worker at `addr`, a valid lease covering `req`'s `len` bytes
    /// (cached or asked for now), and the worker's fabric as a peer.
    pub(crate) async fn prepare(
        &self,
        pool: &Pool,
        addr: &str,
        provider: &str,
        req: &ReadRequest,
        len: usize,
    ) -> Result<(Arc<RemoteWorker>, Leased, (Arc<ClientFabric>, PeerId)), NotRdma> {
        let w = self.worker(addr, provider);
        if w.refused.lock().get(&req.block_id) == Some(&req.token) {
            return Err(not_rdma("the worker would not lease this block"));
        }
        let leased = w.leased.lock().get(&req.block_id).cloned();
        let leased = match leased {
            Some(l) if l.until > Instant::now() && l.token == req.token => l,
            _ => self.lease(pool, &w, req).await?,
        };
        let peer = {
            let c = w.conn.lock().await;
            match c.as_ref().and_then(|(_, p)| p.as_ref()) {
                Some(p) => (p.fabric.clone(), p.id),
                None => return Err(not_rdma("the lease connection closed")),
            }
        };
        if req.offset.saturating_add(len as u64) > leased.length {
            return Err(not_rdma("the range is past the leased block"));
        }
        Ok((w, leased, peer))
    }

    /// Leases `req`'s block on `w`'s lease connection (dialled, and the
    /// worker's fabric connected, when there is none).
    async fn lease(
        &self,
        pool: &Pool,
        w: &RemoteWorker,
        req: &ReadRequest,
    ) -> Result<Leased, NotRdma> {
        let mut conn = w.conn.lock().await;
        let item = ReadRequest {
            offset: 0,
            length: req.block_length,
            ..req.clone()
        };
        // A kept connection the worker closed (idle, restarted) is dialled
        // again once; its leases ended with it.
        let mut attempt = 0;
        let ok = loop {
            attempt += 1;
            if conn.is_none() {
                let c = pool
                    .get(&w.addr)
                    .await
                    .map_err(|e| not_rdma(format!("cannot open a lease connection: {e}")))?;
                *conn = Some((c, None));
                w.leased.lock().clear();
            }
            let (c, peer) = conn.as_mut().expect("set above");
            let ask = RemoteLease {
                provider: w.provider.clone(),
                want_fabric: peer.is_none(),
                items: vec![item.clone()],
            };
            match exchange(c, &ask, self.read_timeout).await {
                Ok(Ok(ok)) => break ok,
                Ok(Err(refusal)) => {
                    // The worker serves no remote leases, or another
                    // provider: nothing will change that for this client.
                    return Err(NotRdma {
                        why: refusal.message,
                        give_up: true,
                    });
                }
                Err(e) => {
                    *conn = None;
                    if attempt == 2 {
                        return Err(not_rdma(format!("lease connection failed: {e}")));
                    }
                }
            }
        };
        let (_, peer) = conn.as_mut().expect("answered on it");
        if let Some(f) = &ok.fabric {
            let node = local_towards(&w.addr);
            let fabric = match self.fabric(&f.provider, &node) {
                Ok(fab) => fab,
                Err(e) => {
                    *conn = None;
                    return Err(e);
                }
            };
            let id = fabric.fabric.connect(&f.address).map_err(|e| NotRdma {
                why: format!("the worker's fabric address: {e}"),
                give_up: true,
            })?;
            *peer = Some(Peer {
                fabric,
                id,
                epoch: ok.epoch,
            });
            w.leased.lock().clear();
        }
        match peer {
            Some(p) if p.epoch == ok.epoch => {}
            _ => {
                // A new epoch without its fabric: the worker's fabric was
                // opened again; connect afresh on the next lease.
                *conn = None;
                w.leased.lock().clear();
                return Err(not_rdma("the worker's fabric epoch changed"));
            }
        }
        let Some(g) = ok.grants.into_iter().next() else {
            return Err(not_rdma("the worker granted nothing"));
        };
        if g.code != 0 {
            let mut refused = w.refused.lock();
            if refused.len() >= REFUSED_KEEP {
                refused.clear();
            }
            refused.insert(req.block_id, req.token.clone());
            return Err(not_rdma(g.message));
        }
        let l = Leased {
            key: RemoteKey {
                addr_or_offset: g.addr,
                len: g.region_len,
                key: g.key,
            },
            length: g.length,
            // A little before the worker's clock ends it.
            until: Instant::now() + Duration::from_millis(ok.ttl_ms.saturating_mul(9) / 10),
            token: req.token.clone(),
        };
        w.leased.lock().insert(req.block_id, l.clone());
        Ok(l)
    }
}

/// One `RemoteLease` exchange on the lease connection.
async fn exchange(
    c: &mut PooledConn,
    ask: &RemoteLease,
    limit: Duration,
) -> Result<Result<RemoteLeaseOk, eddy_wire::ErrorFrame>, eddy_wire::WireError> {
    let s = c.stream();
    let io = async {
        write_frame(s, Kind::RemoteLease, &ask.encode()).await?;
        eddy_wire::expect(s, Kind::RemoteLeaseOk).await
    };
    let body = match tokio::time::timeout(limit, io).await {
        Ok(r) => r?,
        Err(_) => {
            return Err(eddy_wire::WireError::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "no answer to a remote lease",
            )));
        }
    };
    Ok(match body {
        Ok(b) => Ok(RemoteLeaseOk::decode(&b)?),
        Err(refusal) => Err(refusal),
    })
}

/// Starts reading `len` bytes at `offset` of the region `key`, in pieces
/// of one pooled buffer each, all in flight at once (owned buffers: each
/// goes into a read and comes back with the result).
fn start_reads(
    fabric: &Arc<ClientFabric>,
    peer: PeerId,
    key: &RemoteKey,
    offset: u64,
    len: usize,
) -> Result<Vec<ReadOp>, RdmaError> {
    let mut reads = Vec::new();
    let mut at = 0;
    while at < len {
        let n = BUF_BYTES.min(len - at);
        let buf = fabric.take_buf(n)?;
        reads.push(fabric.fabric.read_op(buf, peer, key, offset + at as u64));
        at += n;
    }
    Ok(reads)
}

/// Waits for `start_reads`' pieces and copies them into `dst`, each as
/// soon as it lands while the later ones are still moving.
async fn collect_into(
    fabric: &Arc<ClientFabric>,
    reads: Vec<ReadOp>,
    deadline: tokio::time::Instant,
    dst: &mut [u8],
) -> Result<(), RdmaError> {
    let mut first_err = None;
    for (read, piece) in reads.into_iter().zip(dst.chunks_mut(BUF_BYTES)) {
        let (buf, r) = wait_read(read, deadline, fabric).await;
        // A buffer the provider may still write to stays with the fabric.
        let Some(buf) = buf else {
            first_err.get_or_insert(r.err().unwrap_or(RdmaError::Timeout { ms: 0 }));
            continue;
        };
        match r {
            Ok(()) => piece.copy_from_slice(buf.as_slice()),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
        fabric.give_back(buf);
    }
    first_err.map_or(Ok(()), Err)
}

impl RemoteWorker {
    /// The read ahead of `block`, if it is of exactly `offset..offset +
    /// len` under `key`; any other read ahead of the block is let go (the
    /// reader moved elsewhere).
    fn take_ahead(&self, block: u64, offset: u64, len: usize, key: &RemoteKey) -> Option<Ahead> {
        let a = self.ahead.lock().remove(&block)?;
        if a.offset == offset && a.len == len && a.key == *key {
            return Some(a);
        }
        a.discard();
        None
    }

    /// Starts reading `offset..offset + n` of `block` ahead of its reader.
    fn start_ahead(
        &self,
        block: u64,
        (offset, n): (u64, usize),
        key: &RemoteKey,
        (fabric, peer): &(Arc<ClientFabric>, PeerId),
    ) {
        let Ok(reads) = start_reads(fabric, *peer, key, offset, n) else {
            return;
        };
        let a = Ahead {
            offset,
            len: n,
            key: *key,
            reads,
            deadline: tokio::time::Instant::now() + fabric.fabric.read_timeout(),
            fabric: fabric.clone(),
            started: Instant::now(),
        };
        let mut ahead = self.ahead.lock();
        if ahead.len() >= AHEAD_KEEP && !ahead.contains_key(&block) {
            let oldest = ahead.iter().min_by_key(|(_, a)| a.started).map(|(b, _)| *b);
            if let Some(old) = oldest.and_then(|b| ahead.remove(&b)) {
                old.discard();
            }
        }
        if let Some(old) = ahead.insert(block, a) {
            old.discard();
        }
    }
}

/// Awaits `read` until `deadline`; past it the read is dropped (its buffer
/// retired to the fabric if the provider still holds it).
pub(crate) async fn wait_read(
    read: ReadOp,
    deadline: tokio::time::Instant,
    fabric: &ClientFabric,
) -> (Option<RegisteredBuf>, Result<(), RdmaError>) {
    match tokio::time::timeout_at(deadline, read).await {
        Ok(done) => done,
        Err(_) => {
            let ms = u64::try_from(fabric.fabric.read_timeout().as_millis()).unwrap_or(u64::MAX);
            (None, Err(RdmaError::Timeout { ms }))
        }
    }
}

/// The local address this host uses to reach `addr` (`host:port`): the
/// client's fabric binds there, so a loopback worker is read over loopback.
fn local_towards(addr: &str) -> String {
    std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| {
            s.connect(addr)?;
            s.local_addr()
        })
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|_| "127.0.0.1".into())
}
