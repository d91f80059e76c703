//! Eddy's metrics endpoint: the `metrics` facade recorded by one Prometheus
//! recorder per process, served as text on `GET /metrics` from a small HTTP
//! server of our own (so the bound port is known when port 0 was asked for).
//!
//! Counters and histograms are recorded where things happen (the master's
//! RPC layer, for example). State that already lives in atomics or tables
//! (inode counts, a worker's block store) is read by *scrape hooks* just
//! before each render, so a scrape shows the state at that moment without
//! a polling task.
//!
//! In `eddy local` the master and the worker share the process, hence one
//! recorder and one endpoint; their metric names do not overlap
//! (`eddy_master_*`, `eddy_worker_*`).
//!
//! Architecture invariant: this crate knows nothing of Eddy's other crates.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub use metrics::{Counter, Gauge, Histogram, counter, gauge, histogram};

/// How often queued histogram samples are folded into their summaries.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// A function run before each render; it returns false once what it reads
/// is gone (its owner shut down) and is then dropped.
type Hook = Box<dyn Fn() -> bool + Send + Sync>;

struct Process {
    handle: Option<PrometheusHandle>,
    hooks: Mutex<Vec<Hook>>,
}

fn process() -> &'static Process {
    static P: OnceLock<Process> = OnceLock::new();
    P.get_or_init(|| {
        // Fails only when another recorder was installed first (an
        // embedding program's own): then Eddy records nothing of its own
        // and the endpoint says so.
        let handle = match PrometheusBuilder::new().install_recorder() {
            Ok(h) => {
                // Histogram samples queue up until upkeep folds them into
                // their summaries: without it a process nobody scrapes
                // would grow with every recorded sample.
                let up = h.clone();
                let spawned = std::thread::Builder::new()
                    .name("eddy-metrics-upkeep".into())
                    .spawn(move || {
                        loop {
                            std::thread::sleep(UPKEEP_EVERY);
                            up.run_upkeep();
                        }
                    });
                if let Err(e) = spawned {
                    tracing::warn!(
                        "metrics: no upkeep thread ({e}); histograms fold at scrape time only"
                    );
                }
                Some(h)
            }
            Err(e) => {
                tracing::warn!(
                    "metrics: cannot install Eddy's recorder ({e}); /metrics stays empty"
                );
                None
            }
        };
        Process {
            handle,
            hooks: Mutex::new(Vec::new()),
        }
    })
}

/// Installs the process's recorder (idempotent). Call before recording.
pub fn init() {
    process();
}

/// Runs `read(&state)` before every render while `state` is alive: the
/// place to set gauges from state that is already kept elsewhere.
pub fn on_scrape<T: Send + Sync + 'static>(
    state: &Arc<T>,
    read: impl Fn(&T) + Send + Sync + 'static,
) {
    let weak: Weak<T> = Arc::downgrade(state);
    process()
        .hooks
        .lock()
        .push(Box::new(move || match weak.upgrade() {
            Some(s) => {
                read(&s);
                true
            }
            None => false,
        }));
}

/// The Prometheus text exposition of everything recorded in this process,
/// after the scrape hooks ran.
pub fn render() -> String {
    let p = process();
    p.hooks.lock().retain(|h| h());
    match &p.handle {
        Some(h) => {
            h.run_upkeep();
            h.render()
        }
        None => String::new(),
    }
}

/// A running `/metrics` endpoint; stops when dropped.
pub struct MetricsServer {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves `GET /metrics` on `bind` (port 0 picks one; see
/// [`MetricsServer::addr`]). Other paths get 404, other methods 405.
pub async fn serve(bind: &str) -> std::io::Result<MetricsServer> {
    init();
    let listener = TcpListener::bind(bind).await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                // EMFILE and the like: back off instead of spinning.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            tokio::spawn(async move {
                // A client that sends nothing is cut off.
                let _ = tokio::time::timeout(Duration::from_secs(10), answer(sock)).await;
            });
        }
    });
    Ok(MetricsServer { addr, task })
}

/// Largest request head read; a scrape's is a few hundred bytes.
const MAX_HEAD: usize = 16 << 10;

async fn answer(mut sock: TcpStream) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = sock.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > MAX_HEAD {
            return respond(
                &mut sock,
                "431 Request Header Fields Too Large",
                "text/plain",
                b"request head too large\n",
            )
            .await;
        }
    }
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET", "/metrics") => {
            let body = render();
            respond(
                &mut sock,
                "200 OK",
                "text/plain; version=0.0.4; charset=utf-8",
                body.as_bytes(),
            )
            .await
        }
        (_, "/metrics") => {
            respond(
                &mut sock,
                "405 Method Not Allowed",
                "text/plain",
                b"only GET\n",
            )
            .await
        }
        _ => {
            respond(
                &mut sock,
                "404 Not Found",
                "text/plain",
                b"metrics are at /metrics\n",
            )
            .await
        }
    }
}

async fn respond(
    sock: &mut TcpStream,
    status: &str,
    ctype: &str,
    body: &[u8],
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    sock.write_all(head.as_bytes()).await?;
    sock.write_all(body).await?;
    sock.shutdown().await?;
    // Read what the client still sends until it closes: closing with unread
    // bytes would reset the connection and could destroy the answer in
    // flight (bounded by the caller's timeout).
    let mut sink = [0u8; 1024];
    while sock.read(&mut sink).await? > 0 {}
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(addr: SocketAddr, request: &str) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn serves_recorded_metrics_and_hook_gauges() {
        let srv = serve("127.0.0.1:0").await.unwrap();
        counter!("eddy_test_events_total", "kind" => "a").increment(3);
        let state = Arc::new(std::sync::atomic::AtomicU64::new(41));
        on_scrape(&state, |s| {
            gauge!("eddy_test_level").set(s.load(std::sync::atomic::Ordering::Relaxed) as f64)
        });
        state.store(42, std::sync::atomic::Ordering::Relaxed);
        let out = get(srv.addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
        assert!(
            out.contains("eddy_test_events_total{kind=\"a\"} 3"),
            "{out}"
        );
        assert!(
            out.contains("eddy_test_level 42"),
            "the hook ran at scrape time: {out}"
        );
        // A hook whose state is gone is dropped, not run.
        drop(state);
        let _ = render();
        assert!(process().hooks.lock().is_empty());

        let out = get(srv.addr, "GET /nope HTTP/1.1\r\n\r\n").await;
        assert!(out.starts_with("HTTP/1.1 404"), "{out}");
        let out = get(srv.addr, "POST /metrics HTTP/1.1\r\n\r\n").await;
        assert!(out.starts_with("HTTP/1.1 405"), "{out}");
        let huge = format!(
            "GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n",
            "a".repeat(MAX_HEAD)
        );
        let out = get(srv.addr, &huge).await;
        assert!(out.starts_with("HTTP/1.1 431"), "{out}");
        // A client that connects and goes away does not stop the server.
        drop(TcpStream::connect(srv.addr).await.unwrap());
        let out = get(srv.addr, "GET /metrics HTTP/1.1\r\n\r\n").await;
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    }
}
