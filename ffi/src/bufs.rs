//! Entry points for read buffers the library owns (`eddy_buf_t`), the C
//! face of `ReadBuf` and `FileReader::read_at_owned`: a read that goes by
//! RDMA lands in the buffer's own memory, registered with the client's
//! fabric on its first such read, with no copy out of a pooled buffer.
//! A buffer is in one read at a time: the read takes it out of its handle
//! and puts it back, so a second read or `eddy_buf_data` meanwhile is
//! refused, never racing the provider's writes.

use std::ffi::c_int;
use std::sync::{Arc, Mutex};

use eddy_client::ReadBuf;

use crate::files::reader;
use crate::*;

/// The largest buffer `eddy_buf_new` hands out (1 GiB).
pub const EDDY_BUF_MAX: usize = 1 << 30;

type Slot = Mutex<Option<ReadBuf>>;

static BUFS: Registry<Slot> = Registry::new();

fn slot(buf: *mut eddy_buf_t) -> Result<Arc<Slot>, Fail> {
    BUFS.get(buf.cast(), "buffer")
}

fn in_use() -> Fail {
    invalid("the buffer is in a read (eddy_pread_buf) on another thread: wait for it to return")
}

/// Allocates a read buffer of `capacity` bytes (1 to EDDY_BUF_MAX), zeroed,
/// for `eddy_pread_buf`. Free it with `eddy_buf_free`. Reusing one buffer
/// for many reads is what makes RDMA reads copy-free: its memory is
/// registered with the client's fabric on its first RDMA read. Thread-safe.
///
/// # Safety
/// `out` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn eddy_buf_new(capacity: usize, out: *mut *mut eddy_buf_t) -> c_int {
    guard(|| {
        if capacity == 0 || capacity > EDDY_BUF_MAX {
            return Err(invalid(format!(
                "capacity {capacity} is outside 1..={EDDY_BUF_MAX} bytes"
            )));
        }
        if out.is_null() {
            return Err(invalid("out is NULL"));
        }
        let b = ReadBuf::try_new(capacity).ok_or_else(|| {
            Fail(
                EDDY_ERR_NO_SPACE,
                format!("cannot allocate {capacity} bytes for a read buffer: free memory or ask for less"),
            )
        })?;
        let id = BUFS.add(Mutex::new(Some(b)));
        // SAFETY: checked non-NULL; the caller promises it is writable.
        unsafe { put(out, id as *mut eddy_buf_t, "out") }
    })
}

/// The buffer's bytes: `*data` (writable) and `*capacity`. The pointer is
/// valid until the next `eddy_pread_buf` into this buffer or its
/// `eddy_buf_free`: a read may move the bytes (call this again after each
/// read). EDDY_ERR_INVALID_ARGUMENT while a read on another thread has
/// the buffer. Thread-safe.
///
/// # Safety
/// `data` and `capacity` are writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn eddy_buf_data(
    buf: *mut eddy_buf_t,
    data: *mut *mut u8,
    capacity: *mut usize,
) -> c_int {
    guard(|| {
        let s = slot(buf)?;
        if data.is_null() || capacity.is_null() {
            return Err(invalid("data or capacity (out-parameters) is NULL"));
        }
        let mut g = s.lock().unwrap_or_else(|p| p.into_inner());
        let b = g.as_mut().ok_or_else(in_use)?;
        let (ptr, cap) = (b.as_mut_slice().as_mut_ptr(), b.capacity());
        // SAFETY: both checked non-NULL; the caller promises they are writable.
        unsafe {
            put(data, ptr, "data")?;
            put(capacity, cap, "capacity")
        }
    })
}

/// Reads up to the buffer's capacity at `offset` of an open file into the
/// buffer, from its first byte, without moving the file's position;
/// `*nread` is fewer only at the end of the file (0 past it). Blocks read
/// by RDMA land in the buffer's memory with no copy; others are read as
/// `eddy_pread` reads them. Afterwards get the bytes with `eddy_buf_data`.
/// One read per buffer at a time (a second one meanwhile is
/// EDDY_ERR_INVALID_ARGUMENT); many buffers may read one file at once.
/// Errors as `eddy_pread`; on an error the buffer's bytes are unspecified.
///
/// # Safety
/// `nread` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn eddy_pread_buf(
    file: *mut eddy_file_t,
    buf: *mut eddy_buf_t,
    offset: u64,
    nread: *mut usize,
) -> c_int {
    guard(|| {
        let (_obj, r) = reader(file)?;
        let s = slot(buf)?;
        if nread.is_null() {
            return Err(invalid("nread is NULL"));
        }
        let b = s
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .ok_or_else(in_use)?;
        // The buffer comes back with the result, even from a timed-out
        // read (a fresh one then): the slot is never left empty.
        let (b, n) = runtime().block_on(r.read_at_owned(offset, b));
        *s.lock().unwrap_or_else(|p| p.into_inner()) = Some(b);
        let n = n?;
        // SAFETY: checked non-NULL; the caller promises it is writable.
        unsafe { put(nread, n, "nread") }
    })
}

/// Frees a read buffer; its bytes must not be touched afterwards. A read
/// on another thread that has it keeps it until that read returns.
/// Thread-safe, but no other call may use the handle after.
///
/// # Safety
/// None beyond passing a handle (a bad one is reported, not dereferenced).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn eddy_buf_free(buf: *mut eddy_buf_t) -> c_int {
    guard(|| {
        let s = BUFS.take(buf.cast(), "buffer")?;
        let _guard = runtime().enter();
        drop(s);
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_in_a_read_is_refused_to_other_calls_until_it_is_back() {
        let mut b = std::ptr::null_mut();
        // SAFETY: `b` is a writable local.
        assert_eq!(unsafe { eddy_buf_new(64, &mut b) }, EDDY_OK);
        let Ok(s) = slot(b) else {
            panic!("the handle just issued is live")
        };
        // What `eddy_pread_buf` does for the length of its read.
        let taken = s.lock().unwrap().take();
        let (mut p, mut cap) = (std::ptr::null_mut(), 0usize);
        // SAFETY: the out-parameters are writable locals.
        let rc = unsafe { eddy_buf_data(b, &mut p, &mut cap) };
        assert_eq!(rc, EDDY_ERR_INVALID_ARGUMENT);
        let msg = LAST_ERROR.with(|l| l.borrow().to_string_lossy().into_owned());
        assert!(msg.contains("in a read"), "{msg}");
        assert!(p.is_null(), "nothing written on failure");
        *s.lock().unwrap() = taken;
        // SAFETY: as above.
        assert_eq!(unsafe { eddy_buf_data(b, &mut p, &mut cap) }, EDDY_OK);
        assert!(!p.is_null());
        assert_eq!(cap, 64);
        // SAFETY: a handle; a freed one is reported, not dereferenced.
        unsafe {
            assert_eq!(eddy_buf_free(b), EDDY_OK);
            assert_eq!(eddy_buf_free(b), EDDY_ERR_BAD_HANDLE);
        }
    }
}
