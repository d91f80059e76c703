//! TLS: the `[security]` keys `tls_cert`, `tls_key`, `tls_ca` and
//! `tls_client_auth` as rustls configurations, loaded once per process,
//! and failed handshakes told in words a user can act on.
//!
//! One place for both sides so the master (gRPC), workers (data port,
//! replication dials, their master link) and clients agree on the crypto
//! provider (ring, chosen explicitly: other dependencies enable aws-lc-rs
//! too, and rustls refuses to guess between two), the protocol versions
//! (rustls' safe defaults: TLS 1.3 and 1.2, AEAD suites only) and ALPN,
//! which keeps a gRPC dial off a data port and the other way round.
//! Sockets stay with the crates that own them; the stream over one,
//! plaintext or TLS, and the server's handshake are here ([`MaybeTls`],
//! [`accept`]) so the master, workers and clients share them.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{AlertDescription, CertificateError, ClientConfig, RootCertStore, ServerConfig};

pub use rustls;

use crate::EddyCode;
use crate::auth::SecurityConfig;

/// ALPN of the master's gRPC port (HTTP/2).
pub const ALPN_GRPC: &[u8] = b"h2";
/// ALPN of a worker's data port (docs/DATA-PROTOCOL.md).
pub const ALPN_DATA: &[u8] = b"eddy-data/1";

/// Why the TLS settings cannot be used. Start-up (or connecting) stops
/// with it; each names the `[security]` key to fix.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {} ([security] {key}): {source}", path.display())]
    Read {
        what: &'static str,
        key: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{} ([security] {key}) holds no {what} (expected a PEM block \"-----BEGIN {label}-----\")",
        path.display()
    )]
    NoPem {
        what: &'static str,
        label: &'static str,
        key: &'static str,
        path: PathBuf,
    },
    #[error("{} ([security] {key}) is not valid PEM: {reason}", path.display())]
    BadPem {
        key: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error(
        "[security] {set} is set but {missing} is not: set both (a PEM certificate chain and its private key), or neither"
    )]
    Half {
        set: &'static str,
        missing: &'static str,
    },
    #[error(
        "[security] tls_client_auth = true needs tls_ca: the CA whose client certificates the server accepts"
    )]
    ClientAuthWithoutCa,
    #[error("TLS settings refused: {what}: {source}")]
    Rustls {
        what: &'static str,
        #[source]
        source: rustls::Error,
    },
    #[error("{0}")]
    Certgen(String),
}

impl TlsError {
    /// Settings a user has to change: `INVALID_ARGUMENT`.
    pub fn code(&self) -> EddyCode {
        EddyCode::InvalidArgument
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path, what: &'static str, key: &'static str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        key,
        path: path.to_path_buf(),
        source,
    })
}

/// Every certificate in the PEM file at `path`; at least one.
fn certs(path: &Path, key: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(path, "certificates", key)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadPem {
            key,
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoPem {
            what: "certificate",
            label: "CERTIFICATE",
            key,
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// The first private key (PKCS#8, PKCS#1 or SEC1) in the PEM file at `path`.
fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(path, "the private key", "tls_key")?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoPem {
            what: "private key",
            label: "PRIVATE KEY",
            key: "tls_key",
            path: path.to_path_buf(),
        },
        e => TlsError::BadPem {
            key: "tls_key",
            path: path.to_path_buf(),
            reason: e.to_string(),
        },
    })
}

/// The CA bundle at `path` as trust roots.
fn roots(path: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(certs(path, "tls_ca")?);
    if added == 0 {
        return Err(TlsError::NoPem {
            what: "usable CA certificate",
            label: "CERTIFICATE",
            key: "tls_ca",
            path: path.to_path_buf(),
        });
    }
    Ok(Arc::new(roots))
}

/// `tls_cert` and `tls_key`, both or neither.
fn identity(sec: &SecurityConfig) -> Result<Option<(&Path, &Path)>, TlsError> {
    let (cert, key) = (sec.tls_cert.as_path(), sec.tls_key.as_path());
    match (cert.as_os_str().is_empty(), key.as_os_str().is_empty()) {
        (true, true) => Ok(None),
        (false, false) => Ok(Some((cert, key))),
        (false, true) => Err(TlsError::Half {
            set: "tls_cert",
            missing: "tls_key",
        }),
        (true, false) => Err(TlsError::Half {
            set: "tls_key",
            missing: "tls_cert",
        }),
    }
}

fn rustls_err(what: &'static str) -> impl FnOnce(rustls::Error) -> TlsError {
    move |source| TlsError::Rustls { what, source }
}

/// What a server (the master's gRPC port, a worker's data port) serves.
#[derive(Clone)]
pub struct ServerTls {
    config: Arc<ServerConfig>,
    /// Client certificates are required (mutual TLS).
    pub client_auth: bool,
}

