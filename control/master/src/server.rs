//! Starting and stopping a master.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use eddy_proto::{Endpoint, pb};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use crate::config::MasterConfig;
use crate::error::{MasterError, Result};
use crate::metastore::Metastore;
use crate::mount::MountPoint;
use crate::namespace::Namespace;
use crate::path::EddyPath;
use crate::rpc::MasterRpc;
use crate::service::{MasterState, now_ms};

/// A master serving on `addr` until [`RunningMaster::shutdown`] or drop of the runtime.
pub struct RunningMaster {
    pub addr: SocketAddr,
    pub state: Arc<MasterState>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl RunningMaster {
    /// Stops accepting requests, lets in-flight ones finish, and returns.
    pub async fn shutdown(mut self) {
        // Heartbeats held open (long polls) would hold up the stop.
        self.state.stopping.send_replace(true);
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = (&mut self.task).await;
        // With `sync = "batch"`, what was answered reaches the disk.
        if let Err(e) = self.state.store.sync().await {
            tracing::error!("metastore sync at stop failed: {e}");
        }
    }

    /// Runs until the server stops (it stops only on error or shutdown).
    pub async fn wait(self) -> Result<()> {
        match self.task.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(MasterError::Unsupported(format!("gRPC server failed: {e}"))),
            Err(e) => Err(MasterError::Unsupported(format!(
                "gRPC server task failed: {e}"
            ))),
        }
    }
}

/// The metastore's sync policy from `[master] sync` and `sync_batch_ms`.
fn sync_policy(cfg: &MasterConfig) -> Result<crate::metastore::SyncPolicy> {
    if cfg.sync == crate::config::MetastoreSync::Batch && !(1..=60_000).contains(&cfg.sync_batch_ms)
    {
        return Err(MasterError::InvalidArgument(format!(
            "[master] sync_batch_ms = {} is out of range: with sync = \"batch\" it must be 1 to 60000 (ms)",
            cfg.sync_batch_ms
        )));
    }
    if cfg.sync == crate::config::MetastoreSync::Batch {
        tracing::warn!(
            "[master] sync = \"batch\": metadata changes are synced within {} ms of their answer; \
             a crash of this host (not of the master process) can lose the changes of that window",
            cfg.sync_batch_ms
        );
    }
    Ok(crate::metastore::SyncPolicy {
        mode: cfg.sync,
        batch: std::time::Duration::from_millis(cfg.sync_batch_ms),
        defer: crate::metastore::DEFER,
    })
}

/// Normalises the configured root under-storage: a bare relative path is made
/// absolute; a local root that does not exist yet is created (first start).
fn root_uri(raw: &str) -> Result<String> {
    if raw.contains("://") && !raw.starts_with("file://") {
        return Ok(raw.to_string());
    }
    let p = std::path::PathBuf::from(raw.strip_prefix("file://").unwrap_or(raw));
    let abs = if p.is_absolute() {
        p
    } else {
        std::env::current_dir()
            .map_err(|e| MasterError::InvalidArgument(format!("cannot resolve {raw}: {e}")))?
            .join(p)
    };
    std::fs::create_dir_all(&abs).map_err(|e| {
        MasterError::Ufs(eddy_ufs::UfsError::Unavailable {
            uri: raw.to_string(),
            reason: e.to_string(),
        })
    })?;
    Ok(format!("file://{}", abs.display()))
}

/// Runs `check` every `period` in a task of its own, for as long as the
/// master's state lives (the task holds it only while a check runs, so a
/// dropped master stops its checkers).
fn every<F, Fut>(state: &Arc<MasterState>, period: Duration, missed: MissedTickBehavior, check: F)
where
    F: Fn(Arc<MasterState>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let weak = Arc::downgrade(state);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(missed);
        loop {
            tick.tick().await;
            let Some(s) = weak.upgrade() else { return };
            check(s).await;
        }
    });
}

/// Serves the three master services on `listener` until the returned
/// sender fires (or is dropped).
fn serve(
    listener: tokio::net::TcpListener,
    state: &Arc<MasterState>,
    cfg: &MasterConfig,
    tls: Option<eddy_proto::tls::ServerTls>,
) -> (
    oneshot::Sender<()>,
    JoinHandle<Result<(), tonic::transport::Error>>,
) {
    let rpc = MasterRpc(state.clone());
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let ms = Duration::from_millis;
    let incoming = crate::net::incoming(
        listener,
        crate::net::NetLimits {
            handshake: ms(cfg.handshake_timeout_ms.max(1)),
            idle: ms(cfg.idle_timeout_ms.max(1)),
            max_per_peer: cfg.max_connections_per_peer.max(1),
        },
        tls,
    );
    let task = tokio::spawn(
        tonic::transport::Server::builder()
            // Dead peers are found by pings; one connection cannot open
            // unbounded streams or send unbounded headers.
            .http2_keepalive_interval(Some(ms(cfg.keepalive_interval_ms.max(1))))
            .http2_keepalive_timeout(Some(ms(cfg.keepalive_timeout_ms.max(1))))
            .max_concurrent_streams(Some(cfg.max_concurrent_streams.max(1)))
            .http2_max_header_list_size(Some(64 << 10))
            .http2_max_pending_accept_reset_streams(Some(64))
            .layer(crate::metrics::RpcMetricsLayer)
            .layer(crate::identity::AuthLayer {
                mode: cfg.security.authentication,
                keys: state.keys.clone(),
            })
            .add_service(pb::file_system_master_server::FileSystemMasterServer::new(
                rpc.clone(),
            ))
            .add_service(pb::block_master_server::BlockMasterServer::new(rpc.clone()))
            .add_service(pb::meta_master_server::MetaMasterServer::new(rpc))
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stop_rx.await;
            }),
    );
    (stop_tx, task)
}

