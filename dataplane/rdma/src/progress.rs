//! The progress driver: with manual-progress providers (`tcp;ofi_rxm`) the
//! side that owns registered memory must keep polling its completion queue,
//! even though one-sided reads complete nothing there: the poll is what
//! answers the peer's read requests.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::backoff::Backoff;
use crate::domain::Inner;
use crate::error::RdmaError;
use crate::fabric::Fabric;

/// A thread polling one fabric until stopped; stopped and joined on drop.
pub struct Progress {
    stop: Arc<(Mutex<bool>, Condvar)>,
    /// The bound on pauses, in nanoseconds (`set_max_pause`).
    bound: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl Progress {
    /// Polls with pauses of up to 200 µs when idle.
    pub fn start(fabric: &Fabric) -> Result<Self, RdmaError> {
        Self::start_with(fabric, Duration::from_micros(200))
    }

    /// Polls with pauses growing up to `max_idle` while nothing completes.
    pub fn start_with(fabric: &Fabric, max_idle: Duration) -> Result<Self, RdmaError> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let bound = Arc::new(AtomicU64::new(nanos(max_idle)));
        let inner = fabric.inner.clone();
        let (flag, b) = (stop.clone(), bound.clone());
        let thread = std::thread::Builder::new()
            .name("eddy-rdma-progress".into())
            .spawn(move || run(&inner, &flag, &b))
            .map_err(|e| RdmaError::Setup {
                provider: fabric.info().provider.clone(),
                call: "spawning the progress thread",
                code: -i64::from(e.raw_os_error().unwrap_or(0)),
                text: e.to_string(),
            })?;
        Ok(Self {
            stop,
            bound,
            thread: Some(thread),
        })
    }

    /// Changes the bound on pauses while idle, at once (a thread in a long
    /// pause is woken): short while peers may read (latency), long while
    /// none can (an idle owner's CPU).
    pub fn set_max_pause(&self, max_idle: Duration) {
        let old = self.bound.swap(nanos(max_idle), Ordering::Relaxed);
        if nanos(max_idle) < old {
            self.stop.1.notify_all();
        }
    }

    /// Stops the thread and waits for it.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        let (flag, wake) = &*self.stop;
        *flag.lock().unwrap_or_else(|e| e.into_inner()) = true;
        wake.notify_all();
        if let Some(t) = self.thread.take() {
            // A panic in the thread already printed itself; nothing to add.
            let _ = t.join();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.halt();
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn run(inner: &Inner, stop: &(Mutex<bool>, Condvar), bound: &AtomicU64) {
    let (flag, wake) = stop;
    let mut backoff = Backoff::new(Duration::from_nanos(bound.load(Ordering::Relaxed)));
    loop {
        if inner.poll(&mut inner.lock()) > 0 {
            backoff.reset();
        }
        backoff.set_max(Duration::from_nanos(bound.load(Ordering::Relaxed)));
        let stopped = flag.lock().unwrap_or_else(|e| e.into_inner());
        if *stopped {
            return;
        }
        // Waiting on the condvar, not sleeping: `stop` wakes it at once.
        let (stopped, _) = wake
            .wait_timeout(stopped, backoff.next_pause())
            .unwrap_or_else(|e| e.into_inner());
        if *stopped {
            return;
        }
    }
}
