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
//!
//! A *deferred* change (the create of a file, which its writer completes
//! moments later: `Effects::deferrable`) answers before it is durable and
//! commits with the next change that is not deferred, or after the
//! metastore's deferral window. Its answer still waits for every change
//! submitted before it that is not deferred (what it read), so only its own
//! change can be lost at a crash, and only its own writer can have seen it:
//! a reader that might see it asks for the commit first
//! ([`Durability::holds_deferred`]).

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::watch;

/// Sequence numbers of submitted and durable namespace changes.
#[derive(Debug)]
pub struct Durability {
    /// The last change submitted (taken under the namespace write lock).
    submitted: AtomicU64,
    /// The last change submitted that was not deferred.
    strict: AtomicU64,
    /// The last deferred change submitted.
    deferred: AtomicU64,
    /// The last change known durable (batches complete in order).
    durable: watch::Sender<u64>,
}

impl Default for Durability {
    fn default() -> Self {
        Self {
            submitted: AtomicU64::new(0),
            strict: AtomicU64::new(0),
            deferred: AtomicU64::new(0),
            durable: watch::channel(0).0,
        }
    }
}

impl Durability {
    /// Numbers a change being submitted; call under the namespace write
    /// lock, in submission order.
    pub fn submit(&self) -> u64 {
        let seq = self.submitted.fetch_add(1, Ordering::AcqRel) + 1;
        self.strict.store(seq, Ordering::Release);
        seq
    }

    /// Numbers a deferred change being submitted (under the namespace write
    /// lock); returns it and the last change before it that was not
    /// deferred, which its answer waits for ([`Self::wait_for`]).
    pub fn submit_deferred(&self) -> (u64, u64) {
        let before = self.strict.load(Ordering::Acquire);
        let seq = self.submitted.fetch_add(1, Ordering::AcqRel) + 1;
        self.deferred.store(seq, Ordering::Release);
        (seq, before)
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

    /// Whether a deferred change is not durable yet: a reader that may see
    /// it asks the metastore to commit it before settling.
    pub fn holds_deferred(&self) -> bool {
        self.deferred.load(Ordering::Acquire) > *self.durable.borrow()
    }

    /// Waits until every change submitted so far is durable: call after
    /// reading the namespace, before answering (after asking for deferred
    /// changes to be committed, see [`Self::holds_deferred`]).
    pub async fn settle(&self) {
        self.wait_for(self.submitted.load(Ordering::Acquire)).await;
    }

    /// Waits until change `seq` (and every one before it) is durable.
    pub async fn wait_for(&self, seq: u64) {
        let mut rx = self.durable.subscribe();
        // Err only if the sender is gone: the master is shutting down.
        let _ = rx.wait_for(|d| *d >= seq).await;
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

    #[test]
    fn a_deferred_change_waits_only_for_the_strict_ones_before_it() {
        let d = Durability::default();
        let a = d.submit();
        let (b, before) = d.submit_deferred();
        assert_eq!(before, a, "b's answer waits for a, not for itself");
        assert!(d.holds_deferred());
        let (c, before_c) = d.submit_deferred();
        assert_eq!(before_c, a, "another deferred change is not waited for");
        let e = d.submit();
        d.done(b);
        assert!(d.holds_deferred(), "c is not durable yet");
        d.done(e.max(c));
        assert!(!d.holds_deferred());
    }
}
