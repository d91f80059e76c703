//! `eddy master`: serve until SIGINT or SIGTERM.

use eddy_master::MasterConfig;

pub async fn run(cfg: MasterConfig) -> Result<(), String> {
    super::init_logging();
    let master = eddy_master::start(cfg).await.map_err(|e| e.to_string())?;
    // Scripts and tests wait for this exact line to learn the bound address.
    println!("eddy master listening on {}", master.addr);
    wait_for_signal().await;
    tracing::info!("shutting down");
    master.shutdown().await;
    Ok(())
}

pub async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
