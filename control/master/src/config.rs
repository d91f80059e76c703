//! Master configuration (the `[master]` table of the config file). Every key
//! is documented in cli/etc/eddy.toml, printed by `eddy --print-sample-config`.

use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MasterConfig {
    /// Address the gRPC server binds; port 0 picks a free port.
    pub bind: String,
    /// Directory holding metastore.redb.
    pub metastore_dir: PathBuf,
    /// Under-storage mounted at `/` on first start.
    pub root_ufs: String,
    /// Default sync interval of the root mount in ms (-1 never, 0 always).
    pub root_sync_interval_ms: i64,
    /// Block size of files created without one.
    pub default_block_size: u64,
    /// How often workers heartbeat.
    pub worker_heartbeat_interval_ms: u64,
    /// A worker silent this long is declared lost.
    pub worker_lost_after_ms: u64,
    /// After a restart (a metastore that already held a namespace), how
    /// long workers have to register again (ms). Meanwhile placement waits
    /// for a worker instead of failing, and a block with no known copy is
    /// not yet lost (reads get a retryable UNAVAILABLE). 0: no grace.
    pub worker_registration_grace_ms: u64,
    /// How often expired TTLs are acted on.
    pub ttl_check_interval_ms: u64,
    /// How often replication bounds are checked and enforced, and files
    /// waiting to be persisted are handed to workers.
    pub replication_check_interval_ms: u64,
    /// A new gRPC connection must send its first bytes within this (ms).
    pub handshake_timeout_ms: u64,
    /// A gRPC connection from which nothing arrives for this long is closed
    /// (ms). The master pings every connection every `keepalive_interval_ms`
    /// and live clients answer, so only dead or silent peers reach it.
    pub idle_timeout_ms: u64,
    /// HTTP/2 keepalive: ping interval, and how long an answer may take
    /// before the connection is closed (ms).
    pub keepalive_interval_ms: u64,
    pub keepalive_timeout_ms: u64,
    /// Open gRPC connections one peer IP may hold; more are closed at once.
    pub max_connections_per_peer: usize,
    /// Concurrent RPCs (HTTP/2 streams) one connection may have in flight.
    pub max_concurrent_streams: u32,
    /// When the metastore reaches the disk: `always` (every change is
    /// synced before it is answered) or `batch` (answered once committed,
    /// synced at most `sync_batch_ms` later; see [`MetastoreSync`]).
    pub sync: MetastoreSync,
    /// With `sync = "batch"`: the longest a committed change waits for its
    /// sync (ms), and so the most a crash of the master or its host loses.
    pub sync_batch_ms: u64,
    /// Where `eddy master` serves Prometheus metrics (`GET /metrics`);
    /// empty: nowhere. Port 0 picks a free port.
    pub metrics_bind: String,
    /// Object-store defaults: the config file's top-level `[ufs.*]` tables,
    /// shared with the worker in the same file (not a `[master]` key).
    #[serde(skip)]
    pub ufs: eddy_ufs::UfsDefaults,
    /// The config file's `[security]` table (not a key of this table).
    #[serde(skip)]
    pub security: eddy_proto::auth::SecurityConfig,
}

impl Default for MasterConfig {
    fn default() -> Self {
        Self {
            bind: format!("127.0.0.1:{}", eddy_proto::DEFAULT_MASTER_PORT),
            metastore_dir: PathBuf::from("eddy-data/metastore"),
            root_ufs: "eddy-data/ufs".into(),
            root_sync_interval_ms: -1,
            default_block_size: 64 << 20,
            worker_heartbeat_interval_ms: 1_000,
            worker_lost_after_ms: 10_000,
            // A few heartbeat intervals: a worker that was alive re-registers
            // on its first heartbeat after the master answers again.
            worker_registration_grace_ms: 3_000,
            ttl_check_interval_ms: 60_000,
            replication_check_interval_ms: 5_000,
            handshake_timeout_ms: 10_000,
            idle_timeout_ms: 120_000,
            keepalive_interval_ms: 30_000,
            keepalive_timeout_ms: 20_000,
            max_connections_per_peer: 512,
            max_concurrent_streams: 1024,
            sync: MetastoreSync::Always,
            sync_batch_ms: 100,
            metrics_bind: "127.0.0.1:19999".into(),
            ufs: Default::default(),
            security: Default::default(),
        }
    }
}

/// The metastore's durability (`[master] sync`).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum MetastoreSync {
    /// Every change is on disk (fsync) before the request that made it is
    /// answered; concurrent requests share one sync (group commit).
    #[default]
    Always,
    /// A change is answered once committed in the master's memory and is
    /// synced within `sync_batch_ms`: a crash of the master process or of
    /// its host loses what was answered in that window (files created,
    /// deleted or renamed come back as they were before it). A clean stop
    /// syncs everything first.
    Batch,
}
