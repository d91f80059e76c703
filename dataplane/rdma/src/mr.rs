//! Memory registrations: memory others read (`Registration`) and owned
//! buffers reads land in (`RegisteredBuf`).
//!
//! Pinned memory must not go away while registered: a `Registration`
//! borrows the memory or owns an `Arc` of it, and closes the region in its
//! `Drop`, before the borrow ends or the `Arc` is released. Both hold the
//! fabric, so the domain outlives every region on it.

use std::alloc::Layout;
use std::ffi::c_void;
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::Arc;

use crate::domain::{Inner, Mem, Region, Retired};
use crate::error::RdmaError;
use crate::sys;

/// What a reader needs to read a registered region, as its owner hands it
/// out: the remote address of byte 0 (a virtual address under
/// `FI_MR_VIRT_ADDR`, else 0: an offset), the length and the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RemoteKey {
    pub addr_or_offset: u64,
    pub len: u64,
    pub key: u64,
}

/// Memory registered for remote reads. Closing it (Drop) revokes its key.
///
/// It owns its memory through an `Arc` (`Fabric::register_shared`), so the
/// memory outlives the registration even if the registration is leaked
/// (`mem::forget`): no safe code can make a key reach freed memory. (A
/// registration borrowing the memory would not be sound that way.)
pub struct Registration<'a> {
    fabric: Arc<Inner>,
    region: Region,
    remote: RemoteKey,
    _borrow: PhantomData<&'a [u8]>,
    _owner: Option<Arc<dyn AsRef<[u8]> + Send + Sync + 'a>>,
}

// SAFETY: the region handle is only used (closed) with the fabric locked;
// the memory is borrowed shared or owned through an Arc that is Send+Sync.
unsafe impl Send for Registration<'_> {}
// SAFETY: `&Registration` only reads plain fields.
unsafe impl Sync for Registration<'_> {}

impl Registration<'_> {
    /// The key to hand to readers.
    pub fn remote_key(&self) -> RemoteKey {
        self.remote
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        // Runs before `_owner` is released: no reader can reach the pages
        // once they may be unmapped. A region the provider would not close
        // keeps its memory forever.
        if !self.fabric.close_region(self.region.mr) {
            std::mem::forget(self._owner.take());
        }
    }
}

/// Registers memory owned through an `Arc` (e.g. a segment's mapping):
/// the registration keeps it alive and closes first.
pub(crate) fn register_shared<M>(
    inner: &Arc<Inner>,
    mem: Arc<M>,
) -> Result<Registration<'static>, RdmaError>
where
    M: AsRef<[u8]> + Send + Sync + 'static,
{
    let bytes = (*mem).as_ref();
    // SAFETY: the Arc is kept in the Registration, which closes the
    // region before dropping it; only shared access is possible
    // through it, so the bytes stay where they are.
    let region = unsafe { inner.register_raw(bytes.as_ptr(), bytes.len(), sys::FI_REMOTE_READ)? };
    let (ptr, len) = (bytes.as_ptr(), bytes.len());
    let owner: Arc<dyn AsRef<[u8]> + Send + Sync> = mem;
    let mut r = registration(inner, &[], region, Some(owner));
    r.remote.addr_or_offset = remote_base(inner, ptr);
    r.remote.len = len as u64;
    Ok(r)
}

fn remote_base(inner: &Inner, ptr: *const u8) -> u64 {
    if inner.info.virtual_addresses() {
        ptr.addr() as u64
    } else {
        0
    }
}

fn registration<'a>(
    inner: &Arc<Inner>,
    mem: &'a [u8],
    region: Region,
    owner: Option<Arc<dyn AsRef<[u8]> + Send + Sync + 'a>>,
) -> Registration<'a> {
    let remote = RemoteKey {
        addr_or_offset: remote_base(inner, mem.as_ptr()),
        len: mem.len() as u64,
        key: region.key,
    };
    Registration {
        fabric: inner.clone(),
        region,
        remote,
        _borrow: PhantomData,
        _owner: owner,
    }
}

