//! Removing and moving entries: delete and rename (each checked first,
//! without changing anything, so the under-storage half can run between
//! the check and the change), and the subtree walk both use.

use super::*;

impl Namespace {
    /// Every inode id in the subtree rooted at `id`, `id` first.
    pub fn subtree(&self, id: u64) -> Vec<u64> {
        let mut out = vec![id];
        let mut i = 0;
        while i < out.len() {
            if let Some(ch) = self.inodes[&out[i]].children() {
                out.extend(ch.values().copied());
            }
            i += 1;
        }
        out
    }

    pub(super) fn check_no_mounts_below(&self, path: &EddyPath, what: &str) -> Result<()> {
        if self.mounts.is_mount_point(path) {
            return Err(MasterError::MountConflict(format!(
                "{path} is a mount point; unmount it instead of trying to {what} it"
            )));
        }
        if let Some(m) = self.mounts.below(path).next() {
            return Err(MasterError::MountConflict(format!(
                "cannot {what} {path}: it contains the mount point {}; unmount that first",
                m.path
            )));
        }
        Ok(())
    }

    /// Checks a delete without doing it; returns the id and whether the entry
    /// exists in the under-storage.
    pub fn check_delete(&self, path: &EddyPath, opts: DeleteOpts) -> Result<(u64, bool)> {
        if path.is_root() {
            return Err(MasterError::InvalidArgument(
                "cannot delete the root directory".into(),
            ));
        }
        let id = self.resolve(path)?;
        self.check_no_mounts_below(path, "delete")?;
        if !opts.eddy_only {
            self.check_writable(path)?;
        }
        let ino = &self.inodes[&id];
        if !opts.recursive && ino.children().is_some_and(|c| !c.is_empty()) {
            return Err(MasterError::DirectoryNotEmpty(path.to_string()));
        }
        Ok((id, ino.flag(FLAG_PERSISTED)))
    }

    /// Deletes `path` (recursively if asked).
    pub fn delete(
        &mut self,
        path: &EddyPath,
        opts: DeleteOpts,
        now: i64,
        fx: &mut Effects,
    ) -> Result<()> {
        let (id, _) = self.check_delete(path, opts)?;
        let parent = self.inodes[&id].parent;
        self.remove_subtree(id, fx);
        let p = self.inode_mut(parent);
        p.mtime_ms = now;
        fx.ops.push(metastore::put(p));
        Ok(())
    }

    pub(super) fn remove_subtree(&mut self, id: u64, fx: &mut Effects) {
        let ids = self.subtree(id);
        let (parent, name) = {
            let ino = &self.inodes[&id];
            (ino.parent, ino.name.clone())
        };
        if let Some(d) = self.inodes.get_mut(&parent).and_then(|p| p.dir.as_mut()) {
            d.children.remove(&name);
        }
        for i in ids {
            let ino = self.inodes.remove(&i).expect("subtree ids exist");
            if self.pinned.remove(&i) {
                self.pin_demotable.remove(&i);
                self.pin_version += 1;
            }
            if self.persist_pending.remove(&i) {
                self.pin_version += 1;
            }
            fx.dropped_blocks.extend(file_blocks(&ino));
            if !ino.is_dir() && !ino.flag(FLAG_COMPLETE) {
                fx.dropped_files.push(ino.id);
            }
            fx.ops.push(MetaOp::DeleteInode(i));
        }
    }

    /// Checks a rename; returns (src id, src persisted, destination parent id).
    pub fn check_rename(&self, src: &EddyPath, dst: &EddyPath) -> Result<(u64, bool, u64)> {
        if src.is_root() || dst.is_root() {
            return Err(MasterError::InvalidArgument(
                "cannot rename the root directory".into(),
            ));
        }
        let id = self.resolve(src)?;
        if dst.starts_with(src) && dst != src {
            return Err(MasterError::InvalidArgument(format!(
                "cannot rename {src} into its own subtree ({dst})"
            )));
        }
        self.check_no_mounts_below(src, "rename")?;
        let dst_parent = dst.parent().expect("not root");
        let pid = self.resolve(&dst_parent)?;
        if !self.inodes[&pid].is_dir() {
            return Err(MasterError::NotADirectory(dst_parent.to_string()));
        }
        if src != dst && self.lookup(dst).is_some() {
            return Err(MasterError::AlreadyExists(dst.to_string()));
        }
        if self.mounts.resolve(src).id != self.mounts.resolve(dst).id {
            return Err(MasterError::InvalidArgument(format!(
                "cannot rename {src} to {dst}: they are on different mounts"
            )));
        }
        self.check_writable(src)?;
        Ok((id, self.inodes[&id].flag(FLAG_PERSISTED), pid))
    }

    /// Renames `src` to `dst`: one inode record changes, so it is atomic.
    pub fn rename(
        &mut self,
        src: &EddyPath,
        dst: &EddyPath,
        now: i64,
        fx: &mut Effects,
    ) -> Result<()> {
        let (id, _, new_parent) = self.check_rename(src, dst)?;
        if src == dst {
            return Ok(());
        }
        let old_parent = self.inodes[&id].parent;
        let old_name = self.inodes[&id].name.clone();
        self.inode_mut(old_parent)
            .dir
            .as_mut()
            .expect("parent is a directory")
            .children
            .remove(&old_name);
        let name: Arc<str> = Arc::from(dst.name());
        let ino = self.inode_mut(id);
        ino.parent = new_parent;
        ino.name = name.clone();
        fx.ops.push(metastore::put(ino));
        let parents = if old_parent == new_parent {
            &[old_parent][..]
        } else {
            &[old_parent, new_parent][..]
        };
        for &p in parents {
            let p = self.inode_mut(p);
            p.mtime_ms = now;
            fx.ops.push(metastore::put(p));
        }
        self.inode_mut(new_parent)
            .dir
            .as_mut()
            .expect("checked")
            .children
            .insert(name, id);
        Ok(())
    }
}
