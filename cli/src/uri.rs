//! `eddy://HOST[:PORT]/PATH` arguments, split into the master and the path.
//!
//! Kept free of the rest of the CLI so the fuzz targets (ci/fuzz) can
//! include this file as it is.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

/// Splits `eddy://HOST[:PORT]/PATH` into the master it names (the default
/// port when none is given; none for `eddy:///PATH`) and the path. Other
/// arguments are paths as they are.
pub fn split_uri(p: &OsStr) -> (Option<String>, Vec<u8>) {
    let b = p.as_bytes();
    let Some(rest) = b.strip_prefix(b"eddy://") else {
        return (None, b.to_vec());
    };
    let (authority, path) = match rest.iter().position(|&c| c == b'/') {
        Some(i) => (&rest[..i], rest[i..].to_vec()),
        None => (rest, b"/".to_vec()),
    };
    let master = match String::from_utf8_lossy(authority).into_owned() {
        a if a.is_empty() => None,
        a if a.contains(':') => Some(a),
        host => Some(format!("{host}:{}", eddy_proto::DEFAULT_MASTER_PORT)),
    };
    (master, path)
}

#[cfg(test)]
mod tests {
    use super::split_uri;
    use std::ffi::OsStr;

    #[test]
    fn uris_and_paths() {
        let s = |a: &str| split_uri(OsStr::new(a));
        assert_eq!(s("/a/b"), (None, b"/a/b".to_vec()));
        assert_eq!(s("eddy://h:1/a/b"), (Some("h:1".into()), b"/a/b".to_vec()));
        assert_eq!(s("eddy://h"), (Some("h:19998".into()), b"/".to_vec()));
        assert_eq!(s("eddy:///x"), (None, b"/x".to_vec()));
    }
}
