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
use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

mod jni_glue;

use eddy_client::{
    ClientError, ClientOptions, CreateOptions, FileReader, FileSystem, FileWriter, MappedRange,
    OpenOptions, ReadType, pb,
};

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
/// A bug in Eddy (including a caught panic); see the message.
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

// ---- runtime, errors, handles ----

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("eddy-ffi")
            .enable_all()
            .build()
            .expect("the Eddy client runtime starts")
    })
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

struct Fail(c_int, String);

impl From<ClientError> for Fail {
    fn from(e: ClientError) -> Self {
        Fail(-(e.code() as i32), e.to_string())
    }
}

fn invalid(msg: impl Into<String>) -> Fail {
    Fail(EDDY_ERR_INVALID_ARGUMENT, msg.into())
}

/// Runs an entry point: no panic crosses the boundary, and a failure sets
/// this thread's last error message.
fn guard(f: impl FnOnce() -> Result<(), Fail>) -> c_int {
    let r = catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|p| {
        let what = p
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(Fail(
            EDDY_ERR_INTERNAL,
            format!("internal error in libeddy (a bug): {what}"),
        ))
    });
    match r {
        Ok(()) => EDDY_OK,
        Err(Fail(code, msg)) => {
            let msg = CString::new(msg.replace('\0', " ")).unwrap_or_default();
            LAST_ERROR.with(|l| *l.borrow_mut() = msg);
            code
        }
    }
}

static NEXT_HANDLE: AtomicU64 = AtomicU64::new(1);

/// Live handles of one kind, by id. Ids are never reused, so a stale handle
/// can never reach another object.
struct Registry<T>(OnceLock<Mutex<HashMap<u64, Arc<T>>>>);

impl<T> Registry<T> {
    const fn new() -> Self {
        Self(OnceLock::new())
    }
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<T>>> {
        self.0
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }
    fn add(&self, v: T) -> u64 {
        let id = NEXT_HANDLE.fetch_add(1, Ordering::Relaxed);
        self.map().insert(id, Arc::new(v));
        id
    }
    fn get(&self, h: *const c_void, what: &str) -> Result<Arc<T>, Fail> {
        self.map()
            .get(&(h as u64))
            .cloned()
            .ok_or_else(|| bad_handle(what))
    }
    fn take(&self, h: *const c_void, what: &str) -> Result<Arc<T>, Fail> {
        self.map()
            .remove(&(h as u64))
            .ok_or_else(|| bad_handle(what))
    }
}

fn bad_handle(what: &str) -> Fail {
    Fail(
        EDDY_ERR_BAD_HANDLE,
        format!("{what} handle is NULL, already closed, or not one this library issued"),
    )
}

struct Client {
    fs: FileSystem,
}

enum FileObj {
    Reader {
        reader: Arc<FileReader>,
        pos: Mutex<u64>,
    },
    Writer(Mutex<Option<Box<FileWriter>>>),
}

static CLIENTS: Registry<Client> = Registry::new();
static FILES: Registry<FileObj> = Registry::new();
static VIEWS: Registry<MappedRange> = Registry::new();

/// # Safety
/// `p` is NULL or a NUL-terminated string valid for the call.
unsafe fn cstr<'a>(p: *const c_char, what: &str) -> Result<&'a [u8], Fail> {
    if p.is_null() {
        return Err(invalid(format!("{what} is NULL")));
    }
    // SAFETY: non-NULL, and the caller promises a NUL-terminated string.
    Ok(unsafe { CStr::from_ptr(p) }.to_bytes())
}

/// # Safety
/// `p` is NULL or valid for one write of `T`.
unsafe fn put<T>(p: *mut T, v: T, what: &str) -> Result<(), Fail> {
    if p.is_null() {
        return Err(invalid(format!("{what} (an out-parameter) is NULL")));
    }
    // SAFETY: non-NULL, and the caller promises it is writable.
    unsafe { p.write(v) };
    Ok(())
}

