//! Intent records: closing the window between an under-storage change and
//! the metastore commit that mirrors it.
//!
//! A rename, delete or completion of a persisted entry changes two systems:
//! the under-storage first, then the metastore. A crash between the two
//! would leave them disagreeing. So before touching the under-storage the
//! master durably records what it is about to do, naming the inode it acts
//! on; the metastore batch that applies the change in Eddy also deletes the
//! intent, atomically, and an operation that fails deletes its intent too.
//! An intent found at start therefore names an operation whose Eddy half
//! never committed, and recovery asks the under-storage whether its half
//! happened — but only while the path still names the intent's inode:
//! recovery never acts on a different inode than the one an intent named.
//!
//! - rename `src -> dst` of inode `ino`: `src` gone and `dst` present in the
//!   store means it happened, so it is applied in Eddy too (same inode ids,
//!   cached blocks and Eddy-only children kept); otherwise nothing happened.
//! - delete `path` of inode `ino`: `path` gone from the store means it
//!   happened, so the subtree is deleted in Eddy too; otherwise nothing
//!   happened.
//! - place: the under-storage temporary of file `ino` (written by a
//!   CACHE_THROUGH writer or a persist job, see `crate::staging`) was being
//!   moved to `path` when the file completes or is persisted. The file was
//!   not marked complete (or persisted), so the move is undone: the object
//!   goes back to its temporary name, where the writer's retry or the next
//!   persist attempt finds it, and nothing at `path` can surface as a file.
//!
//! mkdir needs no intent: a directory that exists only in the store is
//! loaded on first access like any other. Layout: docs/METASTORE.md.

use crate::codec::{Reader, RecordError, put_str};
use crate::path::EddyPath;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Intent {
    Rename {
        src: EddyPath,
        dst: EddyPath,
        ino: u64,
    },
    Delete {
        path: EddyPath,
        ino: u64,
    },
    Place {
        path: EddyPath,
        ino: u64,
    },
}

/// Version 1 records (no inode id) are still read; their `ino` is 0, which
/// recovery treats as "whatever the path names", as before.
const VERSION: u8 = 2;
const KIND_RENAME: u8 = 1;
const KIND_DELETE: u8 = 2;
const KIND_PLACE: u8 = 3;

impl Intent {
    /// The path whose inode recovery checks, and the inode it must be.
    pub fn subject(&self) -> (&EddyPath, u64) {
        match self {
            Intent::Rename { src, ino, .. } => (src, *ino),
            Intent::Delete { path, ino } | Intent::Place { path, ino } => (path, *ino),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![VERSION];
        match self {
            Intent::Rename { src, dst, ino } => {
                b.push(KIND_RENAME);
                put_str(&mut b, src.as_str());
                put_str(&mut b, dst.as_str());
                b.extend_from_slice(&ino.to_le_bytes());
            }
            Intent::Delete { path, ino } => {
                b.push(KIND_DELETE);
                put_str(&mut b, path.as_str());
                b.extend_from_slice(&ino.to_le_bytes());
            }
            Intent::Place { path, ino } => {
                b.push(KIND_PLACE);
                put_str(&mut b, path.as_str());
                b.extend_from_slice(&ino.to_le_bytes());
            }
        }
        b
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, RecordError> {
        let mut r = Reader::new(bytes);
        let version = r.u8()?;
        let what = "intent";
        if version != 1 && version != VERSION {
            return Err(RecordError::Version { what, version });
        }
        let path = |r: &mut Reader| -> Result<EddyPath, RecordError> {
            EddyPath::parse(r.str()?).map_err(|e| RecordError::Path {
                what: "intent record",
                source: Box::new(e),
            })
        };
        let ino = |r: &mut Reader| -> Result<u64, RecordError> {
            if version == 1 { Ok(0) } else { r.u64() }
        };
        match r.u8()? {
            KIND_RENAME => Ok(Intent::Rename {
                src: path(&mut r)?,
                dst: path(&mut r)?,
                ino: ino(&mut r)?,
            }),
            KIND_DELETE => Ok(Intent::Delete {
                path: path(&mut r)?,
                ino: ino(&mut r)?,
            }),
            KIND_PLACE if version == VERSION => Ok(Intent::Place {
                path: path(&mut r)?,
                ino: ino(&mut r)?,
            }),
            value => Err(RecordError::Unknown {
                what: "intent kind",
                value,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intents_round_trip_and_bad_records_are_errors() {
        let p = |s: &str| EddyPath::parse(s).unwrap();
        for i in [
            Intent::Rename {
                src: p("/a/b"),
                dst: p("/c"),
                ino: 7,
            },
            Intent::Delete {
                path: p("/x/y"),
                ino: 9,
            },
            Intent::Place {
                path: p("/x/z"),
                ino: 1 << 40,
            },
        ] {
            assert_eq!(Intent::decode(&i.encode()).unwrap(), i);
        }
        assert!(Intent::decode(&[]).is_err());
        assert!(Intent::decode(&[9, 1]).is_err());
        assert!(Intent::decode(&[2, 7]).is_err());
        assert!(
            Intent::decode(&[1, 2, 3, 0, b'a', b'b', b'c']).is_err(),
            "relative path"
        );
        assert!(
            Intent::decode(&[2, 2, 2, 0, b'/', b'x', 1]).is_err(),
            "short id"
        );
    }

    #[test]
    fn version_1_records_still_read_with_no_inode() {
        // Version 1 delete of "/x": no inode id.
        let v1 = [1, 2, 2, 0, b'/', b'x'];
        assert_eq!(
            Intent::decode(&v1).unwrap(),
            Intent::Delete {
                path: EddyPath::parse("/x").unwrap(),
                ino: 0
            }
        );
    }
}
