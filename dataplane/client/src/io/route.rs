//! Which transport reaches a worker's blocks, chosen per worker.

use std::sync::atomic::Ordering;

use eddy_wire::{ReadRequest, ReadType};

use super::block::BlockTransport;
use super::conn::TcpWorker;
use crate::Result;
use crate::shared::Shared;

/// How this client moves one worker's block bytes. A worker on this host
/// whose block is leased is read through the mapping instead (the reader
/// holds those leases); a worker that advertises a libfabric provider is
/// read with one-sided RDMA reads (`crate::rdma`), falling back to TCP for
/// any read that cannot go that way; every other worker over TCP.
pub(crate) enum WorkerTransport<'a> {
    Tcp(TcpWorker<'a>),
    Rdma {
        tcp: TcpWorker<'a>,
        provider: String,
        access: Access,
    },
}

/// How the reader moves through the file: a sequential reader (`read`)
/// has the next range of the block read ahead over RDMA while it works
/// on this one; positioned reads (`read_at`) read only what they ask.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    Sequential,
    Positioned,
}

impl BlockTransport for WorkerTransport<'_> {
    async fn fetch(&self, req: &ReadRequest, dst: &mut [u8]) -> Result<()> {
        match self {
            WorkerTransport::Tcp(t) => t.fetch(req, dst).await,
            WorkerTransport::Rdma {
                tcp,
                provider,
                access,
            } => {
                let rdma = &tcp.shared.rdma;
                let ahead = *access == Access::Sequential;
                let r = rdma
                    .fetch(&tcp.shared.pool, (tcp.addr, provider), req, dst, ahead)
                    .await;
                match r {
                    Ok(()) => Ok(()),
                    Err(e) => {
                        // Never the user's error: the bytes come over TCP.
                        rdma.fell_back(tcp.addr, &e);
                        tcp.fetch(req, dst).await
                    }
                }
            }
        }
    }
}

impl TcpWorker<'_> {
    pub(crate) fn count(&self, n: usize) {
        self.shared
            .rdma
            .bytes
            .tcp
            .fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// The transport for the worker whose data port is `addr` (`host:port`).
/// NO_CACHE reads stay on TCP: a lease caches a miss.
pub(crate) fn transport_for<'a>(
    shared: &'a Shared,
    addr: &'a str,
    req: &ReadRequest,
    access: Access,
) -> WorkerTransport<'a> {
    let tcp = TcpWorker { shared, addr };
    match shared.rdma.provider_of(addr) {
        Some(provider) if req.read_type != ReadType::NoCache => WorkerTransport::Rdma {
            tcp,
            provider,
            access,
        },
        _ => WorkerTransport::Tcp(tcp),
    }
}
