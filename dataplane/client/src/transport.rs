//! The gRPC transport to the master: one HTTP/2 connection, reconnected on
//! demand.
//!
//! Why not `tonic::transport::Channel`: a `Channel` routes every request
//! through a tower buffer, a background task and a channel hop, which costs
//! about 15% of a small RPC's CPU on both ends of a 2-core host (see
//! `bench/RESULTS.md`). Here a call clones the connection's `SendRequest`
//! and hands the request straight to hyper's HTTP/2 connection task.
//!
//! Failure model: a call on a dead connection fails with `UNAVAILABLE`; the
//! next call dials again (one dial at a time, others wait for it). Every
//! call, dialling included, has a deadline: a master that accepts but never
//! answers (or stops half-way through an answer) fails the call with
//! `DEADLINE_EXCEEDED` instead of holding it forever.
//!
//! TLS: with `ClientOptions::tls` the dial does a rustls handshake (ALPN
//! h2) before HTTP/2 starts; its failures say which setting to change. A
//! plaintext dial watches the first bytes the server sends: a TLS record
//! there (a TLS master answering the HTTP/2 preface with an alert) turns
//! the failure into "this master serves TLS: set tls_ca".

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use eddy_proto::{EddyCode, RpcError};
use hyper::body::{Bytes, Frame, Incoming, SizeHint};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};
use tonic::Status;
use tonic::body::Body;

use eddy_proto::tls::ClientTls;

use crate::coalesce::Coalesce;

/// The longest a dial may take, whatever the call's deadline.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The default deadline of one call (see `ClientOptions::timeout`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// A cheap-to-clone handle on the connection to one master address.
#[derive(Clone)]
pub struct Transport {
    inner: Arc<Inner>,
}

struct Inner {
    /// `host:port`, as dialled.
    addr: String,
    /// Each call's deadline, from its start to the end of its answer.
    timeout: Duration,
    current: parking_lot::Mutex<Option<Conn>>,
    /// Held while dialling so concurrent callers share one new connection.
    dialing: tokio::sync::Mutex<()>,
    /// Some gRPC answer came back: failures from now on are a lost master,
    /// not a wrong address.
    /// Shared with connection tasks, which word their end by it.
    answered: Arc<AtomicBool>,
    /// Dial TLS with this; `None`: plaintext.
    tls: Option<ClientTls>,
    /// A plaintext dial saw the server's first bytes be a TLS record.
    saw_tls: Arc<AtomicBool>,
    /// Sent with every call: who the caller is (`crate::credentials`).
    /// Replaceable: a worker re-reads a rotated token and goes on with the
    /// same connection.
    identity: parking_lot::RwLock<Arc<Vec<(http::HeaderName, http::HeaderValue)>>>,
}

impl Transport {
    /// A transport for `addr` (`host:port`) whose calls each end within
    /// `timeout`; nothing is dialled yet.
    pub fn new(addr: &str, timeout: Duration) -> Self {
        Self::with(addr, timeout, Vec::new(), None)
    }

    /// As [`Transport::new`], dialling TLS with `tls` when it is set.
    pub fn with_tls(addr: &str, timeout: Duration, tls: Option<ClientTls>) -> Self {
        Self::with(addr, timeout, Vec::new(), tls)
    }

