//! One provider's fabric: domain, endpoint, address vector and completion
//! queue behind one lock, and the one-sided read that splits at the
//! provider's maximum message size.
//!
//! Every call into libfabric on a fabric happens with `Inner::state` held
//! (the shim asks for `FI_THREAD_DOMAIN`), so the progress thread, readers
//! and (de)registrations never race inside the provider.

use std::collections::{HashMap, HashSet};
use std::ffi::{CString, c_char, c_int, c_void};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::backoff::Backoff;
use crate::error::RdmaError;
use crate::mr::{RegisteredBuf, RemoteKey, Retired};
use crate::sys;

/// How to open a fabric.
#[derive(Clone, Debug)]
pub struct FabricOptions {
    /// libfabric provider name: "tcp;ofi_rxm", "verbs;ofi_rxm", "efa", ...
    pub provider: String,
    /// A local address to bind (e.g. "127.0.0.1"); `None` lets the
    /// provider choose its first interface.
    pub node: Option<String>,
    /// Largest single `fi_read`, below the provider's own maximum (which
    /// is always honoured); `None`: the provider's.
    pub max_read: Option<usize>,
    /// How long a read may wait for its completions.
    pub read_timeout: Duration,
}

impl FabricOptions {
    pub fn new(provider: &str) -> Self {
        Self {
            provider: provider.to_string(),
            node: None,
            max_read: None,
            read_timeout: Duration::from_secs(10),
        }
    }
}

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

/// Counts of what a fabric did, for tests and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FabricStats {
    /// `fi_read`s posted by this side.
    pub reads_posted: u64,
    /// Completion entries (success or error) this side's CQ returned.
    pub completions: u64,
    /// Times the CQ was polled (each poll also drives progress).
    pub polls: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    reads_posted: AtomicU64,
    completions: AtomicU64,
    polls: AtomicU64,
}

/// A peer inserted into this fabric's address vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerId {
    fabric: usize,
    addr: u64,
}

pub(crate) struct State {
    next_op: u64,
    next_key: u64,
    /// Posted reads someone still waits for; completions of others (reads
    /// abandoned at a timeout) are dropped.
    pending: HashSet<u64>,
    done: HashMap<u64, Result<(), RdmaError>>,
    /// Buffers of abandoned reads: the provider may still write into them
    /// until the endpoint closes, so they are freed only then.
    retired: Vec<Retired>,
}

impl State {
    fn complete(&mut self, id: u64, result: Result<(), RdmaError>) {
        if self.pending.remove(&id) {
            self.done.insert(id, result);
        }
    }

    /// A key for a registration when the provider does not pick them:
    /// unique per domain, cut to the provider's key size.
    pub(crate) fn next_key(&mut self, key_size: u64) -> u64 {
        self.next_key = self.next_key.wrapping_add(1);
        if key_size == 0 || key_size >= 8 {
            self.next_key
        } else {
            self.next_key & ((1u64 << (8 * key_size)) - 1)
        }
    }
}

pub(crate) struct Inner {
    raw: NonNull<sys::EddyFab>,
    state: Mutex<State>,
    pub(crate) info: FabricInfo,
    address: Vec<u8>,
    max_read: usize,
    read_timeout: Duration,
    counters: Counters,
}

// SAFETY: the shim's handle is only used with `state` locked (or from
// `drop`, which has `&mut self`), so moving or sharing `Inner` across
// threads never lets two threads into the provider at once.
unsafe impl Send for Inner {}
// SAFETY: as for Send: all access to `raw` is serialised by `state`.
unsafe impl Sync for Inner {}

