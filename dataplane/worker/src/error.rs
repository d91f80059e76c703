//! Worker errors. Each maps to a stable Eddy code sent in `Error` frames.

use eddy_proto::EddyCode;
use eddy_ufs::UfsError;

use crate::store::{NoSpace, PlaceError};

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Ufs(#[from] UfsError),
    #[error("master: {0}")]
    Master(#[from] eddy_client::ClientError),
    #[error(transparent)]
    NoSpace(#[from] NoSpace),
    /// Memory had no room and a disk-tier directory failed (an I/O error,
    /// not a full filesystem) when the block went there instead.
    #[error(
        "{no_room}, and the disk tier failed: {source} (the directory is out of service: see `eddy report` and the worker's log)"
    )]
    DiskFailed {
        no_room: NoSpace,
        #[source]
        source: PlaceError,
    },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    InvalidArgument(String),
    /// A request's lengths and offsets do not fit together or the limits.
    #[error(transparent)]
    OutOfRange(#[from] eddy_wire::RangeError),
    #[error(
        "the under-storage copy of {key} changed: expected {expected} bytes at offset {offset}, found {found}; re-read the file's metadata"
    )]
    UfsChanged {
        key: String,
        offset: u64,
        expected: u64,
        found: u64,
    },
    /// The request does not match what the master says about the block.
    #[error("{0}")]
    Mismatch(String),
    #[error("{0}")]
    FileIncomplete(String),
    #[error("{0}")]
    FileAlreadyComplete(String),
    /// Another write session on this worker holds the file.
    #[error("{0}")]
    AlreadyWriting(String),
    #[error("shared memory: {0}")]
    Memory(std::io::Error),
    /// A data request without a block token that allows it
    /// (`crate::access`), or a handshake claiming another user.
    #[error("{0}")]
    PermissionDenied(String),
    /// A remote lease this worker cannot grant (no fabric, another
    /// provider, a block not in memory): the client reads over TCP.
    #[error("{0}")]
    Rdma(String),
    /// A peer worker did not send a block in time (replication).
    #[error(
        "peer worker {peer} did not send block {block_id} within {after:?}; it may be overloaded or stuck: check it (eddy report), the master retries the copy from another source"
    )]
    PeerTimeout {
        peer: String,
        block_id: u64,
        after: std::time::Duration,
    },
}

pub type Result<T, E = WorkerError> = std::result::Result<T, E>;

impl WorkerError {
    pub fn code(&self) -> EddyCode {
        match self {
            // The one table in `eddy-ufs`, which the master uses too.
            WorkerError::Ufs(e) => {
                EddyCode::from_str_name(e.code_name()).unwrap_or(EddyCode::UfsError)
            }
            WorkerError::Master(e) => e.code(),
            WorkerError::NoSpace(_) => EddyCode::NoSpace,
            WorkerError::DiskFailed { .. } => EddyCode::Internal,
            WorkerError::NotFound(_) => EddyCode::NotFound,
            WorkerError::InvalidArgument(_) | WorkerError::OutOfRange(_) => {
                EddyCode::InvalidArgument
            }
            WorkerError::UfsChanged { .. } => EddyCode::UfsError,
            WorkerError::Mismatch(_) => EddyCode::InvalidArgument,
            WorkerError::FileIncomplete(_) => EddyCode::FileIncomplete,
            WorkerError::FileAlreadyComplete(_) => EddyCode::FileAlreadyComplete,
            WorkerError::AlreadyWriting(_) => EddyCode::AlreadyExists,
            WorkerError::Memory(_) => EddyCode::Internal,
            WorkerError::PermissionDenied(_) => EddyCode::PermissionDenied,
            WorkerError::PeerTimeout { .. } => EddyCode::DeadlineExceeded,
            WorkerError::Rdma(_) => EddyCode::Unsupported,
        }
    }

    pub fn frame(&self) -> eddy_wire::ErrorFrame {
        eddy_wire::ErrorFrame::new(self.code(), self.to_string())
    }
}
