//! Test-only: a stand-in for the master's block service on loopback, so the
//! worker's core (fills, commits, persists) runs in process against a local
//! under-storage directory without a real master. It answers from a table
//! of files the test declares, and records what the worker reported.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use eddy_client::{MasterClient, pb};
use parking_lot::Mutex;
use tonic::{Request, Response, Status};

use super::Shared;
use crate::conn::Timeouts;
use crate::master_link::MasterLink;
use crate::store::BlockStore;

/// The one mount the fake knows: the test's under-storage directory.
pub const MOUNT: u64 = 1;

/// A file as the master would describe it in `GetBlockInfo`.
#[derive(Clone, Debug)]
pub struct FakeFile {
    pub key: String,
    pub length: u64,
    pub block_size: u64,
    pub complete: bool,
    pub persisted: bool,
    /// `digest_hex` of the under-storage fingerprint ("" accepts any).
    pub digest: String,
}

#[derive(Default)]
pub struct FakeState {
    pub files: Mutex<HashMap<u64, FakeFile>>,
    /// (block, length, tier, written) of every commit, in order.
    pub commits: Mutex<Vec<(u64, u64, String, bool)>>,
    /// Blocks whose commit is refused (as for a file deleted meanwhile).
    pub refuse_commits: Mutex<Vec<u64>>,
    pub persisted: Mutex<Vec<pb::FilePersistedRequest>>,
    pub block_infos: AtomicU64,
    ufs_uri: Mutex<String>,
}

impl FakeState {
    pub fn block_infos(&self) -> u64 {
        self.block_infos.load(Ordering::SeqCst)
    }
}

#[derive(Clone)]
struct Svc(Arc<FakeState>);

type Rpc<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl pb::block_master_server::BlockMaster for Svc {
    async fn register_worker(
        &self,
        _: Request<pb::RegisterWorkerRequest>,
    ) -> Rpc<pb::RegisterWorkerResponse> {
        Ok(Response::new(pb::RegisterWorkerResponse {
            worker_id: 1,
            heartbeat_interval_ms: 1_000,
            lost_after_ms: 10_000,
            // As a master with authentication "none": no tokens.
            ..Default::default()
        }))
    }
    async fn heartbeat(&self, _: Request<pb::HeartbeatRequest>) -> Rpc<pb::HeartbeatResponse> {
        Ok(Response::new(pb::HeartbeatResponse::default()))
    }
    async fn get_mount(&self, r: Request<pb::GetMountRequest>) -> Rpc<pb::GetMountResponse> {
        if r.get_ref().mount_id != MOUNT {
            return Err(Status::not_found("no such mount"));
        }
        Ok(Response::new(pb::GetMountResponse {
            mount: Some(pb::MountInfo {
                path: b"/".to_vec(),
                ufs_uri: self.0.ufs_uri.lock().clone(),
                mount_id: MOUNT,
                ..Default::default()
            }),
        }))
    }
    async fn commit_block(
        &self,
        r: Request<pb::CommitBlockRequest>,
    ) -> Rpc<pb::CommitBlockResponse> {
        let r = r.into_inner();
        if self.0.refuse_commits.lock().contains(&r.block_id) {
            return Err(Status::not_found("the block's file does not exist"));
        }
        self.0
            .commits
            .lock()
            .push((r.block_id, r.length, r.tier, r.written));
        Ok(Response::new(pb::CommitBlockResponse {}))
    }
    async fn get_block_info(
        &self,
        r: Request<pb::GetBlockInfoRequest>,
    ) -> Rpc<pb::GetBlockInfoResponse> {
        self.0.block_infos.fetch_add(1, Ordering::SeqCst);
        let block = r.get_ref().block_id;
        let file_id = eddy_proto::file_id_of_block(block);
        let index = eddy_proto::block_index(block);
        let f = self
            .0
            .files
            .lock()
            .get(&file_id)
            .cloned()
            .ok_or_else(|| Status::not_found("no such file"))?;
        let start = index * f.block_size;
        let in_file = f.complete && start < f.length;
        Ok(Response::new(pb::GetBlockInfoResponse {
            file_id,
            file_length: f.length,
            block_size: f.block_size,
            block_length: if in_file {
                (f.length - start).min(f.block_size)
            } else {
                0
            },
            file_offset: if in_file { start } else { 0 },
            ufs: Some(pb::UfsLocation {
                mount_id: MOUNT,
                key: f.key,
            }),
            complete: f.complete,
            persisted: f.persisted,
            ufs_fingerprint: f.digest,
        }))
    }
    async fn file_persisted(
        &self,
        r: Request<pb::FilePersistedRequest>,
    ) -> Rpc<pb::FilePersistedResponse> {
        self.0.persisted.lock().push(r.into_inner());
        Ok(Response::new(pb::FilePersistedResponse {}))
    }
    async fn select_worker(
        &self,
        _: Request<pb::SelectWorkerRequest>,
    ) -> Rpc<pb::SelectWorkerResponse> {
        Err(Status::unimplemented("not in the fake"))
    }
}