impl Inner {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while polling leaves the tables consistent (each update
        // is one insert or remove), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The shim's handle; callers hold `lock()` (the guard proves it).
    pub(crate) fn raw(&self, _locked: &MutexGuard<'_, State>) -> *mut sys::EddyFab {
        self.raw.as_ptr()
    }

    fn id(self: &Arc<Self>) -> usize {
        Arc::as_ptr(self) as usize
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
                    st.complete(c.addr() as u64, Ok(()));
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
            st.complete(
                c.addr() as u64,
                Err(RdmaError::Read {
                    code: i64::from(err),
                    text,
                }),
            );
            seen += 1;
        }
        self.counters.completions.fetch_add(seen, Ordering::Relaxed);
        seen
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let raw = self.raw.as_ptr();
        // SAFETY: the last reference is gone (no registration, buffer or
        // progress thread holds one), so nothing else uses `raw`. The
        // endpoint closes first: after that no abandoned read can still
        // write into a retired buffer.
        unsafe { sys::eddy_fab_close_ep(raw) };
        let st = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        for r in st.retired.drain(..) {
            r.release();
        }
        // SAFETY: every region is closed (registrations and buffers hold
        // the Arc; retired ones were released above); `raw` is not used
        // again.
        unsafe { sys::eddy_fab_close(raw) };
    }
}

/// An open fabric: one endpoint of one provider.
pub struct Fabric {
    pub(crate) inner: Arc<Inner>,
}

fn open_step(step: c_int) -> &'static str {
    match step {
        2 => "fi_fabric",
        3 => "fi_domain",
        4 => "fi_cq_open",
        5 => "fi_av_open",
        6 => "fi_endpoint",
        7 => "fi_ep_bind",
        8 => "fi_enable",
        _ => "fi_getinfo",
    }
}

impl Fabric {
    /// Opens `provider` on the interface it lists first.
    pub fn open(provider: &str) -> Result<Self, RdmaError> {
        Self::open_with(&FabricOptions::new(provider))
    }

    pub fn open_with(opts: &FabricOptions) -> Result<Self, RdmaError> {
        let no_provider = |why: &str| RdmaError::NoProvider {
            provider: opts.provider.clone(),
            why: why.to_string(),
        };
        let prov = CString::new(opts.provider.as_str())
            .map_err(|_| no_provider("the name contains a NUL byte"))?;
        let node = match &opts.node {
            Some(n) => {
                Some(CString::new(n.as_str()).map_err(|_| no_provider("the node has a NUL"))?)
            }
            None => None,
        };
        let node_ptr = node.as_ref().map_or(std::ptr::null(), |n| n.as_ptr());
        let mut raw = std::ptr::null_mut();
        let mut step: c_int = 0;
        // SAFETY: both strings are NUL-terminated and outlive the call;
        // `raw` and `step` are valid out-pointers.
        let rc = unsafe { sys::eddy_fab_open(prov.as_ptr(), node_ptr, &mut raw, &mut step) };
        let Some(raw) = NonNull::new(raw).filter(|_| rc == 0) else {
            let text = sys::strerror(i64::from(rc));
            if step <= 1 {
                return Err(no_provider(&text));
            }
            return Err(RdmaError::Setup {
                provider: opts.provider.clone(),
                call: open_step(step),
                code: i64::from(rc),
                text,
            });
        };
        let mut attr = sys::FabAttr {
            mr_mode: 0,
            max_msg_size: 0,
            mr_key_size: 0,
            tx_size: 0,
            manual_progress: 0,
            provider: [0; 64],
        };
        // SAFETY: `raw` was just opened and is not shared yet; `attr` is a
        // valid, exclusively borrowed #[repr(C)] struct.
        unsafe { sys::eddy_fab_attr(raw.as_ptr(), &mut attr) };
        let name: Vec<u8> = attr
            .provider
            .iter()
            .take_while(|&&b| b != 0)
            .map(|&b| b as u8)
            .collect();
        let info = FabricInfo {
            provider: String::from_utf8_lossy(&name).into_owned(),
            mr_mode: attr.mr_mode,
            max_msg_size: attr.max_msg_size,
            mr_key_size: attr.mr_key_size,
            manual_progress: attr.manual_progress != 0,
        };
        let provider_max = usize::try_from(attr.max_msg_size.max(1)).unwrap_or(usize::MAX);
        let max_read = opts.max_read.unwrap_or(usize::MAX).clamp(1, provider_max);
        let inner = Arc::new(Inner {
            raw,
            state: Mutex::new(State {
                next_op: 1,
                next_key: first_key(),
                pending: HashSet::new(),
                done: HashMap::new(),
                retired: Vec::new(),
            }),
            info,
            address: Vec::new(),
            max_read,
            read_timeout: opts.read_timeout,
            counters: Counters::default(),
        });
        let mut fabric = Fabric { inner };
        let address = fabric.fetch_address()?;
        if let Some(inner) = Arc::get_mut(&mut fabric.inner) {
            inner.address = address;
        }
        Ok(fabric)
    }

