//! Health of disk-tier directories: taking one out of service, probing the
//! healthy ones, and probing those out of service again so they come back
//! once they work and have room (docs/TIERS.md, "Faulty directories").
//! A directory out of service takes out only itself: the others and
//! memory go on taking blocks.

use std::time::{Duration, Instant};

use super::{Block, BlockStore, Dir, disk};

/// How long a directory stays out before it is probed again, and between
/// probes while it keeps failing: a failing disk is not written every
/// second, and a repaired one is back within seconds.
pub const REPROBE_AFTER: Duration = Duration::from_secs(3);

/// Free bytes a directory's filesystem must have to come back, at least
/// (more when the write that took it out needed more).
const MIN_ROOM: u64 = disk::CHUNK as u64;

impl BlockStore {
    /// Takes a directory out of service, with the reason (shown by `eddy
    /// report`). `want` is the size of the write that failed there, if any:
    /// the directory comes back only with that much room.
    pub fn mark_bad(&self, t: usize, d: usize, why: String, want: u64) {
        let mut g = self.inner.lock();
        let st = &mut g.disk[t].state[d];
        if st.bad.is_none() {
            tracing::error!("disk tier directory taken out: {why}");
            st.bad = Some(why);
            st.want = want;
            st.probed = Some(Instant::now());
        }
    }

    /// Probes every healthy disk-tier directory. One that is gone or no
    /// longer a directory is taken out, and its blocks are forgotten (and
    /// reported removed): they cannot be read any more.
    pub fn check_dirs(&self) {
        for (t, d, dir) in self.dirs_where(|bad| bad.is_none()) {
            if let Err(why) = dir.probe() {
                self.mark_bad(t, d, why, 0);
                self.drop_dir_blocks(t, d);
            }
        }
    }

    /// Probes again every directory out of service for at least
    /// [`REPROBE_AFTER`] since it was taken out or last probed: one whose
    /// block folder is a directory, takes a written, synced and removed
    /// probe file, and whose filesystem has room comes back into service.
    /// Runs with the move lock held, so no block is being written meanwhile.
    /// Returns how many came back.
    pub async fn reprobe_bad_dirs(&self) -> usize {
        let due = |st: &super::DirState| {
            st.bad.is_some() && st.probed.is_none_or(|p| p.elapsed() >= REPROBE_AFTER)
        };
        let bad: Vec<(usize, usize, Dir, u64)> = {
            let mut g = self.inner.lock();
            let mut out = Vec::new();
            for (t, tier) in g.disk.iter_mut().enumerate() {
                for (d, st) in tier.state.iter_mut().enumerate() {
                    if due(st) {
                        st.probed = Some(Instant::now());
                        out.push((t, d, tier.dirs[d].clone(), st.want));
                    }
                }
            }
            out
        };
        if bad.is_empty() {
            return 0;
        }
        let _turn = self.moves.lock().await;
        let mut back = 0;
        for (t, d, dir, want) in bad {
            match dir.probe_writable(want.max(MIN_ROOM)) {
                Ok(()) => {
                    if self.bring_back(t, d, &dir) {
                        back += 1;
                    }
                }
                Err(why) => tracing::debug!("disk tier directory still out: {why}"),
            }
        }
        back
    }

