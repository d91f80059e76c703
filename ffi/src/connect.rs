//! Entry points: connecting to a cluster (options parsed here) and
//! disconnecting.

use std::ffi::{c_char, c_int};

use eddy_client::{ClientOptions, FileSystem};

use crate::*;

/// Connects to the master at `master` ("host:port"). `keys`/`values` hold
/// `n_options` options (both may be NULL when `n_options` is 0):
/// "short_circuit" = "true" | "false" (default "true": map blocks of a
/// worker on this host instead of copying them over TCP);
/// "transport" = "auto" | "rdma" | "tcp" (default "auto"; the
/// EDDY_TRANSPORT environment variable, when set, overrides it): "auto"
/// reads a worker on this host through shared memory (short_circuit), a
/// worker that serves remote leases ([worker] rdma) with one-sided RDMA
/// reads, and any other over TCP; "rdma" uses RDMA wherever a worker offers
/// it and TCP elsewhere (no short-circuit); "tcp" only TCP. A read that
/// cannot go by RDMA goes over TCP (logged once per worker), never failing
/// for it;
/// "timeout_ms" = a decimal number of milliseconds, 1 or more (default
/// 60000): the longest any one exchange with the master or a worker may
/// wait for its answer, connecting included; past it the call fails with
/// EDDY_ERR_DEADLINE_EXCEEDED. This call itself waits at most 5 s (or
/// timeout_ms if smaller) for the master;
/// "metadata_cache_ms" = a decimal number of milliseconds, 0 or more
/// (default 1000): how long `eddy_open` may reuse a complete file's metadata
/// without asking the master, i.e. how long a delete, rename or rewrite by
/// *another* client may go unseen by this one (also while no master is
/// running); 0 caches nothing. This client's own create, close, rename and
/// delete are always seen at once;
/// "token" = a credential from `eddy token create` (`eddy1.`...), for a
/// master with authentication "token" (default: EDDY_TOKEN, else the file
/// EDDY_TOKEN_FILE, else ~/.eddy/token if it exists; none: the OS user
/// only, as "simple" mode takes it);
/// "umask" = up to 3 octal digits (default "022"): permission bits cleared
/// from files (0666) and directories (0777) this client creates;
/// "tls_ca" = the path of a PEM CA bundle (default none: plaintext): dial
/// the master and workers over TLS, trusting the certificates it signed
/// (as `[security] tls_ca`; the master address may then be
/// "https://host:port"). A master serving TLS to a client without it, a
/// certificate it did not sign, or a server without TLS fail with
/// EDDY_ERR_UNAVAILABLE and a last-error message naming what to set;
/// "tls_cert", "tls_key" = paths of a PEM certificate chain and its private
/// key, presented when a server requires client certificates (mutual TLS;
/// both or neither, and only with "tls_ca"). The files are read once, here.
/// A refused credential fails calls with EDDY_ERR_UNAUTHENTICATED; a
/// permission the master refuses, with EDDY_ERR_PERMISSION_DENIED.
/// On success `*out` is a client handle; free it with `eddy_disconnect`.
/// Thread-safe.
///
/// # Safety
/// `master` is a NUL-terminated string; `keys` and `values` point to
/// `n_options` NUL-terminated strings each; `out` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn eddy_connect(
    master: *const c_char,
    keys: *const *const c_char,
    values: *const *const c_char,
    n_options: usize,
    out: *mut *mut eddy_client_t,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's promise for `master`.
        let addr = std::str::from_utf8(unsafe { cstr(master, "master")? })
            .map_err(|_| invalid("master address is not UTF-8"))?
            .to_string();
        let mut opts = ClientOptions {
            credentials: eddy_client::Credentials::from_config(&Default::default())?,
            ..ClientOptions::default()
        };
        let mut tls = tls_files::Paths::default();
        if n_options > 0 && (keys.is_null() || values.is_null()) {
            return Err(invalid("option keys or values are NULL"));
        }
        for i in 0..n_options {
            // SAFETY: `keys` and `values` hold `n_options` entries.
            let (k, v) = unsafe { (*keys.add(i), *values.add(i)) };
            // SAFETY: each entry is a NUL-terminated string (or NULL, refused).
            let (k, v) = unsafe { (cstr(k, "option key")?, cstr(v, "option value")?) };
            match (k, v) {
                (b"short_circuit", b"true") => opts.short_circuit = true,
                (b"short_circuit", b"false") => opts.short_circuit = false,
                (b"transport", v) => {
                    opts.transport = std::str::from_utf8(v)
                        .ok()
                        .and_then(|t| eddy_client::TransportMode::parse(t).ok())
                        .ok_or_else(|| {
                            invalid(format!(
                                "transport={} is not \"auto\", \"rdma\" or \"tcp\"",
                                String::from_utf8_lossy(v)
                            ))
                        })?;
                }
                (b"timeout_ms", v) => opts.timeout = parse_timeout(v)?,
                (b"metadata_cache_ms", v) => opts.metadata_ttl = parse_cache_ms(v)?,
                (b"token", v) => {
                    let t =
                        std::str::from_utf8(v).map_err(|_| invalid("option token is not UTF-8"))?;
                    opts.credentials.token = Some(t.trim().to_string());
                }
                (b"umask", v) => {
                    opts.umask = std::str::from_utf8(v)
                        .ok()
                        .and_then(|u| eddy_client::Umask::parse(u).ok())
                        .ok_or_else(|| {
                            invalid(format!(
                                "umask={} is not up to 3 octal digits (e.g. \"022\")",
                                String::from_utf8_lossy(v)
                            ))
                        })?;
                }
                (b"tls_ca", v) => tls.ca = utf8_path(v)?,
                (b"tls_cert", v) => tls.cert = utf8_path(v)?,
                (b"tls_key", v) => tls.key = utf8_path(v)?,
                // The value is not echoed: a mistyped key may hold a token.
                _ => {
                    return Err(invalid(format!(
                        "unknown option {} (known: short_circuit=true|false, transport=auto|rdma|tcp, timeout_ms=N, metadata_cache_ms=N, token=eddy1..., umask=022, tls_ca=FILE, tls_cert=FILE, tls_key=FILE)",
                        String::from_utf8_lossy(k)
                    )));
                }
            }
        }
        opts.tls = tls.load()?;
        if out.is_null() {
            return Err(invalid("out is NULL"));
        }
        let fs = runtime().block_on(FileSystem::connect_with(&addr, opts))?;
        let id = CLIENTS.add(Client { fs });
        // SAFETY: checked non-NULL above; the caller promises it is writable.
        unsafe { put(out, id as *mut eddy_client_t, "out") }
    })
}

