//! Stable error codes across gRPC.
//!
//! A failed RPC is a `tonic::Status` whose gRPC code is the coarse class and
//! whose metadata key [`CODE_METADATA_KEY`] carries the numeric [`EddyCode`]
//! (the `ErrorCode` enum in `master.proto`). Clients rebuild an [`RpcError`]
//! from it. Numbers never change meaning; new codes are only appended.

use tonic::{Code, Status};

/// gRPC metadata key carrying the numeric Eddy error code.
pub const CODE_METADATA_KEY: &str = "eddy-code";

pub use crate::pb::ErrorCode as EddyCode;

impl EddyCode {
    /// The gRPC status code this Eddy code travels under.
    pub fn grpc_code(self) -> Code {
        match self {
            EddyCode::InvalidPath | EddyCode::InvalidArgument => Code::InvalidArgument,
            EddyCode::NotFound => Code::NotFound,
            EddyCode::AlreadyExists => Code::AlreadyExists,
            EddyCode::NotADirectory
            | EddyCode::IsADirectory
            | EddyCode::DirectoryNotEmpty
            | EddyCode::ReadOnly
            | EddyCode::MountConflict
            | EddyCode::FileIncomplete
            | EddyCode::FileAlreadyComplete
            | EddyCode::UnknownWorker => Code::FailedPrecondition,
            EddyCode::UfsUnavailable | EddyCode::Unavailable | EddyCode::NoWorkerAvailable => {
                Code::Unavailable
            }
            EddyCode::Unsupported => Code::Unimplemented,
            EddyCode::NoSpace => Code::ResourceExhausted,
            EddyCode::Protocol | EddyCode::BadHandle => Code::InvalidArgument,
            EddyCode::UfsError | EddyCode::Internal | EddyCode::Unspecified => Code::Internal,
            EddyCode::DataLost => Code::DataLoss,
            EddyCode::DeadlineExceeded => Code::DeadlineExceeded,
            EddyCode::Unauthenticated => Code::Unauthenticated,
            EddyCode::PermissionDenied => Code::PermissionDenied,
        }
    }

    /// Short upper-case name used in messages, e.g. `NOT_FOUND`.
    pub fn name(self) -> &'static str {
        self.as_str_name()
    }
}

/// An error as it crosses gRPC: a stable code plus a message a user can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} ({})", code.name())]
pub struct RpcError {
    pub code: EddyCode,
    pub message: String,
}

impl RpcError {
    pub fn new(code: EddyCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl From<RpcError> for Status {
    fn from(e: RpcError) -> Status {
        let mut status = Status::new(e.code.grpc_code(), e.message);
        status.metadata_mut().insert(
            CODE_METADATA_KEY,
            (e.code as i32)
                .to_string()
                .parse()
                .expect("a decimal number is a valid metadata value"),
        );
        status
    }
}

impl From<Status> for RpcError {
    /// Rebuilds the Eddy error; a status without an Eddy code (a transport
    /// failure, a proxy) maps to a code derived from the gRPC class.
    fn from(status: Status) -> RpcError {
        let code = status
            .metadata()
            .get(CODE_METADATA_KEY)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.parse::<i32>().ok())
            .and_then(|n| EddyCode::try_from(n).ok());
        let code = code.unwrap_or(match status.code() {
            Code::NotFound => EddyCode::NotFound,
            Code::AlreadyExists => EddyCode::AlreadyExists,
            Code::InvalidArgument => EddyCode::InvalidArgument,
            Code::DeadlineExceeded => EddyCode::DeadlineExceeded,
            Code::Unavailable | Code::Cancelled => EddyCode::Unavailable,
            Code::Unimplemented => EddyCode::Unsupported,
            Code::Unauthenticated => EddyCode::Unauthenticated,
            Code::PermissionDenied => EddyCode::PermissionDenied,
            _ => EddyCode::Internal,
        });
        let message = if status.message().is_empty() {
            format!("{}", status.code())
        } else {
            status.message().to_string()
        };
        RpcError { code, message }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_survives_status_round_trip() {
        for n in 1..=23 {
            let code = EddyCode::try_from(n).unwrap();
            let back = RpcError::from(Status::from(RpcError::new(code, "boom")));
            assert_eq!(back.code, code);
            assert_eq!(back.message, "boom");
        }
    }

    #[test]
    fn foreign_status_maps_by_class() {
        let e = RpcError::from(Status::unavailable("connection refused"));
        assert_eq!(e.code, EddyCode::Unavailable);
    }
}
