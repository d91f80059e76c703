//! Under-storage ("UFS"): where the data really lives.
//!
//! One narrow async trait, [`UnderFileSystem`], shaped like an object store so
//! that S3, GCS and Azure fit it as well as a local directory does. Keys are
//! relative, `/`-separated paths ([`UfsPath`]); the empty path is the mount's
//! root. Every backend passes the shared [`contract`] suite.
//!
//! Architecture invariant: this crate sits at the bottom of the graph. It knows
//! nothing of the master, the worker or protobuf.

pub mod contract;
mod local;
mod object;
mod path;
mod store_error;
#[cfg(feature = "testkit")]
pub mod testkit;
mod version;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

pub use local::LocalUfs;
pub use object::{ObjectUfs, UfsDefaults, UnknownOption};
pub use path::UfsPath;
pub use version::{Version, digest, digest_hex};

/// What a backend can and cannot do natively.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// `rename` is a single atomic operation (local: yes; object stores: copy + delete, no).
    pub atomic_rename: bool,
    /// Directories are real objects (local: yes; object stores: emulated by prefixes).
    pub real_directories: bool,
}

/// Metadata of one entry in the under-storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UfsStatus {
    /// Last path component (empty for the root).
    pub name: String,
    pub is_dir: bool,
    /// Bytes; 0 for directories.
    pub length: u64,
    /// Milliseconds since the Unix epoch.
    pub mtime_ms: i64,
    /// Changes whenever the content may have changed (size + mtime, or etag).
    /// Empty for directories.
    pub fingerprint: String,
}

/// One page of a directory listing, in listing order (see [`listing_key`]).
#[derive(Debug, Clone, Default)]
pub struct ListPage {
    pub entries: Vec<UfsStatus>,
    /// `Some(key)`: more entries follow; pass it as `start_after`. It is the
    /// [`listing_key`] of the last entry.
    pub next_start_after: Option<String>,
}

/// The order listings come in: by name bytewise, where a directory counts
/// as its name followed by `/`. That is the order object stores list keys
/// in (`a.txt` < `a/x`), so they can page without reading ahead; every
/// backend uses it so that callers can rely on one order across pages.
pub fn listing_key(name: &str, is_dir: bool) -> std::borrow::Cow<'_, str> {
    if is_dir {
        std::borrow::Cow::Owned(format!("{name}/"))
    } else {
        std::borrow::Cow::Borrowed(name)
    }
}

/// Errors of the under-storage layer.
#[derive(Debug, thiserror::Error)]
pub enum UfsError {
    #[error("{0}: not found in under-storage")]
    NotFound(String),
    #[error("{0}: already exists in under-storage")]
    AlreadyExists(String),
    #[error("{0}: not a directory in under-storage")]
    NotADirectory(String),
    #[error("{0}: is a directory in under-storage")]
    IsADirectory(String),
    #[error("{0}: directory not empty in under-storage")]
    DirectoryNotEmpty(String),
    #[error("under-storage {uri} is unreachable: {reason}")]
    Unavailable { uri: String, reason: String },
    #[error("invalid under-storage URI {uri}: {reason}")]
    InvalidUri { uri: String, reason: String },
    #[error("{0}")]
    Unsupported(String),
    /// What is at the path is not the version the reader asked for
    /// ([`UnderFileSystem::read_into_version`]).
    #[error("{path}: the under-storage file changed ({reason}); re-read the file's metadata")]
    Changed { path: String, reason: String },
    #[error("under-storage I/O error on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl UfsError {
    /// The name of the Eddy error code this error travels under wherever it
    /// crosses a wire (`ErrorCode` in `master.proto`, docs/ERRORS.md). The
    /// master and the worker both map an under-storage error by this one
    /// table, so a client gets the same code from either. (`eddy-ufs`
    /// depends on nothing of Eddy's, so it names the code.)
    pub fn code_name(&self) -> &'static str {
        match self {
            UfsError::NotFound(_) => "NOT_FOUND",
            UfsError::AlreadyExists(_) => "ALREADY_EXISTS",
            UfsError::NotADirectory(_) => "NOT_A_DIRECTORY",
            UfsError::IsADirectory(_) => "IS_A_DIRECTORY",
            UfsError::DirectoryNotEmpty(_) => "DIRECTORY_NOT_EMPTY",
            UfsError::Unavailable { .. } => "UFS_UNAVAILABLE",
            UfsError::InvalidUri { .. } => "INVALID_ARGUMENT",
            UfsError::Unsupported(_) => "UNSUPPORTED",
            UfsError::Changed { .. } | UfsError::Io { .. } => "UFS_ERROR",
        }
    }
}

pub type Result<T, E = UfsError> = std::result::Result<T, E>;

/// What a secret option's value is replaced with wherever options are shown.
pub const MASKED: &str = "******";

/// Whether a mount option holds a credential (secret keys, passwords,
/// tokens, access keys, SAS keys): such values are never shown back.
pub fn is_secret_option(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["secret", "password", "token", "key", "credential", "sas"]
        .iter()
        .any(|s| k.contains(s))
}

/// The under-storage boundary. Implementations are cheap to share (`Arc`).
#[async_trait]
pub trait UnderFileSystem: Send + Sync + Debug {
    /// The URI this instance was opened with, e.g. `file:///data`.
    fn uri(&self) -> &str;

    fn capabilities(&self) -> Capabilities;

    /// Status of `path`, or `NotFound`.
    async fn stat(&self, path: &UfsPath) -> Result<UfsStatus>;

