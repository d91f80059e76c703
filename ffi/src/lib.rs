//! Eddy's C ABI: the Rust client (`eddy-client`) behind opaque handles and
//! `int` status codes. The header, `include/eddy.h`, is generated from this
//! file by cbindgen (see `cbindgen.toml`); doc comments here become the
//! header's documentation, so they are written for C programmers.
//!
//! Safety model: handles are ids in a registry, not pointers, so a NULL,
//! closed or invented handle is detected (`EDDY_ERR_BAD_HANDLE`) instead of
//! dereferenced. Every entry point catches panics. Calls block the calling
//! thread on a runtime owned by the library.
//!
//! Architecture invariant: this crate depends only on `eddy-client`.

#![allow(non_camel_case_types)]

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{CStr, c_char, c_int, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

mod handles;
mod jni_glue;
mod runtime;

// Entry points, declared in the order the header lists them (cbindgen
// follows the declarations).
mod connect;

mod names;

mod files;

mod views;

mod bufs;

pub use bufs::*;
pub use connect::*;
pub use files::*;
use handles::*;
pub use names::*;
use runtime::runtime;
pub use views::*;

/// Major version of this library (semantic versioning).
pub const EDDY_VERSION_MAJOR: u32 = 0;
/// Minor version of this library.
pub const EDDY_VERSION_MINOR: u32 = 1;
/// Patch version of this library.
pub const EDDY_VERSION_PATCH: u32 = 0;

/// Success.
pub const EDDY_OK: c_int = 0;
/// Invalid path: empty, relative, too long, or `..` above `/`.
pub const EDDY_ERR_INVALID_PATH: c_int = -1;
/// No such file or directory.
pub const EDDY_ERR_NOT_FOUND: c_int = -2;
/// The path already exists (files are write-once).
pub const EDDY_ERR_ALREADY_EXISTS: c_int = -3;
/// A path component is a file.
pub const EDDY_ERR_NOT_A_DIRECTORY: c_int = -4;
/// A file operation on a directory.
pub const EDDY_ERR_IS_A_DIRECTORY: c_int = -5;
/// Deleting a non-empty directory without `recursive`.
pub const EDDY_ERR_DIRECTORY_NOT_EMPTY: c_int = -6;
/// A bad argument: NULL buffer, range past the end, bad option, ...
pub const EDDY_ERR_INVALID_ARGUMENT: c_int = -7;
/// The path is under a read-only mount.
pub const EDDY_ERR_READ_ONLY: c_int = -8;
/// A mount conflict (mount over a non-empty path, overlapping mounts, ...).
pub const EDDY_ERR_MOUNT_CONFLICT: c_int = -9;
/// The under-storage cannot be reached.
pub const EDDY_ERR_UFS_UNAVAILABLE: c_int = -10;
/// The under-storage failed an operation.
pub const EDDY_ERR_UFS_ERROR: c_int = -11;
/// The file is still being written.
pub const EDDY_ERR_FILE_INCOMPLETE: c_int = -12;
/// The file was already completed.
pub const EDDY_ERR_FILE_ALREADY_COMPLETE: c_int = -13;
/// No live worker can serve the request.
pub const EDDY_ERR_NO_WORKER_AVAILABLE: c_int = -15;
/// Not supported (e.g. a zero-copy view without a worker on this host).
pub const EDDY_ERR_UNSUPPORTED: c_int = -16;
/// A bug in Eddy (including a caught panic), a metastore failure, or a
/// worker's failed disk (the message names the directory); see the message.
pub const EDDY_ERR_INTERNAL: c_int = -17;
/// The master or a worker cannot be reached; or, right after a master
/// restart, a block's copy is not known yet because its worker has not
/// registered again (the read waited up to the timeout). Retry.
pub const EDDY_ERR_UNAVAILABLE: c_int = -18;
/// A worker's cache has no room (the rest is pinned or in use).
pub const EDDY_ERR_NO_SPACE: c_int = -19;
/// A handle that is NULL, already closed or released, or never issued.
pub const EDDY_ERR_BAD_HANDLE: c_int = -21;
/// The file's only copies were on workers that are gone and it was never
/// persisted: its bytes cannot be read. Delete or rewrite it. (Not while a
/// restarted master still waits for its workers to register.)
pub const EDDY_ERR_DATA_LOST: c_int = -22;
/// A master or worker did not answer within the client's timeout (option
/// "timeout_ms" of `eddy_connect`; connecting included). Retry later.
pub const EDDY_ERR_DEADLINE_EXCEEDED: c_int = -23;
/// The master refused the caller's credential (security "token" mode): none
/// was given, or it is malformed, expired or signed with an unknown key. Set
/// option "token" of `eddy_connect`, EDDY_TOKEN or a token file.
pub const EDDY_ERR_UNAUTHENTICATED: c_int = -24;
/// The caller may not do this: POSIX permissions of the path or its
/// ancestors, an admin-only operation, or a worker refusing a data request
/// without a valid block token.
pub const EDDY_ERR_PERMISSION_DENIED: c_int = -25;

/// Read types for `eddy_open`.
/// A miss is cached (default).
pub const EDDY_READ_CACHE: c_int = 0;
/// A miss is read through without caching.
pub const EDDY_READ_NO_CACHE: c_int = 1;
/// As CACHE; promotes between tiers where there are tiers.
pub const EDDY_READ_CACHE_PROMOTE: c_int = 2;

/// Write types for `eddy_create`.
/// In worker memory only (fast; lost if the worker goes).
pub const EDDY_WRITE_MUST_CACHE: c_int = 1;
/// In worker memory and the under-storage before close returns.
pub const EDDY_WRITE_CACHE_THROUGH: c_int = 2;
/// In the under-storage only.
pub const EDDY_WRITE_THROUGH: c_int = 3;

/// A connection to an Eddy cluster. Thread-safe: one handle may be used
/// from many threads at once.
pub struct eddy_client_t {
    _private: [u8; 0],
}

/// An open file (for reading, from `eddy_open`, or writing, from
/// `eddy_create`).
pub struct eddy_file_t {
    _private: [u8; 0],
}

/// A zero-copy, read-only view of part of a file (from `eddy_map`).
pub struct eddy_view_t {
    _private: [u8; 0],
}

/// A read buffer owned by the library (from `eddy_buf_new`), read into
/// with `eddy_pread_buf`: RDMA reads land in it with no copy.
pub struct eddy_buf_t {
    _private: [u8; 0],
}

/// What `eddy_stat` and `eddy_list` report about a path.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct eddy_status_t {
    /// Inode id (unique, never reused).
    pub id: u64,
    /// Bytes (0 for directories).
    pub length: u64,
    pub block_size: u64,
    /// Last modification, milliseconds since the Unix epoch.
    pub mtime_ms: i64,
    /// Permission bits, e.g. 0644.
    pub mode: u32,
    /// 0..=100: how much of the file is cached in workers.
    pub percent_cached: u32,
    /// 1 for a directory.
    pub is_dir: u8,
    /// 1 once the file is complete (readable).
    pub complete: u8,
    /// 1 when the under-storage has the data.
    pub persisted: u8,
    /// 1 when pinned (never evicted).
    pub pinned: u8,
}

