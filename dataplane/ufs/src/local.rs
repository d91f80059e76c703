//! A local (or NFS-mounted) directory as under-storage.

use std::io::ErrorKind;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::UNIX_EPOCH;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::{
    Capabilities, ListPage, Result, UfsError, UfsPath, UfsStatus, UfsWriter, UnderFileSystem,
    Version,
};

/// Prefix of the temporary files `write` renames into place; hidden from listings.
const TMP_PREFIX: &str = ".eddy-tmp-";

/// Numbers the temporaries of one process. Process-wide, not per instance:
/// two instances over one directory (opened concurrently, or for two mounts
/// of it) must never pick the same temporary name, or one writer's rename
/// would move the other's bytes.
static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// Under-storage rooted at a local directory. Symbolic links are followed.
#[derive(Debug)]
pub struct LocalUfs {
    root: PathBuf,
    uri: String,
}

impl LocalUfs {
    /// Opens `root`, which must be an existing directory.
    pub async fn open(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref().to_path_buf();
        let uri = format!("file://{}", root.display());
        if !root.is_absolute() {
            return Err(UfsError::InvalidUri {
                uri,
                reason: "a local under-storage path must be absolute".into(),
            });
        }
        match tokio::fs::metadata(&root).await {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(UfsError::Unavailable {
                    uri,
                    reason: "not a directory".into(),
                });
            }
            Err(e) => {
                return Err(UfsError::Unavailable {
                    uri,
                    reason: e.to_string(),
                });
            }
        }
        Ok(Self { root, uri })
    }

    fn full(&self, p: &UfsPath) -> PathBuf {
        if p.is_root() {
            self.root.clone()
        } else {
            self.root.join(p.as_str())
        }
    }

    /// The root itself gone (an unmounted disk, a deleted export) makes the
    /// whole store unavailable, not every path "not found".
    fn root_gone(&self) -> Option<UfsError> {
        match std::fs::metadata(&self.root) {
            Ok(m) if m.is_dir() => None,
            Ok(_) => Some(UfsError::Unavailable {
                uri: self.uri.clone(),
                reason: "root is no longer a directory".into(),
            }),
            Err(e) => Some(UfsError::Unavailable {
                uri: self.uri.clone(),
                reason: e.to_string(),
            }),
        }
    }

    /// pread straight into the caller's buffer, from the file open at
    /// `path` — checked against `want` on that same descriptor, so the
    /// version checked is the version read. It blocks, so on a
    /// multi-threaded runtime the worker thread hands its other tasks off
    /// first (block_in_place); elsewhere (tests) it just runs.
    fn pread(
        &self,
        path: &UfsPath,
        offset: u64,
        buf: &mut [u8],
        want: Option<&Version>,
    ) -> Result<usize> {
        use std::os::unix::fs::FileExt;
        let full = self.full(path);
        let mut read = || -> Result<usize> {
            let f = std::fs::File::open(&full).map_err(|e| self.io_err(path, e))?;
            let meta = f.metadata().map_err(|e| self.io_err(path, e))?;
            if meta.is_dir() {
                return Err(UfsError::IsADirectory(path.to_string()));
            }
            if let Some(want) = want {
                want.check(path, &status_of(path.name(), &meta))?;
            }
            let mut done = 0;
            while done < buf.len() {
                match f.read_at(&mut buf[done..], offset + done as u64) {
                    Ok(0) => break,
                    Ok(n) => done += n,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Err(self.io_err(path, e)),
                }
            }
            Ok(done)
        };
        let multi = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if multi {
            tokio::task::block_in_place(read)
        } else {
            read()
        }
    }

    /// rename(2) of `from` to `to`, creating `to`'s parent directories first.
    async fn rename_creating_parent(&self, from: &UfsPath, to: &UfsPath) -> Result<()> {
        let (src, dst) = (self.full(from), self.full(to));
        if let Some(parent) = dst.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| self.io_err(to, e))?;
        }
        tokio::fs::rename(&src, &dst)
            .await
            .map_err(|e| self.io_err(from, e))
    }

    /// Fails unless the root is there: creating parents must never recreate it.
    fn require_root(&self) -> Result<()> {
        self.root_gone().map_or(Ok(()), Err)
    }

    fn io_err(&self, p: &UfsPath, e: std::io::Error) -> UfsError {
        let shown = p.to_string();
        match e.kind() {
            ErrorKind::NotFound => self.root_gone().unwrap_or(UfsError::NotFound(shown)),
            ErrorKind::AlreadyExists => UfsError::AlreadyExists(shown),
            ErrorKind::NotADirectory => UfsError::NotADirectory(shown),
            ErrorKind::IsADirectory => UfsError::IsADirectory(shown),
            ErrorKind::DirectoryNotEmpty => UfsError::DirectoryNotEmpty(shown),
            _ => UfsError::Io {
                path: format!("{}{}", self.uri, shown),
                source: e,
            },
        }
    }
}

