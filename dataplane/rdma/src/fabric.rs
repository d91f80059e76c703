//! One provider's fabric: domain, endpoint, address vector and completion
//! queue behind one lock (its one-sided reads are in `read`).
//!
//! Every call into libfabric on a fabric happens with `Inner::state` held
//! (the shim asks for `FI_THREAD_DOMAIN`), so the progress thread, readers
//! and (de)registrations never race inside the provider.

use std::ffi::{CString, c_int};
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::domain::{FabricInfo, Inner};
use crate::error::RdmaError;
use crate::mr::{self, RegisteredBuf, Registration};
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

/// Whether libfabric's registration cache would serve `provider`. Its
/// verbs and efa providers cache registrations and keep them registered
/// after `fi_close`, so a dropped `Registration`'s key stays readable
/// (seen on soft-RoCE: ci/rdma-vm.sh). The cache reads its settings from
/// the environment when libfabric starts, so it is off only when the
/// process was started with `FI_MR_CACHE_MAX_COUNT=0` or
/// `FI_MR_CACHE_MONITOR=disabled`.
pub(crate) fn registration_cache_on(
    provider: &str,
    max_count: Option<&str>,
    monitor: Option<&str>,
) -> bool {
    let cached = provider.split(';').any(|p| p == "verbs" || p == "efa");
    cached && max_count.map(str::trim) != Some("0") && monitor.map(str::trim) != Some("disabled")
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
    /// Memory regions open on this fabric's domain: registrations, read
    /// buffers and retired buffers (for the worker's metrics).
    pub registrations_live: u64,
    /// Registrations the provider refused (`RdmaError::Registration`).
    pub registration_failures: u64,
    /// Bytes of buffers of timed-out reads the fabric still holds because
    /// the provider may write into them; bounded by `retired_cap`.
    pub retired_bytes: u64,
    /// How many such buffers.
    pub retired_buffers: u64,
    /// Retired buffers freed once their late completions arrived.
    pub retired_freed: u64,
    /// Reads refused with `RetiredFull`.
    pub reads_refused: u64,
}

/// A peer inserted into this fabric's address vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerId {
    pub(crate) fabric: u64,
    pub(crate) addr: u64,
}

/// An open fabric: one endpoint of one provider.
pub struct Fabric {
    pub(crate) inner: Arc<Inner>,
}

/// Identifies a fabric in the `PeerId`s it makes.
pub(crate) fn fabric_id(inner: &Arc<Inner>) -> u64 {
    inner.serial
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
        if registration_cache_on(
            &opts.provider,
            std::env::var("FI_MR_CACHE_MAX_COUNT").ok().as_deref(),
            std::env::var("FI_MR_CACHE_MONITOR").ok().as_deref(),
        ) {
            return Err(RdmaError::RegistrationCache {
                provider: opts.provider.clone(),
            });
        }
        let no_provider = |why: &str| RdmaError::NoProvider {
            provider: opts.provider.clone(),
            why: why.to_string(),
        };
        if let Some(e) = sys::load_failure() {
            return Err(no_provider(&format!(
                "libfabric could not be loaded ({e}): install it (Debian: apt-get install \
                 libfabric1), or name its library in EDDY_LIBFABRIC"
            )));
        }
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
        let inner = Arc::new(Inner::new(raw, info, max_read, opts.read_timeout));
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

    /// Registers memory owned through an `Arc` (e.g. a segment's mapping):
    /// the registration keeps it alive and closes first.
    pub fn register_shared<M>(&self, mem: Arc<M>) -> Result<Registration<'static>, RdmaError>
    where
        M: AsRef<[u8]> + Send + Sync + 'static,
    {
        mr::register_shared(&self.inner, mem)
    }

    /// A zeroed, page-aligned buffer of `len` bytes registered as a read
    /// destination (local descriptor for providers with FI_MR_LOCAL).
    pub fn alloc_buf(&self, len: usize) -> Result<RegisteredBuf, RdmaError> {
        mr::alloc_buf(&self.inner, len)
    }

    pub fn info(&self) -> &FabricInfo {
        &self.inner.info
    }

    pub fn stats(&self) -> FabricStats {
        let c = &self.inner.counters;
        let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        FabricStats {
            reads_posted: get(&c.reads_posted),
            completions: get(&c.completions),
            polls: get(&c.polls),
            registrations_live: get(&c.registrations_live),
            registration_failures: get(&c.registration_failures),
            retired_bytes: get(&c.retired_bytes),
            retired_buffers: get(&c.retired_buffers),
            retired_freed: get(&c.retired_freed),
            reads_refused: get(&c.reads_refused),
        }
    }

    /// Caps the bytes of retired buffers (those of timed-out reads, kept
    /// until their late completions arrive): while a read's buffer would
    /// take them past `bytes`, the read is refused with `RetiredFull`
    /// (one read is always allowed when nothing is retired). Default
    /// 256 MiB.
    pub fn set_retired_cap(&self, bytes: u64) {
        self.inner.retired_cap.store(bytes, Ordering::Relaxed);
    }

    /// Changes how long later reads may wait for their completions (set
    /// first by `FabricOptions::read_timeout`).
    pub fn set_read_timeout(&self, timeout: Duration) {
        let us = crate::domain::micros(timeout);
        self.inner.read_timeout_us.store(us, Ordering::Relaxed);
    }

    pub fn read_timeout(&self) -> Duration {
        Duration::from_micros(self.inner.read_timeout_us.load(Ordering::Relaxed))
    }

    pub fn retired_cap(&self) -> u64 {
        self.inner.retired_cap.load(Ordering::Relaxed)
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
            fabric: fabric_id(&self.inner),
            addr,
        })
    }

    /// Polls once (drives progress); the `Progress` thread calls this.
    pub fn poll(&self) -> u64 {
        self.inner.poll(&mut self.inner.lock())
    }
}

#[cfg(test)]
mod tests {
    use super::registration_cache_on;

    #[test]
    fn the_registration_cache_must_be_off_for_providers_that_cache() {
        for provider in ["verbs;ofi_rxm", "verbs", "efa", "efa;ofi_rxm"] {
            assert!(registration_cache_on(provider, None, None), "{provider}");
            assert!(
                registration_cache_on(provider, Some("1024"), Some("uffd")),
                "{provider}"
            );
            assert!(
                !registration_cache_on(provider, Some("0"), None),
                "{provider}"
            );
            assert!(
                !registration_cache_on(provider, None, Some("disabled")),
                "{provider}"
            );
        }
        for provider in ["tcp;ofi_rxm", "sockets", "shm", "verbsy"] {
            assert!(!registration_cache_on(provider, None, None), "{provider}");
        }
    }
}
