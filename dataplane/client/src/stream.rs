//! A data connection's byte stream, plaintext or TLS, and [`dial_data`],
//! the one place a client or a worker (replication) opens one.
//!
//! An enum rather than a boxed `dyn AsyncRead`: a plaintext read costs one
//! branch more than a bare `TcpStream` and no allocation or indirect call
//! (the read path is the hot path; bench/RESULTS.md measures it). The
//! worker's accepted connections are one of these too (its server side of
//! TLS is built in `eddy-worker`'s `conn`), so both ends share the flushing
//! rule below. Anything the data protocol adds at connect time (a hello
//! frame) goes right after [`dial_data`]'s handshake.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::{ClientError, EddyCode, Result};
use eddy_proto::tls::ClientTls;

/// The longest a dial (TCP connect and TLS handshake) may take.
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(5);

/// One data connection.
pub enum DataStream {
    Plain(TcpStream),
    /// Boxed: a TLS session is kilobytes, and most connections are pooled.
    Tls(Box<tokio_rustls::TlsStream<TcpStream>>),
}

impl DataStream {
    /// A server-side TLS session (a worker's accepted connection).
    pub fn server_tls(s: tokio_rustls::server::TlsStream<TcpStream>) -> Self {
        DataStream::Tls(Box::new(tokio_rustls::TlsStream::Server(s)))
    }

    /// The socket under the stream.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            DataStream::Plain(s) => s,
            DataStream::Tls(s) => s.get_ref().0,
        }
    }

    /// Whether an idle connection is still usable: nothing arrived on it
    /// since its last exchange (a worker closing an idle connection sends
    /// an end of stream, or a TLS close_notify, first). Consumes what it
    /// finds, so a connection that fails the check must be dropped.
    pub fn idle_and_open(&self) -> bool {
        let mut probe = [0u8; 1];
        matches!(self.tcp().try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, DataStream::Tls(_))
    }
}

impl AsyncRead for DataStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            DataStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            DataStream::Tls(s) => {
                // tokio-rustls accepts a write once it is encrypted, and
                // may keep records queued when the socket is full; a
                // request's last bytes must reach the peer before its
                // answer can come, so a read first pushes out what is
                // queued (nothing, usually: one check). A write still
                // pending leaves the read to wait for either.
                if let Poll::Ready(Err(e)) = Pin::new(&mut **s).poll_flush(cx) {
                    return Poll::Ready(Err(e));
                }
                Pin::new(&mut **s).poll_read(cx, buf)
            }
        }
    }
}

impl AsyncWrite for DataStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            DataStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            DataStream::Tls(s) => Pin::new(&mut **s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            DataStream::Plain(s) => Pin::new(s).poll_flush(cx),
            DataStream::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            DataStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            DataStream::Tls(s) => Pin::new(&mut **s).poll_shutdown(cx),
        }
    }
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
            return Ok(DataStream::Plain(sock));
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
        Ok(DataStream::Tls(Box::new(tokio_rustls::TlsStream::Client(
            s,
        ))))
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
