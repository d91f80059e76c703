//! Mounting and unmounting: the mount table and the mount point
//! directories in the tree.

use super::*;

impl Namespace {
    /// Adds a mount at `path`, creating the mount point directory if needed.
    pub fn mount(&mut self, m: MountPoint, now: i64, fx: &mut Effects) -> Result<()> {
        let path = m.path.clone();
        if path.is_root() || self.mounts.is_mount_point(&path) {
            return Err(MasterError::MountConflict(format!(
                "{path} is already a mount point"
            )));
        }
        let parent = path.parent().expect("not root");
        let pid = self.resolve(&parent)?;
        if !self.inodes[&pid].is_dir() {
            return Err(MasterError::NotADirectory(parent.to_string()));
        }
        let enclosing = self.mounts.resolve(&path);
        if enclosing.read_only {
            return Err(MasterError::ReadOnly(format!(
                "{path}: cannot mount under the read-only mount {}",
                enclosing.path
            )));
        }
        if let Some(other) = self.mounts.iter().find(|o| uris_overlap(&o.uri, &m.uri)) {
            return Err(MasterError::MountConflict(format!(
                "{} overlaps {}, already mounted at {}",
                m.uri, other.uri, other.path
            )));
        }
        let id = match self.lookup(&path) {
            Some(id) => {
                let ino = &self.inodes[&id];
                if !ino.is_dir() {
                    return Err(MasterError::MountConflict(format!(
                        "{path} is an existing file"
                    )));
                }
                if ino.children().is_some_and(|c| !c.is_empty()) {
                    return Err(MasterError::MountConflict(format!(
                        "{path} is a non-empty directory; mount on an empty or new path"
                    )));
                }
                id
            }
            None => {
                let nid = self.alloc_id(fx);
                let ino = self.new_inode(nid, pid, path.name(), true, &NewAttrs::default(), now);
                self.attach(ino, fx)
            }
        };
        let ino = self.inode_mut(id);
        ino.set_flag(FLAG_MOUNT_POINT | FLAG_PERSISTED, true);
        ino.synced_ms = 0;
        ino.dir.as_mut().expect("directory").listed_ms = 0;
        fx.ops.push(metastore::put(ino));
        fx.ops.push(MetaOp::PutMount {
            path: path.to_string(),
            record: m.encode(),
        });
        self.mounts.insert(m);
        Ok(())
    }

    /// Removes the mount at `path` and everything Eddy knew below it (the
    /// under-storage is untouched).
    pub fn unmount(&mut self, path: &EddyPath, fx: &mut Effects) -> Result<MountPoint> {
        if path.is_root() {
            return Err(MasterError::InvalidArgument(
                "cannot unmount the root mount".into(),
            ));
        }
        if !self.mounts.is_mount_point(path) {
            return Err(MasterError::NotFound(format!(
                "{path} is not a mount point"
            )));
        }
        if let Some(inner) = self.mounts.below(path).next() {
            return Err(MasterError::MountConflict(format!(
                "{path} contains the mount point {}; unmount that first",
                inner.path
            )));
        }
        let m = self.mounts.remove(path).expect("checked");
        fx.ops.push(MetaOp::DeleteMount(path.to_string()));
        if let Some(id) = self.lookup(path) {
            self.remove_subtree(id, fx);
        }
        Ok(m)
    }
}
