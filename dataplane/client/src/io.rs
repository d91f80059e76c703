//! Reading and writing file bytes through workers.

use std::collections::{HashMap, HashSet};
use std::io::SeekFrom;
use std::sync::Arc;
use std::time::Duration;

use eddy_wire::{
    ErrorFrame, Kind, ReadRequest, ReadType, UfsSource, WireError, WriteOk, WriteOpen, WriteType,
    write_frame,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::deadline::within;
use crate::fs::FileSystem;
use crate::local::{Lease, LocalWorker};
use crate::shm::WritableSegment;
use crate::{ClientError, CreateOptions, EddyCode, Result, RpcError, pb};

/// What a reader knows about its file.
#[derive(Debug)]
pub(crate) struct FileInfo {
    pub path: Vec<u8>,
    pub status: pb::FileStatus,
    pub blocks: Vec<pb::FileBlock>,
    pub ufs: Option<pb::UfsLocation>,
    /// What was left of the master's registration grace period (ms; 0: none).
    pub grace_left_ms: u64,
}

fn addr_of(host: &str, port: u32) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn worker_err(addr: &str, e: ErrorFrame) -> ClientError {
    ClientError::Worker {
        addr: addr.to_string(),
        code: e.code,
        message: e.message,
    }
}

fn wire_err(addr: &str, e: WireError) -> ClientError {
    if let WireError::Remote(e) = e {
        return worker_err(addr, e);
    }
    ClientError::Worker {
        addr: addr.to_string(),
        code: match e {
            _ if crate::deadline::timed_out(&e) => EddyCode::DeadlineExceeded,
            WireError::Io(_) | WireError::Closed => EddyCode::Unavailable,
            _ => EddyCode::Protocol,
        },
        message: e.to_string(),
    }
}

/// Reads a complete file. `read_at` takes `&self` and may run from many
/// tasks at once; `read`/`seek` keep a position like a file handle.
pub struct FileReader {
    fs: FileSystem,
    info: parking_lot::Mutex<Arc<FileInfo>>,
    read_type: ReadType,
    pos: u64,
    /// Block index -> the worker that served it (for blocks the master did
    /// not list a location for when the file was opened).
    chosen: Arc<parking_lot::Mutex<HashMap<usize, (u64, String)>>>,
    prefetched: parking_lot::Mutex<HashSet<usize>>,
    /// Short-circuit: blocks mapped from a worker on this host, for the
    /// life of the reader (or of the lease).
    leases: parking_lot::Mutex<HashMap<usize, Arc<Lease>>>,
    /// Blocks the local worker could not lease: read over TCP.
    no_lease: parking_lot::Mutex<HashSet<usize>>,
    local_workers: parking_lot::Mutex<Vec<Arc<LocalWorker>>>,
}

/// Most blocks leased in one round trip.
const LEASE_BATCH: usize = 16;

/// A zero-copy view of part of one block: derefs to the bytes in the
/// worker's shared memory, mapped read-only into this process. The block
/// stays leased (cannot be evicted or freed) while the view lives.
pub struct MappedRange {
    lease: Arc<Lease>,
    start: usize,
    len: usize,
}

impl std::ops::Deref for MappedRange {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.lease.map.as_slice()[self.start..self.start + self.len]
    }
}

impl AsRef<[u8]> for MappedRange {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl Drop for FileReader {
    fn drop(&mut self) {
        // Closing the file gives its leases back now, not at the next request.
        self.leases.lock().clear();
        let mut workers = std::mem::take(&mut *self.local_workers.lock());
        // Usually the release goes out here and now, in one non-blocking write.
        workers.retain(|w| !w.try_flush());
        if !workers.is_empty()
            && let Ok(h) = tokio::runtime::Handle::try_current()
        {
            h.spawn(async move {
                for w in workers {
                    w.flush().await;
                }
            });
        }
    }
}

/// Blocks a sequential reader asks workers to cache ahead of it.
const READ_AHEAD_BLOCKS: usize = 2;

/// What a background prefetch needs.
struct PrefetchCtx {
    fs: FileSystem,
    chosen: Arc<parking_lot::Mutex<HashMap<usize, (u64, String)>>>,
}

impl PrefetchCtx {
    async fn load(&self, index: usize, b: &pb::FileBlock, req: &ReadRequest) -> Result<()> {
        let (worker_id, addr) = miss_worker(&self.fs, b, &[]).await?;
        load_on(&self.fs, &addr, req).await?;
        self.chosen.lock().insert(index, (worker_id, addr));
        Ok(())
    }
}

/// The worker placement names to fill a miss of `b`: the same one for every
/// client (rendezvous hash), minus `exclude`.
async fn miss_worker(fs: &FileSystem, b: &pb::FileBlock, exclude: &[u64]) -> Result<(u64, String)> {
    let w = fs
        .master()
        .select_worker(
            b.block_id,
            fs.host(),
            b.length,
            pb::PlacementKind::DeterministicHash,
            exclude,
        )
        .await?;
    let a = w.address.unwrap_or_default();
    Ok((w.worker_id, addr_of(&a.host, a.data_port)))
}

impl FileReader {
    pub(crate) fn new(fs: FileSystem, info: Arc<FileInfo>, read_type: ReadType) -> Self {
        Self {
            fs,
            info: parking_lot::Mutex::new(info),
            read_type,
            pos: 0,
            chosen: Default::default(),
            prefetched: Default::default(),
            leases: Default::default(),
            no_lease: Default::default(),
            local_workers: Default::default(),
        }
    }

