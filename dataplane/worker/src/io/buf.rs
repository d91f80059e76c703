//! Page-aligned I/O buffers, owned: a buffer goes into an operation and
//! comes back with its result (`BufResult`), so the kernel can write into
//! it while no Rust reference to it exists. O_DIRECT needs the alignment.

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::ptr::NonNull;
use std::sync::Arc;

use parking_lot::Mutex;

pub const ALIGN: usize = 4096;

pub struct AlignedBuf {
    ptr: NonNull<u8>,
    cap: usize,
    len: usize,
    /// Set when the memory is a slot of a registered pool: it goes back to
    /// the pool on drop instead of to the allocator.
    fixed: Option<(u16, Arc<FixedPool>)>,
}

/// Buffers registered with an io_uring ring (`IORING_REGISTER_BUFFERS`):
/// equal slots carved from one allocation, lent out as [`AlignedBuf`]s.
pub struct FixedPool {
    base: NonNull<u8>,
    slot: usize,
    count: usize,
    free: Mutex<Vec<u16>>,
}

// SAFETY: the pool owns its allocation; slots are handed out exclusively
// (an index is in `free` or owned by exactly one AlignedBuf).
unsafe impl Send for FixedPool {}
// SAFETY: as above; the free list is behind a mutex.
unsafe impl Sync for FixedPool {}

impl FixedPool {
    /// `count` slots of `slot` bytes (a multiple of 4 KiB), zeroed.
    pub fn new(slot: usize, count: usize) -> Arc<Self> {
        assert!(slot > 0 && slot.is_multiple_of(ALIGN) && count > 0 && count <= u16::MAX as usize);
        let layout = Layout::from_size_align(slot * count, ALIGN).expect("valid layout");
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc_zeroed(layout) };
        let base = NonNull::new(ptr).unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
        Arc::new(Self {
            base,
            slot,
            count,
            free: Mutex::new((0..count as u16).rev().collect()),
        })
    }

    /// The slots as iovecs, for registration.
    pub fn iovecs(&self) -> Vec<libc::iovec> {
        (0..self.count)
            .map(|i| libc::iovec {
                // SAFETY: slot `i` lies inside the allocation (i < count).
                iov_base: unsafe { self.base.as_ptr().add(i * self.slot) }.cast(),
                iov_len: self.slot,
            })
            .collect()
    }

    pub fn slot_size(&self) -> usize {
        self.slot
    }

    pub fn free_slots(&self) -> usize {
        self.free.lock().len()
    }

    pub fn bytes(&self) -> usize {
        self.slot * self.count
    }

    /// A free slot as a buffer, if any.
    pub fn take(self: &Arc<Self>) -> Option<AlignedBuf> {
        let i = self.free.lock().pop()?;
        // SAFETY: slot `i` lies inside the allocation and is now ours alone.
        let ptr = unsafe { self.base.as_ptr().add(i as usize * self.slot) };
        Some(AlignedBuf {
            ptr: NonNull::new(ptr).expect("inside a live allocation"),
            cap: self.slot,
            len: 0,
            fixed: Some((i, self.clone())),
        })
    }
}

impl Drop for FixedPool {
    fn drop(&mut self) {
        let layout = Layout::from_size_align(self.slot * self.count, ALIGN).expect("valid layout");
        // SAFETY: allocated in `new` with this layout; every slot has come
        // back (each lent buffer holds an Arc to the pool).
        unsafe { dealloc(self.base.as_ptr(), layout) };
    }
}

// SAFETY: the buffer owns its allocation exclusively; moving it between
// threads moves that ownership, and shared access only reads.
unsafe impl Send for AlignedBuf {}
// SAFETY: `&AlignedBuf` only allows reads of initialised (zeroed) memory.
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    /// A zeroed buffer of at least `cap` bytes (rounded up to 4 KiB).
    pub fn new(cap: usize) -> Self {
        let cap = cap.max(1).div_ceil(ALIGN) * ALIGN;
        let layout = Layout::from_size_align(cap, ALIGN).expect("valid layout");
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc_zeroed(layout) };
        let ptr = NonNull::new(ptr).unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
        Self {
            ptr,
            cap,
            len: 0,
            fixed: None,
        }
    }

    /// The registered-buffer index, when this buffer is a pool slot.
    pub fn fixed_index(&self) -> Option<u16> {
        self.fixed.as_ref().map(|(i, _)| *i)
    }

    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// The bytes filled so far (by a read, or by `fill`).
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `len <= cap` bytes of our zero-initialised allocation.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The whole capacity, to fill.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: `cap` bytes of our allocation, borrowed mutably via `self`.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.cap) }
    }

    /// Copies `data` in and sets the length (for writes).
    pub fn fill(&mut self, data: &[u8]) {
        assert!(data.len() <= self.cap, "data fits the buffer");
        self.as_mut_slice()[..data.len()].copy_from_slice(data);
        self.len = data.len();
    }

    pub fn set_len(&mut self, len: usize) {
        assert!(len <= self.cap);
        self.len = len;
    }

    pub(crate) fn as_mut_ptr(&mut self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        if let Some((i, pool)) = self.fixed.take() {
            pool.free.lock().push(i);
            return;
        }
        let layout = Layout::from_size_align(self.cap, ALIGN).expect("valid layout");
        // SAFETY: allocated in `new` with this layout, freed once.
        unsafe { dealloc(self.ptr.as_ptr(), layout) };
    }
}
