//! `eddy fs ...`: namespace commands, output in the style of `ls -l` and
//! Alluxio's shell.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::PathBuf;

use clap::Subcommand;
use eddy_client::{CreateOptions, EddyCode, FileSystem, MasterClient, pb};

use super::meta::print_stat;
use super::paths::{command_master, path_arg};
use crate::error::{ArgError, CliError};
use crate::out::outln;

#[derive(Subcommand)]
pub enum FsCommand {
    /// List directories (or show files), under a header line.
    Ls {
        /// Recurse into subdirectories.
        #[arg(short = 'R', long)]
        recursive: bool,
        /// Re-check the under-storage first, whatever the sync interval
        /// (otherwise a listed directory shows files added there directly
        /// only once its mount's sync interval has passed).
        #[arg(short = 'f', long)]
        force_sync: bool,
        /// Eddy paths (`/path` or `eddy://HOST:PORT/path`).
        #[arg(required = true)]
        paths: Vec<OsString>,
    },
    /// Show everything Eddy knows about a path.
    Stat { path: OsString },
    /// Create a directory.
    Mkdir {
        /// Create missing parents; an existing directory is not an error.
        #[arg(short = 'p', long)]
        parents: bool,
        path: OsString,
    },
    /// Remove a file or directory.
    Rm {
        /// Remove directories and their contents.
        #[arg(short = 'r', short_alias = 'R', long)]
        recursive: bool,
        path: OsString,
    },
    /// Rename (atomic within Eddy).
    Mv { src: OsString, dst: OsString },
    /// Create an empty, complete file. An existing file or directory is
    /// left as it is (Eddy files are write-once; its mtime does not change).
    Touch { path: OsString },
    /// Mount an under-storage at an Eddy path.
    Mount {
        #[arg(long)]
        readonly: bool,
        /// Mount option KEY=VALUE (repeatable).
        #[arg(long = "option", value_name = "KEY=VALUE")]
        options: Vec<String>,
        /// Default sync interval in ms (-1 never, 0 always).
        #[arg(long, allow_hyphen_values = true)]
        sync_interval: Option<i64>,
        path: OsString,
        uri: String,
    },
    /// Remove a mount (the under-storage is untouched).
    Unmount { path: OsString },
    /// List the mount table.
    Mounts,
    /// Keep a file's blocks cached: never evicted from the worker. They stay
    /// in memory unless --allow-demotion lets them move to disk tiers.
    Pin {
        #[arg(long)]
        allow_demotion: bool,
        path: OsString,
    },
    /// Undo `pin`.
    Unpin { path: OsString },
    /// Set permission bits, octal (`755`, `0644`), in Eddy's namespace.
    Chmod {
        /// Every path below too.
        #[arg(short = 'R', long)]
        recursive: bool,
        #[arg(value_parser = parse_mode)]
        mode: u32,
        path: OsString,
    },
    /// Set the owner (OWNER), the owner and group (OWNER:GROUP), or only the
    /// group (:GROUP).
    Chown {
        #[arg(short = 'R', long)]
        recursive: bool,
        owner: String,
        path: OsString,
    },
    /// Set the group.
    Chgrp {
        #[arg(short = 'R', long)]
        recursive: bool,
        group: String,
        path: OsString,
    },
    /// Print a file to stdout.
    Cat { path: OsString },
    /// Print the first bytes of a file.
    Head {
        /// How many bytes.
        #[arg(short = 'c', long = "bytes", default_value_t = 1024)]
        bytes: u64,
        path: OsString,
    },
    /// Print the last bytes of a file.
    Tail {
        /// How many bytes.
        #[arg(short = 'c', long = "bytes", default_value_t = 1024)]
        bytes: u64,
        path: OsString,
    },
    /// Copy a local file or directory into Eddy.
    #[command(alias = "copyFromLocal")]
    Put {
        /// MUST_CACHE, CACHE_THROUGH, THROUGH or ASYNC_THROUGH.
        #[arg(long, default_value = "MUST_CACHE", value_parser = parse_write_type)]
        write_type: pb::WriteType,
        /// Block size in bytes (0: the master's default).
        #[arg(long, default_value_t = 0)]
        block_size: u64,
        local: PathBuf,
        path: OsString,
    },
    /// Copy an Eddy file to a local path. An existing local file is kept
    /// (the command fails) unless -f is given.
    #[command(alias = "copyToLocal")]
    Get {
        /// Overwrite an existing local file.
        #[arg(short = 'f', long)]
        force: bool,
        path: OsString,
        local: PathBuf,
    },
    /// Compare persisted files at or below PATH with the under-storage
    /// (present, length, fingerprint); changes nothing. Exits 1 when some
    /// differ.
    #[command(name = "checkConsistency", alias = "check-consistency")]
    CheckConsistency { path: OsString },
    /// Copy a file (or a tree, with -r) within Eddy, across mounts too.
    Cp {
        /// Copy directories and everything below them.
        #[arg(short = 'r', short_alias = 'R', long)]
        recursive: bool,
        /// MUST_CACHE, CACHE_THROUGH, THROUGH or ASYNC_THROUGH.
        #[arg(long, default_value = "MUST_CACHE", value_parser = parse_write_type)]
        write_type: pb::WriteType,
        /// Block size in bytes (0: each source file's own).
        #[arg(long, default_value_t = 0)]
        block_size: u64,
        src: OsString,
        dst: OsString,
    },
    /// Print each file's MD5 (`HEX  PATH`, as md5sum prints it).
    Checksum {
        /// Eddy paths (`/path` or `eddy://HOST:PORT/path`).
        #[arg(required = true)]
        paths: Vec<OsString>,
    },
    /// Cache a file or directory in the workers now.
    Load { path: OsString },
    /// Drop a file's or directory's cached copies (the under-storage keeps it).
    Free {
        /// Free pinned files too.
        #[arg(short = 'f', long)]
        force: bool,
        path: OsString,
    },
    /// Bytes under a path, and how many of them are cached.
    Du {
        /// One line for the path instead of one per entry.
        #[arg(short = 's', long)]
        summary: bool,
        /// Human-readable sizes.
        #[arg(short = 'H', long)]
        human: bool,
        path: OsString,
    },
    /// Files, directories and bytes under a path.
    Count { path: OsString },
    /// Act on a path once DURATION has passed since its last modification:
    /// `delete` removes it (and its under-storage copy), `free` drops its
    /// cached copies. DURATION: 500ms, 30s, 10m, 2h, 7d, or milliseconds.
    #[command(name = "setTtl", alias = "set-ttl")]
    SetTtl {
        #[arg(long, default_value = "delete", value_parser = parse_ttl_action)]
        action: pb::TtlAction,
        path: OsString,
        #[arg(value_parser = parse_duration_ms)]
        duration: i64,
    },
    /// Remove a path's TTL.
    #[command(name = "unsetTtl", alias = "unset-ttl")]
    UnsetTtl { path: OsString },
    /// Bound how many workers cache each block of a file (or of every file
    /// under a directory); the master adds or drops copies to stay within.
    #[command(name = "setReplication", alias = "set-replication")]
    SetReplication {
        /// At least this many cached copies (0: no lower bound).
        #[arg(long)]
        min: Option<u32>,
        /// At most this many cached copies (0: no upper bound).
        #[arg(long)]
        max: Option<u32>,
        /// Apply to everything below a directory.
        #[arg(short = 'R', long)]
        recursive: bool,
        path: OsString,
    },
    /// Write a file (or every unpersisted file under a directory) from the
    /// workers to the under-storage, and wait until it is there.
    Persist { path: OsString },
    /// Re-check a path against its under-storage now (files created,
    /// changed or deleted there directly), whatever the sync interval.
    #[command(name = "loadMetadata", alias = "load-metadata")]
    LoadMetadata {
        /// Everything below a directory too.
        #[arg(short = 'R', long)]
        recursive: bool,
        path: OsString,
    },
    /// Same as `eddy report`.
    Report,
}

