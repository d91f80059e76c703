//! [`FileReader`]: a complete file's bytes, from a worker on this host
//! through shared memory when one leased the block, else over a worker's
//! transport, failing over to the next worker that can serve the block.

use std::collections::{HashMap, HashSet};
use std::io::SeekFrom;
use std::sync::Arc;
use std::time::Duration;

use eddy_wire::{ReadRequest, ReadType, UfsSource, host_port};

use super::block::BlockTransport;
use super::conn::TcpWorker;
use super::route::{Access, transport_for};
use crate::local::{Lease, LocalWorker};
use crate::shared::{FileInfo, Shared};
use crate::{ClientError, EddyCode, Result, RpcError, pb};

/// Reads a complete file. `read_at` takes `&self` and may run from many
/// tasks at once; `read`/`seek` keep a position like a file handle.
pub struct FileReader {
    pub(super) shared: Arc<Shared>,
    pub(super) info: parking_lot::Mutex<Arc<FileInfo>>,
    pub(super) read_type: ReadType,
    pos: u64,
    /// Block index -> the worker that served it (for blocks the master did
    /// not list a location for when the file was opened).
    pub(super) chosen: Arc<parking_lot::Mutex<HashMap<usize, (u64, String)>>>,
    prefetched: parking_lot::Mutex<HashSet<usize>>,
    /// Short-circuit: blocks mapped from a worker on this host, for the
    /// life of the reader (or of the lease).
    leases: parking_lot::Mutex<HashMap<usize, Arc<Lease>>>,
    /// Blocks the local worker could not lease: read over TCP.
    no_lease: parking_lot::Mutex<HashSet<usize>>,
    /// Blocks whose lease was refused PERMISSION_DENIED, with the token it
    /// was refused with: read over TCP until the reader holds another token
    /// (the TCP read refreshes an expired one), then leased again.
    denied: parking_lot::Mutex<HashMap<usize, Vec<u8>>>,
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
    shared: Arc<Shared>,
    chosen: Arc<parking_lot::Mutex<HashMap<usize, (u64, String)>>>,
}

impl PrefetchCtx {
    async fn load(&self, index: usize, b: &pb::FileBlock, req: &ReadRequest) -> Result<()> {
        let chosen = load_somewhere(&self.shared, b, req).await?;
        self.chosen.lock().insert(index, chosen);
        Ok(())
    }
}

/// Whether a worker's failure to serve a block sends the read (or load) on
/// to the next worker that may serve it, rather than ending it: the worker
/// is gone or garbled its answer, does not have the block, has no room, or
/// failed inside itself. INTERNAL from a worker is about that worker — a
/// disk tier that failed under a fill (memory full, the directory now out
/// of service), shared memory it could not create — and another worker, or
/// one filling from the under-storage, may well serve. Every INTERNAL a
/// worker answers counts, including its master link's (the worker cannot
/// check the request): telling them apart would need a code of their own,
/// and asking one more worker costs a request, the tries are bounded and
/// the last answer is what the caller sees. INTERNAL from the master
/// itself (`Rpc`) is not retried here: every worker goes through the same
/// master.
fn try_elsewhere(e: &ClientError) -> bool {
    match e {
        ClientError::Worker {
            code: EddyCode::Internal,
            ..
        } => true,
        _ => matches!(
            e.code(),
            EddyCode::Unavailable | EddyCode::NotFound | EddyCode::NoSpace | EddyCode::Protocol
        ),
    }
}

/// Most workers a load asks, as a read makes three rounds of its own.
const LOAD_TRIES: usize = 3;