impl ServerTls {
    /// The server side of `sec`, offering `alpn` ([`ALPN_GRPC`] or
    /// [`ALPN_DATA`]); `None` when `tls_cert` and `tls_key` are both empty
    /// (plaintext).
    pub fn from_security(sec: &SecurityConfig, alpn: &[u8]) -> Result<Option<Self>, TlsError> {
        let Some((cert, key)) = identity(sec)? else {
            return Ok(None);
        };
        let (chain, key) = (certs(cert, "tls_cert")?, private_key(key)?);
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(rustls_err("protocol versions"))?;
        let builder = if sec.tls_client_auth {
            if sec.tls_ca.as_os_str().is_empty() {
                return Err(TlsError::ClientAuthWithoutCa);
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                roots(&sec.tls_ca)?,
                provider(),
            )
            .build()
            .map_err(|e| TlsError::Rustls {
                what: "tls_ca as client CA",
                source: rustls::Error::General(e.to_string()),
            })?;
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let mut config = builder
            .with_single_cert(chain, key)
            .map_err(rustls_err("tls_cert with tls_key"))?;
        config.alpn_protocols = vec![alpn.to_vec()];
        Ok(Some(Self {
            config: Arc::new(config),
            client_auth: sec.tls_client_auth,
        }))
    }

    pub fn config(&self) -> Arc<ServerConfig> {
        self.config.clone()
    }
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTls")
            .field("client_auth", &self.client_auth)
            .finish_non_exhaustive()
    }
}

/// What a process that dials TLS trusts and presents: one configuration
/// for gRPC (ALPN h2) and one for data connections, loaded once and shared
/// by every connection (cheap to clone).
#[derive(Clone)]
pub struct ClientTls {
    grpc: Arc<ClientConfig>,
    data: Arc<ClientConfig>,
    ca: PathBuf,
    has_cert: bool,
}

impl ClientTls {
    /// Trusts the CA bundle at `ca`; presents `identity` (certificate
    /// chain, private key) to servers that ask for one (mutual TLS).
    pub fn new(ca: &Path, identity: Option<(&Path, &Path)>) -> Result<Self, TlsError> {
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(rustls_err("protocol versions"))?
            .with_root_certificates(roots(ca)?);
        let mut config = match identity {
            Some((cert, key)) => builder
                .with_client_auth_cert(certs(cert, "tls_cert")?, private_key(key)?)
                .map_err(rustls_err("tls_cert with tls_key"))?,
            None => builder.with_no_client_auth(),
        };
        let mut data = config.clone();
        config.alpn_protocols = vec![ALPN_GRPC.to_vec()];
        data.alpn_protocols = vec![ALPN_DATA.to_vec()];
        Ok(Self {
            grpc: Arc::new(config),
            data: Arc::new(data),
            ca: ca.to_path_buf(),
            has_cert: identity.is_some(),
        })
    }

    /// The client side of `sec`: `None` when `tls_ca` is empty (plaintext);
    /// `tls_cert`/`tls_key`, when set, are the client certificate.
    pub fn from_security(sec: &SecurityConfig) -> Result<Option<Self>, TlsError> {
        if sec.tls_ca.as_os_str().is_empty() {
            return Ok(None);
        }
        Self::new(&sec.tls_ca, identity(sec)?).map(Some)
    }

    /// For the master's gRPC port.
    pub fn grpc(&self) -> Arc<ClientConfig> {
        self.grpc.clone()
    }

    /// For workers' data ports.
    pub fn data(&self) -> Arc<ClientConfig> {
        self.data.clone()
    }

    /// The CA bundle trusted (for messages).
    pub fn ca_path(&self) -> &Path {
        &self.ca
    }

    /// Whether this side presents a certificate (mutual TLS).
    pub fn has_client_cert(&self) -> bool {
        self.has_cert
    }

