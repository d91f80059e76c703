//! Entry points on files: open, create, read, pread, write, seek, close.

use std::ffi::{c_char, c_int, c_void};
use std::sync::{Arc, Mutex};

use eddy_client::{CreateOptions, FileReader, OpenOptions};

use crate::*;

/// Opens a complete file for reading (`read_type`: EDDY_READ_*). Free the
/// handle with `eddy_close`. Thread-safe.
/// A file is readable as soon as its writer's `eddy_close` succeeded, here
/// or in any other client. A file that another client deleted, renamed or
/// replaced may still open for up to the connect option "metadata_cache_ms"
/// (default 1000 ms; 0: never), this client keeping a complete file's
/// metadata that long, also while no master is running; this client's own
/// changes are seen at once.
///
/// # Safety
/// `path` is NUL-terminated; `out` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn eddy_open(
    client: *mut eddy_client_t,
    path: *const c_char,
    read_type: c_int,
    out: *mut *mut eddy_file_t,
) -> c_int {
    guard(|| {
        let c = self::client(client)?;
        // SAFETY: the caller's promise for `path`.
        let p = unsafe { cstr(path, "path")? };
        let read_type = read_type_of(read_type)?;
        if out.is_null() {
            return Err(invalid("out is NULL"));
        }
        let r = runtime().block_on(c.fs.open(p, &OpenOptions { read_type }))?;
        let id = FILES.add(FileObj::Reader {
            reader: Arc::new(r),
            pos: Mutex::new(0),
        });
        // SAFETY: the caller's promise for `out`.
        unsafe { put(out, id as *mut eddy_file_t, "out") }
    })
}

/// Creates `path` for writing (`write_type`: EDDY_WRITE_*, 0 for the
/// default MUST_CACHE; `block_size` 0 for the master's default). The file
/// becomes readable when `eddy_close` succeeds. Thread-safe. A MUST_CACHE
/// or ASYNC_THROUGH file is placed on a worker at its first byte: with no
/// worker to write to, the first `eddy_write` fails (NO_WORKER_AVAILABLE),
/// not this; an empty one needs no worker at all.
///
/// # Safety
/// `path` is NUL-terminated; `out` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn eddy_create(
    client: *mut eddy_client_t,
    path: *const c_char,
    write_type: c_int,
    block_size: u64,
    out: *mut *mut eddy_file_t,
) -> c_int {
    guard(|| {
        let c = self::client(client)?;
        // SAFETY: the caller's promise for `path`.
        let p = unsafe { cstr(path, "path")? };
        let write_type = write_type_of(write_type)?;
        if out.is_null() {
            return Err(invalid("out is NULL"));
        }
        let o = CreateOptions {
            write_type,
            block_size,
            ..Default::default()
        };
        let w = runtime().block_on(c.fs.create(p, &o))?;
        let id = FILES.add(FileObj::Writer(Mutex::new(Some(Box::new(w)))));
        // SAFETY: the caller's promise for `out`.
        unsafe { put(out, id as *mut eddy_file_t, "out") }
    })
}

pub(crate) fn reader(f: *mut eddy_file_t) -> Result<(Arc<FileObj>, Arc<FileReader>), Fail> {
    let obj = FILES.get(f.cast(), "file")?;
    match &*obj {
        FileObj::Reader { reader, .. } => {
            let r = reader.clone();
            Ok((obj, r))
        }
        FileObj::Writer(_) => Err(invalid("this file was opened for writing")),
    }
}

/// Reads up to `len` bytes at `offset` into the caller's `buf`.
///
/// # Safety
/// `buf` is NULL or writable for `len` bytes.
unsafe fn read_into(
    r: &FileReader,
    buf: *mut c_void,
    len: usize,
    offset: u64,
) -> Result<usize, Fail> {
    buffer_ok(buf, len)?;
    if len == 0 {
        return Ok(0);
    }
    // SAFETY: non-NULL (checked) and writable for `len` bytes (the caller's promise).
    let dst = unsafe { std::slice::from_raw_parts_mut(buf.cast::<u8>(), len) };
    Ok(runtime().block_on(r.read_at(offset, dst))?)
}

