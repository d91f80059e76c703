//! The worker's fabric for remote leases (`[worker] rdma`): one libfabric
//! endpoint bound to the advertised host, the progress thread that answers
//! clients' one-sided reads, and the epoch its keys belong to. What is
//! registered on it, and for whom, is `crate::remote`'s.

use std::sync::Arc;

use eddy_rdma::{Fabric, FabricOptions, Progress};

/// Providers tried, best first, when `[worker] rdma_provider` is empty.
pub const PROVIDERS: &[&str] = &["verbs;ofi_rxm", "efa", "tcp;ofi_rxm"];

/// The worker's fabric: one endpoint, a progress thread (providers with
/// manual progress answer reads only while the owner polls), and the epoch
/// its keys belong to.
pub struct WorkerFabric {
    fabric: Fabric,
    _progress: Progress,
    epoch: u64,
    wire: eddy_wire::Fabric,
}

impl WorkerFabric {
    /// Opens `provider` (or the best of [`PROVIDERS`]) bound to `host`.
    /// `None` (logged, with what to change): the worker serves TCP only.
    pub fn open(provider: &str, host: &str) -> Option<Arc<Self>> {
        let wanted: Vec<&str> = if provider.is_empty() {
            PROVIDERS.to_vec()
        } else {
            vec![provider]
        };
        let mut why = Vec::new();
        for p in wanted {
            let mut o = FabricOptions::new(p);
            o.node = Some(host.to_string()).filter(|h| !h.is_empty());
            match Fabric::open_with(&o).and_then(|f| Progress::start(&f).map(|g| (f, g))) {
                Ok((fabric, progress)) => {
                    let info = fabric.info();
                    tracing::info!(
                        "remote leases (RDMA) on libfabric provider {p:?} ({}), registration \
                         mode {:?}",
                        info.provider,
                        info.mr_mode_names()
                    );
                    let wire = eddy_wire::Fabric {
                        provider: p.to_string(),
                        mr_mode: info.mr_mode,
                        address: fabric.address().to_vec(),
                    };
                    return Some(Arc::new(Self {
                        fabric,
                        _progress: progress,
                        epoch: random_epoch(),
                        wire,
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

/// Any value works as long as a restart picks another: the time in
/// nanoseconds and the process id.
fn random_epoch() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    (t ^ (u64::from(std::process::id()) << 40)) | 1
}
