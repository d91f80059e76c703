//! Exchanges with a worker over a pooled TCP connection: block reads (the
//! TCP [`BlockTransport`]), the one request/answer `exchange` that loads,
//! stats and a write session's open share, and the error mapping every
//! data connection shares.

use eddy_wire::{ErrorFrame, Kind, ReadRequest, WireError, write_frame};

use super::block::BlockTransport;
use crate::deadline::{timed_out, within};
use crate::pool::PooledConn;
use crate::shared::Shared;
use crate::{ClientError, EddyCode, Result};

/// The worker's own refusal, with its code.
pub(crate) fn worker_err(addr: &str, e: ErrorFrame) -> ClientError {
    ClientError::Worker {
        addr: addr.to_string(),
        code: e.code,
        message: e.message,
    }
}

/// A failed exchange: a time-out is `DEADLINE_EXCEEDED`, a lost connection
/// `UNAVAILABLE`, anything the worker sent that makes no sense `PROTOCOL`.
pub(crate) fn wire_err(addr: &str, e: WireError) -> ClientError {
    if let WireError::Remote(e) = e {
        return worker_err(addr, e);
    }
    // A TLS alert after the handshake: in TLS 1.3 a server refuses a
    // missing or unknown client certificate only then.
    if let WireError::Io(io) = &e
        && let Some(message) =
            eddy_proto::tls::diagnose(&format!("the worker at {addr}"), io, None, false)
    {
        return ClientError::Worker {
            addr: addr.to_string(),
            code: EddyCode::Unavailable,
            message,
        };
    }
    ClientError::Worker {
        addr: addr.to_string(),
        code: match e {
            _ if timed_out(&e) => EddyCode::DeadlineExceeded,
            WireError::Io(_) | WireError::Closed => EddyCode::Unavailable,
            _ => EddyCode::Protocol,
        },
        message: e.to_string(),
    }
}

/// One worker reached over TCP (`host:port`), through the client's pool.
pub(crate) struct TcpWorker<'a> {
    pub shared: &'a Shared,
    pub addr: &'a str,
}

impl BlockTransport for TcpWorker<'_> {
    /// One read request on one worker; a pooled connection that turns out
    /// dead is replaced once.
    async fn fetch(&self, req: &ReadRequest, dst: &mut [u8]) -> Result<()> {
        let (pool, addr) = (&self.shared.pool, self.addr);
        for attempt in 0..2 {
            let mut c = pool.get(addr).await?;
            let r = within(
                self.shared.opts.timeout,
                eddy_wire::read_block(c.stream(), req, dst),
            );
            match r.await {
                Ok(r) => {
                    // Answered (bytes or the worker's refusal): whole frames.
                    c.finished();
                    if r.is_ok() {
                        self.count(dst.len());
                    }
                    return r.map_err(|e| worker_err(addr, e));
                }
                Err(e) => {
                    pool.forget(addr);
                    // A pooled connection that died is replaced once; a worker
                    // that did not answer in time is not asked again.
                    if attempt == 1 || timed_out(&e) {
                        return Err(wire_err(addr, e));
                    }
                }
            }
        }
        unreachable!("the loop returns")
    }
}

impl TcpWorker<'_> {
    /// Sends a `Load` and waits for the block to be cached there.
    pub async fn load(&self, req: &ReadRequest) -> Result<()> {
        let (mut c, _) =
            exchange(self.shared, self.addr, Kind::Load, &req.encode(), Kind::Ok).await?;
        c.finished();
        Ok(())
    }

    /// The worker's named counters.
    pub async fn stats(&self) -> Result<Vec<(String, u64)>> {
        let (mut c, body) =
            exchange(self.shared, self.addr, Kind::Stats, &[], Kind::StatsOk).await?;
        // A body that does not decode closes the connection: whole frames
        // or not, a worker sending nonsense is not asked again on it.
        let stats = eddy_wire::decode_stats(&body).map_err(|e| wire_err(self.addr, e))?;
        c.finished();
        Ok(stats)
    }
}

/// One request (`kind`, `body`) and its answer (`answer`) on a pooled
/// connection to `addr`, within the client's timeout. The worker's `Error`
/// frame is its refusal, with its code; it was read whole, so the stream is
/// at a frame boundary and the connection goes back to the pool. A failed
/// or timed-out exchange closes it. An answer returns the connection still
/// marked busy with its body: the caller calls `finished` once the exchange
/// is over (a write session keeps it until close).
pub(crate) async fn exchange(
    shared: &Shared,
    addr: &str,
    kind: Kind,
    body: &[u8],
    answer: Kind,
) -> Result<(PooledConn, Vec<u8>)> {
    let mut c = shared.pool.get(addr).await?;
    let r = within(shared.opts.timeout, async {
        let s = c.stream();
        write_frame(s, kind, body).await?;
        eddy_wire::expect(s, answer).await
    })
    .await
    .map_err(|e| wire_err(addr, e))?;
    match r {
        Ok(body) => Ok((c, body)),
        Err(refusal) => {
            c.finished();
            Err(worker_err(addr, refusal))
        }
    }
}
