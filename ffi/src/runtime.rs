//! The library's runtime: every entry point runs its call to completion
//! on the caller's own thread.
//!
//! Why not a multi-threaded runtime: a call there is handed to a worker
//! thread, which drives the socket and wakes the caller back, so every
//! request and its answer crossed three threads, and about half the
//! client's CPU per metadata call was the kernel switching them
//! (bench/RESULTS.md, "Through the C ABI"). A current-thread runtime lets
//! the calling thread drive the connection itself: it sends, waits in
//! `epoll` and reads the answer with no other thread involved. Calls from
//! several threads share it: one drives the I/O for all while the others
//! wait for their own answers.
//!
//! Between calls no caller drives the runtime, yet its connections still
//! have work: HTTP/2 pings to answer (the master drops a connection that
//! ignores them), clean-ups spawned by dropped handles. So once no call
//! has been running for [`IDLE`], a background thread drives the runtime
//! until the next call arrives, and gives it back at once then.

use std::future::Future;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// How long the runtime may go undriven between calls.
const IDLE: Duration = Duration::from_millis(50);

pub(crate) struct Runtime {
    rt: tokio::runtime::Runtime,
    calls: Mutex<Calls>,
    /// Tells the idle driver a call has arrived.
    arrived: Notify,
}

#[derive(Default)]
struct Calls {
    running: usize,
    /// When `running` last fell to 0.
    since: Option<Instant>,
    /// The idle driver holds the runtime.
    driving: bool,
}

pub(crate) fn runtime() -> &'static Runtime {
    static RT: OnceLock<&'static Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("the Eddy client runtime starts");
        let me: &'static Runtime = Box::leak(Box::new(Runtime {
            rt,
            calls: Mutex::new(Calls::default()),
            arrived: Notify::new(),
        }));
        std::thread::Builder::new()
            .name("eddy-idle".into())
            .spawn(|| me.drive_when_idle())
            .expect("the Eddy client's idle thread starts");
        me
    })
}

impl Runtime {
    /// Runs `f` to completion on this thread.
    pub(crate) fn block_on<F: Future>(&self, f: F) -> F::Output {
        let _call = self.arrive();
        self.rt.block_on(f)
    }

    /// Makes this runtime current (for spawning from a destructor).
    pub(crate) fn enter(&self) -> tokio::runtime::EnterGuard<'_> {
        self.rt.enter()
    }

    fn lock(&self) -> MutexGuard<'_, Calls> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn arrive(&self) -> Call<'_> {
        let mut c = self.lock();
        c.running += 1;
        if c.driving {
            self.arrived.notify_one();
        }
        Call(self)
    }

    fn drive_when_idle(&self) {
        loop {
            // Polled, not signalled: a wake-up per call would cost each call
            // a switch to this thread, the very thing this runtime avoids.
            std::thread::sleep(IDLE);
            let mut c = self.lock();
            let quiet = c.running == 0 && c.since.is_none_or(|t| t.elapsed() >= IDLE);
            if !quiet {
                continue;
            }
            c.driving = true;
            drop(c);
            // Ends when a call arrives (a permit stored before this starts
            // ends it at once): the call then takes the runtime.
            self.rt.block_on(self.arrived.notified());
            let mut c = self.lock();
            c.driving = false;
            c.since = Some(Instant::now());
        }
    }
}

/// One call in progress.
struct Call<'a>(&'a Runtime);

impl Drop for Call<'_> {
    fn drop(&mut self) {
        let mut c = self.0.lock();
        c.running -= 1;
        if c.running == 0 {
            c.since = Some(Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A task spawned between calls (a dropped handle's clean-up) runs
    /// without another call arriving: the idle thread drives it.
    #[test]
    fn spawned_work_runs_between_calls() {
        let rt = runtime();
        rt.block_on(async {});
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let _g = rt.enter();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                let _ = tx.send(());
            });
        }
        rx.recv_timeout(Duration::from_secs(10))
            .expect("the idle thread ran the task");
        // And a call after it drove takes the runtime back.
        assert_eq!(rt.block_on(async { 7 }), 7);
    }

    /// Calls from many threads at once all finish, each on its own thread.
    #[test]
    fn concurrent_calls_share_the_runtime() {
        let rt = runtime();
        let threads: Vec<_> = (0..8)
            .map(|i| {
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        let here = std::thread::current().id();
                        let (id, n) = rt.block_on(async move {
                            tokio::task::yield_now().await;
                            tokio::time::sleep(Duration::from_micros(100)).await;
                            (std::thread::current().id(), i)
                        });
                        assert_eq!((id, n), (here, i));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    }
}
