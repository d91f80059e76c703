//! The CLI's error: one line a user can act on, ending in a stable code.
//!
//! Every failure of a command, wherever it started (the master, a worker,
//! the local file system, the command line itself), becomes a [`CliError`];
//! `main` prints it as `eddy: MESSAGE (CODE)` and exits with
//! [`CliError::exit_status`]: 1 for errors, 2 for usage errors (as clap's).

use std::path::Path;

use eddy_client::{ClientError, EddyCode};

#[derive(Debug, thiserror::Error)]
#[error("{} ({})", one_line(message), code.name())]
pub struct CliError {
    pub code: EddyCode,
    pub message: String,
    /// A mistake in the command line rather than a failed operation.
    pub usage: bool,
}

impl CliError {
    pub fn new(code: EddyCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            usage: false,
        }
    }

    /// A command line that cannot mean anything (exit status 2).
    pub fn usage(message: impl Into<String>) -> Self {
        Self {
            code: EddyCode::InvalidArgument,
            message: message.into(),
            usage: true,
        }
    }

    /// A failed local file operation on `path`.
    pub fn local(path: &Path, e: &std::io::Error) -> Self {
        use std::io::ErrorKind as K;
        let code = match e.kind() {
            K::NotFound => EddyCode::NotFound,
            K::AlreadyExists => EddyCode::AlreadyExists,
            K::IsADirectory => EddyCode::IsADirectory,
            K::NotADirectory => EddyCode::NotADirectory,
            K::StorageFull => EddyCode::NoSpace,
            K::PermissionDenied | K::ReadOnlyFilesystem => EddyCode::ReadOnly,
            _ => EddyCode::Internal,
        };
        Self::new(code, format!("{}: {e}", path.display()))
    }

    pub fn exit_status(&self) -> u8 {
        if self.usage { 2 } else { 1 }
    }
}

impl From<ClientError> for CliError {
    fn from(e: ClientError) -> Self {
        // An address that cannot be one is a mistake in the command line.
        if let ClientError::Connect { addr, reason } = &e
            && (reason.starts_with("invalid address") || reason.starts_with("expected host:port"))
        {
            return Self::usage(format!(
                "invalid master address {addr:?}: {reason} (check --master / EDDY_MASTER)"
            ));
        }
        let code = e.code();
        let message = match e {
            ClientError::Rpc(r) => r.message,
            ClientError::Connect { addr, reason } => {
                // The transport's reasons name the address already.
                let reason = reason.strip_prefix(&format!("{addr}: ")).unwrap_or(&reason);
                if reason.starts_with("no Eddy master at") {
                    reason.to_string()
                } else if reason.starts_with("TLS: ") {
                    // Something answered; "is it running?" would mislead.
                    format!("cannot connect to the Eddy master at {addr}: {reason}")
                } else {
                    format!(
                        "no Eddy master at {addr} ({reason}; is it running? check --master / EDDY_MASTER)"
                    )
                }
            }
            ClientError::InvalidArgument(m) => m,
            ClientError::Worker { addr, message, .. } => format!("worker {addr}: {message}"),
        };
        Self::new(code, message)
    }
}

/// A command-line value that cannot be parsed (clap shows it as a usage
/// error, exit status 2).
#[derive(Debug, thiserror::Error)]
pub enum ArgError {
    #[error("unknown TTL action {0:?}: delete or free")]
    TtlAction(String),
    #[error("invalid duration {0:?}: expected e.g. 500ms, 30s, 10m, 2h, 7d")]
    Duration(String),
    #[error("invalid duration unit {unit:?} in {text:?}: ms, s, m, h or d")]
    DurationUnit { unit: String, text: String },
    #[error("duration {0:?} is too long")]
    DurationTooLong(String),
    #[error("timeout {0:?} must be at least 1ms")]
    TimeoutTooShort(String),
    #[error("unknown write type {0:?}: MUST_CACHE, CACHE_THROUGH, THROUGH or ASYNC_THROUGH")]
    WriteType(String),
    #[error("{0:?}: expected octal permission bits such as 755 or 0644")]
    Mode(String),
}

/// Messages from elsewhere (an under-storage's XML body, a server's log
/// line) may span lines; the CLI's contract is one line per error.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_ending_in_the_code() {
        let e = CliError::new(EddyCode::NotFound, "a\n  b\r\nc");
        assert_eq!(e.to_string(), "a b c (NOT_FOUND)");
        assert_eq!(e.exit_status(), 1);
        assert_eq!(CliError::usage("x").exit_status(), 2);
    }

    /// One of each under-storage error (the match is exhaustive, so a new
    /// variant must be added here).
    fn every_ufs_error() -> Vec<eddy_ufs::UfsError> {
        use eddy_ufs::UfsError as U;
        let all = vec![
            U::NotFound("/a".into()),
            U::AlreadyExists("/a".into()),
            U::NotADirectory("/a".into()),
            U::IsADirectory("/a".into()),
            U::DirectoryNotEmpty("/a".into()),
            U::Unavailable {
                uri: "file:///x".into(),
                reason: "gone".into(),
            },
            U::InvalidUri {
                uri: "x:".into(),
                reason: "bad".into(),
            },
            U::Unsupported("rename".into()),
            U::Changed {
                path: "/a".into(),
                reason: "another version".into(),
            },
            U::Io {
                path: "/a".into(),
                source: std::io::Error::other("disk"),
            },
        ];
        for e in &all {
            match e {
                U::NotFound(_)
                | U::AlreadyExists(_)
                | U::NotADirectory(_)
                | U::IsADirectory(_)
                | U::DirectoryNotEmpty(_)
                | U::Unavailable { .. }
                | U::InvalidUri { .. }
                | U::Unsupported(_)
                | U::Changed { .. }
                | U::Io { .. } => {}
            }
        }
        all
    }

    #[test]
    fn the_master_and_a_worker_give_an_under_storage_error_the_same_code() {
        use eddy_master::error::MasterError;
        use eddy_worker::error::WorkerError;
        let on_worker = every_ufs_error()
            .into_iter()
            .map(|e| WorkerError::Ufs(e).code());
        for (e, worker) in every_ufs_error().into_iter().zip(on_worker) {
            let name = e.code_name();
            let master = MasterError::Ufs(e).code();
            assert_eq!(master, worker, "{name}");
            assert_eq!(master.as_str_name(), name);
        }
        // Where the two used to differ: a path the under-storage lacks.
        let nf = || eddy_ufs::UfsError::NotFound("/gone".into());
        assert_eq!(MasterError::Ufs(nf()).code(), EddyCode::NotFound);
        assert_eq!(WorkerError::Ufs(nf()).code(), EddyCode::NotFound);
    }
}
