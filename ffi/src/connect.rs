//! Entry points: connecting to a cluster (options parsed here) and
//! disconnecting.

use std::ffi::{c_char, c_int};

use eddy_client::{ClientOptions, FileSystem};

use crate::*;

/// Connects to the master at `master` ("host:port"). `keys`/`values` hold
/// `n_options` options (both may be NULL when `n_options` is 0):
/// "short_circuit" = "true" | "false" (default "true": map blocks of a
/// worker on this host instead of copying them over TCP);
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
/// from files (0666) and directories (0777) this client creates.
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
                // The value is not echoed: a mistyped key may hold a token.
                _ => {
                    return Err(invalid(format!(
                        "unknown option {} (known: short_circuit=true|false, timeout_ms=N, metadata_cache_ms=N, token=eddy1..., umask=022)",
                        String::from_utf8_lossy(k)
                    )));
                }
            }
        }
        if out.is_null() {
            return Err(invalid("out is NULL"));
        }
        let fs = runtime().block_on(FileSystem::connect_with(&addr, opts))?;
        let id = CLIENTS.add(Client { fs });
        // SAFETY: checked non-NULL above; the caller promises it is writable.
        unsafe { put(out, id as *mut eddy_client_t, "out") }
    })
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