    pub fn len(&self) -> u64 {
        self.info.lock().status.length
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn status(&self) -> pb::FileStatus {
        self.info.lock().status.clone()
    }

    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Moves the position; past the end is allowed (reads there return 0).
    pub fn seek(&mut self, to: SeekFrom) -> Result<u64> {
        let len = self.len() as i128;
        let target = match to {
            SeekFrom::Start(n) => n as i128,
            SeekFrom::End(d) => len + d as i128,
            SeekFrom::Current(d) => self.pos as i128 + d as i128,
        };
        if target < 0 || target > u64::MAX as i128 {
            return Err(ClientError::InvalidArgument(format!(
                "cannot seek to {target}: before the start of the file"
            )));
        }
        self.pos = target as u64;
        Ok(self.pos)
    }

    /// Reads at the position into `buf`; returns the bytes read (0 at the end).
    pub async fn read(&mut self, buf: &mut [u8]) -> Result<usize> {
        let bs = self.info.lock().status.block_size.max(1);
        let index = (self.pos / bs) as usize;
        // Over TCP, have the next blocks filled while this one is read. (Leased
        // blocks are mapped, not streamed: nothing to overlap.)
        let over_tcp = !self.fs.inner.opts.short_circuit || self.no_lease.lock().contains(&index);
        if over_tcp {
            for ahead in 1..=READ_AHEAD_BLOCKS {
                self.prefetch(index + ahead);
            }
        }
        let n = self.read_at(self.pos, buf).await?;
        self.pos += n as u64;
        Ok(n)
    }

    /// Reads the whole file from the current position.
    pub async fn read_to_end(&mut self) -> Result<Vec<u8>> {
        let len = self.len().saturating_sub(self.pos) as usize;
        let mut v = vec![0u8; len];
        let mut done = 0;
        while done < len {
            let n = self.read(&mut v[done..]).await?;
            if n == 0 {
                break;
            }
            done += n;
        }
        v.truncate(done);
        Ok(v)
    }

    /// Reads up to `buf.len()` bytes at `pos` (fewer only at the end of the
    /// file). Thread-safe: no shared position.
    pub async fn read_at(&self, pos: u64, buf: &mut [u8]) -> Result<usize> {
        let info = self.info.lock().clone();
        let len = info.status.length;
        if pos >= len || buf.is_empty() {
            return Ok(0);
        }
        let want = (buf.len() as u64).min(len - pos) as usize;
        let mut done = 0usize;
        while done < want {
            let at = pos + done as u64;
            let bs = info.status.block_size.max(1);
            let index = (at / bs) as usize;
            let b = info.blocks.get(index).cloned().ok_or_else(|| {
                ClientError::InvalidArgument(format!(
                    "offset {at} has no block in the file's metadata"
                ))
            })?;
            let off = at - b.offset;
            let n = ((b.length - off) as usize).min(want - done);
            match self.lease_for(index).await {
                // Shared memory: the one copy the caller asked for.
                Some(l) => buf[done..done + n]
                    .copy_from_slice(&l.map.as_slice()[off as usize..off as usize + n]),
                None => {
                    self.read_block(index, off, &mut buf[done..done + n])
                        .await?
                }
            }
            done += n;
        }
        Ok(done)
    }

    /// The file's block size (zero-copy views never cross a block).
    pub fn block_size(&self) -> u64 {
        self.info.lock().status.block_size
    }

    /// A zero-copy view of `len` bytes at `offset`, straight from the shared
    /// memory of a worker on this host. The range must lie within one block
    /// (split at multiples of [`FileReader::block_size`]).
    pub async fn map_range(&self, offset: u64, len: u64) -> Result<MappedRange> {
        let info = self.info.lock().clone();
        let size = info.status.length;
        if offset.checked_add(len).is_none_or(|end| end > size) {
            return Err(ClientError::InvalidArgument(format!(
                "range {offset}+{len} is past the end of the file ({size} bytes)"
            )));
        }
        let bs = info.status.block_size.max(1);
        let index = (offset / bs) as usize;
        let Some(b) = info.blocks.get(index) else {
            // Only an empty range at the very end gets here.
            return Err(ClientError::InvalidArgument(format!(
                "range {offset}+{len} names no block"
            )));
        };
        if offset + len > b.offset + b.length {
            return Err(ClientError::InvalidArgument(format!(
                "range {offset}+{len} crosses the block boundary at {}; map each block's part separately (block size {bs})",
                b.offset + b.length
            )));
        }
        let lease = self.lease_for(index).await.ok_or_else(|| {
            ClientError::Rpc(RpcError::new(
                EddyCode::Unsupported,
                "zero-copy views need a worker on this host reachable over its Unix socket (short-circuit); use read_at",
            ))
        })?;
        Ok(MappedRange {
            lease,
            start: (offset - b.offset) as usize,
            len: len as usize,
        })
    }

    /// The lease on block `index` from a worker on this host, taking one (and
    /// those of the next blocks cached there, in one round trip) if needed.
    /// `None`: read this block over TCP.
    async fn lease_for(&self, index: usize) -> Option<Arc<Lease>> {
        {
            let mut leases = self.leases.lock();
            match leases.get(&index) {
                Some(l) if !l.expired() => return Some(l.clone()),
                Some(_) => {
                    leases.remove(&index);
                }
                None => {}
            }
        }
        if !self.fs.inner.opts.short_circuit || self.no_lease.lock().contains(&index) {
            return None;
        }
        let info = self.info.lock().clone();
        let b = info.blocks.get(index)?;
        // NO_CACHE must not make the local worker cache what it lacks.
        let cached_only = self.read_type == ReadType::NoCache;
        let Some(socket) = self.fs.local_socket_for(b, cached_only).await else {
            self.no_lease.lock().insert(index);
            return None;
        };
        let worker = self.fs.local_worker(&socket);
        let mut idxs = vec![index];
        {
            let leases = self.leases.lock();
            for j in index + 1..info.blocks.len().min(index + LEASE_BATCH) {
                let here = info.blocks[j]
                    .locations
                    .iter()
                    .any(|l| l.domain_socket == socket);
                if !here || leases.contains_key(&j) {
                    break;
                }
                idxs.push(j);
            }
        }
        let items: Vec<ReadRequest> = idxs
            .iter()
            .map(|&j| {
                let b = &info.blocks[j];
                self.request(&info, b, 0, b.length)
            })
            .collect();
        match worker.lease(&items).await {
            Ok(answers) => {
                let mut leases = self.leases.lock();
                for (j, a) in idxs.iter().zip(answers) {
                    match a {
                        Ok(l) => {
                            leases.insert(*j, l);
                        }
                        Err(e) if *j == index => {
                            self.fs.note_fallback(&e.to_string());
                            self.no_lease.lock().insert(index);
                        }
                        Err(_) => {}
                    }
                }
            }
            Err(e) => {
                self.fs.note_fallback(&e.to_string());
                self.no_lease.lock().insert(index);
                return None;
            }
        }
        {
            let mut used = self.local_workers.lock();
            if !used.iter().any(|w| Arc::ptr_eq(w, &worker)) {
                used.push(worker);
            }
        }
        self.leases.lock().get(&index).cloned()
    }

    fn request(&self, info: &FileInfo, b: &pb::FileBlock, off: u64, len: u64) -> ReadRequest {
        ReadRequest {
            block_id: b.block_id,
            offset: off,
            length: len,
            block_length: b.length,
            file_offset: b.offset,
            read_type: self.read_type,
            source: info
                .ufs
                .as_ref()
                .filter(|_| info.status.persisted)
                .map(|u| UfsSource {
                    mount_id: u.mount_id,
                    key: u.key.clone(),
                }),
        }
    }

    /// Fills `dst` from block `index` at `off`: first from workers holding
    /// the block (this host's first) or the one that filled it for us, then
    /// from the worker placement picks for a miss (asked only when needed).
    /// A worker that fails is skipped; the bytes come from the next one, so
    /// they are always whole and right.
    async fn read_block(&self, index: usize, off: u64, dst: &mut [u8]) -> Result<()> {
        let mut failed: Vec<(u64, String)> = Vec::new();
        let mut last_err: Option<ClientError> = None;
        for round in 0..3 {
            let info = if round == 0 {
                self.info.lock().clone()
            } else {
                // Locations may be stale: ask the master again.
                self.refresh_info().await?
            };
            let info = self.await_registration(info, index).await?;
            let Some(b) = info.blocks.get(index) else {
                break;
            };
            let req = self.request(&info, b, off, dst.len() as u64);
            let mut candidates: Vec<(u64, String)> = Vec::new();
            let mut locs = b.locations.clone();
            locs.sort_by_key(|l| l.host != self.fs.host());
            for l in locs {
                candidates.push((l.worker_id, addr_of(&l.host, l.data_port)));
            }
            if let Some(c) = self.chosen.lock().get(&index) {
                candidates.push(c.clone());
            }
            if candidates.is_empty() && req.source.is_none() && info.status.complete {
                // No worker holds it and there is no under-storage copy to
                // fill from: a worker asked would only say NOT_FOUND.
                if round < 2 {
                    continue;
                }
                self.fs.invalidate(&info.path);
                return Err(ClientError::Rpc(RpcError::new(
                    EddyCode::DataLost,
                    format!(
                        "{} is lost: block {index} was cached only on workers that are gone and the file was never persisted; delete or rewrite it",
                        String::from_utf8_lossy(&info.path)
                    ),
                )));
            }
            let mut asked = false;
            loop {
                let next = candidates.iter().find(|c| !failed.contains(c)).cloned();
                let (worker_id, addr) = match next {
                    Some(c) => c,
                    None if !asked => {
                        asked = true;
                        // The worker that fills a miss: the same one for every
                        // client (rendezvous hash), minus those that failed us.
                        let ids: Vec<u64> = failed.iter().map(|f| f.0).collect();
                        match miss_worker(&self.fs, b, &ids).await.ok() {
                            Some(c) => {
                                candidates.push(c);
                                continue;
                            }
                            None => break,
                        }
                    }
                    None => break,
                };
                match read_from(&self.fs, &addr, &req, dst).await {
                    Ok(()) => {
                        self.chosen.lock().insert(index, (worker_id, addr));
                        return Ok(());
                    }
                    Err(e) => {
                        let retry_elsewhere = matches!(
                            e.code(),
                            EddyCode::Unavailable
                                | EddyCode::NotFound
                                | EddyCode::NoSpace
                                | EddyCode::Protocol
                        );
                        // The worker says the request does not describe the
                        // file as it is now (renamed: another key; another
                        // file at the path: another version): re-resolve the
                        // path and try again; a path that names another file
                        // now answers NOT_FOUND (`refresh_info`).
                        let stale =
                            matches!(e.code(), EddyCode::InvalidArgument | EddyCode::UfsError);
                        if stale && round < 2 {
                            last_err = Some(e);
                            break;
                        }
                        if !retry_elsewhere {
                            self.fs.invalidate(&info.path);
                            return Err(e);
                        }
                        self.chosen.lock().remove(&index);
                        failed.push((worker_id, addr));
                        last_err = Some(e);
                    }
                }
            }
        }
        self.fs.invalidate(&self.info.lock().path.clone());
        Err(last_err.unwrap_or_else(|| {
            ClientError::Rpc(RpcError::new(
                EddyCode::NoWorkerAvailable,
                "no live worker can serve this block",
            ))
        }))
    }

    /// Right after a master restart its workers register again (within its
    /// grace period), and until then the master knows no copy of a block
    /// that is only in a worker's memory. Such a block is not lost: this asks
    /// the master again until a copy is known or the period is over, within
    /// the client's timeout, and past that answers UNAVAILABLE (retry), never
    /// DATA_LOST.
    async fn await_registration(
        &self,
        mut info: Arc<FileInfo>,
        index: usize,
    ) -> Result<Arc<FileInfo>> {
        const POLL: Duration = Duration::from_millis(50);
        let start = std::time::Instant::now();
        loop {
            let unknown = info.grace_left_ms > 0
                && info.status.complete
                && !info.status.persisted
                && info
                    .blocks
                    .get(index)
                    .is_some_and(|b| b.locations.is_empty())
                && !self.chosen.lock().contains_key(&index);
            if !unknown {
                return Ok(info);
            }
            let left = self.fs.inner.opts.timeout.saturating_sub(start.elapsed());
            if left.is_zero() {
                return Err(ClientError::Rpc(RpcError::new(
                    EddyCode::Unavailable,
                    format!(
                        "{}: no copy of block {index} is known yet: the master restarted and its workers are registering again ({} ms of its grace period left); retry",
                        String::from_utf8_lossy(&info.path),
                        info.grace_left_ms
                    ),
                )));
            }
            tokio::time::sleep(
                POLL.min(left)
                    .min(Duration::from_millis(info.grace_left_ms)),
            )
            .await;
            info = self.refresh_info().await?;
        }
    }

    /// The file's metadata asked of the master again, by its path. If the
    /// path now names another file (this one was deleted or renamed away,
    /// and maybe another put in its place), the reader's file is gone:
    /// NOT_FOUND, never the other file's blocks.
    async fn refresh_info(&self) -> Result<Arc<FileInfo>> {
        let (path, id) = {
            let info = self.info.lock();
            (info.path.clone(), info.status.id)
        };
        let fresh = self.fs.file_info(&path, true).await?;
        if fresh.status.id != id {
            self.fs.invalidate(&path);
            return Err(ClientError::Rpc(RpcError::new(
                EddyCode::NotFound,
                format!(
                    "{} was deleted or replaced since it was opened (its blocks are gone); open it again",
                    String::from_utf8_lossy(&path)
                ),
            )));
        }
        *self.info.lock() = fresh.clone();
        Ok(fresh)
    }

    /// The worker placement names to fill a miss of `b`.
    /// Sequential reads: asks the worker that will serve block `index` to
    /// cache it now, so its fill overlaps the reading of the current block.
    fn prefetch(&self, index: usize) {
        let info = self.info.lock().clone();
        let Some(b) = info.blocks.get(index) else {
            return;
        };
        if self.read_type == ReadType::NoCache
            || !b.locations.is_empty()
            || self.chosen.lock().contains_key(&index)
            || !self.prefetched.lock().insert(index)
        {
            return;
        }
        let req = self.request(&info, b, 0, 0);
        let (fs, b, chosen) = (self.fs.clone(), b.clone(), self.chosen.clone());
        let reader = PrefetchCtx { fs, chosen };
        tokio::spawn(async move {
            let _ = reader.load(index, &b, &req).await;
        });
    }

    /// Has the block cached by a worker without moving its bytes here.
    pub(crate) async fn load_block(&self, b: &pb::FileBlock) -> Result<()> {
        let info = self.info.lock().clone();
        if !b.locations.is_empty() {
            return Ok(());
        }
        let req = self.request(&info, b, 0, 0);
        let (_, addr) = miss_worker(&self.fs, b, &[]).await?;
        load_on(&self.fs, &addr, &req).await
    }
}

/// Sends a `Load` to `addr` and waits for the block to be cached there.
async fn load_on(fs: &FileSystem, addr: &str, req: &ReadRequest) -> Result<()> {
    let mut c = fs.inner.pool.get(addr).await?;
    let r = within(fs.inner.opts.timeout, async {
        write_frame(&mut c, Kind::Load, &req.encode()).await?;
        eddy_wire::expect(&mut c, Kind::Ok).await
    })
    .await;
    match r {
        Ok(Ok(_)) => {
            fs.inner.pool.put(addr, c);
            Ok(())
        }
        Ok(Err(e)) => {
            fs.inner.pool.put(addr, c);
            Err(worker_err(addr, e))
        }
        Err(e) => Err(wire_err(addr, e)),
    }
}

/// One read request on one worker; a pooled connection that turns out
/// dead is replaced once.
async fn read_from(fs: &FileSystem, addr: &str, req: &ReadRequest, dst: &mut [u8]) -> Result<()> {
    for attempt in 0..2 {
        let mut c = fs.inner.pool.get(addr).await?;
        match within(fs.inner.opts.timeout, read_on(&mut c, req, dst)).await {
            Ok(Ok(())) => {
                fs.inner.pool.put(addr, c);
                return Ok(());
            }
            Ok(Err(e)) => {
                fs.inner.pool.put(addr, c);
                return Err(worker_err(addr, e));
            }
            Err(e) => {
                fs.inner.pool.forget(addr);
                // A pooled connection that died is replaced once; a worker
                // that did not answer in time is not asked again.
                if attempt == 1 || crate::deadline::timed_out(&e) {
                    return Err(wire_err(addr, e));
                }
            }
        }
    }
    unreachable!("the loop returns")
}

async fn read_on(
    c: &mut TcpStream,
    req: &ReadRequest,
    dst: &mut [u8],
) -> Result<Result<(), ErrorFrame>, WireError> {
    write_frame(c, Kind::Read, &req.encode()).await?;
    let body = match eddy_wire::expect(c, Kind::ReadOk).await? {
        Ok(b) => b,
        Err(e) => return Ok(Err(e)),
    };
    let n = eddy_wire::decode_u64(Kind::ReadOk, &body)?;
    if n != dst.len() as u64 {
        return Err(WireError::Malformed {
            kind: Kind::ReadOk,
            reason: format!("asked for {} bytes, the worker sends {n}", dst.len()),
        });
    }
    // Straight into the caller's buffer.
    c.read_exact(dst).await?;
    Ok(Ok(()))
}

pub(crate) async fn worker_stats(fs: &FileSystem, addr: &str) -> Result<Vec<(String, u64)>> {
    let mut c = fs.inner.pool.get(addr).await?;
    let r: Result<_, WireError> = within(fs.inner.opts.timeout, async {
        write_frame(&mut c, Kind::Stats, &[]).await?;
        match eddy_wire::expect(&mut c, Kind::StatsOk).await? {
            Ok(b) => Ok(eddy_wire::decode_stats(&b)?),
            Err(e) => Err(WireError::Remote(e)),
        }
    })
    .await;
    let stats = r.map_err(|e| wire_err(addr, e))?;
    fs.inner.pool.put(addr, c);
    Ok(stats)
}

/// Bytes buffered before a `Data` frame goes out.
const WRITE_CHUNK: usize = 1 << 20;

/// Writes a new file through one worker. Call [`FileWriter::close`]: only
/// then is the file complete and visible. Dropping an unclosed writer
/// discards what was written and deletes the file.
pub struct FileWriter {
    fs: FileSystem,
    path: Vec<u8>,
    /// The inode this writer created: completion and clean-up name it, so
    /// they act on this file even if the path was renamed or reused.
    file_id: u64,
    addr: String,
    conn: Option<TcpStream>,
    buf: Vec<u8>,
    written: u64,
    persisted: bool,
    /// ASYNC_THROUGH: the master has the file persisted after close.
    persist_async: bool,
    /// Short-circuit: writing straight into segments of a worker on this host.
    shm: Option<ShmWrite>,
}

/// A short-circuit write session on its own Unix-socket connection.
struct ShmWrite {
    sock: tokio::net::UnixStream,
    path: String,
    block_size: u64,
    /// The segment being filled: (id, mapping, bytes written into it).
    seg: Option<(u64, WritableSegment, usize)>,
    /// Each exchange with the worker ends within this.
    timeout: Duration,
}

impl ShmWrite {
    async fn open(path: &str, open: &WriteOpen, timeout: Duration) -> Result<Self, WireError> {
        within(timeout, async {
            let mut sock = tokio::net::UnixStream::connect(path).await?;
            write_frame(&mut sock, Kind::WriteOpen, &open.encode()).await?;
            match eddy_wire::expect(&mut sock, Kind::Ok).await? {
                Ok(_) => Ok(Self {
                    sock,
                    path: path.to_string(),
                    block_size: open.block_size,
                    seg: None,
                    timeout,
                }),
                Err(e) => Err(WireError::Remote(e)),
            }
        })
        .await
    }

