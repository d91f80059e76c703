//! Credentials: what proves a user or a worker to the master.
//!
//! Text form: `eddy1.` then base64url (no padding) of
//! `kind u8 | key_id u32 | issued_ms u64 | expires_ms u64 | name_len u8 |
//! name | mac[32]`, big-endian, where `mac` is HMAC-SHA256 with key
//! `key_id` of the master's key file over `"eddy-credential-v1" | payload`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::{Cursor, Keyring, TokenError, check_expiry, labelled, put_name, valid_name};

/// The text every credential starts with (a version: a new layout gets a
/// new prefix).
pub const TOKEN_PREFIX: &str = "eddy1.";

/// The longest credential text accepted; longer input is refused unread.
pub const TOKEN_MAX: usize = 512;

const LABEL: &[u8] = b"eddy-credential-v1";

/// Who a credential proves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Principal {
    /// A user: namespace permissions apply to `name`.
    User,
    /// A worker: may register and report blocks; `name` is for logs.
    Worker,
}

impl Principal {
    fn byte(self) -> u8 {
        match self {
            Principal::User => 1,
            Principal::Worker => 2,
        }
    }
}

/// A verified (or about to be signed) credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub principal: Principal,
    pub name: String,
    pub issued_ms: u64,
    pub expires_ms: u64,
    /// The key that signed it.
    pub key_id: u32,
}