fn parse_ttl_action(s: &str) -> Result<pb::TtlAction, ArgError> {
    match s.to_ascii_lowercase().as_str() {
        "delete" => Ok(pb::TtlAction::Delete),
        "free" => Ok(pb::TtlAction::Free),
        _ => Err(ArgError::TtlAction(s.to_string())),
    }
}

/// `500ms`, `30s`, `10m`, `2h`, `7d`, or a bare number of milliseconds.
pub fn parse_duration_ms(s: &str) -> Result<i64, ArgError> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: i64 = num.parse().map_err(|_| ArgError::Duration(s.to_string()))?;
    let scale = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "ms" => 1,
        "s" | "sec" => 1_000,
        "m" | "min" => 60_000,
        "h" | "hour" => 3_600_000,
        "d" | "day" => 86_400_000,
        other => {
            return Err(ArgError::DurationUnit {
                unit: other.to_string(),
                text: s.to_string(),
            });
        }
    };
    n.checked_mul(scale)
        .ok_or_else(|| ArgError::DurationTooLong(s.to_string()))
}

fn parse_write_type(s: &str) -> Result<pb::WriteType, ArgError> {
    match s.to_ascii_uppercase().as_str() {
        "MUST_CACHE" => Ok(pb::WriteType::MustCache),
        "CACHE_THROUGH" => Ok(pb::WriteType::CacheThrough),
        "THROUGH" => Ok(pb::WriteType::Through),
        "ASYNC_THROUGH" => Ok(pb::WriteType::AsyncThrough),
        _ => Err(ArgError::WriteType(s.to_string())),
    }
}

