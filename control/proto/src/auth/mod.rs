//! Who is asking and what they may touch: the authentication modes, the
//! `[security]` settings every process reads, the master's keys, and the two
//! kinds of signed token.
//!
//! - A [`Credential`] proves a principal (a user, or a worker) to the
//!   master: `eddy1.` and base64url of a payload with an HMAC-SHA256 over
//!   it, signed with the master's key file ([`Keyring::load_or_create`]).
//!   Clients send it as `authorization: Bearer <token>`.
//! - A [`BlockGrant`] is what the master hands a client with a file's block
//!   list: the operations it may do on that file's blocks, for whom and
//!   until when, signed with keys derived from the master's per epoch
//!   ([`BlockKeySchedule`]: they roll) that workers receive at registration
//!   and with every heartbeat. Workers check it without calling the master.
//!
//! Everything here is plain code over bytes (the key file aside): parsing
//! never panics, whatever it is given (fuzzed: ci/fuzz `auth`). Byte
//! layouts are in docs/SECURITY.md.

mod block;
mod config;
mod keys;
mod os_user;
mod schedule;
mod token;

pub use block::{BLOCK_TOKEN_MAX, BlockGrant, BlockOps};
pub use config::{AuthMode, SecurityConfig, Umask};
pub use keys::{KEY_FILE_MAX_KEYS, KEYRING_MAX_KEYS, KeyFileError, Keyring};
pub use os_user::os_user;
pub use schedule::{
    BLOCK_KEY_LABEL, BLOCK_KEY_UPDATE_MIN_MS, BlockKeySchedule, MAX_EPOCHS_BACK, ScheduleError,
};
pub use token::{Credential, Principal, TOKEN_MAX, TOKEN_PREFIX};

/// gRPC metadata key of the user a client claims in `simple` mode (its OS
/// user); ignored in `token` mode, where the credential names the user.
pub const USER_HEADER: &str = "eddy-user";

/// gRPC metadata key carrying `Bearer <credential>`.
pub const AUTHORIZATION_HEADER: &str = "authorization";

/// The scheme prefix of [`AUTHORIZATION_HEADER`]'s value.
pub const BEARER: &str = "Bearer ";

/// Longest user (or worker) name a token or a header may carry, in bytes
/// (the namespace's owner limit).
pub const NAME_MAX: usize = 255;

/// Why a token is refused. Messages say what is wrong, never the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is malformed ({0})")]
    Malformed(&'static str),
    #[error(
        "the token was signed with key {0}, which is not in the master's key file (rotated out?): get a new token"
    )]
    UnknownKey(u32),
    #[error("the token's signature does not match: it was altered, or signed by another cluster")]
    BadSignature,
    #[error("the token expired {ago_s} s ago: get a new one")]
    Expired { ago_s: u64 },
}

/// Whether `name` may be a principal's name: 1..=255 bytes, no control
/// characters, no `:` (reserved for `worker:` principals in logs) and not
/// starting with `-` (it is passed to `id` to resolve groups).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= NAME_MAX
        && !name.starts_with('-')
        && !name.chars().any(|c| c.is_control() || c == ':')
}

/// Unix time now in ms: token expiries are wall-clock, set by the master
/// and compared by workers on other hosts.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A big-endian reader over untrusted bytes: every read checks the length.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], TokenError> {
        if self.0.len() < n {
            return Err(TokenError::Malformed("truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, TokenError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, TokenError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, TokenError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(a))
    }

    /// A name of 1..=255 bytes after its one-byte length.
    fn name(&mut self) -> Result<String, TokenError> {
        let n = self.u8()? as usize;
        let raw = self.take(n)?;
        let s = std::str::from_utf8(raw).map_err(|_| TokenError::Malformed("name is not UTF-8"))?;
        if !valid_name(s) {
            return Err(TokenError::Malformed("bad name"));
        }
        Ok(s.to_string())
    }
}

/// Appends `name` after its one-byte length (callers checked `valid_name`).
fn put_name(out: &mut Vec<u8>, name: &str) {
    out.push(name.len() as u8);
    out.extend_from_slice(name.as_bytes());
}

/// Refuses a token whose expiry is before `now_ms`.
fn check_expiry(expires_ms: u64, now_ms: u64) -> Result<(), TokenError> {
    if expires_ms <= now_ms {
        return Err(TokenError::Expired {
            ago_s: (now_ms - expires_ms) / 1000,
        });
    }
    Ok(())
}