/// A worker core (store, master link, admission) over a memory store of
/// `capacity` bytes, talking to a fake master whose one mount is `ufs_dir`.
pub struct FakeWorld {
    pub master: Arc<FakeState>,
    pub shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for FakeWorld {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

impl FakeWorld {
    pub async fn start(ufs_dir: &std::path::Path, capacity: u64) -> Self {
        Self::start_with(ufs_dir, BlockStore::new(capacity)).await
    }

    /// As [`FakeWorld::start`], over `store` (one with disk tiers, say).
    pub async fn start_with(ufs_dir: &std::path::Path, store: Arc<BlockStore>) -> Self {
        let master = Arc::new(FakeState::default());
        *master.ufs_uri.lock() = format!("file://{}", ufs_dir.display());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let svc = pb::block_master_server::BlockMasterServer::new(Svc(master.clone()));
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming_shutdown(
                    tonic::transport::server::TcpIncoming::from(listener),
                    async {
                        let _ = stopped.await;
                    },
                ),
        );
        let (jobs, _) = tokio::sync::mpsc::unbounded_channel();
        let client = MasterClient::lazy(&addr.to_string()).unwrap();
        let address = pb::WorkerAddress {
            host: "127.0.0.1".into(),
            data_port: 1,
            ..Default::default()
        };
        let link = MasterLink::new(client, address, store.clone(), jobs, Default::default());
        let secs = std::time::Duration::from_secs;
        let shared = Arc::new(Shared {
            store,
            link: Arc::new(link),
            admit: Default::default(),
            timeouts: Timeouts {
                idle: secs(10),
                write: secs(10),
                frame: secs(10),
            },
            max_per_peer: 16,
            tls: Default::default(),
            rdma: None,
            leases: crate::conn::LeasePolicy {
                ttl: std::time::Duration::from_secs(60),
                max_per_client: 64,
            },
        });
        Self {
            master,
            shared,
            stop: Some(stop),
        }
    }

    /// Declares file `id`, complete and persisted at `key` in the
    /// under-storage directory, at the version there now (as the master
    /// would after loading it).
    pub async fn add_persisted(&self, id: u64, key: &str, block_size: u64) {
        let uri = self.master.ufs_uri.lock().clone();
        let ufs = eddy_ufs::open(&uri, &Default::default()).await.unwrap();
        let st = ufs
            .stat(&eddy_ufs::UfsPath::parse(key).unwrap())
            .await
            .unwrap();
        self.master.files.lock().insert(
            id,
            FakeFile {
                key: key.into(),
                length: st.length,
                block_size,
                complete: true,
                persisted: true,
                digest: eddy_ufs::digest_hex(&st.fingerprint),
            },
        );
    }
}
