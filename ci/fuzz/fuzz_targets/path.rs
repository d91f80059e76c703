//! Path parsing: the bytes of a path in a request, as the master parses them
//! (`EddyPath::parse_bytes`), and a command-line argument as the CLI turns
//! `eddy://host:port/path` into a path first; and under-storage keys
//! (`UfsPath::parse`, the key below a mount that a path maps to).
//!
//! Properties: nothing panics; a parsed path is normalised (absolute, no
//! empty, `.` or `..` component, no trailing slash, within the limits), so
//! parsing it again gives it back, and parent, name and join agree.
#![no_main]

#[path = "../../../cli/src/uri.rs"]
mod uri;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use eddy_master::path::{EddyPath, MAX_NAME_BYTES, MAX_PATH_BYTES, valid_name};
use eddy_ufs::UfsPath;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    check(data);
    // `eddy://HOST[:PORT]/PATH`: the master it names, and the path.
    let (master, path) = uri::split_uri(OsStr::from_bytes(data));
    if let Some(m) = master {
        assert!(!m.is_empty() && !m.contains('/'), "{m:?}");
    }
    check(&path);
    if let Ok(s) = std::str::from_utf8(data) {
        ufs_key(s);
    }
});

fn ufs_key(s: &str) {
    let Some(k) = UfsPath::parse(s) else {
        return;
    };
    assert_eq!(k.as_str(), s, "a key is taken as it is or refused");
    assert_eq!(UfsPath::from_components(k.components()).unwrap(), k);
    assert_eq!(k.is_root(), k.components().next().is_none());
    if !k.is_root() {
        assert_eq!(k.components().last().unwrap(), k.name());
    }
}

fn check(raw: &[u8]) {
    let Ok(p) = EddyPath::parse_bytes(raw) else {
        return;
    };
    let s = p.as_str();
    assert!(s.starts_with('/') && s.len() <= MAX_PATH_BYTES, "{s:?}");
    assert_eq!(EddyPath::parse(s).unwrap(), p, "parsing is idempotent");
    assert_eq!(p.is_root(), s == "/");
    assert_eq!(p.depth(), p.components().count());
    for c in p.components() {
        assert!(valid_name(c) && c.len() <= MAX_NAME_BYTES, "{c:?} in {s:?}");
    }
    match p.parent() {
        None => assert!(p.is_root()),
        Some(parent) => {
            assert!(p.starts_with(&parent) && !parent.starts_with(&p));
            assert_eq!(parent.join(p.name()), p);
            assert_eq!(parent.depth() + 1, p.depth());
            assert_eq!(p.strip_prefix(&parent).collect::<Vec<_>>(), [p.name()]);
        }
    }
    assert!(p.starts_with(&EddyPath::root()));
}
