//! Connection policy of the gRPC port. tonic bounds streams and frames per
//! connection but not connections: without this, idle sockets that never
//! send a byte hold fds until the master has none left. Each accepted
//! connection must send its first bytes within the handshake timeout and
//! then never go silent longer than the idle timeout (the server pings
//! every connection over HTTP/2, and a live client always answers, so only
//! dead or silent peers hit it); one peer IP may hold a bounded number.
//! With `[security] tls_cert`/`tls_key` set, each connection's TLS
//! handshake runs here, in a task of its own, under the handshake timeout
//! and inside the same limits, before tonic sees a byte ([`Conn`]).

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use eddy_proto::tls::MaybeTls;
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Sleep;
use tokio_rustls::TlsAcceptor;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// Limits of the gRPC port (`[master]` keys).
#[derive(Debug, Clone, Copy)]
pub struct NetLimits {
    pub handshake: Duration,
    pub idle: Duration,
    pub max_per_peer: usize,
}

type Counts = Arc<Mutex<HashMap<IpAddr, usize>>>;

/// An accepted connection under the limits.
pub struct Guarded {
    inner: TcpStream,
    /// Until the first byte: the handshake deadline; then `idle` without
    /// any byte read.
    limit: Duration,
    idle: Duration,
    timer: Option<Pin<Box<Sleep>>>,
    counts: Counts,
    ip: IpAddr,
}

impl Drop for Guarded {
    fn drop(&mut self) {
        let mut c = self.counts.lock();
        if let Some(n) = c.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                c.remove(&self.ip);
            }
        }
    }
}

impl Connected for Guarded {
    type ConnectInfo = TcpConnectInfo;
    fn connect_info(&self) -> TcpConnectInfo {
        self.inner.connect_info()
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut me.inner).poll_read(cx, buf) {
            Poll::Pending => {
                let limit = me.limit;
                let t = me
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                if t.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no bytes for {} ms", limit.as_millis()),
                    )));
                }
                Poll::Pending
            }
            r => {
                if buf.filled().len() > before {
                    me.limit = me.idle;
                    me.timer = None;
                }
                r
            }
        }
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// A connection handed to tonic: plaintext, or TLS over the guarded
/// socket (so the idle timeout and the peer's count still apply); the
/// wrapper every side's connections use.
pub type Conn = MaybeTls<Guarded>;

/// The one place a gRPC connection becomes TLS: the whole handshake
/// within `limit`, else the connection is dropped (`eddy_proto::tls::accept`).
/// A failed handshake lingers before closing (below).
async fn accept_tls(g: Guarded, acceptor: &TlsAcceptor, limit: Duration) -> Option<Conn> {
    let ip = g.ip;
    match eddy_proto::tls::accept(g, Some(acceptor), limit, ip).await {
        Ok(c) => Some(c),
        Err(Some(io)) => {
            linger(io).await;
            None
        }
        Err(None) => None,
    }
}

/// After a failed handshake: the alert rustls wrote leaves with a FIN,
/// and what the peer still sends is read and dropped (for at most 1 s).
/// Closing with unread bytes would reset the connection, and a reset can
/// discard the alert before the peer reads it: a plaintext client would
/// hear "connection error" instead of "this master serves TLS".
async fn linger<S: AsyncRead + AsyncWrite + Unpin>(mut io: S) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = io.shutdown().await;
        let mut buf = [0u8; 4096];
        while let Ok(n) = io.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

/// Accepts on `listener` (in a task of its own) and yields the connections
/// within the per-peer limit; one over it is closed at once. With `tls`,
/// each is yielded once its handshake succeeded. Ends when the server
/// drops the stream.
pub fn incoming(
    listener: TcpListener,
    limits: NetLimits,
    tls: Option<eddy_proto::tls::ServerTls>,
) -> tokio_stream::wrappers::ReceiverStream<io::Result<Conn>> {
    let (tx, rx) = mpsc::channel(64);
    let counts: Counts = Default::default();
    let acceptor = tls.map(|t| TlsAcceptor::from(t.config()));
    tokio::spawn(async move {
        loop {
            let r = tokio::select! {
                r = listener.accept() => r,
                _ = tx.closed() => return,
            };
            let (sock, peer) = match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of fds, typically: back off instead of spinning.
                    tracing::warn!("gRPC accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let ip = peer.ip();
            {
                let mut c = counts.lock();
                let n = c.entry(ip).or_default();
                if *n >= limits.max_per_peer {
                    tracing::debug!("refused a gRPC connection from {ip}: {n} already open");
                    continue;
                }
                *n += 1;
            }
            let _ = sock.set_nodelay(true);
            let g = Guarded {
                inner: sock,
                limit: limits.handshake,
                idle: limits.idle,
                timer: None,
                counts: counts.clone(),
                ip,
            };
            let Some(acceptor) = &acceptor else {
                if tx.send(Ok(Conn::Plain(g))).await.is_err() {
                    return;
                }
                continue;
            };
            // Off the accept loop: one slow handshake must not hold up the
            // next connection.
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                if let Some(c) = accept_tls(g, &acceptor, limits.handshake).await {
                    let _ = tx.send(Ok(c)).await;
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}