    /// One page of the direct children of directory `dir`, in listing order
    /// ([`listing_key`]), starting strictly after the key `start_after`, at
    /// most `limit` (>= 1).
    async fn list(
        &self,
        dir: &UfsPath,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<ListPage>;

    /// Bytes `range` of file `path`; a range past the end is cut at the end.
    async fn read(&self, path: &UfsPath, range: Range<u64>) -> Result<Bytes>;

    /// Reads from `offset` into `buf` until it is full or the file ends;
    /// returns the bytes read. Backends override this to fill `buf` in place
    /// (workers read cache fills straight into a block's segment).
    async fn read_into(&self, path: &UfsPath, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let end = offset.saturating_add(buf.len() as u64);
        let data = self.read(path, offset..end).await?;
        buf[..data.len()].copy_from_slice(&data);
        Ok(data.len())
    }

    /// Like [`Self::read_into`], but only from `want`, the version of the
    /// file the caller recorded: anything else at `path` is
    /// [`UfsError::Changed`] and nothing is read. Backends override this to
    /// check and read one version (an open descriptor, a conditional GET);
    /// the default checks a stat first.
    async fn read_into_version(
        &self,
        path: &UfsPath,
        offset: u64,
        buf: &mut [u8],
        want: &Version,
    ) -> Result<usize> {
        want.check(path, &self.stat(path).await?)?;
        self.read_into(path, offset, buf).await
    }

    /// Moves file `from` to `to`, replacing a file at `to` and creating
    /// `to`'s parent directories as needed: how a staged write is put in
    /// place. Atomic where [`Capabilities::atomic_rename`] says so.
    async fn place(&self, from: &UfsPath, to: &UfsPath) -> Result<()> {
        match self.stat(to).await {
            Ok(st) if st.is_dir => return Err(UfsError::IsADirectory(to.to_string())),
            Ok(_) => self.delete(to, false).await?,
            Err(UfsError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        self.rename(from, to).await
    }

    /// Writes the whole object, replacing any existing file, creating parent
    /// directories as needed. Returns the new status (with its fingerprint).
    async fn write(&self, path: &UfsPath, data: Bytes) -> Result<UfsStatus>;

    /// Starts a streamed write of a new object at `path`, creating parent
    /// directories as needed. Nothing is visible at `path` until
    /// [`UfsWriter::complete`], which replaces any file there; dropping the
    /// writer or aborting leaves nothing behind.
    async fn create(&self, path: &UfsPath) -> Result<Box<dyn UfsWriter>>;

    /// Creates directory `path` (and its parents). Existing directories are fine.
    async fn mkdir(&self, path: &UfsPath) -> Result<()>;

    /// Deletes a file, or a directory (only when empty unless `recursive`).
    async fn delete(&self, path: &UfsPath, recursive: bool) -> Result<()>;

    /// Renames `from` to `to` (which must not exist). Atomic only where
    /// [`Capabilities::atomic_rename`] says so.
    async fn rename(&self, from: &UfsPath, to: &UfsPath) -> Result<()>;
}

/// A streamed write in progress (see [`UnderFileSystem::create`]).
#[async_trait]
pub trait UfsWriter: Send {
    /// Appends `data`.
    async fn write(&mut self, data: &[u8]) -> Result<()>;
    /// Makes the object visible, durably; returns its status.
    async fn complete(self: Box<Self>) -> Result<UfsStatus>;
    /// Discards what was written.
    async fn abort(self: Box<Self>);
}

/// Opens the under-storage named by `uri`: `file:///abs/dir` (or a bare
/// absolute path; the root must exist and be a directory), `s3://` or
/// `s3a://BUCKET/PREFIX`, `gs://BUCKET/PREFIX`, `az://CONTAINER/PREFIX`.
/// Object stores take their endpoint and credentials from `options` (see
/// docs/UFS.md), falling back to the provider's standard environment.
pub async fn open(
    uri: &str,
    options: &BTreeMap<String, String>,
) -> Result<Arc<dyn UnderFileSystem>> {
    open_configured(uri, options, &UfsDefaults::default()).await
}

/// As [`open`], with this process's per-scheme defaults from the config
/// file under the mount's options: a mount option wins over a default, and
/// a default over the provider's environment variables.
pub async fn open_configured(
    uri: &str,
    options: &BTreeMap<String, String>,
    defaults: &UfsDefaults,
) -> Result<Arc<dyn UnderFileSystem>> {
    let scheme = uri.split_once("://").map(|(s, _)| s);
    if let Some(s @ ("s3" | "s3a" | "gs" | "az")) = scheme {
        let mut merged = defaults.for_scheme(s).clone();
        merged.extend(options.iter().map(|(k, v)| (k.clone(), v.clone())));
        return Ok(Arc::new(ObjectUfs::open(uri, &merged).await?));
    }
    // A local directory uses no options; they are kept (and shown, secrets
    // masked) like any mount's, as Alluxio does.
    if let Some(rest) = uri.strip_prefix("file://") {
        return Ok(Arc::new(LocalUfs::open(rest).await?));
    }
    if uri.starts_with('/') {
        return Ok(Arc::new(LocalUfs::open(uri).await?));
    }
    let scheme = uri.split_once("://").map(|(s, _)| s);
    Err(UfsError::InvalidUri {
        uri: uri.to_string(),
        reason: match scheme {
            Some(s) => format!("scheme `{s}` is not supported (supported: file, s3, s3a, gs, az)"),
            None => "expected `file:///absolute/dir` or an absolute path".to_string(),
        },
    })
}