    fn err(&self, e: WireError) -> ClientError {
        wire_err(&self.path, e)
    }

    async fn step(&mut self, kind: Kind, body: &[u8], want: Kind) -> Result<Vec<u8>, WireError> {
        let sock = &mut self.sock;
        within(self.timeout, async {
            write_frame(sock, kind, body).await?;
            eddy_wire::expect(sock, want)
                .await?
                .map_err(WireError::Remote)
        })
        .await
    }

    /// Copies `data` into segments (the one copy), committing full ones.
    async fn write(&mut self, mut data: &[u8]) -> Result<(), WireError> {
        while !data.is_empty() {
            if self.seg.is_none() {
                let (sock, size) = (&mut self.sock, self.block_size);
                let (h, body, fds) = within(self.timeout, async {
                    write_frame(sock, Kind::SegmentRequest, &eddy_wire::u64_body(size)).await?;
                    crate::shm::recv_frame_with_fds(sock, 1).await
                })
                .await?;
                if h.kind == Kind::Error {
                    let e = eddy_wire::ErrorFrame::decode(&body)?;
                    return Err(WireError::Remote(e));
                }
                let (id, cap) = eddy_wire::decode_u64_pair(Kind::SegmentOk, &body)?;
                let fd = fds.into_iter().next().ok_or_else(|| WireError::Malformed {
                    kind: Kind::SegmentOk,
                    reason: "no segment descriptor attached".into(),
                })?;
                self.seg = Some((id, WritableSegment::map(fd, cap)?, 0));
            }
            let (_, seg, pos) = self.seg.as_mut().expect("requested above");
            let n = data.len().min(seg.capacity - *pos);
            seg.as_mut_slice()[*pos..*pos + n].copy_from_slice(&data[..n]);
            *pos += n;
            data = &data[n..];
            if *pos == seg.capacity {
                self.commit().await?;
            }
        }
        Ok(())
    }

