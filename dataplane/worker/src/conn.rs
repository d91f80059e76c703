//! Connection policy for the data port and the Unix socket: timeouts on
//! every read and write, and a cap on connections per peer. Without them an
//! idle or stalled peer holds its fd, its task and (in a write session) its
//! memory reservations forever, and enough of them starve everyone. And
//! TLS on the data port ([`DataTls`], [`accept_data`]): the Unix socket
//! stays outside it (same host, peer checked by the kernel).

use std::collections::HashMap;
use std::hash::Hash;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use eddy_client::{ClientTls, DataStream};
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;

/// Limits of leases, short-circuit and remote alike (`[worker]
/// lease_ttl_ms`, `max_leases_per_client`).
#[derive(Debug, Clone)]
pub struct LeasePolicy {
    /// A lease older than this is dropped by the worker; the client asks again.
    pub ttl: Duration,
    /// Leases one connection may hold at once.
    pub max_per_client: usize,
}

/// Timeouts of one connection (`[worker]` `idle_timeout_ms`,
/// `frame_timeout_ms`).
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Longest wait for the first byte of the next request (and for a
    /// write session's next frame).
    pub idle: Duration,
    /// Longest a write to the peer may make no progress.
    pub write: Duration,
    /// Once a frame's first byte is in: longest until its header and
    /// control body are all in, and longest a `Data` body may make no
    /// progress.
    pub frame: Duration,
}

enum ReadMode {
    /// Waiting for a frame: up to `idle` for its first byte, then a fixed
    /// deadline of `frame` for the rest (not reset by progress, so a peer
    /// trickling a byte at a time cannot keep a header open).
    Frame,
    /// Started: the deadline set at the frame's first byte.
    Started,
    /// Bulk bytes: `frame` without any progress.
    Stall,
}

/// A stream whose reads and writes fail with `TimedOut` past its limits.
/// The owner says what it expects next ([`Timed::expect_frame`],
/// [`Timed::expect_bulk`]); timers run only while an operation is pending.
pub struct Timed<S> {
    inner: S,
    limits: Timeouts,
    mode: ReadMode,
    read_timer: Option<Pin<Box<Sleep>>>,
    write_timer: Option<Pin<Box<Sleep>>>,
}

