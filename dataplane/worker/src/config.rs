//! Worker configuration (the `[worker]` table of the config file). Every key
//! is documented in cli/etc/eddy.toml, printed by `eddy --print-sample-config`.

use serde::Deserialize;

/// Alluxio's worker data port, kept for familiarity.
pub const DEFAULT_DATA_PORT: u16 = 29999;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerConfig {
    /// The master to register with (`host:port`).
    pub master: String,
    /// Address the data server binds; port 0 picks a free port.
    pub bind: String,
    /// Host name or address advertised to the master and clients; empty:
    /// the bound IP.
    pub host: String,
    /// Memory tier capacity in bytes; 0: a quarter of the machine's memory.
    pub memory_capacity: u64,
    /// Memory kept allocated ahead of writes, in block-size segments, so a
    /// write does not wait for the kernel to allocate its pages; held on
    /// top of `memory_capacity` and refilled in the background once a
    /// write has asked (at most 16 segments). 0 turns it off.
    pub write_pool_bytes: u64,
    /// How long a shutdown waits for requests in flight, in milliseconds.
    pub shutdown_grace_ms: u64,
    /// Unix socket for co-located (short-circuit) clients; empty: none.
    pub domain_socket: String,
    /// Lifetime of a short-circuit lease, in milliseconds.
    pub lease_ttl_ms: u64,
    /// Leases one co-located client may hold at once.
    pub max_leases_per_client: usize,
    /// Serve remote leases: clients on other hosts read memory-tier blocks
    /// with one-sided RDMA reads (docs/RDMA.md). Off: TCP only.
    pub rdma: bool,
    /// The libfabric provider for `rdma` ("verbs;ofi_rxm", "efa",
    /// "tcp;ofi_rxm"); empty: the first of those this host opens.
    pub rdma_provider: String,
    /// Disk tiers below memory, top first (`[[worker.tiers]]`).
    pub tiers: Vec<TierConfig>,
    /// Disk I/O engine: "auto" (io_uring when it works here, else pread),
    /// "io_uring" (refuse to start without it) or "pread".
    pub io_engine: String,
    /// Operations one io_uring ring keeps in flight.
    pub io_queue_depth: u32,
    /// Bytes of registered (fixed) io_uring buffers; held within the
    /// locked-memory limit (RLIMIT_MEMLOCK). 0: none.
    pub io_registered_buffer_bytes: u64,
    /// SQPOLL: a kernel thread polls the submission queue, idling this many
    /// milliseconds before it sleeps. 0 (default): off.
    pub io_sqpoll_idle_ms: u32,
    /// How often hot disk-tier blocks are considered for promotion to
    /// memory, in milliseconds; 0 turns background promotion off.
    pub promote_interval_ms: u64,
    /// A data or short-circuit connection with no request for this long is
    /// closed (a write session too: its memory reservations go with it; a
    /// short-circuit connection holding leases and no write stays), and a
    /// write to a peer that reads nothing for this long fails. Milliseconds.
    pub idle_timeout_ms: u64,
    /// Once a frame's first byte is in, its header and control body must all
    /// be in within this, and a `Data` body may go this long without a byte.
    /// Milliseconds.
    pub frame_timeout_ms: u64,
    /// Open connections one peer may have on the data port (per IP) and on
    /// the Unix socket (per process); more are answered `UNAVAILABLE` and
    /// closed.
    pub max_connections_per_peer: usize,
    /// Where `eddy worker` serves Prometheus metrics (`GET /metrics`);
    /// empty: nowhere. Port 0 picks a free port.
    pub metrics_bind: String,
    /// Object-store defaults: the config file's top-level `[ufs.*]` tables,
    /// shared with the master in the same file (not a `[worker]` key).
    #[serde(skip)]
    pub ufs: eddy_ufs::UfsDefaults,
    /// The config file's `[security]` table (not a key of this table).
    #[serde(skip)]
    pub security: eddy_proto::auth::SecurityConfig,
}

/// One disk tier: directories, each with its own quota.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TierConfig {
    /// The tier's name in reports and block locations ("SSD", "HDD").
    pub alias: String,
    pub dirs: Vec<String>,
    /// Bytes each directory may hold, in the order of `dirs`.
    pub quotas: Vec<u64>,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            master: format!("127.0.0.1:{}", eddy_proto::DEFAULT_MASTER_PORT),
            bind: format!("127.0.0.1:{DEFAULT_DATA_PORT}"),
            host: String::new(),
            memory_capacity: 0,
            write_pool_bytes: 128 << 20,
            shutdown_grace_ms: 10_000,
            domain_socket: String::new(),
            lease_ttl_ms: 600_000,
            max_leases_per_client: 4096,
            rdma: false,
            rdma_provider: String::new(),
            tiers: Vec::new(),
            io_engine: "auto".into(),
            io_queue_depth: 64,
            io_registered_buffer_bytes: 4 << 20,
            io_sqpoll_idle_ms: 0,
            promote_interval_ms: 1000,
            idle_timeout_ms: 60_000,
            frame_timeout_ms: 10_000,
            max_connections_per_peer: 256,
            metrics_bind: "127.0.0.1:30000".into(),
            ufs: Default::default(),
            security: Default::default(),
        }
    }
}

