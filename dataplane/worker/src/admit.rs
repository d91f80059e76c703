//! Admission: a client's request is checked against what the master says
//! about its block before the worker fills, caches or commits anything for
//! it. Until blocks carry signed tokens, this is what stops a client from
//! making the worker cache the wrong bytes under another file's block id
//! (a `Load` naming one file's block with another file's key, or a write
//! session replacing a complete file's blocks).
//!
//! Only misses and write opens ask the master; cache hits never do. Answers
//! about complete files are kept for a moment, so a burst of misses of one
//! block (read-through of a block that does not fit) asks once; an answer
//! that does not match is always asked again before a request is refused
//! (a rename changes a file's key).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use eddy_client::pb;
use eddy_wire::{ReadRequest, UfsSource, WriteOpen, WriteType};
use parking_lot::Mutex;

use crate::error::{Result, WorkerError};
use crate::master_link::MasterLink;

/// How long an answer about a complete file is reused.
const KNOWN_TTL: Duration = Duration::from_secs(1);
/// Most answers kept; past it the table starts over (it only saves RPCs).
const KNOWN_MAX: usize = 4096;

#[derive(Default)]
pub struct Admission {
    known: Mutex<HashMap<u64, (Instant, pb::GetBlockInfoResponse)>>,
    /// Files with a write session open on this worker (TCP or short-circuit).
    writing: Mutex<HashSet<u64>>,
}

/// A file's write session slot; the file is free for another session when
/// this is dropped (close, cancel, or a broken connection).
pub struct WriteSlot {
    adm: Arc<Admission>,
    file_id: u64,
}

impl Drop for WriteSlot {
    fn drop(&mut self) {
        self.adm.writing.lock().remove(&self.file_id);
    }
}

impl Admission {
    /// Checks that a fill (or read-through) of `req` reads the block's own
    /// bytes: its file is complete and persisted, and the request's length,
    /// file offset and under-storage mount and key are the master's.
    pub async fn check_fill(
        &self,
        link: &MasterLink,
        req: &ReadRequest,
    ) -> Result<eddy_ufs::Version> {
        let kept = self.known.lock().get(&req.block_id).cloned();
        if let Some((at, info)) = kept
            && at.elapsed() < KNOWN_TTL
            && fill_matches(&info, req).is_ok()
        {
            return Ok(version(&info));
        }
        let info = link.block_info(req.block_id).await?;
        fill_matches(&info, req)?;
        let want = version(&info);
        let mut known = self.known.lock();
        if known.len() >= KNOWN_MAX {
            known.clear();
        }
        known.insert(req.block_id, (Instant::now(), info));
        Ok(want)
    }

    /// Admits a write session for `open.file_id`: the file exists, is not
    /// complete, has this block size and under-storage target, and no other
    /// session on this worker is writing it. Always asks the master.
    pub async fn open_write(
        self: &Arc<Self>,
        link: &MasterLink,
        open: &WriteOpen,
    ) -> Result<WriteSlot> {
        let info = link
            .block_info(eddy_proto::block_id(open.file_id, 0))
            .await?;
        if info.complete {
            return Err(WorkerError::FileAlreadyComplete(format!(
                "file id {} is complete; files are written once (create a new file)",
                open.file_id
            )));
        }
        if open.block_size != info.block_size {
            return Err(WorkerError::Mismatch(format!(
                "file id {} has a block size of {} bytes, the write says {}",
                open.file_id, info.block_size, open.block_size
            )));
        }
        if open.write_type != WriteType::MustCache
            && let Some(t) = &open.target
        {
            same_location(&info, t, open.file_id)?;
        }
        if !self.writing.lock().insert(open.file_id) {
            return Err(WorkerError::AlreadyWriting(format!(
                "file id {} already has a write session open on this worker",
                open.file_id
            )));
        }
        Ok(WriteSlot {
            adm: self.clone(),
            file_id: open.file_id,
        })
    }
}

/// The version of the under-storage file a fill must read: the one the
/// master recorded when the file was persisted or loaded. An answer kept
/// for a moment (above) cannot make a fill read another file that has taken
/// the path since: that file is another version.
fn version(info: &pb::GetBlockInfoResponse) -> eddy_ufs::Version {
    eddy_ufs::Version {
        length: info.file_length,
        digest: info.ufs_fingerprint.clone(),
    }
}

