//! The Eddy worker: caches blocks in shared memory and serves them.
//!
//! - [`segment`]: one sealed memfd per cached block; with [`io`]'s buffers and
//!   ring the only `unsafe` (docs/ARCHITECTURE.md lists it).
//! - [`store`]: the tiers: memory segments under a byte budget, then disk
//!   tiers ([`disk`] block files through the [`io`] engines); LRU demotion
//!   ([`evict`]), promotion, pinned files, single-flight fills.
//! - [`shared`]: what every front door and job shares ([`shared::Shared`]:
//!   store, master link, admission, limits) and the stats they report.
//! - [`cache`]: the core of reads: a block from its tier, or filled from the
//!   under-storage at the version the master checked.
//! - [`write_pool`]: block-size memfds allocated ahead of writes, refilled
//!   on a thread of its own within a budget.
//! - [`session`]: the one write session both front doors drive (blocks,
//!   reservations, the under-storage writer, failure, commit at close,
//!   cancel); its decisions in an I/O-free state machine.
//! - [`server`]: the data protocol over TCP (`eddy-wire` frames) and
//!   [`uds`]: the Unix-socket short-circuit; two thin front doors over the
//!   core above.
//! - [`jobs`]: work the master hands out in heartbeats, done by
//!   [`replicate`] and [`persist`].
//! - [`master_link`]: registration, heartbeats and their commands, block
//!   commits, mount lookups.
//!
//! Architecture invariant: the worker never depends on the master crate; it
//! reaches the master only through the gRPC schema (via the client's
//! transport), like any other client.

pub mod access;
pub mod admit;
pub mod cache;
pub mod config;
pub mod conn;
pub mod credentials;
pub mod disk;
pub mod error;
pub mod evict;
pub mod fabric;
pub mod io;
pub mod jobs;
pub mod master_link;
mod metrics;
pub mod persist;
pub mod remote;
pub mod replicate;
pub mod segment;
pub mod server;
pub mod session;
pub mod shared;
pub mod store;
pub mod uds;
pub mod write_pool;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use config::WorkerConfig;
use eddy_client::{MasterClient, pb};
use eddy_proto::{BindError, Endpoint};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::master_link::MasterLink;
use crate::shared::Shared;
use crate::store::BlockStore;