    /// Unmaps the segment and has the worker seal and keep it.
    async fn commit(&mut self) -> Result<(), WireError> {
        if let Some((id, mut seg, pos)) = self.seg.take() {
            seg.unmap();
            self.step(
                Kind::SegmentCommit,
                &eddy_wire::u64_pair(id, pos as u64),
                Kind::Ok,
            )
            .await?;
        }
        Ok(())
    }

    async fn close(&mut self, total: u64) -> Result<WriteOk, WireError> {
        self.commit().await?;
        let body = self
            .step(Kind::WriteClose, &eddy_wire::u64_body(total), Kind::WriteOk)
            .await?;
        WriteOk::decode(&body)
    }
}

impl FileWriter {
    pub(crate) async fn create(fs: FileSystem, path: &[u8], opts: &CreateOptions) -> Result<Self> {
        let created = fs.master().create_file_full(path, opts).await?;
        // Whatever this client cached about an earlier file at this path is
        // about another inode now.
        fs.invalidate(path);
        let status = created.status.unwrap_or_default();
        let mut w = Self {
            fs: fs.clone(),
            path: path.to_vec(),
            file_id: status.id,
            addr: String::new(),
            conn: None,
            buf: Vec::new(),
            written: 0,
            persisted: false,
            persist_async: false,
            shm: None,
        };
        match w.open_session(&status, created.ufs, opts.write_type).await {
            Ok(()) => Ok(w),
            Err(e) => {
                w.conn = None;
                w.discard().await;
                if e.code() == EddyCode::NotFound {
                    // The worker found no such file: another client deleted
                    // (or replaced) it between its creation and this.
                    return Err(ClientError::Rpc(RpcError::new(
                        EddyCode::NotFound,
                        format!(
                            "{} was created, then deleted or replaced by another client before it could be written ({e}); create it again",
                            String::from_utf8_lossy(path)
                        ),
                    )));
                }
                Err(e)
            }
        }
    }

