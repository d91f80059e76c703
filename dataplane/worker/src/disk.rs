//! Disk-tier block files: where they live, how they are written (O_DIRECT,
//! through the I/O engine), read and found again after a restart.
//!
//! Layout (docs/TIERS.md): each configured directory holds a folder
//! `eddy-blocks/`; a block is the file named by its id as 16 lower-case hex
//! digits, with the suffix `.sole` when it is the only copy of its data
//! (written MUST_CACHE and never persisted). A block is written under
//! `.tmp-<id>`, cut to its length, synced, then renamed into place, so a
//! name without the prefix is always a whole block. Block files are never
//! changed after the rename; they are only unlinked. That is what makes
//! handing their descriptors to co-located clients safe.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use crate::io::{ALIGN, AlignedBuf, Engine};
use crate::segment::Segment;

/// The folder inside each tier directory that holds block files.
pub const BLOCKS_DIR: &str = "eddy-blocks";
const TMP_PREFIX: &str = ".tmp-";
const SOLE_SUFFIX: &str = ".sole";
/// Bytes per I/O operation when copying or streaming blocks.
pub const CHUNK: usize = crate::io::IO_CHUNK;
/// Operations kept in flight by one block copy or read.
const DEPTH: usize = 8;

/// One directory of a disk tier.
#[derive(Debug, Clone)]
pub struct Dir {
    /// As configured.
    pub root: PathBuf,
    /// `root/eddy-blocks`.
    pub blocks: PathBuf,
    pub quota: u64,
}

impl Dir {
    pub fn new(root: impl Into<PathBuf>, quota: u64) -> Self {
        let root = root.into();
        Self {
            blocks: root.join(BLOCKS_DIR),
            root,
            quota,
        }
    }

    pub fn block_path(&self, id: u64, sole: bool) -> PathBuf {
        let suffix = if sole { SOLE_SUFFIX } else { "" };
        self.blocks.join(format!("{id:016x}{suffix}"))
    }

    /// Whether the folder is there and is a directory (a cheap health probe).
    pub fn probe(&self) -> Result<(), DirError> {
        match std::fs::metadata(&self.blocks) {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => Err(DirError::NotADirectory(self.blocks.clone())),
            Err(e) => Err(DirError::Io {
                path: self.blocks.clone(),
                source: e,
            }),
        }
    }

    /// Whether a probe file can be written, synced and removed in the
    /// folder (part of the probe a directory out of service must pass to
    /// come back). The probe file has the temporary prefix, so a crash
    /// leaves nothing a restart keeps.
    pub fn probe_write(&self) -> std::io::Result<()> {
        use std::io::Write;
        let path = self.blocks.join(format!("{TMP_PREFIX}probe"));
        let wrote = File::create(&path)
            .and_then(|mut f| f.write_all(&[0u8; ALIGN]).and_then(|()| f.sync_all()));
        let removed = std::fs::remove_file(&path);
        wrote.and(removed)
    }

    /// Bytes free (for unprivileged users) on the folder's filesystem.
    pub fn fs_free(&self) -> Result<u64, DirError> {
        let st = rustix::fs::statvfs(&self.blocks).map_err(|e| DirError::Io {
            path: self.blocks.clone(),
            source: e.into(),
        })?;
        Ok(st.f_bavail.saturating_mul(st.f_frsize))
    }
}

/// Why a disk-tier directory fails its probe (shown by `eddy report`).
#[derive(Debug, thiserror::Error)]
pub enum DirError {
    #[error("{} is not a directory", .0.display())]
    NotADirectory(PathBuf),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Writing, syncing or removing the probe file failed.
    #[error("{}: probe file: {source}", path.display())]
    ProbeFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {free} bytes free on its filesystem, {need} needed", path.display())]
    TooLittleRoom { path: PathBuf, free: u64, need: u64 },
}

/// Whether a write failed because the filesystem (or the user's quota on
/// it) is full, rather than because the directory is broken.
pub fn is_full(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
}

/// A block held in a file on a disk tier.
#[derive(Debug)]
pub struct DiskBlock {
    pub id: u64,
    pub len: u64,
    pub path: PathBuf,
    /// Index of the disk tier (0 = the first tier below memory).
    pub tier: usize,
    pub dir: usize,
    pub sole: bool,
    /// The O_DIRECT descriptor while someone reads: opened on demand, so
    /// idle blocks hold no descriptor.
    open: Mutex<Weak<File>>,
}