    /// As [`Transport::new`], every call carrying the `identity` headers,
    /// dialling TLS with `tls` when it is set.
    pub(crate) fn with(
        addr: &str,
        timeout: Duration,
        identity: Vec<(http::HeaderName, http::HeaderValue)>,
        tls: Option<ClientTls>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                addr: addr.to_string(),
                timeout,
                current: parking_lot::Mutex::new(None),
                dialing: tokio::sync::Mutex::new(()),
                answered: Default::default(),
                tls,
                saw_tls: Default::default(),
                identity: parking_lot::RwLock::new(Arc::new(identity)),
            }),
        }
    }

    /// Calls from now on carry `identity` instead.
    pub(crate) fn set_identity(&self, identity: Vec<(http::HeaderName, http::HeaderValue)>) {
        *self.inner.identity.write() = Arc::new(identity);
    }

    fn live(&self) -> Option<Conn> {
        self.inner
            .current
            .lock()
            .as_ref()
            .filter(|c| !c.send.is_closed())
            .cloned()
    }

    /// The live connection, dialling one if there is none.
    pub async fn sender(&self) -> Result<SendRequest<Body>, Status> {
        Ok(self.conn().await?.send)
    }

    async fn conn(&self) -> Result<Conn, Status> {
        if let Some(c) = self.live() {
            return Ok(c);
        }
        let _dialing = self.inner.dialing.lock().await;
        if let Some(c) = self.live() {
            return Ok(c);
        }
        let limit = CONNECT_TIMEOUT.min(self.inner.timeout);
        let s = tokio::time::timeout(limit, dial(&self.inner))
            .await
            .map_err(|_| {
                Status::from(RpcError::new(
                    EddyCode::DeadlineExceeded,
                    format!(
                        "no Eddy master answered at {} within {limit:?} (is it running? check --master or EDDY_MASTER)",
                        self.inner.addr
                    ),
                ))
            })??;
        *self.inner.current.lock() = Some(s.clone());
        Ok(s)
    }
}

/// One HTTP/2 connection: the handle calls go through, and how its task
/// ended (the TLS diagnosis of its error, if any; the sender is dropped
/// when the task ends). A TLS alert kills the connection task, while the
/// call on it sees only "channel closed": the call asks this for the why.
#[derive(Clone)]
struct Conn {
    send: SendRequest<Body>,
    ended: tokio::sync::watch::Receiver<Option<String>>,
}

impl Conn {
    /// The TLS reason the connection ended for, waiting `limit` at most for
    /// its task to finish (it is finishing: a call on it just failed).
    async fn tls_reason(&self, limit: Duration) -> Option<String> {
        let mut ended = self.ended.clone();
        let _ = tokio::time::timeout(limit, async { while ended.changed().await.is_ok() {} }).await;
        ended.borrow().clone()
    }
}

/// The one place a connection to the master is opened: TCP, TLS when the
/// client has it, then the HTTP/2 handshake.
async fn dial(inner: &Inner) -> Result<Conn, Status> {
    let addr = inner.addr.as_str();
    let unavailable = |e: &dyn std::fmt::Display| Status::unavailable(format!("{addr}: {e}"));
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| unavailable(&e))?;
    tcp.set_nodelay(true).map_err(|e| unavailable(&e))?;
    let tcp = Coalesce::new(tcp);
    let Some(tls) = &inner.tls else {
        let sniff = Sniff {
            io: tcp,
            saw_tls: inner.saw_tls.clone(),
            checked: false,
        };
        return http2(sniff, None).await.map_err(|e| unavailable(&e));
    };
    let name = eddy_proto::tls::server_name(addr).map_err(|e| unavailable(&e))?;
    let s = tokio_rustls::TlsConnector::from(tls.grpc())
        .connect(name, tcp)
        .await
        .map_err(|e| {
            let peer = format!("the Eddy master at {addr}");
            // "TLS: " marks a peer that answered (not one that is down).
            Status::unavailable(format!("TLS: {}", tls.explain(&peer, &e)))
        })?;
    let why = Why {
        tls: tls.clone(),
        peer: format!("the Eddy master at {addr}"),
        answered: inner.answered.clone(),
    };
    http2(s, Some(why)).await.map_err(|e| unavailable(&e))
}

/// What a TLS connection's task needs to word its end.
struct Why {
    tls: ClientTls,
    peer: String,
    answered: Arc<AtomicBool>,
}

