//! The block-transport seam: one narrow trait for "fetch this byte range of
//! this block from that worker", whatever carries the bytes. Over TCP it is
//! a `Read` on a pooled connection (`TcpWorker`, in `conn`); from a
//! worker on this host it is a copy out of the block's shared-memory
//! mapping (a [`Lease`], see `local.rs`, `shm.rs`). Which one serves a
//! worker is chosen per worker (`route`); another transport (RDMA,
//! issue 17) is one more implementation and one more choice there.
//!
//! Static dispatch on purpose: the read path boxes no future and allocates
//! nothing per call for the seam.

use eddy_wire::ReadRequest;

use crate::local::Lease;
use crate::{ClientError, Result};

pub(crate) trait BlockTransport {
    /// Fills `dst`, which is `req.length` bytes long, with the bytes of
    /// block `req.block_id` from `req.offset` on.
    async fn fetch(&self, req: &ReadRequest, dst: &mut [u8]) -> Result<()>;
}

impl BlockTransport for Lease {
    /// Shared memory: the one copy the caller asked for.
    async fn fetch(&self, req: &ReadRequest, dst: &mut [u8]) -> Result<()> {
        let from = req.offset as usize;
        let src = self
            .map
            .as_slice()
            .get(from..from + dst.len())
            .ok_or_else(|| {
                ClientError::InvalidArgument(format!(
                    "bytes {from}+{} are past the end of leased block {}",
                    dst.len(),
                    req.block_id
                ))
            })?;
        dst.copy_from_slice(src);
        Ok(())
    }
}
