//! Who this client says it is: its user (the OS user of the process, as
//! `simple` mode sends it) and, where it has one, a credential the master
//! signed (`token` mode; workers too). Sent on every master call as the
//! `eddy-user` and `authorization: Bearer` headers (see `transport`).

use std::path::{Path, PathBuf};

use eddy_proto::auth::{BEARER, SecurityConfig, TOKEN_MAX, valid_name};
use http::{HeaderName, HeaderValue};

use crate::{ClientError, Result};

/// A user name and, optionally, a credential.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    /// The token is never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .finish()
    }
}

impl Default for Credentials {
    fn default() -> Self {
        Self::current_user()
    }
}

impl Credentials {
    /// This process's OS user (EDDY_USER overrides it, as HADOOP_USER_NAME
    /// does for Hadoop), no credential.
    pub fn current_user() -> Self {
        Self {
            user: os_user(),
            token: None,
        }
    }

    /// The OS user and the credential `[security]` and the environment
    /// give: EDDY_TOKEN, else `token`, else the file EDDY_TOKEN_FILE, else
    /// `token_file`, else `~/.eddy/token` if it exists; none of them: no
    /// credential.
    pub fn from_config(cfg: &SecurityConfig) -> Result<Self> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let token = if let Some(t) = env("EDDY_TOKEN") {
            Some(t)
        } else if !cfg.token.trim().is_empty() {
            Some(cfg.token.clone())
        } else if let Some(f) = env("EDDY_TOKEN_FILE") {
            Some(read_token_file(Path::new(&f))?)
        } else if !cfg.token_file.as_os_str().is_empty() {
            Some(read_token_file(&cfg.token_file)?)
        } else {
            match default_token_file() {
                Some(f) if f.exists() => Some(read_token_file(&f)?),
                _ => None,
            }
        };
        Ok(Self {
            user: os_user(),
            token: token.map(|t| t.trim().to_string()),
        })
    }

    /// The headers every master call carries.
    pub(crate) fn headers(&self) -> Result<Vec<(HeaderName, HeaderValue)>> {
        let mut h = Vec::with_capacity(2);
        if let (true, Ok(v)) = (valid_name(&self.user), HeaderValue::from_str(&self.user)) {
            h.push((HeaderName::from_static(eddy_proto::auth::USER_HEADER), v));
        }
        if let Some(t) = &self.token {
            let bad = || {
                ClientError::InvalidArgument(
                    "the Eddy token given (EDDY_TOKEN, [security] token or a token file) is not a token: \
                     expected one line starting with `eddy1.`, as `eddy token create` prints"
                        .into(),
                )
            };
            if t.len() > TOKEN_MAX || !t.starts_with(eddy_proto::auth::TOKEN_PREFIX) {
                return Err(bad());
            }
            // Not marked sensitive: HPACK may then index it, so each call
            // sends a table index instead of the ~170-byte literal that
            // both sides Huffman-code again (that cost a quarter of
            // get_status throughput, bench/RESULTS.md). The table belongs
            // to this connection, which carries this one credential only,
            // and no Eddy log prints header values (docs/SECURITY.md).
            let v = HeaderValue::from_str(&format!("{BEARER}{t}")).map_err(|_| bad())?;
            h.push((
                HeaderName::from_static(eddy_proto::auth::AUTHORIZATION_HEADER),
                v,
            ));
        }
        Ok(h)
    }
}

fn default_token_file() -> Option<PathBuf> {
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty())?;
    Some(PathBuf::from(home).join(".eddy/token"))
}

fn read_token_file(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ClientError::InvalidArgument(format!(
            "cannot read the Eddy token file {}: {e} (set EDDY_TOKEN_FILE or [security] token_file to a readable file)",
            path.display()
        ))
    })?;
    Ok(text.trim().to_string())
}

/// The name of this process's effective user: EDDY_USER, else the OS's name
/// for its uid (`eddy_proto::auth::os_user`: /etc/passwd, then the name
/// service), else the uid as a number. Not $USER: a worker names a
/// co-located client by its uid with the same lookup, and the two must agree.
fn os_user() -> String {
    if let Some(u) = std::env::var("EDDY_USER").ok().filter(|u| valid_name(u)) {
        return u;
    }
    eddy_proto::auth::os_user(rustix::process::geteuid().as_raw())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_os_user_is_found_and_a_token_travels_as_bearer() {
        let c = Credentials::current_user();
        assert!(valid_name(&c.user), "{c:?}");
        let c = Credentials {
            user: "alice".into(),
            token: Some("eddy1.AAAA".into()),
        };
        let h = c.headers().unwrap();
        assert_eq!(h[0].1, "alice");
        assert_eq!(h[1].1, "Bearer eddy1.AAAA");
        assert!(!format!("{c:?}").contains("AAAA"));
        let bad = Credentials {
            user: "a".into(),
            token: Some("not a token".into()),
        };
        let e = bad.headers().unwrap_err().to_string();
        assert!(e.contains("eddy token create"), "{e}");
    }
}
