//! Eddy path arguments: `/path` or `eddy://HOST[:PORT]/path`, and the
//! master a command's paths name.

use std::ffi::OsString;

use super::fs::FsCommand;
use crate::error::CliError;
use crate::uri::split_uri;

/// The Eddy path of an argument (`/path` or `eddy://host:port/path`).
pub fn path_arg(p: &OsString) -> Vec<u8> {
    split_uri(p).1
}

/// The master a command talks to: the one its `eddy://` arguments name,
/// which wins over `--master`, EDDY_MASTER and the config file (`default`);
/// two different ones in one command are a usage error.
pub fn command_master(default: &str, cmd: &FsCommand) -> Result<String, CliError> {
    let mut named: Option<String> = None;
    for p in cmd.eddy_paths() {
        let Some(m) = split_uri(p).0 else { continue };
        match &named {
            Some(n) if *n != m => {
                return Err(CliError::usage(format!(
                    "the paths name two masters, {n} and {m}; one command talks to one master"
                )));
            }
            _ => named = Some(m),
        }
    }
    Ok(named.unwrap_or_else(|| default.to_string()))
}

impl FsCommand {
    /// Every argument that is an Eddy path (not a local path or a URI).
    fn eddy_paths(&self) -> Vec<&OsString> {
        use FsCommand as F;
        match self {
            F::Ls { paths, .. } | F::Checksum { paths } => paths.iter().collect(),
            F::Mv { src, dst } | F::Cp { src, dst, .. } => vec![src, dst],
            F::Stat { path }
            | F::Mkdir { path, .. }
            | F::Rm { path, .. }
            | F::Touch { path }
            | F::Mount { path, .. }
            | F::Unmount { path }
            | F::Pin { path, .. }
            | F::Unpin { path }
            | F::Chmod { path, .. }
            | F::Chown { path, .. }
            | F::Chgrp { path, .. }
            | F::Cat { path }
            | F::Head { path, .. }
            | F::Tail { path, .. }
            | F::Put { path, .. }
            | F::Get { path, .. }
            | F::CheckConsistency { path }
            | F::Load { path }
            | F::Free { path, .. }
            | F::Du { path, .. }
            | F::Count { path }
            | F::SetTtl { path, .. }
            | F::UnsetTtl { path }
            | F::SetReplication { path, .. }
            | F::Persist { path }
            | F::LoadMetadata { path, .. } => vec![path],
            F::Mounts | F::Report => Vec::new(),
        }
    }
}
