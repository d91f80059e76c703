//! The data server: one task per TCP connection, requests served in order.
//!
//! A request that fails gets an `Error` frame and the connection stays
//! usable. A protocol violation (bad magic, unknown or oversized frame, a
//! body that does not parse) is logged and closes that connection only.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::sync::Arc;

use eddy_wire::{
    ErrorFrame, Kind, ReadRequest, ReadType, WireError, WriteOk, WriteOpen, WriteType, read_body,
    read_header, write_frame,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::conn::{PeerSlot, Timed, Timeouts};
use crate::disk;
use crate::error::{Result, WorkerError};
use crate::master_link::MasterLink;
use crate::segment::{Segment, SegmentWriter};
use crate::store::{Block, BlockStore, Reservation, Stats};

/// What every connection shares.
pub struct Shared {
    pub store: Arc<BlockStore>,
    pub link: Arc<MasterLink>,
    /// Checks of misses and write opens against the master.
    pub admit: Arc<crate::admit::Admission>,
    pub timeouts: Timeouts,
    /// Connections one peer may hold (per IP on TCP, per process on the
    /// Unix socket).
    pub max_per_peer: usize,
}

/// A data connection: every read and write under the worker's timeouts.
pub type Conn = Timed<TcpStream>;

/// Answers a connection over its peer's limit with one `Error` frame
/// (`UNAVAILABLE`), without waiting for the peer, and closes it.
pub fn refuse<S: AsFd>(sock: &S, peer: &str, max: usize) {
    let f = ErrorFrame::new(
        eddy_proto::EddyCode::Unavailable,
        format!(
            "{peer} already has {max} connections open to this worker (max_connections_per_peer); close idle ones and retry"
        ),
    );
    let body = f.encode();
    let mut frame = eddy_wire::Header {
        kind: Kind::Error,
        body_len: body.len() as u32,
    }
    .encode()
    .to_vec();
    frame.extend_from_slice(&body);
    // Non-blocking: a fresh socket's send buffer takes one small frame.
    let _ = rustix::net::send(
        sock,
        &frame,
        rustix::net::SendFlags::NOSIGNAL | rustix::net::SendFlags::DONTWAIT,
    );
    tracing::debug!("refused a connection from {peer}: {max} already open");
}

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

pub(crate) fn stats(sh: &Shared) -> Vec<(String, u64)> {
    use std::sync::atomic::Ordering::Relaxed;
    let s = &sh.store.stats;
    [
        ("cache_hits", s.cache_hits.load(Relaxed)),
        ("cache_misses", s.cache_misses.load(Relaxed)),
        ("ufs_reads", s.ufs_reads.load(Relaxed)),
        ("ufs_bytes_read", s.ufs_bytes_read.load(Relaxed)),
        ("evictions", s.evictions.load(Relaxed)),
        ("blocks_written", s.blocks_written.load(Relaxed)),
        ("bytes_served", s.bytes_served.load(Relaxed)),
        ("demotions", s.demotions.load(Relaxed)),
        ("promotions", s.promotions.load(Relaxed)),
        ("disk_reads", s.disk_reads.load(Relaxed)),
        ("replicas_made", s.replicas_made.load(Relaxed)),
        ("persists", s.persists.load(Relaxed)),
        ("persist_failures", s.persist_failures.load(Relaxed)),
        ("blocks_cached", sh.store.block_count() as u64),
        ("memory_used", sh.store.used()),
        ("memory_capacity", sh.store.capacity()),
        ("memory_reserved", sh.store.reserved()),
        ("pinned_version", sh.store.pinned_version()),
        ("leases", s.leases.load(Relaxed)),
        ("lease_clients", s.lease_clients.load(Relaxed)),
        ("leases_granted", s.leases_granted.load(Relaxed)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
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
        return read_through(sh, req).await;
    }
    match cached(sh, req).await {
        Ok(b) => Ok(Found::Cached(b)),
        // No room to cache (the rest is pinned or being read): serve the
        // bytes from the under-storage anyway, as Alluxio does.
        Err(WorkerError::NoSpace(_)) if !load_only && req.source.is_some() => {
            read_through(sh, req).await
        }
        Err(e) => Err(e),
    }
}

/// The block, from whichever tier holds it (moved up to memory first for
/// CACHE_PROMOTE), or filled from the under-storage into memory. A disk
/// block whose file cannot be opened is forgotten and filled again.
pub(crate) async fn cached(sh: &Shared, req: &ReadRequest) -> Result<Block> {
    for _ in 0..2 {
        match sh.store.get_or_fill(req.block_id, || fill(sh, req)).await? {
            Block::Disk(d) if req.read_type == ReadType::CachePromote => {
                drop(d);
                if let Some(b) = sh.store.promote(req.block_id).await {
                    return checked(req, b);
                }
            }
            Block::Disk(d) => match d.file() {
                Ok(_) => return checked(req, Block::Disk(d)),
                Err(e) => sh.store.drop_broken(&d, &e),
            },
            b => return checked(req, b),
        }
    }
    Err(WorkerError::NotFound(format!(
        "block {} keeps failing on this worker's disk tiers",
        req.block_id
    )))
}

fn checked(req: &ReadRequest, b: Block) -> Result<Block> {
    if b.len() != req.block_length {
        return Err(WorkerError::InvalidArgument(format!(
            "block {} is {} bytes here, the request says {}",
            req.block_id,
            b.len(),
            req.block_length
        )));
    }
    Ok(b)
}

/// Reads just the requested range from the under-storage; caches nothing.
async fn read_through(sh: &Shared, req: &ReadRequest) -> Result<Found> {
    let src = source(req)?;
    let want = sh.admit.check_fill(&sh.link, req).await?;
    let ufs = sh.link.ufs(src.mount_id).await?;
    let start = req.file_offset + req.offset;
    let b = ufs_read_exact(sh, &*ufs, src, start, req.length, &want).await?;
    Ok(Found::Through(b))
}

/// Reads exactly `len` bytes at `start` of the block's under-storage file,
/// of version `want` only; another version, or fewer bytes, means the file
/// changed under Eddy.
async fn ufs_read_exact(
    sh: &Shared,
    ufs: &dyn eddy_ufs::UnderFileSystem,
    src: &eddy_wire::UfsSource,
    start: u64,
    len: u64,
    want: &eddy_ufs::Version,
) -> Result<bytes::Bytes> {
    let key = ufs_key(&src.key)?;
    let mut buf = vec![0u8; len as usize];
    let n = ufs.read_into_version(&key, start, &mut buf, want).await?;
    Stats::add(&sh.store.stats.ufs_reads, 1);
    Stats::add(&sh.store.stats.ufs_bytes_read, n as u64);
    if n as u64 != len {
        return Err(WorkerError::UfsChanged {
            key: src.key.clone(),
            offset: start,
            expected: len,
            found: n as u64,
        });
    }
    Ok(bytes::Bytes::from(buf))
}

fn source(req: &ReadRequest) -> Result<&eddy_wire::UfsSource> {
    req.source.as_ref().ok_or_else(|| {
        WorkerError::NotFound(format!(
            "block {} is not cached on this worker and has no under-storage copy",
            req.block_id
        ))
    })
}

pub(crate) fn ufs_key(key: &str) -> Result<eddy_ufs::UfsPath> {
    eddy_ufs::UfsPath::parse(key)
        .ok_or_else(|| WorkerError::InvalidArgument(format!("invalid under-storage key {key:?}")))
}

/// Reads the whole block from the under-storage into a new segment, caches
/// it and records it with the master. Whole blocks: one sequential read per
/// miss, and every later read of the block is a hit (docs/DATA-PROTOCOL.md).
pub(crate) async fn fill(sh: &Shared, req: &ReadRequest) -> Result<Block> {
    let src = source(req)?;
    // Before a byte is reserved: the request must describe this block's
    // own bytes (docs/DATA-PROTOCOL.md, "Checks against the master").
    let want = sh.admit.check_fill(&sh.link, req).await?;
    let ufs = sh.link.ufs(src.mount_id).await?;
    let key = ufs_key(&src.key)?;
    let res = match sh.store.reserve(req.block_length).await {
        Ok(r) => r,
        // Memory is all pinned or in use: the block goes to the first
        // disk tier with room instead.
        Err(e) if sh.store.has_disk() => return fill_to_disk(sh, req, &*ufs, e, &want).await,
        Err(e) => return Err(e.into()),
    };
    let mut w = SegmentWriter::create(
        &format!("eddy-block-{}", req.block_id),
        req.block_length,
        // Not populated up front: faulting pages in during the read lets
        // page allocation overlap the under-storage I/O (measured faster).
        false,
    )
    .map_err(WorkerError::Memory)?;
    let n = ufs
        .read_into_version(&key, req.file_offset, w.as_mut_slice(), &want)
        .await?;
    Stats::add(&sh.store.stats.ufs_reads, 1);
    Stats::add(&sh.store.stats.ufs_bytes_read, n as u64);
    if n as u64 != req.block_length {
        return Err(WorkerError::UfsChanged {
            key: src.key.clone(),
            offset: req.file_offset,
            expected: req.block_length,
            found: n as u64,
        });
    }
    let seg = w.seal(n as u64).map_err(WorkerError::Memory)?;
    let seg = sh.store.insert(req.block_id, seg, res, false);
    if let Err(e) = sh.link.commit(req.block_id, req.block_length).await {
        // The file changed or went away meanwhile: serve this read, keep nothing.
        tracing::warn!("block {} not kept: {e}", req.block_id);
        sh.store.remove(&[req.block_id]);
    }
    Ok(Block::Mem(seg))
}

async fn fill_to_disk(
    sh: &Shared,
    req: &ReadRequest,
    ufs: &dyn eddy_ufs::UnderFileSystem,
    no_room: crate::store::NoSpace,
    want: &eddy_ufs::Version,
) -> Result<Block> {
    let src = source(req)?;
    let b = ufs_read_exact(sh, ufs, src, req.file_offset, req.block_length, want).await?;
    let block = match sh.store.insert_on_disk(req.block_id, b).await {
        Ok(b) => b,
        Err(why) => {
            tracing::debug!("block {} has no room on disk either: {why}", req.block_id);
            return Err(no_room.into());
        }
    };
    let tier = sh.store.tier_name(&block);
    if let Err(e) = sh
        .link
        .commit_in(req.block_id, req.block_length, &tier)
        .await
    {
        tracing::warn!("block {} not kept: {e}", req.block_id);
        sh.store.remove(&[req.block_id]);
    }
    Ok(block)
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

/// Blocks of a write in progress (TCP or short-circuit): each full block
/// joins the store as soon as it is written, so it can move down a tier
/// and a write larger than memory spills to disk, but the master hears of
/// them only at close. Removed on drop unless `keep` (the commit went
/// through).
pub(crate) struct Uncommitted {
    store: Arc<BlockStore>,
    pub(crate) blocks: Vec<(u64, u64)>,
    pub(crate) keep: bool,
}

impl Uncommitted {
    pub(crate) fn new(store: Arc<BlockStore>) -> Self {
        Self {
            store,
            blocks: Vec::new(),
            keep: false,
        }
    }

    /// Refuses a block this worker already holds: a write session only
    /// makes new blocks (an incomplete file's blocks are cached nowhere),
    /// so an id in the store is another file's copy and is left alone.
    pub(crate) fn add(
        &mut self,
        (id, seg, res): (u64, Segment, Reservation),
        sole: bool,
    ) -> Result<()> {
        if self.store.contains(id) {
            return Err(WorkerError::AlreadyWriting(format!(
                "block {id} is already cached on this worker; it is not written again"
            )));
        }
        let len = seg.len();
        self.store.insert(id, seg, res, false);
        if sole {
            // A MUST_CACHE block may move down a tier but never be evicted.
            self.store.keep_sole_copies([id]);
        }
        Stats::add(&self.store.stats.blocks_written, 1);
        self.blocks.push((id, len));
        Ok(())
    }
}

impl Drop for Uncommitted {
    fn drop(&mut self) {
        if !self.keep {
            let ids: Vec<u64> = self.blocks.iter().map(|b| b.0).collect();
            self.store.remove(&ids);
        }
    }
}

/// Records written blocks with the master; on failure drops the ones not
/// recorded.
pub(crate) async fn commit_ids(sh: &Shared, ids: &[(u64, u64)]) -> Result<()> {
    for (i, &(id, len)) in ids.iter().enumerate() {
        // A CACHE_THROUGH block may have been evicted from the last tier
        // while the write went on: the under-storage has it, the master
        // must not list this worker for it.
        if !sh.store.contains(id) {
            continue;
        }
        if let Err(e) = sh.link.commit_written(id, len).await {
            let rest: Vec<u64> = ids[i..].iter().map(|(b, _)| *b).collect();
            sh.store.remove(&rest);
            return Err(e.into());
        }
    }
    Ok(())
}
