//! `eddy local`: a whole cluster in one process with embedded defaults, for a
//! first try and for development. Today that is the master; the worker joins
//! it in the same process when the data plane lands.

use std::path::PathBuf;

use eddy_master::MasterConfig;

#[derive(clap::Args)]
pub struct LocalArgs {
    /// Where metadata and the root under-storage live.
    #[arg(long, default_value = "eddy-data", value_name = "DIR")]
    data_dir: PathBuf,
    /// Master port (0 picks a free one).
    #[arg(long, default_value_t = eddy_proto::DEFAULT_MASTER_PORT)]
    port: u16,
}

pub async fn run(mut cfg: MasterConfig, args: LocalArgs) -> Result<(), String> {
    cfg.metastore_dir = args.data_dir.join("metastore");
    cfg.root_ufs = args.data_dir.join("ufs").display().to_string();
    cfg.bind = format!("127.0.0.1:{}", args.port);
    super::init_logging();
    let master = eddy_master::start(cfg).await.map_err(|e| e.to_string())?;
    let stop = super::master::Signals::install()?;
    println!("eddy master listening on {}", master.addr);
    println!(
        "root under-storage: {}; try `eddy fs ls /` in another shell (Ctrl-C stops)",
        args.data_dir.join("ufs").display()
    );
    stop.wait().await;
    master.shutdown().await;
    Ok(())
}
