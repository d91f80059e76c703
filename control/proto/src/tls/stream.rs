//! A connection's stream, plaintext or TLS, and the server side of the TLS
//! handshake: one wrapper for the master's gRPC connections, a worker's
//! accepted data connections and a client's (or a replicating worker's)
//! dialled ones, so every side follows the same flushing rule and the same
//! handshake limit.
//!
//! An enum rather than a boxed `dyn AsyncRead`: a plaintext read costs one
//! branch more than the bare socket and no allocation or indirect call
//! (the data read path is the hot path; bench/RESULTS.md measures it).

use std::fmt::Display;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::{TlsAcceptor, TlsStream};

/// A stream over the transport `S` (a TCP socket, or the master's guarded
/// one), in the clear or in a TLS session of either side.
pub enum MaybeTls<S> {
    Plain(S),
    /// Boxed: a TLS session is kilobytes, and most connections are pooled.
    Tls(Box<TlsStream<S>>),
}

impl<S> MaybeTls<S> {
    /// A dialled TLS session.
    pub fn client(s: tokio_rustls::client::TlsStream<S>) -> Self {
        MaybeTls::Tls(Box::new(TlsStream::Client(s)))
    }

    /// An accepted TLS session.
    pub fn server(s: tokio_rustls::server::TlsStream<S>) -> Self {
        MaybeTls::Tls(Box::new(TlsStream::Server(s)))
    }

    /// The transport under the stream.
    pub fn get_ref(&self) -> &S {
        match self {
            MaybeTls::Plain(s) => s,
            MaybeTls::Tls(s) => s.get_ref().0,
        }
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, MaybeTls::Tls(_))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for MaybeTls<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_read(cx, buf),
            MaybeTls::Tls(s) => {
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

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for MaybeTls<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_write(cx, buf),
            MaybeTls::Tls(s) => Pin::new(&mut **s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_flush(cx),
            MaybeTls::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_shutdown(cx),
            MaybeTls::Tls(s) => Pin::new(&mut **s).poll_shutdown(cx),
        }
    }
}

impl<S: tonic::transport::server::Connected> tonic::transport::server::Connected for MaybeTls<S> {
    type ConnectInfo = S::ConnectInfo;
    fn connect_info(&self) -> Self::ConnectInfo {
        self.get_ref().connect_info()
    }
}

/// The server side of a connection: `io` as it is without `acceptor`,
/// else once its TLS handshake finished, all of it within `limit` (a peer
/// trickling a ClientHello cannot hold its slot). Anything that is not a
/// TLS ClientHello (a plaintext client, garbage) or a client without the
/// certificate mutual TLS requires fails here, logged at debug with `peer`,
/// and closes that connection only: `Err(Some(io))` after a failed
/// handshake (the alert rustls wrote is still to be flushed: the caller
/// may linger), `Err(None)` past `limit`.
pub async fn accept<S, P>(
    io: S,
    acceptor: Option<&TlsAcceptor>,
    limit: Duration,
    peer: P,
) -> Result<MaybeTls<S>, Option<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
    P: Display,
{
    let Some(acceptor) = acceptor else {
        return Ok(MaybeTls::Plain(io));
    };
    match tokio::time::timeout(limit, acceptor.accept(io).into_fallible()).await {
        Ok(Ok(s)) => Ok(MaybeTls::server(s)),
        Ok(Err((e, io))) => {
            tracing::debug!("TLS handshake with {peer} failed: {e}");
            Err(Some(io))
        }
        Err(_) => {
            tracing::debug!("no TLS handshake from {peer} within {limit:?}");
            Err(None)
        }
    }
}
