//! A server that cannot take its address: a port in use, an address this
//! host does not have, a socket path it cannot create. The master and the
//! worker both report it this way, so each says what to do with the same
//! code (docs/ERRORS.md).

use std::io::ErrorKind;

use crate::EddyCode;

/// What kind of address could not be bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `IP:PORT`.
    Tcp,
    /// A Unix socket path.
    Socket,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot bind {what} to {addr}: {}", self.advice())]
pub struct BindError {
    /// What was being bound, e.g. `the master`.
    pub what: &'static str,
    pub endpoint: Endpoint,
    /// As configured.
    pub addr: String,
    /// Where the address is chosen, e.g. `[worker] bind` (named in the advice).
    pub setting: String,
    #[source]
    pub source: std::io::Error,
}

impl BindError {
    pub fn new(
        what: &'static str,
        endpoint: Endpoint,
        addr: impl Into<String>,
        setting: impl Into<String>,
        source: std::io::Error,
    ) -> Self {
        Self {
            what,
            endpoint,
            addr: addr.into(),
            setting: setting.into(),
            source,
        }
    }

    /// UNAVAILABLE while another process holds the address (retry once it
    /// is gone); INVALID_ARGUMENT when the setting must change.
    pub fn code(&self) -> EddyCode {
        match self.source.kind() {
            ErrorKind::AddrInUse => EddyCode::Unavailable,
            _ => EddyCode::InvalidArgument,
        }
    }

    fn advice(&self) -> String {
        let (e, setting) = (&self.source, &self.setting);
        let port = self.addr.rsplit_once(':').map_or("", |(_, p)| p);
        match (self.endpoint, e.kind()) {
            (Endpoint::Tcp, ErrorKind::AddrInUse) => format!(
                "port {port} is in use ({e}): stop the other process using it or set {setting} to another port"
            ),
            (Endpoint::Tcp, ErrorKind::AddrNotAvailable) => format!(
                "this host has no such address ({e}): set {setting} to an address of this host (0.0.0.0 for all)"
            ),
            (Endpoint::Tcp, ErrorKind::PermissionDenied) => format!(
                "permission denied ({e}): ports below 1024 need privileges; set {setting} to a higher port"
            ),
            (Endpoint::Tcp, _) => format!("{e}: check {setting}"),
            (Endpoint::Socket, ErrorKind::AddrInUse) => format!(
                "the socket is in use ({e}): stop the other process using it or set {setting} to another path"
            ),
            (Endpoint::Socket, _) => format!(
                "{e}: its directory must be one this user can create and write; set {setting} to such a path (\"\" for no short-circuit)"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(endpoint: Endpoint, kind: ErrorKind) -> BindError {
        let addr = match endpoint {
            Endpoint::Tcp => "127.0.0.1:29999",
            Endpoint::Socket => "/run/eddy/w.sock",
        };
        BindError::new(
            "the worker",
            endpoint,
            addr,
            "[worker] bind",
            std::io::Error::from(kind),
        )
    }

    #[test]
    fn each_failure_says_what_to_do_with_its_code() {
        let e = err(Endpoint::Tcp, ErrorKind::AddrInUse);
        assert_eq!(e.code(), EddyCode::Unavailable);
        let m = e.to_string();
        assert!(
            m.starts_with("cannot bind the worker to 127.0.0.1:29999: port 29999 is in use")
                && m.contains("stop the other process using it or set [worker] bind"),
            "{m}"
        );
        let e = err(Endpoint::Tcp, ErrorKind::AddrNotAvailable);
        assert_eq!(e.code(), EddyCode::InvalidArgument);
        assert!(e.to_string().contains("an address of this host"), "{e}");
        let e = err(Endpoint::Tcp, ErrorKind::PermissionDenied);
        assert!(e.to_string().contains("below 1024"), "{e}");
        let e = err(Endpoint::Socket, ErrorKind::PermissionDenied);
        assert_eq!(e.code(), EddyCode::InvalidArgument);
        assert!(e.to_string().contains("create and write"), "{e}");
    }
}
