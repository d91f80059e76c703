//! The worker's fabric for remote leases (`[worker] rdma`): one libfabric
//! endpoint bound to the advertised host, the progress thread that answers
//! clients' one-sided reads, and the epoch its keys belong to. What is
//! registered on it, and for whom, is `crate::remote`'s.

use std::sync::Arc;

use eddy_rdma::{Fabric, FabricOptions, Progress};

use crate::segment::{SealMode, SegmentWriter};

/// The progress thread's longest pause while no remote lease is held (no
/// key is valid, so no read can come: only an idle worker's CPU counts),
/// and while one is (a read waits for the next poll: latency counts).
/// 200 µs against 20 µs made a 4 KiB read's p50 266 µs against 113 µs
/// over `tcp;ofi_rxm` (bench/RESULTS.md).
const IDLE_PAUSE: std::time::Duration = std::time::Duration::from_millis(2);
const BUSY_PAUSE: std::time::Duration = std::time::Duration::from_micros(20);

/// Providers tried, best first, when `[worker] rdma_provider` is empty.
pub const PROVIDERS: &[&str] = &["verbs;ofi_rxm", "efa", "tcp;ofi_rxm"];

/// The worker's fabric: one endpoint, a progress thread (providers with
/// manual progress answer reads only while the owner polls), and the epoch
/// its keys belong to.
pub struct WorkerFabric {
    fabric: Fabric,
    progress: Progress,
    epoch: u64,
    wire: eddy_wire::Fabric,
    /// The provider refuses read-only memory (verbs: rxm registers every
    /// region for local write, and a read-only mapping fails with EFAULT).
    needs_writable: bool,
    /// Serialises `leases_changed`: the last to set the pause set it from
    /// the latest count.
    pause_set: parking_lot::Mutex<()>,
}

impl WorkerFabric {
    /// Opens `provider` (or the best of [`PROVIDERS`]) bound to `host`,
    /// for a memory tier of `memory` bytes. `None` (logged, with what to
    /// change): the worker serves TCP only.
    pub fn open(provider: &str, host: &str, memory: u64) -> Option<Arc<Self>> {
        // Providers that pin (verbs, efa) charge every leased block to the
        // locked-memory limit: take what this process may, say what is
        // missing.
        let memlock = eddy_rdma::raise_memlock();
        let wanted: Vec<&str> = if provider.is_empty() {
            PROVIDERS.to_vec()
        } else {
            vec![provider]
        };
        let mut why = Vec::new();
        for p in wanted {
            let mut o = FabricOptions::new(p);
            o.node = Some(host.to_string()).filter(|h| !h.is_empty());
            let opened = Fabric::open_with(&o)
                .and_then(|f| Progress::start_with(&f, IDLE_PAUSE).map(|g| (f, g)));
            let probed = opened.map_err(|e| e.to_string()).and_then(|(f, g)| {
                let needs_writable = probe_registration(&f)?;
                Ok((f, g, needs_writable))
            });
            match probed {
                Ok((fabric, progress, needs_writable)) => {
                    let info = fabric.info();
                    if pins(p) && !memlock.covers(memory) {
                        tracing::warn!(
                            "{p} pins leased blocks, and the locked-memory limit does not \
                             cover the memory tier: leases past it will be refused (and read \
                             over TCP). {}",
                            memlock.clone().needing(memory)
                        );
                    } else {
                        tracing::info!("locked memory: {}", memlock.summary());
                    }
                    tracing::info!(
                        "remote leases (RDMA) on libfabric provider {p:?} ({}), registration \
                         mode {:?}{}",
                        info.provider,
                        info.mr_mode_names(),
                        if needs_writable {
                            "; it registers only writable memory, so segments stay mapped \
                             writable (F_SEAL_FUTURE_WRITE)"
                        } else {
                            ""
                        }
                    );
                    let wire = eddy_wire::Fabric {
                        provider: p.to_string(),
                        mr_mode: info.mr_mode,
                        address: fabric.address().to_vec(),
                    };
                    return Some(Arc::new(Self {
                        fabric,
                        progress,
                        epoch: random_epoch(),
                        wire,
                        needs_writable,
                        pause_set: Default::default(),
                    }));
                }
                Err(e) => why.push(format!("{p}: {e}")),
            }
        }
        tracing::warn!(
            "[worker] rdma is on but no libfabric provider opened ({}); serving TCP only",
            why.join("; ")
        );
        None
    }

    /// Registrations need writable mappings ([`SealMode::Registrable`]
    /// segments, or a private view of a read-only one).
    pub fn needs_writable(&self) -> bool {
        self.needs_writable
    }

    /// How the store must seal segments for this fabric.
    pub fn seal_mode(&self) -> SealMode {
        if self.needs_writable {
            SealMode::Registrable
        } else {
            SealMode::ReadOnly
        }
    }

    /// The count of remote leases held (over all connections) changed:
    /// the progress thread polls often while any is. The count is read
    /// under a lock, so of two changes racing the later one's reading
    /// (the latest count) is what stays set.
    pub fn leases_changed(&self, held: &std::sync::atomic::AtomicU64) {
        let _one_at_a_time = self.pause_set.lock();
        let n = held.load(std::sync::atomic::Ordering::SeqCst);
        self.progress
            .set_max_pause(if n > 0 { BUSY_PAUSE } else { IDLE_PAUSE });
    }

    /// The provider clients must read with (as configured or chosen).
    pub fn provider(&self) -> &str {
        &self.wire.provider
    }

    pub fn fabric(&self) -> &Fabric {
        &self.fabric
    }

    /// Changes whenever the fabric is opened again: keys of another epoch
    /// open nothing (their registrations died with that fabric).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// What a client connects to, as the frames carry it.
    pub fn wire(&self) -> &eddy_wire::Fabric {
        &self.wire
    }
}

/// Whether `provider` pins registered pages (charged to RLIMIT_MEMLOCK).
fn pins(provider: &str) -> bool {
    provider.starts_with("verbs") || provider.starts_with("efa")
}

/// Registers one page sealed read-only, then (if refused) one sealed
/// registrable: whether this provider needs writable mappings. An error
/// when neither registers (this fabric cannot serve leases).
/// `EDDY_RDMA_WRITABLE=1` takes the writable path on any provider, so the
/// path verbs needs runs where there is no verbs device (the tests).
fn probe_registration(f: &Fabric) -> Result<bool, String> {
    let seg = |mode| {
        let mut w = SegmentWriter::create("eddy-rdma-probe", 4096, false)
            .map_err(|e| format!("a probe segment: {e}"))?;
        w.as_mut_slice()[0] = 1;
        w.seal_with(4096, mode)
            .map_err(|e| format!("sealing a probe segment: {e}"))
    };
    let forced = std::env::var("EDDY_RDMA_WRITABLE").is_ok_and(|v| v == "1");
    let ro = match f.register_shared(Arc::new(seg(SealMode::ReadOnly)?)) {
        Ok(_) if !forced => return Ok(false),
        Ok(_) => "registered; EDDY_RDMA_WRITABLE=1".to_string(),
        Err(e) => e.to_string(),
    };
    match f.register_shared(Arc::new(seg(SealMode::Registrable)?)) {
        Ok(_) => Ok(true),
        Err(e) => Err(format!(
            "it registered neither read-only memory ({ro}) nor writable memory ({e})"
        )),
    }
}

/// Any value works as long as a restart picks another: the time in
/// nanoseconds and the process id.
fn random_epoch() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    (t ^ (u64::from(std::process::id()) << 40)) | 1
}
