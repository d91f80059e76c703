//! Pauses between polls: short while there is work, growing to a bound
//! when idle. Busy-polling both sides of a 2-core machine made reads slower
//! (docs/RDMA.md), so nothing here spins.

use std::time::Duration;

const FIRST: Duration = Duration::from_micros(5);

pub(crate) struct Backoff {
    pause: Duration,
    max: Duration,
}

impl Backoff {
    pub(crate) fn new(max: Duration) -> Self {
        Self {
            pause: FIRST.min(max),
            max,
        }
    }

    /// A new bound; the next pause is cut to it at once.
    pub(crate) fn set_max(&mut self, max: Duration) {
        self.max = max;
        self.pause = self.pause.min(max);
    }

    /// Work was seen: poll again soon.
    pub(crate) fn reset(&mut self) {
        self.pause = FIRST.min(self.max);
    }

    /// The pause before the next poll; doubles up to the bound.
    pub(crate) fn next_pause(&mut self) -> Duration {
        let p = self.pause;
        self.pause = (self.pause * 2).min(self.max);
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_grow_to_the_bound_and_reset() {
        let mut b = Backoff::new(Duration::from_micros(40));
        let seen: Vec<u128> = (0..5).map(|_| b.next_pause().as_micros()).collect();
        assert_eq!(seen, [5, 10, 20, 40, 40]);
        b.reset();
        assert_eq!(b.next_pause(), FIRST);
        b.next_pause();
        b.next_pause();
        b.set_max(Duration::from_micros(8));
        assert_eq!(b.next_pause().as_micros(), 8, "cut to the new bound");
    }
}
