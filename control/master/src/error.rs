//! The master's errors, each with a stable [`EddyCode`] for the wire.

use eddy_proto::{EddyCode, RpcError};
use eddy_ufs::UfsError;

#[derive(Debug, thiserror::Error)]
pub enum MasterError {
    #[error("invalid path {0}")]
    InvalidPath(String),
    #[error("{0}: no such file or directory")]
    NotFound(String),
    #[error("{0}: already exists")]
    AlreadyExists(String),
    #[error("{0}: not a directory")]
    NotADirectory(String),
    #[error("{0}: is a directory")]
    IsADirectory(String),
    #[error("{0}: directory not empty (delete it with the recursive option)")]
    DirectoryNotEmpty(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}: read-only mount")]
    ReadOnly(String),
    #[error("{0}")]
    MountConflict(String),
    #[error("{0}: file is not complete yet")]
    FileIncomplete(String),
    #[error("{0}: file is already complete (Eddy files are write-once)")]
    FileAlreadyComplete(String),
    #[error("worker {0} is not registered with this master; register again")]
    UnknownWorker(u64),
    #[error("no live worker can take the block: {0}")]
    NoWorkerAvailable(String),
    #[error("{0}")]
    Unsupported(String),
    #[error(
        "{0} is lost: a block was cached only on workers that are gone and the file was never persisted; delete or rewrite it"
    )]
    DataLost(String),
    /// Retryable: try again in a moment.
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Ufs(#[from] UfsError),
    #[error("metastore: {0}")]
    Metastore(String),
    #[error(transparent)]
    Bind(#[from] eddy_proto::BindError),
    /// Who the caller is could not be established (docs/SECURITY.md).
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller may not do this.
    #[error("{0}")]
    PermissionDenied(String),
    /// The master's key file cannot be used (start-up stops).
    #[error(transparent)]
    KeyFile(#[from] eddy_proto::auth::KeyFileError),
    #[error(transparent)]
    Tls(#[from] eddy_proto::tls::TlsError),
}

impl MasterError {
    pub fn code(&self) -> EddyCode {
        match self {
            MasterError::InvalidPath(_) => EddyCode::InvalidPath,
            MasterError::NotFound(_) => EddyCode::NotFound,
            MasterError::AlreadyExists(_) => EddyCode::AlreadyExists,
            MasterError::NotADirectory(_) => EddyCode::NotADirectory,
            MasterError::IsADirectory(_) => EddyCode::IsADirectory,
            MasterError::DirectoryNotEmpty(_) => EddyCode::DirectoryNotEmpty,
            MasterError::InvalidArgument(_) => EddyCode::InvalidArgument,
            MasterError::ReadOnly(_) => EddyCode::ReadOnly,
            MasterError::MountConflict(_) => EddyCode::MountConflict,
            MasterError::FileIncomplete(_) => EddyCode::FileIncomplete,
            MasterError::FileAlreadyComplete(_) => EddyCode::FileAlreadyComplete,
            MasterError::UnknownWorker(_) => EddyCode::UnknownWorker,
            MasterError::NoWorkerAvailable(_) => EddyCode::NoWorkerAvailable,
            MasterError::Unsupported(_) => EddyCode::Unsupported,
            MasterError::DataLost(_) => EddyCode::DataLost,
            MasterError::Unavailable(_) => EddyCode::Unavailable,
            MasterError::Ufs(e) => ufs_code(e),
            MasterError::Metastore(_) => EddyCode::Internal,
            MasterError::Bind(e) => e.code(),
            MasterError::Unauthenticated(_) => EddyCode::Unauthenticated,
            MasterError::PermissionDenied(_) => EddyCode::PermissionDenied,
            MasterError::KeyFile(_) => EddyCode::InvalidArgument,
            MasterError::Tls(e) => e.code(),
        }
    }
}

/// The code of an under-storage error: the one table in `eddy-ufs`, which
/// the worker uses too.
pub fn ufs_code(e: &UfsError) -> EddyCode {
    EddyCode::from_str_name(e.code_name()).unwrap_or(EddyCode::UfsError)
}

impl From<MasterError> for RpcError {
    fn from(e: MasterError) -> Self {
        RpcError::new(e.code(), e.to_string())
    }
}

impl From<MasterError> for tonic::Status {
    fn from(e: MasterError) -> Self {
        RpcError::from(e).into()
    }
}

pub type Result<T, E = MasterError> = std::result::Result<T, E>;
