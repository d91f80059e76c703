//! `eddy report`: the cluster at a glance.

use crate::error::CliError;
use crate::format::{bytes, duration_ms, time_ms};
use crate::out::outln;

pub async fn run(master: &str) -> Result<(), CliError> {
    let c = super::connect(master).await?;
    let info = c.cluster_info().await?;
    // Only to say which transport this process would read each worker by.
    let fs = eddy_client::FileSystem::with_master_opts(c.clone(), super::client_options(true));
    let live = info.workers.iter().filter(|w| w.live).count();
    outln!("Eddy cluster summary");
    outln!("    Master address: {}", info.master_address);
    outln!("    Version:        {}", info.version);
    outln!("    Started:        {}", time_ms(info.started_ms));
    outln!("    Uptime:         {}", duration_ms(info.uptime_ms));
    outln!("    Live workers:   {live}");
    outln!("    Lost workers:   {}", info.workers.len() - live);
    if info.registration_grace_left_ms > 0 {
        outln!(
            "    Restarted: workers are registering again ({} left of the grace period; until then no file counts as lost)",
            duration_ms(info.registration_grace_left_ms)
        );
    }
    outln!("    Inodes:         {}", info.inode_count);
    outln!("    Cached blocks:  {}", info.block_count);
    outln!("    Mounts:         {}", info.mount_count);
    if info.under_replicated_blocks > 0 {
        outln!(
            "    Under-replicated blocks: {} ({} cannot reach their min with the live workers)",
            info.under_replicated_blocks,
            info.unsatisfiable_blocks
        );
    }
    if info.persist_pending_files > 0 {
        outln!(
            "    Waiting to persist: {} files (ASYNC_THROUGH or `eddy fs persist`)",
            info.persist_pending_files
        );
    }
    if info.tiers.is_empty() {
        outln!("    Capacity:       no live worker");
    }
    for t in &info.tiers {
        outln!(
            "    Tier {:<4}       {} used of {} ({} blocks)",
            t.tier,
            bytes(t.used_bytes),
            bytes(t.capacity_bytes),
            t.block_count
        );
    }
    if !info.workers.is_empty() {
        outln!();
        outln!(
            "{:<6} {:<28} {:<5} {:>10} {:>10} {:>8} {:>12}",
            "ID",
            "ADDRESS",
            "STATE",
            "USED",
            "CAPACITY",
            "BLOCKS",
            "HEARTBEAT"
        );
        for w in &info.workers {
            let a = w.address.clone().unwrap_or_default();
            let used: u64 = w.tiers.iter().map(|t| t.used_bytes).sum();
            let cap: u64 = w.tiers.iter().map(|t| t.capacity_bytes).sum();
            outln!(
                "{:<6} {:<28} {:<5} {:>10} {:>10} {:>8} {:>12}",
                w.worker_id,
                format!("{}:{}", a.host, a.data_port),
                if w.live { "live" } else { "LOST" },
                bytes(used),
                bytes(cap),
                w.block_count,
                format!("{} ago", duration_ms(w.last_heartbeat_ago_ms)),
            );
            if !w.io_engine.is_empty() {
                outln!("       io engine: {}", w.io_engine);
            }
            outln!(
                "       transports: {}; from here: {}",
                offered(&a),
                fs.transport_to(&a)
            );
            for t in &w.tiers {
                outln!(
                    "       {:<5} {:>10} used of {:>10} {:>8} blocks",
                    t.tier,
                    bytes(t.used_bytes),
                    bytes(t.capacity_bytes),
                    t.block_count
                );
                for d in &t.dirs {
                    let state = if d.error.is_empty() {
                        String::new()
                    } else {
                        format!("  BAD: {}", d.error)
                    };
                    outln!(
                        "         {} {} used of {}{state}",
                        d.path,
                        bytes(d.used_bytes),
                        bytes(d.capacity_bytes)
                    );
                }
            }
        }
    }
    Ok(())
}

/// What a worker serves reads by: TCP always, its Unix socket to clients on
/// its host, and one-sided RDMA reads when it opened a libfabric provider.
fn offered(a: &eddy_client::pb::WorkerAddress) -> String {
    let mut t = vec!["tcp".to_string()];
    if !a.domain_socket.is_empty() {
        t.push(format!("short-circuit ({})", a.domain_socket));
    }
    if !a.rdma_provider.is_empty() {
        t.push(format!("rdma ({})", a.rdma_provider));
    }
    t.join(", ")
}
