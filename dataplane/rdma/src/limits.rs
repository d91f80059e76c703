//! The locked-memory limit (`RLIMIT_MEMLOCK`): what a registration may pin.
//!
//! Verbs providers pin every registered page, and the kernel charges the
//! pages to the process's locked-memory limit unless it is root or has
//! `CAP_IPC_LOCK`. A process may raise its soft limit up to its hard limit
//! by itself; above that only the administrator can help, so the report
//! says how.

use std::fmt;

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

use crate::sys;

/// The locked-memory limit of this process, before and after
/// `raise_memlock`, and whether the kernel applies it at all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemlockReport {
    /// The soft limit found (`None`: unlimited).
    pub soft_before: Option<u64>,
    /// The soft limit now (`None`: unlimited).
    pub soft: Option<u64>,
    /// The hard limit (`None`: unlimited): the most the soft limit can be
    /// raised to without privilege.
    pub hard: Option<u64>,
    /// Effective user id 0.
    pub root: bool,
    /// `CAP_IPC_LOCK` in the effective set: the limit is not applied.
    pub cap_ipc_lock: bool,
    /// Why raising the soft limit failed, if it was tried and did.
    pub raise_error: Option<String>,
    /// The bytes the caller needs to pin (`needing`), for `Display`.
    pub needed: Option<u64>,
}

/// Raises the soft `RLIMIT_MEMLOCK` to the hard limit (the most an
/// unprivileged process may do) and reports both. Call it once at start,
/// before registering memory; it never lowers a limit.
pub fn raise_memlock() -> MemlockReport {
    let mut report = memlock_report();
    let Rlimit { current, maximum } = getrlimit(Resource::Memlock);
    let below = match (current, maximum) {
        (_, None) => current.is_some(),
        (None, Some(_)) => false,
        (Some(c), Some(m)) => c < m,
    };
    if below {
        let raised = Rlimit {
            current: maximum,
            maximum,
        };
        if let Err(e) = setrlimit(Resource::Memlock, raised) {
            report.raise_error = Some(e.to_string());
        }
    }
    let now = getrlimit(Resource::Memlock);
    report.soft = now.current;
    report.hard = now.maximum;
    report
}

/// The locked-memory limit as it is, without changing it.
pub fn memlock_report() -> MemlockReport {
    let Rlimit { current, maximum } = getrlimit(Resource::Memlock);
    MemlockReport {
        soft_before: current,
        soft: current,
        hard: maximum,
        root: rustix::process::geteuid().is_root(),
        cap_ipc_lock: has_cap_ipc_lock(),
        raise_error: None,
        needed: None,
    }
}

impl MemlockReport {
    /// The kernel does not apply the limit to this process.
    pub fn privileged(&self) -> bool {
        self.root || self.cap_ipc_lock
    }

    /// The soft limit is unlimited.
    pub fn unlimited(&self) -> bool {
        self.soft.is_none()
    }

    /// `raise_memlock` changed the soft limit.
    pub fn raised(&self) -> bool {
        self.soft != self.soft_before
    }

    /// Whether this process may pin `bytes` in all (registrations and
    /// `mlock` together; what is pinned already counts too).
    pub fn covers(&self, bytes: u64) -> bool {
        self.privileged() || self.soft.is_none_or(|s| s >= bytes)
    }

    /// The same report, with `Display` saying what is missing to pin
    /// `bytes` and how to get it.
    pub fn needing(mut self, bytes: u64) -> Self {
        self.needed = Some(bytes);
        self
    }

    /// One line for logs and error messages: the limits and privilege.
    pub fn summary(&self) -> String {
        let who = if self.root {
            "root: the limit is not applied"
        } else if self.cap_ipc_lock {
            "CAP_IPC_LOCK: the limit is not applied"
        } else {
            "not root, no CAP_IPC_LOCK: the limit applies"
        };
        format!(
            "RLIMIT_MEMLOCK soft {}, hard {} ({who})",
            show(self.soft),
            show(self.hard)
        )
    }
}

impl fmt::Display for MemlockReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "locked memory: {}", self.summary())?;
        if self.raised() {
            write!(f, "; soft limit raised from {}", show(self.soft_before))?;
        }
        if let Some(e) = &self.raise_error {
            write!(f, "; raising the soft limit failed: {e}")?;
        }
        let Some(need) = self.needed else {
            return Ok(());
        };
        if self.covers(need) {
            return write!(f, "; enough to pin {}", bytes(need));
        }
        let kib = need.div_ceil(1024);
        write!(
            f,
            "; registering {} needs a locked-memory limit of at least {kib} KiB but this \
             process may lock only {}: raise the hard limit for the user that runs it \
             (`ulimit -l {kib}` or `ulimit -l unlimited` as root in the shell that starts it; \
             `LimitMEMLOCK=infinity` in its systemd unit; \
             `<user> hard memlock unlimited` and `<user> soft memlock unlimited` in \
             /etc/security/limits.conf, then log in again; or grant CAP_IPC_LOCK), \
             or register less",
            bytes(need),
            show(self.soft)
        )
    }
}

fn show(limit: Option<u64>) -> String {
    limit.map_or_else(|| "unlimited".to_string(), bytes)
}

fn bytes(n: u64) -> String {
    const MIB: u64 = 1 << 20;
    if n >= MIB && n.is_multiple_of(MIB) {
        format!("{} MiB", n / MIB)
    } else if n >= 1024 && n.is_multiple_of(1024) {
        format!("{} KiB", n / 1024)
    } else {
        format!("{n} bytes")
    }
}

/// `CAP_IPC_LOCK` (capability 14) in the effective set, from
/// /proc/self/status; `false` when it cannot be read.
fn has_cap_ipc_lock() -> bool {
    const CAP_IPC_LOCK: u32 = 14;
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_IPC_LOCK) != 0)
}

/// A refused registration's text, with the locked-memory limit named when
/// the error is the kind a pinning limit causes (out of memory, bad
/// address, not permitted).
pub(crate) fn registration_text(code: i64, text: String) -> String {
    let pinning = [
        sys::FI_ENOMEM,
        sys::FI_EFAULT,
        sys::FI_EPERM,
        sys::FI_EACCES,
    ];
    if pinning.contains(&code.abs()) {
        format!("{text}; {}", memlock_report().summary())
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(soft: Option<u64>, root: bool) -> MemlockReport {
        MemlockReport {
            soft_before: soft,
            soft,
            hard: soft,
            root,
            cap_ipc_lock: false,
            raise_error: None,
            needed: None,
        }
    }

    #[test]
    fn a_limit_below_the_need_says_how_to_raise_it() {
        let r = report(Some(8 << 20), false).needing(64 << 20);
        assert!(!r.covers(64 << 20));
        let text = r.to_string();
        for fix in ["ulimit -l 65536", "LimitMEMLOCK=", "limits.conf", "8 MiB"] {
            assert!(text.contains(fix), "{fix} missing from {text}");
        }
    }

    #[test]
    fn root_and_unlimited_cover_everything() {
        assert!(report(Some(0), true).covers(u64::MAX));
        assert!(report(None, false).covers(u64::MAX));
        let text = report(None, false).needing(1 << 40).to_string();
        assert!(text.contains("enough to pin"), "{text}");
    }

    #[test]
    fn pinning_errors_name_the_limit_and_others_do_not() {
        let t = registration_text(-sys::FI_ENOMEM, "Cannot allocate memory".into());
        assert!(t.contains("RLIMIT_MEMLOCK soft"), "{t}");
        let t = registration_text(-sys::FI_EINVAL, "Invalid argument".into());
        assert_eq!(t, "Invalid argument");
    }
}
