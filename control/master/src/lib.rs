//! Eddy's master: the single source of truth for the namespace, the mount
//! table, the workers and where blocks are cached.
//!
//! Decisions (namespace rules, placement, lost workers) are plain code with
//! no I/O (`namespace`, `placement`, `workers`); `service` and its
//! siblings by responsibility (`sync`, `files`, `blocks`, `checkers`,
//! `admin`, ...) do the I/O (under-storage, metastore) around them; `rpc`
//! is the gRPC glue; `server` starts it all.

mod admin;
pub mod authz;
mod block_info;
mod blocks;
mod checkers;
mod codec;
pub mod config;
mod durable;
pub mod error;
mod files;
mod grace;
pub mod groups;
pub mod identity;
pub mod inode;
pub mod intent;
pub mod journal;
pub mod limits;
pub mod metaop;
pub mod metastore;
pub mod metrics;
pub mod mount;
pub mod namespace;
pub mod net;
pub mod path;
pub mod placement;
mod recover;
mod refingerprint;
pub mod registration;
pub mod replication;
pub mod rpc;
pub mod server;
pub mod service;
mod staging;
mod sync;
pub mod table;
mod ufs_lock;
pub mod workers;

pub use config::MasterConfig;
pub use error::MasterError;
pub use server::{RunningMaster, start};
