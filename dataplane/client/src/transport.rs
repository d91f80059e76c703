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
}

impl Transport {
    /// A transport for `addr` (`host:port`) whose calls each end within
    /// `timeout`; nothing is dialled yet.
    pub fn new(addr: &str, timeout: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                addr: addr.to_string(),
                timeout,
                current: parking_lot::Mutex::new(None),
                dialing: tokio::sync::Mutex::new(()),
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

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let deadline = Instant::now() + this.inner.timeout;
            let head = async {
                let mut s = this.sender().await?;
                let lost = |e: hyper::Error| {
                    Status::unavailable(format!("connection to {} lost: {e}", this.inner.addr))
                };
                std::future::poll_fn(|cx| s.poll_ready(cx))
                    .await
                    .map_err(lost)?;
                s.send_request(req).await.map_err(lost)
            };
            let resp = tokio::time::timeout_at(deadline, head)
                .await
                .map_err(|_| this.inner.deadline_exceeded())??;
            Ok(resp.map(|inner| TimedBody {
                inner,
                deadline: Box::pin(tokio::time::sleep_until(deadline)),
                transport: this.inner.clone(),
            }))
        })
    }
}