/// A started worker. Stop it with [`RunningWorker::shutdown`].
pub struct RunningWorker {
    pub data_addr: SocketAddr,
    pub worker_id: u64,
    pub store: Arc<BlockStore>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
    grace: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Bind(#[from] BindError),
    #[error("invalid worker configuration: {0}")]
    Config(#[from] config::ConfigError),
    #[error("invalid worker configuration: {0}")]
    MasterAddress(eddy_client::ClientError),
    #[error("invalid worker configuration: io_engine = \"io_uring\": {0}")]
    Uring(std::io::Error),
    #[error("invalid worker configuration: {0}")]
    Credentials(#[from] credentials::CredentialError),
    #[error("stopped before the master answered")]
    Stopped,
    #[error("invalid worker configuration: {0}")]
    Tls(#[from] eddy_proto::tls::TlsError),
}

/// What a [`BindError`] of the worker names.
const DATA_SERVER: &str = "the worker's data server";
const SOCKET: &str = "the worker's short-circuit socket";

/// Binds the data server, registers with the master (retrying until it
/// answers or `stop_early` fires), and starts serving and heartbeating.
pub async fn start(cfg: WorkerConfig) -> Result<RunningWorker, StartError> {
    let (stop, mut stop_rx) = watch::channel(false);
    let bind_error = |e| BindError::new(DATA_SERVER, Endpoint::Tcp, &cfg.bind, "[worker] bind", e);
    let listener = tokio::net::TcpListener::bind(&cfg.bind)
        .await
        .map_err(bind_error)?;
    let data_addr = listener.local_addr().map_err(bind_error)?;
    let host = if !cfg.host.is_empty() {
        cfg.host.clone()
    } else if data_addr.ip().is_unspecified() {
        // Bound to every interface: advertise the address this host uses
        // to reach the master, which clients on that network can reach too.
        route_source(&cfg.master).unwrap_or_else(|| "127.0.0.1".into())
    } else {
        data_addr.ip().to_string()
    };
    cfg.validate()?;
    // The data port's TLS, and what this worker trusts when it dials the
    // master and peers: bad files stop the start.
    let tls = conn::DataTls::from_security(&cfg.security)?;
    let store = open_store(&cfg)?;
    // The master client dials lazily; registration below retries.
    let (cred_source, creds) = credentials::CredentialSource::new(&cfg.security)?;
    let master_opts = eddy_client::ClientOptions {
        tls: tls.dial.clone(),
        credentials: creds,
        ..Default::default()
    };
    let master =
        MasterClient::lazy_opts(&cfg.master, &master_opts).map_err(StartError::MasterAddress)?;
    let uds = bind_socket(&cfg)?;
    // Remote leases: a fabric bound to the advertised host, or TCP only.
    let rdma = cfg
        .rdma
        .then(|| {
            let memory = cfg.effective_memory_capacity();
            fabric::WorkerFabric::open(&cfg.rdma_provider, &host, memory)
        })
        .flatten();
    if let Some(f) = &rdma {
        store.set_seal_mode(f.seal_mode());
    }
    store.pool.set_budget(cfg.write_pool_bytes);
    let address = pb::WorkerAddress {
        rdma_provider: rdma
            .as_ref()
            .map(|f| f.provider().to_string())
            .unwrap_or_default(),
        host,
        rpc_port: 0,
        data_port: u32::from(data_addr.port()),
        domain_socket: uds
            .as_ref()
            .map(|(_, p)| p.display().to_string())
            .unwrap_or_default(),
    };
    let (copy_tx, copy_rx) = tokio::sync::mpsc::unbounded_channel();
    let link = Arc::new(
        MasterLink::new(master, address, store.clone(), copy_tx, cfg.ufs.clone())
            .with_credentials(cred_source),
    );
    let worker_id = link
        .register_until_ok(&mut stop_rx)
        .await
        .ok_or(StartError::Stopped)?;
    let over = match (&tls.accept, cfg.security.tls_client_auth) {
        (None, _) => "",
        (Some(_), false) => " (TLS)",
        (Some(_), true) => " (TLS, client certificates required)",
    };
    tracing::info!("worker {worker_id} registered; data server on {data_addr}{over}");

    let mut tasks = JoinSet::new();
    tasks.spawn(link.clone().run(stop.subscribe()));
    let lease_policy = conn::LeasePolicy {
        ttl: Duration::from_millis(cfg.lease_ttl_ms.max(1)),
        max_per_client: cfg.max_leases_per_client,
    };
    let shared = Arc::new(Shared {
        store: store.clone(),
        link,
        admit: Default::default(),
        timeouts: cfg.timeouts(),
        max_per_peer: cfg.max_connections_per_peer,
        tls,
        rdma,
        leases: lease_policy.clone(),
    });
    metrics::register(&shared, store.engine().name().to_string());
    tasks.spawn(replicate::run(shared.clone(), copy_rx, stop.subscribe()));
    if let Some((l, path)) = uds {
        tasks.spawn(uds::accept_loop(
            l,
            path,
            shared.clone(),
            lease_policy,
            stop.subscribe(),
        ));
    }
    tasks.spawn(maintain(
        store.clone(),
        cfg.promote_interval_ms,
        stop.subscribe(),
    ));
    tasks.spawn(watch_dirs(store.clone(), stop.subscribe()));
    let stop_rx = stop.subscribe();
    tasks.spawn(accept_loop(listener, shared, stop_rx));
    Ok(RunningWorker {
        data_addr,
        worker_id,
        store,
        stop,
        tasks,
        grace: Duration::from_millis(cfg.shutdown_grace_ms),
    })
}

/// The block store of `cfg`: its memory, its disk tiers and their I/O engine.
fn open_store(cfg: &WorkerConfig) -> Result<Arc<BlockStore>, StartError> {
    let ring = io::UringOptions {
        depth: cfg.io_queue_depth,
        fixed_bytes: cfg.io_registered_buffer_bytes,
        sqpoll_idle_ms: cfg.io_sqpoll_idle_ms,
    };
    let engine = match cfg.io_engine.as_str() {
        "pread" => io::Engine::pread(),
        "io_uring" => io::Engine::uring_with(&ring).map_err(StartError::Uring)?,
        _ => io::Engine::detect_with(&ring),
    };
    tracing::info!("disk I/O engine: {}", engine.describe());
    let tiers = cfg
        .tiers
        .iter()
        .map(|t| store::TierSpec {
            alias: t.alias.trim().to_string(),
            dirs: t
                .dirs
                .iter()
                .zip(&t.quotas)
                .map(|(d, q)| disk::Dir::new(d, *q))
                .collect(),
        })
        .collect();
    Ok(BlockStore::with_tiers(
        cfg.effective_memory_capacity(),
        tiers,
        Arc::new(engine),
    ))
}

/// The short-circuit's Unix socket, when `cfg` names one.
fn bind_socket(
    cfg: &WorkerConfig,
) -> Result<Option<(tokio::net::UnixListener, std::path::PathBuf)>, StartError> {
    Ok(if cfg.domain_socket.is_empty() {
        None
    } else {
        let bind_error = |addr: String, e| {
            BindError::new(SOCKET, Endpoint::Socket, addr, "[worker] domain_socket", e)
        };
        let path = std::path::absolute(&cfg.domain_socket)
            .map_err(|e| bind_error(cfg.domain_socket.clone(), e))?;
        let l = uds::bind(&path).map_err(|e| bind_error(path.display().to_string(), e))?;
        Some((l, path))
    })
}

/// Reads per second above which background promotion waits: it must not
/// compete with foreground reads for the disk.
const PROMOTE_BUSY_READS_PER_SEC: u64 = 200;

/// How often disk-tier directories are probed (docs/TIERS.md).
const DIR_CHECK_PERIOD: Duration = Duration::from_secs(1);

/// Probes disk-tier directories every second: healthy ones are checked,
/// and those out of service are probed again every few seconds
/// (`store::dirs::REPROBE_AFTER`). Apart from promotion, whose period is
/// the user's to choose.
async fn watch_dirs(store: Arc<BlockStore>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(DIR_CHECK_PERIOD) => {}
            _ = stop.changed() => return,
        }
        store.check_dirs();
        store.reprobe_bad_dirs().await;
    }
}

/// Background promotion: hot disk blocks go into free memory every
/// `promote_ms` (0: never) unless the worker is busy serving reads.
async fn maintain(store: Arc<BlockStore>, promote_ms: u64, mut stop: watch::Receiver<bool>) {
    if promote_ms == 0 {
        return;
    }
    let period = Duration::from_millis(promote_ms);
    let reads = |s: &BlockStore| {
        use std::sync::atomic::Ordering::Relaxed;
        s.stats.cache_hits.load(Relaxed) + s.stats.cache_misses.load(Relaxed)
    };
    let mut last = reads(&store);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = stop.changed() => return,
        }
        let now = reads(&store);
        let busy =
            (now - last) * 1000 / period.as_millis().max(1) as u64 > PROMOTE_BUSY_READS_PER_SEC;
        last = now;
        let n = store.promote_hot(busy, 8).await;
        if n > 0 {
            tracing::debug!("promoted {n} hot blocks to memory");
        }
    }
}

/// The local IP the kernel would use to reach `target` (a UDP "connect"
/// sends nothing).
fn route_source(target: &str) -> Option<String> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect(target).ok()?;
    Some(s.local_addr().ok()?.ip().to_string())
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    sh: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    let peers = conn::PeerLimit::new(sh.max_per_peer);
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((sock, peer)) => {
                    let Some(slot) = peers.admit(peer.ip()) else {
                        conn::refuse(&sock, &format!("{}", peer.ip()), peers.max());
                        continue;
                    };
                    let _ = sock.set_nodelay(true);
                    conns.spawn(server::serve(sh.clone(), sock, peer, slot, stop.clone()));
                }
                Err(e) => {
                    // Out of fds, typically: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            _ = stop.changed() => break,
        }
    }
    drop(listener);
    // Connections finish the request in hand, then see the stop.
    while conns.join_next().await.is_some() {}
}

impl RunningWorker {
    /// Stops accepting, lets requests in flight finish (up to the grace
    /// period), then drops every segment.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        let all = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(self.grace, all).await.is_err() {
            tracing::warn!(
                "requests still running after {:?}; stopping them",
                self.grace
            );
            self.tasks.shutdown().await;
        }
    }
}
