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
}

pub async fn run(mut cfg: MasterConfig, args: LocalArgs) -> Result<(), CliError> {
    cfg.metastore_dir = args.data_dir.join("metastore");
    cfg.root_ufs = args.data_dir.join("ufs").display().to_string();
    cfg.bind = format!("127.0.0.1:{}", args.port);
    super::init_logging();
    let stop = super::master::Signals::install()?;
    let ufs = cfg.ufs.clone();
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
        security: eddy_proto::auth::SecurityConfig {
            token,
            ..Default::default()
        },
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
    let eddy = if master.addr.port() == eddy_proto::DEFAULT_MASTER_PORT {
        "eddy".to_string()
    } else {
        format!("eddy --master {}", master.addr)
    };
    announce(format_args!(
        "root under-storage: {}; try `{eddy} fs put FILE /` and `{eddy} fs ls /` in another shell (Ctrl-C stops)",
        args.data_dir.join("ufs").display()
    ));
    stop.wait().await;
    worker.shutdown().await;
    master.shutdown().await;
    Ok(())
}