impl DiskBlock {
    pub fn new(id: u64, len: u64, path: PathBuf, tier: usize, dir: usize, sole: bool) -> Self {
        Self {
            id,
            len,
            path,
            tier,
            dir,
            sole,
            open: Mutex::new(Weak::new()),
        }
    }

    /// A descriptor for the I/O engine (O_DIRECT where the filesystem takes it).
    pub fn file(&self) -> std::io::Result<Arc<File>> {
        let mut g = self.open.lock();
        if let Some(f) = g.upgrade() {
            return Ok(f);
        }
        let f = Arc::new(open_read(&self.path, true)?);
        *g = Arc::downgrade(&f);
        Ok(f)
    }

    /// A plain read-only descriptor, for a co-located client to read or map.
    pub fn client_fd(&self) -> std::io::Result<File> {
        open_read(&self.path, false)
    }
}

fn open_read(path: &Path, direct: bool) -> std::io::Result<File> {
    let open = |flags| {
        OpenOptions::new()
            .read(true)
            .custom_flags(flags | libc::O_CLOEXEC)
            .open(path)
    };
    if direct {
        // tmpfs and some others refuse O_DIRECT: read through the page cache.
        open(libc::O_DIRECT).or_else(|_| open(0))
    } else {
        open(0)
    }
}

/// Where a block's bytes come from when it is written to a disk tier.
#[derive(Clone)]
pub enum Source {
    Mem(Arc<Segment>),
    Disk(Arc<DiskBlock>),
    /// Bytes read from the under-storage for a block that goes straight
    /// to a disk tier (memory had no room).
    Bytes(bytes::Bytes),
}

