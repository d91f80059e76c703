//! Read buffers the caller owns ([`ReadBuf`]) and
//! [`FileReader::read_at_owned`](crate::FileReader::read_at_owned): a read
//! that goes by RDMA lands in the caller's memory itself, with no copy out
//! of a pooled buffer, because that memory is registered with the client's
//! fabric (on the buffer's first RDMA read). It has the owned-buffer shape:
//! the buffer goes into the read and comes back with the result, so no one
//! can look at it while the provider may write into it.

use std::ops::Range;
use std::sync::Arc;

use eddy_rdma::RegisteredBuf;
use eddy_wire::ReadRequest;

use crate::pool::Pool;
use crate::rdma::{ClientFabric, NotRdma, Rdma, not_rdma};

/// Memory reads land in, owned by the caller between reads. Plain memory
/// until a read goes by RDMA; from then on registered with the client's
/// fabric (the bytes kept), so later RDMA reads need no copy.
pub struct ReadBuf {
    mem: Mem,
}

enum Mem {
    Plain(Vec<u8>),
    Registered {
        buf: RegisteredBuf,
        fabric: Arc<ClientFabric>,
    },
}

impl ReadBuf {
    /// A zeroed buffer of `capacity` bytes.
    pub fn new(capacity: usize) -> Self {
        Self {
            mem: Mem::Plain(vec![0; capacity]),
        }
    }

    /// As [`ReadBuf::new`], or `None` when the memory cannot be had (for
    /// callers, like the C ABI, that must not abort on a huge request).
    pub fn try_new(capacity: usize) -> Option<Self> {
        let mut v = Vec::new();
        v.try_reserve_exact(capacity).ok()?;
        v.resize(capacity, 0);
        Some(Self { mem: Mem::Plain(v) })
    }

    pub fn capacity(&self) -> usize {
        self.as_slice().len()
    }

    /// All of the buffer (a read fills it from the start).
    pub fn as_slice(&self) -> &[u8] {
        match &self.mem {
            Mem::Plain(v) => v,
            Mem::Registered { buf, .. } => buf.whole(),
        }
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        match &mut self.mem {
            Mem::Plain(v) => v,
            Mem::Registered { buf, .. } => buf.whole_mut(),
        }
    }

    /// Registered with a fabric of this client: RDMA reads land in it.
    pub fn is_registered(&self) -> bool {
        matches!(self.mem, Mem::Registered { .. })
    }

    /// The memory as a buffer of `fabric`, registered there now if it is
    /// not (its bytes copied over once), windowed to `range`.
    fn take_for(
        &mut self,
        fabric: &Arc<ClientFabric>,
        range: Range<usize>,
    ) -> Option<RegisteredBuf> {
        let mut buf = match std::mem::replace(&mut self.mem, Mem::Plain(Vec::new())) {
            Mem::Registered { buf, fabric: f } if Arc::ptr_eq(&f, fabric) => buf,
            old => {
                let bytes = match &old {
                    Mem::Plain(v) => v.as_slice(),
                    Mem::Registered { buf, .. } => buf.whole(),
                };
                let mut buf = match fabric.fabric.alloc_buf(bytes.len()) {
                    Ok(b) => b,
                    Err(_) => {
                        self.mem = old;
                        return None;
                    }
                };
                buf.whole_mut().copy_from_slice(bytes);
                buf
            }
        };
        buf.set_window(range.start, range.len());
        Some(buf)
    }
}

/// How a one-sided read into a [`ReadBuf`] ended.
pub(crate) enum OwnedRead {
    Done,
    /// Not by RDMA; the buffer is as it was.
    NotRdma(NotRdma),
    /// The read timed out and the provider may still write into the
    /// buffer's memory, which stays with the fabric: the buffer is a new,
    /// zeroed one, and whatever it held is gone.
    Lost(NotRdma),
}

impl Rdma {
    /// Reads `req`'s range of its block from `addr` into `range` of `buf`,
    /// one-sided, straight into the buffer's memory.
    pub(crate) async fn fetch_owned(
        &self,
        pool: &Pool,
        (addr, provider): (&str, &str),
        req: &ReadRequest,
        buf: &mut ReadBuf,
        range: Range<usize>,
    ) -> OwnedRead {
        let (len, cap) = (range.len(), buf.capacity());
        let (w, leased, (fabric, peer)) = match self.prepare(pool, addr, provider, req, len).await {
            Ok(p) => p,
            Err(e) => return OwnedRead::NotRdma(e),
        };
        let Some(rb) = buf.take_for(&fabric, range) else {
            return OwnedRead::NotRdma(not_rdma("the buffer could not be registered"));
        };
        let deadline = tokio::time::Instant::now() + fabric.fabric.read_timeout();
        let read = fabric.fabric.read_op(rb, peer, &leased.key, req.offset);
        let (back, r) = crate::rdma::wait_read(read, deadline, &fabric).await;
        let lost = back.is_none();
        buf.mem = match back {
            Some(b) => Mem::Registered { buf: b, fabric },
            None => Mem::Plain(vec![0; cap]),
        };
        match self.finish(&w, req, len, r) {
            Ok(()) => OwnedRead::Done,
            Err(e) if lost => OwnedRead::Lost(e),
            Err(e) => OwnedRead::NotRdma(e),
        }
    }
}