    /// Returns a probed directory to service. Block files in it that the
    /// store no longer holds (forgotten when it was taken out) are deleted,
    /// so its quota counts only what is held.
    fn bring_back(&self, t: usize, d: usize, dir: &Dir) -> bool {
        let found = match disk::scan(dir) {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(
                    "disk tier directory still out: {}: {e}",
                    dir.blocks.display()
                );
                return false;
            }
        };
        let mut g = self.inner.lock();
        for f in found {
            let held = matches!(g.blocks.get(&f.id),
                Some(Block::Disk(x)) if x.tier == t && x.dir == d && x.path == f.path);
            if !held {
                let _ = std::fs::remove_file(&f.path);
            }
        }
        let st = &mut g.disk[t].state[d];
        if let Some(was) = st.bad.take() {
            tracing::info!(
                "disk tier directory back in service: {} (was: {was})",
                dir.root.display()
            );
        }
        st.want = 0;
        st.probed = None;
        true
    }

    /// The directories whose state passes `keep`, with their indexes.
    fn dirs_where(&self, keep: impl Fn(&Option<String>) -> bool) -> Vec<(usize, usize, Dir)> {
        let g = self.inner.lock();
        g.disk
            .iter()
            .enumerate()
            .flat_map(|(t, tier)| {
                tier.dirs
                    .iter()
                    .enumerate()
                    .filter(|(d, _)| keep(&tier.state[*d].bad))
                    .map(move |(d, dir)| (t, d, dir.clone()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    fn drop_dir_blocks(&self, t: usize, d: usize) {
        let mut g = self.inner.lock();
        let lost: Vec<u64> = g
            .blocks
            .iter()
            .filter(|(_, b)| matches!(b, Block::Disk(x) if x.tier == t && x.dir == d))
            .map(|(id, _)| *id)
            .collect();
        for b in lost {
            g.forget(b);
            g.sole_copies.remove(&b);
            g.note_evicted(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::{BlockStore, TierSpec};
    use crate::disk::{BLOCKS_DIR, Dir};
    use crate::io::Engine;
    use crate::segment::SegmentWriter;

    const K: u64 = 64 * 1024;

    fn bid(f: u64) -> u64 {
        eddy_proto::block_id(f, 0)
    }

    async fn put(s: &Arc<BlockStore>, f: u64, len: u64) {
        let r = s.reserve(len).await.unwrap();
        let mut w = SegmentWriter::create("t", len, false).unwrap();
        w.as_mut_slice()[..len as usize].fill(f as u8);
        s.insert(bid(f), w.seal(len).unwrap(), r, true);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_bad_directory_comes_back_when_it_works_again() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        let specs = vec![TierSpec {
            alias: "SSD".into(),
            dirs: vec![Dir::new(&a, 8 * K), Dir::new(&b, 4 * K)],
        }];
        let s = BlockStore::with_tiers(K, specs, Arc::new(Engine::pread()));
        for f in 1..=3 {
            put(&s, f, K).await;
        }
        let blocks = a.join(BLOCKS_DIR);
        std::fs::remove_dir_all(&blocks).unwrap();
        std::fs::write(&blocks, b"not a directory").unwrap();
        s.check_dirs();
        let ssd = &s.tiers()[1];
        assert!(ssd.dirs[0].error.contains("not a directory"), "{ssd:?}");
        assert_eq!(ssd.capacity, 4 * K);
        // Not probed again before REPROBE_AFTER, and not while still broken.
        assert_eq!(s.reprobe_bad_dirs().await, 0);
        let rewind = || {
            s.inner.lock().disk[0].state[0].probed = None;
        };
        rewind();
        assert_eq!(s.reprobe_bad_dirs().await, 0, "still not a directory");
        assert!(!s.tiers()[1].dirs[0].error.is_empty());

        // Repaired, with a stale block file the store forgot: it comes back,
        // and the stale file is gone (its quota counts only what is held).
        std::fs::remove_file(&blocks).unwrap();
        std::fs::create_dir(&blocks).unwrap();
        let stale = Dir::new(&a, 0).block_path(bid(1), false);
        std::fs::write(&stale, vec![1u8; K as usize]).unwrap();
        rewind();
        assert_eq!(s.reprobe_bad_dirs().await, 1);
        let ssd = &s.tiers()[1];
        assert!(ssd.dirs.iter().all(|d| d.error.is_empty()), "{ssd:?}");
        assert_eq!(ssd.capacity, 12 * K);
        assert!(!stale.exists());
        let names: Vec<_> = std::fs::read_dir(&blocks).unwrap().collect();
        assert!(names.is_empty(), "no probe file left: {names:?}");
        // New demotions land in it again (it has the most room).
        put(&s, 4, K).await;
        put(&s, 5, K).await;
        let in_a = std::fs::read_dir(&blocks).unwrap().count();
        assert!(in_a >= 1, "{in_a}");
    }

    #[test]
    fn the_writable_probe_needs_room_on_the_filesystem() {
        let dir = tempfile::tempdir().unwrap();
        let d = Dir::new(dir.path(), K);
        std::fs::create_dir_all(&d.blocks).unwrap();
        assert!(d.probe_writable(4096).is_ok());
        let e = d.probe_writable(u64::MAX).unwrap_err();
        assert!(e.contains("bytes free on its filesystem"), "{e}");
        assert_eq!(std::fs::read_dir(&d.blocks).unwrap().count(), 0);
    }
}
