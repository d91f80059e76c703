//! `eddy master`: serve until SIGINT or SIGTERM.

use eddy_client::EddyCode;
use eddy_master::MasterConfig;

use crate::error::CliError;

pub async fn run(cfg: MasterConfig) -> Result<(), CliError> {
    super::init_logging();
    let metrics_bind = cfg.metrics_bind.clone();
    let master = eddy_master::start(cfg)
        .await
        .map_err(|e| CliError::new(e.code(), e.to_string()))?;
    let mut stop = Signals::install()?;
    let _metrics = match super::serve_metrics("master", &metrics_bind).await {
        Ok(m) => m,
        Err(e) => {
            master.shutdown().await;
            return Err(e);
        }
    };
    // Scripts and tests wait for this exact line to learn the bound address.
    crate::out::announce(format_args!("eddy master listening on {}", master.addr));
    stop.wait().await;
    tracing::info!("shutting down");
    master.shutdown().await;
    Ok(())
}

/// SIGINT/SIGTERM listeners. Installed before the "listening" line is
/// printed, so a supervisor that signals right after reading it is heard.
pub struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

impl Signals {
    pub fn install() -> Result<Self, CliError> {
        use tokio::signal::unix::{SignalKind, signal};
        let err = |e: std::io::Error| {
            CliError::new(
                EddyCode::Internal,
                format!("cannot install signal handlers: {e}"),
            )
        };
        Ok(Self {
            int: signal(SignalKind::interrupt()).map_err(err)?,
            term: signal(SignalKind::terminate()).map_err(err)?,
        })
    }

    /// Until SIGINT or SIGTERM (again, when called again).
    pub async fn wait(&mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
    }
}
