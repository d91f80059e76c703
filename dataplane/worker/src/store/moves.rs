//! Moves between tiers: making room in memory by moving the least recently
//! used blocks down a tier (only the last tier evicts), making room on a
//! disk tier the same way, and promoting disk blocks back up to memory.
//! One move at a time (`moves`); the bytes are copied with no lock held.

use super::*;

impl BlockStore {
    pub(super) async fn make_room(&self, bytes: u64) -> Result<(), NoSpace> {
        // Blocks that could not move down (a sole copy with nowhere to go).
        let mut stuck: HashSet<u64> = HashSet::new();
        if bytes > self.capacity {
            // Could never fit: refused before anything is evicted for it.
            return Err(NoSpace {
                needed: bytes,
                used: self.inner.lock().used,
                capacity: self.capacity,
            });
        }
        loop {
            // Registered before looking, so a move finishing in between is seen.
            let moved = self.moved.notified();
            let victims = {
                let mut g = self.inner.lock();
                // Saturating: a request larger than anything (a length from
                // the wire) is refused as too big, never wrapped.
                let want = (g.used + g.reserved).saturating_add(bytes);
                if want <= self.capacity {
                    g.reserved += bytes;
                    return Ok(());
                }
                let need = want - self.capacity;
                if g.leaving_bytes >= need {
                    None
                } else {
                    let need = need - g.leaving_bytes;
                    let g2 = &*g;
                    let down = g2
                        .disk
                        .iter()
                        .any(|t| t.state.iter().any(|s| s.bad.is_none()));
                    let v = g2.lru.victims(
                        need,
                        |b| g2.blocks.get(&b).map_or(0, Block::len),
                        |b| {
                            stuck.contains(&b)
                                || g2.leaving.contains_key(&b)
                                || g2.held_in_memory(b)
                                || (!down && g2.must_stay(b))
                                // A segment someone reads (or a client maps) stays.
                                || g2.blocks.get(&b).is_some_and(Block::in_use)
                        },
                    );
                    match v {
                        None if g.leaving_bytes == 0 => {
                            return Err(NoSpace {
                                needed: bytes,
                                used: g.used,
                                capacity: self.capacity,
                            });
                        }
                        None => None,
                        Some(v) => {
                            for b in &v {
                                let len = g.blocks.get(b).map_or(0, Block::len);
                                g.leaving.insert(*b, len);
                                g.leaving_bytes += len;
                            }
                            Some(v)
                        }
                    }
                }
            };
            match victims {
                None => moved.await,
                Some(v) => {
                    for b in v {
                        if !self.move_out_of_memory(b).await {
                            stuck.insert(b);
                        }
                    }
                }
            }
        }
    }

    /// Moves a memory block to the first disk tier with room, or evicts it
    /// when it may leave the worker. False when it had to stay.
    async fn move_out_of_memory(&self, b: u64) -> bool {
        let turn = self.moves.lock().await;
        let found = {
            let g = self.inner.lock();
            match g.blocks.get(&b) {
                Some(Block::Mem(s)) => Some((s.clone(), g.must_stay(b))),
                _ => None,
            }
        };
        let placed = match &found {
            Some((seg, stay)) => Some(self.place(0, b, Source::Mem(seg.clone()), *stay).await),
            None => None,
        };
        let mut g = self.inner.lock();
        let len = g.leaving.remove(&b).unwrap_or(0);
        g.leaving_bytes -= len;
        let mut freed = true;
        if let (Some((seg, stay)), Some(placed)) = (found, placed) {
            let same = matches!(g.blocks.get(&b), Some(Block::Mem(s)) if Arc::ptr_eq(s, &seg));
            match (same, placed) {
                (false, Ok(d)) => {
                    let _ = std::fs::remove_file(&d.path);
                }
                (false, Err(_)) => {}
                (true, Ok(d)) => {
                    g.used -= seg.len();
                    g.lru.remove(b);
                    g.account(&d);
                    let alias = g.alias(d.tier);
                    g.note_added(b, d.len, alias);
                    g.blocks.insert(b, Block::Disk(d));
                    Stats::add(&self.stats.demotions, 1);
                }
                (true, Err(why)) if !stay => {
                    g.forget(b);
                    g.note_evicted(b);
                    Stats::add(&self.stats.evictions, 1);
                    tracing::debug!("block {b:016x} evicted from memory: {why}");
                }
                (true, Err(why)) => {
                    tracing::warn!("block {b:016x} must stay and cannot move down: {why}");
                    freed = false;
                }
            }
        }
        drop(g);
        drop(turn);
        self.moved.notify_waiters();
        freed
    }

