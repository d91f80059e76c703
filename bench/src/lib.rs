//! Shared set-up for Eddy's benchmarks.

use eddy_master::{MasterConfig, RunningMaster};

/// A master on a loopback ephemeral port with its metastore in a temp dir.
pub async fn start_master(dir: &std::path::Path) -> RunningMaster {
    let cfg = MasterConfig {
        bind: "127.0.0.1:0".into(),
        metastore_dir: dir.join("meta"),
        root_ufs: dir.join("ufs").display().to_string(),
        ..Default::default()
    };
    eddy_master::start(cfg).await.expect("master starts")
}

/// Resident set size of this process in bytes (from /proc/self/statm).
pub fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    pages * 4096
}
