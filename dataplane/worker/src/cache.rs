//! The worker's cache core, shared by every front door and the copy jobs:
//! a block from whichever tier holds it, or filled from the under-storage
//! (checked against the master first, read at the version it names).

use eddy_wire::{ReadRequest, ReadType};

use crate::error::{Result, WorkerError};
use crate::segment::SegmentWriter;
use crate::shared::Shared;
use crate::store::{Block, NoSpace, PlaceError, Stats};

/// The block, from whichever tier holds it (moved up to memory first for
/// CACHE_PROMOTE), or filled from the under-storage into memory. A disk
/// block whose file cannot be opened is forgotten and filled again.
pub(crate) async fn cached(sh: &Shared, req: &ReadRequest) -> Result<Block> {
    for _ in 0..2 {
        match sh.store.get_or_fill(req.block_id, || fill(sh, req)).await? {
            Block::Disk(d) if req.read_type == ReadType::CachePromote => {
                drop(d);
                if let Some(b) = sh.store.promote(req.block_id).await {
                    return checked(req, b);
                }
            }
            Block::Disk(d) => match d.file() {
                Ok(_) => return checked(req, Block::Disk(d)),
                Err(e) => sh.store.drop_broken(&d, &e),
            },
            b => return checked(req, b),
        }
    }
    Err(WorkerError::NotFound(format!(
        "block {} keeps failing on this worker's disk tiers",
        req.block_id
    )))
}

pub(crate) fn checked(req: &ReadRequest, b: Block) -> Result<Block> {
    if b.len() != req.block_length {
        return Err(WorkerError::InvalidArgument(format!(
            "block {} is {} bytes here, the request says {}",
            req.block_id,
            b.len(),
            req.block_length
        )));
    }
    Ok(b)
}

/// Reads just the requested range from the under-storage; caches nothing.
pub(crate) async fn read_through(sh: &Shared, req: &ReadRequest) -> Result<bytes::Bytes> {
    let src = source(req)?;
    let want = sh.admit.check_fill(&sh.link, req).await?;
    let ufs = sh.link.ufs(src.mount_id).await?;
    let start = req.file_offset + req.offset;
    ufs_read_exact(sh, &*ufs, src, start, req.length, &want).await
}

/// Reads exactly `len` bytes at `start` of the block's under-storage file,
/// of version `want` only; another version, or fewer bytes, means the file
/// changed under Eddy.
async fn ufs_read_exact(
    sh: &Shared,
    ufs: &dyn eddy_ufs::UnderFileSystem,
    src: &eddy_wire::UfsSource,
    start: u64,
    len: u64,
    want: &eddy_ufs::Version,
) -> Result<bytes::Bytes> {
    let key = ufs_key(&src.key)?;
    let mut buf = vec![0u8; len as usize];
    let n = ufs.read_into_version(&key, start, &mut buf, want).await?;
    Stats::add(&sh.store.stats.ufs_reads, 1);
    Stats::add(&sh.store.stats.ufs_bytes_read, n as u64);
    if n as u64 != len {
        return Err(WorkerError::UfsChanged {
            key: src.key.clone(),
            offset: start,
            expected: len,
            found: n as u64,
        });
    }
    Ok(bytes::Bytes::from(buf))
}

fn source(req: &ReadRequest) -> Result<&eddy_wire::UfsSource> {
    req.source.as_ref().ok_or_else(|| {
        WorkerError::NotFound(format!(
            "block {} is not cached on this worker and has no under-storage copy",
            req.block_id
        ))
    })
}

pub(crate) fn ufs_key(key: &str) -> Result<eddy_ufs::UfsPath> {
    eddy_ufs::UfsPath::parse(key)
        .ok_or_else(|| WorkerError::InvalidArgument(format!("invalid under-storage key {key:?}")))
}

/// Reads the whole block from the under-storage into a new segment, caches
/// it and records it with the master. Whole blocks: one sequential read per
/// miss, and every later read of the block is a hit (docs/DATA-PROTOCOL.md).
pub(crate) async fn fill(sh: &Shared, req: &ReadRequest) -> Result<Block> {
    let src = source(req)?;
    // Before a byte is reserved: the request must describe this block's
    // own bytes (docs/DATA-PROTOCOL.md, "Checks against the master").
    let want = sh.admit.check_fill(&sh.link, req).await?;
    let ufs = sh.link.ufs(src.mount_id).await?;
    let key = ufs_key(&src.key)?;
    let res = match sh.store.reserve(req.block_length).await {
        Ok(r) => r,
        // Memory is all pinned or in use: the block goes to the first
        // disk tier with room instead.
        Err(e) if sh.store.has_disk() => return fill_to_disk(sh, req, &*ufs, e, &want).await,
        Err(e) => return Err(e.into()),
    };
    let mut w = SegmentWriter::create(
        &format!("eddy-block-{}", req.block_id),
        req.block_length,
        // Not populated up front: faulting pages in during the read lets
        // page allocation overlap the under-storage I/O (measured faster).
        false,
    )
    .map_err(WorkerError::Memory)?;
    let n = ufs
        .read_into_version(&key, req.file_offset, w.as_mut_slice(), &want)
        .await?;
    Stats::add(&sh.store.stats.ufs_reads, 1);
    Stats::add(&sh.store.stats.ufs_bytes_read, n as u64);
    if n as u64 != req.block_length {
        return Err(WorkerError::UfsChanged {
            key: src.key.clone(),
            offset: req.file_offset,
            expected: req.block_length,
            found: n as u64,
        });
    }
    let seg = w
        .seal_with(n as u64, sh.store.seal_mode())
        .map_err(WorkerError::Memory)?;
    let seg = sh.store.insert(req.block_id, seg, res, false);
    if let Err(e) = sh.link.commit(req.block_id, req.block_length).await {
        // The file changed or went away meanwhile: serve this read, keep nothing.
        tracing::warn!("block {} not kept: {e}", req.block_id);
        sh.store.remove(&[req.block_id]);
    }
    Ok(Block::Mem(seg))
}

async fn fill_to_disk(
    sh: &Shared,
    req: &ReadRequest,
    ufs: &dyn eddy_ufs::UnderFileSystem,
    no_room: NoSpace,
    want: &eddy_ufs::Version,
) -> Result<Block> {
    let src = source(req)?;
    let b = ufs_read_exact(sh, ufs, src, req.file_offset, req.block_length, want).await?;
    let block = match sh.store.insert_on_disk(req.block_id, b).await {
        Ok(b) => b,
        Err(why) => return Err(disk_refused(req.block_id, no_room, why)),
    };
    let tier = sh.store.tier_name(&block);
    if let Err(e) = sh
        .link
        .commit_in(req.block_id, req.block_length, &tier)
        .await
    {
        tracing::warn!("block {} not kept: {e}", req.block_id);
        sh.store.remove(&[req.block_id]);
    }
    Ok(block)
}

/// The error for a block neither memory nor a disk tier took: no room
/// (NO_SPACE) only when the disks had none either; a failed disk is not a
/// lack of room.
fn disk_refused(block_id: u64, no_room: NoSpace, why: PlaceError) -> WorkerError {
    if why.is_disk_failure() {
        tracing::warn!("block {block_id} not cached: memory is full and a disk tier failed: {why}");
        WorkerError::DiskFailed {
            no_room,
            source: why,
        }
    } else {
        tracing::debug!("block {block_id} has no room on disk either: {why}");
        no_room.into()
    }
}

#[cfg(test)]
mod tests;