impl Credential {
    /// Signs a credential for `name` valid from `now_ms` for `ttl_ms`.
    /// `name` must pass [`super::valid_name`].
    pub fn sign(
        keys: &Keyring,
        principal: Principal,
        name: &str,
        now_ms: u64,
        ttl_ms: u64,
    ) -> Result<String, TokenError> {
        if !valid_name(name) {
            return Err(TokenError::Malformed("bad name"));
        }
        let mut payload = Vec::with_capacity(32 + name.len());
        payload.push(principal.byte());
        payload.extend_from_slice(&keys.signing_id().to_be_bytes());
        payload.extend_from_slice(&now_ms.to_be_bytes());
        payload.extend_from_slice(&now_ms.saturating_add(ttl_ms).to_be_bytes());
        put_name(&mut payload, name);
        let (_, mac) = keys.sign(&labelled(LABEL, &payload));
        payload.extend_from_slice(&mac);
        Ok(format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(payload)))
    }

    /// Parses `text` and checks its signature and expiry.
    pub fn verify(keys: &Keyring, text: &str, now_ms: u64) -> Result<Credential, TokenError> {
        let c = Self::parse_unverified(text)?;
        let raw = URL_SAFE_NO_PAD
            .decode(&text.trim()[TOKEN_PREFIX.len()..])
            .map_err(|_| TokenError::Malformed("not base64url"))?;
        let (payload, mac) = raw.split_at(raw.len() - 32);
        keys.verify(c.key_id, &labelled(LABEL, payload), mac)?;
        check_expiry(c.expires_ms, now_ms)?;
        Ok(c)
    }

    /// What a credential says, signature not checked (for `eddy token
    /// show` and for error messages).
    pub fn parse_unverified(text: &str) -> Result<Credential, TokenError> {
        let text = text.trim();
        if text.len() > TOKEN_MAX {
            return Err(TokenError::Malformed("too long"));
        }
        let Some(body) = text.strip_prefix(TOKEN_PREFIX) else {
            return Err(TokenError::Malformed("it does not start with `eddy1.`"));
        };
        let raw = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| TokenError::Malformed("not base64url"))?;
        let mut c = Cursor(&raw);
        let principal = match c.u8()? {
            1 => Principal::User,
            2 => Principal::Worker,
            _ => return Err(TokenError::Malformed("unknown principal kind")),
        };
        let key_id = c.u32()?;
        let issued_ms = c.u64()?;
        let expires_ms = c.u64()?;
        let name = c.name()?;
        c.take(32)?;
        if !c.0.is_empty() {
            return Err(TokenError::Malformed("trailing bytes"));
        }
        Ok(Credential {
            principal,
            name,
            issued_ms,
            expires_ms,
            key_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_signed_credential_verifies_until_it_expires() {
        let k = Keyring::generate(1);
        let t = Credential::sign(&k, Principal::User, "alice", 1_000, 60_000).unwrap();
        assert!(t.starts_with(TOKEN_PREFIX) && t.len() < TOKEN_MAX, "{t}");
        let c = Credential::verify(&k, &t, 2_000).unwrap();
        assert_eq!(
            (c.principal, c.name.as_str(), c.expires_ms),
            (Principal::User, "alice", 61_000)
        );
        assert_eq!(
            Credential::verify(&k, &t, 71_000),
            Err(TokenError::Expired { ago_s: 10 })
        );
    }

    #[test]
    fn forged_and_foreign_credentials_are_refused() {
        let k = Keyring::generate(1);
        let other = Keyring::generate(1);
        let t = Credential::sign(&other, Principal::Worker, "w", 0, 10_000).unwrap();
        assert_eq!(Credential::verify(&k, &t, 1), Err(TokenError::BadSignature));
        let t = Credential::sign(&Keyring::generate(9), Principal::User, "u", 0, 10).unwrap();
        assert_eq!(
            Credential::verify(&k, &t, 1),
            Err(TokenError::UnknownKey(9))
        );
        // Flip the principal byte of a valid token: a user cannot become a worker.
        let t = Credential::sign(&k, Principal::User, "u", 0, 10_000).unwrap();
        let mut raw = URL_SAFE_NO_PAD.decode(&t[TOKEN_PREFIX.len()..]).unwrap();
        raw[0] = 2;
        let forged = format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(raw));
        assert_eq!(
            Credential::verify(&k, &forged, 1),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn garbage_is_malformed() {
        let k = Keyring::generate(1);
        for t in ["", "eddy1.", "eddy1.!!", "Bearer x", &"eddy1.A".repeat(200)] {
            assert!(
                matches!(Credential::verify(&k, t, 0), Err(TokenError::Malformed(_))),
                "{t}"
            );
        }
        assert!(Credential::sign(&k, Principal::User, "", 0, 1).is_err());
        assert!(Credential::sign(&k, Principal::User, "a:b", 0, 1).is_err());
    }

    /// One text per credential: changing any character of the text,
    /// the unused low bits of the last one included, is refused.
    #[test]
    fn every_other_text_is_refused() {
        let k = Keyring::generate(1);
        for name in ["a", "bo", "bob", "carol"] {
            let t = Credential::sign(&k, Principal::User, name, 0, 1 << 40).unwrap();
            let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
            for i in TOKEN_PREFIX.len()..t.len() {
                for &c in alphabet {
                    if c == t.as_bytes()[i] {
                        continue;
                    }
                    let mut b = t.clone().into_bytes();
                    b[i] = c;
                    let forged = String::from_utf8(b).unwrap();
                    assert!(Credential::verify(&k, &forged, 1).is_err(), "{forged}");
                }
            }
        }
    }

    proptest! {
        #[test]
        fn any_text_is_refused_without_panicking(s in ".{0,600}") {
            let k = Keyring::generate(1);
            prop_assert!(Credential::verify(&k, &s, 0).is_err());
        }

        #[test]
        fn any_tampered_byte_is_refused(i in 0usize..300, x in 1u8..=255) {
            let k = Keyring::generate(1);
            let t = Credential::sign(&k, Principal::User, "bob", 0, 1 << 40).unwrap();
            let mut raw = URL_SAFE_NO_PAD.decode(&t[TOKEN_PREFIX.len()..]).unwrap();
            let i = i % raw.len();
            raw[i] ^= x;
            let forged = format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(raw));
            prop_assert!(Credential::verify(&k, &forged, 1).is_err());
        }
    }
}
