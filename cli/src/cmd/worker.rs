//! `eddy worker`: serve blocks until SIGINT or SIGTERM.

use eddy_worker::WorkerConfig;

use crate::error::CliError;

pub async fn run(cfg: WorkerConfig) -> Result<(), CliError> {
    super::init_logging();
    let mut stop = super::master::Signals::install()?;
    let capacity = cfg.effective_memory_capacity();
    let metrics_bind = cfg.metrics_bind.clone();
    // Starting waits for the master (registration retries until it
    // answers): a signal meanwhile stops the worker there.
    let worker = tokio::select! {
        w = eddy_worker::start(cfg) => w.map_err(start_error)?,
        _ = stop.wait() => {
            tracing::info!("stopped before the master accepted this worker");
            return Ok(());
        }
    };
    let _metrics = match super::serve_metrics("worker", &metrics_bind).await {
        Ok(m) => m,
        Err(e) => {
            worker.shutdown().await;
            return Err(e);
        }
    };
    // Scripts and tests wait for this exact line to learn the bound address.
    crate::out::announce(format_args!(
        "eddy worker listening on {} (worker {}, memory tier {})",
        worker.data_addr,
        worker.worker_id,
        crate::format::bytes(capacity)
    ));
    stop.wait().await;
    tracing::info!("shutting down");
    worker.shutdown().await;
    Ok(())
}

/// A worker that could not start, with the code of why.
pub fn start_error(e: eddy_worker::StartError) -> CliError {
    use eddy_worker::StartError as S;
    let code = match &e {
        S::Bind(b) => b.code(),
        S::Stopped => eddy_client::EddyCode::Unavailable,
        S::Config(_) | S::MasterAddress(_) | S::Uring(_) | S::Credentials(_) | S::Tls(_) => {
            eddy_client::EddyCode::InvalidArgument
        }
    };
    CliError::new(code, e.to_string())
}
