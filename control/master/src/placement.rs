//! Block placement: pure decisions over a snapshot of live workers, no I/O.

/// One live worker as placement sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub worker_id: u64,
    pub host: String,
    /// Room for new blocks: free bytes plus bytes the worker would evict
    /// (`Worker::room_bytes`).
    pub free_bytes: u64,
}

/// What is being placed.
#[derive(Debug, Clone, Default)]
pub struct PlacementRequest {
    pub block_id: u64,
    /// The client's host; empty when unknown.
    pub client_host: String,
    pub bytes_needed: u64,
}

pub trait PlacementPolicy: Send + Sync {
    /// Picks a worker, or `None` when no candidate fits.
    fn choose(&self, candidates: &[Candidate], req: &PlacementRequest) -> Option<u64>;
}

/// The worker on the client's own host when it has room (so the client can
/// read through shared memory), else the worker with the most room.
/// Ties go to the lowest worker id, so the choice is deterministic.
///
/// When no worker has room for all of `bytes_needed` (a whole block; the
/// writer does not know yet how much it will write), the same rule picks
/// among the workers with any room: a short file fits, and a longer one
/// gets `NO_SPACE` from the worker, which says why. `None` only when no
/// worker has room at all.
#[derive(Debug, Default, Clone, Copy)]
pub struct LocalFirst;

impl PlacementPolicy for LocalFirst {
    fn choose(&self, candidates: &[Candidate], req: &PlacementRequest) -> Option<u64> {
        let need = if candidates.iter().any(|c| c.free_bytes >= req.bytes_needed) {
            req.bytes_needed
        } else {
            1
        };
        let fits = candidates.iter().filter(|c| c.free_bytes >= need);
        let best = |it: &mut dyn Iterator<Item = &Candidate>| {
            it.max_by(|a, b| {
                a.free_bytes
                    .cmp(&b.free_bytes)
                    .then(b.worker_id.cmp(&a.worker_id))
            })
            .map(|c| c.worker_id)
        };
        if !req.client_host.is_empty()
            && let Some(id) = best(&mut fits.clone().filter(|c| c.host == req.client_host))
        {
            return Some(id);
        }
        best(&mut fits.clone())
    }
}

/// Rendezvous (highest-random-weight) hashing of the block id over workers:
/// every client picks the same worker for a cold block, so concurrent misses
/// meet on one worker, and a worker joining or leaving moves only its share.
#[derive(Debug, Default, Clone, Copy)]
pub struct DeterministicHash;

impl PlacementPolicy for DeterministicHash {
    fn choose(&self, candidates: &[Candidate], req: &PlacementRequest) -> Option<u64> {
        candidates
            .iter()
            .max_by_key(|c| (mix(req.block_id ^ mix(c.worker_id)), c.worker_id))
            .map(|c| c.worker_id)
    }
}

/// splitmix64's finaliser: a fixed, well-mixed hash (stable across runs and builds).
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(id: u64, host: &str, free: u64) -> Candidate {
        Candidate {
            worker_id: id,
            host: host.into(),
            free_bytes: free,
        }
    }

    fn req(host: &str, need: u64) -> PlacementRequest {
        PlacementRequest {
            block_id: 77,
            client_host: host.into(),
            bytes_needed: need,
        }
    }

    #[test]
    fn local_first_prefers_the_clients_host() {
        let ws = [c(1, "a", 100), c(2, "b", 1000), c(3, "c", 500)];
        assert_eq!(LocalFirst.choose(&ws, &req("a", 10)), Some(1));
        assert_eq!(
            LocalFirst.choose(&ws, &req("z", 10)),
            Some(2),
            "else most free"
        );
        assert_eq!(
            LocalFirst.choose(&ws, &req("a", 200)),
            Some(2),
            "a full local worker is skipped"
        );
        assert_eq!(
            LocalFirst.choose(&ws, &req("a", 2000)),
            Some(1),
            "no whole block fits anywhere: local first among those with room"
        );
        assert_eq!(
            LocalFirst.choose(&ws, &req("z", 2000)),
            Some(2),
            "else the most room"
        );
        let full = [c(1, "a", 0), c(2, "b", 0)];
        assert_eq!(LocalFirst.choose(&full, &req("a", 10)), None, "no room");
        assert_eq!(LocalFirst.choose(&[], &req("a", 0)), None);
        let tie = [c(5, "x", 10), c(4, "y", 10)];
        assert_eq!(
            LocalFirst.choose(&tie, &req("", 1)),
            Some(4),
            "ties go to the lowest id"
        );
    }

    #[test]
    fn hash_is_deterministic_and_stable() {
        let ws: Vec<_> = (1..=5).map(|i| c(i, "h", 0)).collect();
        let mut moved = 0;
        for block in 0..1000u64 {
            let r = PlacementRequest {
                block_id: block,
                ..Default::default()
            };
            let a = DeterministicHash.choose(&ws, &r).unwrap();
            let shuffled: Vec<_> = ws.iter().rev().cloned().collect();
            assert_eq!(
                DeterministicHash.choose(&shuffled, &r),
                Some(a),
                "order does not matter"
            );
            // Removing worker 5 moves only the blocks that were on it.
            let b = DeterministicHash.choose(&ws[..4], &r).unwrap();
            if a != 5 {
                assert_eq!(a, b);
            } else {
                moved += 1;
            }
        }
        assert!(
            (100..300).contains(&moved),
            "about a fifth of blocks lived on worker 5: {moved}"
        );
    }
}
