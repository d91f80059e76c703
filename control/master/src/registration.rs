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
use std::time::Duration;

use eddy_proto::pb;

use crate::error::{MasterError, Result};
use crate::service::MasterState;

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

    /// `SelectWorker`, for the running RPC's caller: its arguments and its
    /// access to the block's file are checked first (`permit_placement`).
    /// During the grace period a placement that finds no worker waits for
    /// the next registration (or the end of the period) and tries again,
    /// instead of failing a create whose file the master has already made.
    /// The client's deadline bounds the wait as well: it drops the call.
    pub async fn select_worker_in_grace(
        &self,
        r: pb::SelectWorkerRequest,
    ) -> Result<pb::SelectWorkerResponse> {
        crate::limits::placement(r.policy)?;
        self.permit_placement(r.block_id)?;
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