fn status_of(name: &str, m: &std::fs::Metadata) -> UfsStatus {
    let mtime = m
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok());
    let mtime_ns = mtime.map(|d| d.as_nanos()).unwrap_or(0);
    let is_dir = m.is_dir();
    UfsStatus {
        name: name.to_string(),
        is_dir,
        length: if is_dir { 0 } else { m.len() },
        mtime_ms: mtime.map(|d| d.as_millis() as i64).unwrap_or(0),
        fingerprint: if is_dir {
            String::new()
        } else {
            format!("{}:{}", m.len(), mtime_ns)
        },
    }
}

#[async_trait]
impl UnderFileSystem for LocalUfs {
    fn uri(&self) -> &str {
        &self.uri
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            atomic_rename: true,
            real_directories: true,
        }
    }

    async fn stat(&self, path: &UfsPath) -> Result<UfsStatus> {
        // In place, not on the blocking pool: a stat answers from the dentry
        // cache in microseconds, while the pool's hand-off and the wake-up
        // back cost two thread switches (about 100 us on a small VM) on
        // every create of a new name, which stats it first (docs/UFS.md).
        // `root_gone` has always stat'ed in place too.
        let m = std::fs::metadata(self.full(path)).map_err(|e| self.io_err(path, e))?;
        Ok(status_of(path.name(), &m))
    }

    async fn list(
        &self,
        dir: &UfsPath,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<ListPage> {
        let limit = limit.max(1);
        let full = self.full(dir);
        let meta = tokio::fs::metadata(&full)
            .await
            .map_err(|e| self.io_err(dir, e))?;
        if !meta.is_dir() {
            return Err(UfsError::NotADirectory(dir.to_string()));
        }
        // A directory is read whole to sort it: local directories are bounded by
        // what one host's file system holds; object stores page natively.
        let mut rd = tokio::fs::read_dir(&full)
            .await
            .map_err(|e| self.io_err(dir, e))?;
        // (listing key, name)
        let mut names: Vec<(String, String)> = Vec::new();
        while let Some(entry) = rd.next_entry().await.map_err(|e| self.io_err(dir, e))? {
            // Names that are not UTF-8 cannot be Eddy paths; they stay invisible.
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if name.starts_with(TMP_PREFIX) {
                continue;
            }
            // The entry type comes with the directory read (no stat per
            // entry); only symlinks are followed, as the stat below does.
            let is_dir = match entry.file_type().await {
                Ok(t) if t.is_symlink() => tokio::fs::metadata(entry.path())
                    .await
                    .is_ok_and(|m| m.is_dir()),
                Ok(t) => t.is_dir(),
                Err(_) => false,
            };
            let key = crate::listing_key(&name, is_dir).into_owned();
            if start_after.is_none_or(|s| key.as_str() > s) {
                names.push((key, name));
            }
        }
        names.sort_unstable();
        let more = names.len() > limit;
        names.truncate(limit);
        let mut entries = Vec::with_capacity(names.len());
        for (_, name) in names {
            // An entry deleted between read_dir and stat is simply skipped.
            match tokio::fs::metadata(full.join(&name)).await {
                Ok(m) => entries.push(status_of(&name, &m)),
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(self.io_err(dir, e)),
            }
        }
        let next_start_after = if more {
            entries
                .last()
                .map(|e| crate::listing_key(&e.name, e.is_dir).into_owned())
        } else {
            None
        };
        Ok(ListPage {
            entries,
            next_start_after,
        })
    }

    async fn read(&self, path: &UfsPath, range: Range<u64>) -> Result<Bytes> {
        let mut f = tokio::fs::File::open(self.full(path))
            .await
            .map_err(|e| self.io_err(path, e))?;
        let len = f.metadata().await.map_err(|e| self.io_err(path, e))?;
        if len.is_dir() {
            return Err(UfsError::IsADirectory(path.to_string()));
        }
        let end = range.end.min(len.len());
        if range.start >= end {
            return Ok(Bytes::new());
        }
        f.seek(std::io::SeekFrom::Start(range.start))
            .await
            .map_err(|e| self.io_err(path, e))?;
        let mut buf = vec![0u8; (end - range.start) as usize];
        f.read_exact(&mut buf)
            .await
            .map_err(|e| self.io_err(path, e))?;
        Ok(Bytes::from(buf))
    }

    async fn read_into(&self, path: &UfsPath, offset: u64, buf: &mut [u8]) -> Result<usize> {
        self.pread(path, offset, buf, None)
    }

    async fn read_into_version(
        &self,
        path: &UfsPath,
        offset: u64,
        buf: &mut [u8],
        want: &Version,
    ) -> Result<usize> {
        self.pread(path, offset, buf, Some(want))
    }

    async fn create(&self, path: &UfsPath) -> Result<Box<dyn UfsWriter>> {
        if path.is_root() {
            return Err(UfsError::IsADirectory(path.to_string()));
        }
        self.require_root()?;
        let full = self.full(path);
        let parent = full.parent().expect("a non-root key has a parent");
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|e| self.io_err(path, e))?;
        if tokio::fs::metadata(&full).await.is_ok_and(|m| m.is_dir()) {
            return Err(UfsError::IsADirectory(path.to_string()));
        }
        // Write beside the target, rename into place on completion.
        let seq = TMP_SEQ.fetch_add(1, Ordering::Relaxed);
        let tmp = parent.join(format!("{TMP_PREFIX}{}-{seq}", std::process::id()));
        let file = tokio::fs::File::create(&tmp)
            .await
            .map_err(|e| self.io_err(path, e))?;
        Ok(Box::new(LocalWriter {
            file: Some(tokio::io::BufWriter::with_capacity(1 << 20, file)),
            tmp,
            full,
            key: path.clone(),
            uri: self.uri.clone(),
        }))
    }

    async fn write(&self, path: &UfsPath, data: Bytes) -> Result<UfsStatus> {
        // The streamed writer already writes beside the target and renames
        // into place: readers never see a half-written file, and a crash
        // leaves only a hidden temporary.
        let mut w = self.create(path).await?;
        w.write(&data).await?;
        w.complete().await
    }

    async fn mkdir(&self, path: &UfsPath) -> Result<()> {
        self.require_root()?;
        let full = self.full(path);
        match tokio::fs::create_dir_all(&full).await {
            Ok(()) => Ok(()),
            Err(e) => {
                // create_dir_all over a file reports AlreadyExists; say what it is.
                if tokio::fs::metadata(&full).await.is_ok_and(|m| !m.is_dir()) {
                    Err(UfsError::NotADirectory(path.to_string()))
                } else {
                    Err(self.io_err(path, e))
                }
            }
        }
    }

    async fn delete(&self, path: &UfsPath, recursive: bool) -> Result<()> {
        let full = self.full(path);
        let m = tokio::fs::symlink_metadata(&full)
            .await
            .map_err(|e| self.io_err(path, e))?;
        let r = if m.is_dir() {
            if path.is_root() {
                return Err(UfsError::Unsupported(
                    "refusing to delete the root of an under-storage".into(),
                ));
            }
            if recursive {
                tokio::fs::remove_dir_all(&full).await
            } else {
                tokio::fs::remove_dir(&full).await
            }
        } else {
            tokio::fs::remove_file(&full).await
        };
        r.map_err(|e| self.io_err(path, e))
    }

    async fn rename(&self, from: &UfsPath, to: &UfsPath) -> Result<()> {
        if from.is_root() || to.is_root() {
            return Err(UfsError::Unsupported(
                "cannot rename the root of an under-storage".into(),
            ));
        }
        self.require_root()?;
        let (src, dst) = (self.full(from), self.full(to));
        tokio::fs::symlink_metadata(&src)
            .await
            .map_err(|e| self.io_err(from, e))?;
        if tokio::fs::symlink_metadata(&dst).await.is_ok() {
            return Err(UfsError::AlreadyExists(to.to_string()));
        }
        self.rename_creating_parent(from, to).await
    }

    /// One rename(2): atomic, and it replaces a file at `to`.
    async fn place(&self, from: &UfsPath, to: &UfsPath) -> Result<()> {
        if from.is_root() || to.is_root() {
            return Err(UfsError::IsADirectory(to.to_string()));
        }
        self.require_root()?;
        if tokio::fs::metadata(self.full(to))
            .await
            .is_ok_and(|m| m.is_dir())
        {
            return Err(UfsError::IsADirectory(to.to_string()));
        }
        self.rename_creating_parent(from, to).await
    }
}