    fn fetch_address(&self) -> Result<Vec<u8>, RdmaError> {
        let st = self.inner.lock();
        let mut buf = vec![0u8; 256];
        for _ in 0..2 {
            let mut len = buf.len();
            // SAFETY: `buf` is writable for `len` bytes; the shim writes at
            // most that and reports the needed size in `len`.
            let rc = unsafe {
                sys::eddy_fab_getname(self.inner.raw(&st), buf.as_mut_ptr().cast(), &mut len)
            };
            if rc == 0 {
                buf.truncate(len);
                return Ok(buf);
            }
            if i64::from(rc) != -sys::FI_ETOOSMALL {
                return Err(self.setup_error("fi_getname", rc));
            }
            buf.resize(len, 0);
        }
        Err(self.setup_error("fi_getname", -(sys::FI_ETOOSMALL as c_int)))
    }

    fn setup_error(&self, call: &'static str, rc: c_int) -> RdmaError {
        RdmaError::Setup {
            provider: self.inner.info.provider.clone(),
            call,
            code: i64::from(rc),
            text: sys::strerror(i64::from(rc)),
        }
    }

    pub fn info(&self) -> &FabricInfo {
        &self.inner.info
    }

    pub fn stats(&self) -> FabricStats {
        let c = &self.inner.counters;
        FabricStats {
            reads_posted: c.reads_posted.load(Ordering::Relaxed),
            completions: c.completions.load(Ordering::Relaxed),
            polls: c.polls.load(Ordering::Relaxed),
        }
    }

    /// This endpoint's address, for the peer's `connect`.
    pub fn address(&self) -> &[u8] {
        &self.inner.address
    }

    /// Adds a peer's address (from its `address()`) to the address vector.
    pub fn connect(&self, peer_addr: &[u8]) -> Result<PeerId, RdmaError> {
        let own = self.inner.address.len();
        if peer_addr.len() != own {
            return Err(RdmaError::Address(format!(
                "it is {} bytes, {}'s addresses are {own}: is the peer on another provider?",
                peer_addr.len(),
                self.inner.info.provider
            )));
        }
        let st = self.inner.lock();
        let mut addr = 0u64;
        // SAFETY: the provider reads one address of its own format, which
        // is as long as ours: `peer_addr` has exactly that many bytes.
        let rc = unsafe {
            sys::eddy_fab_av_insert(self.inner.raw(&st), peer_addr.as_ptr().cast(), &mut addr)
        };
        if rc != 0 {
            return Err(RdmaError::Address(sys::strerror(i64::from(rc))));
        }
        Ok(PeerId {
            fabric: self.inner.id(),
            addr,
        })
    }

    /// Polls once (drives progress); the `Progress` thread calls this.
    pub fn poll(&self) -> u64 {
        self.inner.poll(&mut self.inner.lock())
    }

