pub mod data;
pub mod fs;
pub mod local;
pub mod master;
pub mod meta;
pub mod paths;
pub mod report;
pub mod token;
pub mod worker;

use eddy_client::EddyCode;

use crate::error::CliError;

static TIMEOUT: std::sync::OnceLock<std::time::Duration> = std::sync::OnceLock::new();

/// Sets `--timeout` for this process's client calls (once, at start).
pub fn set_timeout(t: std::time::Duration) {
    let _ = TIMEOUT.set(t);
}

/// The deadline of one client call: `--timeout`, else the client default.
pub fn timeout() -> std::time::Duration {
    TIMEOUT
        .get()
        .copied()
        .unwrap_or_else(|| eddy_client::ClientOptions::default().timeout)
}

static METADATA_CACHE: std::sync::OnceLock<std::time::Duration> = std::sync::OnceLock::new();

/// Sets `--metadata-cache` for this process's clients (once, at start).
pub fn set_metadata_cache(t: std::time::Duration) {
    let _ = METADATA_CACHE.set(t);
}

/// How long a client reuses file metadata: `--metadata-cache`, else the
/// client default.
pub fn metadata_cache() -> std::time::Duration {
    METADATA_CACHE
        .get()
        .copied()
        .unwrap_or(eddy_client::DEFAULT_METADATA_TTL)
}

static SECURITY: std::sync::OnceLock<eddy_proto::auth::SecurityConfig> = std::sync::OnceLock::new();

/// Sets the config file's `[security]` for this process's clients (once,
/// at start): who they say they are, and the umask.
pub fn set_security(s: eddy_proto::auth::SecurityConfig) {
    let _ = SECURITY.set(s);
}

/// `[security]` as set at start, else the defaults.
pub fn security() -> eddy_proto::auth::SecurityConfig {
    SECURITY.get().cloned().unwrap_or_default()
}

static TLS: std::sync::OnceLock<Option<eddy_client::ClientTls>> = std::sync::OnceLock::new();

static TRANSPORT: std::sync::OnceLock<eddy_client::TransportMode> = std::sync::OnceLock::new();

/// The client transport from `[client] transport`, or EDDY_TRANSPORT when
/// set; an invalid value of either is a usage error naming the values.
pub fn set_transport(configured: &str) -> Result<(), CliError> {
    let (from, v) = match std::env::var("EDDY_TRANSPORT") {
        Ok(v) if !v.trim().is_empty() => ("EDDY_TRANSPORT", v),
        _ => ("[client] transport", configured.to_string()),
    };
    let mode = eddy_client::TransportMode::parse(&v)
        .map_err(|e| CliError::usage(format!("{from}: {e}")))?;
    let _ = TRANSPORT.set(mode);
    Ok(())
}

/// Sets this process's client TLS (once, at start; see [`client_tls`]).
pub fn set_tls(tls: Option<eddy_client::ClientTls>) {
    let _ = TLS.set(tls);
}

/// The client's TLS from the config file's `[security]` table, its
/// `tls_ca` replaced by `EDDY_TLS_CA` when that is set: `None` (plaintext)
/// without a CA. The files are read here, once per command.
pub fn client_tls(
    sec: &eddy_proto::auth::SecurityConfig,
) -> Result<Option<eddy_client::ClientTls>, CliError> {
    let mut sec = sec.clone();
    if let Some(ca) = std::env::var_os("EDDY_TLS_CA").filter(|v| !v.is_empty()) {
        sec.tls_ca = ca.into();
    }
    eddy_client::ClientTls::from_security(&sec).map_err(|e| CliError::new(e.code(), e.to_string()))
}

/// Options every client of this command uses: `--timeout`,
/// `--metadata-cache`, the umask and TLS (the credentials go with the
/// master client, see [`connect`]).
pub fn client_options(short_circuit: bool) -> eddy_client::ClientOptions {
    eddy_client::ClientOptions {
        short_circuit,
        timeout: timeout(),
        metadata_ttl: metadata_cache(),
        umask: security().umask,
        tls: TLS.get().cloned().flatten(),
        transport: TRANSPORT.get().copied().unwrap_or_default(),
        ..Default::default()
    }
}

/// Connects to the master as the user and with the credential `[security]`
/// and the environment give (EDDY_TOKEN, ...), over TLS when a CA is set,
/// clearing its umask from what it creates; a failure says which address
/// failed and how to pick another (see `CliError`'s `From<ClientError>`).
pub async fn connect(master: &str) -> Result<eddy_client::MasterClient, CliError> {
    let sec = security();
    let opts = eddy_client::ClientOptions {
        credentials: eddy_client::Credentials::from_config(&sec)?,
        ..client_options(true)
    };
    let c = eddy_client::MasterClient::connect_opts(master, &opts).await?;
    Ok(c.with_umask(sec.umask))
}

/// Logs go to stderr so stdout stays for output a script can read.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("EDDY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal: a log file or a pipe gets text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Starts the Prometheus endpoint at `bind` (empty: none) and says where,
/// on a line scripts and tests read (`eddy WHO metrics on http://ADDR/metrics`).
pub async fn serve_metrics(
    who: &str,
    bind: &str,
) -> Result<Option<eddy_metrics::MetricsServer>, CliError> {
    if bind.is_empty() {
        return Ok(None);
    }
    let srv = eddy_metrics::serve(bind).await.map_err(|e| {
        CliError::new(
            EddyCode::Unavailable,
            format!("cannot serve metrics on {bind}: {e} (set metrics_bind, or \"\" for none)"),
        )
    })?;
    crate::out::announce(format_args!(
        "eddy {who} metrics on http://{}/metrics",
        srv.addr
    ));
    Ok(Some(srv))
}
