//! `eddy token`: sign a credential with the master's key file (whoever can
//! read that file is an admin: no master call is made), and show what a
//! credential says.

use std::io::{Read, Write};
use std::path::PathBuf;

use clap::Subcommand;
use eddy_master::MasterConfig;
use eddy_proto::EddyCode;
use eddy_proto::auth::{Credential, Keyring, Principal, valid_name};

use crate::error::CliError;

/// The default lifetime of a credential: 30 days.
const DEFAULT_TTL_MS: i64 = 30 * 86_400_000;

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Sign a credential for a user (or, with --worker, a worker) with the
    /// master's key file ([security] key_file, or master.key beside
    /// [master] metastore_dir) and print it, or write it to --out (mode
    /// 0600). Clients send it from EDDY_TOKEN, [security] token or
    /// token_file, or ~/.eddy/token. Needs read access to the key file.
    Create {
        /// The user the credential names (permissions apply to it).
        #[arg(long, required_unless_present = "worker", conflicts_with = "worker")]
        user: Option<String>,
        /// Sign a worker credential for the worker of this name instead.
        #[arg(long)]
        worker: Option<String>,
        /// How long it is valid: a number with ms, s, m, h or d (default 30d).
        #[arg(long, value_parser = super::fs::parse_duration_ms)]
        ttl: Option<i64>,
        /// Write it to this file (created 0600) instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Print what a credential says: kind, name, issue and expiry time. The
    /// signature is not checked (only the master can).
    Show {
        /// The credential (`eddy1.`...); `-` reads it from stdin.
        token: String,
    },
}

pub fn run(master: &MasterConfig, cmd: TokenCommand) -> Result<(), CliError> {
    match cmd {
        TokenCommand::Create {
            user,
            worker,
            ttl,
            out,
        } => {
            let (principal, name) = match (user, worker) {
                (Some(u), _) => (Principal::User, u),
                (None, Some(w)) => (Principal::Worker, w),
                (None, None) => return Err(CliError::usage("name --user NAME or --worker NAME")),
            };
            if !valid_name(&name) {
                return Err(CliError::usage(format!(
                    "{name:?} is not a valid name: 1 to 255 bytes, no control characters or `:`, not starting with `-`"
                )));
            }
            let ttl = ttl.unwrap_or(DEFAULT_TTL_MS);
            if ttl <= 0 {
                return Err(CliError::usage("--ttl must be positive"));
            }
            let path = eddy_master::identity::key_file(&master.security, &master.metastore_dir);
            let keys = Keyring::load(&path).map_err(|e| {
                CliError::new(
                    EddyCode::PermissionDenied,
                    format!(
                        "{e}; `eddy token create` signs with the master's key file: run it as the master's user, or set [security] key_file"
                    ),
                )
            })?;
            let text = Credential::sign(&keys, principal, &name, now_ms(), ttl as u64)
                .map_err(|e| CliError::new(EddyCode::Internal, format!("cannot sign: {e}")))?;
            match out {
                None => crate::out::line(format_args!("{text}")),
                Some(f) => write_private(&f, &text)?,
            }
            Ok(())
        }
        TokenCommand::Show { token } => {
            let text = if token == "-" {
                let mut s = String::new();
                std::io::stdin()
                    .take(4096)
                    .read_to_string(&mut s)
                    .map_err(|e| CliError::new(EddyCode::InvalidArgument, format!("stdin: {e}")))?;
                s
            } else {
                token
            };
            let c = Credential::parse_unverified(&text).map_err(|e| {
                CliError::usage(format!(
                    "not an Eddy credential: {e} (expected one line starting with `eddy1.`, as `eddy token create` prints)"
                ))
            })?;
            let kind = match c.principal {
                Principal::User => "user",
                Principal::Worker => "worker",
            };
            let now = now_ms();
            let state = if c.expires_ms <= now {
                "expired"
            } else {
                "not expired"
            };
            crate::out::line(format_args!("kind:     {kind}"));
            crate::out::line(format_args!("name:     {}", c.name));
            crate::out::line(format_args!(
                "issued:   {}",
                crate::format::time_ms(c.issued_ms as i64)
            ));
            crate::out::line(format_args!(
                "expires:  {} ({state})",
                crate::format::time_ms(c.expires_ms as i64)
            ));
            crate::out::line(format_args!("key id:   {}", c.key_id));
            crate::out::line(format_args!("signature: not checked (only the master can)"));
            Ok(())
        }
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Writes `text` to a new file only its owner may read.
fn write_private(path: &std::path::Path, text: &str) -> Result<(), CliError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| CliError::local(path, &e))?;
    // An existing file keeps its mode when opened: make it private too.
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .map_err(|e| CliError::local(path, &e))?;
    f.write_all(format!("{text}\n").as_bytes())
        .map_err(|e| CliError::local(path, &e))
}