impl<S> Timed<S> {
    pub fn new(inner: S, limits: Timeouts) -> Self {
        Self {
            inner,
            limits,
            mode: ReadMode::Frame,
            read_timer: None,
            write_timer: None,
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The next bytes start a frame (a request, or a write session's next
    /// frame): `idle` for the first byte, then `frame` for the rest.
    pub fn expect_frame(&mut self) {
        self.mode = ReadMode::Frame;
        self.read_timer = None;
    }

    /// How long the next frame's first byte may take (a connection holding
    /// remote leases is not idle: `Duration::MAX`).
    pub fn set_idle(&mut self, idle: Duration) {
        self.limits.idle = idle;
    }

    /// The next bytes are a `Data` body: `frame` without progress.
    pub fn expect_bulk(&mut self) {
        self.mode = ReadMode::Stall;
        self.read_timer = None;
    }

    fn timed_out(what: &str, after: Duration) -> io::Error {
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!("{what} for {} ms; connection closed", after.as_millis()),
        )
    }
}

/// Polls `timer`, armed with `limit` if it is not running.
fn expired(timer: &mut Option<Pin<Box<Sleep>>>, limit: Duration, cx: &mut Context<'_>) -> bool {
    let t = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
    t.as_mut().poll(cx).is_ready()
}

impl<S: AsyncRead + Unpin> AsyncRead for Timed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut me.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    match me.mode {
                        ReadMode::Frame => {
                            me.mode = ReadMode::Started;
                            me.read_timer = Some(Box::pin(tokio::time::sleep(me.limits.frame)));
                        }
                        ReadMode::Started => {}
                        ReadMode::Stall => me.read_timer = None,
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let (limit, what) = match me.mode {
                    ReadMode::Frame => (me.limits.idle, "idle"),
                    ReadMode::Started => (me.limits.frame, "a frame incomplete"),
                    ReadMode::Stall => (me.limits.frame, "no data"),
                };
                if expired(&mut me.read_timer, limit, cx) {
                    return Poll::Ready(Err(Self::timed_out(what, limit)));
                }
                Poll::Pending
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Timed<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        match Pin::new(&mut me.inner).poll_write(cx, buf) {
            Poll::Ready(r) => {
                me.write_timer = None;
                Poll::Ready(r)
            }
            Poll::Pending => {
                if expired(&mut me.write_timer, me.limits.write, cx) {
                    let e = Self::timed_out("the peer read nothing", me.limits.write);
                    return Poll::Ready(Err(e));
                }
                Poll::Pending
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        ready!(Pin::new(&mut me.inner).poll_flush(cx))?;
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Connections per peer (an IP address on TCP, a process on the Unix
/// socket), capped: one peer cannot take every fd of the worker.
pub struct PeerLimit<K: Hash + Eq + Clone> {
    max: usize,
    open: Mutex<HashMap<K, usize>>,
}

/// One admitted connection; its peer's count drops when it goes.
pub struct PeerSlot<K: Hash + Eq + Clone> {
    limit: Arc<PeerLimit<K>>,
    key: K,
}

impl<K: Hash + Eq + Clone> PeerLimit<K> {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for one more connection of `key`, or None at the limit.
    pub fn admit(self: &Arc<Self>, key: K) -> Option<PeerSlot<K>> {
        let mut open = self.open.lock();
        let n = open.entry(key.clone()).or_default();
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(PeerSlot {
            limit: self.clone(),
            key,
        })
    }

    pub fn max(&self) -> usize {
        self.max
    }
}

impl<K: Hash + Eq + Clone> Drop for PeerSlot<K> {
    fn drop(&mut self) {
        let mut open = self.limit.open.lock();
        if let Some(n) = open.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// TLS of the data port: what it serves (`[security] tls_cert`/`tls_key`,
/// client certificates required with `tls_client_auth`) and how this
/// worker dials peers' data ports (`tls_ca`). Both `None`: plaintext.
#[derive(Clone, Default)]
pub struct DataTls {
    pub accept: Option<tokio_rustls::TlsAcceptor>,
    pub dial: Option<ClientTls>,
}

impl DataTls {
    /// The data port's TLS from `[security]`.
    pub fn from_security(
        sec: &eddy_proto::auth::SecurityConfig,
    ) -> Result<Self, eddy_proto::tls::TlsError> {
        let accept = eddy_proto::tls::ServerTls::from_security(sec, eddy_proto::tls::ALPN_DATA)?
            .map(|t| tokio_rustls::TlsAcceptor::from(t.config()));
        Ok(Self {
            accept,
            dial: ClientTls::from_security(sec)?,
        })
    }
}

/// The one place a data connection is accepted (`eddy_proto::tls::accept`,
/// the master's too): with `tls`, its whole handshake within `limit` (a
/// peer trickling bytes cannot hold the connection open longer). A plaintext client, garbage, or a client
/// without the certificate mutual TLS requires fail here, are logged, and
/// close that connection only (`None`). Whatever the protocol adds at
/// connect time (a hello frame) goes right after.
pub async fn accept_data(
    sock: TcpStream,
    tls: Option<&tokio_rustls::TlsAcceptor>,
    limit: Duration,
    peer: &str,
) -> Option<DataStream> {
    eddy_proto::tls::accept(sock, tls, limit, peer).await.ok()
}

/// Raises this process's open-file limit (RLIMIT_NOFILE) to its hard
/// limit: a server holding one fd per connection, segment and block file
/// must not run out at the usual soft limit of 1,024. Returns the new soft
/// limit, or the error (the process goes on with the old one).
pub fn raise_nofile_limit() -> io::Result<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut l = getrlimit(Resource::Nofile);
    if l.current != l.maximum {
        l.current = l.maximum;
        setrlimit(Resource::Nofile, l).map_err(io::Error::from)?;
    }
    Ok(l.current.unwrap_or(u64::MAX))
}

/// Answers a connection over its peer's limit with one `Error` frame
/// (`UNAVAILABLE`), without waiting for the peer, and closes it.
pub fn refuse<S: std::os::fd::AsFd>(sock: &S, peer: &str, max: usize) {
    let f = eddy_wire::ErrorFrame::new(
        eddy_proto::EddyCode::Unavailable,
        format!(
            "{peer} already has {max} connections open to this worker (max_connections_per_peer); close idle ones and retry"
        ),
    );
    let body = f.encode();
    let mut frame = eddy_wire::Header {
        kind: eddy_wire::Kind::Error,
        body_len: body.len() as u32,
    }
    .encode()
    .to_vec();
    frame.extend_from_slice(&body);
    // Non-blocking: a fresh socket's send buffer takes one small frame.
    let _ = rustix::net::send(
        sock,
        &frame,
        rustix::net::SendFlags::NOSIGNAL | rustix::net::SendFlags::DONTWAIT,
    );
    tracing::debug!("refused a connection from {peer}: {max} already open");
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const LIMITS: Timeouts = Timeouts {
        idle: Duration::from_millis(300),
        write: Duration::from_millis(300),
        frame: Duration::from_millis(100),
    };

    #[tokio::test]
    async fn idle_and_started_frames_time_out() {
        let (a, mut b) = tokio::io::duplex(64);
        let mut t = Timed::new(a, LIMITS);
        let mut buf = [0u8; 4];
        let e = t.read_exact(&mut buf).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut, "nothing came: idle");
        // A frame started but trickled: the deadline is not reset by progress.
        t.expect_frame();
        let trickle = async {
            for _ in 0..3 {
                b.write_all(b"x").await.unwrap();
                tokio::time::sleep(Duration::from_millis(60)).await;
            }
        };
        let (r, ()) = tokio::join!(t.read_exact(&mut buf), trickle);
        assert_eq!(r.unwrap_err().kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test]
    async fn bulk_reads_need_only_progress() {
        let (a, mut b) = tokio::io::duplex(64);
        let mut t = Timed::new(a, LIMITS);
        t.expect_bulk();
        let mut buf = [0u8; 5];
        let feed = async {
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_millis(80)).await;
                b.write_all(b"y").await.unwrap();
            }
        };
        let (r, ()) = tokio::join!(t.read_exact(&mut buf), feed);
        r.unwrap();
        assert_eq!(&buf, b"yyyyy");
    }

    #[test]
    fn peers_are_counted_and_released() {
        let l = PeerLimit::new(2);
        let a = l.admit(1u32).unwrap();
        let _b = l.admit(1u32).unwrap();
        assert!(l.admit(1u32).is_none(), "third from one peer");
        assert!(l.admit(2u32).is_some(), "another peer is not affected");
        drop(a);
        assert!(
            l.admit(1u32).is_some(),
            "a closed connection frees its slot"
        );
    }
}
