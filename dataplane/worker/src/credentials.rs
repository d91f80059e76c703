//! Who this worker is to the master: its worker credential, found as
//! docs/SECURITY.md ("Workers") says, and found again while it runs. An
//! operator replaces a token file or rotates the key file without
//! restarting workers: the link re-reads them when the master answers
//! UNAUTHENTICATED and before a token's life is half over.

use eddy_client::ClientError;
use eddy_proto::auth::{Credential, SecurityConfig};
use parking_lot::Mutex;

/// How long a worker credential minted from the key file is valid: the
/// worker holds it in memory only and mints a new one at every start.
const MINTED_TTL_MS: u64 = 10 * 365 * 24 * 3600 * 1000;

/// Why the worker cannot prove it is one.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error(transparent)]
    Token(#[from] ClientError),
    #[error(
        "cannot sign a worker token with the master's key file: {0} (give the worker read access \
         to the file [security] key_file names, or set EDDY_TOKEN / [security] token to a worker \
         token from `eddy token create --worker NAME`)"
    )]
    KeyFile(#[from] eddy_proto::auth::KeyFileError),
}

/// The credentials this worker calls the master with: a worker token from
/// EDDY_TOKEN, `[security] token`, a token file (as any client finds one),
/// else one it signs itself with the master's key file when `[security]
/// key_file` names one it can read (the shared cluster secret), else none
/// (a master with authentication `none` needs none; any other refuses the
/// registration and says what to set). A user's token found there is not
/// used: it would be refused as not a worker's.
pub fn worker_credentials(
    sec: &eddy_proto::auth::SecurityConfig,
) -> Result<eddy_client::Credentials, CredentialError> {
    use eddy_proto::auth::{Credential, Keyring, Principal};
    let found = eddy_client::Credentials::from_config(sec)?;
    let user = crate::access::WORKER_USER.to_string();
    // EDDY_TOKEN (or ~/.eddy/token) may hold the user's own token, in the
    // environment a worker was started from; the config's is then next.
    let own = Some(sec.token.trim().to_string()).filter(|t| !t.is_empty());
    for t in [found.token, own].into_iter().flatten() {
        match Credential::parse_unverified(&t) {
            Ok(c) if c.principal == Principal::User => {
                tracing::warn!(
                    "the token found for this worker is user {:?}'s, not a worker token; not using it",
                    c.name
                );
            }
            // A worker's, or one the master will say what is wrong with.
            _ => {
                return Ok(eddy_client::Credentials {
                    user,
                    token: Some(t),
                });
            }
        }
    }
    if sec.key_file.as_os_str().is_empty() {
        return Ok(eddy_client::Credentials { user, token: None });
    }
    let keys = Keyring::load(&sec.key_file)?;
    let now = eddy_proto::auth::unix_ms();
    let token = Credential::sign(&keys, Principal::Worker, &user, now, MINTED_TTL_MS)
        .map_err(|e| ClientError::InvalidArgument(e.to_string()))?;
    Ok(eddy_client::Credentials {
        user,
        token: Some(token),
    })
}

/// The credential in use and where it came from, to read it again.
pub struct CredentialSource {
    sec: SecurityConfig,
    current: Mutex<InUse>,
}

struct InUse {
    token: Option<String>,
    /// Past this (Unix ms) the token is re-read ahead of its expiry: the
    /// middle of its life. `u64::MAX`: no token, or one that cannot be read.
    reread_at_ms: u64,
}

impl InUse {
    fn of(creds: &eddy_client::Credentials) -> Self {
        let reread_at_ms = creds
            .token
            .as_deref()
            .and_then(|t| Credential::parse_unverified(t).ok())
            .map_or(u64::MAX, |c| {
                c.issued_ms
                    .saturating_add(c.expires_ms.saturating_sub(c.issued_ms) / 2)
            });
        Self {
            token: creds.token.clone(),
            reread_at_ms,
        }
    }
}

impl CredentialSource {
    /// Finds the worker's credentials (as [`worker_credentials`]) and
    /// remembers where to look again.
    pub fn new(sec: &SecurityConfig) -> Result<(Self, eddy_client::Credentials), CredentialError> {
        let creds = worker_credentials(sec)?;
        let src = Self {
            sec: sec.clone(),
            current: Mutex::new(InUse::of(&creds)),
        };
        Ok((src, creds))
    }

    /// Whether the token in use is past the middle of its life at `now_ms`.
    pub fn due(&self, now_ms: u64) -> bool {
        now_ms >= self.current.lock().reread_at_ms
    }

    /// Looks for the credentials again: the new ones if they differ from
    /// those in use (which they then replace), else `None`. A source that
    /// cannot be read now (a file half replaced) keeps the old ones, said.
    pub fn reread(&self) -> Option<eddy_client::Credentials> {
        let creds = match worker_credentials(&self.sec) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("cannot read this worker's credentials again: {e}");
                return None;
            }
        };
        let mut cur = self.current.lock();
        if creds.token == cur.token {
            // Not replaced yet: look again at the next refusal, not at
            // every heartbeat until then.
            cur.reread_at_ms = u64::MAX;
            return None;
        }
        *cur = InUse::of(&creds);
        Some(creds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eddy_proto::auth::{Keyring, Principal, unix_ms};

    #[test]
    fn a_replaced_token_file_is_found_and_its_half_life_kept() {
        let dir = tempfile::tempdir().unwrap();
        let keys = Keyring::generate(1);
        let now = unix_ms();
        let sign = |ttl| Credential::sign(&keys, Principal::Worker, "w", now, ttl).unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, sign(10_000)).unwrap();
        let sec = SecurityConfig {
            token_file: file.clone(),
            ..Default::default()
        };
        let (src, creds) = CredentialSource::new(&sec).unwrap();
        assert!(creds.token.is_some());
        assert!(
            !src.due(now + 4_000) && src.due(now + 5_000),
            "due at half its life"
        );
        assert!(src.reread().is_none(), "the same token is no change");
        assert!(!src.due(now + 5_000), "not asked again until a refusal");
        let fresh = sign(60_000);
        std::fs::write(&file, &fresh).unwrap();
        let got = src.reread().expect("the replaced file is read");
        assert_eq!(got.token.as_deref(), Some(fresh.as_str()));
        assert!(!src.due(now + 29_000) && src.due(now + 30_000));
        std::fs::remove_file(&file).unwrap();
        assert!(
            src.reread().is_none(),
            "an unreadable file keeps the old token"
        );
    }
}
