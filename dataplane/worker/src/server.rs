//! The data server: one task per TCP connection, requests served in order.
//!
//! The first frame is the handshake (`Hello`, `crate::access`); every
//! `Read`, `Load` and `WriteOpen` after it passes its block token first.
//! A request that fails gets an `Error` frame and the connection stays
//! usable. A protocol violation (bad magic, unknown or oversized frame, a
//! body that does not parse) is logged and closes that connection only.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use eddy_client::DataStream;
use eddy_wire::{
    ErrorFrame, Kind, ReadRequest, ReadType, RemoteLease, WireError, WriteOpen, read_body,
    read_header, write_frame,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use eddy_proto::auth::BlockOps;

use crate::access::{ConnAccess, Peer, handshake};
use crate::cache::{cached, checked, read_through};
use crate::conn::{PeerSlot, Timed, accept_data};
use crate::disk;
use crate::error::{Result, WorkerError};
use crate::remote::{self, RemoteLeases};
use crate::session::WriteSession;
use crate::shared::{Shared, stats};
use crate::store::{Block, Stats};

/// A data connection (plaintext or TLS): every read and write under the
/// worker's timeouts.
pub type Conn = Timed<DataStream>;

/// Serves one connection until the peer closes it, it breaks the protocol,
/// or the worker shuts down (between requests).
pub async fn serve(
    sh: Arc<Shared>,
    sock: TcpStream,
    peer: SocketAddr,
    _slot: PeerSlot<IpAddr>,
    mut stop: watch::Receiver<bool>,
) {
    // The TLS handshake, like a frame, has `frame` to complete.
    let peer_ip = peer.ip().to_string();
    let Some(sock) = accept_data(sock, sh.tls.accept.as_ref(), sh.timeouts.frame, &peer_ip).await
    else {
        return;
    };
    let mut sock = Timed::new(sock, sh.timeouts);
    // The handshake comes first (a TLS layer wraps `sock` before it).
    sock.expect_frame();
    let hello = tokio::select! {
        a = handshake(&mut sock, Peer::Tcp, &sh.store.stats) => a,
        _ = stop.changed() => return,
    };
    let Some(mut access) = hello else {
        return;
    };
    // Remote (RDMA) leases this connection holds: they end with it.
    let mut leases = RemoteLeases::new(&sh);
    loop {
        // A connection holding leases is not idle; the lease timer closes
        // it once it holds none and has been quiet for the idle timeout.
        let holding = leases.holding();
        sock.set_idle(if holding {
            std::time::Duration::MAX
        } else {
            sh.timeouts.idle
        });
        sock.expect_frame();
        let h = tokio::select! {
            h = read_header(&mut sock) => h,
            _ = stop.changed() => return,
            _ = leases.idle_closed() => {
                tracing::debug!("closing a data connection from {peer}: idle, no leases held");
                return;
            }
        };
        leases.touch();
        let r = match h {
            Ok(h) => dispatch(&sh, &mut sock, h, &mut access, &mut leases).await,
            Err(e) => Err(e),
        };
        match r {
            Ok(()) => {}
            Err(WireError::Closed) => return,
            Err(WireError::Io(e)) => {
                tracing::debug!("data connection from {peer} ended: {e}");
                return;
            }
            Err(e) => {
                tracing::warn!("closing data connection from {peer}: {e}");
                // Best effort: tell the peer why before closing.
                let f = ErrorFrame::new(eddy_proto::EddyCode::Protocol, e.to_string());
                let _ = write_frame(&mut sock, Kind::Error, &f.encode()).await;
                return;
            }
        }
    }
}

async fn dispatch(
    sh: &Shared,
    sock: &mut Conn,
    h: eddy_wire::Header,
    access: &mut ConnAccess,
    leases: &mut RemoteLeases,
) -> Result<(), WireError> {
    let (keys, counters) = (&sh.link.keys, &sh.store.stats);
    match h.kind {
        Kind::Read | Kind::Load => {
            let body = read_body(sock, h).await?;
            let req = ReadRequest::decode(h.kind, &body)?;
            if let Err(e) = req.check() {
                return send_error(sock, &e.into()).await;
            }
            // Nothing is looked up, filled or read before the token passes.
            let allowed =
                access.check_block(keys, counters, req.block_id, &req.token, BlockOps::READ);
            if let Err(e) = allowed {
                return send_error(sock, &e).await;
            }
            read(sh, sock, &req, h.kind == Kind::Load).await
        }
        Kind::WriteOpen => {
            let body = read_body(sock, h).await?;
            let open = WriteOpen::decode(&body)?;
            if let Err(e) = open.check() {
                return send_error(sock, &e.into()).await;
            }
            let allowed =
                access.check_file(keys, counters, open.file_id, &open.token, BlockOps::WRITE);
            if let Err(e) = allowed {
                return send_error(sock, &e).await;
            }
            write(sh, sock, open).await
        }
        Kind::Stats => {
            let _ = read_body(sock, h).await?;
            let body = eddy_wire::encode_stats(&stats(sh));
            write_frame(sock, Kind::StatsOk, &body).await
        }
        Kind::RemoteLease => {
            let body = read_body(sock, h).await?;
            let req = RemoteLease::decode(&body)?;
            match remote::lease(sh, &req, leases, access).await {
                Ok(ok) => write_frame(sock, Kind::RemoteLeaseOk, &ok.encode()).await,
                Err(e) => send_error(sock, &e).await,
            }
        }
        Kind::Release => {
            // Not answered: clients send it ahead of their next request.
            let body = read_body(sock, h).await?;
            leases.release(&eddy_wire::decode_release(&body)?);
            Ok(())
        }
        other => Err(WireError::Unexpected {
            expected: "READ, LOAD, WRITE_OPEN, STATS, REMOTE_LEASE or RELEASE",
            got: other,
        }),
    }
}

async fn send_error(sock: &mut Conn, e: &WorkerError) -> Result<(), WireError> {
    write_frame(sock, Kind::Error, &e.frame().encode()).await
}

/// Bytes to send for a read: a cached block, or bytes read through.
enum Found {
    Cached(Block),
    Through(bytes::Bytes),
}

async fn read(
    sh: &Shared,
    sock: &mut Conn,
    req: &ReadRequest,
    load_only: bool,
) -> Result<(), WireError> {
    let found = match find(sh, req, load_only).await {
        Ok(f) => f,
        Err(e) => return send_error(sock, &e).await,
    };
    if load_only {
        // The block may have been cached before the master last heard of it
        // (a load right after a free): record it again, so the master lists
        // it and no longer asks for its removal.
        if let Err(e) = sh.link.commit(req.block_id, req.block_length).await {
            return send_error(sock, &e.into()).await;
        }
        return write_frame(sock, Kind::Ok, &eddy_wire::u64_body(req.block_length)).await;
    }
    let (off, len) = (req.offset as usize, req.length as usize);
    match &found {
        // Straight from the shared-memory mapping into the socket.
        Found::Cached(Block::Mem(seg)) => {
            write_frame(sock, Kind::ReadOk, &eddy_wire::u64_body(req.length)).await?;
            sock.write_all(&seg.as_slice()[off..off + len]).await?
        }
        Found::Cached(Block::Disk(d)) => {
            // Opened before the answer starts, so a vanished file is still
            // an error frame rather than a cut connection.
            let mut r = match disk::RangeReader::new(sh.store.engine(), d, req.offset, req.length) {
                Ok(r) => r,
                Err(e) => {
                    sh.store.drop_broken(d, &e);
                    let e = WorkerError::NotFound(format!(
                        "block {} was lost from its disk tier ({e}); read it again",
                        req.block_id
                    ));
                    return send_error(sock, &e).await;
                }
            };
            write_frame(sock, Kind::ReadOk, &eddy_wire::u64_body(req.length)).await?;
            while let Some(piece) = r.next().await {
                match piece {
                    Ok((buf, range)) => {
                        sock.write_all(&buf.as_slice()[range]).await?;
                        r.recycle(buf);
                    }
                    Err(e) => {
                        // Bytes were promised: the connection has to go.
                        sh.store.drop_broken(d, &e);
                        return Err(WireError::Io(e));
                    }
                }
            }
            Stats::add(&sh.store.stats.disk_reads, 1);
        }
        Found::Through(b) => {
            write_frame(sock, Kind::ReadOk, &eddy_wire::u64_body(req.length)).await?;
            sock.write_all(b).await?
        }
    }
    Stats::add(&sh.store.stats.bytes_served, req.length);
    Ok(())
}

async fn find(sh: &Shared, req: &ReadRequest, load_only: bool) -> Result<Found> {
    if req.read_type == ReadType::NoCache && !load_only {
        if let Some(b) = sh.store.get(req.block_id) {
            Stats::add(&sh.store.stats.cache_hits, 1);
            return checked(req, b).map(Found::Cached);
        }
        return read_through(sh, req).await.map(Found::Through);
    }
    match cached(sh, req).await {
        Ok(b) => Ok(Found::Cached(b)),
        // No room to cache (the rest is pinned or being read): serve the
        // bytes from the under-storage anyway, as Alluxio does.
        // So also when memory had no room and a disk tier failed.
        Err(WorkerError::NoSpace(_) | WorkerError::DiskFailed { .. })
            if !load_only && req.source.is_some() =>
        {
            read_through(sh, req).await.map(Found::Through)
        }
        Err(e) => Err(e),
    }
}

/// A file write session: `WriteOpen` (answered `Ok`), `Data`*, then
/// `WriteClose` (answered `WriteOk`) or `WriteCancel` (answered `Ok`).
/// Nothing is cached or visible in the under-storage before `WriteClose`
/// succeeds; a broken connection discards everything. The session
/// (`crate::session`) decides; this moves the bytes.
async fn write(sh: &Shared, sock: &mut Conn, open: WriteOpen) -> Result<(), WireError> {
    let mut session = match WriteSession::open(sh, &open).await {
        Ok(s) => s,
        Err(e) => return send_error(sock, &e).await,
    };
    write_frame(sock, Kind::Ok, &eddy_wire::u64_body(0)).await?;
    let mut scratch: Vec<u8> = Vec::new();
    loop {
        // Between frames a session may wait up to the idle timeout; past it
        // the connection goes and every reservation of the session with it.
        sock.expect_frame();
        let h = read_header(sock).await?;
        match h.kind {
            Kind::Data => data(sock, &mut session, h.body_len as u64, &mut scratch).await?,
            Kind::WriteCancel => {
                let _ = read_body(sock, h).await?;
                session.cancel().await;
                return write_frame(sock, Kind::Ok, &eddy_wire::u64_body(0)).await;
            }
            Kind::WriteClose => {
                let body = read_body(sock, h).await?;
                let length = eddy_wire::decode_u64(Kind::WriteClose, &body)?;
                return match session.close_streamed(sh, length).await {
                    Ok(ok) => write_frame(sock, Kind::WriteOk, &ok.encode()).await,
                    Err(e) => send_error(sock, &e).await,
                };
            }
            other => {
                return Err(WireError::Unexpected {
                    expected: "DATA, WRITE_CLOSE or WRITE_CANCEL",
                    got: other,
                });
            }
        }
    }
}

/// Bytes read from the socket at a time: small enough to stay in cache
/// between the receive and the copy into the segment.
const STREAM_PIECE: usize = 1 << 20;

/// One `Data` frame's `len` bytes: received straight into the block's
/// segment where it is mapped (huge pages), else read into `scratch` a
/// piece at a time and handed to the session (into the block's segment
/// with `pwrite`, to the under-storage, or both). After a failure the rest
/// of the stream is read and dropped, and the error answers `WriteClose`.
async fn data(
    sock: &mut Conn,
    session: &mut WriteSession,
    len: u64,
    scratch: &mut Vec<u8>,
) -> Result<(), WireError> {
    sock.expect_bulk();
    let mut left = len;
    while left > 0 {
        if session.progress().failed() {
            return discard(sock, left, scratch).await;
        }
        if session.progress().caches()
            && let Some(buf) = session.mapped_buf(left).await
        {
            // Straight into the block's mapping (huge pages).
            let n = buf.len();
            sock.read_exact(buf).await?;
            session.received(n).await;
            left -= n as u64;
            continue;
        }
        let n = left.min(STREAM_PIECE as u64) as usize;
        scratch.resize(n.max(scratch.len()), 0);
        sock.read_exact(&mut scratch[..n]).await?;
        if session.progress().caches() {
            session.stream(&scratch[..n]).await;
        } else {
            session.through(&scratch[..n]).await;
        }
        left -= n as u64;
    }
    Ok(())
}

async fn discard(sock: &mut Conn, mut n: u64, scratch: &mut Vec<u8>) -> Result<(), WireError> {
    scratch.resize(1 << 20, 0);
    while n > 0 {
        let k = n.min(scratch.len() as u64) as usize;
        sock.read_exact(&mut scratch[..k]).await?;
        n -= k as u64;
    }
    Ok(())
}