impl Why {
    /// A TLS alert; or, before any answer, a close right after the
    /// handshake: what a server refusing the client's certificate (or its
    /// absence) looks like in TLS 1.3 when its alert is lost (it closes
    /// with the client's first request unread).
    fn of(&self, e: &hyper::Error) -> Option<String> {
        if let Some(why) = diagnose(&self.tls, &self.peer, e) {
            return Some(why);
        }
        // The alert may be lost: the server closes with the client's
        // request unread, which resets the connection.
        let closed = io_of(e).is_some_and(|io| {
            use io::ErrorKind as K;
            matches!(
                io.kind(),
                K::UnexpectedEof | K::ConnectionReset | K::BrokenPipe
            )
        });
        if !closed || self.answered.load(Ordering::Relaxed) {
            return None;
        }
        let peer = &self.peer;
        Some(if self.tls.has_client_cert() {
            format!(
                "{peer} closed the connection right after the TLS handshake, before any answer: it may not accept this client's certificate: set [security] tls_cert and tls_key to one signed by the CA it trusts"
            )
        } else {
            format!(
                "{peer} closed the connection right after the TLS handshake, before any answer: it may require a client certificate (mutual TLS): set [security] tls_cert and tls_key to a certificate signed by its CA"
            )
        })
    }
}

/// HTTP/2 over `io`; with `why`, the connection task's error is worded
/// for the calls that fail on it.
async fn http2<IO>(io: IO, why: Option<Why>) -> Result<Conn, hyper::Error>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        // Listing pages and block lists are larger than the 64 KiB default.
        .initial_stream_window_size(1 << 20)
        .initial_connection_window_size(4 << 20)
        .handshake(TokioIo::new(io))
        .await?;
    // The connection task ends when the peer goes away; the next call sees
    // `is_closed` and dials again.
    let (tell, ended) = tokio::sync::watch::channel(None);
    tokio::spawn(async move {
        if let (Err(e), Some(why)) = (conn.await, why)
            && let Some(text) = why.of(&e)
        {
            let _ = tell.send(Some(text));
        }
    });
    Ok(Conn { send, ended })
}

/// [`ClientTls::diagnose`] of a hyper error, looking inside h2's errors
/// too (they wrap the I/O error holding the TLS alert without exposing it
/// as a `source`).
fn diagnose(tls: &ClientTls, peer: &str, e: &hyper::Error) -> Option<String> {
    match io_of(e) {
        Some(io) => tls.diagnose(peer, io),
        None => tls.diagnose(peer, e),
    }
}

/// The I/O error under a hyper error, also inside h2's.
fn io_of(e: &hyper::Error) -> Option<&io::Error> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<h2::Error>().and_then(h2::Error::get_io) {
            return Some(io);
        }
        if let Some(io) = err.downcast_ref::<io::Error>() {
            return Some(io);
        }
        cur = err.source();
    }
    None
}

/// A plaintext connection that notes whether the server's first bytes
/// are a TLS record (content type alert or handshake, then major version
/// 3): an HTTP/2 server's first frame starts with a zero length byte.
struct Sniff {
    io: Coalesce<TcpStream>,
    saw_tls: Arc<AtomicBool>,
    checked: bool,
}

impl AsyncRead for Sniff {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut me.io).poll_read(cx, buf);
        if !me.checked && buf.filled().len() > before {
            me.checked = true;
            let first = &buf.filled()[before..];
            let record = matches!(first[0], 0x15 | 0x16) && first.get(1).is_none_or(|&v| v == 3);
            me.saw_tls.store(record, Ordering::Relaxed);
        }
        r
    }
}

impl AsyncWrite for Sniff {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

impl Transport {
    /// The address answers, but not as an Eddy master does.
    fn not_a_master(&self, why: &dyn std::fmt::Display) -> Status {
        let addr = &self.inner.addr;
        if self.inner.tls.is_none() && self.inner.saw_tls.load(Ordering::Relaxed) {
            return Status::unavailable(format!(
                "the Eddy master at {addr} serves TLS and this client dials plaintext: set [security] tls_ca (or EDDY_TLS_CA) to the CA that signed its certificate, which makes this client dial TLS (an https:// address alone does not: without tls_ca it is refused)"
            ));
        }
        Status::unavailable(format!(
            "no Eddy master at {addr} ({why}; is it running? check --master / EDDY_MASTER)"
        ))
    }