fn fs(c: MasterClient, short_circuit: bool) -> FileSystem {
    FileSystem::with_master_opts(c, super::client_options(short_circuit))
}

fn show(p: &[u8]) -> String {
    String::from_utf8_lossy(p).into_owned()
}

/// Which handler runs a command, and with what: the master alone
/// (`Namespace`, `Attributes`), the client (`Data`), or neither (`Report`).
enum Group {
    Report,
    Namespace,
    Data,
    Attributes,
}

impl FsCommand {
    /// Every command's group, matched without a wildcard: a new command
    /// does not compile until it is given one.
    fn group(&self) -> Group {
        use FsCommand as F;
        match self {
            F::Report => Group::Report,
            F::Ls { .. }
            | F::Stat { .. }
            | F::Mkdir { .. }
            | F::Rm { .. }
            | F::Mv { .. }
            | F::Touch { .. }
            | F::Mount { .. }
            | F::Unmount { .. }
            | F::Mounts
            | F::CheckConsistency { .. } => Group::Namespace,
            F::Cat { .. }
            | F::Head { .. }
            | F::Tail { .. }
            | F::Put { .. }
            | F::Get { .. }
            | F::Cp { .. }
            | F::Checksum { .. }
            | F::Load { .. }
            | F::Free { .. }
            | F::Du { .. }
            | F::Count { .. } => Group::Data,
            F::Pin { .. }
            | F::Unpin { .. }
            | F::Chmod { .. }
            | F::Chown { .. }
            | F::Chgrp { .. }
            | F::SetTtl { .. }
            | F::UnsetTtl { .. }
            | F::SetReplication { .. }
            | F::Persist { .. }
            | F::LoadMetadata { .. } => Group::Attributes,
        }
    }
}

/// A command its group's handler does not know: a bug (a new command put
/// in the wrong group), answered as an error, never a panic.
fn misrouted(handler: &str) -> CliError {
    CliError::new(
        EddyCode::Internal,
        format!(
            "this command reached the {handler} handler, which does not run it; please report it"
        ),
    )
}

pub async fn run(master: &str, short_circuit: bool, cmd: FsCommand) -> Result<(), CliError> {
    let master = command_master(master, &cmd)?;
    let connect = || super::connect(&master);
    match cmd.group() {
        // The report connects on its own.
        Group::Report => super::report::run(&master).await,
        Group::Namespace => namespace(&connect().await?, cmd).await,
        Group::Data => data(&fs(connect().await?, short_circuit), cmd).await,
        Group::Attributes => attributes(&connect().await?, cmd).await,
    }
}

