//! Answers never show a change that is not durable yet.
//!
//! A mutation changes memory under the namespace write lock and submits its
//! batch to the metastore before releasing it, then waits for the batch to
//! be durable before answering. Between the release and the fsync, another
//! request can see the change; if the master dies in that window the change
//! is gone after the restart, and what that request answered (a listing
//! without a deleted file, a stat of a new one) contradicts the history.
//! So every change gets a sequence number when it is submitted, batches
//! become durable in submission order, and an answer that read the
//! namespace first waits until everything submitted before it read is
//! durable. Idle, that costs nothing (nothing is pending); under writes, at
//! most the group commit a read overlaps with (etcd's linearizable reads
//! wait for their read index the same way).

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::watch;

/// Sequence numbers of submitted and durable namespace changes.
#[derive(Debug)]
pub struct Durability {
    /// The last change submitted (taken under the namespace write lock).
    submitted: AtomicU64,
    /// The last change known durable (batches complete in order).
    durable: watch::Sender<u64>,
}

impl Default for Durability {
    fn default() -> Self {
        Self {
            submitted: AtomicU64::new(0),
            durable: watch::channel(0).0,
        }
    }
}

impl Durability {
    /// Numbers a change being submitted; call under the namespace write
    /// lock, in submission order.
    pub fn submit(&self) -> u64 {
        self.submitted.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Change `seq` (and so every one before it) is durable.
    pub fn done(&self, seq: u64) {
        self.durable.send_if_modified(|d| {
            let newer = *d < seq;
            if newer {
                *d = seq;
            }
            newer
        });
    }

    /// Waits until every change submitted so far is durable: call after
    /// reading the namespace, before answering.
    pub async fn settle(&self) {
        let want = self.submitted.load(Ordering::Acquire);
        let mut rx = self.durable.subscribe();
        // Err only if the sender is gone: the master is shutting down.
        let _ = rx.wait_for(|d| *d >= want).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn settle_waits_for_what_was_submitted_before_it() {
        let d = std::sync::Arc::new(Durability::default());
        d.settle().await; // nothing pending: at once
        let (a, b) = (d.submit(), d.submit());
        let waiter = tokio::spawn({
            let d = d.clone();
            async move { d.settle().await }
        });
        d.done(a);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "b is not durable yet");
        d.done(b);
        waiter.await.unwrap();
        // Everything durable: a new settle returns at once.
        d.settle().await;
    }
}
