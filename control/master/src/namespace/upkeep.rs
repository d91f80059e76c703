//! What the background work reads and marks: expired TTLs, replication
//! bounds, pins (and their version, which workers poll), persists waiting,
//! and the blocks a `free` drops.

use super::*;

impl Namespace {
    /// Entries whose TTL has run out at `now` (mtime + ttl), outermost
    /// first, with their action. An entry below an expired directory is
    /// left to the directory's action.
    pub fn expired_ttls(&self, now: i64) -> Vec<(EddyPath, TtlAction)> {
        let mut out: Vec<(EddyPath, TtlAction)> = self
            .inodes
            .values()
            .filter(|i| i.id != ROOT_ID && i.ttl_ms >= 0)
            .filter(|i| i.mtime_ms.saturating_add(i.ttl_ms) <= now)
            .filter_map(|i| Some((self.path_of(i.id)?, i.ttl_action)))
            .collect();
        out.sort_by_key(|(p, _)| p.depth());
        let mut kept: Vec<(EddyPath, TtlAction)> = Vec::new();
        for (p, a) in out {
            if !kept.iter().any(|(k, _)| p.starts_with(k)) {
                kept.push((p, a));
            }
        }
        kept
    }

    /// Complete files with a replication bound (min > 0 or max > 0), with
    /// their block ids and bounds.
    pub fn replicated_files(&self) -> Vec<(u64, Vec<u64>, u32, u32)> {
        self.inodes
            .values()
            .filter(|i| !i.is_dir() && i.flag(FLAG_COMPLETE))
            .filter(|i| i.replication_min > 0 || i.replication_max > 0)
            .map(|i| {
                let blocks = (0..i.block_count())
                    .map(|k| eddy_proto::block_id(i.id, k))
                    .collect();
                (i.id, blocks, i.replication_min, i.replication_max)
            })
            .collect()
    }

    /// The pinned files (files waiting to be persisted count as pinned) and
    /// the version of that set.
    pub fn pinned_files(&self) -> (u64, Vec<u64>) {
        let all: BTreeSet<u64> = self
            .pinned
            .iter()
            .chain(&self.persist_pending)
            .copied()
            .collect();
        (self.pin_version, all.into_iter().collect())
    }

    /// Files waiting to be persisted.
    pub fn persist_pending(&self) -> Vec<u64> {
        self.persist_pending.iter().copied().collect()
    }

    /// How many files wait to be persisted.
    pub fn persist_pending_count(&self) -> usize {
        self.persist_pending.len()
    }

    /// Marks complete, unpersisted files at `path` (a file, or every such
    /// file below a directory) as waiting to be persisted. Returns those
    /// files, the ones that waited already included.
    pub fn mark_persist(&mut self, path: &EddyPath, fx: &mut Effects) -> Result<Vec<u64>> {
        let id = self.resolve(path)?;
        let mut marked = Vec::new();
        for i in self.subtree(id) {
            let ino = &self.inodes[&i];
            if ino.is_dir() || ino.flag(FLAG_PERSISTED) {
                continue;
            }
            if !ino.flag(FLAG_COMPLETE) {
                if i == id {
                    return Err(MasterError::FileIncomplete(path.to_string()));
                }
                continue;
            }
            marked.push(i);
            if self.persist_pending.insert(i) {
                let ino = self.inode_mut(i);
                ino.set_flag(FLAG_PERSIST_PENDING, true);
                fx.ops.push(metastore::put(ino));
                self.pin_version += 1;
            }
        }
        Ok(marked)
    }

    /// Records the under-storage fingerprints of the persisted files at or
    /// below `path`, keyed by their path relative to it ("" for `path`
    /// itself); files the map does not name keep theirs.
    pub fn set_fingerprints(
        &mut self,
        path: &EddyPath,
        fps: &HashMap<String, String>,
        fx: &mut Effects,
    ) {
        let Some(top) = self.lookup(path) else {
            return;
        };
        let mut stack = vec![(top, String::new())];
        while let Some((id, rel)) = stack.pop() {
            let ino = self.inode_mut(id);
            if let Some(d) = &ino.dir {
                for (name, &child) in &d.children {
                    let r = if rel.is_empty() {
                        name.to_string()
                    } else {
                        format!("{rel}/{name}")
                    };
                    stack.push((child, r));
                }
                continue;
            }
            if let Some(fp) = fps.get(&rel).map(|f| Fingerprint::of(f))
                && ino.flag(FLAG_PERSISTED)
                && ino.fingerprint != fp
            {
                ino.fingerprint = fp;
                fx.ops.push(metastore::put(ino));
            }
        }
    }

    /// Records that file `id` is now persisted with `fingerprint`.
    pub fn persist_done(&mut self, id: u64, fingerprint: &str, fx: &mut Effects) {
        if !self.persist_pending.remove(&id) {
            return;
        }
        self.pin_version += 1;
        if let Some(ino) = self.inodes.get_mut(&id) {
            ino.set_flag(FLAG_PERSIST_PENDING, false);
            ino.set_flag(FLAG_PERSISTED, true);
            ino.fingerprint = Fingerprint::of(fingerprint);
            fx.ops.push(metastore::put(ino));
        }
    }

    /// The pinned files whose pin allows demotion to disk tiers. Files that
    /// are pinned only because they wait to be persisted may move down too:
    /// they must stay on the worker, not in its memory.
    pub fn pin_demotable(&self) -> Vec<u64> {
        let waiting = self
            .persist_pending
            .iter()
            .filter(|id| !self.pinned.contains(id));
        let all: BTreeSet<u64> = self.pin_demotable.iter().chain(waiting).copied().collect();
        all.into_iter().collect()
    }

    pub fn pin_version(&self) -> u64 {
        self.pin_version
    }

    /// The cached blocks `free` must drop for `path`. Only complete,
    /// persisted files can be freed (otherwise the cache holds the only
    /// copy); pinned ones only when `opts.force`. A directory needs `opts.recursive`
    /// unless empty.
    pub fn free_targets(&self, path: &EddyPath, opts: FreeOpts) -> Result<Vec<u64>> {
        let id = self.resolve(path)?;
        let ino = &self.inodes[&id];
        if ino.children().is_some_and(|c| !c.is_empty()) && !opts.recursive {
            return Err(MasterError::DirectoryNotEmpty(format!(
                "{path} is a directory; free it with the recursive option"
            )));
        }
        let mut blocks = Vec::new();
        for i in self.subtree(id) {
            let f = &self.inodes[&i];
            if f.is_dir() {
                continue;
            }
            let name = || {
                if i == id {
                    path.to_string()
                } else {
                    match self.path_of(i) {
                        Some(p) => p.to_string(),
                        None => format!("a file under {path}"),
                    }
                }
            };
            if !f.flag(FLAG_COMPLETE) || !f.flag(FLAG_PERSISTED) {
                return Err(MasterError::InvalidArgument(format!(
                    "cannot free {}: it is not persisted to the under-storage, so the cache holds its only copy",
                    name()
                )));
            }
            if f.flag(FLAG_PINNED) && !opts.force {
                return Err(MasterError::InvalidArgument(format!(
                    "cannot free {}: it is pinned (unpin it, or free with force)",
                    name()
                )));
            }
            blocks.extend(file_blocks(f));
        }
        Ok(blocks)
    }
}