/// Checks a caller's buffer: NULL only when empty.
fn buffer_ok(buf: *const c_void, len: usize) -> Result<(), Fail> {
    if buf.is_null() && len > 0 {
        return Err(invalid("buffer is NULL"));
    }
    Ok(())
}

/// Length of an open file (for writers: bytes written so far). Thread-safe.
///
/// # Safety
/// `out` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn eddy_file_length(file: *mut eddy_file_t, out: *mut u64) -> c_int {
    guard(|| {
        let obj = FILES.get(file.cast(), "file")?;
        let n = match &*obj {
            FileObj::Reader { reader, .. } => reader.len(),
            FileObj::Writer(w) => w
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_ref()
                .map_or(0, |w| w.written()),
        };
        // SAFETY: the caller's promise for `out`.
        unsafe { put(out, n, "out") }
    })
}

/// Reads up to `len` bytes at the file's position into `buf`, advancing it;
/// `*nread` is 0 at the end of the file. Thread-safe, but concurrent
/// `eddy_read`s on one handle share one position (use `eddy_pread`).
///
/// # Safety
/// `buf` is writable for `len` bytes; `nread` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn eddy_read(
    file: *mut eddy_file_t,
    buf: *mut c_void,
    len: usize,
    nread: *mut usize,
) -> c_int {
    guard(|| {
        let (obj, r) = reader(file)?;
        let FileObj::Reader { pos, .. } = &*obj else {
            unreachable!("reader() checked")
        };
        let mut pos = pos.lock().unwrap_or_else(|p| p.into_inner());
        // SAFETY: the caller's promise for `buf`.
        let n = unsafe { read_into(&r, buf, len, *pos)? };
        *pos += n as u64;
        // SAFETY: the caller's promise for `nread`.
        unsafe { put(nread, n, "nread") }
    })
}

/// Reads up to `len` bytes at `offset` into `buf` without moving the
/// position; fewer only at the end of the file. Thread-safe: many threads
/// may `eddy_pread` one handle at once.
///
/// # Safety
/// `buf` is writable for `len` bytes; `nread` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn eddy_pread(
    file: *mut eddy_file_t,
    buf: *mut c_void,
    len: usize,
    offset: u64,
    nread: *mut usize,
) -> c_int {
    guard(|| {
        let (_obj, r) = reader(file)?;
        // SAFETY: the caller's promise for `buf`.
        let n = unsafe { read_into(&r, buf, len, offset)? };
        // SAFETY: the caller's promise for `nread`.
        unsafe { put(nread, n, "nread") }
    })
}

/// Appends `len` bytes from `buf` to a file opened with `eddy_create`. Not
/// for concurrent use on one handle (calls are serialised).
///
/// # Safety
/// `buf` is readable for `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn eddy_write(
    file: *mut eddy_file_t,
    buf: *const c_void,
    len: usize,
) -> c_int {
    guard(|| {
        let obj = FILES.get(file.cast(), "file")?;
        let FileObj::Writer(w) = &*obj else {
            return Err(invalid("this file was opened for reading"));
        };
        buffer_ok(buf, len)?;
        if len == 0 {
            return Ok(());
        }
        // SAFETY: non-NULL and readable for `len` bytes (the caller's promise).
        let src = unsafe { std::slice::from_raw_parts(buf.cast::<u8>(), len) };
        let mut g = w.lock().unwrap_or_else(|p| p.into_inner());
        let w = g.as_mut().ok_or_else(|| bad_handle("file"))?;
        runtime().block_on(w.write(src))?;
        Ok(())
    })
}

/// Closes a file and frees its handle. For a file being written this
/// completes it (and reports any failure to store it); for a reader it
/// releases its blocks. Views from `eddy_map` stay valid until released.
/// The handle is freed even when an error is returned.
///
/// # Safety
/// None beyond passing a handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn eddy_close(file: *mut eddy_file_t) -> c_int {
    guard(|| {
        let obj = FILES.take(file.cast(), "file")?;
        if let FileObj::Writer(w) = &*obj {
            let w = w.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(w) = w {
                runtime().block_on(w.close())?;
            }
        }
        // A reader's leases go when the last reference drops.
        let _guard = runtime().enter();
        drop(obj);
        Ok(())
    })
}
