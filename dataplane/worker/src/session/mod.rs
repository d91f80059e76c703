//! One write session, whichever front door drives it: the TCP server
//! streams `Data` frames into blocks the worker fills; the short-circuit
//! hands the client segments to fill and commit. Both go through this:
//! admission and the under-storage writer at open, blocks and their
//! reservations, every byte to the under-storage writer (CACHE_THROUGH,
//! THROUGH: at the staging key the master gave at create), failure, and
//! commit at close or cancel. The front doors only move bytes and frames;
//! the decisions are in [`progress`], which does no I/O.
//!
//! Nothing is cached for others or visible in the under-storage before the
//! close succeeds; a session dropped (cancel, broken connection) discards
//! its blocks and aborts its under-storage write.

mod progress;
mod uncommitted;

use std::os::fd::BorrowedFd;
use std::sync::Arc;

use eddy_ufs::UfsWriter;
use eddy_wire::{WriteOk, WriteOpen, WriteType};

pub(crate) use self::progress::Progress;
pub(crate) use self::uncommitted::{Uncommitted, commit_ids};
use crate::admit::WriteSlot;
use crate::cache::ufs_key;
use crate::error::{Result, WorkerError};
use crate::segment::SegmentWriter;
use crate::shared::Shared;
use crate::store::{BlockStore, Reservation};

/// The block being filled: streamed into by the worker, or handed to the
/// client as a segment (`pos` stays 0; the commit says the length).
struct Open {
    w: SegmentWriter,
    res: Reservation,
    pos: u64,
    /// The short-circuit's id of the segment handed out.
    segment: u64,
}

pub(crate) struct WriteSession {
    /// Holds the file against other write sessions on this worker (none in
    /// unit tests).
    _slot: Option<WriteSlot>,
    store: Arc<BlockStore>,
    progress: Progress,
    ufs: Option<Box<dyn UfsWriter>>,
    /// Each block goes into the store as soon as it is full (so it can move
    /// down a tier and memory holds one block of the write, not the whole
    /// file); the master hears of them only at close.
    done: Uncommitted,
    cur: Option<Open>,
    /// Short-circuit segments handed out so far.
    segments: u64,
}

impl WriteSession {
    /// Admits the session with the master and opens the under-storage
    /// writer (unless MUST_CACHE); an error answers the `WriteOpen`.
    pub(crate) async fn open(sh: &Shared, open: &WriteOpen) -> Result<Self> {
        let slot = sh.admit.open_write(&sh.link, open).await?;
        let ufs = match &open.target {
            Some(t) if open.write_type != WriteType::MustCache => {
                let ufs = sh.link.ufs(t.mount_id).await?;
                Some(ufs.create(&ufs_key(&t.key)?).await?)
            }
            _ => None,
        };
        Ok(Self::new(sh.store.clone(), open, ufs, Some(slot)))
    }

    pub(crate) fn new(
        store: Arc<BlockStore>,
        open: &WriteOpen,
        ufs: Option<Box<dyn UfsWriter>>,
        slot: Option<WriteSlot>,
    ) -> Self {
        Self {
            _slot: slot,
            done: Uncommitted::new(store.clone()),
            store,
            progress: Progress::new(open),
            ufs,
            cur: None,
            segments: 0,
        }
    }

    pub(crate) fn progress(&self) -> &Progress {
        &self.progress
    }

    /// Discards everything (`WriteCancel`).
    pub(crate) async fn cancel(mut self) {
        if let Some(u) = self.ufs.take() {
            u.abort().await;
        }
    }

    /// Streamed, not cached (THROUGH): `bytes` go to the under-storage only.
    pub(crate) async fn through(&mut self, bytes: &[u8]) {
        if let Some(u) = self.ufs.as_mut()
            && let Err(e) = u.write(bytes).await
        {
            self.progress.fail(e.into());
        }
        self.progress.streamed(bytes.len() as u64);
    }

    /// Streamed: `data` (a piece of a `Data` frame) goes into the open
    /// block's segment (opened, and its reservation grown, as needed), a
    /// full block into the store, and every byte to the under-storage
    /// writer. Dropped once the session has failed (the failure answers
    /// `WriteClose`).
    pub(crate) async fn stream(&mut self, mut data: &[u8]) {
        while !data.is_empty() && !self.progress.failed() {
            match self.stream_piece(data).await {
                Ok(n) => data = &data[n..],
                Err(e) => self.progress.fail(e),
            }
        }
    }

