//! Block access tokens: a file's blocks may be read (or written) by one
//! user until an expiry, as the master says, checked by workers without
//! asking it (HDFS's block tokens, per file rather than per block: one
//! token covers every block of the file, whose id names the file).
//!
//! Bytes: `version u8 (1) | key_id u32 | file_id u64 | ops u8 |
//! expires_ms u64 | user_len u8 | user | mac[32]`, big-endian, where `mac`
//! is HMAC-SHA256 over `"eddy-block-v1" | everything before it` with block
//! key `key_id` (keys derived from the master's; see `Keyring::derive`).

use super::{Cursor, Keyring, TokenError, check_expiry, labelled, put_name, valid_name};

/// The longest block token accepted (a 255-byte user name); longer input
/// is refused unread.
pub const BLOCK_TOKEN_MAX: usize = 1 + 4 + 8 + 1 + 8 + 1 + 255 + 32;

const VERSION: u8 = 1;
const LABEL: &[u8] = b"eddy-block-v1";

/// Operations a block token allows, as bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockOps(u8);

impl BlockOps {
    /// Read cached bytes, load, map through a short-circuit lease.
    pub const READ: BlockOps = BlockOps(1);
    /// Open a write session, write blocks.
    pub const WRITE: BlockOps = BlockOps(2);
    pub const READ_WRITE: BlockOps = BlockOps(3);

    /// Whether every operation of `other` is allowed.
    pub fn contains(self, other: BlockOps) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn bits(self) -> u8 {
        self.0
    }
}

/// What a block token grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockGrant {
    pub file_id: u64,
    pub ops: BlockOps,
    pub user: String,
    pub expires_ms: u64,
}

impl BlockGrant {
    /// The token bytes of this grant, signed with `keys`' signing key.
    pub fn sign(&self, keys: &Keyring) -> Result<Vec<u8>, TokenError> {
        if !valid_name(&self.user) {
            return Err(TokenError::Malformed("bad name"));
        }
        let mut out = Vec::with_capacity(BLOCK_TOKEN_MAX);
        out.push(VERSION);
        out.extend_from_slice(&keys.signing_id().to_be_bytes());
        out.extend_from_slice(&self.file_id.to_be_bytes());
        out.push(self.ops.0);
        out.extend_from_slice(&self.expires_ms.to_be_bytes());
        put_name(&mut out, &self.user);
        let (_, mac) = keys.sign(&labelled(LABEL, &out));
        out.extend_from_slice(&mac);
        Ok(out)
    }

    /// Parses `token` and checks its signature and expiry.
    pub fn verify(keys: &Keyring, token: &[u8], now_ms: u64) -> Result<BlockGrant, TokenError> {
        if token.len() > BLOCK_TOKEN_MAX {
            return Err(TokenError::Malformed("too long"));
        }
        if token.is_empty() {
            return Err(TokenError::Malformed("empty"));
        }
        let mut c = Cursor(token);
        if c.u8()? != VERSION {
            return Err(TokenError::Malformed("unknown version"));
        }
        let key_id = c.u32()?;
        let file_id = c.u64()?;
        let ops = BlockOps(c.u8()?);
        if ops.0 & !BlockOps::READ_WRITE.0 != 0 || ops.0 == 0 {
            return Err(TokenError::Malformed("unknown operations"));
        }
        let expires_ms = c.u64()?;
        let user = c.name()?;
        let mac = c.take(32)?;
        if !c.0.is_empty() {
            return Err(TokenError::Malformed("trailing bytes"));
        }
        let signed = &token[..token.len() - 32];
        keys.verify(key_id, &labelled(LABEL, signed), mac)?;
        check_expiry(expires_ms, now_ms)?;
        Ok(BlockGrant {
            file_id,
            ops,
            user,
            expires_ms,
        })
    }

    /// Whether this grant covers `op` on block `block_id`.
    pub fn allows(&self, block_id: u64, op: BlockOps) -> bool {
        crate::file_id_of_block(block_id) == self.file_id && self.ops.contains(op)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn grant() -> BlockGrant {
        BlockGrant {
            file_id: 42,
            ops: BlockOps::READ,
            user: "alice".into(),
            expires_ms: 10_000,
        }
    }

    #[test]
    fn a_grant_covers_its_file_and_operations_until_it_expires() {
        let k = Keyring::generate(1).derive("block");
        let t = grant().sign(&k).unwrap();
        assert!(t.len() <= BLOCK_TOKEN_MAX);
        let g = BlockGrant::verify(&k, &t, 5_000).unwrap();
        assert_eq!(g, grant());
        assert!(g.allows(crate::block_id(42, 7), BlockOps::READ));
        assert!(!g.allows(crate::block_id(43, 0), BlockOps::READ));
        assert!(!g.allows(crate::block_id(42, 0), BlockOps::WRITE));
        assert!(matches!(
            BlockGrant::verify(&k, &t, 10_000),
            Err(TokenError::Expired { .. })
        ));
    }

    #[test]
    fn a_token_of_another_key_or_altered_is_refused() {
        let k = Keyring::generate(1).derive("block");
        let t = grant().sign(&Keyring::generate(1).derive("block")).unwrap();
        assert_eq!(BlockGrant::verify(&k, &t, 0), Err(TokenError::BadSignature));
        let mut t = grant().sign(&k).unwrap();
        t[12] ^= 1; // the file id: another file
        assert_eq!(BlockGrant::verify(&k, &t, 0), Err(TokenError::BadSignature));
    }

    proptest! {
        #[test]
        fn any_bytes_are_refused_without_panicking(b in proptest::collection::vec(any::<u8>(), 0..400)) {
            let k = Keyring::generate(1);
            prop_assert!(BlockGrant::verify(&k, &b, 0).is_err());
        }

        #[test]
        fn any_tampered_byte_is_refused(i in 0usize..60, x in 1u8..=255) {
            let k = Keyring::generate(1);
            let mut t = grant().sign(&k).unwrap();
            let i = i % t.len();
            t[i] ^= x;
            prop_assert!(BlockGrant::verify(&k, &t, 0).is_err());
        }
    }
}