impl WorkerConfig {
    /// The connection timeouts, as durations.
    pub fn timeouts(&self) -> crate::conn::Timeouts {
        crate::conn::Timeouts {
            idle: std::time::Duration::from_millis(self.idle_timeout_ms),
            write: std::time::Duration::from_millis(self.idle_timeout_ms),
            frame: std::time::Duration::from_millis(self.frame_timeout_ms),
        }
    }

    /// The memory tier's capacity after applying the `0 = auto` rule.
    pub fn effective_memory_capacity(&self) -> u64 {
        if self.memory_capacity > 0 {
            return self.memory_capacity;
        }
        let total_kib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find(|l| l.starts_with("MemTotal:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            })
            .unwrap_or(4 << 20);
        total_kib * 1024 / 4
    }
}

/// A worker configuration that cannot work (start-up stops with it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("a disk tier needs an alias (such as \"SSD\")")]
    NoAlias,
    #[error("tier alias {0:?} is used twice (MEM is the memory tier)")]
    AliasTwice(String),
    #[error("tier {0} has no directories")]
    NoDirectories(String),
    #[error(
        "tier {alias} has {dirs} directories but {quotas} quotas; give one quota per directory"
    )]
    QuotaCount {
        alias: String,
        dirs: usize,
        quotas: usize,
    },
    #[error("tier {alias}: directory {dir} has a quota of 0 bytes")]
    ZeroQuota { alias: String, dir: String },
    #[error("io_engine {0:?}: expected \"auto\", \"io_uring\" or \"pread\"")]
    IoEngine(String),
    #[error("idle_timeout_ms and frame_timeout_ms must be at least 1")]
    ZeroTimeout,
    #[error("max_connections_per_peer must be at least 1")]
    ZeroConnections,
    #[error("io_queue_depth {0} must be 1..=4096")]
    QueueDepth(u32),
}

impl WorkerConfig {
    /// Checks the tier layout before anything starts.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut seen = vec!["MEM".to_string()];
        for t in &self.tiers {
            let alias = t.alias.trim();
            if alias.is_empty() {
                return Err(ConfigError::NoAlias);
            }
            if seen.iter().any(|s| s.eq_ignore_ascii_case(alias)) {
                return Err(ConfigError::AliasTwice(alias.to_string()));
            }
            seen.push(alias.to_string());
            if t.dirs.is_empty() {
                return Err(ConfigError::NoDirectories(alias.to_string()));
            }
            if t.dirs.len() != t.quotas.len() {
                return Err(ConfigError::QuotaCount {
                    alias: alias.to_string(),
                    dirs: t.dirs.len(),
                    quotas: t.quotas.len(),
                });
            }
            if let Some(i) = t.quotas.iter().position(|q| *q == 0) {
                return Err(ConfigError::ZeroQuota {
                    alias: alias.to_string(),
                    dir: t.dirs[i].clone(),
                });
            }
        }
        if !matches!(self.io_engine.as_str(), "auto" | "io_uring" | "pread") {
            return Err(ConfigError::IoEngine(self.io_engine.clone()));
        }
        if self.idle_timeout_ms == 0 || self.frame_timeout_ms == 0 {
            return Err(ConfigError::ZeroTimeout);
        }
        if self.max_connections_per_peer == 0 {
            return Err(ConfigError::ZeroConnections);
        }
        if self.io_queue_depth == 0 || self.io_queue_depth > 4096 {
            return Err(ConfigError::QueueDepth(self.io_queue_depth));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tier(alias: &str, dirs: &[&str], quotas: &[u64]) -> TierConfig {
        TierConfig {
            alias: alias.into(),
            dirs: dirs.iter().map(|d| d.to_string()).collect(),
            quotas: quotas.to_vec(),
        }
    }

    #[test]
    fn tier_layouts_are_checked_with_clear_errors() {
        let mut c = WorkerConfig::default();
        assert!(c.validate().is_ok());
        c.tiers = vec![
            tier("SSD", &["/a", "/b"], &[1, 2]),
            tier("HDD", &["/c"], &[3]),
        ];
        assert!(c.validate().is_ok());
        let bad = |tiers: Vec<TierConfig>, want: &str| {
            let c = WorkerConfig {
                tiers,
                ..Default::default()
            };
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
        };
        bad(vec![tier("mem", &["/a"], &[1])], "used twice");
        bad(
            vec![tier("SSD", &["/a"], &[1]), tier("ssd", &["/b"], &[1])],
            "used twice",
        );
        bad(vec![tier(" ", &["/a"], &[1])], "needs an alias");
        bad(vec![tier("SSD", &[], &[])], "no directories");
        bad(
            vec![tier("SSD", &["/a", "/b"], &[1])],
            "one quota per directory",
        );
        bad(vec![tier("SSD", &["/a"], &[0])], "quota of 0");
        let c = WorkerConfig {
            io_engine: "spdk".into(),
            ..Default::default()
        };
        assert!(c.validate().unwrap_err().to_string().contains("io_engine"));
        let c = WorkerConfig {
            io_queue_depth: 0,
            ..Default::default()
        };
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("io_queue_depth")
        );
    }
}