    /// Writes a block into the first disk tier from `from` down that has a
    /// healthy directory with room (making room by moving that tier's least
    /// recently used blocks further down). The caller holds `moves`.
    pub(super) fn place(
        &self,
        from: usize,
        id: u64,
        src: Source,
        sole: bool,
    ) -> Boxed<'_, Result<Arc<DiskBlock>, PlaceError>> {
        Box::pin(async move {
            let len = src.len();
            let tiers = self.inner.lock().disk.len();
            let mut why = PlaceError::NoTier;
            // A directory that failed is what is reported even when the
            // others then had no room: without the failure there may have
            // been room, so it is not "no space".
            let mut failed: Option<PlaceError> = None;
            for t in from..tiers {
                let mut tried = HashSet::new();
                // Bounded: each round takes one directory out of the running.
                let rounds = self.inner.lock().disk[t].dirs.len() + 1;
                for _ in 0..rounds {
                    let pick = self.inner.lock().disk[t].pick(len, &tried);
                    let d = match pick {
                        Some(d) => d,
                        None => match self.make_disk_room(t, len, &tried).await {
                            Some(d) => d,
                            None => {
                                why = PlaceError::NoRoom(self.inner.lock().alias(t));
                                break;
                            }
                        },
                    };
                    tried.insert(d);
                    let dir = self.inner.lock().disk[t].dirs[d].clone();
                    match disk::write_block(&self.engine, &dir, id, sole, &src).await {
                        Ok(path) => return Ok(Arc::new(DiskBlock::new(id, len, path, t, d, sole))),
                        Err(e) => {
                            // A full filesystem comes back once it has room
                            // for such a block again.
                            let want = if disk::is_full(&e) { len } else { 0 };
                            why = PlaceError::Write {
                                dir: dir.root.clone(),
                                source: e,
                            };
                            self.mark_bad(t, d, why.to_string(), want);
                            if why.is_disk_failure() && failed.is_none() {
                                failed = Some(why);
                                why = PlaceError::NoTier;
                            }
                        }
                    }
                }
            }
            Err(failed.unwrap_or(why))
        })
    }

    /// Frees room for `len` bytes in one healthy directory of tier `t` by
    /// moving its least recently used blocks down (or evicting them from
    /// the last tier). Returns the directory, or None if it cannot be done.
    async fn make_disk_room(&self, t: usize, len: u64, skip: &HashSet<usize>) -> Option<usize> {
        let (d, victims) = {
            let g = self.inner.lock();
            let tier = &g.disk[t];
            let d = (0..tier.dirs.len())
                .filter(|d| !skip.contains(d) && tier.state[*d].bad.is_none())
                .filter(|d| tier.quota(*d) >= len)
                .max_by_key(|d| tier.quota(*d).saturating_sub(tier.state[*d].used))?;
            let free = tier.quota(d).saturating_sub(tier.state[d].used);
            let last = t + 1 == g.disk.len();
            let v = tier.lru.victims(
                len.saturating_sub(free),
                |b| g.blocks.get(&b).map_or(0, Block::len),
                |b| match g.blocks.get(&b) {
                    Some(blk @ Block::Disk(x)) => {
                        x.dir != d
                            || blk.in_use()
                            || g.held_in_memory(b)
                            || (last && g.must_stay(b))
                    }
                    _ => true,
                },
            )?;
            (d, v)
        };
        for b in victims {
            if !self.move_down_from_disk(t, b).await {
                return None;
            }
        }
        Some(d)
    }

    /// Moves a disk block from tier `t` to the tier below, or evicts it.
    async fn move_down_from_disk(&self, t: usize, b: u64) -> bool {
        let found = {
            let g = self.inner.lock();
            match g.blocks.get(&b) {
                Some(Block::Disk(d)) if d.tier == t => Some((d.clone(), g.must_stay(b))),
                _ => None,
            }
        };
        let Some((old, stay)) = found else {
            return true;
        };
        let placed = self
            .place(t + 1, b, Source::Disk(old.clone()), old.sole)
            .await;
        let mut g = self.inner.lock();
        let same = matches!(g.blocks.get(&b), Some(Block::Disk(x)) if Arc::ptr_eq(x, &old));
        match (same, placed) {
            (false, Ok(d)) => {
                let _ = std::fs::remove_file(&d.path);
            }
            (false, Err(_)) => {}
            (true, Ok(d)) => {
                g.unaccount(&old);
                let _ = std::fs::remove_file(&old.path);
                g.account(&d);
                let alias = g.alias(d.tier);
                g.note_added(b, d.len, alias);
                g.blocks.insert(b, Block::Disk(d));
                Stats::add(&self.stats.demotions, 1);
            }
            (true, Err(_)) if !stay => {
                g.forget(b);
                g.note_evicted(b);
                Stats::add(&self.stats.evictions, 1);
            }
            (true, Err(_)) => return false,
        }
        true
    }

    /// Moves a disk block up to memory (a CACHE_PROMOTE read). Returns the
    /// block where it is afterwards: in memory, or still on disk when
    /// memory has no room.
    pub async fn promote(self: &Arc<Self>, block: u64) -> Option<Block> {
        let d = match self.get(block) {
            Some(Block::Disk(d)) => d,
            other => return other,
        };
        match self.reserve(d.len).await {
            Ok(res) => self.promote_with(d, res).await,
            Err(_) => self.get(block),
        }
    }

    async fn promote_with(self: &Arc<Self>, d: Arc<DiskBlock>, res: Reservation) -> Option<Block> {
        let turn = self.moves.lock().await;
        let id = d.id;
        let still =
            |g: &Inner| matches!(g.blocks.get(&id), Some(Block::Disk(x)) if Arc::ptr_eq(x, &d));
        if !still(&self.inner.lock()) {
            drop(turn);
            return self.get(id);
        }
        let seg = match self.read_to_segment(&d).await {
            Ok(s) => s,
            Err(e) => {
                drop(turn);
                self.drop_broken(&d, &e);
                return None;
            }
        };
        let seg = Arc::new(seg);
        let mut g = self.inner.lock();
        if still(&g) {
            g.unaccount(&d);
            let _ = std::fs::remove_file(&d.path);
            g.blocks.remove(&id);
            drop(g);
            drop(d);
            self.put(id, seg.clone(), res, true);
            Stats::add(&self.stats.promotions, 1);
        } else {
            drop(g);
        }
        drop(turn);
        self.moved.notify_waiters();
        self.get(id)
    }

    async fn read_to_segment(&self, d: &DiskBlock) -> std::io::Result<Segment> {
        let mut w = SegmentWriter::create(&format!("eddy-block-{}", d.id), d.len, false)?;
        let mut r = disk::RangeReader::new(&self.engine, d, 0, d.len)?;
        let mut pos = 0usize;
        while let Some(piece) = r.next().await {
            let (buf, range) = piece?;
            let n = range.len();
            w.as_mut_slice()[pos..pos + n].copy_from_slice(&buf.as_slice()[range]);
            pos += n;
            r.recycle(buf);
        }
        w.seal_with(d.len, self.seal_mode())
    }

    /// Promotes disk blocks read at least twice since the last pass, hottest
    /// first, into free memory only (nothing is moved down for them), and
    /// not at all when `busy`. Returns how many moved.
    pub async fn promote_hot(self: &Arc<Self>, busy: bool, max: usize) -> usize {
        let hot: Vec<(u64, u32)> = {
            let mut g = self.inner.lock();
            let mut v: Vec<(u64, u32)> = g.disk_hits.drain().filter(|(_, n)| *n >= 2).collect();
            v.sort_by_key(|(b, n)| (std::cmp::Reverse(*n), *b));
            v
        };
        if busy {
            return 0;
        }
        let mut moved = 0;
        for (b, _) in hot.into_iter().take(max) {
            let d = match self.inner.lock().blocks.get(&b) {
                Some(Block::Disk(d)) => d.clone(),
                _ => continue,
            };
            let Some(res) = self.reserve_free(d.len) else {
                break;
            };
            if matches!(self.promote_with(d, res).await, Some(Block::Mem(_))) {
                moved += 1;
            }
        }
        moved
    }
}
