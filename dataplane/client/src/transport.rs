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

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use eddy_proto::{EddyCode, RpcError};
use hyper::body::{Bytes, Frame, Incoming, SizeHint};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::time::{Instant, Sleep};
use tonic::Status;
use tonic::body::Body;

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
    current: parking_lot::Mutex<Option<SendRequest<Body>>>,
    /// Held while dialling so concurrent callers share one new connection.
    dialing: tokio::sync::Mutex<()>,
    /// Some gRPC answer came back: failures from now on are a lost master,
    /// not a wrong address.
    answered: AtomicBool,
    /// Sent with every call: who the caller is (`crate::credentials`).
    identity: Vec<(http::HeaderName, http::HeaderValue)>,
}

impl Transport {
    /// A transport for `addr` (`host:port`) whose calls each end within
    /// `timeout`; nothing is dialled yet.
    pub fn new(addr: &str, timeout: Duration) -> Self {
        Self::with_identity(addr, timeout, Vec::new())
    }

    /// As [`Transport::new`], every call carrying the `identity` headers.
    pub(crate) fn with_identity(
        addr: &str,
        timeout: Duration,
        identity: Vec<(http::HeaderName, http::HeaderValue)>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                addr: addr.to_string(),
                timeout,
                current: parking_lot::Mutex::new(None),
                dialing: tokio::sync::Mutex::new(()),
                answered: AtomicBool::new(false),
                identity,
            }),
        }
    }

    fn live(&self) -> Option<SendRequest<Body>> {
        self.inner
            .current
            .lock()
            .as_ref()
            .filter(|s| !s.is_closed())
            .cloned()
    }

    /// The live connection, dialling one if there is none.
    pub async fn sender(&self) -> Result<SendRequest<Body>, Status> {
        if let Some(s) = self.live() {
            return Ok(s);
        }
        let _dialing = self.inner.dialing.lock().await;
        if let Some(s) = self.live() {
            return Ok(s);
        }
        let limit = CONNECT_TIMEOUT.min(self.inner.timeout);
        let s = tokio::time::timeout(limit, dial(&self.inner.addr))
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

async fn dial(addr: &str) -> Result<SendRequest<Body>, Status> {
    let unavailable = |e: &dyn std::fmt::Display| Status::unavailable(format!("{addr}: {e}"));
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| unavailable(&e))?;
    tcp.set_nodelay(true).map_err(|e| unavailable(&e))?;
    let (send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        // Listing pages and block lists are larger than the 64 KiB default.
        .initial_stream_window_size(1 << 20)
        .initial_connection_window_size(4 << 20)
        .handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| unavailable(&e))?;
    // The connection task ends when the peer goes away; the next call sees
    // `is_closed` and dials again.
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(send)
}

impl Transport {
    /// The address answers, but not as an Eddy master does.
    fn not_a_master(&self, why: &dyn std::fmt::Display) -> Status {
        Status::unavailable(format!(
            "no Eddy master at {} ({why}; is it running? check --master / EDDY_MASTER)",
            self.inner.addr
        ))
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
        for (k, v) in &self.inner.identity {
            req.headers_mut().insert(k.clone(), v.clone());
        }
        let this = self.clone();
        Box::pin(async move {
            let deadline = Instant::now() + this.inner.timeout;
            let head = async {
                let mut s = this.sender().await?;
                let lost = |e: hyper::Error| {
                    if this.inner.answered.load(Ordering::Relaxed) {
                        Status::unavailable(format!("connection to {} lost: {e}", this.inner.addr))
                    } else {
                        this.not_a_master(&e)
                    }
                };
                std::future::poll_fn(|cx| s.poll_ready(cx))
                    .await
                    .map_err(lost)?;
                s.send_request(req).await.map_err(lost)
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