    /// A call that failed on connection `c`. TLS alerts (a refused client
    /// certificate arrives only after the handshake in TLS 1.3) are told
    /// as such.
    async fn failed(&self, c: &Conn, e: &hyper::Error) -> Status {
        if let Some(tls) = &self.inner.tls {
            let peer = format!("the Eddy master at {}", self.inner.addr);
            let why = match diagnose(tls, &peer, e) {
                Some(why) => Some(why),
                None => c.tls_reason(Duration::from_millis(500)).await,
            };
            if let Some(why) = why {
                return Status::unavailable(why);
            }
        }
        if self.inner.answered.load(Ordering::Relaxed) {
            Status::unavailable(format!("connection to {} lost: {e}", self.inner.addr))
        } else {
            self.not_a_master(e)
        }
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl Inner {
    fn deadline_exceeded(&self) -> Status {
        Status::from(RpcError::new(
            EddyCode::DeadlineExceeded,
            format!(
                "the Eddy master at {} did not answer within {:?}; retry, or raise the client timeout",
                self.addr, self.timeout
            ),
        ))
    }
}

/// A response body that fails with `DEADLINE_EXCEEDED` once its call's
/// deadline passes (a master that sends headers and then stalls).
pub struct TimedBody {
    inner: Incoming,
    deadline: Pin<Box<Sleep>>,
    transport: Arc<Inner>,
}

impl hyper::body::Body for TimedBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = &mut *self;
        if let Poll::Ready(f) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(f.map(|r| {
                r.map_err(|e| {
                    Status::unavailable(format!("connection to {} lost: {e}", this.transport.addr))
                })
            }));
        }
        match this.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(this.transport.deadline_exceeded()))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        hyper::body::Body::is_end_stream(&self.inner)
    }

    fn size_hint(&self) -> SizeHint {
        hyper::body::Body::size_hint(&self.inner)
    }
}

impl tower_service::Service<http::Request<Body>> for Transport {
    type Response = http::Response<TimedBody>;
    type Error = Status;
    type Future = BoxFuture<Result<Self::Response, Status>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Status>> {
        // Readiness is awaited per call on the connection itself.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: http::Request<Body>) -> Self::Future {
        let identity = self.inner.identity.read().clone();
        for (k, v) in identity.iter() {
            req.headers_mut().insert(k.clone(), v.clone());
        }
        let this = self.clone();
        Box::pin(async move {
            let deadline = Instant::now() + this.inner.timeout;
            let head = async {
                let c = this.conn().await?;
                let mut s = c.send.clone();
                let sent = match std::future::poll_fn(|cx| s.poll_ready(cx)).await {
                    Ok(()) => s.send_request(req).await,
                    Err(e) => Err(e),
                };
                match sent {
                    Ok(r) => Ok(r),
                    Err(e) => Err(this.failed(&c, &e).await),
                }
            };
            let resp = tokio::time::timeout_at(deadline, head)
                .await
                .map_err(|_| this.inner.deadline_exceeded())??;
            // Something that speaks HTTP/2 but not gRPC (a proxy, another
            // service): say so instead of tonic's "grpc-status header missing".
            let grpc = resp
                .headers()
                .get(http::header::CONTENT_TYPE)
                .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
            if !grpc {
                return Err(this.not_a_master(&format_args!("it answered HTTP {}", resp.status())));
            }
            this.inner.answered.store(true, Ordering::Relaxed);
            Ok(resp.map(|inner| TimedBody {
                inner,
                deadline: Box::pin(tokio::time::sleep_until(deadline)),
                transport: this.inner.clone(),
            }))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An HTTP/2 server that is not a gRPC one (a proxy, another service)
    /// answers 404 without `grpc-status`: the caller hears "no Eddy master
    /// at ADDR", not tonic's "grpc-status header missing".
    #[tokio::test]
    async fn a_server_that_is_not_grpc_is_not_a_master() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (s, _) = l.accept().await.unwrap();
            let svc = hyper::service::service_fn(|_req| async {
                http::Response::builder().status(404).body(String::new())
            });
            let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(s), svc)
                .await;
        });
        let c = crate::MasterClient::connect(&addr).await.unwrap();
        let e = c.stat("/").await.unwrap_err();
        assert_eq!(e.code(), eddy_proto::EddyCode::Unavailable, "{e}");
        let text = e.to_string();
        assert!(
            text.contains(&format!("no Eddy master at {addr}"))
                && text.contains("HTTP 404")
                && !text.contains("grpc-status"),
            "{text}"
        );
    }
}
