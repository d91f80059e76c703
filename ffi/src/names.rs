//! Entry points on the namespace: stat, list, mkdir, delete, rename,
//! mount, unmount, free, load, pin.

use std::ffi::{CString, c_char, c_int, c_void};

use eddy_client::{ClientError, FileSystem};

use crate::*;

/// Status of `path` into `*out`. Thread-safe.
///
/// # Safety
/// `path` is a NUL-terminated string; `out` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn eddy_stat(
    client: *mut eddy_client_t,
    path: *const c_char,
    out: *mut eddy_status_t,
) -> c_int {
    guard(|| {
        let c = self::client(client)?;
        // SAFETY: the caller's promise for `path`.
        let p = unsafe { cstr(path, "path")? };
        let s = runtime().block_on(c.fs.stat(p))?;
        // SAFETY: the caller's promise for `out`.
        unsafe { put(out, status_of(&s), "out") }
    })
}

/// Lists directory `path` (or the file itself), calling `cb(ctx, name,
/// status)` per entry in name order. Thread-safe.
///
/// # Safety
/// `path` is a NUL-terminated string; `cb` is a valid function.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn eddy_list(
    client: *mut eddy_client_t,
    path: *const c_char,
    cb: eddy_list_cb,
    ctx: *mut c_void,
) -> c_int {
    let mut stopped = 0;
    let r = guard(|| {
        let c = self::client(client)?;
        // SAFETY: the caller's promise for `path`.
        let p = unsafe { cstr(path, "path")? };
        let cb = cb.ok_or_else(|| invalid("callback is NULL"))?;
        let entries = runtime().block_on(c.fs.list(p))?;
        for e in entries {
            let name = CString::new(e.name.clone()).unwrap_or_default();
            let st = status_of(&e);
            // SAFETY: the caller promises `cb` is a valid function; the
            // name and status outlive the call.
            let rc = unsafe { cb(ctx, name.as_ptr(), &st) };
            if rc != 0 {
                stopped = rc;
                break;
            }
        }
        Ok(())
    });
    if r == EDDY_OK { stopped } else { r }
}

/// Runs `f` on a client and a path argument.
///
/// # Safety
/// `path` is NULL or a NUL-terminated string.
unsafe fn with_path(
    client: *mut eddy_client_t,
    path: *const c_char,
    f: impl FnOnce(&FileSystem, &[u8]) -> Result<(), ClientError>,
) -> c_int {
    guard(|| {
        let c = self::client(client)?;
        // SAFETY: the caller's promise for `path`.
        let p = unsafe { cstr(path, "path")? };
        f(&c.fs, p)?;
        Ok(())
    })
}

/// Creates directory `path` (with missing parents when `recursive` is
/// non-zero). Thread-safe.
///
/// # Safety
/// `path` is NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn eddy_mkdir(
    client: *mut eddy_client_t,
    path: *const c_char,
    recursive: c_int,
) -> c_int {
    // SAFETY: the caller's promise, passed on.
    unsafe {
        with_path(client, path, |fs, p| {
            runtime().block_on(fs.mkdir(p, recursive != 0)).map(|_| ())
        })
    }
}

/// Deletes `path` (a non-empty directory only with `recursive`), in the
/// under-storage too. Thread-safe.
///
/// # Safety
/// `path` is NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn eddy_delete(
    client: *mut eddy_client_t,
    path: *const c_char,
    recursive: c_int,
) -> c_int {
    // SAFETY: the caller's promise, passed on.
    unsafe {
        with_path(client, path, |fs, p| {
            runtime().block_on(fs.delete(p, recursive != 0))
        })
    }
}

/// Removes the mount at `path` (the under-storage is untouched). Thread-safe.
///
/// # Safety
/// `path` is NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn eddy_unmount(client: *mut eddy_client_t, path: *const c_char) -> c_int {
    // SAFETY: the caller's promise, passed on.
    unsafe { with_path(client, path, |fs, p| runtime().block_on(fs.unmount(p))) }
}

/// Drops cached copies of `path` (a directory: every file below) from the
/// workers; the under-storage keeps the data. Thread-safe.
///
/// # Safety
/// `path` is NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn eddy_free(client: *mut eddy_client_t, path: *const c_char) -> c_int {
    // SAFETY: the caller's promise, passed on.
    unsafe {
        with_path(client, path, |fs, p| {
            runtime().block_on(fs.free(p, true, false)).map(|_| ())
        })
    }
}

/// Caches `path` (a directory: every file below) in the workers now.
/// Thread-safe.
///
/// # Safety
/// `path` is NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn eddy_load(client: *mut eddy_client_t, path: *const c_char) -> c_int {
    // SAFETY: the caller's promise, passed on.
    unsafe {
        with_path(client, path, |fs, p| {
            runtime().block_on(fs.load(p, |_| {})).map(|_| ())
        })
    }
}

/// Pins (`pinned` non-zero) or unpins `path` and everything below: pinned
/// files are never evicted. Thread-safe.
///
/// # Safety
/// `path` is NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn eddy_pin(
    client: *mut eddy_client_t,
    path: *const c_char,
    pinned: c_int,
) -> c_int {
    // SAFETY: the caller's promise, passed on.
    unsafe {
        with_path(client, path, |fs, p| {
            runtime().block_on(fs.pin(p, pinned != 0)).map(|_| ())
        })
    }
}

/// Renames `src` to `dst` (atomic in Eddy). Thread-safe.
///
/// # Safety
/// Strings are NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn eddy_rename(
    client: *mut eddy_client_t,
    src: *const c_char,
    dst: *const c_char,
) -> c_int {
    guard(|| {
        let c = self::client(client)?;
        // SAFETY: the caller's promise for both strings.
        let (s, d) = unsafe { (cstr(src, "src")?, cstr(dst, "dst")?) };
        runtime().block_on(c.fs.rename(s, d))?;
        Ok(())
    })
}

/// Mounts the under-storage at `uri` (e.g. "file:///data") at `path`,
/// read-only when `read_only` is non-zero. Thread-safe.
///
/// # Safety
/// Strings are NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn eddy_mount(
    client: *mut eddy_client_t,
    path: *const c_char,
    uri: *const c_char,
    read_only: c_int,
) -> c_int {
    guard(|| {
        let c = self::client(client)?;
        // SAFETY: the caller's promise for both strings.
        let (p, u) = unsafe { (cstr(path, "path")?, cstr(uri, "uri")?) };
        let u = std::str::from_utf8(u).map_err(|_| invalid("uri is not UTF-8"))?;
        runtime().block_on(c.fs.mount(p, u, read_only != 0, HashMap::new(), None))?;
        Ok(())
    })
}
