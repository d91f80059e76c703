//! The master's metrics (`eddy_master_*`, docs/METRICS.md): every RPC
//! counted and timed by a tower layer around the gRPC server, and the
//! namespace and cluster read at scrape time.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use eddy_metrics::{counter, gauge, histogram};
use eddy_proto::{CODE_METADATA_KEY, EddyCode};

use crate::service::MasterState;

/// Sets the `eddy_master_*` gauges from `state` before every scrape.
pub fn register(state: &Arc<MasterState>) {
    eddy_metrics::init();
    eddy_metrics::on_scrape(state, |s| {
        let info = s.cluster_info();
        gauge!("eddy_master_inodes").set(info.inode_count as f64);
        gauge!("eddy_master_mounts").set(f64::from(info.mount_count));
        let live = info.workers.iter().filter(|w| w.live).count();
        gauge!("eddy_master_workers", "state" => "live").set(live as f64);
        gauge!("eddy_master_workers", "state" => "lost").set((info.workers.len() - live) as f64);
        gauge!("eddy_master_blocks").set(info.block_count as f64);
        gauge!("eddy_master_under_replicated_blocks").set(info.under_replicated_blocks as f64);
        gauge!("eddy_master_unsatisfiable_blocks").set(info.unsatisfiable_blocks as f64);
        for t in &info.tiers {
            let tier = t.tier.clone();
            gauge!("eddy_master_capacity_bytes", "tier" => tier.clone())
                .set(t.capacity_bytes as f64);
            gauge!("eddy_master_used_bytes", "tier" => tier).set(t.used_bytes as f64);
        }
        gauge!("eddy_master_persist_pending_files").set(info.persist_pending_files as f64);
        gauge!("eddy_master_uptime_seconds").set(info.uptime_ms as f64 / 1000.0);
    });
}

/// Counts and times every RPC: `eddy_master_rpc_requests_total{method}`,
/// `eddy_master_rpc_errors_total{method,code}` (the Eddy code of the
/// error, docs/ERRORS.md) and `eddy_master_rpc_duration_seconds{method}`.
#[derive(Clone, Copy, Default)]
pub struct RpcMetricsLayer;

impl<S> tower_layer::Layer<S> for RpcMetricsLayer {
    type Service = RpcMetrics<S>;
    fn layer(&self, inner: S) -> RpcMetrics<S> {
        RpcMetrics { inner }
    }
}

#[derive(Clone)]
pub struct RpcMetrics<S> {
    inner: S,
}

/// The label for a request path: the RPC name of an Eddy service
/// (`/eddy.v1.FileSystemMaster/CreateFile` -> `CreateFile`), else `other`,
/// so a client sending arbitrary paths cannot grow the label set.
fn method_label(path: &str) -> &str {
    match path.strip_prefix("/eddy.").and_then(|p| p.rsplit_once('/')) {
        Some((_, m))
            if !m.is_empty() && m.len() <= 64 && m.bytes().all(|b| b.is_ascii_alphanumeric()) =>
        {
            m
        }
        _ => "other",
    }
}

/// Distinct method labels kept; Eddy has about 25 RPCs. Past this, names
/// (from clients calling methods that do not exist) count as `other`.
const MAX_METHODS: usize = 64;

/// The outcome of a gRPC response from its headers: `None` for success
/// (the status of a successful call comes in trailers), else the Eddy code
/// name, or the gRPC status number for errors without one.
fn error_label(headers: &http::HeaderMap) -> Option<String> {
    let status = headers.get("grpc-status")?.to_str().ok()?;
    if status == "0" {
        return None;
    }
    let eddy = headers
        .get(CODE_METADATA_KEY)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .and_then(|n| EddyCode::try_from(n).ok());
    Some(match eddy {
        Some(c) => c.name().to_string(),
        None => format!("GRPC_{status}"),
    })
}

/// One RPC's series, registered once and shared: the hot path does a map
/// lookup by method name, no label allocation.
struct RpcSeries {
    method: String,
    requests: eddy_metrics::Counter,
    duration: eddy_metrics::Histogram,
}

fn series(path: &str) -> Arc<RpcSeries> {
    type Map = parking_lot::RwLock<HashMap<String, Arc<RpcSeries>>>;
    static SERIES: std::sync::OnceLock<Map> = std::sync::OnceLock::new();
    let map = SERIES.get_or_init(Default::default);
    let mut label = method_label(path);
    if let Some(s) = map.read().get(label) {
        return s.clone();
    }
    let mut m = map.write();
    if m.len() >= MAX_METHODS && !m.contains_key(label) {
        label = "other";
    }
    m.entry(label.to_string())
        .or_insert_with(|| {
            Arc::new(RpcSeries {
                method: label.to_string(),
                requests: counter!("eddy_master_rpc_requests_total", "method" => label.to_string()),
                duration: histogram!("eddy_master_rpc_duration_seconds", "method" => label.to_string()),
            })
        })
        .clone()
}

impl<S, B, R> tower_service::Service<http::Request<B>> for RpcMetrics<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let s = series(req.uri().path());
        let start = Instant::now();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let r = fut.await;
            s.requests.increment(1);
            let failed = match &r {
                Ok(resp) => error_label(resp.headers()),
                Err(_) => Some("TRANSPORT".to_string()),
            };
            if let Some(code) = failed {
                // Errors are rare: labels built on the spot.
                counter!("eddy_master_rpc_errors_total", "method" => s.method.clone(), "code" => code)
                    .increment(1);
            }
            s.duration.record(start.elapsed().as_secs_f64());
            r
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_bounded() {
        assert_eq!(
            method_label("/eddy.v1.FileSystemMaster/CreateFile"),
            "CreateFile"
        );
        assert_eq!(method_label("/grpc.health.v1.Health/Check"), "other");
        assert_eq!(method_label("/eddy.v1.X/a-b"), "other");
        assert_eq!(method_label("/eddy.v1.X/"), "other");
        let mut h = http::HeaderMap::new();
        assert_eq!(error_label(&h), None, "no status in headers: success");
        h.insert("grpc-status", "5".parse().unwrap());
        assert_eq!(error_label(&h).as_deref(), Some("GRPC_5"));
        h.insert(CODE_METADATA_KEY, "2".parse().unwrap());
        assert_eq!(error_label(&h).as_deref(), Some("NOT_FOUND"));
    }

    #[test]
    fn made_up_method_names_cannot_grow_the_series_without_bound() {
        for i in 0..3 * MAX_METHODS {
            series(&format!("/eddy.v1.Made/Up{i}"));
        }
        assert_eq!(series("/eddy.v1.Made/Up0").method, "Up0");
        let last = format!("/eddy.v1.Made/Up{}", 3 * MAX_METHODS - 1);
        assert_eq!(series(&last).method, "other");
        assert_eq!(series("/eddy.v1.Made/x-y").method, "other");
    }
}
