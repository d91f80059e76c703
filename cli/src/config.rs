//! The config file: one TOML file with a table per component.

use std::path::Path;

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
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ClientConfig {
    pub master: String,
    /// Map blocks of a worker on this host instead of streaming them.
    pub short_circuit: bool,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            master: format!("127.0.0.1:{}", eddy_proto::DEFAULT_MASTER_PORT),
            short_circuit: true,
        }
    }
}

impl Config {
    pub fn load(path: Option<&Path>) -> Result<Self, String> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("config file {}: {e}", path.display()))
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
    fn unknown_keys_are_refused() {
        assert!(toml::from_str::<Config>("[master]\nbnd = \"x\"\n").is_err());
    }
}
