//! Why the store cannot take a block: memory has no room ([`NoSpace`]),
//! or no disk tier could take it ([`PlaceError`]), which is either no room
//! there either or a directory that failed. Only the lack of room is
//! NO_SPACE; a failed disk is not (docs/ERRORS.md).

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
#[error(
    "the memory tier cannot fit {needed} more bytes: {used} of {capacity} used, the rest pinned or in use"
)]
pub struct NoSpace {
    pub needed: u64,
    pub used: u64,
    pub capacity: u64,
}

/// Why no disk tier (from the one asked for down) took a block.
#[derive(Debug, thiserror::Error)]
pub enum PlaceError {
    #[error("no disk tier below")]
    NoTier,
    /// Every healthy directory of the tier is full of blocks that may not move.
    #[error("tier {0} has no room")]
    NoRoom(String),
    /// Writing the block failed in `dir` (taken out of service for it).
    /// A full filesystem is lack of room; anything else is a failed disk.
    #[error("writing a block in {}: {source}", dir.display())]
    Write {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl PlaceError {
    /// Whether a directory failed (an I/O error other than a full
    /// filesystem), as opposed to there being no room.
    pub fn is_disk_failure(&self) -> bool {
        matches!(self, PlaceError::Write { source, .. } if !crate::disk::is_full(source))
    }
}