/// Has a worker cache block `b` (`Load`): the one placement names for a
/// miss, and when it fails as [`try_elsewhere`] says, the next one
/// placement names without it. Returns the worker that took it.
async fn load_somewhere(
    fs: &Shared,
    b: &pb::FileBlock,
    req: &ReadRequest,
) -> Result<(u64, String)> {
    let mut failed: Vec<u64> = Vec::new();
    let mut last: Option<ClientError> = None;
    for _ in 0..LOAD_TRIES {
        let (worker_id, addr) = match miss_worker(fs, b, &failed).await {
            Ok(w) => w,
            // No worker left to ask: the last refusal says more than
            // "no worker available".
            Err(e) => return Err(last.unwrap_or(e)),
        };
        let t = TcpWorker {
            shared: fs,
            addr: &addr,
        };
        match t.load(req).await {
            Ok(()) => return Ok((worker_id, addr)),
            Err(e) if try_elsewhere(&e) => {
                failed.push(worker_id);
                last = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        ClientError::Rpc(RpcError::new(
            EddyCode::NoWorkerAvailable,
            "no live worker can cache this block",
        ))
    }))
}

/// The worker placement names to fill a miss of `b`: the same one for every
/// client (rendezvous hash), minus `exclude`.
async fn miss_worker(fs: &Shared, b: &pb::FileBlock, exclude: &[u64]) -> Result<(u64, String)> {
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
    let addr = host_port(&a.host, a.data_port);
    fs.rdma.note_provider(&addr, &a.rdma_provider);
    Ok((w.worker_id, addr))
}

