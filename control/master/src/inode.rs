//! Inodes and their durable record layout (documented in docs/METASTORE.md).

use std::collections::BTreeMap;
use std::sync::Arc;

use eddy_proto::pb::TtlAction;

use crate::codec::{Reader, RecordError, put_str};

/// Id of the root directory. Ids are never reused: the next id is durable.
pub const ROOT_ID: u64 = 1;

pub const FLAG_DIR: u8 = 1;
pub const FLAG_COMPLETE: u8 = 1 << 1;
pub const FLAG_PERSISTED: u8 = 1 << 2;
pub const FLAG_PINNED: u8 = 1 << 3;
pub const FLAG_MOUNT_POINT: u8 = 1 << 4;
/// With FLAG_PINNED: the pin lets blocks move down to disk tiers.
pub const FLAG_PIN_DEMOTE: u8 = 1 << 5;
/// Waiting for a worker to persist it (ASYNC_THROUGH, `eddy fs persist`).
pub const FLAG_PERSIST_PENDING: u8 = 1 << 6;
/// An incomplete file whose writer puts its bytes at its staging name in
/// the under-storage (`crate::staging`); cleared when it completes.
pub const FLAG_STAGED: u8 = 1 << 7;

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
    /// Owner and group, interned as a pair: most inodes share a few pairs,
    /// and one thin pointer costs 8 bytes where two strings would cost 32.
    pub owner: Arc<Owner>,
    pub ttl_ms: i64,
    pub ttl_action: TtlAction,
    pub replication_min: u32,
    pub replication_max: u32,
    pub fingerprint: Fingerprint,
    /// When the under-storage was last checked for this entry (ms since epoch;
    /// 0 = not since this master started). Memory only.
    pub synced_ms: i64,
    /// Directories only.
    pub dir: Option<Box<DirState>>,
}

/// The user and group that own an inode.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Owner {
    pub user: Box<str>,
    pub group: Box<str>,
}

impl Owner {
    pub fn new(user: &str, group: &str) -> Self {
        Owner {
            user: user.into(),
            group: group.into(),
        }
    }
}

/// What the under-storage said about a file when it was last seen (size +
/// mtime, an etag, ...), kept as a 16-byte digest: the master only ever
/// compares fingerprints, and a digest is a fixed size inline in the inode
/// instead of a heap string. All zeros: none (not persisted, or a directory).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Fingerprint(pub [u8; 16]);

impl Fingerprint {
    pub const NONE: Fingerprint = Fingerprint([0; 16]);

    /// The digest of an under-storage fingerprint string
    /// ([`eddy_ufs::digest`]: workers compute the same one to check a fill
    /// reads the version recorded here). "" gives [`Self::NONE`].
    pub fn of(s: &str) -> Self {
        Fingerprint(eddy_ufs::digest(s))
    }

    pub fn is_none(&self) -> bool {
        *self == Self::NONE
    }
}

impl std::fmt::Display for Fingerprint {
    /// Hex, or nothing for [`Fingerprint::NONE`].
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if !self.is_none() {
            for b in self.0 {
                write!(f, "{b:02x}")?;
            }
        }
        Ok(())
    }
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

    /// Encodes the durable part of the inode (record format version 2).
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(112 + self.name.len());
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
        for s in [&*self.name, &*self.owner.user, &*self.owner.group] {
            put_str(&mut b, s);
        }
        b.extend_from_slice(&self.fingerprint.0);
        b
    }

    /// Decodes a record written by [`Inode::encode`] (or by version 1, which
    /// stored the fingerprint as a string).
    /// `intern` maps (user, group) to the shared [`Owner`].
    pub fn decode(
        bytes: &[u8],
        intern: &mut impl FnMut(&str, &str) -> Arc<Owner>,
    ) -> Result<Self, RecordError> {
        let mut r = Reader::new(bytes);
        let version = r.u8()?;
        if version != RECORD_VERSION && version != 1 {
            let what = "inode";
            return Err(RecordError::Version { what, version });
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
        let owner = intern(r.str()?, r.str()?);
        let fingerprint = if version == 1 {
            Fingerprint::of(r.str()?)
        } else {
            Fingerprint(r.bytes::<16>()?)
        };
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

const RECORD_VERSION: u8 = 2;

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A file inode with every field set.
    pub(crate) fn sample(id: u64) -> Inode {
        Inode {
            id,
            parent: 7,
            name: "data.parquet".into(),
            flags: FLAG_COMPLETE | FLAG_PERSISTED,
            length: 1 << 33,
            block_size: 64 << 20,
            mtime_ms: 1_700_000_000_000,
            created_ms: 1_600_000_000_000,
            mode: 0o644,
            owner: Arc::new(Owner::new("alice", "staff")),
            ttl_ms: -1,
            ttl_action: TtlAction::Delete,
            replication_min: 1,
            replication_max: 3,
            fingerprint: Fingerprint::of("12:34"),
            synced_ms: 99,
            dir: None,
        }
    }

    #[test]
    fn record_round_trips() {
        let ino = sample(42);
        let back = Inode::decode(&ino.encode(), &mut |u, g| Arc::new(Owner::new(u, g))).unwrap();
        assert_eq!(back.encode(), ino.encode());
        assert_eq!(back.synced_ms, 0, "sync time is not durable");
        assert!(
            Inode::decode(&ino.encode()[..20], &mut |u, g| Arc::new(Owner::new(u, g))).is_err()
        );
    }

    #[test]
    fn version_1_records_still_load() {
        let ino = sample(42);
        let v2 = ino.encode();
        // Version 1: the same fields, then the fingerprint as a string.
        let mut v1 = v2[..v2.len() - 16].to_vec();
        v1[0] = 1;
        crate::codec::put_str(&mut v1, "12:34");
        let back = Inode::decode(&v1, &mut |u, g| Arc::new(Owner::new(u, g))).unwrap();
        assert_eq!(back.encode(), v2);
    }

    #[test]
    fn fingerprints_are_stable_digests() {
        assert!(Fingerprint::of("").is_none());
        assert_eq!(Fingerprint::of("").to_string(), "");
        assert_eq!(Fingerprint::of("10:20"), Fingerprint::of("10:20"));
        assert_ne!(Fingerprint::of("10:20"), Fingerprint::of("10:21"));
        // Fixed value: the digest is durable, so it must never change.
        assert_eq!(
            Fingerprint::of("a").to_string(),
            "64894a4e702b9178af8c1a6f69cb28d2"
        );
    }
}
