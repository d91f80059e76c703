//! Remote leases: clients on other hosts read memory-tier blocks with
//! one-sided RDMA reads (libfabric, `eddy-rdma`), with no worker CPU in the
//! data path. A client asks over its data connection (`RemoteLease`); the
//! worker pins each block, registers its sealed segment with the fabric
//! (one registration per lease: its key opens that block and nothing else,
//! and is revoked when the lease ends) and answers the keys
//! (`RemoteLeaseOk`). Layouts: docs/DATA-PROTOCOL.md, "Remote leases".
//!
//! A lease pins its segment exactly like a short-circuit lease (eviction
//! skips it; a free takes the block out of the table and the memory goes
//! with the last lease). Leases end on `Release`, after the lease lifetime,
//! or with the connection (client exit or death): the table belongs to the
//! connection. The registration is dropped before the pin, so no key
//! reaches memory that may be unmapped: a segment is sealed and never
//! reused, so a read under a live key always returns the block's bytes.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use eddy_proto::auth::BlockOps;
use eddy_rdma::Registration;
use eddy_wire::{RemoteGrant, RemoteLease, RemoteLeaseOk};
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::access::ConnAccess;
use crate::cache::cached;
use crate::error::WorkerError;
use crate::fabric::WorkerFabric;
use crate::shared::Shared;
use crate::store::{Block, Stats};

struct Held {
    // Dropped first: the key is revoked before the pin goes.
    _reg: Registration<'static>,
    _pin: Block,
    since: Instant,
}

struct Table {
    held: HashMap<u64, Held>,
    next_id: u64,
    last_request: Instant,
    stats: Arc<crate::store::BlockStore>,
    fabric: Option<Arc<WorkerFabric>>,
}

impl Table {
    fn remove(&mut self, id: u64) {
        if self.held.remove(&id).is_some() {
            self.count(-1);
        }
    }

    fn expire(&mut self, ttl: Duration) {
        let before = self.held.len();
        self.held.retain(|_, h| h.since.elapsed() < ttl);
        self.count(-((before - self.held.len()) as i64));
    }

    /// Moves the worker's count of remote leases by `d`, and tells the
    /// fabric how many are held now.
    fn count(&self, d: i64) {
        let s = &self.stats.stats.rdma_leases;
        if d >= 0 {
            Stats::add(s, d as u64);
        } else {
            Stats::sub(s, d.unsigned_abs());
        }
        if let Some(f) = &self.fabric {
            f.leases_changed(s);
        }
    }
}

impl Drop for Table {
    fn drop(&mut self) {
        self.count(-(self.held.len() as i64));
    }
}

/// One data connection's remote leases, dropped (every key revoked, every
/// pin released) with the connection. A timer ends leases past their
/// lifetime even while the client is quiet, and says when a connection
/// that holds none has been idle too long.
pub(crate) struct RemoteLeases {
    table: Arc<Mutex<Table>>,
    timer: Option<tokio::task::JoinHandle<()>>,
    idle_close: Arc<Notify>,
    /// Whether this connection was sent the fabric (once per connection).
    sent_fabric: bool,
}

impl RemoteLeases {
    pub(crate) fn new(sh: &Shared) -> Self {
        Self {
            table: Arc::new(Mutex::new(Table {
                held: HashMap::new(),
                next_id: 1,
                last_request: Instant::now(),
                stats: sh.store.clone(),
                fabric: sh.rdma.clone(),
            })),
            timer: None,
            idle_close: Arc::new(Notify::new()),
            sent_fabric: false,
        }
    }

    /// Whether the connection holds leases (and so is not idle).
    pub(crate) fn holding(&self) -> bool {
        !self.table.lock().held.is_empty()
    }

    /// A request arrived: the idle clock starts again.
    pub(crate) fn touch(&self) {
        self.table.lock().last_request = Instant::now();
    }

    /// Resolves when the connection holds no lease and has had no request
    /// for `idle` (checked by the lease timer, which runs once leases were
    /// taken; before that the stream's own idle timer closes it).
    pub(crate) async fn idle_closed(&self) {
        self.idle_close.notified().await
    }

    /// `Release` of remote leases (unknown ids are ignored, as on the Unix
    /// socket: a lease may have expired meanwhile).
    pub(crate) fn release(&self, ids: &[u64]) {
        let mut t = self.table.lock();
        for id in ids {
            t.remove(*id);
        }
    }

    fn start_timer(&mut self, ttl: Duration, idle: Duration) {
        if self.timer.is_some() {
            return;
        }
        let table: Weak<Mutex<Table>> = Arc::downgrade(&self.table);
        let close = self.idle_close.clone();
        let period = (ttl / 4).min(idle / 4).max(Duration::from_millis(10));
        self.timer = Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            loop {
                tick.tick().await;
                let Some(t) = table.upgrade() else { return };
                let mut t = t.lock();
                t.expire(ttl);
                if t.held.is_empty() && t.last_request.elapsed() >= idle {
                    close.notify_one();
                }
            }
        }));
    }
}

