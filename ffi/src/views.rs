//! Entry points for zero-copy views of a file's bytes.

use std::ffi::c_int;

use crate::files::reader;
use crate::*;

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
