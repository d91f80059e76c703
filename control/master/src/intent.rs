//! Intent records: closing the window between an under-storage change and
//! the metastore commit that mirrors it.
//!
//! A rename or delete of a persisted entry changes two systems: the
//! under-storage first, then the metastore. A crash between the two would
//! leave them disagreeing. So before touching the under-storage the master
//! durably records what it is about to do; the metastore batch that applies
//! the change in Eddy also deletes the intent, atomically. An intent found at
//! start therefore names an operation whose Eddy half never committed, and
//! recovery asks the under-storage whether its half happened:
//!
//! - rename `src -> dst`: `src` gone and `dst` present in the store means it
//!   happened, so it is applied in Eddy too (same inode ids, cached blocks
//!   and Eddy-only children kept); otherwise nothing happened.
//! - delete `path`: `path` gone from the store means it happened, so the
//!   subtree is deleted in Eddy too; otherwise nothing happened.
//!
//! mkdir needs no intent: a directory that exists only in the store is
//! loaded on first access like any other. Layout: docs/METASTORE.md.

use crate::codec::{Reader, put_str};
use crate::path::EddyPath;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Intent {
    Rename { src: EddyPath, dst: EddyPath },
    Delete { path: EddyPath },
}

const VERSION: u8 = 1;
const KIND_RENAME: u8 = 1;
const KIND_DELETE: u8 = 2;

impl Intent {
    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![VERSION];
        match self {
            Intent::Rename { src, dst } => {
                b.push(KIND_RENAME);
                put_str(&mut b, src.as_str());
                put_str(&mut b, dst.as_str());
            }
            Intent::Delete { path } => {
                b.push(KIND_DELETE);
                put_str(&mut b, path.as_str());
            }
        }
        b
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        let mut r = Reader::new(bytes);
        let version = r.u8()?;
        if version != VERSION {
            return Err(format!("unknown intent record version {version}"));
        }
        let path = |r: &mut Reader| -> Result<EddyPath, String> {
            EddyPath::parse(r.str()?).map_err(|e| format!("intent record path: {e}"))
        };
        match r.u8()? {
            KIND_RENAME => Ok(Intent::Rename {
                src: path(&mut r)?,
                dst: path(&mut r)?,
            }),
            KIND_DELETE => Ok(Intent::Delete {
                path: path(&mut r)?,
            }),
            k => Err(format!("unknown intent kind {k}")),
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
            },
            Intent::Delete { path: p("/x/y") },
        ] {
            assert_eq!(Intent::decode(&i.encode()).unwrap(), i);
        }
        assert!(Intent::decode(&[]).is_err());
        assert!(Intent::decode(&[9, 1]).is_err());
        assert!(Intent::decode(&[1, 7]).is_err());
        assert!(
            Intent::decode(&[1, 2, 3, 0, b'a', b'b', b'c']).is_err(),
            "relative path"
        );
    }
}