/// A streamed write to a hidden temporary beside the target, renamed into
/// place on completion (so readers never see a partial file).
struct LocalWriter {
    file: Option<tokio::io::BufWriter<tokio::fs::File>>,
    tmp: PathBuf,
    full: PathBuf,
    key: UfsPath,
    uri: String,
}

impl LocalWriter {
    fn err(&self, e: std::io::Error) -> UfsError {
        UfsError::Io {
            path: format!("{}/{}", self.uri, self.key),
            source: e,
        }
    }
}

#[async_trait]
impl UfsWriter for LocalWriter {
    async fn write(&mut self, data: &[u8]) -> Result<()> {
        use tokio::io::AsyncWriteExt;
        let f = self.file.as_mut().expect("open until complete or abort");
        let r = f.write_all(data).await;
        r.map_err(|e| self.err(e))
    }

    async fn complete(mut self: Box<Self>) -> Result<UfsStatus> {
        use tokio::io::AsyncWriteExt;
        let mut f = self.file.take().expect("open until complete or abort");
        let r = async {
            f.flush().await?;
            f.get_ref().sync_all().await?;
            // Of the file itself, before it is in place: once renamed, it
            // may already be gone again (Eddy removes a staging object
            // whose file was deleted while being written).
            let meta = f.get_ref().metadata().await?;
            drop(f);
            tokio::fs::rename(&self.tmp, &self.full).await?;
            Ok::<_, std::io::Error>(meta)
        }
        .await;
        let meta = r.map_err(|e| self.err(e))?;
        Ok(status_of(self.key.name(), &meta))
    }

    async fn abort(mut self: Box<Self>) {
        self.file.take();
        let _ = tokio::fs::remove_file(&self.tmp).await;
    }
}

impl Drop for LocalWriter {
    fn drop(&mut self) {
        // Neither completed nor aborted (the writer was dropped mid-way).
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}
