//! Replication bounds as plain decisions (no I/O, no clock): given each
//! bounded block's holders and the live workers, which copies to add and
//! which to drop. The registry applies the plan; workers do the copying.

use std::collections::HashSet;

/// A block whose file sets bounds (`min` 0: none; `max` 0: none).
#[derive(Debug, Clone)]
pub struct Bounded {
    pub block: u64,
    pub length: u64,
    pub min: u32,
    pub max: u32,
    /// Live workers holding it now.
    pub holders: Vec<u64>,
    /// Whether a copy can be made without a holder (the file is persisted).
    pub in_ufs: bool,
}

/// A live worker as a copy target.
#[derive(Debug, Clone)]
pub struct Target {
    pub worker: u64,
    pub free_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `to` should cache `block`, reading it from `from` (or the under-storage).
    Copy { block: u64, to: u64, from: Vec<u64> },
    /// `from` should drop its copy of `block`.
    Drop { block: u64, from: u64 },
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub actions: Vec<Action>,
    /// Blocks below their min now (copies may be on their way).
    pub under: u64,
    /// Of those, blocks that cannot reach their min: too few live workers,
    /// or no copy anywhere to read from.
    pub unsatisfiable: u64,
}

/// Decides copies and drops. `pending` holds (block, worker) copies asked
/// for and not yet confirmed: they count toward the min and are not asked
/// for again. Targets with the most free space are chosen first; copies on
/// the fullest holders are dropped first.
pub fn plan(blocks: &[Bounded], targets: &[Target], pending: &HashSet<(u64, u64)>) -> Plan {
    let mut p = Plan::default();
    let mut by_room: Vec<&Target> = targets.iter().collect();
    by_room.sort_by_key(|t| (std::cmp::Reverse(t.free_bytes), t.worker));
    let free = |w: u64| {
        targets
            .iter()
            .find(|t| t.worker == w)
            .map_or(0, |t| t.free_bytes)
    };
    for b in blocks {
        let coming: Vec<u64> = targets
            .iter()
            .map(|t| t.worker)
            .filter(|w| pending.contains(&(b.block, *w)) && !b.holders.contains(w))
            .collect();
        let have = b.holders.len() + coming.len();
        if b.max > 0 && b.holders.len() > b.max as usize {
            let mut extra = b.holders.clone();
            extra.sort_by_key(|w| (free(*w), std::cmp::Reverse(*w)));
            for w in extra.into_iter().take(b.holders.len() - b.max as usize) {
                p.actions.push(Action::Drop {
                    block: b.block,
                    from: w,
                });
            }
            continue;
        }
        let min = b.min as usize;
        if have >= min {
            continue;
        }
        p.under += 1;
        if b.holders.is_empty() && !b.in_ufs {
            // Nothing to copy from: the data is gone from Eddy.
            p.unsatisfiable += 1;
            continue;
        }
        let candidates: Vec<u64> = by_room
            .iter()
            .map(|t| t.worker)
            .filter(|w| !b.holders.contains(w) && !coming.contains(w))
            .filter(|w| free(*w) >= b.length)
            .collect();
        let want = min - have;
        if candidates.len() < want {
            p.unsatisfiable += 1;
        }
        for to in candidates.into_iter().take(want) {
            p.actions.push(Action::Copy {
                block: b.block,
                to,
                from: b.holders.clone(),
            });
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(worker: u64, free_bytes: u64) -> Target {
        Target { worker, free_bytes }
    }

    fn b(block: u64, min: u32, max: u32, holders: &[u64]) -> Bounded {
        Bounded {
            block,
            length: 10,
            min,
            max,
            holders: holders.to_vec(),
            in_ufs: true,
        }
    }

    #[test]
    fn copies_go_to_the_roomiest_workers_and_extras_leave_the_fullest() {
        let targets = [t(1, 100), t(2, 500), t(3, 300)];
        let none = HashSet::new();
        let p = plan(&[b(7, 2, 0, &[1])], &targets, &none);
        assert_eq!(
            p.actions,
            [Action::Copy {
                block: 7,
                to: 2,
                from: vec![1]
            }]
        );
        assert_eq!((p.under, p.unsatisfiable), (1, 0));
        // max 1 with three holders: the two fullest drop theirs.
        let p = plan(&[b(8, 0, 1, &[1, 2, 3])], &targets, &none);
        assert_eq!(
            p.actions,
            [
                Action::Drop { block: 8, from: 1 },
                Action::Drop { block: 8, from: 3 }
            ]
        );
        // Within bounds: nothing to do.
        assert_eq!(plan(&[b(9, 1, 2, &[3])], &targets, &none), Plan::default());
    }

    #[test]
    fn pending_copies_count_and_impossible_mins_are_reported_not_retried_forever() {
        let targets = [t(1, 100), t(2, 100)];
        let pending: HashSet<(u64, u64)> = [(7, 2)].into();
        assert_eq!(plan(&[b(7, 2, 0, &[1])], &targets, &pending).actions, []);
        // One worker, min 2: reported unsatisfiable, no action asked.
        let p = plan(&[b(5, 2, 0, &[1])], &[t(1, 100)], &HashSet::new());
        assert_eq!((p.under, p.unsatisfiable, p.actions.len()), (1, 1, 0));
        // min 3 of two workers: one copy made, still unsatisfiable.
        let p = plan(&[b(5, 3, 0, &[1])], &targets, &HashSet::new());
        assert_eq!((p.under, p.unsatisfiable, p.actions.len()), (1, 1, 1));
        // No holder and not persisted: nothing to copy from.
        let mut lost = b(6, 1, 0, &[]);
        lost.in_ufs = false;
        let p = plan(&[lost], &targets, &HashSet::new());
        assert_eq!((p.under, p.unsatisfiable, p.actions.len()), (1, 1, 0));
        // A target without room is skipped.
        let p = plan(&[b(4, 2, 0, &[1])], &[t(1, 100), t(2, 5)], &HashSet::new());
        assert_eq!((p.unsatisfiable, p.actions.len()), (1, 0));
    }
}
