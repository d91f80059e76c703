//! The Eddy client library.
//!
//! [`MasterClient`] speaks to the master for everything about names: stat,
//! list, mkdir, create/complete, rename, delete, attributes and mounts. The
//! data path (reading and writing blocks through workers) joins it in the
//! data-plane work.
//!
//! Architecture invariant: the client depends only on the schema
//! (`eddy-proto`) and transports, never on the master or worker crates.

use std::collections::HashMap;

pub use credentials::Credentials;
pub use eddy_proto::auth::Umask;
pub use eddy_proto::pb;
pub use eddy_proto::{EddyCode, RpcError};
pub use eddy_wire::ReadType;
pub use fs::{FileSystem, LoadProgress, OpenOptions};
pub use io::{FileReader, FileWriter, MappedRange};
pub use options::{ClientOptions, ClientTls, DEFAULT_METADATA_TTL};
use pb::block_master_client::BlockMasterClient;
use pb::file_system_master_client::FileSystemMasterClient;
use pb::meta_master_client::MetaMasterClient;
pub use rdma::{TransportMode, TransportStats};
pub use readbuf::ReadBuf;
pub use stream::{DataStream, dial_data};
pub use transport::Transport;

mod coalesce;
mod credentials;
mod deadline;
mod fs;
mod io;
mod local;
mod options;
mod pool;
mod rdma;
mod readbuf;
mod shared;
mod shm;
mod stream;
mod transport;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The master answered with an Eddy error.
    #[error(transparent)]
    Rpc(#[from] RpcError),
    #[error("cannot connect to the Eddy master at {addr}: {reason}")]
    Connect { addr: String, reason: String },
    #[error("{0}")]
    InvalidArgument(String),
    /// A worker answered with an error, or could not be reached.
    #[error("worker {addr}: {message} ({})", code.name())]
    Worker {
        addr: String,
        code: EddyCode,
        message: String,
    },
}

impl ClientError {
    /// The stable Eddy code of this error.
    pub fn code(&self) -> EddyCode {
        match self {
            ClientError::Rpc(e) => e.code,
            ClientError::Connect { .. } => EddyCode::Unavailable,
            ClientError::InvalidArgument(_) => EddyCode::InvalidArgument,
            ClientError::Worker { code, .. } => *code,
        }
    }
}

impl From<tonic::Status> for ClientError {
    fn from(s: tonic::Status) -> Self {
        ClientError::Rpc(s.into())
    }
}

pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// Options of [`MasterClient::create_file`].
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// 0: the master's default.
    pub block_size: u64,
    pub recursive: bool,
    pub mode: Option<u32>,
    pub write_type: pb::WriteType,
    pub replication_min: u32,
    /// 0: no upper bound.
    pub replication_max: u32,
}

/// A connection to the master. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct MasterClient {
    addr: String,
    fs: FileSystemMasterClient<Transport>,
    block: BlockMasterClient<Transport>,
    meta: MetaMasterClient<Transport>,
    channel: Transport,
    /// Bits cleared from the mode of everything this client creates.
    umask: eddy_proto::auth::Umask,
}

fn path_bytes(p: impl AsRef<[u8]>) -> Vec<u8> {
    p.as_ref().to_vec()
}

impl MasterClient {
    /// Connects to `addr` (`host:port`, or `http://host:port`); each call
    /// has the default deadline ([`ClientOptions::timeout`]).
    pub async fn connect(addr: &str) -> Result<Self> {
        Self::connect_with_timeout(addr, transport::DEFAULT_TIMEOUT).await
    }

    /// As [`MasterClient::connect`], each call ending within `timeout`.
    pub async fn connect_with_timeout(addr: &str, timeout: std::time::Duration) -> Result<Self> {
        let c = Self::lazy_with_timeout(addr, timeout)?;
        c.check_connect(addr).await?;
        Ok(c)
    }

    /// Dials now, so a wrong address fails here rather than at first use.
    async fn check_connect(&self, addr: &str) -> Result<()> {
        self.channel.sender().await.map_err(|e| {
            let e = RpcError::from(e);
            if e.code == EddyCode::DeadlineExceeded {
                ClientError::Rpc(e)
            } else {
                ClientError::Connect {
                    addr: addr.to_string(),
                    reason: e.message,
                }
            }
        })?;
        Ok(())
    }

    /// A client for `addr` that dials on first use (and again after the
    /// master restarts).
    pub fn lazy(addr: &str) -> Result<Self> {
        Self::lazy_with_timeout(addr, transport::DEFAULT_TIMEOUT)
    }

    /// As [`MasterClient::lazy`], each call ending within `timeout`.
    pub fn lazy_with_timeout(addr: &str, timeout: std::time::Duration) -> Result<Self> {
        Self::lazy_with(addr, timeout, &Credentials::current_user())
    }

