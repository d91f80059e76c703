//! The machinery under every entry point: failures and this thread's last
//! error, handle registries, C strings and out-parameters, and the
//! conversions the C ABI and JNI share.

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::sync::{Arc, Mutex};

use eddy_client::{ClientError, FileReader, FileSystem, FileWriter, MappedRange, ReadType, pb};

use crate::*;

thread_local! {
    pub(crate) static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

pub(crate) struct Fail(pub(crate) c_int, pub(crate) String);

impl From<ClientError> for Fail {
    fn from(e: ClientError) -> Self {
        Fail(-(e.code() as i32), e.to_string())
    }
}

pub(crate) fn invalid(msg: impl Into<String>) -> Fail {
    Fail(EDDY_ERR_INVALID_ARGUMENT, msg.into())
}

/// Runs an entry point: no panic crosses the boundary, and a failure sets
/// this thread's last error message.
pub(crate) fn guard(f: impl FnOnce() -> Result<(), Fail>) -> c_int {
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

pub(crate) static NEXT_HANDLE: AtomicU64 = AtomicU64::new(1);

/// Live handles of one kind, by id. Ids are never reused, so a stale handle
/// can never reach another object.
pub(crate) struct Registry<T>(OnceLock<Mutex<HashMap<u64, Arc<T>>>>);

impl<T> Registry<T> {
    pub(crate) const fn new() -> Self {
        Self(OnceLock::new())
    }
    pub(crate) fn map(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<T>>> {
        self.0
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }
    pub(crate) fn add(&self, v: T) -> u64 {
        let id = NEXT_HANDLE.fetch_add(1, Ordering::Relaxed);
        self.map().insert(id, Arc::new(v));
        id
    }
    pub(crate) fn get(&self, h: *const c_void, what: &str) -> Result<Arc<T>, Fail> {
        self.map()
            .get(&(h as u64))
            .cloned()
            .ok_or_else(|| bad_handle(what))
    }
    pub(crate) fn take(&self, h: *const c_void, what: &str) -> Result<Arc<T>, Fail> {
        self.map()
            .remove(&(h as u64))
            .ok_or_else(|| bad_handle(what))
    }
}

pub(crate) fn bad_handle(what: &str) -> Fail {
    Fail(
        EDDY_ERR_BAD_HANDLE,
        format!("{what} handle is NULL, already closed, or not one this library issued"),
    )
}

pub(crate) struct Client {
    pub(crate) fs: FileSystem,
}

pub(crate) enum FileObj {
    Reader {
        reader: Arc<FileReader>,
        pos: Mutex<u64>,
    },
    Writer(Mutex<Option<Box<FileWriter>>>),
}

pub(crate) static CLIENTS: Registry<Client> = Registry::new();
pub(crate) static FILES: Registry<FileObj> = Registry::new();
pub(crate) static VIEWS: Registry<MappedRange> = Registry::new();

/// # Safety
/// `p` is NULL or a NUL-terminated string valid for the call.
pub(crate) unsafe fn cstr<'a>(p: *const c_char, what: &str) -> Result<&'a [u8], Fail> {
    if p.is_null() {
        return Err(invalid(format!("{what} is NULL")));
    }
    // SAFETY: non-NULL, and the caller promises a NUL-terminated string.
    Ok(unsafe { CStr::from_ptr(p) }.to_bytes())
}

/// # Safety
/// `p` is NULL or valid for one write of `T`.
pub(crate) unsafe fn put<T>(p: *mut T, v: T, what: &str) -> Result<(), Fail> {
    if p.is_null() {
        return Err(invalid(format!("{what} (an out-parameter) is NULL")));
    }
    // SAFETY: non-NULL, and the caller promises it is writable.
    unsafe { p.write(v) };
    Ok(())
}

pub(crate) fn status_of(s: &pb::FileStatus) -> eddy_status_t {
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
pub(crate) fn read_type_of(t: c_int) -> Result<ReadType, Fail> {
    match t {
        EDDY_READ_CACHE => Ok(ReadType::Cache),
        EDDY_READ_NO_CACHE => Ok(ReadType::NoCache),
        EDDY_READ_CACHE_PROMOTE => Ok(ReadType::CachePromote),
        t => Err(invalid(format!("unknown read type {t}"))),
    }
}

/// An `EDDY_WRITE_*` value, 0 for the default (shared by the C ABI and JNI).
pub(crate) fn write_type_of(t: c_int) -> Result<pb::WriteType, Fail> {
    match t {
        0 | EDDY_WRITE_MUST_CACHE => Ok(pb::WriteType::MustCache),
        EDDY_WRITE_CACHE_THROUGH => Ok(pb::WriteType::CacheThrough),
        EDDY_WRITE_THROUGH => Ok(pb::WriteType::Through),
        t => Err(invalid(format!("unknown write type {t}"))),
    }
}

pub(crate) fn client(h: *const eddy_client_t) -> Result<Arc<Client>, Fail> {
    CLIENTS.get(h.cast(), "client")
}