fn status_of(s: &pb::FileStatus) -> eddy_status_t {
    eddy_status_t {
        id: s.id,
        length: s.length,
        block_size: s.block_size,
        mtime_ms: s.mtime_ms,
        mode: s.mode,
        percent_cached: s.percent_cached,
        is_dir: u8::from(s.is_dir),
        complete: u8::from(s.complete),
        persisted: u8::from(s.persisted),
        pinned: u8::from(s.pinned),
    }
}

/// An `EDDY_READ_*` value (shared by the C ABI and JNI).
fn read_type_of(t: c_int) -> Result<ReadType, Fail> {
    match t {
        EDDY_READ_CACHE => Ok(ReadType::Cache),
        EDDY_READ_NO_CACHE => Ok(ReadType::NoCache),
        EDDY_READ_CACHE_PROMOTE => Ok(ReadType::CachePromote),
        t => Err(invalid(format!("unknown read type {t}"))),
    }
}

/// An `EDDY_WRITE_*` value, 0 for the default (shared by the C ABI and JNI).
fn write_type_of(t: c_int) -> Result<pb::WriteType, Fail> {
    match t {
        0 | EDDY_WRITE_MUST_CACHE => Ok(pb::WriteType::MustCache),
        EDDY_WRITE_CACHE_THROUGH => Ok(pb::WriteType::CacheThrough),
        EDDY_WRITE_THROUGH => Ok(pb::WriteType::Through),
        t => Err(invalid(format!("unknown write type {t}"))),
    }
}

fn client(h: *const eddy_client_t) -> Result<Arc<Client>, Fail> {
    CLIENTS.get(h.cast(), "client")
}

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

// ---- client ----

/// Connects to the master at `master` ("host:port"). `keys`/`values` hold
/// `n_options` options (both may be NULL when `n_options` is 0):
/// "short_circuit" = "true" | "false" (default "true": map blocks of a
/// worker on this host instead of copying them over TCP);
/// "timeout_ms" = a decimal number of milliseconds, 1 or more (default
/// 60000): the longest any one exchange with the master or a worker may
/// wait for its answer, connecting included; past it the call fails with
/// EDDY_ERR_DEADLINE_EXCEEDED. This call itself waits at most 5 s (or
/// timeout_ms if smaller) for the master;
/// "metadata_cache_ms" = a decimal number of milliseconds, 0 or more
/// (default 1000): how long `eddy_open` may reuse a complete file's metadata
/// without asking the master, i.e. how long a delete, rename or rewrite by
/// *another* client may go unseen by this one (also while no master is
/// running); 0 caches nothing. This client's own create, close, rename and
/// delete are always seen at once.
/// On success `*out` is a client handle; free it with `eddy_disconnect`.
/// Thread-safe.
///
/// # Safety
/// `master` is a NUL-terminated string; `keys` and `values` point to
/// `n_options` NUL-terminated strings each; `out` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn eddy_connect(
    master: *const c_char,
    keys: *const *const c_char,
    values: *const *const c_char,
    n_options: usize,
    out: *mut *mut eddy_client_t,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's promise for `master`.
        let addr = std::str::from_utf8(unsafe { cstr(master, "master")? })
            .map_err(|_| invalid("master address is not UTF-8"))?
            .to_string();
        let mut opts = ClientOptions::default();
        if n_options > 0 && (keys.is_null() || values.is_null()) {
            return Err(invalid("option keys or values are NULL"));
        }
        for i in 0..n_options {
            // SAFETY: `keys` and `values` hold `n_options` entries.
            let (k, v) = unsafe { (*keys.add(i), *values.add(i)) };
            // SAFETY: each entry is a NUL-terminated string (or NULL, refused).
            let (k, v) = unsafe { (cstr(k, "option key")?, cstr(v, "option value")?) };
            match (k, v) {
                (b"short_circuit", b"true") => opts.short_circuit = true,
                (b"short_circuit", b"false") => opts.short_circuit = false,
                (b"timeout_ms", v) => opts.timeout = parse_timeout(v)?,
                (b"metadata_cache_ms", v) => opts.metadata_ttl = parse_cache_ms(v)?,
                _ => {
                    return Err(invalid(format!(
                        "unknown option {}={} (known: short_circuit=true|false, timeout_ms=N, metadata_cache_ms=N)",
                        String::from_utf8_lossy(k),
                        String::from_utf8_lossy(v)
                    )));
                }
            }
        }
        if out.is_null() {
            return Err(invalid("out is NULL"));
        }
        let fs = runtime().block_on(FileSystem::connect_with(&addr, opts))?;
        let id = CLIENTS.add(Client { fs });
        // SAFETY: checked non-NULL above; the caller promises it is writable.
        unsafe { put(out, id as *mut eddy_client_t, "out") }
    })
}

