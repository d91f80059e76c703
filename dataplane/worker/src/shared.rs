//! What the worker's front doors (the TCP data server, the Unix-socket
//! short-circuit) and its background jobs share: the block store, the
//! master link, admission, the connection limits, and the counters the
//! `Stats` frame and the metrics report.

use std::sync::Arc;

use crate::conn::{DataTls, Timeouts};
use crate::master_link::MasterLink;
use crate::store::BlockStore;

#[cfg(test)]
pub(crate) mod fake_master;

/// What every connection shares.
pub struct Shared {
    pub store: Arc<BlockStore>,
    pub link: Arc<MasterLink>,
    /// Checks of misses and write opens against the master.
    pub admit: Arc<crate::admit::Admission>,
    pub timeouts: Timeouts,
    /// Connections one peer may hold (per IP on TCP, per process on the
    /// Unix socket).
    pub max_per_peer: usize,
    /// TLS of the data port and of dials to peers' (replication).
    pub tls: DataTls,
    /// The fabric remote leases are served on (`[worker] rdma`), and their
    /// limits; `None`: TCP only.
    pub rdma: Option<Arc<crate::fabric::WorkerFabric>>,
    pub leases: crate::conn::LeasePolicy,
}

/// The counters, by name, as the `Stats` frame and the metrics carry them.
pub(crate) fn stats(sh: &Shared) -> Vec<(String, u64)> {
    use std::sync::atomic::Ordering::Relaxed;
    let s = &sh.store.stats;
    [
        ("cache_hits", s.cache_hits.load(Relaxed)),
        ("cache_misses", s.cache_misses.load(Relaxed)),
        ("ufs_reads", s.ufs_reads.load(Relaxed)),
        ("ufs_bytes_read", s.ufs_bytes_read.load(Relaxed)),
        ("evictions", s.evictions.load(Relaxed)),
        ("blocks_written", s.blocks_written.load(Relaxed)),
        ("bytes_served", s.bytes_served.load(Relaxed)),
        ("demotions", s.demotions.load(Relaxed)),
        ("promotions", s.promotions.load(Relaxed)),
        ("disk_reads", s.disk_reads.load(Relaxed)),
        ("access_denied", s.access_denied.load(Relaxed)),
        ("replicas_made", s.replicas_made.load(Relaxed)),
        ("persists", s.persists.load(Relaxed)),
        ("persist_failures", s.persist_failures.load(Relaxed)),
        ("blocks_cached", sh.store.block_count() as u64),
        ("memory_used", sh.store.used()),
        ("memory_capacity", sh.store.capacity()),
        ("memory_reserved", sh.store.reserved()),
        ("write_pool_bytes", sh.store.pool.stocked_bytes()),
        ("write_pool_hits", sh.store.pool.hits_and_misses().0),
        ("write_pool_misses", sh.store.pool.hits_and_misses().1),
        ("pinned_version", sh.store.pinned_version()),
        ("leases", s.leases.load(Relaxed)),
        ("lease_clients", s.lease_clients.load(Relaxed)),
        ("leases_granted", s.leases_granted.load(Relaxed)),
        ("leased_bytes", s.leased_bytes.load(Relaxed)),
        ("rdma_leases", s.rdma_leases.load(Relaxed)),
        ("rdma_leases_granted", s.rdma_leases_granted.load(Relaxed)),
        ("rdma_leased_bytes", s.rdma_leased_bytes.load(Relaxed)),
        (
            "rdma_registration_failures",
            s.rdma_registration_failures.load(Relaxed),
        ),
    ]
    .into_iter()
    .chain(fabric_stats(sh))
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// The fabric's own counters, when remote leases are on.
fn fabric_stats(sh: &Shared) -> Vec<(&'static str, u64)> {
    let Some(f) = &sh.rdma else {
        return Vec::new();
    };
    let f = f.fabric().stats();
    vec![
        ("rdma_registrations", f.registrations_live),
        ("rdma_progress_polls", f.polls),
    ]
}