    /// As [`MasterClient::connect_with_timeout`], calls carrying `creds`.
    pub async fn connect_with(
        addr: &str,
        timeout: std::time::Duration,
        creds: &Credentials,
    ) -> Result<Self> {
        let c = Self::lazy_with(addr, timeout, creds)?;
        c.check_connect(addr).await?;
        Ok(c)
    }

    /// As [`MasterClient::lazy_with_timeout`], calls carrying `creds`.
    pub fn lazy_with(
        addr: &str,
        timeout: std::time::Duration,
        creds: &Credentials,
    ) -> Result<Self> {
        let opts = ClientOptions {
            timeout,
            credentials: creds.clone(),
            ..Default::default()
        };
        Self::lazy_opts(addr, &opts)
    }

    /// Connects to `addr` as `opts` say: each call ends within
    /// `opts.timeout` and carries `opts.credentials`; TLS when `opts.tls`
    /// is set (then `addr` may be `https://host:port`, which without it is
    /// refused).
    pub async fn connect_opts(addr: &str, opts: &ClientOptions) -> Result<Self> {
        let c = Self::lazy_opts(addr, opts)?;
        c.check_connect(addr).await?;
        Ok(c)
    }

    /// As [`MasterClient::connect_opts`], dialling on first use.
    pub fn lazy_opts(addr: &str, opts: &ClientOptions) -> Result<Self> {
        let bad = |reason: String| ClientError::Connect {
            addr: addr.to_string(),
            reason,
        };
        let (scheme, rest) = addr.split_once("://").unwrap_or(("", addr));
        // `tls_ca` is the switch: with it every dial is TLS; `https://`
        // only insists on it.
        let tls = opts.tls.clone();
        let expected = "expected host:port, http://host:port or https://host:port";
        match scheme {
            "" | "http" => {}
            "https" if tls.is_some() => {}
            "https" => {
                return Err(bad(
                    "TLS: an https:// address needs the CA that signed the master's certificate: set [security] tls_ca in the config file (or EDDY_TLS_CA)".into(),
                ));
            }
            _ => return Err(bad(expected.into())),
        }
        let uri = format!("{}://{rest}", if tls.is_some() { "https" } else { "http" });
        let origin: http::Uri = uri
            .parse()
            .map_err(|e| bad(format!("invalid address: {e}")))?;
        let authority = match origin.authority() {
            Some(a) if a.port().is_some() => a.to_string(),
            _ => return Err(bad(expected.into())),
        };
        let identity = opts.credentials.headers()?;
        let channel = Transport::with(&authority, opts.timeout, identity, tls);
        Ok(Self {
            addr: addr.to_string(),
            fs: FileSystemMasterClient::with_origin(channel.clone(), origin.clone()),
            block: BlockMasterClient::with_origin(channel.clone(), origin.clone()),
            meta: MetaMasterClient::with_origin(channel.clone(), origin),
            channel,
            umask: Default::default(),
        })
    }

    /// This client with `umask` applied to what it creates (mkdir, create):
    /// modes default to 0777 for directories and 0666 for files before
    /// it, as in HDFS and POSIX.
    pub fn with_umask(mut self, umask: eddy_proto::auth::Umask) -> Self {
        self.umask = umask;
        self
    }

    pub fn address(&self) -> &str {
        &self.addr
    }

    /// Calls from now on (of this client and its clones) carry `creds`; for
    /// a process whose token was replaced while it runs (a worker).
    pub fn set_credentials(&self, creds: &Credentials) -> Result<()> {
        self.channel.set_identity(creds.headers()?);
        Ok(())
    }

    /// The raw namespace service, for callers that need every field.
    pub fn fs_service(&self) -> FileSystemMasterClient<Transport> {
        self.fs.clone()
    }

    /// The raw worker-facing service (used by workers and tests).
    pub fn block_service(&self) -> BlockMasterClient<Transport> {
        self.block.clone()
    }

    pub async fn stat(&self, path: impl AsRef<[u8]>) -> Result<pb::FileStatus> {
        self.get_status(path, None).await
    }

    /// `stat`, re-checking the under-storage when the last check is older
    /// than `interval_ms` (0: always).
    pub async fn stat_synced(
        &self,
        path: impl AsRef<[u8]>,
        interval_ms: i64,
    ) -> Result<pb::FileStatus> {
        let sync = pb::SyncPolicy {
            interval_ms: Some(interval_ms),
        };
        self.get_status(path, Some(sync)).await
    }

