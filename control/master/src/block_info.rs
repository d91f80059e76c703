//! `GetBlockInfo`: what the master knows about one block, so a worker can
//! check a client's request (file, length, under-storage location, state)
//! before it fills, caches or commits anything for that block.

use eddy_proto::pb;

use crate::error::{MasterError, Result};
use crate::inode::{FLAG_COMPLETE, FLAG_PERSISTED};
use crate::service::MasterState;

impl MasterState {
    pub fn block_info(&self, block_id: u64) -> Result<pb::GetBlockInfoResponse> {
        let file_id = eddy_proto::file_id_of_block(block_id);
        let index = eddy_proto::block_index(block_id);
        let ns = self.ns.read();
        let ino = ns.get(file_id).filter(|i| !i.is_dir()).ok_or_else(|| {
            MasterError::NotFound(format!(
                "block {block_id} belongs to file id {file_id}, which does not exist"
            ))
        })?;
        let path = ns.path_of(file_id).ok_or_else(|| {
            MasterError::NotFound(format!("file id {file_id} is not in the namespace"))
        })?;
        let (mount, key) = ns.mounts.ufs_path(&path);
        // A file being written through puts its bytes at its staging name.
        let key = if ns.is_staged(file_id) {
            crate::staging::key(file_id)
        } else {
            key
        };
        let complete = ino.flag(FLAG_COMPLETE);
        let in_file = complete && index < ino.block_count();
        Ok(pb::GetBlockInfoResponse {
            file_id,
            file_length: ino.length,
            block_size: ino.block_size,
            block_length: if in_file { ino.block_length(index) } else { 0 },
            file_offset: if in_file { index * ino.block_size } else { 0 },
            ufs: Some(pb::UfsLocation {
                mount_id: mount.id,
                key: key.as_str().to_string(),
            }),
            complete,
            persisted: ino.flag(FLAG_PERSISTED),
            ufs_fingerprint: ino.fingerprint.to_string(),
        })
    }
}
