//! Reading and writing file bytes through workers.
//!
//! - [`reader`]: [`FileReader`], block by block, failing over between
//!   workers; mapped blocks from a worker on this host.
//! - [`writer`]: [`FileWriter`], one write session, over [`shm_write`]
//!   (shared memory) or [`tcp_write`] (TCP).
//! - [`owned`]: `FileReader::read_at_owned`, into a caller's
//!   [`ReadBuf`](crate::ReadBuf) that RDMA reads land in directly.
//! - [`block`]: the block-transport seam (`BlockTransport`), chosen per
//!   worker in [`route`]; [`conn`]: the TCP exchanges with a worker over a
//!   pooled connection.

mod block;
mod conn;
mod owned;
mod reader;
mod route;
mod shm_write;
mod tcp_write;
mod writer;

#[cfg(test)]
mod tests;

pub use reader::{FileReader, MappedRange};
pub use writer::FileWriter;

use crate::Result;
use crate::shared::Shared;

/// The named counters of the worker at `addr` (`host:port`).
pub(crate) async fn worker_stats(shared: &Shared, addr: &str) -> Result<Vec<(String, u64)>> {
    conn::TcpWorker { shared, addr }.stats().await
}
