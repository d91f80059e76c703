//! The `[security]` table of the config file, read by every process (the
//! master, workers and clients each use the keys that concern them).

use std::path::PathBuf;

use serde::Deserialize;

/// How callers prove who they are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// No identity: every caller may do everything (a test bench only).
    None,
    /// The user a client names (its OS user), trusted as sent (Alluxio's
    /// SIMPLE, HDFS without Kerberos); permissions still apply, workers
    /// still need a worker token and data requests a block token.
    #[default]
    Simple,
    /// A credential signed by the master (`eddy token create`) on every
    /// call; nothing a client merely claims is believed.
    Token,
}

impl AuthMode {
    pub fn name(self) -> &'static str {
        match self {
            AuthMode::None => "none",
            AuthMode::Simple => "simple",
            AuthMode::Token => "token",
        }
    }
}

/// Permission bits a client clears from the modes of what it creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Umask(pub u32);

impl Default for Umask {
    fn default() -> Self {
        Umask(0o022)
    }
}

impl Umask {
    /// An octal string of at most 3 digits (`"022"`, `"077"`, `"0"`).
    pub fn parse(s: &str) -> Result<Umask, String> {
        let s = s.trim();
        let bad = || format!("umask {s:?} is not an octal mode of at most 3 digits (e.g. \"022\")");
        let digits = s.strip_prefix("0o").unwrap_or(s);
        if digits.is_empty() || digits.len() > 4 {
            return Err(bad());
        }
        let v = u32::from_str_radix(digits, 8).map_err(|_| bad())?;
        if v > 0o777 {
            return Err(bad());
        }
        Ok(Umask(v))
    }

    /// `mode` with this umask's bits cleared.
    pub fn apply(self, mode: u32) -> u32 {
        mode & !self.0
    }
}

impl<'de> Deserialize<'de> for Umask {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Umask::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// `[security]`. Every key is documented in cli/etc/eddy.toml.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecurityConfig {
    /// `none`, `simple` or `token` (master; clients and workers follow
    /// what the master asks for).
    pub authentication: AuthMode,
    /// The master's key file (created 0600 at first start when absent);
    /// empty: `master.key` beside the master's metastore directory.
    pub key_file: PathBuf,
    /// The superuser's name; empty: the OS user running the master.
    pub superuser: String,
    /// Members of this group are superusers too.
    pub supergroup: String,
    /// How long a block token the master hands out is valid (ms).
    pub block_token_ttl_ms: u64,
    /// How often the keys that sign block tokens roll (ms); tokens signed
    /// with a key stay valid for their life (`BlockKeySchedule`).
    pub block_key_update_ms: u64,
    /// A client's or worker's credential (`eddy token create`). The
    /// EDDY_TOKEN environment variable takes precedence.
    pub token: String,
    /// A file holding the credential (EDDY_TOKEN_FILE takes precedence
    /// over it); empty: `~/.eddy/token` if it exists.
    pub token_file: PathBuf,
    /// Bits cleared from the mode of files and directories a client creates.
    pub umask: Umask,
    /// PEM certificate chain and private key this process serves TLS with
    /// (master gRPC, worker data port). Both empty: plaintext.
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    /// PEM CA bundle this process trusts for the peers it dials (clients:
    /// the master and workers; workers: the master and peers). With
    /// `tls_client_auth`, servers also require client certificates it
    /// signed (mutual TLS).
    pub tls_ca: PathBuf,
    pub tls_client_auth: bool,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        Self {
            authentication: AuthMode::Simple,
            key_file: PathBuf::new(),
            superuser: String::new(),
            supergroup: "supergroup".into(),
            // HDFS's block token lifetime.
            block_token_ttl_ms: 10 * 3600 * 1000,
            // HDFS's block key update interval.
            block_key_update_ms: 10 * 3600 * 1000,
            token: String::new(),
            token_file: PathBuf::new(),
            umask: Umask::default(),
            tls_cert: PathBuf::new(),
            tls_key: PathBuf::new(),
            tls_ca: PathBuf::new(),
            tls_client_auth: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn umasks_parse_as_octal_and_clear_bits() {
        assert_eq!(Umask::parse("022").unwrap().apply(0o777), 0o755);
        assert_eq!(Umask::parse("077").unwrap().apply(0o666), 0o600);
        assert_eq!(Umask::parse("0").unwrap().apply(0o644), 0o644);
        for bad in ["", "8", "1000", "abc", "-1", "07777"] {
            assert!(Umask::parse(bad).is_err(), "{bad}");
        }
    }
}