    /// As much of `data` as fits in the open block; how many bytes it took.
    async fn stream_piece(&mut self, data: &[u8]) -> Result<usize> {
        let n = self.room(data.len() as u64).await? as usize;
        let o = self.cur.as_mut().expect("opened by room");
        o.w.write_at(o.pos, &data[..n])
            .map_err(WorkerError::Memory)?;
        if let Some(u) = self.ufs.as_mut() {
            u.write(&data[..n]).await?;
        }
        self.advance(n as u64);
        Ok(n)
    }

    /// Streamed, into a mapped segment (huge pages): where the next of
    /// `left` bytes go, straight in the block's mapping, for the socket to
    /// receive into; then [`Self::received`]. `None` when the open block is
    /// not mapped (use [`Self::stream`]) or the session has failed.
    pub(crate) async fn mapped_buf(&mut self, left: u64) -> Option<&mut [u8]> {
        if self.progress.failed() {
            return None;
        }
        let n = match self.room(left).await {
            Ok(n) => n,
            Err(e) => {
                self.progress.fail(e);
                return None;
            }
        };
        let o = self.cur.as_mut().expect("opened by room");
        if !o.w.is_mapped() {
            return None;
        }
        Some(&mut o.w.as_mut_slice()[o.pos as usize..(o.pos + n) as usize])
    }

    /// Streamed: the first `n` bytes of the last [`Self::mapped_buf`] have
    /// arrived.
    pub(crate) async fn received(&mut self, n: usize) {
        let o = self.cur.as_mut().expect("a block is open");
        let range = o.pos as usize..o.pos as usize + n;
        if let Some(u) = self.ufs.as_mut()
            && let Err(e) = u.write(&o.w.as_mut_slice()[range]).await
        {
            self.progress.fail(e.into());
        }
        self.advance(n as u64);
    }

    /// Opens a block if none is, and reserves room in it for as many of
    /// `left` bytes as fit; how many.
    async fn room(&mut self, left: u64) -> Result<u64> {
        if self.cur.is_none() {
            self.cur = Some(self.open_streamed().await?);
        }
        let o = self.cur.as_mut().expect("opened above");
        let n = self.progress.piece(o.pos, left);
        if let Some(step) = self.progress.reserve_more(o.pos + n, o.res.bytes()) {
            self.store.grow(&mut o.res, step).await?;
        }
        Ok(n)
    }

    /// `n` more bytes are in the open block; a full block goes into the
    /// store.
    fn advance(&mut self, n: u64) {
        let o = self.cur.as_mut().expect("a block is open");
        o.pos += n;
        self.progress.streamed(n);
        if self.progress.full(o.pos) {
            self.seal_streamed();
        }
    }

    /// The segment's size is virtual until written; the reservation grows
    /// with the bytes that arrive.
    async fn open_streamed(&mut self) -> Result<Open> {
        let index = self.progress.stream_block()?;
        let res = self.store.reserve(0).await?;
        let name = format!("eddy-write-{}-{index}", self.progress.file_id);
        let size = self.progress.block_size;
        let w = SegmentWriter::create_streamed(&name, size, || self.store.pool.take(size))
            .map_err(WorkerError::Memory)?;
        Ok(Open {
            w,
            res,
            pos: 0,
            segment: 0,
        })
    }

    fn seal_streamed(&mut self) {
        let o = self.cur.take().expect("a block is open");
        let id = self.progress.block_id(self.progress.next_index());
        self.progress.sealed();
        let added =
            o.w.seal_with(o.pos, self.store.seal_mode())
                .map_err(WorkerError::Memory)
                .and_then(|seg| self.done.add((id, seg, o.res), self.progress.sole()));
        if let Err(e) = added {
            self.progress.fail(e);
        }
    }

