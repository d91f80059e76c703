//! `eddy fs` commands that walk the namespace: ls, persist, loadMetadata,
//! checkConsistency, and the listing and stat formats.

use eddy_client::{EddyCode, MasterClient, pb};

use crate::error::CliError;
use crate::format::{bytes, mode_string, time_ms};
use crate::out::outln;

fn show(p: &[u8]) -> String {
    String::from_utf8_lossy(p).into_owned()
}

/// Lists each path (a directory's entries, or a file) under one header.
pub async fn ls(
    c: &MasterClient,
    paths: &[Vec<u8>],
    recursive: bool,
    force_sync: bool,
) -> Result<(), CliError> {
    // The header once, above the first entry (none above an error).
    let header = std::cell::Cell::new(true);
    crate::cmd::data::each_path(paths, |p| {
        let header = &header;
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
    Ok(())
}

/// Compares persisted files at or below `p` with the under-storage.
pub async fn check_consistency(c: &MasterClient, p: &[u8]) -> Result<(), CliError> {
    let r = c.check_consistency(p).await?;
    for x in &r.inconsistent {
        outln!("{}: {}", show(&x.path), x.reason);
    }
    if r.inconsistent.is_empty() {
        outln!(
            "{} is consistent with its under-storage ({} persisted files checked)",
            show(p),
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
                show(p)
            ),
        ));
    }
    Ok(())
}

/// Persists `p` (a file or a tree) and waits until nothing waits.
///
/// The master hands the files to workers at once (their heartbeats are
/// long polls), so a small file is often persisted within milliseconds:
/// the first looks come soon and the gap between them doubles up to
/// [`PERSIST_POLL_MAX`]. A terminal sees files and bytes done.
pub async fn persist(c: &MasterClient, p: &[u8]) -> Result<(), CliError> {
    let start = std::time::Instant::now();
    let n = c.persist(p).await?;
    // Bounded: a store that stays down is reported, not waited on forever.
    let deadline = start + std::time::Duration::from_secs(3600);
    let mut gap = PERSIST_POLL_MIN;
    let mut progress = PersistProgress::new(show(p));
    loop {
        let left = pending_under(c, p).await?;
        if left.lost > 0 && left.lost == left.files {
            progress.abandon();
            return Err(CliError::new(
                EddyCode::DataLost,
                format!(
                    "{}: {} file(s) are lost (cached only on workers that are gone, never persisted) and cannot be persisted; `eddy fs ls -R` marks them LOST",
                    show(p),
                    left.lost
                ),
            ));
        }
        if left.files == 0 {
            break;
        }
        progress.show(&left);
        if std::time::Instant::now() > deadline {
            progress.abandon();
            return Err(CliError::new(
                EddyCode::Unavailable,
                format!(
                    "{}: {} file(s) still waiting to be persisted after an hour; the master keeps retrying",
                    show(p),
                    left.files
                ),
            ));
        }
        tokio::time::sleep(gap).await;
        gap = (gap * 2).min(PERSIST_POLL_MAX);
    }
    progress.finish();
    outln!(
        "persisted {} ({n} file(s)) in {:.2}s",
        show(p),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The first gap between looks at a persist's progress.
const PERSIST_POLL_MIN: std::time::Duration = std::time::Duration::from_millis(2);
/// The longest gap between looks at a persist's progress.
const PERSIST_POLL_MAX: std::time::Duration = std::time::Duration::from_millis(200);

/// What still waits to be persisted at or below a path.
#[derive(Default)]
struct Pending {
    files: u64,
    bytes: u64,
    lost: u64,
}

async fn pending_under(c: &MasterClient, p: &[u8]) -> Result<Pending, CliError> {
    let mut left = Pending::default();
    let mut count = |s: &pb::FileStatus| {
        if s.persist_pending && !s.is_dir {
            left.files += 1;
            left.bytes += s.length;
            left.lost += u64::from(s.lost);
        }
    };
    let st = c.stat(p).await?;
    if st.is_dir {
        walk(c, p, true, None, &mut count).await?;
    } else {
        count(&st);
    }
    Ok(left)
}

/// Files and bytes persisted so far, on stderr when it is a terminal: the
/// totals are the most seen waiting at once.
struct PersistProgress {
    bar: Option<indicatif::ProgressBar>,
    path: String,
    files: u64,
    bytes: u64,
}

impl PersistProgress {
    fn new(path: String) -> Self {
        Self {
            bar: None,
            path,
            files: 0,
            bytes: 0,
        }
    }

    fn show(&mut self, left: &Pending) {
        self.files = self.files.max(left.files);
        self.bytes = self.bytes.max(left.bytes);
        let bar = self.bar.get_or_insert_with(|| {
            let b = indicatif::ProgressBar::new(0);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "persisting {msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            b
        });
        bar.set_length(self.bytes);
        bar.set_position(self.bytes - left.bytes.min(self.bytes));
        bar.set_message(format!(
            "{}: {}/{} files",
            self.path,
            self.files - left.files,
            self.files
        ));
    }

    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }

    fn abandon(&self) {
        if let Some(b) = &self.bar {
            b.abandon();
        }
    }
}

/// Re-checks `p` (and below it with `recursive`) against the under-storage.
pub async fn load_metadata(c: &MasterClient, p: &[u8], recursive: bool) -> Result<(), CliError> {
    let start = std::time::Instant::now();
    // The stat syncs the path itself; the listings sync what is below.
    let root = c.stat_synced(p, 0).await?;
    let (mut files, mut dirs) = (0u64, 0u64);
    if root.is_dir {
        walk(c, p, recursive, Some(0), |s| {
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
        show(p),
        start.elapsed().as_secs_f64()
    );
    Ok(())
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
pub async fn walk(
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

pub fn print_stat(s: &pb::FileStatus) {
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