impl Source {
    pub fn len(&self) -> u64 {
        match self {
            Source::Mem(s) => s.len(),
            Source::Disk(d) => d.len,
            Source::Bytes(b) => b.len() as u64,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Writes a whole block into `dir` and returns its final path. On error
/// nothing is left behind (the temporary file is removed).
pub async fn write_block(
    engine: &Arc<Engine>,
    dir: &Dir,
    id: u64,
    sole: bool,
    src: &Source,
) -> std::io::Result<PathBuf> {
    let tmp = dir.blocks.join(format!("{TMP_PREFIX}{id:016x}"));
    let dst = dir.block_path(id, sole);
    let r = write_tmp(engine, &tmp, src).await;
    let r = match r {
        Ok(()) => std::fs::rename(&tmp, &dst),
        Err(e) => Err(e),
    };
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r.map(|()| dst)
}

async fn write_tmp(engine: &Arc<Engine>, tmp: &Path, src: &Source) -> std::io::Result<()> {
    let create = |flags| {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            // Owner only, whatever the umask: a block file is file data.
            .mode(0o600)
            .custom_flags(flags | libc::O_CLOEXEC)
            .open(tmp)
    };
    let file = Arc::new(create(libc::O_DIRECT).or_else(|_| create(0))?);
    let len = src.len();
    let src_file = match src {
        Source::Disk(d) => Some(d.file()?),
        Source::Mem(_) | Source::Bytes(_) => None,
    };
    let mut inflight = tokio::task::JoinSet::new();
    let mut off = 0u64;
    while off < len {
        let n = (len - off).min(CHUNK as u64) as usize;
        let mut buf = engine.buffer(CHUNK);
        match (src, &src_file) {
            (Source::Mem(seg), _) => {
                buf.fill(&seg.as_slice()[off as usize..off as usize + n]);
            }
            (Source::Bytes(b), _) => {
                buf.fill(&b[off as usize..off as usize + n]);
            }
            (Source::Disk(_), Some(f)) => {
                let (r, b) = engine
                    .read_at(f.clone(), off, buf, n.div_ceil(ALIGN) * ALIGN)
                    .await;
                buf = b;
                if r? < n {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "a disk-tier block file is shorter than its block",
                    ));
                }
            }
            (Source::Disk(_), None) => unreachable!("opened above"),
        }
        // O_DIRECT writes whole 4 KiB units; the file is cut to length below.
        buf.set_len(n.div_ceil(ALIGN) * ALIGN);
        let (engine, file) = (engine.clone(), file.clone());
        inflight.spawn(async move {
            let want = buf.len();
            let (r, buf) = engine.write_at(file.clone(), off, buf).await;
            let r = match r {
                Ok(k) if k == want => Ok(()),
                // A short write (typically a full disk): writing the rest
                // tells why (ENOSPC, EIO), so the directory is marked with
                // the real reason. Rare path: a plain blocking call.
                Ok(k) => {
                    use std::os::unix::fs::FileExt;
                    match file.write_at(&buf.as_slice()[k..], off + k as u64) {
                        Err(e) => Err(e),
                        Ok(_) => Err(std::io::Error::new(
                            std::io::ErrorKind::WriteZero,
                            format!("short write: {k} of {want} bytes"),
                        )),
                    }
                }
                Err(e) => Err(e),
            };
            engine.recycle(buf);
            r
        });
        while inflight.len() >= DEPTH {
            join_one(&mut inflight).await?;
        }
        off += n as u64;
    }
    while !inflight.is_empty() {
        join_one(&mut inflight).await?;
    }
    file.set_len(len)?;
    file.sync_data()?;
    Ok(())
}

async fn join_one(set: &mut tokio::task::JoinSet<std::io::Result<()>>) -> std::io::Result<()> {
    match set.join_next().await {
        Some(Ok(r)) => r,
        Some(Err(e)) => Err(std::io::Error::other(e.to_string())),
        None => Ok(()),
    }
}

/// Reads a range of a block file in order, in pieces of at most [`CHUNK`]
/// bytes, keeping a few reads in flight ahead of the consumer.
pub struct RangeReader {
    engine: Arc<Engine>,
    file: Arc<File>,
    start: u64,
    end: u64,
    /// Aligned offsets still to submit.
    next: u64,
    queue: std::collections::VecDeque<(u64, crate::io::Pending)>,
    spare: Vec<AlignedBuf>,
    path: PathBuf,
}

impl RangeReader {
    /// Opens the block's file; fails early (before any byte is promised to
    /// a peer) when it is gone or the range is outside the block.
    pub fn new(
        engine: &Arc<Engine>,
        block: &DiskBlock,
        offset: u64,
        len: u64,
    ) -> std::io::Result<Self> {
        if offset.checked_add(len).is_none_or(|end| end > block.len) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "range {offset}+{len} is outside block {} ({} bytes)",
                    block.id, block.len
                ),
            ));
        }
        Ok(Self {
            engine: engine.clone(),
            file: block.file()?,
            start: offset,
            end: offset + len,
            // Only the 4 KiB-aligned span around the range is read.
            next: offset / ALIGN as u64 * ALIGN as u64,
            queue: Default::default(),
            spare: Vec::new(),
            path: block.path.clone(),
        })
    }

    /// The next piece: a buffer and the range of it that belongs to the
    /// requested bytes. Hand the buffer back with [`RangeReader::recycle`].
    pub async fn next(&mut self) -> Option<std::io::Result<(AlignedBuf, std::ops::Range<usize>)>> {
        while self.next < self.end && self.queue.len() < DEPTH {
            let buf = self
                .spare
                .pop()
                .unwrap_or_else(|| self.engine.buffer(CHUNK));
            let at = self.next;
            let span_end = self.end.div_ceil(ALIGN as u64) * ALIGN as u64;
            let want = (span_end - at).min(CHUNK as u64) as usize;
            let job = self.engine.start_read(self.file.clone(), at, buf, want);
            self.queue.push_back((at, job));
            self.next += CHUNK as u64;
        }
        let (at, job) = self.queue.pop_front()?;
        let (r, buf) = job.await;
        let got = match r {
            Ok(n) => n as u64,
            Err(e) => return Some(Err(e)),
        };
        let lo = self.start.max(at) - at;
        let hi = self.end.min(at + CHUNK as u64) - at;
        // `got` may stop at the file's end, inside the last aligned unit.
        if got < hi {
            return Some(Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "block file {} is shorter than its block",
                    self.path.display()
                ),
            )));
        }
        Some(Ok((buf, lo as usize..hi as usize)))
    }

    pub fn recycle(&mut self, buf: AlignedBuf) {
        if self.spare.len() < DEPTH {
            self.spare.push(buf);
        } else {
            self.engine.recycle(buf);
        }
    }
}

impl Drop for RangeReader {
    fn drop(&mut self) {
        for b in self.spare.drain(..) {
            self.engine.recycle(b);
        }
    }
}

/// Reads a whole range into a vector (tests, small reads).
pub async fn read_all(
    engine: &Arc<Engine>,
    block: &DiskBlock,
    offset: u64,
    len: u64,
) -> std::io::Result<Vec<u8>> {
    let mut r = RangeReader::new(engine, block, offset, len)?;
    let mut out = Vec::with_capacity(len as usize);
    while let Some(piece) = r.next().await {
        let (buf, range) = piece?;
        out.extend_from_slice(&buf.as_slice()[range]);
        r.recycle(buf);
    }
    Ok(out)
}

