//! The data server: one task per TCP connection, requests served in order.
//!
//! A request that fails gets an `Error` frame and the connection stays
//! usable. A protocol violation (bad magic, unknown or oversized frame, a
//! body that does not parse) is logged and closes that connection only.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use eddy_wire::{
    ErrorFrame, Kind, ReadRequest, ReadType, WireError, WriteOk, WriteOpen, WriteType, read_body,
    read_header, write_frame,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::cache::{cached, checked, read_through, ufs_key};
use crate::conn::{PeerSlot, Timed};
use crate::disk;
use crate::error::{Result, WorkerError};
use crate::segment::{Segment, SegmentWriter};
use crate::session::{Uncommitted, commit_ids};
use crate::shared::{Shared, stats};
use crate::store::{Block, Reservation, Stats};

/// A data connection: every read and write under the worker's timeouts.
pub type Conn = Timed<TcpStream>;

/// Serves one connection until the peer closes it, it breaks the protocol,
/// or the worker shuts down (between requests).
pub async fn serve(
    sh: Arc<Shared>,
    sock: TcpStream,
    peer: SocketAddr,
    _slot: PeerSlot<IpAddr>,
    mut stop: watch::Receiver<bool>,
) {
    let mut sock = Timed::new(sock, sh.timeouts);
    loop {
        sock.expect_frame();
        let h = tokio::select! {
            h = read_header(&mut sock) => h,
            _ = stop.changed() => return,
        };
        let r = match h {
            Ok(h) => dispatch(&sh, &mut sock, h).await,
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

async fn dispatch(sh: &Shared, sock: &mut Conn, h: eddy_wire::Header) -> Result<(), WireError> {
    match h.kind {
        Kind::Read | Kind::Load => {
            let body = read_body(sock, h).await?;
            let req = ReadRequest::decode(h.kind, &body)?;
            if let Err(m) = req.check() {
                return send_error(sock, &WorkerError::InvalidArgument(m)).await;
            }
            read(sh, sock, &req, h.kind == Kind::Load).await
        }
        Kind::WriteOpen => {
            let body = read_body(sock, h).await?;
            let open = WriteOpen::decode(&body)?;
            if let Err(m) = open.check() {
                return send_error(sock, &WorkerError::InvalidArgument(m)).await;
            }
            write(sh, sock, open).await
        }
        Kind::Stats => {
            let _ = read_body(sock, h).await?;
            let body = eddy_wire::encode_stats(&stats(sh));
            write_frame(sock, Kind::StatsOk, &body).await
        }
        other => Err(WireError::Unexpected {
            expected: "READ, LOAD, WRITE_OPEN or STATS",
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
        Err(WorkerError::NoSpace(_)) if !load_only && req.source.is_some() => {
            read_through(sh, req).await.map(Found::Through)
        }
        Err(e) => Err(e),
    }
}

/// Memory a write session reserves at a time (up to the block size).
const WRITE_RESERVE_STEP: u64 = 4 << 20;

/// A block being written in a write session.
struct Open {
    w: SegmentWriter,
    res: Reservation,
    pos: u64,
}

/// A file write session: `WriteOpen` (answered `Ok`), `Data`*, then
/// `WriteClose` (answered `WriteOk`) or `WriteCancel` (answered `Ok`).
/// Nothing is cached or visible in the under-storage before `WriteClose`
/// succeeds; a broken connection discards everything.
async fn write(sh: &Shared, sock: &mut Conn, open: WriteOpen) -> Result<(), WireError> {
    let _slot = match sh.admit.open_write(&sh.link, &open).await {
        Ok(s) => s,
        Err(e) => return send_error(sock, &e).await,
    };
    let cache = open.write_type != WriteType::Through;
    let mut ufs_w = match &open.target {
        Some(t) if open.write_type != WriteType::MustCache => {
            let r = async {
                let ufs = sh.link.ufs(t.mount_id).await?;
                Ok::<_, WorkerError>(ufs.create(&ufs_key(&t.key)?).await?)
            }
            .await;
            match r {
                Ok(w) => Some(w),
                Err(e) => return send_error(sock, &e).await,
            }
        }
        _ => None,
    };
    write_frame(sock, Kind::Ok, &eddy_wire::u64_body(0)).await?;

    let bs = open.block_size;
    // Each block goes into the store as soon as it is full (so it can move
    // down a tier and memory holds one block of the write, not the whole
    // file); the master hears of them only at close. Dropped if the write
    // fails, is cancelled or the connection goes.
    let mut done = Uncommitted::new(sh.store.clone());
    let sole = open.write_type == WriteType::MustCache;
    let mut cur: Option<Open> = None;
    let mut total: u64 = 0;
    // After a failure the rest of the stream is read and dropped, and the
    // error answers `WriteClose`.
    let mut failed: Option<WorkerError> = None;
    let mut scratch: Vec<u8> = Vec::new();
    loop {
        // Between frames a session may wait up to the idle timeout; past it
        // the connection goes and every reservation of the session with it.
        sock.expect_frame();
        let h = read_header(sock).await?;
        match h.kind {
            Kind::Data => {
                sock.expect_bulk();
                let mut left = h.body_len as u64;
                while left > 0 {
                    if failed.is_some() {
                        discard(sock, left, &mut scratch).await?;
                        break;
                    }
                    if !cache {
                        let n = left.min(1 << 20) as usize;
                        scratch.resize(n, 0);
                        sock.read_exact(&mut scratch[..n]).await?;
                        if let Some(u) = ufs_w.as_mut()
                            && let Err(e) = u.write(&scratch[..n]).await
                        {
                            failed = Some(e.into());
                        }
                        left -= n as u64;
                        total += n as u64;
                        continue;
                    }
                    if cur.is_none() {
                        let index = total / bs;
                        if index >= 1 << eddy_proto::BLOCK_INDEX_BITS {
                            failed = Some(WorkerError::InvalidArgument(format!(
                                "a file of block size {bs} cannot have more than 2^24 blocks"
                            )));
                            continue;
                        }
                        // The segment's size is virtual until written; the
                        // reservation grows with the bytes that arrive.
                        let opened = sh
                            .store
                            .reserve(0)
                            .await
                            .map_err(WorkerError::from)
                            .and_then(|res| {
                                let name = format!("eddy-write-{}-{index}", open.file_id);
                                let w = SegmentWriter::create(&name, bs, false)
                                    .map_err(WorkerError::Memory)?;
                                Ok(Open { w, res, pos: 0 })
                            });
                        match opened {
                            Ok(o) => cur = Some(o),
                            Err(e) => {
                                failed = Some(e);
                                continue;
                            }
                        }
                    }
                    let o = cur.as_mut().expect("opened above");
                    let n = left.min(bs - o.pos) as usize;
                    let need = o.pos + n as u64;
                    if need > o.res.bytes() {
                        let step = (need - o.res.bytes())
                            .max(WRITE_RESERVE_STEP)
                            .min(bs - o.res.bytes());
                        if let Err(e) = sh.store.grow(&mut o.res, step).await {
                            failed = Some(e.into());
                            continue;
                        }
                    }
                    let range = o.pos as usize..o.pos as usize + n;
                    // Network bytes land directly in the block's segment.
                    sock.read_exact(&mut o.w.as_mut_slice()[range.clone()])
                        .await?;
                    if let Some(u) = ufs_w.as_mut()
                        && let Err(e) = u.write(&o.w.as_mut_slice()[range]).await
                    {
                        failed = Some(e.into());
                    }
                    o.pos += n as u64;
                    left -= n as u64;
                    total += n as u64;
                    if o.pos == bs {
                        let o = cur.take().expect("open");
                        match seal(o, total / bs - 1, open.file_id) {
                            Ok(b) => failed = done.add(b, sole).err(),
                            Err(e) => failed = Some(e),
                        }
                    }
                }
            }
            Kind::WriteCancel => {
                let _ = read_body(sock, h).await?;
                if let Some(u) = ufs_w {
                    u.abort().await;
                }
                return write_frame(sock, Kind::Ok, &eddy_wire::u64_body(0)).await;
            }
            Kind::WriteClose => {
                let body = read_body(sock, h).await?;
                let length = eddy_wire::decode_u64(Kind::WriteClose, &body)?;
                if failed.is_none() && length != total {
                    failed = Some(WorkerError::InvalidArgument(format!(
                        "the writer says {length} bytes but sent {total}"
                    )));
                }
                if failed.is_none()
                    && let Some(o) = cur.take()
                {
                    match seal(o, total / bs, open.file_id) {
                        Ok(b) => failed = done.add(b, sole).err(),
                        Err(e) => failed = Some(e),
                    }
                }
                if let Some(e) = failed {
                    if let Some(u) = ufs_w {
                        u.abort().await;
                    }
                    return send_error(sock, &e).await;
                }
                let fingerprint = match ufs_w {
                    Some(u) => match u.complete().await {
                        Ok(st) => st.fingerprint,
                        Err(e) => return send_error(sock, &e.into()).await,
                    },
                    None => String::new(),
                };
                let blocks = done.blocks.len() as u32;
                let committed = commit_ids(sh, &done.blocks).await;
                done.keep = committed.is_ok();
                if let Err(e) = committed {
                    if open.write_type == WriteType::MustCache {
                        return send_error(sock, &e).await;
                    }
                    // The under-storage has the file; only the cache copy is lost.
                    tracing::warn!("file {}: cached blocks not recorded: {e}", open.file_id);
                }
                let ok = WriteOk {
                    length: total,
                    blocks,
                    fingerprint,
                };
                return write_frame(sock, Kind::WriteOk, &ok.encode()).await;
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

async fn discard(sock: &mut Conn, mut n: u64, scratch: &mut Vec<u8>) -> Result<(), WireError> {
    scratch.resize(1 << 20, 0);
    while n > 0 {
        let k = n.min(scratch.len() as u64) as usize;
        sock.read_exact(&mut scratch[..k]).await?;
        n -= k as u64;
    }
    Ok(())
}

fn seal(o: Open, index: u64, file_id: u64) -> Result<(u64, Segment, Reservation)> {
    let seg = o.w.seal(o.pos).map_err(WorkerError::Memory)?;
    Ok((eddy_proto::block_id(file_id, index), seg, o.res))
}
