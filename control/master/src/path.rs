//! Eddy paths: absolute, normalised, bounded.

use std::fmt;

use crate::error::MasterError;

/// Longest accepted path, in bytes (as HDFS's and Linux's PATH_MAX).
pub const MAX_PATH_BYTES: usize = 4096;
/// Longest accepted component, in bytes (as NAME_MAX).
pub const MAX_NAME_BYTES: usize = 255;

/// A normalised absolute path: starts with `/`, no empty, `.` or `..`
/// components, no trailing slash (except the root itself).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EddyPath(String);

impl EddyPath {
    pub fn root() -> Self {
        Self("/".to_string())
    }

    /// Parses and normalises raw bytes from a request. `//` collapses, `.` is
    /// dropped, `..` goes up one level and may not climb above the root.
    pub fn parse_bytes(raw: &[u8]) -> Result<Self, MasterError> {
        let s = std::str::from_utf8(raw).map_err(|_| {
            MasterError::InvalidPath(format!(
                "{}: path is not valid UTF-8",
                String::from_utf8_lossy(raw)
            ))
        })?;
        Self::parse(s)
    }

    pub fn parse(s: &str) -> Result<Self, MasterError> {
        let bad = |why: &str| MasterError::InvalidPath(format!("{s:?}: {why}"));
        if s.is_empty() {
            return Err(bad("path is empty"));
        }
        if s.len() > MAX_PATH_BYTES {
            return Err(MasterError::InvalidPath(format!(
                "path of {} bytes exceeds the limit of {MAX_PATH_BYTES}",
                s.len()
            )));
        }
        if !s.starts_with('/') {
            return Err(bad("path must be absolute (start with `/`)"));
        }
        if s.bytes().any(|b| b == 0 || b == b'\n' || b == b'\r') {
            return Err(bad("path contains a NUL or line-break character"));
        }
        let mut parts: Vec<&str> = Vec::new();
        for c in s.split('/') {
            match c {
                "" | "." => {}
                ".." => {
                    if parts.pop().is_none() {
                        return Err(bad("`..` escapes the root"));
                    }
                }
                name => {
                    if name.len() > MAX_NAME_BYTES {
                        return Err(bad(&format!(
                            "component of {} bytes exceeds the limit of {MAX_NAME_BYTES}",
                            name.len()
                        )));
                    }
                    parts.push(name);
                }
            }
        }
        Ok(Self::from_parts(&parts))
    }

    fn from_parts(parts: &[&str]) -> Self {
        if parts.is_empty() {
            return Self::root();
        }
        let mut s = String::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
        for p in parts {
            s.push('/');
            s.push_str(p);
        }
        Self(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_root(&self) -> bool {
        self.0 == "/"
    }

    pub fn components(&self) -> impl DoubleEndedIterator<Item = &str> + Clone {
        self.0.split('/').filter(|c| !c.is_empty())
    }

    pub fn depth(&self) -> usize {
        self.components().count()
    }

    /// Last component; empty for the root.
    pub fn name(&self) -> &str {
        self.components().next_back().unwrap_or("")
    }

    /// The parent path; `None` for the root.
    pub fn parent(&self) -> Option<EddyPath> {
        if self.is_root() {
            return None;
        }
        let idx = self.0.rfind('/').expect("absolute");
        Some(if idx == 0 {
            Self::root()
        } else {
            Self(self.0[..idx].to_string())
        })
    }

    /// `self/name`. `name` must be a valid single component.
    pub fn join(&self, name: &str) -> EddyPath {
        debug_assert!(!name.is_empty() && !name.contains('/'));
        if self.is_root() {
            Self(format!("/{name}"))
        } else {
            Self(format!("{}/{name}", self.0))
        }
    }

    /// True when `self` is `other` or lies below it.
    pub fn starts_with(&self, other: &EddyPath) -> bool {
        other.is_root()
            || self.0 == other.0
            || (self.0.starts_with(&other.0) && self.0.as_bytes()[other.0.len()] == b'/')
    }

    /// Components of `self` below `ancestor` (which must be a prefix).
    pub fn strip_prefix<'a>(&'a self, ancestor: &EddyPath) -> impl Iterator<Item = &'a str> {
        let skip = ancestor.depth();
        self.components().skip(skip)
    }
}

impl fmt::Display for EddyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for EddyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// Validates a single name (as used by rename targets built from parts).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name.len() <= MAX_NAME_BYTES
        && !name
            .bytes()
            .any(|b| b == b'/' || b == 0 || b == b'\n' || b == b'\r')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn normalises() {
        for (raw, want) in [
            ("/", "/"),
            ("//", "/"),
            ("/a//b/", "/a/b"),
            ("/a/./b", "/a/b"),
            ("/a/../b", "/b"),
            ("/a/b/..", "/a"),
        ] {
            assert_eq!(EddyPath::parse(raw).unwrap().as_str(), want, "{raw}");
        }
    }

    #[test]
    fn rejects_bad_input() {
        let long = format!("/{}", "a".repeat(MAX_PATH_BYTES));
        let long_name = format!("/{}", "a".repeat(MAX_NAME_BYTES + 1));
        for raw in ["", "a/b", "/..", "/a/../..", "/a\0b", &long, &long_name] {
            assert!(
                matches!(EddyPath::parse(raw), Err(MasterError::InvalidPath(_))),
                "{raw:?}"
            );
        }
        assert!(matches!(
            EddyPath::parse_bytes(b"/a/\xff\xfe"),
            Err(MasterError::InvalidPath(_))
        ));
    }

    #[test]
    fn parent_name_prefix() {
        let p = EddyPath::parse("/a/b/c").unwrap();
        assert_eq!(p.name(), "c");
        assert_eq!(p.parent().unwrap().as_str(), "/a/b");
        assert_eq!(
            EddyPath::parse("/a").unwrap().parent().unwrap(),
            EddyPath::root()
        );
        assert!(EddyPath::root().parent().is_none());
        let ab = EddyPath::parse("/a/b").unwrap();
        assert!(p.starts_with(&ab));
        assert!(!EddyPath::parse("/a/bc").unwrap().starts_with(&ab));
        assert!(p.starts_with(&EddyPath::root()));
        assert_eq!(p.strip_prefix(&ab).collect::<Vec<_>>(), vec!["c"]);
    }

    fn component() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("".to_string()),
            Just(".".to_string()),
            Just("..".to_string()),
            "[a-zA-Z0-9_ é-]{1,8}",
        ]
    }

    proptest! {
        #[test]
        fn normalisation_is_idempotent_and_clean(parts in prop::collection::vec(component(), 0..12)) {
            let raw = format!("/{}", parts.join("/"));
            if let Ok(p) = EddyPath::parse(&raw) {
                let again = EddyPath::parse(p.as_str()).unwrap();
                prop_assert_eq!(&again, &p);
                prop_assert!(p.as_str().starts_with('/'));
                prop_assert!(p.is_root() || !p.as_str().ends_with('/'));
                for c in p.components() {
                    prop_assert!(valid_name(c));
                }
                // Rebuilding from the parent and name gives the same path.
                if let Some(parent) = p.parent() {
                    prop_assert_eq!(parent.join(p.name()), p.clone());
                    prop_assert!(p.starts_with(&parent));
                }
            } else {
                // Only a `..` that climbs above the root is refused here.
                let mut depth: i64 = 0;
                let mut escaped = false;
                for c in &parts {
                    match c.as_str() {
                        "" | "." => {}
                        ".." => { depth -= 1; if depth < 0 { escaped = true; } }
                        _ => depth += 1,
                    }
                }
                prop_assert!(escaped);
            }
        }
    }
}