/// An option's value as a path (UTF-8; `eddy_connect`'s strings are).
fn utf8_path(v: &[u8]) -> Result<String, Fail> {
    std::str::from_utf8(v)
        .map(str::to_string)
        .map_err(|_| invalid("a TLS file path is not UTF-8"))
}

/// The TLS files a connecting client names (C options, Hadoop keys).
pub(crate) mod tls_files {
    use eddy_client::ClientTls;

    use crate::{Fail, invalid};

    #[derive(Default)]
    pub(crate) struct Paths {
        pub ca: String,
        pub cert: String,
        pub key: String,
    }

    impl Paths {
        /// `None` without a CA (plaintext); else the files, read once.
        pub(crate) fn load(&self) -> Result<Option<ClientTls>, Fail> {
            let (ca, cert, key) = (self.ca.as_str(), self.cert.as_str(), self.key.as_str());
            if ca.is_empty() {
                if !cert.is_empty() || !key.is_empty() {
                    return Err(invalid(
                        "tls_cert/tls_key need tls_ca: the CA that signed the servers' certificates",
                    ));
                }
                return Ok(None);
            }
            let identity = match (cert.is_empty(), key.is_empty()) {
                (true, true) => None,
                (false, false) => Some((std::path::Path::new(cert), std::path::Path::new(key))),
                _ => return Err(invalid("set both tls_cert and tls_key, or neither")),
            };
            ClientTls::new(std::path::Path::new(ca), identity)
                .map(Some)
                .map_err(|e| invalid(e.to_string()))
        }
    }
}

/// `timeout_ms`'s value: whole milliseconds, at least 1.
fn parse_timeout(v: &[u8]) -> Result<std::time::Duration, Fail> {
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .filter(|&ms| ms >= 1)
        .map(std::time::Duration::from_millis)
        .ok_or_else(|| {
            invalid(format!(
                "timeout_ms={} is not a whole number of milliseconds >= 1",
                String::from_utf8_lossy(v)
            ))
        })
}

/// `metadata_cache_ms`'s value: whole milliseconds, 0 allowed.
fn parse_cache_ms(v: &[u8]) -> Result<std::time::Duration, Fail> {
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map(std::time::Duration::from_millis)
        .ok_or_else(|| {
            invalid(format!(
                "metadata_cache_ms={} is not a whole number of milliseconds >= 0",
                String::from_utf8_lossy(v)
            ))
        })
}

/// Frees a client handle. Files and views opened through it stay usable
/// until closed. Thread-safe, but no other call may use the handle after.
///
/// # Safety
/// None beyond passing a handle (a bad one is reported, not dereferenced).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn eddy_disconnect(client: *mut eddy_client_t) -> c_int {
    guard(|| CLIENTS.take(client.cast(), "client").map(|_| ()))
}
