//! The gRPC glue: one line per RPC, from a request to a `MasterState`
//! method and back; reads answer once what they saw is durable.

use std::sync::Arc;

use eddy_proto::pb;
use tonic::{Request, Response, Status};

use eddy_proto::auth::{BlockOps, unix_ms};

use crate::error::Result;
use crate::identity::{Caller, require_worker};
use crate::service::MasterState;

/// Serves all three master services over one shared state.
#[derive(Clone)]
pub struct MasterRpc(pub Arc<MasterState>);

impl MasterRpc {
    /// A read's answer, once everything it may have seen is durable.
    async fn read<T>(&self, f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        let r = f.await;
        self.0.settle_reads().await;
        r
    }

    /// Runs `f` with the access of the request's caller (`crate::authz`):
    /// every file system call acts for its caller.
    async fn as_caller<T>(
        &self,
        caller: &Caller,
        f: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let who = self.0.authz.access(caller).await?;
        crate::authz::scope(who, f).await
    }

    /// A change's answer. Success waited for its own commit, which follows
    /// every commit it depended on; a refusal may rest on a change not
    /// durable yet (ALREADY_EXISTS of a file whose create is in flight), so
    /// it waits as a read does.
    async fn change<T>(&self, f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        let r = f.await;
        if r.is_err() {
            self.0.settle_reads().await;
        }
        r
    }

    /// The block token `caller` gets for `ops` on file `file_id`
    /// (docs/SECURITY.md, "Block access tokens").
    fn block_token(&self, caller: &Caller, file_id: u64, ops: BlockOps) -> Vec<u8> {
        let sec = &self.0.cfg.security;
        self.0.keys.block_token(
            sec.authentication,
            caller,
            file_id,
            ops,
            sec.block_token_ttl_ms,
            unix_ms(),
        )
    }
}

type Rpc<T> = std::result::Result<Response<T>, Status>;

#[tonic::async_trait]
impl pb::file_system_master_server::FileSystemMaster for MasterRpc {
    async fn mkdir(&self, r: Request<pb::MkdirRequest>) -> Rpc<pb::MkdirResponse> {
        let status = self
            .change(self.as_caller(&Caller::of(&r)?, self.0.mkdir(r.into_inner())))
            .await?;
        Ok(Response::new(pb::MkdirResponse {
            status: Some(status),
        }))
    }
    async fn create_file(&self, r: Request<pb::CreateFileRequest>) -> Rpc<pb::CreateFileResponse> {
        let caller = Caller::of(&r)?;
        let (status, ufs) = self
            .change(self.as_caller(&caller, self.0.create_file(r.into_inner())))
            .await?;
        Ok(Response::new(pb::CreateFileResponse {
            block_token: self.block_token(&caller, status.id, BlockOps::READ_WRITE),
            status: Some(status),
            ufs: Some(ufs),
        }))
    }
    async fn complete_file(
        &self,
        r: Request<pb::CompleteFileRequest>,
    ) -> Rpc<pb::CompleteFileResponse> {
        let status = self
            .change(self.as_caller(&Caller::of(&r)?, self.0.complete_file(r.into_inner())))
            .await?;
        Ok(Response::new(pb::CompleteFileResponse {
            status: Some(status),
        }))
    }
    async fn get_status(&self, r: Request<pb::GetStatusRequest>) -> Rpc<pb::GetStatusResponse> {
        let status = self
            .read(self.as_caller(&Caller::of(&r)?, self.0.get_status(r.into_inner())))
            .await?;
        Ok(Response::new(pb::GetStatusResponse {
            status: Some(status),
        }))
    }
    async fn exists(&self, r: Request<pb::ExistsRequest>) -> Rpc<pb::ExistsResponse> {
        let exists = self
            .read(self.as_caller(&Caller::of(&r)?, self.0.exists(r.into_inner())))
            .await?;
        Ok(Response::new(pb::ExistsResponse { exists }))
    }
    async fn list_status(&self, r: Request<pb::ListStatusRequest>) -> Rpc<pb::ListStatusResponse> {
        Ok(Response::new(
            self.read(self.as_caller(&Caller::of(&r)?, self.0.list_status(r.into_inner())))
                .await?,
        ))
    }
    async fn rename(&self, r: Request<pb::RenameRequest>) -> Rpc<pb::RenameResponse> {
        self.change(self.as_caller(&Caller::of(&r)?, self.0.rename(r.into_inner())))
            .await?;
        Ok(Response::new(pb::RenameResponse {}))
    }
    async fn delete(&self, r: Request<pb::DeleteRequest>) -> Rpc<pb::DeleteResponse> {
        self.change(self.as_caller(&Caller::of(&r)?, self.0.delete(r.into_inner())))
            .await?;
        Ok(Response::new(pb::DeleteResponse {}))
    }
    async fn set_attribute(
        &self,
        r: Request<pb::SetAttributeRequest>,
    ) -> Rpc<pb::SetAttributeResponse> {
        let status = self
            .change(self.as_caller(&Caller::of(&r)?, self.0.set_attribute(r.into_inner())))
            .await?;
        Ok(Response::new(pb::SetAttributeResponse {
            status: Some(status),
        }))
    }
    async fn mount(&self, r: Request<pb::MountRequest>) -> Rpc<pb::MountResponse> {
        self.change(self.as_caller(&Caller::of(&r)?, self.0.mount(r.into_inner())))
            .await?;
        Ok(Response::new(pb::MountResponse {}))
    }
    async fn unmount(&self, r: Request<pb::UnmountRequest>) -> Rpc<pb::UnmountResponse> {
        self.change(self.as_caller(&Caller::of(&r)?, self.0.unmount(r.into_inner())))
            .await?;
        Ok(Response::new(pb::UnmountResponse {}))
    }
    async fn list_mounts(&self, r: Request<pb::ListMountsRequest>) -> Rpc<pb::ListMountsResponse> {
        // Any user may see the mounts (secrets masked); a worker
        // credential names no user.
        self.0.authz.access(&Caller::of(&r)?).await?;
        Ok(Response::new(pb::ListMountsResponse {
            mounts: self.0.list_mounts(),
        }))
    }
    async fn get_file_blocks(
        &self,
        r: Request<pb::GetFileBlocksRequest>,
    ) -> Rpc<pb::GetFileBlocksResponse> {
        let caller = Caller::of(&r)?;
        let mut resp = self
            .read(self.as_caller(&caller, self.0.get_file_blocks(r.into_inner())))
            .await?;
        if let Some(st) = &resp.status {
            resp.block_token = self.block_token(&caller, st.id, BlockOps::READ);
        }
        Ok(Response::new(resp))
    }
    async fn free(&self, r: Request<pb::FreeRequest>) -> Rpc<pb::FreeResponse> {
        let blocks_freed = self
            .change(self.as_caller(&Caller::of(&r)?, self.0.free(r.into_inner())))
            .await?;
        Ok(Response::new(pb::FreeResponse { blocks_freed }))
    }
    async fn check_consistency(
        &self,
        r: Request<pb::CheckConsistencyRequest>,
    ) -> Rpc<pb::CheckConsistencyResponse> {
        Ok(Response::new(
            self.as_caller(&Caller::of(&r)?, self.0.check_consistency(r.into_inner()))
                .await?,
        ))
    }
    async fn persist(&self, r: Request<pb::PersistRequest>) -> Rpc<pb::PersistResponse> {
        let files = self
            .change(self.as_caller(&Caller::of(&r)?, self.0.persist(r.into_inner())))
            .await?;
        Ok(Response::new(pb::PersistResponse { files }))
    }
}