    async fn get_status(
        &self,
        path: impl AsRef<[u8]>,
        sync: Option<pb::SyncPolicy>,
    ) -> Result<pb::FileStatus> {
        let r = self
            .fs
            .clone()
            .get_status(pb::GetStatusRequest {
                path: path_bytes(path),
                sync,
            })
            .await?;
        Ok(r.into_inner().status.unwrap_or_default())
    }

    pub async fn exists(&self, path: impl AsRef<[u8]>) -> Result<bool> {
        let r = self
            .fs
            .clone()
            .exists(pb::ExistsRequest {
                path: path_bytes(path),
                sync: None,
            })
            .await?;
        Ok(r.into_inner().exists)
    }

    /// One page of a listing; pass the returned cursor back for the next.
    pub async fn list_page(
        &self,
        path: impl AsRef<[u8]>,
        start_after: &[u8],
        limit: u32,
        sync_interval_ms: Option<i64>,
    ) -> Result<(Vec<pb::FileStatus>, Option<Vec<u8>>)> {
        let r = self
            .fs
            .clone()
            .list_status(pb::ListStatusRequest {
                path: path_bytes(path),
                start_after: start_after.to_vec(),
                limit,
                sync: sync_interval_ms.map(|i| pb::SyncPolicy {
                    interval_ms: Some(i),
                }),
            })
            .await?
            .into_inner();
        let next = (!r.next_start_after.is_empty()).then_some(r.next_start_after);
        Ok((r.entries, next))
    }

    /// Every entry of a directory, page by page, handed to `each`.
    pub async fn list_each(
        &self,
        path: impl AsRef<[u8]>,
        mut each: impl FnMut(pb::FileStatus),
    ) -> Result<()> {
        let path = path_bytes(path);
        let mut after = Vec::new();
        loop {
            let (entries, next) = self.list_page(&path, &after, 0, None).await?;
            entries.into_iter().for_each(&mut each);
            match next {
                Some(n) => after = n,
                None => return Ok(()),
            }
        }
    }

    /// Every entry of a directory, collected.
    pub async fn list(&self, path: impl AsRef<[u8]>) -> Result<Vec<pb::FileStatus>> {
        let mut v = Vec::new();
        self.list_each(path, |s| v.push(s)).await?;
        Ok(v)
    }

    pub async fn mkdir(&self, path: impl AsRef<[u8]>, recursive: bool) -> Result<pb::FileStatus> {
        let r = self
            .fs
            .clone()
            .mkdir(pb::MkdirRequest {
                path: path_bytes(path),
                recursive,
                allow_exists: recursive,
                mode: Some(self.umask.apply(0o777)),
                // The master records the caller as the owner and the
                // parent's group.
                owner: String::new(),
                group: String::new(),
            })
            .await?;
        Ok(r.into_inner().status.unwrap_or_default())
    }

    pub async fn create_file(
        &self,
        path: impl AsRef<[u8]>,
        o: &CreateOptions,
    ) -> Result<pb::FileStatus> {
        Ok(self
            .create_file_full(path, o)
            .await?
            .status
            .unwrap_or_default())
    }

    /// `create_file`, also returning where the file goes in the under-storage.
    pub async fn create_file_full(
        &self,
        path: impl AsRef<[u8]>,
        o: &CreateOptions,
    ) -> Result<pb::CreateFileResponse> {
        let r = self
            .fs
            .clone()
            .create_file(pb::CreateFileRequest {
                path: path_bytes(path),
                block_size: o.block_size,
                recursive: o.recursive,
                mode: Some(self.umask.apply(o.mode.unwrap_or(0o666))),
                owner: String::new(),
                group: String::new(),
                write_type: o.write_type as i32,
                replication_min: o.replication_min,
                replication_max: o.replication_max,
                ..Default::default()
            })
            .await?;
        Ok(r.into_inner())
    }

    pub async fn complete_file(
        &self,
        path: impl AsRef<[u8]>,
        length: u64,
        persisted: bool,
    ) -> Result<pb::FileStatus> {
        self.complete_file_persisted(path, length, persisted, "")
            .await
    }

    /// `complete_file` with the under-storage fingerprint of what was written.
    pub async fn complete_file_persisted(
        &self,
        path: impl AsRef<[u8]>,
        length: u64,
        persisted: bool,
        fingerprint: &str,
    ) -> Result<pb::FileStatus> {
        self.complete_file_with(pb::CompleteFileRequest {
            path: path_bytes(path),
            length,
            persisted,
            ufs_fingerprint: fingerprint.to_string(),
            persist_async: false,
            file_id: 0,
        })
        .await
    }

    /// `complete_file` with every field of the request (ASYNC_THROUGH sets
    /// `persist_async`).
    pub async fn complete_file_with(&self, r: pb::CompleteFileRequest) -> Result<pb::FileStatus> {
        let r = self.fs.clone().complete_file(r).await?;
        Ok(r.into_inner().status.unwrap_or_default())
    }

