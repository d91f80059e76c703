//! The state behind a fabric: the shim's handle and the one lock every
//! call into libfabric is made under, the completion table, and the raw
//! registration of memory. `fabric` and `mr` build their safe types on it.

use std::alloc::Layout;
use std::collections::{HashMap, HashSet};
use std::ffi::{c_char, c_int, c_void};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::task::Waker;
use std::time::Duration;

use crate::error::RdmaError;
use crate::sys;

/// What the provider granted: the memory-registration mode Eddy must
/// honour, message and key sizes, progress model.
#[derive(Clone, Debug)]
pub struct FabricInfo {
    pub provider: String,
    /// `FI_MR_*` bits the provider requires (a subset of what was offered).
    pub mr_mode: u64,
    pub max_msg_size: u64,
    /// Bytes of a registration key (8 for 64-bit keys).
    pub mr_key_size: u64,
    /// Manual data progress: the owner of registered memory must poll.
    pub manual_progress: bool,
}

impl FabricInfo {
    /// The provider picks keys (`FI_MR_PROV_KEY`); else Eddy's are used.
    pub fn provider_keys(&self) -> bool {
        self.mr_mode & sys::FI_MR_PROV_KEY != 0
    }
    /// Remote addresses are virtual addresses (`FI_MR_VIRT_ADDR`), not
    /// offsets into the region.
    pub fn virtual_addresses(&self) -> bool {
        self.mr_mode & sys::FI_MR_VIRT_ADDR != 0
    }
    /// The `FI_MR_*` names of `mr_mode`, for logs and `eddy report`.
    pub fn mr_mode_names(&self) -> Vec<&'static str> {
        [
            (sys::FI_MR_LOCAL, "FI_MR_LOCAL"),
            (sys::FI_MR_VIRT_ADDR, "FI_MR_VIRT_ADDR"),
            (sys::FI_MR_ALLOCATED, "FI_MR_ALLOCATED"),
            (sys::FI_MR_PROV_KEY, "FI_MR_PROV_KEY"),
            (sys::FI_MR_ENDPOINT, "FI_MR_ENDPOINT"),
        ]
        .into_iter()
        .filter(|(bit, _)| self.mr_mode & bit != 0)
        .map(|(_, name)| name)
        .collect()
    }
    /// Local buffers need a registration descriptor (`FI_MR_LOCAL`).
    pub fn local_registration(&self) -> bool {
        self.mr_mode & sys::FI_MR_LOCAL != 0
    }
}

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) reads_posted: AtomicU64,
    pub(crate) completions: AtomicU64,
    pub(crate) polls: AtomicU64,
    /// Regions open on the domain: registrations, buffers, retired ones.
    pub(crate) registrations_live: AtomicU64,
    pub(crate) registration_failures: AtomicU64,
    /// Bytes and count of retired buffers still held (changed under the
    /// state lock, read without it).
    pub(crate) retired_bytes: AtomicU64,
    pub(crate) retired_buffers: AtomicU64,
    /// Retired buffers freed after their late completions arrived.
    pub(crate) retired_freed: AtomicU64,
    /// Reads refused because the retired bytes reached the cap.
    pub(crate) reads_refused: AtomicU64,
}

/// The progress thread's side of `Inner` (one thread per fabric).
#[derive(Default)]
pub(crate) struct Gate {
    /// A progress thread runs on this fabric.
    pub(crate) running: bool,
    pub(crate) stop: bool,
    /// Poll again before pausing (set by `kick`).
    pub(crate) kicked: bool,
    /// The thread is in a pause (`kick` must wake it).
    pub(crate) paused: bool,
}

pub(crate) struct State {
    pub(crate) next_op: u64,
    /// Posted reads someone still waits for; completions of others (reads
    /// abandoned at a timeout) are dropped.
    pub(crate) pending: HashSet<u64>,
    pub(crate) done: HashMap<u64, Result<(), RdmaError>>,
    /// Buffers of abandoned reads, by a serial: the provider may still
    /// write into one until every operation posted into it has completed
    /// (with success or an error), or the endpoint has closed.
    pub(crate) retired: HashMap<u64, Retired>,
    /// Abandoned operations still in the provider's hands, and the
    /// retired buffer each writes into.
    pub(crate) orphans: HashMap<u64, u64>,
    pub(crate) next_retired: u64,
    /// Tasks waiting for a posted read (`ReadOp`), by operation: woken
    /// when its completion is read.
    pub(crate) wakers: HashMap<u64, Waker>,
    /// Tasks whose reads could not be posted yet (queue full, connection
    /// being made): woken after the progress thread's next poll.
    pub(crate) retry: Vec<Waker>,
}

