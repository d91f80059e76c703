//! Which transport reaches a worker's blocks, chosen per worker.

use eddy_wire::ReadRequest;

use super::block::BlockTransport;
use super::conn::TcpWorker;
use crate::Result;
use crate::shared::Shared;

/// How this client moves one worker's block bytes. A worker on this host
/// whose block is leased is read through the mapping instead (the reader
/// holds those leases); every other worker is reached over TCP today.
pub(crate) enum WorkerTransport<'a> {
    Tcp(TcpWorker<'a>),
}

impl BlockTransport for WorkerTransport<'_> {
    async fn fetch(&self, req: &ReadRequest, dst: &mut [u8]) -> Result<()> {
        match self {
            WorkerTransport::Tcp(t) => t.fetch(req, dst).await,
        }
    }
}

/// The transport for the worker whose data port is `addr` (`host:port`).
pub(crate) fn transport_for<'a>(shared: &'a Shared, addr: &'a str) -> WorkerTransport<'a> {
    WorkerTransport::Tcp(TcpWorker { shared, addr })
}