    /// Has the unpersisted files at `path` persisted in the background;
    /// returns how many are waiting.
    /// Compares persisted files at or below `path` with the under-storage.
    pub async fn check_consistency(
        &self,
        path: impl AsRef<[u8]>,
    ) -> Result<pb::CheckConsistencyResponse> {
        let r = self
            .fs
            .clone()
            .check_consistency(pb::CheckConsistencyRequest {
                path: path_bytes(path),
            })
            .await?;
        Ok(r.into_inner())
    }

    pub async fn persist(&self, path: impl AsRef<[u8]>) -> Result<u64> {
        let r = self
            .fs
            .clone()
            .persist(pb::PersistRequest {
                path: path_bytes(path),
            })
            .await?;
        Ok(r.into_inner().files)
    }

    pub async fn rename(&self, src: impl AsRef<[u8]>, dst: impl AsRef<[u8]>) -> Result<()> {
        self.fs
            .clone()
            .rename(pb::RenameRequest {
                src: path_bytes(src),
                dst: path_bytes(dst),
            })
            .await?;
        Ok(())
    }

    pub async fn delete(&self, path: impl AsRef<[u8]>, recursive: bool) -> Result<()> {
        self.delete_file_id(path, recursive, 0).await
    }

    /// Deletes `path` only if it is still inode `file_id` (0: whatever it
    /// is); otherwise NOT_FOUND and nothing changes. A writer cleaning up
    /// its own file uses it, so a file another client has put at the path
    /// since is never deleted.
    pub async fn delete_file_id(
        &self,
        path: impl AsRef<[u8]>,
        recursive: bool,
        file_id: u64,
    ) -> Result<()> {
        self.fs
            .clone()
            .delete(pb::DeleteRequest {
                path: path_bytes(path),
                recursive,
                eddy_only: false,
                file_id,
            })
            .await?;
        Ok(())
    }

    pub async fn set_attribute(&self, req: pb::SetAttributeRequest) -> Result<pb::FileStatus> {
        let r = self.fs.clone().set_attribute(req).await?;
        Ok(r.into_inner().status.unwrap_or_default())
    }

    pub async fn mount(
        &self,
        path: impl AsRef<[u8]>,
        ufs_uri: &str,
        read_only: bool,
        options: HashMap<String, String>,
        sync_interval_ms: Option<i64>,
    ) -> Result<()> {
        self.fs
            .clone()
            .mount(pb::MountRequest {
                path: path_bytes(path),
                ufs_uri: ufs_uri.to_string(),
                read_only,
                options,
                sync_interval_ms,
            })
            .await?;
        Ok(())
    }

    pub async fn unmount(&self, path: impl AsRef<[u8]>) -> Result<()> {
        self.fs
            .clone()
            .unmount(pb::UnmountRequest {
                path: path_bytes(path),
            })
            .await?;
        Ok(())
    }

    pub async fn list_mounts(&self) -> Result<Vec<pb::MountInfo>> {
        Ok(self
            .fs
            .clone()
            .list_mounts(pb::ListMountsRequest {})
            .await?
            .into_inner()
            .mounts)
    }

    pub async fn file_blocks(&self, path: impl AsRef<[u8]>) -> Result<pb::GetFileBlocksResponse> {
        Ok(self
            .fs
            .clone()
            .get_file_blocks(pb::GetFileBlocksRequest {
                path: path_bytes(path),
            })
            .await?
            .into_inner())
    }

    /// Drops cached copies of `path` from every worker (see `FreeRequest`).
    pub async fn free(&self, path: impl AsRef<[u8]>, recursive: bool, force: bool) -> Result<u64> {
        let r = self
            .fs
            .clone()
            .free(pb::FreeRequest {
                path: path_bytes(path),
                recursive,
                force,
            })
            .await?;
        Ok(r.into_inner().blocks_freed)
    }

    /// Asks the master which worker should take `block_id`.
    pub async fn select_worker(
        &self,
        block_id: u64,
        client_host: &str,
        bytes_needed: u64,
        policy: pb::PlacementKind,
        exclude_workers: &[u64],
    ) -> Result<pb::SelectWorkerResponse> {
        let r = self
            .block
            .clone()
            .select_worker(pb::SelectWorkerRequest {
                block_id,
                client_host: client_host.to_string(),
                bytes_needed,
                policy: policy as i32,
                exclude_workers: exclude_workers.to_vec(),
            })
            .await?;
        Ok(r.into_inner())
    }

    pub async fn cluster_info(&self) -> Result<pb::GetClusterInfoResponse> {
        Ok(self
            .meta
            .clone()
            .get_cluster_info(pb::GetClusterInfoRequest {})
            .await?
            .into_inner())
    }
}