/// Opens the metastore, recovers or creates the namespace, and starts serving.
pub async fn start(cfg: MasterConfig) -> Result<RunningMaster> {
    let addr: SocketAddr = cfg.bind.parse().map_err(|_| {
        MasterError::InvalidArgument(format!("master bind address {:?} is not IP:PORT", cfg.bind))
    })?;
    let keys = crate::identity::MasterKeys::load(&cfg.security, &cfg.metastore_dir)?;
    let authz = crate::authz::Authority::new(&cfg.security);
    // Bad TLS files stop the start before anything is opened.
    let tls = eddy_proto::tls::ServerTls::from_security(&cfg.security, eddy_proto::tls::ALPN_GRPC)?;
    let (store, mut loaded) = Metastore::open(&cfg.metastore_dir, sync_policy(&cfg)?)?;
    let intents = std::mem::take(&mut loaded.intents);
    // A restart: workers hold blocks of this namespace and will register
    // again (see `crate::registration`).
    let mut restarted = false;
    let ns = match Namespace::load(loaded, cfg.default_block_size)? {
        Some(ns) => {
            restarted = true;
            tracing::info!(
                "recovered {} inodes and {} mounts",
                ns.inode_count(),
                ns.mounts.len()
            );
            ns
        }
        None => {
            let uri = root_uri(&cfg.root_ufs)?;
            eddy_ufs::open(&uri, &Default::default()).await?;
            let root = MountPoint {
                id: 1,
                path: EddyPath::root(),
                uri,
                read_only: false,
                options: Default::default(),
                sync_interval_ms: cfg.root_sync_interval_ms,
            };
            // The root is the superuser's and the supergroup's, 0755 (HDFS).
            let (ns, fx) = Namespace::new_owned(
                root,
                cfg.default_block_size,
                now_ms(),
                &authz.superuser,
                &cfg.security.supergroup,
            );
            store.submit(fx.into_ops()).await?;
            ns
        }
    };
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        eddy_proto::BindError::new("the master", Endpoint::Tcp, &cfg.bind, "[master] bind", e)
    })?;
    let addr = listener.local_addr().expect("bound");
    let state = Arc::new(MasterState::new(
        ns,
        store,
        cfg.clone(),
        addr.to_string(),
        keys,
        authz,
    ));
    state.resolve_intents(intents).await?;
    // Staging objects of writes that will never finish; in the background,
    // as an unreachable store must not hold up the start.
    let reconcile = state.clone();
    tokio::spawn(async move { reconcile.reconcile_staging().await });
    if restarted {
        state.begin_registration_grace();
    }

    let period = |ms: u64| Duration::from_millis(ms.max(10));
    every(
        &state,
        period(cfg.worker_lost_after_ms / 4),
        MissedTickBehavior::Burst,
        |s| async move { s.expire_workers() },
    );
    every(
        &state,
        period(cfg.ttl_check_interval_ms),
        MissedTickBehavior::Delay,
        |s| async move {
            s.check_ttls().await;
        },
    );
    every(
        &state,
        period(cfg.replication_check_interval_ms),
        MissedTickBehavior::Burst,
        |s| async move {
            // Locations are partial until workers have registered
            // again: copies and persists would be planned on half a map.
            if !s.reg.lock().awaiting_workers {
                s.check_replication();
                s.check_persists();
            }
        },
    );

    crate::metrics::register(&state);
    if let Some(t) = &tls {
        tracing::info!(
            "gRPC port serves TLS{}",
            if t.client_auth {
                " and requires client certificates"
            } else {
                ""
            }
        );
    }
    let (stop_tx, task) = serve(listener, &state, &cfg, tls);
    Ok(RunningMaster {
        addr,
        state,
        stop: Some(stop_tx),
        task,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MetastoreSync;

    #[test]
    fn a_batch_window_out_of_range_is_refused_with_the_range() {
        let mut cfg = MasterConfig {
            sync: MetastoreSync::Batch,
            ..Default::default()
        };
        for bad in [0, 60_001] {
            cfg.sync_batch_ms = bad;
            let e = sync_policy(&cfg).unwrap_err();
            assert!(matches!(e, MasterError::InvalidArgument(_)), "{e}");
            assert!(e.to_string().contains("1 to 60000"), "{e}");
        }
        cfg.sync_batch_ms = 60_000;
        assert_eq!(sync_policy(&cfg).unwrap().batch.as_secs(), 60);
        // With `always` the window is not used, so not checked.
        cfg.sync = MetastoreSync::Always;
        cfg.sync_batch_ms = 0;
        assert_eq!(sync_policy(&cfg).unwrap().mode, MetastoreSync::Always);
    }
}
