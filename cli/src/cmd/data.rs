//! `eddy fs` commands that move bytes: cat, head, tail, put/copyFromLocal,
//! get/copyToLocal, cp, checksum, load, free, du, count.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use eddy_client::{CreateOptions, EddyCode, FileSystem, OpenOptions, pb};
use indicatif::{ProgressBar, ProgressStyle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::error::CliError;
use crate::format::bytes;
use crate::out::outln;

/// Chunk size for streaming copies.
const CHUNK: usize = 4 << 20;

fn show(p: &[u8]) -> String {
    String::from_utf8_lossy(p).into_owned()
}

/// A byte progress bar on stderr (hidden when stderr is not a terminal).
fn bar(total: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(total);
    pb.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}

fn rate(n: u64, d: Duration) -> String {
    let secs = d.as_secs_f64().max(1e-6);
    format!("{}/s", bytes((n as f64 / secs) as u64))
}

/// Writes `len` bytes of `path` starting at `from` to stdout.
pub async fn cat_range(
    fs: &FileSystem,
    path: &[u8],
    from: Option<u64>,
    len: Option<u64>,
    tail: bool,
) -> Result<(), CliError> {
    let mut r = fs.open(path, &OpenOptions::default()).await?;
    let size = r.len();
    let (start, n) = match (tail, len) {
        (true, Some(n)) => (size.saturating_sub(n), n.min(size)),
        (false, Some(n)) => (from.unwrap_or(0), n.min(size)),
        (_, None) => (0, size),
    };
    r.seek(std::io::SeekFrom::Start(start))?;
    let mut out = std::io::stdout().lock();
    let mut left = n;
    let mut buf = vec![0u8; CHUNK.min(n.max(1) as usize)];
    while left > 0 {
        let want = (left as usize).min(buf.len());
        let got = r.read(&mut buf[..want]).await?;
        if got == 0 {
            break;
        }
        if let Err(e) = out.write_all(&buf[..got]) {
            // A closed pipe (`eddy fs cat f | head`) is not an error.
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                return Ok(());
            }
            return Err(CliError::new(
                EddyCode::Internal,
                format!("cannot write to stdout: {e}"),
            ));
        }
        left -= got as u64;
    }
    let _ = out.flush();
    Ok(())
}

/// Options of `put`.
pub struct PutOptions {
    pub write_type: pb::WriteType,
    pub block_size: u64,
}

/// Copies a local file or directory tree into Eddy.
pub async fn put(
    fs: &FileSystem,
    local: &Path,
    dst: &[u8],
    o: &PutOptions,
) -> Result<(), CliError> {
    let meta = std::fs::metadata(local).map_err(|e| CliError::local(local, &e))?;
    // Into an existing directory: keep the local name.
    let dst = match fs.stat(dst).await {
        Ok(s) if s.is_dir => join(dst, local)?,
        _ => dst.to_vec(),
    };
    let start = Instant::now();
    let total = if meta.is_dir() {
        let mut n = 0;
        put_dir(fs, local, &dst, o, &mut n).await?;
        n
    } else {
        put_file(fs, local, &dst, o, meta.len()).await?
    };
    outln!(
        "copied {} to {} in {:.2}s ({})",
        bytes(total),
        show(&dst),
        start.elapsed().as_secs_f64(),
        rate(total, start.elapsed())
    );
    Ok(())
}

fn join(dir: &[u8], local: &Path) -> Result<Vec<u8>, CliError> {
    use std::os::unix::ffi::OsStrExt;
    let name = local.file_name().ok_or_else(|| {
        CliError::new(
            EddyCode::InvalidArgument,
            format!("{} has no file name", local.display()),
        )
    })?;
    Ok(child(dir, name.as_bytes()))
}

async fn put_dir(
    fs: &FileSystem,
    local: &Path,
    dst: &[u8],
    o: &PutOptions,
    total: &mut u64,
) -> Result<(), CliError> {
    fs.mkdir(dst, true).await?;
    let mut entries: Vec<PathBuf> = std::fs::read_dir(local)
        .map_err(|e| CliError::local(local, &e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for e in entries {
        let child = join(dst, &e)?;
        let m = std::fs::metadata(&e).map_err(|x| CliError::local(&e, &x))?;
        if m.is_dir() {
            Box::pin(put_dir(fs, &e, &child, o, total)).await?;
        } else {
            *total += put_file(fs, &e, &child, o, m.len()).await?;
        }
    }
    Ok(())
}

async fn put_file(
    fs: &FileSystem,
    local: &Path,
    dst: &[u8],
    o: &PutOptions,
    len: u64,
) -> Result<u64, CliError> {
    let mut f = tokio::fs::File::open(local)
        .await
        .map_err(|e| CliError::local(local, &e))?;
    let opts = CreateOptions {
        block_size: o.block_size,
        write_type: o.write_type,
        ..Default::default()
    };
    let mut w = fs.create(dst, &opts).await?;
    let pb = bar(len, &show(dst));
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match f.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                let _ = w.cancel().await;
                return Err(CliError::local(local, &e));
            }
        };
        w.write(&buf[..n]).await?;
        pb.inc(n as u64);
    }
    let written = w.written();
    w.close().await?;
    pb.finish_and_clear();
    Ok(written)
}