/// Commands on the namespace and the mount table.
async fn namespace(c: &MasterClient, cmd: FsCommand) -> Result<(), CliError> {
    match cmd {
        FsCommand::Ls {
            recursive,
            force_sync,
            paths,
        } => {
            let paths: Vec<Vec<u8>> = paths.iter().map(path_arg).collect();
            super::meta::ls(c, &paths, recursive, force_sync).await?;
        }
        FsCommand::Stat { path } => {
            let s = c.stat(path_arg(&path)).await?;
            print_stat(&s);
        }
        FsCommand::Mkdir { parents, path } => {
            c.mkdir(path_arg(&path), parents).await?;
        }
        FsCommand::Rm { recursive, path } => {
            c.delete(path_arg(&path), recursive).await?;
        }
        FsCommand::Mv { src, dst } => {
            c.rename(path_arg(&src), path_arg(&dst)).await?;
        }
        FsCommand::Touch { path } => {
            let p = path_arg(&path);
            match c.create_file(&p, &CreateOptions::default()).await {
                Ok(_) => {
                    c.complete_file(&p, 0, false).await?;
                }
                // As touch(1) without times to set: the path exists, done.
                Err(e) if e.code() == EddyCode::AlreadyExists => {}
                Err(e) => return Err(e.into()),
            }
        }
        FsCommand::Mount {
            readonly,
            options,
            sync_interval,
            path,
            uri,
        } => {
            let mut opts = HashMap::new();
            for o in options {
                let (k, v) = o.split_once('=').ok_or_else(|| {
                    CliError::usage(format!("mount option {o:?} is not KEY=VALUE"))
                })?;
                opts.insert(k.to_string(), v.to_string());
            }
            c.mount(path_arg(&path), &uri, readonly, opts, sync_interval)
                .await?;
        }
        FsCommand::Unmount { path } => {
            c.unmount(path_arg(&path)).await?;
        }
        FsCommand::Mounts => {
            for m in c.list_mounts().await? {
                let mut opts: Vec<_> = m
                    .options
                    .iter()
                    .map(|(k, v)| format!("{k}={}", mask(k, v)))
                    .collect();
                opts.sort();
                outln!(
                    "{:<40} on {:<24} ({}{}{})",
                    m.ufs_uri,
                    show(&m.path),
                    if m.read_only { "readonly" } else { "readwrite" },
                    if m.sync_interval_ms >= 0 {
                        format!(", sync={}ms", m.sync_interval_ms)
                    } else {
                        String::new()
                    },
                    if opts.is_empty() {
                        String::new()
                    } else {
                        format!(", {}", opts.join(", "))
                    },
                );
            }
        }
        FsCommand::CheckConsistency { path } => {
            super::meta::check_consistency(c, &path_arg(&path)).await?
        }
        _ => return Err(misrouted("namespace")),
    }
    Ok(())
}

/// Commands that move or read file bytes, through the client.
async fn data(fs: &FileSystem, cmd: FsCommand) -> Result<(), CliError> {
    match cmd {
        FsCommand::Cat { path } => {
            super::data::cat_range(fs, &path_arg(&path), None, None, false).await?
        }
        FsCommand::Head { bytes, path } => {
            super::data::cat_range(fs, &path_arg(&path), Some(0), Some(bytes), false).await?
        }
        FsCommand::Tail { bytes, path } => {
            super::data::cat_range(fs, &path_arg(&path), None, Some(bytes), true).await?
        }
        FsCommand::Put {
            write_type,
            block_size,
            local,
            path,
        } => {
            let o = super::data::PutOptions {
                write_type,
                block_size,
            };
            super::data::put(fs, &local, &path_arg(&path), &o).await?
        }
        FsCommand::Get { force, path, local } => {
            super::data::get(fs, &path_arg(&path), &local, force).await?
        }
        FsCommand::Cp {
            recursive,
            write_type,
            block_size,
            src,
            dst,
        } => {
            let o = super::data::PutOptions {
                write_type,
                block_size,
            };
            super::data::cp(fs, &path_arg(&src), &path_arg(&dst), recursive, &o).await?
        }
        FsCommand::Checksum { paths } => {
            let paths: Vec<Vec<u8>> = paths.iter().map(path_arg).collect();
            super::data::checksum(fs, &paths).await?
        }
        FsCommand::Load { path } => super::data::load(fs, &path_arg(&path)).await?,
        FsCommand::Free { force, path } => super::data::free(fs, &path_arg(&path), force).await?,
        FsCommand::Du {
            summary,
            human,
            path,
        } => super::data::du(fs, &path_arg(&path), summary, human).await?,
        FsCommand::Count { path } => super::data::count(fs, &path_arg(&path)).await?,
        _ => return Err(misrouted("data")),
    }
    Ok(())
}

