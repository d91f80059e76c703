//! Versions of under-storage files: which copy of a file some bytes belong
//! to, so a reader never takes another file's bytes for its own.
//!
//! A fingerprint ([`crate::UfsStatus::fingerprint`]) changes whenever a
//! file's content may have changed (size + mtime, or an etag). Eddy keeps
//! only its 16-byte digest ([`digest`]); a reader that wants the version it
//! recorded passes the length and digest ([`Version`]) and gets
//! [`UfsError::Changed`] if what is at the path now is another version.

use crate::{UfsError, UfsPath, UfsStatus};

/// The digest of a fingerprint string (FNV-1a, 128 bits: stable across
/// builds, unlike std's hasher). "" (no fingerprint) gives all zeros; a real
/// digest is never all zeros.
pub fn digest(fingerprint: &str) -> [u8; 16] {
    if fingerprint.is_empty() {
        return [0; 16];
    }
    const OFFSET: u128 = 0x6c62272e07bb014262b821756295c58d;
    const PRIME: u128 = 0x0000000001000000000000000000013b;
    let mut h = OFFSET;
    for b in fingerprint.bytes() {
        h ^= u128::from(b);
        h = h.wrapping_mul(PRIME);
    }
    h.max(1).to_le_bytes()
}

/// [`digest`] as 32 lower-case hex digits ("" for no fingerprint), the form
/// it travels in.
pub fn digest_hex(fingerprint: &str) -> String {
    let d = digest(fingerprint);
    if d == [0; 16] {
        return String::new();
    }
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// The version of a file a reader wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    /// The file's length in bytes.
    pub length: u64,
    /// [`digest_hex`] of its fingerprint; empty accepts any fingerprint
    /// (then only the length is checked).
    pub digest: String,
}

impl Version {
    /// `Ok` if `st` (what is at `path` now) is this version.
    pub fn check(&self, path: &UfsPath, st: &UfsStatus) -> Result<(), UfsError> {
        if st.is_dir {
            return Err(UfsError::IsADirectory(path.to_string()));
        }
        if st.length != self.length {
            return Err(UfsError::Changed {
                path: path.to_string(),
                reason: format!("it is {} bytes, {} were recorded", st.length, self.length),
            });
        }
        if !self.digest.is_empty() && digest_hex(&st.fingerprint) != self.digest {
            return Err(UfsError::Changed {
                path: path.to_string(),
                reason: "its fingerprint is not the one recorded".into(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(len: u64, fp: &str) -> UfsStatus {
        UfsStatus {
            name: "f".into(),
            is_dir: false,
            length: len,
            mtime_ms: 0,
            fingerprint: fp.into(),
        }
    }

    #[test]
    fn a_version_matches_only_its_own_length_and_fingerprint() {
        let p = UfsPath::parse("a/f").unwrap();
        let v = Version {
            length: 5,
            digest: digest_hex("5:123"),
        };
        assert!(v.check(&p, &st(5, "5:123")).is_ok());
        assert!(matches!(
            v.check(&p, &st(5, "5:124")),
            Err(UfsError::Changed { .. })
        ));
        assert!(matches!(
            v.check(&p, &st(6, "5:123")),
            Err(UfsError::Changed { .. })
        ));
        let any = Version {
            length: 5,
            digest: String::new(),
        };
        assert!(any.check(&p, &st(5, "whatever")).is_ok());
        assert_eq!(digest_hex(""), "");
        assert_eq!(digest_hex("x").len(), 32);
    }
}
