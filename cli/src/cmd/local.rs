//! `eddy local`: a whole cluster (a master and one worker) in one process
//! with embedded defaults, for a first try and for development.

use std::path::PathBuf;

use eddy_master::MasterConfig;
use eddy_proto::Endpoint;
use eddy_worker::WorkerConfig;

use crate::error::CliError;
use crate::out::announce;

#[derive(clap::Args)]
pub struct LocalArgs {
    /// Where metadata and the root under-storage live.
    #[arg(long, default_value = "eddy-data", value_name = "DIR")]
    data_dir: PathBuf,
    /// Master port (0 picks a free one). `eddy fs` uses 19998 by default.
    #[arg(long, default_value_t = eddy_proto::DEFAULT_MASTER_PORT)]
    port: u16,
    /// Worker memory tier in bytes (0: a quarter of this machine's memory).
    #[arg(long, default_value_t = 0, value_name = "BYTES")]
    memory: u64,
    /// Port of the Prometheus endpoint (`/metrics`) the master and the
    /// worker share (0 picks a free one).
    #[arg(long, default_value_t = 19999)]
    metrics_port: u16,
    /// Serve TLS (master and worker) with a self-signed CA and a
    /// certificate for 127.0.0.1 and localhost, generated into
    /// DIR/tls/ on first use and reused after; prints what a client sets.
    #[arg(long)]
    tls: bool,
}

/// `--tls`: the generated files, set as the master's and the worker's
/// `[security]` keys (the worker trusts the CA to dial the master).
fn local_tls(
    dir: &std::path::Path,
    sec: &mut eddy_proto::auth::SecurityConfig,
) -> Result<eddy_proto::tls::LocalCerts, CliError> {
    let certs = eddy_proto::tls::generate_local(&dir.join("tls"), &["127.0.0.1", "localhost"])
        .map_err(|e| CliError::new(e.code(), e.to_string()))?;
    sec.tls_cert = certs.cert.clone();
    sec.tls_key = certs.key.clone();
    sec.tls_ca = certs.ca.clone();
    Ok(certs)
}

pub async fn run(mut cfg: MasterConfig, args: LocalArgs) -> Result<(), CliError> {
    cfg.metastore_dir = args.data_dir.join("metastore");
    cfg.root_ufs = args.data_dir.join("ufs").display().to_string();
    cfg.bind = format!("127.0.0.1:{}", args.port);
    let certs = match args.tls {
        true => Some(local_tls(&args.data_dir, &mut cfg.security)?),
        false => None,
    };
    super::init_logging();
    let mut stop = super::master::Signals::install()?;
    let ufs = cfg.ufs.clone();
    // The worker dials the master as the config file (or --tls) says.
    let security = cfg.security.clone();
    // Here the addresses come from the command line, not the config file.
    let master = eddy_master::start(cfg).await.map_err(|e| match e {
        eddy_master::error::MasterError::Bind(mut b) => {
            b.setting = "--port".into();
            CliError::new(b.code(), b.to_string())
        }
        e => CliError::new(e.code(), e.to_string()),
    })?;
    // The worker proves itself with a token signed by the master it runs
    // beside (in memory only; it lives as long as this process).
    let token = master
        .state
        .keys
        .worker_token("eddy-worker", 100 * 365 * 24 * 3600 * 1000)
        .map_err(|e| CliError::new(e.code(), e.to_string()))?;
    let wcfg = WorkerConfig {
        security: eddy_proto::auth::SecurityConfig { token, ..security },
        master: master.addr.to_string(),
        bind: "127.0.0.1:0".into(),
        memory_capacity: args.memory,
        // Clients on this host map cached blocks instead of streaming them.
        domain_socket: args.data_dir.join("worker.sock").display().to_string(),
        ufs,
        ..Default::default()
    };
    let capacity = wcfg.effective_memory_capacity();
    let worker = match eddy_worker::start(wcfg).await {
        Ok(w) => w,
        Err(e) => {
            master.shutdown().await;
            return Err(super::worker::start_error(match e {
                // The short-circuit socket's path comes from --data-dir
                // here; the data port is picked free (port 0), so a TCP
                // failure keeps the worker's own advice.
                eddy_worker::StartError::Bind(mut b) if b.endpoint == Endpoint::Socket => {
                    b.setting = "--data-dir".into();
                    eddy_worker::StartError::Bind(b)
                }
                e => e,
            }));
        }
    };
    let metrics = super::serve_metrics("local", &format!("127.0.0.1:{}", args.metrics_port)).await;
    let _metrics = match metrics {
        Ok(m) => m,
        Err(e) => {
            worker.shutdown().await;
            master.shutdown().await;
            return Err(e);
        }
    };
    announce(format_args!("eddy master listening on {}", master.addr));
    announce(format_args!(
        "eddy worker listening on {} (worker {}, memory tier {})",
        worker.data_addr,
        worker.worker_id,
        crate::format::bytes(capacity)
    ));
    // The hint must work when pasted: name the master unless `eddy fs`
    // finds it by default.
    let mut eddy = if master.addr.port() == eddy_proto::DEFAULT_MASTER_PORT {
        "eddy".to_string()
    } else {
        format!("eddy --master {}", master.addr)
    };
    if let Some(c) = &certs {
        // Absolute, so the lines work from any directory.
        let ca = std::path::absolute(&c.ca).unwrap_or_else(|_| c.ca.clone());
        announce(format_args!(
            "TLS on: clients trust {ca} (set EDDY_TLS_CA={ca}, or tls_ca = {:?} in the [security] table of their config file)",
            ca.display().to_string(),
            ca = ca.display()
        ));
        eddy = format!("EDDY_TLS_CA={} {eddy}", ca.display());
    }
    announce(format_args!(
        "root under-storage: {}; try `{eddy} fs put FILE /` and `{eddy} fs ls /` in another shell (Ctrl-C stops)",
        args.data_dir.join("ufs").display()
    ));
    stop.wait().await;
    worker.shutdown().await;
    master.shutdown().await;
    Ok(())
}
