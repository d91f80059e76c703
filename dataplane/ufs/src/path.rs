//! Relative under-storage keys.

use std::fmt;

/// A relative, `/`-separated key below a mount's root; empty is the root.
/// Components are never empty, `.` or `..` (checked at construction), so a
/// key can never escape its mount.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct UfsPath(String);

impl UfsPath {
    pub fn root() -> Self {
        Self(String::new())
    }

    /// Builds a key from components; `None` if any is empty, `.`, `..`, or has `/` or NUL.
    pub fn from_components<'a>(parts: impl IntoIterator<Item = &'a str>) -> Option<Self> {
        let mut s = String::new();
        for p in parts {
            if p.is_empty() || p == "." || p == ".." || p.contains('/') || p.contains('\0') {
                return None;
            }
            if !s.is_empty() {
                s.push('/');
            }
            s.push_str(p);
        }
        Some(Self(s))
    }

    /// Parses `a/b/c` (no leading or trailing slash).
    pub fn parse(s: &str) -> Option<Self> {
        if s.is_empty() {
            return Some(Self::root());
        }
        Self::from_components(s.split('/'))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    pub fn join(&self, name: &str) -> Option<Self> {
        Self::from_components(self.components().chain(std::iter::once(name)))
    }

    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/').filter(|c| !c.is_empty())
    }

    /// Last component, empty for the root.
    pub fn name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or("")
    }
}

impl fmt::Display for UfsPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_escapes() {
        assert!(UfsPath::parse("a/../b").is_none());
        assert!(UfsPath::parse("a//b").is_none());
        assert!(UfsPath::parse("/a").is_none());
        assert_eq!(UfsPath::parse("a/b").unwrap().name(), "b");
        assert!(UfsPath::parse("").unwrap().is_root());
    }
}
