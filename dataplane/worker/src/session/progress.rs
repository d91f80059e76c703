//! Where a write session is, without any I/O: which block the next bytes
//! go to, how much memory to reserve next, the short-circuit's segment
//! rules, the length check at close, and the first failure, which answers
//! the close. The session (`super`) does what this decides.

use eddy_wire::{WriteOpen, WriteType};

use crate::error::{Result, WorkerError};

/// Memory a streamed block reserves at a time (up to the block size).
pub(crate) const WRITE_RESERVE_STEP: u64 = 4 << 20;

/// Blocks one file may have (the index bits of a block id).
const MAX_BLOCKS: u64 = 1 << eddy_proto::BLOCK_INDEX_BITS;

#[derive(Debug)]
pub(crate) struct Progress {
    pub(crate) file_id: u64,
    pub(crate) block_size: u64,
    pub(crate) write_type: WriteType,
    /// Bytes accepted so far: streamed (TCP) or committed (short-circuit).
    total: u64,
    /// Index of the next block; blocks before it are sealed.
    next_index: u64,
    /// A block shorter than the block size was committed: it must be the last.
    short_seen: bool,
    /// The first failure of a streamed write: the rest of the stream is read
    /// and dropped, and this answers the close.
    failed: Option<WorkerError>,
}

impl Progress {
    pub(crate) fn new(open: &WriteOpen) -> Self {
        Self {
            file_id: open.file_id,
            block_size: open.block_size,
            write_type: open.write_type,
            total: 0,
            next_index: 0,
            short_seen: false,
            failed: None,
        }
    }

    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    /// The blocks are cached (every write type but THROUGH).
    pub(crate) fn caches(&self) -> bool {
        self.write_type != WriteType::Through
    }

    /// The blocks are the only copies (MUST_CACHE): never evicted, and a
    /// failed commit fails the write.
    pub(crate) fn sole(&self) -> bool {
        self.write_type == WriteType::MustCache
    }

    pub(crate) fn failed(&self) -> bool {
        self.failed.is_some()
    }

    /// Records a failure; the first one is kept (a later success must not
    /// hide it).
    pub(crate) fn fail(&mut self, e: WorkerError) {
        if self.failed.is_none() {
            self.failed = Some(e);
        }
    }

    pub(crate) fn take_failure(&mut self) -> Option<WorkerError> {
        self.failed.take()
    }

    /// Index of the next block (its segment's name and block id).
    pub(crate) fn next_index(&self) -> u64 {
        self.next_index
    }

    pub(crate) fn block_id(&self, index: u64) -> u64 {
        eddy_proto::block_id(self.file_id, index)
    }

    /// Streamed: checks that the next block may be opened.
    pub(crate) fn stream_block(&self) -> Result<u64> {
        if self.next_index >= MAX_BLOCKS {
            return Err(WorkerError::InvalidArgument(format!(
                "a file of block size {} cannot have more than 2^24 blocks",
                self.block_size
            )));
        }
        Ok(self.next_index)
    }

    /// Streamed: how many of `left` bytes go into a block holding `pos`.
    pub(crate) fn piece(&self, pos: u64, left: u64) -> u64 {
        left.min(self.block_size - pos)
    }

    /// Streamed: what a block holding `reserved` bytes must reserve more to
    /// take bytes up to `need`; reserved in steps, never past the block size.
    pub(crate) fn reserve_more(&self, need: u64, reserved: u64) -> Option<u64> {
        (need > reserved).then(|| {
            (need - reserved)
                .max(WRITE_RESERVE_STEP)
                .min(self.block_size - reserved)
        })
    }

    /// Streamed: `n` more bytes accepted.
    pub(crate) fn streamed(&mut self, n: u64) {
        self.total += n;
    }

    /// A block holding `pos` bytes is full.
    pub(crate) fn full(&self, pos: u64) -> bool {
        pos == self.block_size
    }

    /// The block at `next_index` is sealed (streamed).
    pub(crate) fn sealed(&mut self) {
        self.next_index += 1;
    }

    /// Streamed close: the writer's length must be what arrived.
    pub(crate) fn check_streamed(&mut self, length: u64) {
        if length != self.total {
            self.fail(WorkerError::InvalidArgument(format!(
                "the writer says {length} bytes but sent {}",
                self.total
            )));
        }
    }

    /// Short-circuit: may a segment of `capacity` bytes be handed out now
    /// (`pending`: one is out, not committed)?
    pub(crate) fn check_segment(&self, capacity: u64, pending: bool) -> Result<()> {
        let bad = if pending {
            "commit the current segment first".to_string()
        } else if self.short_seen {
            "only the last block of a file may be shorter than the block size".to_string()
        } else if capacity == 0 || capacity > self.block_size {
            format!(
                "segment capacity {capacity} must be 1..={}",
                self.block_size
            )
        } else if self.next_index >= MAX_BLOCKS {
            "too many blocks for one file".to_string()
        } else {
            return Ok(());
        };
        Err(WorkerError::InvalidArgument(bad))
    }

    /// Short-circuit: the next block, of `len` bytes, is committed.
    pub(crate) fn committed(&mut self, len: u64) {
        self.next_index += 1;
        self.total += len;
        self.short_seen = len < self.block_size;
    }

