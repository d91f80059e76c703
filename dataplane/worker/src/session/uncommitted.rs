//! Blocks a write session has put in the store but not yet recorded with
//! the master, and their recording at close.

use std::sync::Arc;

use crate::error::{Result, WorkerError};
use crate::segment::Segment;
use crate::shared::Shared;
use crate::store::{BlockStore, Reservation, Stats};

/// Blocks of a write in progress (TCP or short-circuit): each full block
/// joins the store as soon as it is written, so it can move down a tier
/// and a write larger than memory spills to disk, but the master hears of
/// them only at close. Removed on drop unless `keep` (the commit went
/// through).
pub(crate) struct Uncommitted {
    store: Arc<BlockStore>,
    pub(crate) blocks: Vec<(u64, u64)>,
    pub(crate) keep: bool,
}

impl Uncommitted {
    pub(crate) fn new(store: Arc<BlockStore>) -> Self {
        Self {
            store,
            blocks: Vec::new(),
            keep: false,
        }
    }

    /// Refuses a block this worker already holds: a write session only
    /// makes new blocks (an incomplete file's blocks are cached nowhere),
    /// so an id in the store is another file's copy and is left alone.
    pub(crate) fn add(
        &mut self,
        (id, seg, res): (u64, Segment, Reservation),
        sole: bool,
    ) -> Result<()> {
        if self.store.contains(id) {
            return Err(WorkerError::AlreadyWriting(format!(
                "block {id} is already cached on this worker; it is not written again"
            )));
        }
        let len = seg.len();
        self.store.insert(id, seg, res, false);
        if sole {
            // A MUST_CACHE block may move down a tier but never be evicted.
            self.store.keep_sole_copies([id]);
        }
        Stats::add(&self.store.stats.blocks_written, 1);
        self.blocks.push((id, len));
        Ok(())
    }
}

impl Drop for Uncommitted {
    fn drop(&mut self) {
        if !self.keep {
            let ids: Vec<u64> = self.blocks.iter().map(|b| b.0).collect();
            self.store.remove(&ids);
        }
    }
}

/// Records written blocks with the master; on failure drops the ones not
/// recorded.
pub(crate) async fn commit_ids(sh: &Shared, ids: &[(u64, u64)]) -> Result<()> {
    for (i, &(id, len)) in ids.iter().enumerate() {
        // A CACHE_THROUGH block may have been evicted from the last tier
        // while the write went on: the under-storage has it, the master
        // must not list this worker for it.
        if !sh.store.contains(id) {
            continue;
        }
        if let Err(e) = sh.link.commit_written(id, len).await {
            let rest: Vec<u64> = ids[i..].iter().map(|(b, _)| *b).collect();
            sh.store.remove(&rest);
            return Err(e.into());
        }
    }
    Ok(())
}