impl Drop for RemoteLeases {
    fn drop(&mut self) {
        if let Some(t) = self.timer.take() {
            t.abort();
        }
    }
}

/// Answers a `RemoteLease`: one grant per block, each granted block pinned
/// and registered. A worker without a fabric, or on another provider,
/// answers `Error` (`UNSUPPORTED`) and the client reads over TCP.
pub(crate) async fn lease(
    sh: &Shared,
    req: &RemoteLease,
    leases: &mut RemoteLeases,
    access: &mut ConnAccess,
) -> Result<RemoteLeaseOk, WorkerError> {
    let Some(fab) = &sh.rdma else {
        return Err(WorkerError::Rdma(
            "this worker serves no remote leases ([worker] rdma is off, or no libfabric \
             provider opened: see its log); read over TCP"
                .into(),
        ));
    };
    if req.provider != fab.provider() {
        return Err(WorkerError::Rdma(format!(
            "this worker's remote leases are on provider {:?}, the client's fabric is {:?}: \
             set the client's rdma provider to match, or read over TCP",
            fab.provider(),
            req.provider
        )));
    }
    let policy = &sh.leases;
    leases.table.lock().expire(policy.ttl);
    let mut grants = Vec::with_capacity(req.items.len());
    for it in &req.items {
        let g = grant(sh, fab, it, leases, access).await;
        grants.push(g.unwrap_or_else(|e| RemoteGrant {
            block_id: it.block_id,
            lease_id: 0,
            length: 0,
            addr: 0,
            region_len: 0,
            key: 0,
            code: e.code() as i32 as u16,
            message: e.to_string(),
        }));
    }
    if grants.iter().any(|g| g.code == 0) {
        leases.start_timer(policy.ttl, sh.timeouts.idle);
    }
    let fabric = (req.want_fabric || !leases.sent_fabric).then(|| fab.wire().clone());
    leases.sent_fabric = true;
    Ok(RemoteLeaseOk {
        ttl_ms: policy.ttl.as_millis() as u64,
        epoch: fab.epoch(),
        fabric,
        grants,
    })
}

async fn grant(
    sh: &Shared,
    fab: &WorkerFabric,
    it: &eddy_wire::ReadRequest,
    leases: &mut RemoteLeases,
    access: &mut ConnAccess,
) -> Result<RemoteGrant, WorkerError> {
    it.check()?;
    let (keys, stats) = (&sh.link.keys, &sh.store.stats);
    access.check_block(keys, stats, it.block_id, &it.token, BlockOps::READ)?;
    let held = leases.table.lock().held.len();
    if held >= sh.leases.max_per_client {
        return Err(WorkerError::NoSpace(crate::store::NoSpace {
            needed: it.block_length,
            used: held as u64,
            capacity: sh.leases.max_per_client as u64,
        }));
    }
    let b = cached(sh, it).await?;
    let Block::Mem(seg) = &b else {
        let tier = sh.store.tier_name(&b);
        return Err(WorkerError::Rdma(format!(
            "block {} is on the {tier} tier, which is not registered for RDMA: read it over \
             TCP (or with CACHE_PROMOTE, which moves it to memory)",
            it.block_id
        )));
    };
    if seg.is_empty() {
        return Err(WorkerError::Rdma(format!(
            "block {} is empty: nothing to read",
            it.block_id
        )));
    }
    // A segment mapped read-only (a client filled it) goes through a
    // private view where the provider registers only writable memory.
    let reg = if fab.needs_writable() && !seg.is_writable_mapped() {
        seg.private_view().map_err(|e| e.to_string()).and_then(|v| {
            fab.fabric()
                .register_shared(Arc::new(v))
                .map_err(|e| e.to_string())
        })
    } else {
        fab.fabric()
            .register_shared(seg.clone())
            .map_err(|e| e.to_string())
    };
    let reg = reg.map_err(|e| {
        Stats::add(&sh.store.stats.rdma_registration_failures, 1);
        tracing::warn!("registering block {} for RDMA failed: {e}", it.block_id);
        WorkerError::Rdma(format!("registering the block for RDMA failed: {e}"))
    })?;
    let rk = reg.remote_key();
    let mut t = leases.table.lock();
    let id = t.next_id;
    t.next_id += 1;
    t.held.insert(
        id,
        Held {
            _reg: reg,
            _pin: b.clone(),
            since: Instant::now(),
        },
    );
    t.count(1);
    Stats::add(&sh.store.stats.rdma_leases_granted, 1);
    Stats::add(&sh.store.stats.rdma_leased_bytes, b.len());
    Ok(RemoteGrant {
        block_id: it.block_id,
        lease_id: id,
        length: b.len(),
        addr: rk.addr_or_offset,
        region_len: rk.len,
        key: rk.key,
        code: 0,
        message: String::new(),
    })
}
