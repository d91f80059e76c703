//! Short-circuit: the connection to a worker on this host, and leases on
//! the blocks it maps for us (see docs/SHORT-CIRCUIT.md).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use eddy_wire::{
    Kind, ReadRequest, WireError, decode_lease_ok, encode_lease, encode_release, write_frame,
};
use tokio::io::AsyncReadExt;
use tokio::net::UnixStream;

use crate::shm::{Mapping, recv_header_with_fds};
use crate::{ClientError, EddyCode, Result};

/// A worker on this host, reached over its Unix socket. One connection,
/// kept for the life of the client and re-dialled after it breaks.
pub(crate) struct LocalWorker {
    pub path: String,
    conn: tokio::sync::Mutex<Option<(UnixStream, u64)>>,
    generation: AtomicU64,
    /// Leases dropped by readers, released with the next request (or by
    /// [`LocalWorker::flush`]).
    released: parking_lot::Mutex<Vec<(u64, u64)>>,
}

/// One leased block, mapped read-only. While it lives the worker keeps the
/// block (no eviction, no free); dropping it queues the release.
pub(crate) struct Lease {
    worker: Arc<LocalWorker>,
    generation: u64,
    id: u64,
    pub map: Mapping,
    acquired: Instant,
    ttl: Duration,
}

impl Lease {
    /// Past the worker's lease lifetime (with a margin): ask again.
    pub fn expired(&self) -> bool {
        self.acquired.elapsed() + Duration::from_millis(100) >= self.ttl
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.worker.released.lock().push((self.generation, self.id));
    }
}

fn unavailable(path: &str, e: impl std::fmt::Display) -> ClientError {
    ClientError::Worker {
        addr: path.to_string(),
        code: EddyCode::Unavailable,
        message: e.to_string(),
    }
}

impl LocalWorker {
    pub fn new(path: &str) -> Arc<Self> {
        Arc::new(Self {
            path: path.to_string(),
            conn: tokio::sync::Mutex::new(None),
            generation: AtomicU64::new(0),
            released: parking_lot::Mutex::new(Vec::new()),
        })
    }

    /// Leases the blocks named by `items` (whole-block read requests); one
    /// answer per item, in order.
    pub async fn lease(self: &Arc<Self>, items: &[ReadRequest]) -> Result<Vec<Result<Arc<Lease>>>> {
        let mut g = self.conn.lock().await;
        // A kept connection may have died with a worker restart: one fresh
        // dial is worth it before giving up on shared memory.
        for attempt in 0..2 {
            let fresh = g.is_none();
            if fresh {
                let s = UnixStream::connect(&self.path)
                    .await
                    .map_err(|e| unavailable(&self.path, format!("cannot connect: {e}")))?;
                let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
                *g = Some((s, generation));
            }
            let (sock, generation) = g.as_mut().expect("connected above");
            let generation = *generation;
            match self.exchange(sock, generation, items).await {
                Ok(r) => return Ok(r),
                Err(e) => {
                    // A broken connection: the worker dropped every lease it held.
                    *g = None;
                    if fresh || attempt == 1 {
                        return Err(unavailable(&self.path, e));
                    }
                }
            }
        }
        unreachable!("the loop returns")
    }

    async fn exchange(
        self: &Arc<Self>,
        sock: &mut UnixStream,
        generation: u64,
        items: &[ReadRequest],
    ) -> Result<Vec<Result<Arc<Lease>>>, WireError> {
        self.send_releases(sock, generation).await?;
        write_frame(sock, Kind::Lease, &encode_lease(items)).await?;
        let (h, fds) = recv_header_with_fds(sock, items.len()).await?;
        let h = eddy_wire::Header::decode(&h)?;
        let mut body = vec![0u8; h.body_len as usize];
        sock.read_exact(&mut body).await?;
        if h.kind == Kind::Error {
            let e = eddy_wire::ErrorFrame::decode(&body)?;
            return Ok(items
                .iter()
                .map(|_| {
                    Err(ClientError::Worker {
                        addr: self.path.clone(),
                        code: e.code,
                        message: e.message.clone(),
                    })
                })
                .collect());
        }
        if h.kind != Kind::LeaseOk {
            return Err(WireError::Unexpected {
                expected: "LEASE_OK",
                got: h.kind,
            });
        }
        let (ttl_ms, grants) = decode_lease_ok(&body)?;
        let mut fds = fds.into_iter();
        let mut out = Vec::with_capacity(grants.len());
        for g in grants {
            if g.code != 0 {
                out.push(Err(ClientError::Worker {
                    addr: self.path.clone(),
                    code: EddyCode::try_from(i32::from(g.code)).unwrap_or(EddyCode::Internal),
                    message: g.message,
                }));
                continue;
            }
            let fd = fds.next().ok_or_else(|| WireError::Malformed {
                kind: Kind::LeaseOk,
                reason: "fewer descriptors than granted leases".into(),
            })?;
            let lease = Mapping::map_sealed(fd, g.length).map(|map| {
                Arc::new(Lease {
                    worker: self.clone(),
                    generation,
                    id: g.lease_id,
                    map,
                    acquired: Instant::now(),
                    ttl: Duration::from_millis(ttl_ms),
                })
            });
            out.push(lease.map_err(|e| unavailable(&self.path, e)));
        }
        Ok(out)
    }

    /// Sends queued releases that belong to this connection; those from an
    /// older connection died with it.
    async fn send_releases(&self, sock: &mut UnixStream, generation: u64) -> Result<(), WireError> {
        let ids: Vec<u64> = {
            let mut q = self.released.lock();
            let ids = q
                .iter()
                .filter(|(g, _)| *g == generation)
                .map(|(_, id)| *id)
                .collect();
            q.clear();
            ids
        };
        for chunk in ids.chunks(4096) {
            write_frame(sock, Kind::Release, &encode_release(chunk)).await?;
            eddy_wire::expect(sock, Kind::Ok)
                .await?
                .map_err(|e| WireError::Malformed {
                    kind: Kind::Error,
                    reason: e.message,
                })?;
        }
        Ok(())
    }

    /// Releases every dropped lease now (a closed file gives its blocks back
    /// without waiting for the next request).
    pub async fn flush(&self) {
        let mut g = self.conn.lock().await;
        if let Some((sock, generation)) = g.as_mut() {
            let generation = *generation;
            if self.send_releases(sock, generation).await.is_err() {
                *g = None;
            }
        }
    }
}
