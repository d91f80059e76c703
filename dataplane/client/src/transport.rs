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
//! next call dials again (one dial at a time, others wait for it).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tonic::Status;
use tonic::body::Body;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A cheap-to-clone handle on the connection to one master address.
#[derive(Clone)]
pub struct Transport {
    inner: Arc<Inner>,
}

struct Inner {
    /// `host:port`, as dialled.
    addr: String,
    current: parking_lot::Mutex<Option<SendRequest<Body>>>,
    /// Held while dialling so concurrent callers share one new connection.
    dialing: tokio::sync::Mutex<()>,
}

impl Transport {
    /// A transport for `addr` (`host:port`); nothing is dialled yet.
    pub fn new(addr: &str) -> Self {
        Self {
            inner: Arc::new(Inner {
                addr: addr.to_string(),
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
        let s = tokio::time::timeout(CONNECT_TIMEOUT, dial(&self.inner.addr))
            .await
            .map_err(|_| {
                Status::unavailable(format!(
                    "timed out after {CONNECT_TIMEOUT:?} connecting to {}",
                    self.inner.addr
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

impl tower_service::Service<http::Request<Body>> for Transport {
    type Response = http::Response<hyper::body::Incoming>;
    type Error = Status;
    type Future = BoxFuture<Result<Self::Response, Status>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Status>> {
        // Readiness is awaited per call on the connection itself.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let mut s = this.sender().await?;
            let lost = |e: hyper::Error| {
                Status::unavailable(format!("connection to {} lost: {e}", this.inner.addr))
            };
            std::future::poll_fn(|cx| s.poll_ready(cx))
                .await
                .map_err(lost)?;
            s.send_request(req).await.map_err(lost)
        })
    }
}
