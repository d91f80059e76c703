//! The progress driver: with manual-progress providers (`tcp;ofi_rxm`) the
//! side that owns registered memory must keep polling its completion queue,
//! even though one-sided reads complete nothing there: the poll is what
//! answers the peer's read requests.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::backoff::Backoff;
use crate::domain::Inner;
use crate::error::RdmaError;
use crate::fabric::Fabric;

/// The longest pause while reads of this fabric's own are in flight: the
/// poll is what moves their bytes (manual progress) and what completes
/// them (`ReadOp`), so a long pause would be a stall.
const IN_FLIGHT_PAUSE: Duration = Duration::from_micros(10);

/// A thread polling one fabric until stopped; stopped and joined on drop.
/// One per fabric.
pub struct Progress {
    inner: Arc<Inner>,
    /// The bound on pauses, in nanoseconds (`set_max_pause`).
    bound: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl Progress {
    /// Polls with pauses of up to 200 µs when idle.
    pub fn start(fabric: &Fabric) -> Result<Self, RdmaError> {
        Self::start_with(fabric, Duration::from_micros(200))
    }

    /// Polls with pauses growing up to `max_idle` while nothing completes
    /// and no read of this fabric's is in flight (then at most 10 µs).
    pub fn start_with(fabric: &Fabric, max_idle: Duration) -> Result<Self, RdmaError> {
        let setup = |text: String, code: i64| RdmaError::Setup {
            provider: fabric.info().provider.clone(),
            call: "spawning the progress thread",
            code,
            text,
        };
        {
            let mut g = fabric.inner.gate();
            if g.running {
                return Err(setup("this fabric already has one".into(), 0));
            }
            g.running = true;
            g.stop = false;
        }
        let bound = Arc::new(AtomicU64::new(nanos(max_idle)));
        let (inner, b) = (fabric.inner.clone(), bound.clone());
        let spawned = std::thread::Builder::new()
            .name("eddy-rdma-progress".into())
            .spawn(move || run(&inner, &b));
        let thread = match spawned {
            Ok(t) => t,
            Err(e) => {
                fabric.inner.gate().running = false;
                return Err(setup(
                    e.to_string(),
                    -i64::from(e.raw_os_error().unwrap_or(0)),
                ));
            }
        };
        Ok(Self {
            inner: fabric.inner.clone(),
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
            self.inner.kick();
        }
    }

    /// Stops the thread and waits for it.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        let Some(t) = self.thread.take() else {
            return;
        };
        self.inner.gate().stop = true;
        self.inner.gate_wake.notify_all();
        // A panic in the thread already printed itself; nothing to add.
        let _ = t.join();
        let mut g = self.inner.gate();
        g.running = false;
        g.stop = false;
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

fn run(inner: &Inner, bound: &AtomicU64) {
    let mut backoff = Backoff::new(Duration::from_nanos(bound.load(Ordering::Relaxed)));
    loop {
        let (seen, in_flight) = {
            let mut st = inner.lock();
            let seen = inner.poll(&mut st);
            let in_flight = st.reads_in_flight();
            for w in std::mem::take(&mut st.retry) {
                w.wake();
            }
            (seen, in_flight)
        };
        if seen > 0 {
            backoff.reset();
        }
        let mut max = Duration::from_nanos(bound.load(Ordering::Relaxed));
        if in_flight {
            max = max.min(IN_FLIGHT_PAUSE);
        }
        backoff.set_max(max);
        let mut g = inner.gate();
        if g.stop {
            return;
        }
        if std::mem::take(&mut g.kicked) {
            backoff.reset();
            continue;
        }
        g.paused = true;
        // Waiting on the condvar, not sleeping: a kick or stop ends it.
        let (mut g, _) = inner
            .gate_wake
            .wait_timeout(g, backoff.next_pause())
            .unwrap_or_else(|e| e.into_inner());
        g.paused = false;
        if g.stop {
            return;
        }
        if std::mem::take(&mut g.kicked) {
            backoff.reset();
        }
    }
}
