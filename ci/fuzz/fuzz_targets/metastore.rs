//! The metastore's records as the master reads them back at start: inode,
//! mount and intent records (docs/METASTORE.md), each decoded on its own and
//! then together as `Namespace::load` rebuilds the namespace from them.
//!
//! Input: records separated by the 4-byte marker `|R|\n`; a record's first
//! byte says what it is (0: inode, 1: mount, whose path runs to the first
//! NUL, 2: intent). Properties: nothing panics, a bad record is an error,
//! and every decoded record encodes to bytes that decode to the same value.
#![no_main]

use std::sync::Arc;

use eddy_master::inode::{Inode, Owner};
use eddy_master::intent::Intent;
use eddy_master::metastore::Loaded;
use eddy_master::mount::MountPoint;
use eddy_master::namespace::Namespace;
use libfuzzer_sys::fuzz_target;

const SEP: &[u8] = b"|R|\n";

fuzz_target!(|data: &[u8]| {
    let mut loaded = Loaded {
        inodes: Vec::new(),
        mounts: Vec::new(),
        next_id: 0,
        intents: Vec::new(),
    };
    for rec in split(data) {
        let Some((&what, rec)) = rec.split_first() else {
            continue;
        };
        match what % 3 {
            0 => {
                inode(rec);
                loaded.inodes.push(rec.to_vec());
            }
            1 => {
                let (path, rec) = match rec.iter().position(|&b| b == 0) {
                    Some(i) => (&rec[..i], &rec[i + 1..]),
                    None => (rec, &[][..]),
                };
                let path = String::from_utf8_lossy(path).into_owned();
                mount(&path, rec);
                loaded.mounts.push((path, rec.to_vec()));
            }
            _ => {
                intent(rec);
                loaded
                    .intents
                    .push((loaded.intents.len() as u64, rec.to_vec()));
            }
        }
    }
    if let Some(first) = data.first() {
        loaded.next_id = u64::from(*first) << 56;
    }
    let _ = Namespace::load(loaded, 64 << 20);
});

fn split(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(data);
    std::iter::from_fn(move || {
        let r = rest?;
        match r.windows(SEP.len()).position(|w| w == SEP) {
            Some(i) => {
                rest = Some(&r[i + SEP.len()..]);
                Some(&r[..i])
            }
            None => {
                rest = None;
                Some(r)
            }
        }
    })
}

fn owner(u: &str, g: &str) -> Arc<Owner> {
    Arc::new(Owner::new(u, g))
}

fn inode(rec: &[u8]) {
    if let Ok(ino) = Inode::decode(rec, &mut owner) {
        let bytes = ino.encode();
        let back = Inode::decode(&bytes, &mut owner).expect("an encoded inode decodes");
        assert_eq!(back.encode(), bytes);
        assert_eq!(back.is_dir(), back.dir.is_some());
        let _ = ino.block_count();
    }
}

fn mount(path: &str, rec: &[u8]) {
    if let Ok(m) = MountPoint::decode(path, rec) {
        let back = MountPoint::decode(m.path.as_str(), &m.encode()).expect("decodes");
        assert_eq!(back, m);
    }
}

fn intent(rec: &[u8]) {
    if let Ok(i) = Intent::decode(rec) {
        assert_eq!(Intent::decode(&i.encode()).unwrap(), i);
    }
}
