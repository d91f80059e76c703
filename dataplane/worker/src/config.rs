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
    /// How long a shutdown waits for requests in flight, in milliseconds.
    pub shutdown_grace_ms: u64,
    /// Unix socket for co-located (short-circuit) clients; empty: none.
    pub domain_socket: String,
    /// Lifetime of a short-circuit lease, in milliseconds.
    pub lease_ttl_ms: u64,
    /// Leases one co-located client may hold at once.
    pub max_leases_per_client: usize,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            master: format!("127.0.0.1:{}", eddy_proto::DEFAULT_MASTER_PORT),
            bind: format!("127.0.0.1:{DEFAULT_DATA_PORT}"),
            host: String::new(),
            memory_capacity: 0,
            shutdown_grace_ms: 10_000,
            domain_socket: String::new(),
            lease_ttl_ms: 600_000,
            max_leases_per_client: 4096,
        }
    }
}

impl WorkerConfig {
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
