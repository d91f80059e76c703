//! A data connection's byte stream, plaintext or TLS, and [`dial_data`],
//! the one place a client or a worker (replication) opens one.
//!
//! The stream is `eddy_proto::tls::MaybeTls` over TCP, the one wrapper the
//! master, workers and clients share (its flushing rule, no indirection on
//! the plaintext path). The worker's accepted connections are one of these
//! too. Anything the data protocol adds at connect time (a hello frame)
//! goes right after [`dial_data`]'s handshake.

use std::io;
use std::time::Duration;

use tokio::net::TcpStream;

use crate::{ClientError, EddyCode, Result};
use eddy_proto::tls::{ClientTls, MaybeTls};

/// The longest a dial (TCP connect and TLS handshake) may take.
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(5);

/// One data connection: a TCP socket, plaintext or TLS
/// (`eddy_proto::tls::MaybeTls`, the wrapper every side's connections use).
pub type DataStream = MaybeTls<TcpStream>;

/// Whether an idle connection is still usable: nothing arrived on it since
/// its last exchange (a worker closing an idle connection sends an end of
/// stream, or a TLS close_notify, first). Consumes what it finds, so a
/// connection that fails the check must be dropped.
pub fn idle_and_open(s: &DataStream) -> bool {
    let mut probe = [0u8; 1];
    matches!(s.get_ref().try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}

/// Opens a data connection to the worker at `addr` (`host:port`): TCP,
/// then the TLS handshake when `tls` is set, all within [`DIAL_TIMEOUT`].
/// Failures are `UNAVAILABLE` (`DEADLINE_EXCEEDED` past the limit), TLS
/// ones worded by [`ClientTls::explain`].
pub async fn dial_data(addr: &str, tls: Option<&ClientTls>) -> Result<DataStream> {
    let fail = |code, message: String| ClientError::Worker {
        addr: addr.to_string(),
        code,
        message,
    };
    let dial = async {
        let sock = TcpStream::connect(addr)
            .await
            .map_err(|e| fail(EddyCode::Unavailable, format!("cannot connect: {e}")))?;
        let _ = sock.set_nodelay(true);
        let Some(tls) = tls else {
            return Ok(MaybeTls::Plain(sock));
        };
        let name = eddy_proto::tls::server_name(addr)
            .map_err(|e| fail(EddyCode::InvalidArgument, format!("TLS: {e}")))?;
        let s = tokio_rustls::TlsConnector::from(tls.data())
            .connect(name, sock)
            .await
            .map_err(|e| {
                let peer = format!("the worker at {addr}");
                fail(EddyCode::Unavailable, tls.explain(&peer, &e))
            })?;
        Ok(MaybeTls::client(s))
    };
    // UNAVAILABLE, not DEADLINE_EXCEEDED: the worker is unreachable, and
    // a read moves on to the next one.
    tokio::time::timeout(DIAL_TIMEOUT, dial)
        .await
        .map_err(|_| {
            fail(
                EddyCode::Unavailable,
                format!("no answer within {DIAL_TIMEOUT:?}"),
            )
        })?
}
