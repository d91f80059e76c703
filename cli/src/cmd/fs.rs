//! `eddy fs ...`: namespace commands, output in the style of `ls -l` and
//! Alluxio's shell.

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use clap::Subcommand;
use eddy_client::{CreateOptions, EddyCode, FileSystem, MasterClient, pb};

use crate::error::CliError;
use crate::format::{bytes, mode_string, time_ms};
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

fn parse_ttl_action(s: &str) -> Result<pb::TtlAction, String> {
    match s.to_ascii_lowercase().as_str() {
        "delete" => Ok(pb::TtlAction::Delete),
        "free" => Ok(pb::TtlAction::Free),
        _ => Err(format!("unknown TTL action {s:?}: delete or free")),
    }
}

/// `500ms`, `30s`, `10m`, `2h`, `7d`, or a bare number of milliseconds.
pub fn parse_duration_ms(s: &str) -> Result<i64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: i64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?}: expected e.g. 500ms, 30s, 10m, 2h, 7d"))?;
    let scale = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "ms" => 1,
        "s" | "sec" => 1_000,
        "m" | "min" => 60_000,
        "h" | "hour" => 3_600_000,
        "d" | "day" => 86_400_000,
        other => {
            return Err(format!(
                "invalid duration unit {other:?} in {s:?}: ms, s, m, h or d"
            ));
        }
    };
    n.checked_mul(scale)
        .ok_or_else(|| format!("duration {s:?} is too long"))
}

fn parse_write_type(s: &str) -> Result<pb::WriteType, String> {
    match s.to_ascii_uppercase().as_str() {
        "MUST_CACHE" => Ok(pb::WriteType::MustCache),
        "CACHE_THROUGH" => Ok(pb::WriteType::CacheThrough),
        "THROUGH" => Ok(pb::WriteType::Through),
        "ASYNC_THROUGH" => Ok(pb::WriteType::AsyncThrough),
        _ => Err(format!(
            "unknown write type {s:?}: MUST_CACHE, CACHE_THROUGH, THROUGH or ASYNC_THROUGH"
        )),
    }
}

/// Splits `eddy://HOST[:PORT]/PATH` into the master it names (the default
/// port when none is given; none for `eddy:///PATH`) and the path. Other
/// arguments are paths as they are.
fn split_uri(p: &OsString) -> (Option<String>, Vec<u8>) {
    let b = p.as_bytes();
    let Some(rest) = b.strip_prefix(b"eddy://") else {
        return (None, b.to_vec());
    };
    let (authority, path) = match rest.iter().position(|&c| c == b'/') {
        Some(i) => (&rest[..i], rest[i..].to_vec()),
        None => (rest, b"/".to_vec()),
    };
    let master = match String::from_utf8_lossy(authority).into_owned() {
        a if a.is_empty() => None,
        a if a.contains(':') => Some(a),
        host => Some(format!("{host}:{}", eddy_proto::DEFAULT_MASTER_PORT)),
    };
    (master, path)
}

/// The Eddy path of an argument (`/path` or `eddy://host:port/path`).
fn path_arg(p: &OsString) -> Vec<u8> {
    split_uri(p).1
}

