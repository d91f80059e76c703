//! Operations that name the inode, not only the path: what keeps a race
//! (a rename, a delete and a create at the same path) from turning one
//! client's operation into a change of another client's file.

use super::*;

impl Namespace {
    /// The inode at `path`, which must be `ino` (0 accepts whatever is
    /// there): an operation that started on one inode never finishes on
    /// another that has since taken its path.
    pub fn expect(&self, path: &EddyPath, ino: u64) -> Result<u64> {
        let id = self.resolve(path)?;
        if ino != 0 && id != ino {
            return Err(MasterError::NotFound(format!(
                "{path} (no longer file id {ino}: it was renamed or deleted, and the path names another entry now)"
            )));
        }
        Ok(id)
    }

    /// Marks file `id` complete with its final length (see
    /// [`Namespace::complete_file`]); `path` is only for messages.
    pub fn complete_id(
        &mut self,
        id: u64,
        done: &Completion<'_>,
        now: i64,
        fx: &mut Effects,
    ) -> Result<()> {
        let Some(ino) = self.inodes.get(&id) else {
            return Err(MasterError::NotFound(format!(
                "{} (file id {id}) no longer exists: it was deleted while being written, \
                 or the master restarted before its create was durable; write the file again",
                done.path
            )));
        };
        if ino.is_dir() {
            return Err(MasterError::IsADirectory(done.path.to_string()));
        }
        if ino.flag(FLAG_COMPLETE) {
            return Err(MasterError::FileAlreadyComplete(done.path.to_string()));
        }
        if done.length.div_ceil(ino.block_size) > MAX_BLOCKS_PER_FILE {
            return Err(MasterError::InvalidArgument(format!(
                "{}: {} bytes would need more than {MAX_BLOCKS_PER_FILE} blocks of {} bytes",
                done.path, done.length, ino.block_size
            )));
        }
        let ino = self.inode_mut(id);
        ino.length = done.length;
        ino.mtime_ms = now;
        ino.set_flag(FLAG_COMPLETE, true);
        ino.set_flag(FLAG_STAGED, false);
        ino.set_flag(FLAG_PERSISTED, done.persisted);
        ino.fingerprint = Fingerprint::of(done.fingerprint);
        fx.ops.push(metastore::put(ino));
        Ok(())
    }

    /// Whether `id` is an incomplete file whose writer puts its bytes at
    /// its staging name in the under-storage (`crate::staging`).
    pub fn is_staged(&self, id: u64) -> bool {
        self.inodes
            .get(&id)
            .is_some_and(|i| i.flag(FLAG_STAGED) && !i.flag(FLAG_COMPLETE))
    }

    /// The staged files at or below `id` (whose staging objects go when they do).
    pub fn staged_in(&self, id: u64) -> Vec<u64> {
        self.subtree(id)
            .into_iter()
            .filter(|&i| self.is_staged(i))
            .collect()
    }

    /// Whether the entry `id` exists in the under-storage.
    pub fn persisted(&self, id: u64) -> bool {
        self.inodes.get(&id).is_some_and(|i| i.flag(FLAG_PERSISTED))
    }
}

/// What a completed write reports.
pub struct Completion<'a> {
    /// Where the writer thinks the file is (messages only).
    pub path: &'a str,
    pub length: u64,
    /// The bytes are in the under-storage.
    pub persisted: bool,
    pub fingerprint: &'a str,
}
