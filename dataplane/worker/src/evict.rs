//! Eviction order: least recently used first. Plain code, no I/O; the store
//! decides what may not be evicted (pinned files, blocks being read through
//! a lease) and passes that in.

use std::collections::{BTreeMap, HashMap};

#[derive(Debug, Default)]
pub struct Lru {
    clock: u64,
    by_tick: BTreeMap<u64, u64>,
    tick_of: HashMap<u64, u64>,
}

impl Lru {
    /// Marks `block` as just used (inserting it if new).
    pub fn touch(&mut self, block: u64) {
        self.clock += 1;
        if let Some(old) = self.tick_of.insert(block, self.clock) {
            self.by_tick.remove(&old);
        }
        self.by_tick.insert(self.clock, block);
    }

    pub fn remove(&mut self, block: u64) {
        if let Some(t) = self.tick_of.remove(&block) {
            self.by_tick.remove(&t);
        }
    }

    pub fn len(&self) -> usize {
        self.tick_of.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tick_of.is_empty()
    }

    /// The least recently used blocks whose sizes add up to at least `need`,
    /// skipping those `keep` holds on to. `None` when even evicting every
    /// evictable block would not free `need` bytes (then nothing should be
    /// evicted at all).
    pub fn victims(
        &self,
        need: u64,
        size: impl Fn(u64) -> u64,
        keep: impl Fn(u64) -> bool,
    ) -> Option<Vec<u64>> {
        let mut freed = 0;
        let mut out = Vec::new();
        for &b in self.by_tick.values() {
            if freed >= need {
                break;
            }
            if keep(b) {
                continue;
            }
            freed += size(b);
            out.push(b);
        }
        (freed >= need).then_some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn oldest_go_first_and_kept_ones_stay() {
        let mut l = Lru::default();
        for b in 1..=4 {
            l.touch(b);
        }
        l.touch(1); // now 2, 3, 4, 1 from oldest
        let size = |_| 10;
        assert_eq!(l.victims(15, size, |_| false), Some(vec![2, 3]));
        assert_eq!(l.victims(15, size, |b| b == 2), Some(vec![3, 4]));
        assert_eq!(l.victims(0, size, |_| false), Some(vec![]));
        assert_eq!(l.victims(50, size, |_| false), None, "not enough to free");
        assert_eq!(
            l.victims(40, size, |b| b == 4),
            None,
            "pinned bytes do not count"
        );
        l.remove(2);
        assert_eq!(l.victims(10, size, |_| false), Some(vec![3]));
        assert_eq!(l.len(), 3);
    }

    proptest! {
        /// Victims are distinct, never kept, oldest first, and free enough.
        #[test]
        fn victims_are_sound(ops in proptest::collection::vec((0u64..20, any::<bool>()), 1..200), need in 0u64..300) {
            let mut l = Lru::default();
            let mut order: Vec<u64> = Vec::new();
            for (b, rm) in ops {
                order.retain(|x| *x != b);
                if rm { l.remove(b) } else { l.touch(b); order.push(b) }
            }
            let keep = |b: u64| b.is_multiple_of(5);
            let size = |b: u64| b + 1;
            let evictable: Vec<u64> = order.iter().copied().filter(|b| !keep(*b)).collect();
            let total: u64 = evictable.iter().map(|b| size(*b)).sum();
            match l.victims(need, size, keep) {
                None => prop_assert!(total < need),
                Some(v) => {
                    prop_assert!(v.iter().map(|b| size(*b)).sum::<u64>() >= need);
                    prop_assert_eq!(&v[..], &evictable[..v.len()]);
                }
            }
        }
    }
}
