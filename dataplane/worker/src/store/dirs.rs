//! Health of disk-tier directories: taking one out of service, probing the
//! healthy ones, and probing those out of service again so they come back
//! once they work and have room (docs/TIERS.md, "Faulty directories").
//! A directory out of service takes out only itself: the others and
//! memory go on taking blocks.

use std::time::{Duration, Instant};

use super::{Block, BlockStore, Dir, Stats, disk};
use crate::disk::DirError;

/// How long a directory stays out before it is probed again, and between
/// probes while it keeps failing: a failing disk is not written every
/// second, and a repaired one is back within seconds.
pub const REPROBE_AFTER: Duration = Duration::from_secs(3);

/// Free bytes a directory's filesystem must have to come back, at least
/// (more when the write that took it out needed more).
const MIN_ROOM: u64 = 64 * 1024;

/// Room left unused when a filled-up directory's limit is set (at most
/// half of what is free): a block file is written padded to 4 KiB, and the
/// filesystem has metadata too.
const LIMIT_MARGIN: u64 = 64 * 1024;

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
        for (t, d, dir) in self.healthy_dirs() {
            if let Err(why) = dir.probe() {
                self.mark_bad(t, d, why.to_string(), 0);
                self.drop_dir_blocks(t, d);
            }
        }
    }

    /// Probes again every directory out of service for at least
    /// [`REPROBE_AFTER`] since it was taken out or last probed: one whose
    /// block folder is a directory, takes a written, synced and removed
    /// probe file, and whose filesystem has room (evicting blocks held in
    /// it if that makes the room) comes back into service. Runs with the
    /// move lock held, so no block is being written meanwhile. Returns how
    /// many came back.
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
            match self.probe_with_room(t, d, &dir, want.max(MIN_ROOM)) {
                Ok(()) => {
                    if self.bring_back(t, d, &dir, want > 0) {
                        back += 1;
                    }
                }
                Err(why) => tracing::debug!("disk tier directory still out: {why}"),
            }
        }
        back
    }

    /// Probes `dir`: its folder is a directory and takes a written, synced
    /// and removed probe file, and its filesystem has `need` bytes free.
    /// When the only trouble is room (the probe file hit a full filesystem,
    /// or too little is free), blocks held in it are evicted first (least
    /// recently used, only those that may leave the worker) to make up the
    /// difference, so a directory that filled up with cached blocks is not
    /// out for good. A directory broken otherwise loses nothing.
    fn probe_with_room(&self, t: usize, d: usize, dir: &Dir, need: u64) -> Result<(), DirError> {
        let failed = |source| DirError::ProbeFile {
            path: dir.blocks.clone(),
            source,
        };
        dir.probe()?;
        let full = match dir.probe_write() {
            Ok(()) => false,
            Err(e) if disk::is_full(&e) => true,
            Err(e) => return Err(failed(e)),
        };
        let free = dir.fs_free()?;
        if full || free < need {
            self.evict_from_dir(t, d, need.saturating_sub(free).max(MIN_ROOM));
            dir.probe_write().map_err(failed)?;
        }
        let free = dir.fs_free()?;
        if free < need {
            return Err(DirError::TooLittleRoom {
                path: dir.blocks.clone(),
                free,
                need,
            });
        }
        Ok(())
    }

    /// Evicts at least `bytes` of blocks held in directory `d` of tier `t`
    /// that may leave the worker, or nothing when that many cannot go.
    fn evict_from_dir(&self, t: usize, d: usize, bytes: u64) {
        let mut g = self.inner.lock();
        let g2 = &*g;
        let victims = g2.disk[t].lru.victims(
            bytes,
            |b| g2.blocks.get(&b).map_or(0, Block::len),
            |b| {
                !matches!(g2.blocks.get(&b), Some(blk @ Block::Disk(x))
                    if x.tier == t && x.dir == d && !blk.in_use() && !g2.must_stay(b))
            },
        );
        for b in victims.unwrap_or_default() {
            g.forget(b);
            g.note_evicted(b);
            Stats::add(&self.stats.evictions, 1);
        }
    }

    /// Returns a probed directory to service. Block files in it that the
    /// store no longer holds (forgotten when it was taken out) are deleted,
    /// so its quota counts only what is held. One that had filled up keeps
    /// a limit of what it holds plus what its filesystem has free now, so
    /// it makes room by moving blocks down instead of filling up again.
    fn bring_back(&self, t: usize, d: usize, dir: &Dir, filled_up: bool) -> bool {
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
        let stale: Vec<_> = {
            let g = self.inner.lock();
            found
                .into_iter()
                .filter(|f| {
                    !matches!(g.blocks.get(&f.id),
                        Some(Block::Disk(x)) if x.tier == t && x.dir == d && x.path == f.path)
                })
                .collect()
        };
        // No block is written meanwhile (the caller holds the move lock),
        // and the directory takes none while it is out.
        for f in stale {
            let _ = std::fs::remove_file(&f.path);
        }
        let free = if filled_up { dir.fs_free().ok() } else { None };
        let mut g = self.inner.lock();
        let st = &mut g.disk[t].state[d];
        if let Some(free) = free {
            st.limit = Some(st.used + free - LIMIT_MARGIN.min(free / 2));
        }
        if let Some(was) = st.bad.take() {
            tracing::info!(
                "disk tier directory back in service: {} (was: {was}){}",
                dir.root.display(),
                st.limit
                    .map(|l| format!("; holding at most {l} bytes"))
                    .unwrap_or_default()
            );
        }
        st.want = 0;
        st.probed = None;
        true
    }

    /// The directories in service, with their tier and directory indexes.
    fn healthy_dirs(&self) -> Vec<(usize, usize, Dir)> {
        let g = self.inner.lock();
        g.disk
            .iter()
            .enumerate()
            .flat_map(|(t, tier)| {
                tier.dirs
                    .iter()
                    .enumerate()
                    .filter(|(d, _)| tier.state[*d].bad.is_none())
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_directory_that_filled_up_makes_room_and_comes_back_with_a_limit() {
        let dir = tempfile::tempdir().unwrap();
        let small = dir.path().join("small");
        // A filesystem of 4 blocks under a quota of 16: writes hit ENOSPC.
        let Some(_unmount) = super::super::tests::small_tmpfs(&small) else {
            return;
        };
        let specs = vec![TierSpec {
            alias: "SSD".into(),
            dirs: vec![Dir::new(&small, 16 * K)],
        }];
        let s = BlockStore::with_tiers(K, specs, Arc::new(Engine::pread()));
        for f in 1..=6 {
            put(&s, f, K).await;
        }
        let ssd = &s.tiers()[1];
        assert!(ssd.dirs[0].error.contains("No space left"), "{ssd:?}");
        let held = ssd.used;
        assert!(held >= 3 * K, "{ssd:?}");
        // Probed again: its own evictable blocks make the room, and it
        // comes back holding no more than its filesystem can.
        s.inner.lock().disk[0].state[0].probed = None;
        assert_eq!(s.reprobe_bad_dirs().await, 1);
        let ssd = &s.tiers()[1];
        assert!(ssd.dirs[0].error.is_empty(), "{ssd:?}");
        assert!(ssd.used < held, "{ssd:?}");
        assert!(ssd.capacity < 4 * K, "limited to what fits: {ssd:?}");
        // From now on it moves blocks down (evicts) instead of filling up.
        for f in 7..=20 {
            put(&s, f, K).await;
        }
        let ssd = &s.tiers()[1];
        assert!(ssd.dirs[0].error.is_empty(), "stays in service: {ssd:?}");
        assert!(ssd.used <= ssd.capacity, "{ssd:?}");
        let (_, evicted) = s.take_changes();
        assert!(evicted.len() >= 10, "{evicted:?}");
    }

    #[test]
    fn the_writable_probe_writes_in_the_folder_and_measures_its_filesystem() {
        let dir = tempfile::tempdir().unwrap();
        let d = Dir::new(dir.path(), K);
        std::fs::create_dir_all(&d.blocks).unwrap();
        d.probe_write().unwrap();
        assert!(d.fs_free().unwrap() > 0);
        assert_eq!(std::fs::read_dir(&d.blocks).unwrap().count(), 0);
        std::fs::remove_dir(&d.blocks).unwrap();
        std::fs::write(&d.blocks, b"x").unwrap();
        let e = d.probe_write().unwrap_err();
        assert!(!crate::disk::is_full(&e), "{e}");
        assert!(
            d.probe()
                .unwrap_err()
                .to_string()
                .contains("not a directory")
        );
    }
}