impl FileReader {
    pub(crate) fn new(shared: Arc<Shared>, info: Arc<FileInfo>, read_type: ReadType) -> Self {
        Self {
            shared,
            info: parking_lot::Mutex::new(info),
            read_type,
            pos: 0,
            chosen: Default::default(),
            prefetched: Default::default(),
            leases: Default::default(),
            no_lease: Default::default(),
            denied: Default::default(),
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
        let over_tcp = !self.shared.opts.short_circuit || self.no_lease.lock().contains(&index);
        if over_tcp {
            for ahead in 1..=READ_AHEAD_BLOCKS {
                self.prefetch(index + ahead);
            }
        }
        let n = self.read_range(self.pos, buf, Access::Sequential).await?;
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
        self.read_range(pos, buf, Access::Positioned).await
    }

    async fn read_range(&self, pos: u64, buf: &mut [u8], access: Access) -> Result<usize> {
        let info = self.info.lock().clone();
        let len = info.status.length;
        if pos >= len || buf.is_empty() {
            return Ok(0);
        }
        let want = (buf.len() as u64).min(len - pos) as usize;
        let mut done = 0usize;
        while done < want {
            let at = pos + done as u64;
            let (index, b) = block_at(&info, at)?;
            let off = at - b.offset;
            let n = ((b.length - off) as usize).min(want - done);
            let dst = &mut buf[done..done + n];
            match self.lease_for(index).await {
                // A worker on this host mapped the block for us.
                Some(l) => {
                    l.fetch(&mapped_range(&b, off, n), dst).await?;
                    self.shared.count_short_circuit(n);
                }
                None => self.read_block(index, off, dst, access).await?,
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
    pub(super) async fn lease_for(&self, index: usize) -> Option<Arc<Lease>> {
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
        if !self.shared.opts.short_circuit || self.no_lease.lock().contains(&index) {
            return None;
        }
        let info = self.info.lock().clone();
        if self.denied.lock().get(&index) == Some(&info.block_token) {
            return None;
        }
        let b = info.blocks.get(index)?;
        // NO_CACHE must not make the local worker cache what it lacks.
        let cached_only = self.read_type == ReadType::NoCache;
        let Some(socket) = self.shared.local_socket_for(b, cached_only).await else {
            self.no_lease.lock().insert(index);
            return None;
        };
        let worker = self.shared.local_worker(&socket);
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
                        Err(e) if e.code() == EddyCode::PermissionDenied => {
                            if *j == index {
                                self.shared.note_fallback(&e.to_string());
                            }
                            self.denied.lock().insert(*j, info.block_token.clone());
                        }
                        Err(e) if *j == index => {
                            self.shared.note_fallback(&e.to_string());
                            self.no_lease.lock().insert(index);
                        }
                        Err(_) => {}
                    }
                }
            }
            Err(e) => {
                self.shared.note_fallback(&e.to_string());
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

    pub(super) fn request(
        &self,
        info: &FileInfo,
        b: &pb::FileBlock,
        off: u64,
        len: u64,
    ) -> ReadRequest {
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
            token: info.block_token.clone(),
        }
    }

    /// Fills `dst` from block `index` at `off`: first from workers holding
    /// the block (this host's first) or the one that filled it for us, then
    /// from the worker placement picks for a miss (asked only when needed).
    /// A worker that fails is skipped; the bytes come from the next one, so
    /// they are always whole and right.
    pub(super) async fn read_block(
        &self,
        index: usize,
        off: u64,
        dst: &mut [u8],
        access: Access,
    ) -> Result<()> {
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
            locs.sort_by_key(|l| l.host != self.shared.host());
            for l in locs {
                let addr = host_port(&l.host, l.data_port);
                self.shared.rdma.note_provider(&addr, &l.rdma_provider);
                candidates.push((l.worker_id, addr));
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
                self.shared.invalidate(&info.path);
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
                        match miss_worker(&self.shared, b, &ids).await.ok() {
                            Some(c) => {
                                candidates.push(c);
                                continue;
                            }
                            None => break,
                        }
                    }
                    None => break,
                };
                match transport_for(&self.shared, &addr, &req, access)
                    .fetch(&req, dst)
                    .await
                {
                    Ok(()) => {
                        self.chosen.lock().insert(index, (worker_id, addr));
                        return Ok(());
                    }
                    Err(e) => {
                        let retry_elsewhere = try_elsewhere(&e);
                        // The worker says the request does not describe the
                        // file as it is now (renamed: another key; another
                        // file at the path: another version): re-resolve the
                        // path and try again; a path that names another file
                        // now answers NOT_FOUND (`refresh_info`).
                        // A refused block token (expired, most likely: the
                        // metadata was kept past its life) gets a fresh one
                        // with the fresh metadata, once; refused again, the
                        // refusal is the answer.
                        let stale =
                            matches!(e.code(), EddyCode::InvalidArgument | EddyCode::UfsError)
                                || (e.code() == EddyCode::PermissionDenied && round == 0);
                        if stale && round < 2 {
                            last_err = Some(e);
                            break;
                        }
                        if !retry_elsewhere {
                            self.shared.invalidate(&info.path);
                            return Err(e);
                        }
                        self.chosen.lock().remove(&index);
                        failed.push((worker_id, addr));
                        last_err = Some(e);
                    }
                }
            }
        }
        self.shared.invalidate(&self.info.lock().path.clone());
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
            let left = self.shared.opts.timeout.saturating_sub(start.elapsed());
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
        let fresh = self.shared.file_info(&path, true).await?;
        if fresh.status.id != id {
            self.shared.invalidate(&path);
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
        let (shared, b, chosen) = (self.shared.clone(), b.clone(), self.chosen.clone());
        let reader = PrefetchCtx { shared, chosen };
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
        load_somewhere(&self.shared, b, &req).await.map(|_| ())
    }
}

/// The request a mapped block is read with: no bytes move over a socket,
/// so it names only the range (and allocates nothing).
fn mapped_range(b: &pb::FileBlock, off: u64, n: usize) -> ReadRequest {
    ReadRequest {
        block_id: b.block_id,
        offset: off,
        length: n as u64,
        block_length: b.length,
        file_offset: b.offset,
        read_type: ReadType::Cache,
        source: None,
        token: Vec::new(),
    }
}

/// The block of `info` holding file offset `at`, and its index.
pub(super) fn block_at(info: &FileInfo, at: u64) -> Result<(usize, pb::FileBlock)> {
    let index = (at / info.status.block_size.max(1)) as usize;
    let b = info.blocks.get(index).cloned().ok_or_else(|| {
        ClientError::InvalidArgument(format!("offset {at} has no block in the file's metadata"))
    })?;
    Ok((index, b))
}