/// A zeroed, page-aligned buffer of `len` bytes registered as a read
/// destination (local descriptor for providers with FI_MR_LOCAL).
pub(crate) fn alloc_buf(inner: &Arc<Inner>, len: usize) -> Result<RegisteredBuf, RdmaError> {
    let refused = |text: &str| RdmaError::Registration {
        len,
        code: -sys::FI_EINVAL,
        text: text.into(),
    };
    // Whole pages: no other heap data shares a page with the buffer, so a
    // parent that writes its heap after a fork never moves a page a read
    // is landing in (pinned pages before Linux 5.13, docs/RDMA.md).
    let size = len
        .max(1)
        .checked_next_multiple_of(4096)
        .ok_or_else(|| refused("too large"))?;
    let layout = Layout::from_size_align(size, 4096).map_err(|_| refused("too large"))?;
    if len == 0 {
        return Err(refused("an empty buffer"));
    }
    let mem = Mem::alloc(layout).ok_or_else(|| refused("out of memory"))?;
    // SAFETY: `mem` is owned by the buffer built below, which closes
    // the region before freeing it (Drop, or `Retired::release`).
    let region = unsafe { inner.register_raw(mem.ptr.as_ptr(), len, sys::FI_READ)? };
    Ok(RegisteredBuf {
        fabric: inner.clone(),
        ptr: mem.ptr,
        cap: len,
        start: 0,
        len,
        mem: Some(mem),
        region: Some(region),
    })
}

/// An owned buffer reads land in. It goes into `Fabric::read` by value and
/// comes back with the result, so no one can look at it mid-read.
pub struct RegisteredBuf {
    fabric: Arc<Inner>,
    ptr: NonNull<u8>,
    cap: usize,
    /// The window the next read fills: `start..start + len` of the memory.
    start: usize,
    len: usize,
    /// Always `Some` while the buffer lives; taken only by `retire`.
    mem: Option<Mem>,
    region: Option<Region>,
}

// SAFETY: the buffer owns its memory; its region handle is only used with
// the fabric locked.
unsafe impl Send for RegisteredBuf {}
// SAFETY: `&RegisteredBuf` only reads the memory it owns.
unsafe impl Sync for RegisteredBuf {}

impl RegisteredBuf {
    /// Bytes the next read fills (and `as_slice` shows).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// Sets how many bytes the next read fills, from the window's start;
    /// at most what the capacity leaves.
    pub fn set_len(&mut self, len: usize) {
        self.len = len.min(self.cap - self.start);
    }

    /// Makes `start..start + len` (cut to the capacity) the window the
    /// next read fills and `as_slice` shows: a read into part of a larger
    /// buffer, the rest of it untouched.
    pub fn set_window(&mut self, start: usize, len: usize) {
        self.start = start.min(self.cap);
        self.set_len(len);
    }

    /// The window: `start..start + len`.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr` owns `cap >= start + len` initialised (zeroed)
        // bytes, and no read is in flight: reads take the buffer by value.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(self.start), self.len) }
    }

    /// The whole memory, window or not, for writing by the CPU (bytes
    /// that came another way than a read).
    pub fn whole_mut(&mut self) -> &mut [u8] {
        // SAFETY: `ptr` owns `cap` initialised bytes; `&mut self` proves
        // no read is in flight (reads take the buffer by value) and no
        // other reference to them exists.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.cap) }
    }

    /// The whole memory, window or not.
    pub fn whole(&self) -> &[u8] {
        // SAFETY: as `as_slice`, over all `cap` bytes.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.cap) }
    }

    pub(crate) fn made_by(&self, fabric: &Arc<Inner>) -> bool {
        Arc::ptr_eq(&self.fabric, fabric)
    }

    /// The address of byte `at` of the window and the local descriptor,
    /// for `fi_read`.
    pub(crate) fn raw_parts(&self, at: usize) -> (*mut c_void, *mut c_void) {
        let desc = self
            .region
            .as_ref()
            .map_or(std::ptr::null_mut(), |r| r.desc);
        (self.ptr.as_ptr().wrapping_add(self.start + at).cast(), desc)
    }

    /// Gives the memory and region up to the fabric, which frees them once
    /// the late completions of the abandoned operations have arrived, or
    /// its endpoint is closed (a timed-out read may still write until
    /// then).
    pub(crate) fn retire(mut self) -> Retired {
        Retired {
            region: self.region.take(),
            _mem: self.mem.take(),
            bytes: self.cap,
            outstanding: 0,
        }
    }
}

impl Drop for RegisteredBuf {
    fn drop(&mut self) {
        if let Some(r) = self.region.take()
            && !self.fabric.close_region(r.mr)
        {
            std::mem::forget(self.mem.take());
        }
        // `mem` drops after this: the region is closed before the memory
        // is freed.
    }
}