/// Commands that set what Eddy keeps of a file: pins, permissions, TTLs,
/// replication, persistence and metadata from the under-storage.
async fn attributes(c: &MasterClient, cmd: FsCommand) -> Result<(), CliError> {
    match cmd {
        FsCommand::Pin {
            allow_demotion,
            path,
        } => pin(c, &path, true, allow_demotion).await?,
        FsCommand::Unpin { path } => pin(c, &path, false, false).await?,
        FsCommand::Chmod {
            recursive,
            mode,
            path,
        } => attr(c, &path, recursive, Some(mode), None, None).await?,
        FsCommand::Chown {
            recursive,
            owner,
            path,
        } => {
            let (user, group) = match owner.split_once(':') {
                Some((u, g)) => (u.to_string(), Some(g.to_string())),
                None => (owner, None),
            };
            // `:GROUP` sets only the group, as chown(1) does.
            let user = Some(user).filter(|u| !u.is_empty());
            if group.as_deref() == Some("") || (user.is_none() && group.is_none()) {
                return Err(CliError::usage(
                    "chown: expected OWNER, OWNER:GROUP or :GROUP",
                ));
            }
            attr(c, &path, recursive, None, user, group).await?
        }
        FsCommand::Chgrp {
            recursive,
            group,
            path,
        } => {
            if group.is_empty() {
                return Err(CliError::usage("chgrp: the group is empty"));
            }
            attr(c, &path, recursive, None, None, Some(group)).await?
        }
        FsCommand::SetTtl {
            action,
            path,
            duration,
        } => {
            c.set_attribute(pb::SetAttributeRequest {
                path: path_arg(&path),
                ttl_ms: Some(duration),
                ttl_action: action as i32,
                ..Default::default()
            })
            .await?;
        }
        FsCommand::UnsetTtl { path } => {
            c.set_attribute(pb::SetAttributeRequest {
                path: path_arg(&path),
                ttl_ms: Some(-1),
                ..Default::default()
            })
            .await?;
        }
        FsCommand::SetReplication {
            min,
            max,
            recursive,
            path,
        } => {
            if min.is_none() && max.is_none() {
                return Err(CliError::usage("give --min, --max or both"));
            }
            let st = c
                .set_attribute(pb::SetAttributeRequest {
                    path: path_arg(&path),
                    replication_min: min,
                    replication_max: max,
                    recursive,
                    ..Default::default()
                })
                .await?;
            // Accepted, but say so when the cluster cannot meet it yet.
            let live = c
                .cluster_info()
                .await?
                .workers
                .iter()
                .filter(|w| w.live)
                .count() as u32;
            if st.replication_min > live {
                eprintln!(
                    "warning: replication min {} cannot be met: {live} live worker(s); the master adds copies as workers join",
                    st.replication_min
                );
            }
        }
        FsCommand::Persist { path } => super::meta::persist(c, &path_arg(&path)).await?,
        FsCommand::LoadMetadata { recursive, path } => {
            super::meta::load_metadata(c, &path_arg(&path), recursive).await?
        }
        _ => return Err(misrouted("attributes")),
    }
    Ok(())
}

/// Mode, owner or group of `path` (and below it with `recursive`).
async fn attr(
    c: &MasterClient,
    path: &OsString,
    recursive: bool,
    mode: Option<u32>,
    owner: Option<String>,
    group: Option<String>,
) -> Result<(), eddy_client::ClientError> {
    c.set_attribute(pb::SetAttributeRequest {
        path: path_arg(path),
        mode,
        owner,
        group,
        recursive,
        ..Default::default()
    })
    .await?;
    Ok(())
}

/// Octal permission bits: `755`, `0644`, `1777`.
fn parse_mode(s: &str) -> Result<u32, ArgError> {
    let digits = s.strip_prefix("0o").unwrap_or(s);
    if digits.is_empty() || digits.len() > 4 {
        return Err(ArgError::Mode(s.to_string()));
    }
    u32::from_str_radix(digits, 8).map_err(|_| ArgError::Mode(s.to_string()))
}

async fn pin(
    c: &MasterClient,
    path: &OsString,
    on: bool,
    allow_demotion: bool,
) -> Result<(), eddy_client::ClientError> {
    c.set_attribute(pb::SetAttributeRequest {
        path: path_arg(path),
        pinned: Some(on),
        pin_allow_demotion: Some(allow_demotion),
        recursive: true,
        ..Default::default()
    })
    .await?;
    Ok(())
}

/// Secrets given as mount options are never printed back (the master masks
/// them already; this holds for an older master too).
fn mask<'a>(key: &str, value: &'a str) -> &'a str {
    if eddy_ufs::is_secret_option(key) {
        eddy_ufs::MASKED
    } else {
        value
    }
}
