//! `eddy worker`: serve blocks until SIGINT or SIGTERM.

use eddy_worker::WorkerConfig;

pub async fn run(cfg: WorkerConfig) -> Result<(), String> {
    super::init_logging();
    let stop = super::master::Signals::install()?;
    let capacity = cfg.effective_memory_capacity();
    let metrics_bind = cfg.metrics_bind.clone();
    let worker = eddy_worker::start(cfg).await.map_err(|e| e.to_string())?;
    let _metrics = match super::serve_metrics("worker", &metrics_bind).await {
        Ok(m) => m,
        Err(e) => {
            worker.shutdown().await;
            return Err(e);
        }
    };
    // Scripts and tests wait for this exact line to learn the bound address.
    println!(
        "eddy worker listening on {} (worker {}, memory tier {})",
        worker.data_addr,
        worker.worker_id,
        crate::format::bytes(capacity)
    );
    stop.wait().await;
    tracing::info!("shutting down");
    worker.shutdown().await;
    Ok(())
}