fn fill_matches(info: &pb::GetBlockInfoResponse, req: &ReadRequest) -> Result<()> {
    let id = req.block_id;
    if !info.complete {
        return Err(WorkerError::FileIncomplete(format!(
            "block {id} belongs to file id {} which is still being written",
            info.file_id
        )));
    }
    if req.block_length != info.block_length || req.file_offset != info.file_offset {
        return Err(WorkerError::Mismatch(format!(
            "block {id} is {} bytes at file offset {} (the master says); the request says {} at {}: re-read the file's metadata",
            info.block_length, info.file_offset, req.block_length, req.file_offset
        )));
    }
    match &req.source {
        _ if !info.persisted => Err(WorkerError::NotFound(format!(
            "block {id} is not cached on this worker and its file has no under-storage copy"
        ))),
        None => Err(WorkerError::NotFound(format!(
            "block {id} is not cached on this worker and the request names no under-storage copy"
        ))),
        Some(s) => same_location(info, s, info.file_id),
    }
}

fn same_location(info: &pb::GetBlockInfoResponse, s: &UfsSource, file_id: u64) -> Result<()> {
    let ufs = info.ufs.clone().unwrap_or_default();
    if s.mount_id != ufs.mount_id || s.key != ufs.key {
        return Err(WorkerError::Mismatch(format!(
            "the request names under-storage mount {} key {:?}, but file id {file_id} lives at mount {} key {:?}: re-read the file's metadata",
            s.mount_id, s.key, ufs.mount_id, ufs.key
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use eddy_wire::ReadType;

    fn info() -> pb::GetBlockInfoResponse {
        pb::GetBlockInfoResponse {
            file_id: 7,
            file_length: 150,
            block_size: 100,
            block_length: 50,
            file_offset: 100,
            ufs: Some(pb::UfsLocation {
                mount_id: 1,
                key: "a/b".into(),
            }),
            complete: true,
            persisted: true,
            ufs_fingerprint: "00112233445566778899aabbccddeeff".into(),
        }
    }

    fn req() -> ReadRequest {
        ReadRequest {
            block_id: eddy_proto::block_id(7, 1),
            offset: 0,
            length: 50,
            block_length: 50,
            file_offset: 100,
            read_type: ReadType::Cache,
            source: Some(UfsSource {
                mount_id: 1,
                key: "a/b".into(),
            }),
            token: Vec::new(),
        }
    }

    #[test]
    fn a_fill_must_describe_the_block_the_master_knows() {
        assert!(fill_matches(&info(), &req()).is_ok());
        let code =
            |i: pb::GetBlockInfoResponse, r: ReadRequest| fill_matches(&i, &r).unwrap_err().code();
        use eddy_proto::EddyCode as C;
        let other_key = ReadRequest {
            source: Some(UfsSource {
                mount_id: 1,
                key: "a/c".into(),
            }),
            ..req()
        };
        assert_eq!(code(info(), other_key), C::InvalidArgument);
        let other_mount = ReadRequest {
            source: Some(UfsSource {
                mount_id: 2,
                key: "a/b".into(),
            }),
            ..req()
        };
        assert_eq!(code(info(), other_mount), C::InvalidArgument);
        let longer = ReadRequest {
            block_length: 100,
            ..req()
        };
        assert_eq!(code(info(), longer), C::InvalidArgument);
        let moved = ReadRequest {
            file_offset: 0,
            ..req()
        };
        assert_eq!(code(info(), moved), C::InvalidArgument);
        let writing = pb::GetBlockInfoResponse {
            complete: false,
            ..info()
        };
        assert_eq!(code(writing, req()), C::FileIncomplete);
        let unpersisted = pb::GetBlockInfoResponse {
            persisted: false,
            ..info()
        };
        assert_eq!(code(unpersisted, req()), C::NotFound);
        let no_source = ReadRequest {
            source: None,
            ..req()
        };
        assert_eq!(code(info(), no_source), C::NotFound);
    }
}
