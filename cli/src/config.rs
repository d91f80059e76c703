//! The config file: one TOML file with a table per component.

use std::path::{Path, PathBuf};

use eddy_master::MasterConfig;
use eddy_worker::WorkerConfig;
use serde::Deserialize;

/// The commented template printed by `--print-sample-config`.
pub const SAMPLE: &str = include_str!("../etc/eddy.toml");

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub master: MasterConfig,
    pub worker: WorkerConfig,
    pub client: ClientConfig,
    /// Object-store defaults for this process's master and worker.
    pub ufs: eddy_ufs::UfsDefaults,
    /// Who may do what: read by the master, workers and clients alike.
    pub security: eddy_proto::auth::SecurityConfig,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ClientConfig {
    pub master: String,
    /// Map blocks of a worker on this host instead of streaming them.
    pub short_circuit: bool,
    /// "auto", "rdma" or "tcp" (EDDY_TRANSPORT overrides it).
    pub transport: String,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            master: format!("127.0.0.1:{}", eddy_proto::DEFAULT_MASTER_PORT),
            short_circuit: true,
            transport: "auto".into(),
        }
    }
}

/// Why the config file cannot be used (start-up stops with it).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {}: {source}", path.display())]
    Invalid {
        path: PathBuf,
        #[source]
        source: ParseError,
    },
}

/// Why a config file's text is refused.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("{0}")]
    Toml(#[from] toml::de::Error),
    #[error(transparent)]
    Ufs(#[from] eddy_ufs::UnknownOption),
}

impl Config {
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text).map_err(|source| ConfigError::Invalid {
            path: path.to_path_buf(),
            source,
        })
    }

    /// The text of a config file (also what the config fuzz target feeds).
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let mut cfg: Self = toml::from_str(text)?;
        cfg.ufs.check()?;
        cfg.master.ufs = cfg.ufs.clone();
        cfg.worker.ufs = cfg.ufs.clone();
        cfg.master.security = cfg.security.clone();
        cfg.worker.security = cfg.security.clone();
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_parses_to_the_defaults() {
        let parsed: Config = toml::from_str(SAMPLE).unwrap();
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn sync_takes_always_or_batch_only() {
        let c: Config = toml::from_str("[master]\nsync = \"batch\"\nsync_batch_ms = 5\n").unwrap();
        assert_eq!(c.master.sync, eddy_master::config::MetastoreSync::Batch);
        assert_eq!(c.master.sync_batch_ms, 5);
        let e = toml::from_str::<Config>("[master]\nsync = \"never\"\n").unwrap_err();
        assert!(e.to_string().contains("always"), "{e}");
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(toml::from_str::<Config>("[master]\nbnd = \"x\"\n").is_err());
        assert!(toml::from_str::<Config>("[ufs.hdfs]\n").is_err());
    }

    #[test]
    fn ufs_tables_reach_the_master_and_the_worker() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("eddy.toml");
        std::fs::write(
            &f,
            "[ufs.s3]\nregion = \"eu-west-1\"\nallow_http = true\nretries = 0\n[ufs.azure]\naccount = \"a\"\n",
        )
        .unwrap();
        let c = Config::load(Some(&f)).unwrap();
        assert_eq!(c.master.ufs, c.ufs);
        assert_eq!(c.worker.ufs, c.ufs);
        assert_eq!(c.ufs.s3["region"], "eu-west-1");
        assert_eq!(
            c.ufs.s3["allow_http"], "true",
            "booleans become option strings"
        );
        assert_eq!(c.ufs.s3["retries"], "0");
        assert_eq!(c.ufs.azure["account"], "a");
        // Values may be secrets: Debug shows keys only.
        std::fs::write(&f, "[ufs.s3]\nsecret_key = \"hunter2\"\n").unwrap();
        let c = Config::load(Some(&f)).unwrap();
        assert!(!format!("{:?}", c.master).contains("hunter2"));
        // A key no s3:// mount takes stops start-up, naming the table.
        std::fs::write(&f, "[ufs.s3]\nacess_key = \"x\"\n").unwrap();
        let e = Config::load(Some(&f)).unwrap_err().to_string();
        assert!(e.contains("[ufs.s3]") && e.contains("acess_key"), "{e}");
    }
}