/// Called by `eddy_list` once per entry, with the entry's name (not its full
/// path) and status, both valid only during the call. Return 0 to go on,
/// anything else to stop the listing (`eddy_list` then returns that value).
pub type eddy_list_cb = Option<
    unsafe extern "C" fn(
        ctx: *mut c_void,
        name: *const c_char,
        status: *const eddy_status_t,
    ) -> c_int,
>;

// ---- version and errors ----

/// The library version, e.g. "0.1.0". Static; never free it. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn eddy_version() -> *const c_char {
    static V: &CStr = c"0.1.0";
    V.as_ptr()
}

/// The message of the last error on the calling thread ("" if none). Valid
/// until the next failing call on this thread; do not free. Thread-safe
/// (each thread has its own).
#[unsafe(no_mangle)]
pub extern "C" fn eddy_last_error_message() -> *const c_char {
    LAST_ERROR.with(|l| l.borrow().as_ptr())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed header is exactly what cbindgen makes of this crate.
    /// `EDDY_BLESS_HEADER=1` rewrites it.
    #[test]
    fn header_is_current() {
        let dir = env!("CARGO_MANIFEST_DIR");
        let cfg = cbindgen::Config::from_file(format!("{dir}/cbindgen.toml")).unwrap();
        let mut fresh = Vec::new();
        cbindgen::Builder::new()
            .with_crate(dir)
            .with_config(cfg)
            .generate()
            .expect("cbindgen generates the header")
            .write(&mut fresh);
        let path = format!("{dir}/../include/eddy.h");
        if std::env::var("EDDY_BLESS_HEADER").is_ok() {
            std::fs::write(&path, &fresh).unwrap();
        }
        let committed = std::fs::read(&path).unwrap_or_default();
        assert!(
            committed == fresh,
            "include/eddy.h is stale: run `EDDY_BLESS_HEADER=1 cargo test -p eddy-ffi --lib header` and commit it"
        );
    }

    #[test]
    fn bad_handles_and_nulls_are_errors_not_crashes() {
        // SAFETY: every pointer below is NULL or invented; the library must
        // refuse them without dereferencing.
        unsafe {
            assert_eq!(eddy_disconnect(std::ptr::null_mut()), EDDY_ERR_BAD_HANDLE);
            assert_eq!(eddy_close(12345 as *mut eddy_file_t), EDDY_ERR_BAD_HANDLE);
            let mut st = eddy_status_t::default();
            assert_eq!(
                eddy_stat(std::ptr::null_mut(), c"/x".as_ptr(), &mut st),
                EDDY_ERR_BAD_HANDLE
            );
            let mut c = std::ptr::null_mut();
            assert_eq!(
                eddy_connect(
                    std::ptr::null(),
                    std::ptr::null(),
                    std::ptr::null(),
                    0,
                    &mut c
                ),
                EDDY_ERR_INVALID_ARGUMENT
            );
            let msg = CStr::from_ptr(eddy_last_error_message()).to_str().unwrap();
            assert!(msg.contains("master is NULL"), "{msg}");
            assert_eq!(
                eddy_connect(
                    c"127.0.0.1:1".as_ptr(),
                    std::ptr::null(),
                    std::ptr::null(),
                    0,
                    &mut c
                ),
                EDDY_ERR_UNAVAILABLE
            );
            assert!(c.is_null(), "no handle on failure");
        }
        assert_eq!(
            // SAFETY: a static string.
            unsafe { CStr::from_ptr(eddy_version()) }.to_str().unwrap(),
            env!("CARGO_PKG_VERSION")
        );
    }
}
