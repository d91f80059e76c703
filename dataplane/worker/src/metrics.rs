//! The worker's metrics (`eddy_worker_*`, docs/METRICS.md), read at scrape
//! time from the counters the block store already keeps (the same numbers
//! the data protocol's `Stats` frame carries) and from its tiers.

use std::sync::Arc;

use eddy_metrics::{counter, gauge};

use crate::shared::{Shared, stats};

/// Values that go up and down; every other stat only ever grows.
const GAUGES: &[&str] = &[
    "blocks_cached",
    "memory_used",
    "memory_capacity",
    "memory_reserved",
    "write_pool_bytes",
    "leases",
    "lease_clients",
    "rdma_leases",
    "rdma_registrations",
];
/// Internal bookkeeping, not for dashboards.
const SKIPPED: &[&str] = &["pinned_version"];

pub(crate) fn register(sh: &Arc<Shared>, io_engine: String) {
    eddy_metrics::init();
    eddy_metrics::on_scrape(sh, move |sh| {
        // Labelled by worker id: tests and benchmarks run several workers
        // in one process, and one recorder serves them all.
        let worker = sh.link.worker_id().to_string();
        for (name, v) in stats(sh) {
            if SKIPPED.contains(&name.as_str()) {
                continue;
            }
            if GAUGES.contains(&name.as_str()) {
                gauge!(format!("eddy_worker_{name}"), "worker" => worker.clone()).set(v as f64);
            } else {
                counter!(format!("eddy_worker_{name}_total"), "worker" => worker.clone())
                    .absolute(v);
            }
        }
        for t in sh.store.tiers() {
            let labels = [("worker", worker.clone()), ("tier", t.alias.clone())];
            gauge!("eddy_worker_tier_capacity_bytes", &labels).set(t.capacity as f64);
            gauge!("eddy_worker_tier_used_bytes", &labels).set(t.used as f64);
            gauge!("eddy_worker_tier_evictable_bytes", &labels).set(t.evictable as f64);
            gauge!("eddy_worker_tier_blocks", &labels).set(t.blocks as f64);
            let bad = t.dirs.iter().filter(|d| !d.error.is_empty()).count();
            gauge!("eddy_worker_tier_bad_dirs", &labels).set(bad as f64);
        }
        let rdma = sh
            .rdma
            .as_ref()
            .map_or(String::new(), |f| f.provider().to_string());
        gauge!("eddy_worker_info", "worker" => worker, "io_engine" => io_engine.clone(),
            "rdma_provider" => rdma)
        .set(1.0);
    });
}
