//! The registration grace period after a restart.
//!
//! A restarted master knows its namespace (the metastore) but not where
//! blocks are cached: that comes back as each worker registers again, on its
//! first heartbeat after the master answers. Until then "no live worker" and
//! "no known copy" mean "not registered yet", not "gone". For the grace
//! period (`worker_registration_grace_ms`) placement waits for a worker
//! instead of failing, and a block without a known copy is not lost: reads
//! get a retryable UNAVAILABLE instead of DATA_LOST. The period is over at
//! its end, whatever registered; a master starting on an empty metastore has
//! none (no worker can hold anything of its).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use eddy_proto::pb;
use tokio::sync::watch;

use crate::error::{MasterError, Result};
use crate::service::MasterState;

/// When the grace period ends, and a signal for those waiting in it.
#[derive(Debug)]
pub struct Grace {
    /// Monotonic ms (the master's clock) at which the period ends.
    until: AtomicU64,
    /// Bumped on every worker registration and when the period ends, so
    /// placement waiting for a worker looks again.
    changed: watch::Sender<u64>,
}

impl Default for Grace {
    fn default() -> Self {
        Self {
            until: AtomicU64::new(0),
            changed: watch::channel(0).0,
        }
    }
}

impl Grace {
    /// Starts a period ending at monotonic ms `until`.
    pub fn begin(&self, until: u64) {
        self.until.store(until, Ordering::Relaxed);
    }

    /// Milliseconds left of the period at `now` if `active` (the registry's
    /// flag, the truth), at least 1 while it is; 0 once over.
    pub fn left_ms(&self, active: bool, now: u64) -> u64 {
        if !active {
            return 0;
        }
        self.until
            .load(Ordering::Relaxed)
            .saturating_sub(now)
            .max(1)
    }

    /// A receiver that sees every later [`Grace::bump`]. Take it before
    /// checking the state it guards, so no change slips between the two.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Wakes everyone waiting (a worker registered, or the period ended).
    pub fn bump(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }
}

impl MasterState {
    /// Starts the grace period (a restart) and ends it
    /// `worker_registration_grace_ms` from now, waking whoever waits.
    pub(crate) fn begin_registration_grace(self: &Arc<Self>) {
        let ms = self.cfg.worker_registration_grace_ms;
        if ms == 0 {
            return;
        }
        self.grace.begin(self.mono_ms().saturating_add(ms));
        self.reg.lock().awaiting_workers = true;
        let state = Arc::downgrade(self);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            if let Some(s) = state.upgrade() {
                let live = {
                    let mut reg = s.reg.lock();
                    reg.awaiting_workers = false;
                    reg.workers().filter(|w| w.live).count()
                };
                s.grace.bump();
                tracing::info!(
                    "registration grace period over after {ms} ms: {live} live workers; blocks without a copy on them now count as lost"
                );
            }
        });
    }

    /// `SelectWorker`: during the grace period a placement that finds no
    /// worker waits for the next registration (or the end of the period)
    /// and tries again, instead of failing a create whose file the master
    /// has already made. The client's deadline bounds the wait as well: it
    /// drops the call.
    pub(crate) async fn select_worker_in_grace(
        &self,
        r: pb::SelectWorkerRequest,
    ) -> Result<pb::SelectWorkerResponse> {
        let mut changed = self.grace.subscribe();
        loop {
            match self.select_worker(r.clone()) {
                Err(MasterError::NoWorkerAvailable(_)) if self.reg.lock().awaiting_workers => {
                    if changed.changed().await.is_err() {
                        return self.select_worker(r);
                    }
                }
                other => return other,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn left_is_positive_while_active_and_zero_after() {
        let g = Grace::default();
        g.begin(1_000);
        assert_eq!(g.left_ms(true, 400), 600);
        assert_eq!(g.left_ms(true, 1_000), 1, "the flag is the truth");
        assert_eq!(g.left_ms(false, 400), 0);
    }

    #[tokio::test]
    async fn a_bump_after_subscribing_is_seen() {
        let g = Grace::default();
        let mut rx = g.subscribe();
        g.bump();
        tokio::time::timeout(std::time::Duration::from_secs(5), rx.changed())
            .await
            .expect("seen")
            .unwrap();
    }
}