    /// Streamed `WriteClose` of `length` bytes: the last block is sealed,
    /// then the write completes as [`Self::finish`] says.
    pub(crate) async fn close_streamed(mut self, sh: &Shared, length: u64) -> Result<WriteOk> {
        if !self.progress.failed() {
            self.progress.check_streamed(length);
        }
        if !self.progress.failed() && self.cur.is_some() {
            self.seal_streamed();
        }
        if let Some(e) = self.progress.take_failure() {
            self.cancel().await;
            return Err(e);
        }
        self.finish(sh).await
    }

    /// Short-circuit: a new segment of `capacity` bytes for the client to
    /// fill (its reservation taken up front); returns its id.
    pub(crate) async fn hand_segment(&mut self, capacity: u64) -> Result<u64> {
        self.progress.check_segment(capacity, self.cur.is_some())?;
        let res = self.store.reserve(capacity).await?;
        let name = format!(
            "eddy-write-{}-{}",
            self.progress.file_id,
            self.progress.next_index()
        );
        let w = match self.store.pool.take(capacity) {
            Some(w) => w.into_client(),
            None => {
                SegmentWriter::create_for_client(&name, capacity).map_err(WorkerError::Memory)?
            }
        };
        self.segments += 1;
        self.cur = Some(Open {
            w,
            res,
            pos: 0,
            segment: self.segments,
        });
        Ok(self.segments)
    }

    /// The descriptor of the segment just handed out, to send the client.
    pub(crate) fn segment_fd(&self) -> Option<BorrowedFd<'_>> {
        self.cur.as_ref().map(|o| o.w.fd())
    }

    /// Short-circuit: the client filled segment `id` with `len` bytes. It is
    /// sealed (which fails while the client still maps it writable), written
    /// to the under-storage from the sealed bytes and, unless THROUGH, put
    /// in the store. Returns the bytes committed so far.
    pub(crate) async fn commit_segment(&mut self, id: u64, len: u64) -> Result<u64> {
        let Some(o) = self.cur.take() else {
            return Err(WorkerError::InvalidArgument("no segment to commit".into()));
        };
        if o.segment != id || len > o.w.capacity() {
            return Err(WorkerError::InvalidArgument(format!(
                "segment {id} of {len} bytes does not match the segment handed out ({}, capacity {})",
                o.segment,
                o.w.capacity()
            )));
        }
        let sealed = o.w.seal(len).map_err(|e| {
            WorkerError::InvalidArgument(format!(
                "cannot seal the segment ({e}): unmap it before committing"
            ))
        })?;
        if let Some(u) = self.ufs.as_mut() {
            u.write(sealed.as_slice()).await?;
        }
        if self.progress.caches() {
            let block = self.progress.block_id(self.progress.next_index());
            self.done
                .add((block, sealed, o.res), self.progress.sole())?;
        }
        self.progress.committed(len);
        Ok(self.progress.total())
    }

    /// Short-circuit `WriteClose` of `length` bytes.
    pub(crate) async fn close_committed(self, sh: &Shared, length: u64) -> Result<WriteOk> {
        if let Err(e) = self.progress.check_committed(length, self.cur.is_some()) {
            self.cancel().await;
            return Err(e);
        }
        self.finish(sh).await
    }

    /// Completes the under-storage write, then records the cached blocks
    /// with the master. Losing only the cache copies is not a failure,
    /// except for MUST_CACHE, whose blocks are the only copy.
    async fn finish(mut self, sh: &Shared) -> Result<WriteOk> {
        let fingerprint = self.complete_ufs().await?;
        let blocks = self.done.blocks.len() as u32;
        let committed = commit_ids(sh, &self.done.blocks).await;
        self.done.keep = committed.is_ok();
        if let Err(e) = committed {
            if self.progress.sole() {
                return Err(e);
            }
            // The under-storage has the file; only the cache copy is lost.
            tracing::warn!(
                "file {}: cached blocks not recorded: {e}",
                self.progress.file_id
            );
        }
        Ok(WriteOk {
            length: self.progress.total(),
            blocks,
            fingerprint,
        })
    }

    /// Makes the under-storage file whole; its fingerprint (empty without one).
    async fn complete_ufs(&mut self) -> Result<String> {
        match self.ufs.take() {
            Some(u) => Ok(u.complete().await?.fingerprint),
            None => Ok(String::new()),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