impl State {
    /// Records the completion of operation `id`. Returns a retired buffer
    /// whose last outstanding operation this was: nothing can write into
    /// it any more, so the caller frees it.
    fn complete(&mut self, id: u64, result: Result<(), RdmaError>) -> Option<Retired> {
        if self.pending.remove(&id) {
            self.done.insert(id, result);
            if let Some(w) = self.wakers.remove(&id) {
                w.wake();
            }
            return None;
        }
        let serial = self.orphans.remove(&id)?;
        let r = self.retired.get_mut(&serial)?;
        r.outstanding = r.outstanding.saturating_sub(1);
        if r.outstanding > 0 {
            return None;
        }
        self.retired.remove(&serial)
    }

    /// Hands `buf`'s memory to the fabric until the operations `ops`
    /// (abandoned by a timed-out read) have all completed.
    pub(crate) fn retire(&mut self, mut buf: Retired, ops: &HashSet<u64>, counters: &Counters) {
        let serial = self.next_retired;
        self.next_retired += 1;
        for id in ops {
            self.pending.remove(id);
            self.wakers.remove(id);
            self.orphans.insert(*id, serial);
        }
        buf.outstanding = ops.len();
        counters
            .retired_bytes
            .fetch_add(buf.bytes as u64, Ordering::Relaxed);
        counters.retired_buffers.fetch_add(1, Ordering::Relaxed);
        self.retired.insert(serial, buf);
    }

    /// Reads of ours are in the provider's hands (posted and waited for,
    /// or abandoned): progress should be driven often.
    pub(crate) fn reads_in_flight(&self) -> bool {
        !self.pending.is_empty() || !self.orphans.is_empty() || !self.retry.is_empty()
    }

    /// A key for a registration when the provider does not pick them:
    /// drawn at random each time and cut to the provider's key size. With
    /// one-sided reads the key (and the address) is all a reader shows, so
    /// keys must not be guessable from another one (docs/RDMA.md).
    pub(crate) fn next_key(&mut self, key_size: u64) -> u64 {
        let k = random_u64();
        if key_size == 0 || key_size >= 8 {
            k
        } else {
            k & ((1u64 << (8 * key_size)) - 1)
        }
    }
}

pub(crate) struct Inner {
    raw: NonNull<sys::EddyFab>,
    state: Mutex<State>,
    pub(crate) info: FabricInfo,
    pub(crate) address: Vec<u8>,
    pub(crate) max_read: usize,
    /// How long a read may wait, in microseconds (`set_read_timeout`).
    pub(crate) read_timeout_us: AtomicU64,
    /// Retired bytes past which new reads are refused (`RetiredFull`).
    pub(crate) retired_cap: AtomicU64,
    pub(crate) counters: Counters,
    /// The progress thread's pauses: where it waits, and what ends a wait
    /// early (`kick`, stop).
    pub(crate) gate: Mutex<Gate>,
    pub(crate) gate_wake: Condvar,
    /// Unique in the process for its life (an address could be reused by
    /// a later fabric): what `PeerId`s name their fabric by.
    pub(crate) serial: u64,
}

// SAFETY: the shim's handle is only used with `state` locked (or from
// `drop`, which has `&mut self`), so moving or sharing `Inner` across
// threads never lets two threads into the provider at once.
unsafe impl Send for Inner {}
// SAFETY: as for Send: all access to `raw` is serialised by `state`.
unsafe impl Sync for Inner {}

impl Inner {
    /// Takes over a handle the shim just opened.
    pub(crate) fn new(
        raw: NonNull<sys::EddyFab>,
        info: FabricInfo,
        max_read: usize,
        read_timeout: Duration,
    ) -> Self {
        Inner {
            raw,
            state: Mutex::new(State {
                next_op: 1,
                pending: HashSet::new(),
                done: HashMap::new(),
                retired: HashMap::new(),
                orphans: HashMap::new(),
                next_retired: 1,
                wakers: HashMap::new(),
                retry: Vec::new(),
            }),
            info,
            address: Vec::new(),
            max_read,
            read_timeout_us: AtomicU64::new(micros(read_timeout)),
            retired_cap: AtomicU64::new(DEFAULT_RETIRED_CAP),
            counters: Counters::default(),
            gate: Mutex::new(Gate::default()),
            gate_wake: Condvar::new(),
            serial: {
                static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
                NEXT.fetch_add(1, Ordering::Relaxed)
            },
        }
    }