/// Copies an Eddy file to a local path (into it, if it is a directory).
/// An existing local file is kept unless `force`, as `cp -n` keeps it.
pub async fn get(fs: &FileSystem, src: &[u8], local: &Path, force: bool) -> Result<(), CliError> {
    let target = if local.is_dir() {
        let name = src.rsplit(|&c| c == b'/').next().unwrap_or(b"file");
        local.join(String::from_utf8_lossy(name).as_ref())
    } else {
        local.to_path_buf()
    };
    if !force && std::fs::symlink_metadata(&target).is_ok() {
        return Err(CliError::new(
            EddyCode::AlreadyExists,
            format!(
                "{}: already exists; pass -f to overwrite it",
                target.display()
            ),
        ));
    }
    let start = Instant::now();
    let mut r = fs.open(src, &OpenOptions::default()).await?;
    // Write beside the target and rename at the end: no half file on failure.
    let tmp = target.with_extension("eddy-part");
    let mut f = tokio::fs::File::create(&tmp)
        .await
        .map_err(|e| CliError::local(&tmp, &e))?;
    let pb = bar(r.len(), &show(src));
    let mut buf = vec![0u8; CHUNK];
    let result: Result<u64, CliError> = async {
        let mut total = 0u64;
        loop {
            let n = r.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            f.write_all(&buf[..n])
                .await
                .map_err(|e| CliError::local(&tmp, &e))?;
            total += n as u64;
            pb.inc(n as u64);
        }
        f.flush().await.map_err(|e| CliError::local(&tmp, &e))?;
        Ok(total)
    }
    .await;
    pb.finish_and_clear();
    let total = match result {
        Ok(t) => t,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    std::fs::rename(&tmp, &target).map_err(|e| CliError::local(&target, &e))?;
    outln!(
        "copied {} to {} in {:.2}s ({})",
        bytes(total),
        target.display(),
        start.elapsed().as_secs_f64(),
        rate(total, start.elapsed())
    );
    Ok(())
}

/// The last component of an Eddy path.
fn base_name(p: &[u8]) -> &[u8] {
    p.rsplit(|&c| c == b'/').next().unwrap_or(p)
}

fn child(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = dir.to_vec();
    if !p.ends_with(b"/") {
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

/// Copies an Eddy file, or a tree with `recursive`, to `dst` (into it when
/// it is a directory, keeping the source's name). Reads and writes go
/// through Eddy, so the copy may cross mounts (`/s3/a` to `/gs/b`). One
/// progress bar covers every byte; a file that fails to copy leaves nothing
/// at its destination.
pub async fn cp(
    fs: &FileSystem,
    src: &[u8],
    dst: &[u8],
    recursive: bool,
    o: &PutOptions,
) -> Result<(), CliError> {
    let st = fs.stat(src).await?;
    if st.is_dir && !recursive {
        return Err(CliError::new(
            EddyCode::IsADirectory,
            format!("{}: is a directory (copy it with -r)", show(src)),
        ));
    }
    let src = st.path.clone();
    let dst = match fs.stat(dst).await {
        Ok(d) if d.is_dir => child(&d.path, base_name(&src)),
        Ok(d) => d.path,
        Err(e) if e.code() == eddy_client::EddyCode::NotFound => dst.to_vec(),
        Err(e) => return Err(e.into()),
    };
    if dst == src || (st.is_dir && dst.starts_with(&child(&src, b""))) {
        return Err(CliError::new(
            EddyCode::InvalidArgument,
            format!("cannot copy {} into itself ({})", show(&src), show(&dst)),
        ));
    }
    // The plan first: directories to make, files with their lengths.
    let mut dirs: Vec<Vec<u8>> = Vec::new();
    let mut files: Vec<(pb::FileStatus, Vec<u8>)> = Vec::new();
    let mut todo = vec![(st, dst.clone())];
    while let Some((s, d)) = todo.pop() {
        if s.is_dir {
            for c in fs.list(&s.path).await? {
                let to = child(&d, &c.name);
                todo.push((c, to));
            }
            dirs.push(d);
        } else {
            files.push((s, d));
        }
    }
    dirs.sort();
    files.sort_by(|a, b| a.1.cmp(&b.1));
    let total: u64 = files.iter().map(|(s, _)| s.length).sum();
    let start = Instant::now();
    for d in &dirs {
        fs.mkdir(d, true).await?;
    }
    let pb = bar(total, &format!("copying {}", show(&src)));
    let mut buf = vec![0u8; CHUNK];
    for (s, d) in &files {
        let opts = CreateOptions {
            block_size: if o.block_size == 0 {
                s.block_size
            } else {
                o.block_size
            },
            write_type: o.write_type,
            ..Default::default()
        };
        let mut r = fs.open(&s.path, &OpenOptions::default()).await?;
        let mut w = fs.create(d, &opts).await?;
        loop {
            let n = match r.read(&mut buf).await {
                Ok(n) => n,
                Err(e) => {
                    let _ = w.cancel().await;
                    return Err(e.into());
                }
            };
            if n == 0 {
                break;
            }
            w.write(&buf[..n]).await?;
            pb.inc(n as u64);
        }
        w.close().await?;
    }
    pb.finish_and_clear();
    outln!(
        "copied {} ({} files) to {} in {:.2}s ({})",
        bytes(total),
        files.len(),
        show(&dst),
        start.elapsed().as_secs_f64(),
        rate(total, start.elapsed())
    );
    Ok(())
}

/// Prints the MD5 of each file's bytes as `HEX  PATH`, as md5sum does.
pub async fn checksum(fs: &FileSystem, paths: &[Vec<u8>]) -> Result<(), CliError> {
    each_path(paths, |p| checksum_one(fs, p)).await
}

async fn checksum_one(fs: &FileSystem, path: &[u8]) -> Result<(), CliError> {
    use md5::{Digest, Md5};
    let mut r = fs.open(path, &OpenOptions::default()).await?;
    let mut h = Md5::new();
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    outln!("{hex}  {}", show(path));
    Ok(())
}

/// Runs `f` on every path, as `ls a b` and `md5sum a b` do: a path that
/// fails does not stop the others. Each failure is one stderr line; the
/// last one is returned so the command exits 1.
pub async fn each_path<'a, F, Fut>(paths: &'a [Vec<u8>], mut f: F) -> Result<(), CliError>
where
    F: FnMut(&'a [u8]) -> Fut,
    Fut: std::future::Future<Output = Result<(), CliError>>,
{
    let mut failed: Option<CliError> = None;
    for p in paths {
        if let Err(e) = f(p).await
            && let Some(earlier) = failed.replace(e)
        {
            eprintln!("eddy: {earlier}");
        }
    }
    failed.map_or(Ok(()), Err)
}

/// Caches `path` now and says what moved: a rate only over bytes that
/// were loaded, never over bytes that were cached already.
pub async fn load(fs: &FileSystem, path: &[u8]) -> Result<(), CliError> {
    let start = Instant::now();
    let pb = bar(0, &format!("loading {}", show(path)));
    let p = fs
        .load(path, |p| {
            pb.set_length(p.bytes_total);
            pb.set_position(p.bytes_done);
        })
        .await?;
    pb.finish_and_clear();
    let took = start.elapsed();
    let loaded = p.bytes_done - p.bytes_already_cached;
    if loaded == 0 {
        outln!(
            "{}: nothing to load; {} in {} files already cached",
            show(path),
            bytes(p.bytes_total),
            p.files_total
        );
    } else {
        outln!(
            "loaded {} into the workers in {:.2}s ({}); {} in {} files, {} of it already cached",
            bytes(loaded),
            took.as_secs_f64(),
            rate(loaded, took),
            bytes(p.bytes_total),
            p.files_total,
            bytes(p.bytes_already_cached)
        );
    }
    Ok(())
}

pub async fn free(fs: &FileSystem, path: &[u8], force: bool) -> Result<(), CliError> {
    let n = fs.free(path, true, force).await?;
    outln!("freed {} ({n} cached block copies)", show(path));
    Ok(())
}

/// Files, directories and bytes under `path` (which is counted itself).
async fn walk(fs: &FileSystem, path: &[u8]) -> Result<(u64, u64, u64, u64), CliError> {
    let (mut files, mut dirs, mut size, mut cached) = (0, 0, 0, 0);
    let root = fs.stat(path).await?;
    let mut stack = vec![root];
    while let Some(s) = stack.pop() {
        if s.is_dir {
            dirs += 1;
            stack.extend(fs.list(&s.path).await?);
        } else {
            files += 1;
            size += s.length;
            cached += s.length * u64::from(s.percent_cached) / 100;
        }
    }
    Ok((files, dirs, size, cached))
}

pub async fn du(fs: &FileSystem, path: &[u8], summary: bool, human: bool) -> Result<(), CliError> {
    let fmt = |n: u64| if human { bytes(n) } else { n.to_string() };
    outln!("{:>14} {:>14}  PATH", "SIZE", "IN EDDY");
    let root = fs.stat(path).await?;
    let entries = if summary || !root.is_dir {
        vec![root]
    } else {
        fs.list(path).await?
    };
    for e in entries {
        let (_, _, size, cached) = walk(fs, &e.path).await?;
        outln!("{:>14} {:>14}  {}", fmt(size), fmt(cached), show(&e.path));
    }
    Ok(())
}

pub async fn count(fs: &FileSystem, path: &[u8]) -> Result<(), CliError> {
    let (files, dirs, size, _) = walk(fs, path).await?;
    outln!("{:>12} {:>12} {:>16}", "FILE COUNT", "DIR COUNT", "SIZE");
    outln!("{files:>12} {dirs:>12} {size:>16}");
    Ok(())
}