    async fn open_session(
        &mut self,
        status: &pb::FileStatus,
        ufs: Option<pb::UfsLocation>,
        write_type: pb::WriteType,
    ) -> Result<()> {
        let wt = match write_type {
            pb::WriteType::Unspecified | pb::WriteType::MustCache => WriteType::MustCache,
            pb::WriteType::CacheThrough => WriteType::CacheThrough,
            pb::WriteType::Through => WriteType::Through,
            // The workers keep the bytes (as MUST_CACHE); the master has one
            // of them persist the file after close.
            pb::WriteType::AsyncThrough => {
                self.persist_async = true;
                WriteType::MustCache
            }
        };
        self.persisted = wt != WriteType::MustCache;
        let open = WriteOpen {
            file_id: status.id,
            block_size: status.block_size,
            write_type: wt,
            target: ufs.clone().map(|u| UfsSource {
                mount_id: u.mount_id,
                key: u.key,
            }),
        };
        // A worker on this host: write into its shared memory.
        if let Some(socket) = self.fs.local_write_socket().await {
            match ShmWrite::open(&socket, &open, self.fs.inner.opts.timeout).await {
                Ok(s) => {
                    self.shm = Some(s);
                    return Ok(());
                }
                Err(e) => self.fs.note_fallback(&e.to_string()),
            }
        }
        let first = eddy_proto::block_id(status.id, 0);
        let w = self
            .fs
            .master()
            .select_worker(
                first,
                self.fs.host(),
                status.block_size,
                pb::PlacementKind::LocalFirst,
                &[],
            )
            .await?;
        let a = w.address.unwrap_or_default();
        self.addr = addr_of(&a.host, a.data_port);
        let open = WriteOpen {
            file_id: status.id,
            block_size: status.block_size,
            write_type: wt,
            target: ufs.map(|u| UfsSource {
                mount_id: u.mount_id,
                key: u.key,
            }),
        };
        // A fresh connection: a write session holds it until close.
        let mut c = self.fs.inner.pool.get(&self.addr).await?;
        let r = within(self.fs.inner.opts.timeout, async {
            write_frame(&mut c, Kind::WriteOpen, &open.encode()).await?;
            eddy_wire::expect(&mut c, Kind::Ok).await
        })
        .await
        .map_err(|e| wire_err(&self.addr, e))?;
        r.map_err(|e| worker_err(&self.addr, e))?;
        self.conn = Some(c);
        Ok(())
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    pub async fn write(&mut self, data: &[u8]) -> Result<()> {
        if let Some(s) = self.shm.as_mut() {
            if let Err(e) = s.write(data).await {
                let e = s.err(e);
                self.shm = None;
                return Err(e);
            }
            self.written += data.len() as u64;
            return Ok(());
        }
        let Some(c) = self.conn.as_mut() else {
            return Err(ClientError::InvalidArgument("the writer is closed".into()));
        };
        let addr = self.addr.clone();
        let limit = self.fs.inner.opts.timeout;
        let r: Result<(), WireError> = async {
            let mut data = data;
            // Large writes go out straight from the caller's buffer.
            if self.buf.is_empty() {
                while data.len() >= WRITE_CHUNK {
                    let n = data.len().min(eddy_wire::MAX_DATA_BODY as usize);
                    send_data(c, &data[..n], limit).await?;
                    data = &data[n..];
                }
            }
            self.buf.extend_from_slice(data);
            if self.buf.len() >= WRITE_CHUNK {
                send_data(c, &self.buf, limit).await?;
                self.buf.clear();
            }
            Ok(())
        }
        .await;
        if let Err(e) = r {
            self.conn = None;
            return Err(wire_err(&addr, e));
        }
        self.written += data.len() as u64;
        Ok(())
    }

    /// Finishes the file: the worker caches (and, by write type, persists)
    /// it, then the master marks it complete. Returns its status.
    pub async fn close(mut self) -> Result<pb::FileStatus> {
        if let Some(mut s) = self.shm.take() {
            let ok = match s.close(self.written).await {
                Ok(ok) => ok,
                Err(e) => {
                    let e = s.err(e);
                    self.discard().await;
                    return Err(e);
                }
            };
            let path = std::mem::take(&mut self.path);
            return self.complete(path, ok.length, &ok.fingerprint).await;
        }
        let mut c = self.conn.take().ok_or_else(|| {
            ClientError::InvalidArgument("the writer failed earlier; nothing was kept".into())
        })?;
        let buf = std::mem::take(&mut self.buf);
        let written = self.written;
        let limit = self.fs.inner.opts.timeout;
        let r = within(limit, async {
            if !buf.is_empty() {
                send_data(&mut c, &buf, limit).await?;
            }
            write_frame(&mut c, Kind::WriteClose, &eddy_wire::u64_body(written)).await?;
            eddy_wire::expect(&mut c, Kind::WriteOk).await
        })
        .await;
        let ok = match r {
            Ok(Ok(body)) => WriteOk::decode(&body).map_err(|e| wire_err(&self.addr, e))?,
            Ok(Err(e)) => {
                self.discard().await;
                return Err(worker_err(&self.addr, e));
            }
            Err(e) => {
                self.discard().await;
                return Err(wire_err(&self.addr, e));
            }
        };
        self.fs.inner.pool.put(&self.addr, c);
        let path = std::mem::take(&mut self.path);
        self.complete(path, ok.length, &ok.fingerprint).await
    }

    async fn complete(
        &self,
        path: Vec<u8>,
        length: u64,
        fingerprint: &str,
    ) -> Result<pb::FileStatus> {
        let r = self
            .fs
            .master()
            .complete_file_with(pb::CompleteFileRequest {
                path: path.clone(),
                length,
                persisted: self.persisted,
                ufs_fingerprint: fingerprint.to_string(),
                persist_async: self.persist_async,
                file_id: self.file_id,
            })
            .await;
        // Read-after-write in this client: an open after close must not be
        // answered from metadata fetched while the file was incomplete.
        self.fs.invalidate(&path);
        r
    }

    /// Discards the file.
    pub async fn cancel(mut self) -> Result<()> {
        if let Some(mut s) = self.shm.take() {
            let _ = s.step(Kind::WriteCancel, &[], Kind::Ok).await;
        }
        if let Some(mut c) = self.conn.take() {
            let _ = write_frame(&mut c, Kind::WriteCancel, &[]).await;
        }
        let path = std::mem::take(&mut self.path);
        self.fs.invalidate(&path);
        match self
            .fs
            .master()
            .delete_file_id(&path, false, self.file_id)
            .await
        {
            // Renamed or deleted by someone else meanwhile: this file is
            // gone from the path either way, and nothing else was touched.
            Err(ClientError::Rpc(e)) if e.code == EddyCode::NotFound => Ok(()),
            r => r,
        }
    }

    /// Deletes this writer's incomplete file after a failure — this inode
    /// only, wherever a concurrent rename put it is not chased (its
    /// incomplete state is visible and it can be deleted by hand).
    async fn discard(&self) {
        let _ = self
            .fs
            .master()
            .delete_file_id(&self.path, false, self.file_id)
            .await;
        self.fs.invalidate(&self.path);
    }
}

/// One `Data` frame (at most `MAX_DATA_BODY` bytes), sent within `limit`:
/// a worker that stops reading fails the write instead of stalling it.
async fn send_data(c: &mut TcpStream, data: &[u8], limit: Duration) -> Result<(), WireError> {
    let h = eddy_wire::Header {
        kind: Kind::Data,
        body_len: data.len() as u32,
    };
    within(limit, async {
        c.write_all(&h.encode()).await?;
        c.write_all(data).await?;
        Ok(())
    })
    .await
}

impl Drop for FileWriter {
    fn drop(&mut self) {
        // Not closed: the worker drops the session with the connection; the
        // incomplete file goes too, if a runtime is still around to say so.
        if !self.path.is_empty()
            && let Ok(h) = tokio::runtime::Handle::try_current()
        {
            let master = self.fs.master().clone();
            let path = std::mem::take(&mut self.path);
            let id = self.file_id;
            h.spawn(async move {
                let _ = master.delete_file_id(&path, false, id).await;
            });
        }
    }
}
