//! The mount table: which under-storage backs which Eddy path.

use std::collections::BTreeMap;

use crate::codec::{Reader, RecordError, put_str};
use crate::path::EddyPath;

/// Sync interval meaning "never re-check what Eddy already knows".
pub const SYNC_NEVER: i64 = -1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountPoint {
    pub id: u64,
    pub path: EddyPath,
    pub uri: String,
    pub read_only: bool,
    pub options: BTreeMap<String, String>,
    /// Default sync interval (see `SyncPolicy` in master.proto).
    pub sync_interval_ms: i64,
}

impl MountPoint {
    /// Record format v1: u8 version, u64 id, u8 read_only, i64 sync interval,
    /// str uri, u16 option count, then (str key, str value) pairs; every str is
    /// a u16 little-endian length and UTF-8 bytes. The key is the mount path.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![1u8];
        b.extend_from_slice(&self.id.to_le_bytes());
        b.push(self.read_only as u8);
        b.extend_from_slice(&self.sync_interval_ms.to_le_bytes());
        put_str(&mut b, &self.uri);
        b.extend_from_slice(&(self.options.len() as u16).to_le_bytes());
        for (k, v) in &self.options {
            put_str(&mut b, k);
            put_str(&mut b, v);
        }
        b
    }

    pub fn decode(path: &str, b: &[u8]) -> Result<Self, RecordError> {
        let mut r = Reader::new(b);
        let bad = |e: RecordError| RecordError::Mount {
            path: path.to_string(),
            source: Box::new(e),
        };
        if r.u8().map_err(bad)? != 1 {
            return Err(bad(RecordError::MountVersion));
        }
        let id = r.u64().map_err(bad)?;
        let read_only = r.u8().map_err(bad)? != 0;
        let sync_interval_ms = r.u64().map_err(bad)? as i64;
        let uri = r.str().map_err(bad)?.to_string();
        let n = r.u16().map_err(bad)?;
        let mut options = BTreeMap::new();
        for _ in 0..n {
            let k = r.str().map_err(bad)?.to_string();
            let v = r.str().map_err(bad)?.to_string();
            options.insert(k, v);
        }
        Ok(Self {
            id,
            path: EddyPath::parse(path).map_err(|e| RecordError::BadPath(Box::new(e)))?,
            uri,
            read_only,
            options,
            sync_interval_ms,
        })
    }
}

#[derive(Debug, Default, Clone)]
pub struct MountTable {
    by_path: BTreeMap<EddyPath, MountPoint>,
}

impl MountTable {
    pub fn insert(&mut self, m: MountPoint) {
        self.by_path.insert(m.path.clone(), m);
    }

    pub fn remove(&mut self, path: &EddyPath) -> Option<MountPoint> {
        self.by_path.remove(path)
    }

    pub fn get(&self, path: &EddyPath) -> Option<&MountPoint> {
        self.by_path.get(path)
    }

    pub fn is_mount_point(&self, path: &EddyPath) -> bool {
        self.by_path.contains_key(path)
    }

    pub fn iter(&self) -> impl Iterator<Item = &MountPoint> {
        self.by_path.values()
    }

    pub fn len(&self) -> usize {
        self.by_path.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_path.is_empty()
    }

    /// The mount that holds `path`: the deepest mount point at or above it.
    /// The root is always mounted, so this only fails before start-up.
    pub fn resolve(&self, path: &EddyPath) -> &MountPoint {
        let mut p = Some(path.clone());
        while let Some(cur) = p {
            if let Some(m) = self.by_path.get(&cur) {
                return m;
            }
            p = cur.parent();
        }
        panic!("the root mount is always present")
    }

    /// The under-storage key of `path` within its mount.
    pub fn ufs_path(&self, path: &EddyPath) -> (&MountPoint, eddy_ufs::UfsPath) {
        let m = self.resolve(path);
        let key = eddy_ufs::UfsPath::from_components(path.strip_prefix(&m.path))
            .expect("Eddy path components are valid under-storage components");
        (m, key)
    }

    /// Mount points strictly below `path`.
    pub fn below<'a>(&'a self, path: &'a EddyPath) -> impl Iterator<Item = &'a MountPoint> + 'a {
        self.by_path
            .values()
            .filter(move |m| m.path != *path && m.path.starts_with(path))
    }

    pub fn next_id(&self) -> u64 {
        self.by_path
            .values()
            .map(|m| m.id)
            .max()
            .map_or(1, |m| m + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mp(id: u64, path: &str, ro: bool) -> MountPoint {
        MountPoint {
            id,
            path: EddyPath::parse(path).unwrap(),
            uri: format!("file:///tmp/{id}"),
            read_only: ro,
            options: [("k".to_string(), "v".to_string())].into(),
            sync_interval_ms: 5,
        }
    }

    #[test]
    fn resolves_deepest_mount() {
        let mut t = MountTable::default();
        t.insert(mp(1, "/", false));
        t.insert(mp(2, "/data", true));
        t.insert(mp(3, "/data/inner", false));
        let p = |s| EddyPath::parse(s).unwrap();
        assert_eq!(t.resolve(&p("/x")).id, 1);
        assert_eq!(t.resolve(&p("/data")).id, 2);
        assert_eq!(t.resolve(&p("/data/a/b")).id, 2);
        assert_eq!(t.resolve(&p("/data/inner/z")).id, 3);
        assert_eq!(t.resolve(&p("/datax")).id, 1);
        let (_, key) = t.ufs_path(&p("/data/a/b"));
        assert_eq!(key.as_str(), "a/b");
        assert_eq!(t.below(&p("/data")).count(), 1);
        assert_eq!(t.below(&p("/")).count(), 2);
    }

    #[test]
    fn record_round_trips() {
        let m = mp(9, "/s3", true);
        assert_eq!(MountPoint::decode("/s3", &m.encode()).unwrap(), m);
        assert!(MountPoint::decode("/s3", &m.encode()[..5]).is_err());
    }
}
