//! `eddy fs` commands that move bytes: cat, head, tail, put/copyFromLocal,
//! get/copyToLocal, cp, checksum, load, free, du, count.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use eddy_client::{ClientError, CreateOptions, FileSystem, OpenOptions, pb};
use indicatif::{ProgressBar, ProgressStyle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::format::bytes;

/// Chunk size for streaming copies.
const CHUNK: usize = 4 << 20;

fn show(p: &[u8]) -> String {
    String::from_utf8_lossy(p).into_owned()
}

fn err(e: ClientError) -> String {
    e.to_string()
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
) -> Result<(), String> {
    let mut r = fs.open(path, &OpenOptions::default()).await.map_err(err)?;
    let size = r.len();
    let (start, n) = match (tail, len) {
        (true, Some(n)) => (size.saturating_sub(n), n.min(size)),
        (false, Some(n)) => (from.unwrap_or(0), n.min(size)),
        (_, None) => (0, size),
    };
    r.seek(std::io::SeekFrom::Start(start)).map_err(err)?;
    let mut out = std::io::stdout().lock();
    let mut left = n;
    let mut buf = vec![0u8; CHUNK.min(n.max(1) as usize)];
    while left > 0 {
        let want = (left as usize).min(buf.len());
        let got = r.read(&mut buf[..want]).await.map_err(err)?;
        if got == 0 {
            break;
        }
        if let Err(e) = out.write_all(&buf[..got]) {
            // A closed pipe (`eddy fs cat f | head`) is not an error.
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                return Ok(());
            }
            return Err(format!("cannot write to stdout: {e}"));
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
pub async fn put(fs: &FileSystem, local: &Path, dst: &[u8], o: &PutOptions) -> Result<(), String> {
    let meta = std::fs::metadata(local).map_err(|e| format!("{}: {e}", local.display()))?;
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
    println!(
        "copied {} to {} in {:.2}s ({})",
        bytes(total),
        show(&dst),
        start.elapsed().as_secs_f64(),
        rate(total, start.elapsed())
    );
    Ok(())
}

fn join(dir: &[u8], local: &Path) -> Result<Vec<u8>, String> {
    use std::os::unix::ffi::OsStrExt;
    let name = local
        .file_name()
        .ok_or_else(|| format!("{} has no file name", local.display()))?;
    Ok(child(dir, name.as_bytes()))
}

async fn put_dir(
    fs: &FileSystem,
    local: &Path,
    dst: &[u8],
    o: &PutOptions,
    total: &mut u64,
) -> Result<(), String> {
    fs.mkdir(dst, true).await.map_err(err)?;
    let mut entries: Vec<PathBuf> = std::fs::read_dir(local)
        .map_err(|e| format!("{}: {e}", local.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for e in entries {
        let child = join(dst, &e)?;
        let m = std::fs::metadata(&e).map_err(|x| format!("{}: {x}", e.display()))?;
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
) -> Result<u64, String> {
    let mut f = tokio::fs::File::open(local)
        .await
        .map_err(|e| format!("{}: {e}", local.display()))?;
    let opts = CreateOptions {
        block_size: o.block_size,
        write_type: o.write_type,
        ..Default::default()
    };
    let mut w = fs.create(dst, &opts).await.map_err(err)?;
    let pb = bar(len, &show(dst));
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match f.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                let _ = w.cancel().await;
                return Err(format!("{}: {e}", local.display()));
            }
        };
        w.write(&buf[..n]).await.map_err(err)?;
        pb.inc(n as u64);
    }
    let written = w.written();
    w.close().await.map_err(err)?;
    pb.finish_and_clear();
    Ok(written)
}

/// Copies an Eddy file to a local path (into it, if it is a directory).
pub async fn get(fs: &FileSystem, src: &[u8], local: &Path) -> Result<(), String> {
    let target = if local.is_dir() {
        let name = src.rsplit(|&c| c == b'/').next().unwrap_or(b"file");
        local.join(String::from_utf8_lossy(name).as_ref())
    } else {
        local.to_path_buf()
    };
    let start = Instant::now();
    let mut r = fs.open(src, &OpenOptions::default()).await.map_err(err)?;
    // Write beside the target and rename at the end: no half file on failure.
    let tmp = target.with_extension("eddy-part");
    let mut f = tokio::fs::File::create(&tmp)
        .await
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    let pb = bar(r.len(), &show(src));
    let mut buf = vec![0u8; CHUNK];
    let result: Result<u64, String> = async {
        let mut total = 0u64;
        loop {
            let n = r.read(&mut buf).await.map_err(err)?;
            if n == 0 {
                break;
            }
            f.write_all(&buf[..n])
                .await
                .map_err(|e| format!("{}: {e}", tmp.display()))?;
            total += n as u64;
            pb.inc(n as u64);
        }
        f.flush()
            .await
            .map_err(|e| format!("{}: {e}", tmp.display()))?;
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
    std::fs::rename(&tmp, &target).map_err(|e| format!("{}: {e}", target.display()))?;
    println!(
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
) -> Result<(), String> {
    let st = fs.stat(src).await.map_err(err)?;
    if st.is_dir && !recursive {
        return Err(format!("{}: is a directory (copy it with -r)", show(src)));
    }
    let src = st.path.clone();
    let dst = match fs.stat(dst).await {
        Ok(d) if d.is_dir => child(&d.path, base_name(&src)),
        Ok(d) => d.path,
        Err(e) if e.code() == eddy_client::EddyCode::NotFound => dst.to_vec(),
        Err(e) => return Err(err(e)),
    };
    if dst == src || (st.is_dir && dst.starts_with(&child(&src, b""))) {
        return Err(format!(
            "cannot copy {} into itself ({})",
            show(&src),
            show(&dst)
        ));
    }
    // The plan first: directories to make, files with their lengths.
    let mut dirs: Vec<Vec<u8>> = Vec::new();
    let mut files: Vec<(pb::FileStatus, Vec<u8>)> = Vec::new();
    let mut todo = vec![(st, dst.clone())];
    while let Some((s, d)) = todo.pop() {
        if s.is_dir {
            for c in fs.list(&s.path).await.map_err(err)? {
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
        fs.mkdir(d, true).await.map_err(err)?;
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
        let mut r = fs
            .open(&s.path, &OpenOptions::default())
            .await
            .map_err(err)?;
        let mut w = fs.create(d, &opts).await.map_err(err)?;
        loop {
            let n = match r.read(&mut buf).await {
                Ok(n) => n,
                Err(e) => {
                    let _ = w.cancel().await;
                    return Err(format!("{}: {e}", show(&s.path)));
                }
            };
            if n == 0 {
                break;
            }
            w.write(&buf[..n]).await.map_err(err)?;
            pb.inc(n as u64);
        }
        w.close().await.map_err(err)?;
    }
    pb.finish_and_clear();
    println!(
        "copied {} ({} files) to {} in {:.2}s ({})",
        bytes(total),
        files.len(),
        show(&dst),
        start.elapsed().as_secs_f64(),
        rate(total, start.elapsed())
    );
    Ok(())
}

/// Prints the MD5 of a file's bytes as `HEX  PATH`.
pub async fn checksum(fs: &FileSystem, path: &[u8]) -> Result<(), String> {
    use md5::{Digest, Md5};
    let mut r = fs.open(path, &OpenOptions::default()).await.map_err(err)?;
    let mut h = Md5::new();
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = r.read(&mut buf).await.map_err(err)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    println!("{hex}  {}", show(path));
    Ok(())
}

pub async fn load(fs: &FileSystem, path: &[u8]) -> Result<(), String> {
    let start = Instant::now();
    let pb = bar(0, &format!("loading {}", show(path)));
    let p = fs
        .load(path, |p| {
            pb.set_length(p.bytes_total);
            pb.set_position(p.bytes_done);
        })
        .await
        .map_err(err)?;
    pb.finish_and_clear();
    println!(
        "loaded {} ({} files) in {:.2}s, {}",
        bytes(p.bytes_total),
        p.files_total,
        start.elapsed().as_secs_f64(),
        rate(p.bytes_total, start.elapsed())
    );
    Ok(())
}

pub async fn free(fs: &FileSystem, path: &[u8], force: bool) -> Result<(), String> {
    let n = fs.free(path, true, force).await.map_err(err)?;
    println!("freed {} ({n} cached block copies)", show(path));
    Ok(())
}

/// Files, directories and bytes under `path` (which is counted itself).
async fn walk(fs: &FileSystem, path: &[u8]) -> Result<(u64, u64, u64, u64), String> {
    let (mut files, mut dirs, mut size, mut cached) = (0, 0, 0, 0);
    let root = fs.stat(path).await.map_err(err)?;
    let mut stack = vec![root];
    while let Some(s) = stack.pop() {
        if s.is_dir {
            dirs += 1;
            stack.extend(fs.list(&s.path).await.map_err(err)?);
        } else {
            files += 1;
            size += s.length;
            cached += s.length * u64::from(s.percent_cached) / 100;
        }
    }
    Ok((files, dirs, size, cached))
}

pub async fn du(fs: &FileSystem, path: &[u8], summary: bool, human: bool) -> Result<(), String> {
    let fmt = |n: u64| if human { bytes(n) } else { n.to_string() };
    println!("{:>14} {:>14}  PATH", "SIZE", "IN EDDY");
    let root = fs.stat(path).await.map_err(err)?;
    let entries = if summary || !root.is_dir {
        vec![root]
    } else {
        fs.list(path).await.map_err(err)?
    };
    for e in entries {
        let (_, _, size, cached) = walk(fs, &e.path).await?;
        println!("{:>14} {:>14}  {}", fmt(size), fmt(cached), show(&e.path));
    }
    Ok(())
}

pub async fn count(fs: &FileSystem, path: &[u8]) -> Result<(), String> {
    let (files, dirs, size, _) = walk(fs, path).await?;
    println!("{:>12} {:>12} {:>16}", "FILE COUNT", "DIR COUNT", "SIZE");
    println!("{files:>12} {dirs:>12} {size:>16}");
    Ok(())
}