/// The master a command talks to: the one its `eddy://` arguments name,
/// which wins over `--master`, EDDY_MASTER and the config file (`default`);
/// two different ones in one command are a usage error.
fn command_master(default: &str, cmd: &FsCommand) -> Result<String, CliError> {
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

fn fs(c: MasterClient, short_circuit: bool) -> FileSystem {
    FileSystem::with_master_opts(
        c,
        eddy_client::ClientOptions {
            short_circuit,
            ..Default::default()
        },
    )
}

fn show(p: &[u8]) -> String {
    String::from_utf8_lossy(p).into_owned()
}

pub async fn run(master: &str, short_circuit: bool, cmd: FsCommand) -> Result<(), CliError> {
    let fs = |c| fs(c, short_circuit);
    let master = command_master(master, &cmd)?;
    if let FsCommand::Report = cmd {
        return super::report::run(&master).await;
    }
    let c = super::connect(&master).await?;
    match cmd {
        FsCommand::Ls {
            recursive,
            force_sync,
            paths,
        } => {
            let paths: Vec<Vec<u8>> = paths.iter().map(path_arg).collect();
            // The header once, above the first entry (none above an error).
            let header = std::cell::Cell::new(true);
            super::data::each_path(&paths, |p| {
                let header = &header;
                let c = &c;
                async move {
                    let sync = force_sync.then_some(0);
                    walk(c, p, recursive, sync, |s| {
                        if header.replace(false) {
                            outln!("{LS_HEADER}");
                        }
                        ls_line(s)
                    })
                    .await?;
                    Ok(())
                }
            })
            .await?;
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
        FsCommand::Pin {
            allow_demotion,
            path,
        } => pin(&c, &path, true, allow_demotion).await?,
        FsCommand::Unpin { path } => pin(&c, &path, false, false).await?,
        FsCommand::Chmod {
            recursive,
            mode,
            path,
        } => attr(&c, &path, recursive, Some(mode), None, None).await?,
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
            attr(&c, &path, recursive, None, user, group).await?
        }
        FsCommand::Chgrp {
            recursive,
            group,
            path,
        } => {
            if group.is_empty() {
                return Err(CliError::usage("chgrp: the group is empty"));
            }
            attr(&c, &path, recursive, None, None, Some(group)).await?
        }
        FsCommand::Cat { path } => {
            super::data::cat_range(&fs(c), &path_arg(&path), None, None, false).await?
        }
        FsCommand::Head { bytes, path } => {
            super::data::cat_range(&fs(c), &path_arg(&path), Some(0), Some(bytes), false).await?
        }
        FsCommand::Tail { bytes, path } => {
            super::data::cat_range(&fs(c), &path_arg(&path), None, Some(bytes), true).await?
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
            super::data::put(&fs(c), &local, &path_arg(&path), &o).await?
        }
        FsCommand::Get { force, path, local } => {
            super::data::get(&fs(c), &path_arg(&path), &local, force).await?
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
            super::data::cp(&fs(c), &path_arg(&src), &path_arg(&dst), recursive, &o).await?
        }
        FsCommand::CheckConsistency { path } => {
            let p = path_arg(&path);
            let r = c.check_consistency(&p).await?;
            for x in &r.inconsistent {
                outln!("{}: {}", show(&x.path), x.reason);
            }
            if r.inconsistent.is_empty() {
                outln!(
                    "{} is consistent with its under-storage ({} persisted files checked)",
                    show(&p),
                    r.files_checked
                );
            } else {
                return Err(CliError::new(
                    EddyCode::UfsError,
                    format!(
                        "{}{} of {} persisted files differ from the under-storage; `eddy fs loadMetadata -R {}` brings Eddy up to date",
                        if r.truncated { "more than " } else { "" },
                        r.inconsistent.len(),
                        r.files_checked,
                        show(&p)
                    ),
                ));
            }
        }
        FsCommand::Checksum { paths } => {
            let paths: Vec<Vec<u8>> = paths.iter().map(path_arg).collect();
            super::data::checksum(&fs(c), &paths).await?
        }
        FsCommand::Load { path } => super::data::load(&fs(c), &path_arg(&path)).await?,
        FsCommand::Free { force, path } => {
            super::data::free(&fs(c), &path_arg(&path), force).await?
        }
        FsCommand::Du {
            summary,
            human,
            path,
        } => super::data::du(&fs(c), &path_arg(&path), summary, human).await?,
        FsCommand::Count { path } => super::data::count(&fs(c), &path_arg(&path)).await?,
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
        FsCommand::Persist { path } => {
            let p = path_arg(&path);
            let start = std::time::Instant::now();
            let n = c.persist(&p).await?;
            // Poll until nothing under the path waits any more (bounded:
            // a store that stays down is reported, not waited on forever).
            let deadline = start + std::time::Duration::from_secs(3600);
            loop {
                let (mut waiting, mut lost) = (0u64, 0u64);
                let st = c.stat(&p).await?;
                if st.is_dir {
                    walk(&c, &p, true, None, |s| {
                        waiting += u64::from(s.persist_pending);
                        lost += u64::from(s.persist_pending && s.lost);
                    })
                    .await?;
                } else {
                    waiting = u64::from(st.persist_pending);
                    lost = u64::from(st.persist_pending && st.lost);
                }
                if lost > 0 && lost == waiting {
                    return Err(CliError::new(
                        EddyCode::DataLost,
                        format!(
                            "{}: {lost} file(s) are lost (cached only on workers that are gone, never persisted) and cannot be persisted; `eddy fs ls -R` marks them LOST",
                            show(&p)
                        ),
                    ));
                }
                if waiting == 0 {
                    break;
                }
                if std::time::Instant::now() > deadline {
                    return Err(CliError::new(
                        EddyCode::Unavailable,
                        format!(
                            "{}: {waiting} file(s) still waiting to be persisted after an hour; the master keeps retrying",
                            show(&p)
                        ),
                    ));
                }
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            outln!(
                "persisted {} ({n} file(s)) in {:.2}s",
                show(&p),
                start.elapsed().as_secs_f64()
            );
        }
        FsCommand::LoadMetadata { recursive, path } => {
            let start = std::time::Instant::now();
            let p = path_arg(&path);
            // The stat syncs the path itself; the listings sync what is below.
            let root = c.stat_synced(&p, 0).await?;
            let (mut files, mut dirs) = (0u64, 0u64);
            if root.is_dir {
                walk(&c, &p, recursive, Some(0), |s| {
                    if s.is_dir {
                        dirs += 1;
                    } else {
                        files += 1;
                    }
                })
                .await?;
            }
            outln!(
                "loaded metadata of {} ({files} files, {dirs} directories) in {:.2}s",
                show(&p),
                start.elapsed().as_secs_f64()
            );
        }
        FsCommand::Report => unreachable!("handled above"),
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
fn parse_mode(s: &str) -> Result<u32, String> {
    let digits = s.strip_prefix("0o").unwrap_or(s);
    if digits.is_empty() || digits.len() > 4 {
        return Err(format!(
            "{s:?}: expected octal permission bits such as 755 or 0644"
        ));
    }
    u32::from_str_radix(digits, 8)
        .map_err(|_| format!("{s:?}: expected octal permission bits such as 755 or 0644"))
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

/// The columns of [`ls_line`], printed once above a listing.
const LS_HEADER: &str =
    "PERMISSION      OWNER      GROUP       LENGTH PERSISTENCE    MODIFIED            CACHED PATH";

fn ls_line(s: &pb::FileStatus) {
    outln!(
        "{} {:>10} {:>10} {:>12} {:<14} {} {:>4}% {}",
        mode_string(s.is_dir, s.mode),
        if s.owner.is_empty() { "-" } else { &s.owner },
        if s.group.is_empty() { "-" } else { &s.group },
        s.length,
        if !s.complete {
            "INCOMPLETE"
        } else if s.lost {
            "LOST"
        } else if s.persisted {
            "PERSISTED"
        } else {
            "NOT_PERSISTED"
        },
        time_ms(s.mtime_ms),
        s.percent_cached,
        show(&s.path),
    );
}

/// Lists `path` (and below it with `recursive`), depth-first in name order,
/// page by page, calling `each` for every entry.
async fn walk(
    c: &MasterClient,
    path: &[u8],
    recursive: bool,
    sync: Option<i64>,
    mut each: impl FnMut(&pb::FileStatus),
) -> Result<(), eddy_client::ClientError> {
    let mut stack = vec![path.to_vec()];
    while let Some(dir) = stack.pop() {
        let mut after = Vec::new();
        let mut subdirs = Vec::new();
        loop {
            let (entries, next) = c.list_page(&dir, &after, 0, sync).await?;
            for s in &entries {
                each(s);
                if recursive && s.is_dir && s.path != dir {
                    subdirs.push(s.path.clone());
                }
            }
            match next {
                Some(n) => after = n,
                None => break,
            }
        }
        // Depth-first in name order.
        stack.extend(subdirs.into_iter().rev());
    }
    Ok(())
}

fn print_stat(s: &pb::FileStatus) {
    let ttl = if s.ttl_ms < 0 {
        "none".to_string()
    } else {
        format!(
            "{} ms ({:?})",
            s.ttl_ms,
            pb::TtlAction::try_from(s.ttl_action).unwrap_or_default()
        )
    };
    outln!("path:            {}", show(&s.path));
    outln!("id:              {}", s.id);
    outln!(
        "type:            {}",
        if s.is_dir { "directory" } else { "file" }
    );
    if !s.is_dir {
        outln!("length:          {} ({})", s.length, bytes(s.length));
        outln!("block size:      {}", bytes(s.block_size));
        outln!("blocks:          {:?}", s.block_ids);
        outln!("complete:        {}", s.complete);
        outln!("cached:          {}%", s.percent_cached);
    }
    outln!(
        "mode:            {} ({:o})",
        mode_string(s.is_dir, s.mode),
        s.mode
    );
    outln!("owner:           {}", s.owner);
    outln!("group:           {}", s.group);
    outln!("modified:        {}", time_ms(s.mtime_ms));
    outln!(
        "persisted:       {}{}",
        s.persisted,
        if s.lost {
            " (LOST: a block was cached only on workers that are gone; the bytes cannot be read)"
        } else if s.persist_pending {
            " (waiting to be persisted by a worker)"
        } else {
            ""
        }
    );
    outln!(
        "pinned:          {}{}",
        s.pinned,
        if s.pin_allows_demotion {
            " (may move to disk tiers)"
        } else {
            ""
        }
    );
    outln!("ttl:             {ttl}");
    outln!(
        "replication:     min {} max {}",
        s.replication_min,
        if s.replication_max == 0 {
            "unbounded".to_string()
        } else {
            s.replication_max.to_string()
        }
    );
    if s.is_mount_point {
        outln!("mount point:     yes");
    }
    if !s.ufs_fingerprint.is_empty() {
        outln!("ufs fingerprint: {}", s.ufs_fingerprint);
    }
}
