//! What one mutation of the namespace changes: the records to commit, the
//! cached blocks and files it dropped, and how its commit may be made.

use crate::metastore::MetaOp;

/// Durable changes and side effects of one mutation.
#[derive(Debug, Default)]
pub struct Effects {
    pub ops: Vec<MetaOp>,
    /// Cached blocks that no longer belong to any file's current content.
    pub dropped_blocks: Vec<u64>,
    /// Incomplete files removed: their committed blocks are found by file id.
    pub dropped_files: Vec<u64>,
    /// A new reservation of inode ids (`Namespace::alloc_id`).
    pub(super) next_id: Option<u64>,
    /// The change may answer before it is durable and commit with the next
    /// one (`crate::durable`): the create of a file that made no directory
    /// and reserved no ids, which only its writer sees until it is durable
    /// and which its completion commits with it.
    pub deferrable: bool,
}

impl Effects {
    pub fn into_ops(mut self) -> Vec<MetaOp> {
        if let Some(n) = self.next_id.take() {
            self.ops.push(MetaOp::SetNextId(n));
        }
        self.ops
    }
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty() && self.next_id.is_none()
    }
}

/// Inode ids are reserved durably this many at a time: a create that is
/// lost at a crash (a deferred one, `Effects::deferrable`) never lets its
/// id be given to another file after the restart, which starts past the
/// reservation.
pub const ID_RESERVATION: u64 = 4096;
