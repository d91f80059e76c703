//! The registration grace period's clock and signal, kept apart from the
//! state it belongs to (`registration` acts on it) so `MasterState` can hold
//! one without importing the code that uses it.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::watch;

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