/// A block found by [`scan`].
#[derive(Debug, PartialEq, Eq)]
pub struct Found {
    pub id: u64,
    pub len: u64,
    pub sole: bool,
    pub path: PathBuf,
}

/// Creates `dir`'s block folder if needed and lists the blocks in it.
/// Leftover temporary files (a write cut short by a crash) are removed;
/// names Eddy did not write are left alone.
pub fn scan(dir: &Dir) -> std::io::Result<Vec<Found>> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    // Cached blocks are other users' data: the block folder is the worker's.
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir.blocks)?;
    std::fs::set_permissions(&dir.blocks, std::fs::Permissions::from_mode(0o700))?;
    let mut out = Vec::new();
    for e in std::fs::read_dir(&dir.blocks)? {
        let e = e?;
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with(TMP_PREFIX) {
            let _ = std::fs::remove_file(e.path());
            continue;
        }
        let (hex, sole) = match name.strip_suffix(SOLE_SUFFIX) {
            Some(h) => (h, true),
            None => (name, false),
        };
        if hex.len() != 16 {
            continue;
        }
        let Ok(id) = u64::from_str_radix(hex, 16) else {
            continue;
        };
        let m = e.metadata()?;
        if !m.is_file() {
            continue;
        }
        out.push(Found {
            id,
            len: m.len(),
            sole,
            path: e.path(),
        });
    }
    out.sort_by_key(|f| f.id);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::SegmentWriter;

    fn seg(bytes: &[u8]) -> Arc<Segment> {
        let mut w = SegmentWriter::create("t", bytes.len() as u64, false).unwrap();
        w.as_mut_slice()[..bytes.len()].copy_from_slice(bytes);
        Arc::new(w.seal(bytes.len() as u64).unwrap())
    }

    async fn roundtrip(engine: Arc<Engine>) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Dir::new(tmp.path(), 1 << 30);
        assert!(scan(&dir).unwrap().is_empty());
        // Shapes: empty, under a page, unaligned over several chunks.
        for (id, len) in [(1u64, 0usize), (2, 100), (3, 3 * CHUNK + 12345)] {
            let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let path = write_block(&engine, &dir, id, id == 2, &Source::Mem(seg(&data)))
                .await
                .unwrap();
            let b = Arc::new(DiskBlock::new(id, len as u64, path, 0, 0, id == 2));
            // Any range reads back the same bytes.
            let small = (len / 7, 5000.min(len - len / 7));
            for (off, n) in [(0, len), (len / 3, len / 2), (len, 0), small] {
                let got = read_all(&engine, &b, off as u64, n as u64).await.unwrap();
                assert!(
                    got == data[off..off + n],
                    "{} {id} {off}+{n}",
                    engine.name()
                );
            }
            // Disk to disk (demotion between disk tiers).
            let dir2 = Dir::new(tmp.path().join("lower"), 1 << 30);
            scan(&dir2).unwrap();
            let p2 = write_block(&engine, &dir2, id, false, &Source::Disk(b.clone()))
                .await
                .unwrap();
            assert_eq!(std::fs::read(p2).unwrap(), data);
            let e = read_all(&engine, &b, len as u64, 1).await.unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
        }
        std::fs::write(dir.blocks.join(".tmp-0000000000000009"), b"torn").unwrap();
        std::fs::write(dir.blocks.join("notes.txt"), b"not ours").unwrap();
        let found = scan(&dir).unwrap();
        let got: Vec<(u64, u64, bool)> = found.iter().map(|f| (f.id, f.len, f.sole)).collect();
        assert_eq!(
            got,
            [
                (1, 0, false),
                (2, 100, true),
                (3, 3 * CHUNK as u64 + 12345, false)
            ]
        );
        assert!(!dir.blocks.join(".tmp-0000000000000009").exists());
        assert!(dir.blocks.join("notes.txt").exists());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn block_files_round_trip_with_every_engine() {
        roundtrip(Arc::new(Engine::pread())).await;
        roundtrip(Arc::new(Engine::detect(32, 0))).await;
    }

    #[tokio::test]
    async fn a_failed_write_leaves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Dir::new(tmp.path(), 1 << 20);
        // No block folder: the write fails and reports why.
        let e = write_block(
            &Arc::new(Engine::pread()),
            &dir,
            7,
            false,
            &Source::Mem(seg(b"x")),
        )
        .await
        .unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
        assert!(dir.probe().is_err());
        assert!(!tmp.path().join(BLOCKS_DIR).exists());
    }
}
