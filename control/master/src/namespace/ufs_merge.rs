//! Merging what the under-storage has into the tree: entries added,
//! refreshed or replaced, and dropped when the store no longer has them.

use super::*;

impl Namespace {
    /// Records that `id` was just checked against the under-storage.
    pub fn mark_synced(&mut self, id: u64, now: i64) {
        if let Some(i) = self.inodes.get_mut(&id) {
            i.synced_ms = now;
        }
    }

    pub fn mark_listed(&mut self, id: u64, now: i64) {
        if let Some(d) = self.inodes.get_mut(&id).and_then(|i| i.dir.as_mut()) {
            d.listed_ms = now;
        }
    }

    /// Whether a subtree may be dropped because the under-storage no longer
    /// has it: only when everything in it came from there and no mount lies
    /// inside. Eddy-only files (not persisted) are never dropped by a sync.
    pub(super) fn droppable(&self, id: u64) -> bool {
        self.subtree(id).into_iter().all(|i| {
            let ino = &self.inodes[&i];
            ino.flag(FLAG_PERSISTED)
                && !ino.flag(FLAG_MOUNT_POINT)
                && (ino.is_dir() || ino.flag(FLAG_COMPLETE))
        })
    }

    /// Merges one under-storage entry into directory `parent`: adds it if
    /// unknown, refreshes it if changed (a new fingerprint drops the file's
    /// cached blocks), and replaces it if it changed between file and directory.
    /// Returns the child's id, or `None` if Eddy keeps its own entry.
    pub fn merge_ufs_child(
        &mut self,
        parent: u64,
        st: &UfsStatus,
        now: i64,
        fx: &mut Effects,
    ) -> Option<u64> {
        if !crate::path::valid_name(&st.name) {
            return None;
        }
        let existing = self
            .inodes
            .get(&parent)?
            .children()?
            .get(st.name.as_str())
            .copied();
        if let Some(id) = existing {
            let ino = &self.inodes[&id];
            if !ino.flag(FLAG_PERSISTED) || ino.flag(FLAG_MOUNT_POINT) {
                return None;
            }
            if ino.is_dir() == st.is_dir {
                let changed = !st.is_dir && ino.fingerprint != Fingerprint::of(&st.fingerprint);
                if changed {
                    // New content gets a new inode id, hence new block ids:
                    // a worker still holding the old blocks (until it hears
                    // they are dropped) can never serve them for the new
                    // bytes. Attributes (mode, owner, pin, TTL, bounds) carry over.
                    let mut ino = self.inodes.remove(&id).expect("listed above");
                    fx.dropped_blocks.extend(file_blocks(&ino));
                    fx.ops.push(MetaOp::DeleteInode(id));
                    let new_id = self.alloc_id(fx);
                    if self.pinned.remove(&id) {
                        self.pinned.insert(new_id);
                        if self.pin_demotable.remove(&id) {
                            self.pin_demotable.insert(new_id);
                        }
                        self.pin_version += 1;
                    }
                    ino.id = new_id;
                    ino.length = st.length;
                    ino.mtime_ms = st.mtime_ms;
                    ino.fingerprint = Fingerprint::of(&st.fingerprint);
                    ino.set_flag(FLAG_COMPLETE, true);
                    ino.synced_ms = now;
                    fx.ops.push(metastore::put(&ino));
                    let name = ino.name.clone();
                    self.inodes.insert(new_id, ino);
                    self.inode_mut(parent)
                        .dir
                        .as_mut()
                        .expect("parent is a directory")
                        .children
                        .insert(name, new_id);
                    return Some(new_id);
                }
                self.inode_mut(id).synced_ms = now;
                return Some(id);
            }
            if !self.droppable(id) {
                return None;
            }
            self.remove_subtree(id, fx);
        }
        let id = self.alloc_id(fx);
        let attrs = self.loaded_attrs(parent);
        let mut ino = self.new_inode(id, parent, &st.name, st.is_dir, &attrs, now);
        ino.flags |= FLAG_PERSISTED | FLAG_COMPLETE;
        ino.length = st.length;
        ino.mtime_ms = st.mtime_ms;
        ino.created_ms = st.mtime_ms;
        ino.fingerprint = Fingerprint::of(&st.fingerprint);
        fx.ops.push(metastore::put(&ino));
        self.inodes.insert(id, ino);
        self.inode_mut(parent)
            .dir
            .as_mut()
            .expect("parent is a directory")
            .children
            .insert(Arc::from(st.name.as_str()), id);
        Some(id)
    }

    /// Drops `id` because the under-storage no longer has it (if droppable).
    pub fn drop_if_gone(&mut self, id: u64, fx: &mut Effects) -> bool {
        if id == ROOT_ID || !self.inodes.contains_key(&id) || !self.droppable(id) {
            return false;
        }
        self.remove_subtree(id, fx);
        true
    }

    /// After listing names in `(after, upto]` (`upto` None = to the end) from
    /// the under-storage, drops persisted children in that range it did not list.
    pub fn drop_unlisted(
        &mut self,
        dir: u64,
        after: Option<&str>,
        upto: Option<&str>,
        listed: &HashSet<&str>,
        fx: &mut Effects,
    ) {
        use std::ops::Bound;
        let Some(children) = self.inodes.get(&dir).and_then(|d| d.children()) else {
            return;
        };
        // The page covers listing keys (after, upto] (eddy_ufs::listing_key:
        // a directory is its name and `/`). By name, that is a superset
        // starting at the part of `after` before its first byte <= `/`:
        // only such prefixes of `after` can be directories whose key sorts
        // after it.
        let lo = after.map_or(Bound::Unbounded, |a| {
            let cut = a.bytes().position(|b| b <= b'/').unwrap_or(a.len());
            Bound::Included(&a[..cut])
        });
        let hi = upto.map_or(Bound::Unbounded, Bound::Included);
        let in_page = |key: &str| after.is_none_or(|a| key > a) && upto.is_none_or(|u| key <= u);
        let gone: Vec<u64> = children
            .range::<str, _>((lo, hi))
            .filter(|(n, _)| !listed.contains(&***n))
            .filter(|(n, id)| {
                let is_dir = self.inodes.get(id).is_some_and(|i| i.is_dir());
                in_page(&eddy_ufs::listing_key(n, is_dir))
            })
            .map(|(_, &id)| id)
            .collect();
        for id in gone {
            self.drop_if_gone(id, fx);
        }
    }
}
