//! `RdmaError`: every way the fabric layer fails, each with a stable name
//! (`code`) and a message that says what to change.

/// A failure of the RDMA layer. None of these is fatal to a reader: the
/// transport that uses this crate falls back to TCP (issue 17).
#[derive(Debug, thiserror::Error)]
pub enum RdmaError {
    /// fi_getinfo offered nothing for this provider with one-sided reads.
    #[error(
        "no libfabric provider {provider:?} with one-sided reads (RDM endpoint, FI_RMA) here: \
         {why}; `fi_info -l` lists the providers this host has: set the provider to one of \
         them (\"tcp;ofi_rxm\" works without RDMA hardware)"
    )]
    NoProvider { provider: String, why: String },
    /// A setup call after fi_getinfo failed (fabric, domain, CQ, AV, endpoint).
    #[error("libfabric {call} failed for provider {provider:?}: {text} (error {code})")]
    Setup {
        provider: String,
        call: &'static str,
        code: i64,
        text: String,
    },
    /// fi_mr_reg refused a region.
    #[error(
        "registering {len} bytes with the fabric failed: {text} (error {code}); {}",
        registration_hint(*.code)
    )]
    Registration { len: usize, code: i64, text: String },
    /// The provider would cache registrations past their `Drop` (the key
    /// would stay readable), and the environment does not turn that off.
    #[error(
        "libfabric's registration cache is on for provider {provider:?}: it keeps a dropped \
         registration's key readable, so revoking a key would not work; start the process with \
         FI_MR_CACHE_MAX_COUNT=0 in its environment"
    )]
    RegistrationCache { provider: String },
    /// A peer's fabric address is malformed or the AV refused it.
    #[error("peer fabric address refused: {0}")]
    Address(String),
    /// The provider failed a one-sided read (wrong key, peer gone, ...).
    #[error(
        "one-sided read failed: {text} (error {code}); a refused key means the registration \
         was dropped or the key is stale: ask the owner for a new one"
    )]
    Read { code: i64, text: String },
    /// No piece of a read could be posted for `ms`: the provider could not
    /// connect to the peer's fabric (gone, or restarted at a new address).
    #[error(
        "no one-sided read could be posted to the peer for {ms} ms: its fabric is not reachable \
         (stopped or restarted?); ask its owner for its fabric address again"
    )]
    Unreachable { ms: u64 },
    /// A read outside the remote region, refused before it is posted.
    #[error(
        "read of {len} bytes at offset {offset} is outside the remote region of {region} bytes"
    )]
    OutOfRange { offset: u64, len: u64, region: u64 },
    /// A read did not complete in time; its buffer stays with the fabric.
    #[error(
        "one-sided read did not complete within {ms} ms: is the owner of the memory alive and \
         driving progress? its buffer is kept until the provider completes the read or the \
         fabric closes"
    )]
    Timeout { ms: u64 },
    /// Too many bytes of timed-out reads' buffers are still held.
    #[error(
        "read refused: {retired} bytes in {buffers} buffers of timed-out reads are still held \
         for their late completions (cap {cap} bytes); a peer is not answering: check that \
         the owners are alive and drive progress, read over TCP meanwhile, or reopen the \
         fabric (closing it frees them)"
    )]
    RetiredFull {
        retired: u64,
        buffers: u64,
        cap: u64,
    },
    /// A buffer or peer of another fabric was passed to this one.
    #[error("{0} belongs to another fabric: use the fabric that made it")]
    OtherFabric(&'static str),
}

/// What to change after a refused registration, by its errno.
fn registration_hint(code: i64) -> &'static str {
    // EFAULT (14): verbs through rxm registers every region with local
    // write access, and the kernel will not pin read-only pages for that.
    if code.abs() == 14 {
        "the memory is not mapped writable: verbs providers pin it for local write access, so \
         map it writable (MAP_SHARED, PROT_READ|PROT_WRITE) before registering"
    } else {
        "a registration pins memory: raise the locked-memory limit (`ulimit -l`, \
         RLIMIT_MEMLOCK, LimitMEMLOCK= for systemd) or register less"
    }
}

impl RdmaError {
    /// A stable name for logs and metrics; names never change meaning.
    /// The peer's fabric could not be reached at all: every key of it is
    /// stale, not just the one read.
    pub fn unreachable(&self) -> bool {
        matches!(self, Self::Unreachable { .. })
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::NoProvider { .. } => "NO_PROVIDER",
            Self::Setup { .. } => "SETUP",
            Self::Registration { .. } => "REGISTRATION",
            Self::RegistrationCache { .. } => "REGISTRATION_CACHE",
            Self::Address(_) => "ADDRESS",
            Self::Read { .. } => "READ",
            Self::OutOfRange { .. } => "OUT_OF_RANGE",
            Self::Timeout { .. } => "TIMEOUT",
            Self::Unreachable { .. } => "UNREACHABLE",
            Self::RetiredFull { .. } => "RETIRED_FULL",
            Self::OtherFabric(_) => "OTHER_FABRIC",
        }
    }
}
