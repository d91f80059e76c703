//! Short-circuit: the connection to a worker on this host, and leases on
//! the blocks it maps for us (see docs/SHORT-CIRCUIT.md).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use eddy_wire::{Kind, ReadRequest, WireError, decode_lease_ok, encode_lease, encode_release};
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;

use crate::shm::{Mapping, recv_frame_with_fds};
use crate::{ClientError, EddyCode, Result};

/// A worker on this host, reached over its Unix socket. One connection,
/// kept for the life of the client and re-dialled after it breaks.
pub(crate) struct LocalWorker {
    pub path: String,
    /// The user the handshake names (the worker checks it against the uid
    /// the kernel gives it for this process).
    user: String,
    /// Each exchange with the worker ends within this.
    timeout: Duration,
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
    pub fn new(path: &str, user: &str, timeout: Duration) -> Arc<Self> {
        Arc::new(Self {
            path: path.to_string(),
            user: user.to_string(),
            timeout,
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
                let s = tokio::time::timeout(self.timeout, UnixStream::connect(&self.path))
                    .await
                    .map_err(|_| {
                        unavailable(&self.path, format!("no answer within {:?}", self.timeout))
                    })?
                    .map_err(|e| unavailable(&self.path, format!("cannot connect: {e}")))?;
                let mut s = s;
                let hello =
                    crate::deadline::within(self.timeout, eddy_wire::hello(&mut s, &self.user));
                match hello.await {
                    Ok(Ok(())) => {}
                    Ok(Err(refused)) => {
                        return Err(ClientError::Worker {
                            addr: self.path.clone(),
                            code: refused.code,
                            message: refused.message,
                        });
                    }
                    Err(e) => return Err(unavailable(&self.path, format!("handshake: {e}"))),
                }
                let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
                *g = Some((s, generation));
            }
            let (sock, generation) = g.as_mut().expect("connected above");
            let generation = *generation;
            let r = crate::deadline::within(self.timeout, self.exchange(sock, generation, items));
            match r.await {
                Ok(r) => return Ok(r),
                Err(e) => {
                    // A broken connection: the worker dropped every lease it held.
                    *g = None;
                    if crate::deadline::timed_out(&e) {
                        return Err(ClientError::Worker {
                            addr: self.path.clone(),
                            code: EddyCode::DeadlineExceeded,
                            message: e.to_string(),
                        });
                    }
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
        // Pending releases and the request leave in one write.
        let mut out = self.release_frames(generation);
        let body = encode_lease(items);
        out.extend_from_slice(
            &eddy_wire::Header {
                kind: Kind::Lease,
                body_len: body.len() as u32,
            }
            .encode(),
        );
        out.extend_from_slice(&body);
        sock.write_all(&out).await?;
        let (h, body, fds) = recv_frame_with_fds(sock, items.len()).await?;
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
            // A grant names its tier when the block lives in a disk-tier
            // file (empty: a sealed memory segment).
            let map = if g.message.is_empty() {
                Mapping::map_sealed(fd, g.length)
            } else {
                Mapping::map_block_file(fd, g.length)
            };
            let lease = map.map(|map| {
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
        let out = self.release_frames(generation);
        if !out.is_empty() {
            sock.write_all(&out).await?;
        }
        Ok(())
    }

    /// `Release` frames for the queued leases of this connection (those of
    /// an older connection died with it). Releases are not answered.
    fn release_frames(&self, generation: u64) -> Vec<u8> {
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
        let mut out = Vec::new();
        for chunk in ids.chunks(4096) {
            let body = encode_release(chunk);
            out.extend_from_slice(
                &eddy_wire::Header {
                    kind: Kind::Release,
                    body_len: body.len() as u32,
                }
                .encode(),
            );
            out.extend_from_slice(&body);
        }
        out
    }

    /// Sends queued releases right away if that needs no waiting: the
    /// connection is free and the socket takes the bytes at once. Returns
    /// false when they are still queued (call [`LocalWorker::flush`]).
    pub fn try_flush(&self) -> bool {
        let Ok(mut g) = self.conn.try_lock() else {
            return false;
        };
        let Some((sock, generation)) = g.as_mut() else {
            self.released.lock().clear(); // no connection: nothing is held
            return true;
        };
        let out = self.release_frames(*generation);
        if out.is_empty() {
            return true;
        }
        match sock.try_write(&out) {
            Ok(n) if n == out.len() => true,
            Ok(_) | Err(_) => {
                // A partial frame cannot be taken back: this connection's
                // stream is no longer whole. Drop it; the worker drops its
                // leases with it.
                *g = None;
                true
            }
        }
    }

    /// Releases every dropped lease now (a closed file gives its blocks back
    /// without waiting for the next request).
    pub async fn flush(&self) {
        let mut g = self.conn.lock().await;
        if let Some((sock, generation)) = g.as_mut() {
            let generation = *generation;
            let sent = crate::deadline::within(self.timeout, self.send_releases(sock, generation));
            if sent.await.is_err() {
                *g = None;
            }
        }
    }
}
