//! Deadlines on data connections: one exchange with a worker (a frame out,
//! its answer back) must end within the client's timeout, or it fails as an
//! I/O time-out, which callers treat like a lost connection (the connection
//! is dropped; reads move on to another worker).

use std::future::Future;
use std::time::Duration;

use eddy_wire::WireError;

/// Runs `f`, failing with `ErrorKind::TimedOut` after `limit`.
pub(crate) async fn within<T>(
    limit: Duration,
    f: impl Future<Output = Result<T, WireError>>,
) -> Result<T, WireError> {
    match tokio::time::timeout(limit, f).await {
        Ok(r) => r,
        Err(_) => Err(WireError::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!(
                "no answer within {limit:?} (DEADLINE_EXCEEDED); the worker may be overloaded or stuck: retry, or raise the client timeout"
            ),
        ))),
    }
}

/// Whether `e` is a time-out from [`within`] (or from the socket).
pub(crate) fn timed_out(e: &WireError) -> bool {
    matches!(e, WireError::Io(io) if io.kind() == std::io::ErrorKind::TimedOut)
}