    /// Words a user can act on for a failed TLS handshake with `peer` (a
    /// description such as "the Eddy master at HOST:PORT"): what went wrong
    /// and which setting to change. `e` is the error as it surfaced (an
    /// `io::Error` from the handshake, a hyper error around one, ...).
    pub fn explain(&self, peer: &str, e: &(dyn std::error::Error + 'static)) -> String {
        if let Some(text) = self.diagnose(peer, e) {
            return text;
        }
        if io_error(e).is_some_and(|io| io.kind() == std::io::ErrorKind::UnexpectedEof) {
            return format!(
                "{peer} closed the connection during the TLS handshake: it may serve plaintext (then enable TLS there with [security] tls_cert and tls_key, or unset tls_ca here), or it refused this client"
            );
        }
        format!("TLS with {peer} failed: {e}")
    }

    /// As [`ClientTls::explain`] when `e` carries a TLS error (a refused
    /// certificate, an alert from the peer), else `None`: for failures
    /// after the handshake, where most errors have nothing to do with TLS
    /// (in TLS 1.3 a server refuses a client certificate only then).
    pub fn diagnose(&self, peer: &str, e: &(dyn std::error::Error + 'static)) -> Option<String> {
        diagnose(peer, e, Some(&self.ca), self.has_cert)
    }
}

/// Words for a failed TLS exchange with `peer` when `e` carries a TLS
/// error, else `None`; `ca` is the bundle this side trusts (for the
/// message), `has_cert` whether it presented a client certificate.
pub fn diagnose(
    peer: &str,
    e: &(dyn std::error::Error + 'static),
    ca: Option<&Path>,
    has_cert: bool,
) -> Option<String> {
    let ca = match ca {
        Some(p) => format!("now {}", p.display()),
        None => "unset".to_string(),
    };
    let tls = rustls_error(e)?;
    Some(match &tls {
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                format!(
                    "certificate verification failed: {peer} presented a certificate that does not name the host dialled ({c}); reissue it with that host or IP as a subject alternative name, or dial a name it has"
                )
            }
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. } => format!(
                "certificate verification failed: {peer} presented a certificate outside its validity period ({c}); renew it (or check this host's clock)"
            ),
            _ => format!(
                "certificate verification failed: {peer} presented a certificate not signed by the CA this client trusts ({c}); set [security] tls_ca ({ca}) to the CA that signed it"
            ),
        },
        rustls::Error::AlertReceived(
            AlertDescription::CertificateRequired | AlertDescription::HandshakeFailure,
        ) if !has_cert => format!(
            "{peer} requires a client certificate (mutual TLS, tls_client_auth there): set [security] tls_cert and tls_key to a certificate signed by its CA"
        ),
        // A client certificate whose signature does not verify against the
        // server's CA (another CA of the same name) is answered
        // decrypt_error.
        rustls::Error::AlertReceived(a @ AlertDescription::DecryptError) if has_cert => format!(
            "{peer} refused this client's certificate ({a:?}): set [security] tls_cert and tls_key to a certificate signed by the CA it trusts"
        ),
        rustls::Error::AlertReceived(
            a @ (AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateExpired
            | AlertDescription::CertificateUnknown
            | AlertDescription::AccessDenied
            | AlertDescription::CertificateRequired),
        ) => format!(
            "{peer} refused this client's certificate ({a:?}): set [security] tls_cert and tls_key to a certificate signed by the CA it trusts"
        ),
        rustls::Error::NoApplicationProtocol
        | rustls::Error::AlertReceived(AlertDescription::NoApplicationProtocol) => format!(
            "{peer} speaks TLS but not the expected protocol (ALPN): is this a master address given for a worker, or the other way round?"
        ),
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
            format!(
                "{peer} does not speak TLS ({tls}): it may serve plaintext; enable TLS there ([security] tls_cert, tls_key) or unset [security] tls_ca here"
            )
        }
        other => format!("TLS with {peer} failed: {other}"),
    })
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTls")
            .field("ca", &self.ca)
            .field("client_cert", &self.has_cert)
            .finish_non_exhaustive()
    }
}

/// The rustls error somewhere in `e`'s chain (also inside an
/// `io::Error`, whose `source` skips the error it wraps). rustls reports
/// an alert that arrived after the handshake as text only ("received
/// fatal alert: NAME"): that is read back into the alert it names.
fn rustls_error(e: &(dyn std::error::Error + 'static)) -> Option<rustls::Error> {
    let mut cur = Some(e);
    while let Some(e) = cur {
        if let Some(t) = e.downcast_ref::<rustls::Error>() {
            return Some(t.clone());
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if let Some(t) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                return Some(t.clone());
            }
            if let Some(a) = io.get_ref().and_then(|i| alert_in_text(&i.to_string())) {
                return Some(rustls::Error::AlertReceived(a));
            }
        }
        cur = e.source();
    }
    None
}

/// The alert named by rustls' text "received fatal alert: NAME".
fn alert_in_text(text: &str) -> Option<AlertDescription> {
    let name = text.strip_prefix("received fatal alert: ")?;
    use AlertDescription as A;
    [
        A::CertificateRequired,
        A::HandshakeFailure,
        A::BadCertificate,
        A::UnknownCA,
        A::CertificateExpired,
        A::CertificateUnknown,
        A::CertificateRevoked,
        A::UnsupportedCertificate,
        A::AccessDenied,
        A::NoApplicationProtocol,
        A::DecodeError,
        A::DecryptError,
        A::ProtocolVersion,
    ]
    .into_iter()
    .find(|a| format!("{a:?}") == name)
}

fn io_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a std::io::Error> {
    let mut cur = Some(e);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        cur = e.source();
    }
    None
}

/// The TLS server name of `addr` (`host:port`, `[v6]:port`): an IP
/// address or a DNS name, checked against the peer's certificate.
pub fn server_name(addr: &str) -> Result<ServerName<'static>, String> {
    let host = match addr.rsplit_once(':') {
        Some((h, p)) if p.parse::<u16>().is_ok() => h,
        _ => addr,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string())
        .map_err(|_| format!("{host:?} is neither an IP address nor a DNS name TLS can check"))
}

mod stream;
pub use stream::{MaybeTls, accept};

#[cfg(any(test, feature = "certgen"))]
mod certgen;
#[cfg(any(test, feature = "certgen"))]
pub use certgen::{LocalCerts, generate_local};

#[cfg(test)]
mod tests;