    pub(crate) fn gate(&self) -> MutexGuard<'_, Gate> {
        self.gate.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Ends the progress thread's pause at once (a read was posted, so
    /// its completion and data need polling now), without a system call
    /// when the thread is not paused.
    pub(crate) fn kick(&self) {
        let mut g = self.gate();
        g.kicked = true;
        if g.paused {
            self.gate_wake.notify_one();
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while polling leaves the tables consistent (each update
        // is one insert or remove), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The shim's handle; callers hold `lock()` (the guard proves it).
    pub(crate) fn raw(&self, _locked: &MutexGuard<'_, State>) -> *mut sys::EddyFab {
        self.raw.as_ptr()
    }

    /// Drains the completion queue into `done`; polling is also what drives
    /// a manual-progress provider (serving remote reads of our memory).
    /// Returns the entries seen.
    pub(crate) fn poll(&self, st: &mut MutexGuard<'_, State>) -> u64 {
        self.counters.polls.fetch_add(1, Ordering::Relaxed);
        let raw = self.raw(st);
        let mut seen = 0;
        loop {
            let mut ctx = [std::ptr::null_mut::<c_void>(); 16];
            // SAFETY: `raw` is live and locked; `ctx` has room for the
            // `ctx.len()` contexts the shim may write.
            let n = unsafe { sys::eddy_fab_cq_read(raw, ctx.as_mut_ptr(), ctx.len()) };
            if n > 0 {
                for c in &ctx[..n.unsigned_abs()] {
                    if let Some(r) = st.complete(c.addr() as u64, Ok(())) {
                        self.free_retired(r);
                    }
                }
                seen += n.unsigned_abs() as u64;
                continue;
            }
            if n as i64 != -sys::FI_EAVAIL {
                // -FI_EAGAIN: nothing more now. Any other CQ failure is
                // retried at the next poll; readers are bounded by their
                // timeout.
                break;
            }
            let mut c = std::ptr::null_mut::<c_void>();
            let mut err: c_int = 0;
            let mut text = [0 as c_char; 256];
            // SAFETY: as above; the out-pointers are valid locals and
            // `text` is writable for its whole length.
            let r = unsafe {
                sys::eddy_fab_cq_readerr(raw, &mut c, &mut err, text.as_mut_ptr(), text.len())
            };
            if r != 0 {
                break;
            }
            let provider_text: Vec<u8> = text
                .iter()
                .take_while(|&&b| b != 0)
                .map(|&b| b as u8)
                .collect();
            let text = format!(
                "{} ({})",
                sys::strerror(i64::from(err)),
                String::from_utf8_lossy(&provider_text).trim()
            );
            let result = Err(RdmaError::Read {
                code: i64::from(err),
                text,
            });
            if let Some(r) = st.complete(c.addr() as u64, result) {
                self.free_retired(r);
            }
            seen += 1;
        }
        self.counters.completions.fetch_add(seen, Ordering::Relaxed);
        seen
    }

    /// Frees a retired buffer whose operations have all completed; called
    /// from `poll`, with the fabric locked.
    fn free_retired(&self, r: Retired) {
        let bytes = r.bytes as u64;
        // Its last completion has been read: the provider is done with the
        // memory, so closing the region and freeing it is safe now.
        if r.release(&self.counters) {
            self.counters.retired_freed.fetch_add(1, Ordering::Relaxed);
        }
        self.counters
            .retired_bytes
            .fetch_sub(bytes, Ordering::Relaxed);
        self.counters
            .retired_buffers
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// `d` in whole microseconds, saturating.
pub(crate) fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// The default cap on retired bytes (`Fabric::set_retired_cap`).
pub(crate) const DEFAULT_RETIRED_CAP: u64 = 256 << 20;

impl Drop for Inner {
    fn drop(&mut self) {
        let raw = self.raw.as_ptr();
        // SAFETY: the last reference is gone (no registration, buffer or
        // progress thread holds one), so nothing else uses `raw`. The
        // endpoint closes first: after that no abandoned read can still
        // write into a retired buffer.
        let rc = unsafe { sys::eddy_fab_close_ep(raw) };
        let st = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        if !closed(rc) {
            // An endpoint that would not close may still write into the
            // buffers of abandoned reads, and its regions and domain stay
            // busy: leak all of it rather than free memory in use.
            std::mem::forget(std::mem::take(&mut st.retired));
            return;
        }
        for (_, r) in st.retired.drain() {
            r.release(&self.counters);
        }
        // SAFETY: every region is closed (registrations and buffers hold
        // the Arc; retired ones were released above); `raw` is not used
        // again.
        unsafe { sys::eddy_fab_close(raw) };
    }
}

pub(crate) struct Region {
    pub(crate) mr: NonNull<sys::FidMr>,
    pub(crate) key: u64,
    pub(crate) desc: *mut c_void,
}

impl Inner {
    /// fi_mr_reg of `[ptr, ptr + len)`.
    ///
    /// # Safety
    /// The memory must stay allocated (and, for `FI_READ` access, unused by
    /// anyone else while reads are in flight) until the region is closed.
    pub(crate) unsafe fn register_raw(
        &self,
        ptr: *const u8,
        len: usize,
        access: u64,
    ) -> Result<Region, RdmaError> {
        let refused = |code: i64, text: String| {
            self.counters
                .registration_failures
                .fetch_add(1, Ordering::Relaxed);
            RdmaError::Registration {
                len,
                code,
                text: crate::limits::registration_text(code, text),
            }
        };
        if len == 0 {
            return Err(refused(-sys::FI_EINVAL, "an empty region".into()));
        }
        let mut st = self.lock();
        let requested = st.next_key(self.info.mr_key_size);
        let mut mr = std::ptr::null_mut();
        let mut key = 0u64;
        let mut desc = std::ptr::null_mut();
        // SAFETY: the fabric is locked; the caller keeps the memory alive;
        // the out-pointers are valid locals.
        let rc = unsafe {
            sys::eddy_fab_mr_reg(
                self.raw(&st),
                ptr.cast(),
                len,
                access,
                requested,
                &mut mr,
                &mut key,
                &mut desc,
            )
        };
        match NonNull::new(mr).filter(|_| rc == 0) {
            Some(mr) => {
                self.counters
                    .registrations_live
                    .fetch_add(1, Ordering::Relaxed);
                Ok(Region { mr, key, desc })
            }
            None => Err(refused(i64::from(rc), sys::strerror(i64::from(rc)))),
        }
    }

    /// Closes a region; `false` when the provider refused, and the region
    /// may still be reachable: its memory must then never be freed.
    #[must_use]
    pub(crate) fn close_region(&self, mr: NonNull<sys::FidMr>) -> bool {
        let _st = self.lock();
        // SAFETY: `mr` is a live region of this fabric, closed once (its
        // owner's Drop or release); the fabric is locked.
        let rc = unsafe { sys::eddy_mr_close(mr.as_ptr()) };
        let ok = closed(rc);
        if ok {
            self.counters
                .registrations_live
                .fetch_sub(1, Ordering::Relaxed);
        }
        ok
    }
}

/// Whether a libfabric close succeeded; a failure is logged to stderr once
/// per call (this crate has no logger) with the provider's text.
fn closed(rc: std::ffi::c_int) -> bool {
    if rc == 0 {
        return true;
    }
    eprintln!(
        "eddy-rdma: fi_close failed ({}): the memory behind it is kept, not freed",
        sys::strerror(i64::from(rc))
    );
    false
}

/// A heap allocation freed on drop.
pub(crate) struct Mem {
    pub(crate) ptr: NonNull<u8>,
    layout: Layout,
}

impl Mem {
    pub(crate) fn alloc(layout: Layout) -> Option<Self> {
        // SAFETY: `layout` has a non-zero size (alloc_buf refuses 0).
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        NonNull::new(ptr).map(|ptr| Self { ptr, layout })
    }
}

impl Drop for Mem {
    fn drop(&mut self) {
        // SAFETY: allocated in `alloc` with this layout, freed once.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) };
    }
}

/// A buffer of an abandoned read, held by the fabric until the late
/// completions of its operations arrive or the endpoint closes.
pub(crate) struct Retired {
    pub(crate) region: Option<Region>,
    pub(crate) _mem: Option<Mem>,
    /// Its capacity, counted in `Counters::retired_bytes`.
    pub(crate) bytes: usize,
    /// Operations posted into it that have not completed yet.
    pub(crate) outstanding: usize,
}

impl Retired {
    /// Closes the region, then frees the memory; `false` (and the memory
    /// is leaked) when the provider would not close the region. Called
    /// only when nothing can write into the memory any more: its
    /// operations have all completed (from `poll`, fabric locked), or the
    /// endpoint is closed (the fabric's Drop, which has it exclusively).
    pub(crate) fn release(mut self, counters: &Counters) -> bool {
        let Some(r) = &self.region else {
            return true;
        };
        // SAFETY: the region is live and closed once (`release` consumes
        // its only owner); the caller holds the fabric's lock or has the
        // fabric exclusively, as stated above.
        let rc = unsafe { sys::eddy_mr_close(r.mr.as_ptr()) };
        if !closed(rc) {
            // Still registered: the memory is leaked, never reused.
            std::mem::forget(self._mem.take());
            return false;
        }
        counters.registrations_live.fetch_sub(1, Ordering::Relaxed);
        true
    }
}

/// 64 bits from the OS's random source.
fn random_u64() -> u64 {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 8];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .expect("the OS random source is available");
    u64::from_be_bytes(b)
}