    /// Short-circuit close: every segment committed, and the writer's
    /// length is what was committed.
    pub(crate) fn check_committed(&self, length: u64, pending: bool) -> Result<()> {
        if pending || length != self.total {
            return Err(WorkerError::InvalidArgument(format!(
                "the writer says {length} bytes but committed {}{}",
                self.total,
                if pending {
                    " (a segment is still uncommitted)"
                } else {
                    ""
                }
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(bs: u64, wt: WriteType) -> Progress {
        Progress::new(&WriteOpen {
            file_id: 7,
            block_size: bs,
            write_type: wt,
            target: None,
            token: Vec::new(),
        })
    }

    fn message(e: WorkerError) -> String {
        assert_eq!(e.code(), eddy_proto::EddyCode::InvalidArgument);
        e.to_string()
    }

    #[test]
    fn streamed_bytes_fill_blocks_in_order() {
        let mut p = progress(10, WriteType::CacheThrough);
        assert!(p.caches() && !p.sole());
        // 25 bytes in pieces of at most 8: blocks 0 and 1 full, 2 holds 5.
        let (mut pos, mut left, mut ids) = (0, 25u64, vec![]);
        while left > 0 {
            let n = p.piece(pos, left.min(8));
            pos += n;
            left -= n;
            p.streamed(n);
            if p.full(pos) {
                ids.push(p.block_id(p.stream_block().unwrap()));
                p.sealed();
                pos = 0;
            }
        }
        assert_eq!(p.total(), 25);
        assert_eq!(pos, 5);
        assert_eq!(p.next_index(), 2);
        assert_eq!(ids, vec![7 << 24, (7 << 24) | 1]);
        p.check_streamed(25);
        assert!(!p.failed());
    }

    #[test]
    fn reservations_grow_in_steps_up_to_the_block_size() {
        let p = progress(10 << 20, WriteType::MustCache);
        assert!(p.sole());
        assert_eq!(p.reserve_more(100, 0), Some(WRITE_RESERVE_STEP));
        assert_eq!(p.reserve_more(100, WRITE_RESERVE_STEP), None);
        // A piece larger than a step reserves all of it at once.
        assert_eq!(p.reserve_more(6 << 20, 0), Some(6 << 20));
        // Never past the block size.
        assert_eq!(p.reserve_more((8 << 20) + 1, 8 << 20), Some(2 << 20));
        let small = progress(100, WriteType::MustCache);
        assert_eq!(small.reserve_more(1, 0), Some(100));
    }

    #[test]
    fn the_first_failure_answers_the_close() {
        let mut p = progress(10, WriteType::CacheThrough);
        p.streamed(4);
        p.fail(WorkerError::NotFound("first".into()));
        p.fail(WorkerError::InvalidArgument("second".into()));
        p.check_streamed(99);
        assert!(p.failed());
        assert_eq!(p.take_failure().unwrap().to_string(), "first");
    }

    #[test]
    fn a_streamed_length_that_differs_fails_the_close() {
        let mut p = progress(10, WriteType::Through);
        assert!(!p.caches());
        p.streamed(3);
        p.check_streamed(4);
        assert_eq!(
            message(p.take_failure().unwrap()),
            "the writer says 4 bytes but sent 3"
        );
    }

    #[test]
    fn a_streamed_file_has_at_most_2_pow_24_blocks() {
        let mut p = progress(1, WriteType::MustCache);
        p.next_index = MAX_BLOCKS - 1;
        assert_eq!(p.stream_block().unwrap(), MAX_BLOCKS - 1);
        p.sealed();
        assert_eq!(
            message(p.stream_block().unwrap_err()),
            "a file of block size 1 cannot have more than 2^24 blocks"
        );
    }

    #[test]
    fn segments_follow_the_short_circuit_rules() {
        let mut p = progress(10, WriteType::CacheThrough);
        let refuse =
            |p: &Progress, cap, pending| message(p.check_segment(cap, pending).unwrap_err());
        assert_eq!(refuse(&p, 0, false), "segment capacity 0 must be 1..=10");
        assert_eq!(refuse(&p, 11, false), "segment capacity 11 must be 1..=10");
        assert_eq!(refuse(&p, 10, true), "commit the current segment first");
        p.check_segment(10, false).unwrap();
        p.committed(10);
        p.check_segment(10, false).unwrap();
        p.committed(4);
        assert_eq!((p.total(), p.next_index()), (14, 2));
        assert_eq!(
            refuse(&p, 10, false),
            "only the last block of a file may be shorter than the block size"
        );
        p.next_index = MAX_BLOCKS;
        p.short_seen = false;
        assert_eq!(refuse(&p, 10, false), "too many blocks for one file");
    }

    #[test]
    fn a_committed_close_needs_every_segment_and_the_length() {
        let mut p = progress(10, WriteType::MustCache);
        p.committed(10);
        p.check_committed(10, false).unwrap();
        assert_eq!(
            message(p.check_committed(10, true).unwrap_err()),
            "the writer says 10 bytes but committed 10 (a segment is still uncommitted)"
        );
        assert_eq!(
            message(p.check_committed(11, false).unwrap_err()),
            "the writer says 11 bytes but committed 10"
        );
    }
}
