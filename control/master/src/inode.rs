//! Inodes and their durable record layout (documented in docs/METASTORE.md).

use std::collections::BTreeMap;
use std::sync::Arc;

use eddy_proto::pb::TtlAction;

use crate::codec::{Reader, put_str};

/// Id of the root directory. Ids are never reused: the next id is durable.
pub const ROOT_ID: u64 = 1;

pub const FLAG_DIR: u8 = 1;
pub const FLAG_COMPLETE: u8 = 1 << 1;
pub const FLAG_PERSISTED: u8 = 1 << 2;
pub const FLAG_PINNED: u8 = 1 << 3;
pub const FLAG_MOUNT_POINT: u8 = 1 << 4;

/// One file or directory, as held in the master's memory.
#[derive(Debug, Clone)]
pub struct Inode {
    pub id: u64,
    pub parent: u64,
    /// Shared with the parent's `children` key.
    pub name: Arc<str>,
    pub flags: u8,
    pub length: u64,
    pub block_size: u64,
    pub mtime_ms: i64,
    pub created_ms: i64,
    pub mode: u32,
    pub owner: Arc<str>,
    pub group: Arc<str>,
    pub ttl_ms: i64,
    pub ttl_action: TtlAction,
    pub replication_min: u32,
    pub replication_max: u32,
    pub fingerprint: Box<str>,
    /// When the under-storage was last checked for this entry (ms since epoch;
    /// 0 = not since this master started). Memory only.
    pub synced_ms: i64,
    /// Directories only.
    pub dir: Option<Box<DirState>>,
}

/// What only a directory has.
#[derive(Debug, Clone, Default)]
pub struct DirState {
    pub children: BTreeMap<Arc<str>, u64>,
    /// When the children were last listed from the under-storage (0 = never). Memory only.
    pub listed_ms: i64,
}

impl Inode {
    pub fn is_dir(&self) -> bool {
        self.flags & FLAG_DIR != 0
    }
    pub fn flag(&self, f: u8) -> bool {
        self.flags & f != 0
    }
    pub fn set_flag(&mut self, f: u8, on: bool) {
        if on {
            self.flags |= f;
        } else {
            self.flags &= !f;
        }
    }
    pub fn children(&self) -> Option<&BTreeMap<Arc<str>, u64>> {
        self.dir.as_ref().map(|d| &d.children)
    }
    pub fn block_count(&self) -> u64 {
        if self.is_dir() || self.block_size == 0 {
            0
        } else {
            self.length.div_ceil(self.block_size)
        }
    }
    /// Length of block `index` of this (complete) file.
    pub fn block_length(&self, index: u64) -> u64 {
        let start = index * self.block_size;
        self.length.saturating_sub(start).min(self.block_size)
    }

    /// Encodes the durable part of the inode (record format version 1).
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(96 + self.name.len() + self.fingerprint.len());
        b.push(RECORD_VERSION);
        b.extend_from_slice(&self.id.to_le_bytes());
        b.extend_from_slice(&self.parent.to_le_bytes());
        b.push(self.flags);
        b.extend_from_slice(&self.length.to_le_bytes());
        b.extend_from_slice(&self.block_size.to_le_bytes());
        b.extend_from_slice(&self.mtime_ms.to_le_bytes());
        b.extend_from_slice(&self.created_ms.to_le_bytes());
        b.extend_from_slice(&self.mode.to_le_bytes());
        b.extend_from_slice(&self.ttl_ms.to_le_bytes());
        b.push(self.ttl_action as i32 as u8);
        b.extend_from_slice(&self.replication_min.to_le_bytes());
        b.extend_from_slice(&self.replication_max.to_le_bytes());
        for s in [&*self.name, &*self.owner, &*self.group, &*self.fingerprint] {
            put_str(&mut b, s);
        }
        b
    }

    /// Decodes a record written by [`Inode::encode`].
    pub fn decode(bytes: &[u8], intern: &mut impl FnMut(&str) -> Arc<str>) -> Result<Self, String> {
        let mut r = Reader::new(bytes);
        let version = r.u8()?;
        if version != RECORD_VERSION {
            return Err(format!("unknown inode record version {version}"));
        }
        let id = r.u64()?;
        let parent = r.u64()?;
        let flags = r.u8()?;
        let length = r.u64()?;
        let block_size = r.u64()?;
        let mtime_ms = r.u64()? as i64;
        let created_ms = r.u64()? as i64;
        let mode = r.u32()?;
        let ttl_ms = r.u64()? as i64;
        let ttl_action = TtlAction::try_from(r.u8()? as i32).unwrap_or(TtlAction::Unspecified);
        let replication_min = r.u32()?;
        let replication_max = r.u32()?;
        let name: Arc<str> = Arc::from(r.str()?);
        let owner = intern(r.str()?);
        let group = intern(r.str()?);
        let fingerprint = r.str()?.into();
        let dir = (flags & FLAG_DIR != 0).then(Default::default);
        Ok(Inode {
            id,
            parent,
            name,
            flags,
            length,
            block_size,
            mtime_ms,
            created_ms,
            mode,
            owner,
            group,
            ttl_ms,
            ttl_action,
            replication_min,
            replication_max,
            fingerprint,
            synced_ms: 0,
            dir,
        })
    }
}

const RECORD_VERSION: u8 = 1;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips() {
        let ino = Inode {
            id: 42,
            parent: 7,
            name: "data.parquet".into(),
            flags: FLAG_COMPLETE | FLAG_PERSISTED,
            length: 1 << 33,
            block_size: 64 << 20,
            mtime_ms: 1_700_000_000_000,
            created_ms: 1_600_000_000_000,
            mode: 0o644,
            owner: "alice".into(),
            group: "staff".into(),
            ttl_ms: -1,
            ttl_action: TtlAction::Delete,
            replication_min: 1,
            replication_max: 3,
            fingerprint: "12:34".into(),
            synced_ms: 99,
            dir: None,
        };
        let back = Inode::decode(&ino.encode(), &mut |s| Arc::from(s)).unwrap();
        assert_eq!(back.encode(), ino.encode());
        assert_eq!(back.synced_ms, 0, "sync time is not durable");
        assert!(Inode::decode(&ino.encode()[..20], &mut |s| Arc::from(s)).is_err());
    }
}