    /// Reads `buf.len()` bytes at `offset` of the peer's region `remote`
    /// into `buf`, one-sided, in reads of at most the maximum message size.
    /// The buffer comes back with the result, unless the read timed out
    /// with operations still in the provider's hands: then it is kept
    /// until the fabric closes (`None`).
    pub fn read(
        &self,
        buf: RegisteredBuf,
        peer: PeerId,
        remote: &RemoteKey,
        offset: u64,
    ) -> (Option<RegisteredBuf>, Result<(), RdmaError>) {
        if let Err(e) = self.check_read(&buf, peer, remote, offset) {
            return (Some(buf), Err(e));
        }
        let len = buf.len();
        let chunk = self.inner.max_read;
        let deadline = Instant::now() + self.inner.read_timeout;
        let mut backoff = Backoff::new(Duration::from_micros(500));
        let mut next = 0usize;
        let mut outstanding = HashSet::new();
        let mut failed: Option<RdmaError> = None;
        loop {
            let mut st = self.inner.lock();
            while next < len && failed.is_none() {
                let n = chunk.min(len - next);
                let base = remote.addr_or_offset + offset;
                match self.post(&mut st, &buf, (next, n), peer, (base, remote.key)) {
                    Ok(Some(id)) => {
                        outstanding.insert(id);
                        next += n;
                    }
                    Ok(None) => break,
                    Err(e) => failed = Some(e),
                }
            }
            let seen = self.inner.poll(&mut st);
            let before = outstanding.len();
            outstanding.retain(|id| match st.done.remove(id) {
                None => true,
                Some(Ok(())) => false,
                Some(Err(e)) => {
                    failed.get_or_insert(e);
                    false
                }
            });
            if outstanding.is_empty() && (next >= len || failed.is_some()) {
                drop(st);
                return (Some(buf), failed.map_or(Ok(()), Err));
            }
            if Instant::now() >= deadline {
                for id in &outstanding {
                    st.pending.remove(id);
                }
                st.retired.push(buf.retire());
                let ms = self.inner.read_timeout.as_millis();
                return (None, Err(RdmaError::Timeout { ms: ms as u64 }));
            }
            drop(st);
            if seen > 0 || outstanding.len() < before {
                backoff.reset();
            }
            std::thread::sleep(backoff.next_pause());
        }
    }

    fn check_read(
        &self,
        buf: &RegisteredBuf,
        peer: PeerId,
        remote: &RemoteKey,
        offset: u64,
    ) -> Result<(), RdmaError> {
        if !buf.made_by(&self.inner) {
            return Err(RdmaError::OtherFabric("the buffer"));
        }
        if peer.fabric != self.inner.id() {
            return Err(RdmaError::OtherFabric("the peer"));
        }
        let len = buf.len() as u64;
        let out_of_range = RdmaError::OutOfRange {
            offset,
            len,
            region: remote.len,
        };
        match offset.checked_add(len) {
            Some(end) if end <= remote.len => {}
            _ => return Err(out_of_range),
        }
        remote
            .addr_or_offset
            .checked_add(remote.len)
            .map(|_| ())
            .ok_or(out_of_range)
    }

    /// Posts the read of `buf[at..at + n]` from `base + at` under `key`;
    /// `None` when the provider's queue is full (poll, then post again).
    fn post(
        &self,
        st: &mut MutexGuard<'_, State>,
        buf: &RegisteredBuf,
        (at, n): (usize, usize),
        peer: PeerId,
        (base, key): (u64, u64),
    ) -> Result<Option<u64>, RdmaError> {
        let id = st.next_op;
        let (ptr, desc) = buf.raw_parts(at);
        // SAFETY: `ptr..ptr + n` lies inside the buffer (at + n <= len,
        // checked by the caller's loop), which `read` owns and does not
        // hand back before every posted operation has completed or the
        // endpoint closed (retired); `desc` is the buffer's registration
        // descriptor; the context is an integer tag the provider hands back
        // and never dereferences (no FI_CONTEXT mode was accepted).
        let rc = unsafe {
            sys::eddy_fab_read(
                self.inner.raw(st),
                ptr,
                n,
                desc,
                peer.addr,
                base + at as u64,
                key,
                std::ptr::without_provenance_mut(id as usize),
            )
        };
        if rc as i64 == -sys::FI_EAGAIN {
            return Ok(None);
        }
        if rc != 0 {
            return Err(RdmaError::Read {
                code: rc as i64,
                text: format!("posting fi_read: {}", sys::strerror(rc as i64)),
            });
        }
        st.next_op += 1;
        st.pending.insert(id);
        self.inner.counters.reads_posted.fetch_add(1, Ordering::Relaxed);
        Ok(Some(id))
    }
}

/// The first key of a fabric: random, so keys of one run do not predict
/// another's (keys are no secret: leases carry block tokens, issue 17).
fn first_key() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::process::id())
}
