//! An in-process master for tests: its state built in the test process on
//! a temporary metastore (a redb file in a tempdir) with a local directory
//! as the root under-storage. Tests call the state's methods directly (the
//! in-process entry the gRPC glue calls); the gRPC listener `start` binds on
//! loopback is not used except where a test says so.

#![allow(dead_code)] // Each test binary uses part of the kit.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use eddy_master::service::MasterState;
use eddy_master::{MasterConfig, MasterError, RunningMaster};
use eddy_proto::{EddyCode, pb};

/// A master, its metastore and its root under-storage, all under one tempdir.
pub struct TestMaster {
    pub dir: tempfile::TempDir,
    pub cfg: MasterConfig,
    master: Option<RunningMaster>,
}

impl TestMaster {
    /// A fresh master: an empty metastore and an empty root under-storage.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// As [`TestMaster::start`], with `tune` applied to the configuration.
    pub async fn start_with(tune: impl FnOnce(&mut MasterConfig)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = MasterConfig {
            bind: "127.0.0.1:0".into(),
            metastore_dir: dir.path().join("metastore"),
            root_ufs: dir.path().join("ufs").display().to_string(),
            // No waiting for workers of an earlier life after a restart.
            worker_registration_grace_ms: 0,
            metrics_bind: String::new(),
            ..MasterConfig::default()
        };
        tune(&mut cfg);
        let master = eddy_master::start(cfg.clone())
            .await
            .expect("master starts");
        Self {
            dir,
            cfg,
            master: Some(master),
        }
    }

    pub fn state(&self) -> &Arc<MasterState> {
        &self.master.as_ref().expect("running").state
    }

    pub fn running(&self) -> &RunningMaster {
        self.master.as_ref().expect("running")
    }

    /// The root under-storage directory (mounted at `/`).
    pub fn ufs(&self) -> PathBuf {
        self.dir.path().join("ufs")
    }

    /// Stops the master, waits until its state (and so its metastore) is
    /// gone, and starts a new one on the same metastore and under-storage.
    pub async fn restart(&mut self) {
        let old = self.master.take().expect("running");
        let weak = Arc::downgrade(&old.state);
        old.shutdown().await;
        // Background tasks let go of the state once their step ends.
        wait_for("the old master's state to be dropped", || {
            weak.strong_count() == 0
        })
        .await;
        // The metastore's committer thread closes the redb file after its
        // last handle is dropped; until then the file is still open.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match eddy_master::start(self.cfg.clone()).await {
                Ok(m) => {
                    self.master = Some(m);
                    return;
                }
                Err(MasterError::Metastore(e)) if Instant::now() < deadline => {
                    assert!(e.contains("cannot open"), "unexpected metastore error: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("restart failed: {e}"),
            }
        }
    }
}

/// Waits (bounded, 10 s) until `cond` holds.
pub async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The Eddy code of a failed call, panicking on success.
#[track_caller]
pub fn code<T: std::fmt::Debug>(r: Result<T, MasterError>) -> EddyCode {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.code(),
    }
}

pub fn mkdir(path: &str, recursive: bool) -> pb::MkdirRequest {
    pb::MkdirRequest {
        path: path.into(),
        recursive,
        ..Default::default()
    }
}

pub fn create(path: &str) -> pb::CreateFileRequest {
    pb::CreateFileRequest {
        path: path.into(),
        block_size: 1 << 20,
        ..Default::default()
    }
}

pub fn complete(path: &str, file_id: u64, length: u64) -> pb::CompleteFileRequest {
    pb::CompleteFileRequest {
        path: path.into(),
        length,
        file_id,
        ..Default::default()
    }
}

pub fn stat(path: &str) -> pb::GetStatusRequest {
    pb::GetStatusRequest {
        path: path.into(),
        sync: None,
    }
}

/// A status request that re-checks the under-storage.
pub fn stat_synced(path: &str) -> pb::GetStatusRequest {
    pb::GetStatusRequest {
        path: path.into(),
        sync: Some(pb::SyncPolicy {
            interval_ms: Some(0),
        }),
    }
}

pub fn list(path: &str) -> pb::ListStatusRequest {
    pb::ListStatusRequest {
        path: path.into(),
        ..Default::default()
    }
}

pub fn rename(src: &str, dst: &str) -> pb::RenameRequest {
    pb::RenameRequest {
        src: src.into(),
        dst: dst.into(),
    }
}

pub fn delete(path: &str, recursive: bool) -> pb::DeleteRequest {
    pb::DeleteRequest {
        path: path.into(),
        recursive,
        ..Default::default()
    }
}

/// The names a listing returned, in order.
pub async fn names(state: &MasterState, path: &str) -> Vec<String> {
    let l = state.list_status(list(path)).await.expect("listing");
    l.entries
        .iter()
        .map(|e| String::from_utf8(e.name.clone()).unwrap())
        .collect()
}

/// Creates and completes a cache-only file of `length` bytes (no blocks
/// need be on a worker for the namespace to hold it).
pub async fn make_file(state: &MasterState, path: &str, length: u64) -> pb::FileStatus {
    let (st, _) = state.create_file(create(path)).await.expect("create");
    state
        .complete_file(complete(path, st.id, length))
        .await
        .expect("complete")
}

pub fn path_of(p: &Path) -> String {
    p.display().to_string()
}