#[tonic::async_trait]
impl pb::block_master_server::BlockMaster for MasterRpc {
    async fn register_worker(
        &self,
        r: Request<pb::RegisterWorkerRequest>,
    ) -> Rpc<pb::RegisterWorkerResponse> {
        require_worker(&Caller::of(&r)?, "RegisterWorker")?;
        let mut resp = self.0.register_worker(r.into_inner())?;
        resp.block_keys = self.0.keys.block_keys(unix_ms());
        let mode = self.0.cfg.security.authentication;
        resp.block_tokens_required = mode != eddy_proto::auth::AuthMode::None;
        resp.authentication = mode.name().to_string();
        Ok(Response::new(resp))
    }
    async fn heartbeat(&self, r: Request<pb::HeartbeatRequest>) -> Rpc<pb::HeartbeatResponse> {
        require_worker(&Caller::of(&r)?, "Heartbeat")?;
        let mut resp = self.0.heartbeat_wait(r.into_inner()).await?;
        resp.block_keys = self.0.keys.block_keys(unix_ms());
        Ok(Response::new(resp))
    }
    async fn get_mount(&self, r: Request<pb::GetMountRequest>) -> Rpc<pb::GetMountResponse> {
        require_worker(&Caller::of(&r)?, "GetMount")?;
        let r = r.into_inner();
        let mount = self.0.get_mount(r.mount_id, r.worker_id)?;
        Ok(Response::new(pb::GetMountResponse { mount: Some(mount) }))
    }
    async fn commit_block(
        &self,
        r: Request<pb::CommitBlockRequest>,
    ) -> Rpc<pb::CommitBlockResponse> {
        require_worker(&Caller::of(&r)?, "CommitBlock")?;
        self.0.commit_block(r.into_inner())?;
        Ok(Response::new(pb::CommitBlockResponse {}))
    }
    async fn get_block_info(
        &self,
        r: Request<pb::GetBlockInfoRequest>,
    ) -> Rpc<pb::GetBlockInfoResponse> {
        require_worker(&Caller::of(&r)?, "GetBlockInfo")?;
        Ok(Response::new(self.0.block_info(r.into_inner().block_id)?))
    }
    async fn file_persisted(
        &self,
        r: Request<pb::FilePersistedRequest>,
    ) -> Rpc<pb::FilePersistedResponse> {
        require_worker(&Caller::of(&r)?, "FilePersisted")?;
        self.0.file_persisted(r.into_inner()).await?;
        Ok(Response::new(pb::FilePersistedResponse {}))
    }
    async fn select_worker(
        &self,
        r: Request<pb::SelectWorkerRequest>,
    ) -> Rpc<pb::SelectWorkerResponse> {
        // For the caller: a placement needs access to the block's file.
        let caller = Caller::of(&r)?;
        Ok(Response::new(
            self.as_caller(&caller, self.0.select_worker_in_grace(r.into_inner()))
                .await?,
        ))
    }
}

#[tonic::async_trait]
impl pb::meta_master_server::MetaMaster for MasterRpc {
    async fn get_cluster_info(
        &self,
        r: Request<pb::GetClusterInfoRequest>,
    ) -> Rpc<pb::GetClusterInfoResponse> {
        // Workers call it too: their credential counts as no superuser.
        let caller = Caller::of(&r)?;
        let who = self.0.authz.access(&caller).await.unwrap_or_else(|_| {
            crate::namespace::perm::Access::user(&caller.name, &[], &self.0.authz.superuser)
        });
        let info = crate::authz::scope(who, async { self.0.cluster_info() }).await;
        Ok(Response::new(info))
    }
}