/// `timeout_ms`'s value: whole milliseconds, at least 1.
fn parse_timeout(v: &[u8]) -> Result<std::time::Duration, Fail> {
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .filter(|&ms| ms >= 1)
        .map(std::time::Duration::from_millis)
        .ok_or_else(|| {
            invalid(format!(
                "timeout_ms={} is not a whole number of milliseconds >= 1",
                String::from_utf8_lossy(v)
            ))
        })
}

/// `metadata_cache_ms`'s value: whole milliseconds, 0 allowed.
fn parse_cache_ms(v: &[u8]) -> Result<std::time::Duration, Fail> {
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map(std::time::Duration::from_millis)
        .ok_or_else(|| {
            invalid(format!(
                "metadata_cache_ms={} is not a whole number of milliseconds >= 0",
                String::from_utf8_lossy(v)
            ))
        })
}

/// Frees a client handle. Files and views opened through it stay usable
/// until closed. Thread-safe, but no other call may use the handle after.
///
/// # Safety
/// None beyond passing a handle (a bad one is reported, not dereferenced).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn eddy_disconnect(client: *mut eddy_client_t) -> c_int {
    guard(|| CLIENTS.take(client.cast(), "client").map(|_| ()))
}

// ---- namespace ----

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

// ---- files ----

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
/// becomes readable when `eddy_close` succeeds. Thread-safe.
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

fn reader(f: *mut eddy_file_t) -> Result<(Arc<FileObj>, Arc<FileReader>), Fail> {
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

// ---- zero-copy views ----

/// Maps `len` bytes at `offset` of an open file, zero-copy, from a worker on
/// this host: `*data` points at the bytes (read-only) and stays valid until
/// `eddy_view_release(*view)`, even after `eddy_close` of the file. The
/// range must lie within one block (split at multiples of the file's block
/// size); without a worker on this host reachable over its Unix socket this
/// is EDDY_ERR_UNSUPPORTED (use `eddy_pread`). Thread-safe.
///
/// # Safety
/// `view` and `data` are writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn eddy_map(
    file: *mut eddy_file_t,
    offset: u64,
    len: u64,
    view: *mut *mut eddy_view_t,
    data: *mut *const u8,
) -> c_int {
    guard(|| {
        let (_obj, r) = reader(file)?;
        if view.is_null() || data.is_null() {
            return Err(invalid("view or data (out-parameters) is NULL"));
        }
        let m = runtime().block_on(r.map_range(offset, len))?;
        let ptr = m.as_ptr();
        let id = VIEWS.add(m);
        // SAFETY: both checked non-NULL; the caller promises they are writable.
        unsafe {
            put(view, id as *mut eddy_view_t, "view")?;
            put(data, ptr, "data")
        }
    })
}

/// Releases a view (and, with the last one, the block's lease). The bytes
/// must not be touched afterwards. Thread-safe.
///
/// # Safety
/// None beyond passing a handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn eddy_view_release(view: *mut eddy_view_t) -> c_int {
    guard(|| {
        let v = VIEWS.take(view.cast(), "view")?;
        let _guard = runtime().enter();
        drop(v);
        Ok(())
    })
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
