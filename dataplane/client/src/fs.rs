//! [`FileSystem`]: the client's entry point. Names go to the master; bytes
//! go to workers over the data protocol (`eddy-wire`).

use std::collections::HashMap;
use std::sync::Arc;

use eddy_wire::ReadType;

use crate::io::{FileReader, FileWriter};
use crate::options::ClientOptions;
use crate::shared::Shared;
use crate::{ClientError, CreateOptions, EddyCode, MasterClient, Result, pb};

/// Options of [`FileSystem::open`].
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    pub read_type: ReadType,
}

/// Where a `load` is.
#[derive(Debug, Clone, Default)]
pub struct LoadProgress {
    pub files_total: u64,
    pub bytes_total: u64,
    pub files_done: u64,
    pub bytes_done: u64,
    /// Of `bytes_done`, the bytes that were cached already (nothing moved).
    pub bytes_already_cached: u64,
}

/// A connection to an Eddy cluster. Cheap to clone; clones share the
/// master connection, the worker connection pool and the metadata cache.
#[derive(Clone)]
pub struct FileSystem {
    pub(crate) shared: Arc<Shared>,
}

impl FileSystem {
    /// Connects to the master at `addr` (`host:port`).
    pub async fn connect(addr: &str) -> Result<Self> {
        Self::connect_with(addr, ClientOptions::default()).await
    }

    pub async fn connect_with(addr: &str, opts: ClientOptions) -> Result<Self> {
        let master = MasterClient::connect_opts(addr, &opts).await?;
        Ok(Self::with_master_opts(master, opts))
    }

    pub fn with_master(master: MasterClient) -> Self {
        Self::with_master_opts(master, ClientOptions::default())
    }

    pub fn with_master_opts(master: MasterClient, opts: ClientOptions) -> Self {
        let master = master.with_umask(opts.umask);
        Self {
            shared: Arc::new(Shared::new(master, opts)),
        }
    }

    /// The master client, for everything about names.
    pub fn master(&self) -> &MasterClient {
        &self.shared.master
    }

    /// This client's host as workers and placement see it.
    pub fn host(&self) -> &str {
        &self.shared.host
    }

    /// Bytes this client read by transport, and its RDMA counters.
    pub fn transport_stats(&self) -> crate::TransportStats {
        self.shared.rdma.stats()
    }

    /// The transport this client reads the worker at `a` with, as far as
    /// it knows: "short-circuit" for a worker on this host with a Unix
    /// socket (when short-circuit is on), "rdma (provider)" for one that
    /// advertises a provider this client will try, else "tcp".
    pub fn transport_to(&self, a: &pb::WorkerAddress) -> String {
        if self.shared.opts.short_circuit
            && a.host == self.shared.host
            && !a.domain_socket.is_empty()
        {
            return "short-circuit".into();
        }
        let addr = format!("{}:{}", a.host, a.data_port);
        self.shared.rdma.note_provider(&addr, &a.rdma_provider);
        match self.shared.rdma.provider_of(&addr) {
            Some(p) => format!("rdma ({p})"),
            None => "tcp".into(),
        }
    }

    /// Creates `path` and returns a writer; the file becomes visible to
    /// readers when the writer is closed.
    pub async fn create(&self, path: impl AsRef<[u8]>, opts: &CreateOptions) -> Result<FileWriter> {
        let path = path.as_ref();
        // Before and after, whatever the answer: a create whose answer was
        // lost may still have replaced what was cached for the path.
        self.invalidate(path);
        let r = FileWriter::create(self.shared.clone(), path, opts).await;
        self.invalidate(path);
        r
    }

    /// Opens a complete file for reading.
    pub async fn open(&self, path: impl AsRef<[u8]>, opts: &OpenOptions) -> Result<FileReader> {
        let info = self.shared.file_info(path.as_ref(), false).await?;
        if info.status.is_dir {
            return Err(ClientError::Rpc(crate::RpcError::new(
                EddyCode::IsADirectory,
                format!("{} is a directory", String::from_utf8_lossy(path.as_ref())),
            )));
        }
        if !info.status.complete {
            return Err(ClientError::Rpc(crate::RpcError::new(
                EddyCode::FileIncomplete,
                format!(
                    "{} is still being written",
                    String::from_utf8_lossy(path.as_ref())
                ),
            )));
        }
        Ok(FileReader::new(self.shared.clone(), info, opts.read_type))
    }

    /// Drops cached metadata of `path` and everything under it; an answer
    /// on its way from the master now is not kept either.
    pub fn invalidate(&self, path: &[u8]) {
        self.shared.invalidate(path);
    }

    /// Runs a change of the namespace under `paths`, dropping what is cached
    /// there before it is sent and again after it answers, success or not
    /// (an answer lost on the way may hide a change that took effect).
    async fn changing<T>(
        &self,
        paths: &[&[u8]],
        change: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        for p in paths {
            self.invalidate(p);
        }
        let r = change.await;
        for p in paths {
            self.invalidate(p);
        }
        r
    }

    pub async fn stat(&self, path: impl AsRef<[u8]>) -> Result<pb::FileStatus> {
        self.shared.master.stat(path).await
    }

    pub async fn list(&self, path: impl AsRef<[u8]>) -> Result<Vec<pb::FileStatus>> {
        self.shared.master.list(path).await
    }

    pub async fn mkdir(&self, path: impl AsRef<[u8]>, recursive: bool) -> Result<pb::FileStatus> {
        self.shared.master.mkdir(path, recursive).await
    }

    pub async fn rename(&self, src: impl AsRef<[u8]>, dst: impl AsRef<[u8]>) -> Result<()> {
        let (src, dst) = (src.as_ref(), dst.as_ref());
        self.changing(&[src, dst], self.shared.master.rename(src, dst))
            .await
    }

    pub async fn delete(&self, path: impl AsRef<[u8]>, recursive: bool) -> Result<()> {
        let path = path.as_ref();
        self.changing(&[path], self.shared.master.delete(path, recursive))
            .await
    }

    pub async fn mount(
        &self,
        path: impl AsRef<[u8]>,
        uri: &str,
        read_only: bool,
        options: HashMap<String, String>,
        sync_interval_ms: Option<i64>,
    ) -> Result<()> {
        self.shared
            .master
            .mount(path, uri, read_only, options, sync_interval_ms)
            .await
    }

    pub async fn unmount(&self, path: impl AsRef<[u8]>) -> Result<()> {
        let path = path.as_ref();
        self.changing(&[path], self.shared.master.unmount(path))
            .await
    }

    /// Drops cached copies of `path` (a file, or a directory with
    /// `recursive`) from the workers; the under-storage keeps the data.
    pub async fn free(&self, path: impl AsRef<[u8]>, recursive: bool, force: bool) -> Result<u64> {
        let path = path.as_ref();
        self.changing(&[path], self.shared.master.free(path, recursive, force))
            .await
    }

    /// Pins (or unpins) `path` and everything under it: workers never
    /// evict pinned files' blocks.
    pub async fn pin(&self, path: impl AsRef<[u8]>, pinned: bool) -> Result<pb::FileStatus> {
        self.shared
            .master
            .set_attribute(pb::SetAttributeRequest {
                path: path.as_ref().to_vec(),
                pinned: Some(pinned),
                recursive: true,
                ..Default::default()
            })
            .await
    }

    /// Caches `path` (a file, or every file under a directory) in the
    /// workers in advance. `progress` is called after each block.
    pub async fn load(
        &self,
        path: impl AsRef<[u8]>,
        mut progress: impl FnMut(&LoadProgress),
    ) -> Result<LoadProgress> {
        let mut files = Vec::new();
        let root = self.shared.master.stat(path.as_ref()).await?;
        if root.is_dir {
            let mut dirs = vec![root.path.clone()];
            while let Some(d) = dirs.pop() {
                for e in self.shared.master.list(&d).await? {
                    if e.is_dir {
                        dirs.push(e.path.clone());
                    } else {
                        files.push(e);
                    }
                }
            }
        } else {
            files.push(root);
        }
        let mut p = LoadProgress {
            files_total: files.len() as u64,
            bytes_total: files.iter().map(|f| f.length).sum(),
            ..Default::default()
        };
        progress(&p);
        for f in files {
            let info = self.shared.file_info(&f.path, true).await?;
            let reader = FileReader::new(self.shared.clone(), info.clone(), ReadType::Cache);
            for b in &info.blocks {
                if !b.locations.is_empty() {
                    p.bytes_already_cached += b.length;
                }
                reader.load_block(b).await?;
                p.bytes_done += b.length;
                progress(&p);
            }
            p.files_done += 1;
            progress(&p);
        }
        Ok(p)
    }

    /// The named counters of the worker at `addr` (`host:port`).
    pub async fn worker_stats(&self, addr: &str) -> Result<Vec<(String, u64)>> {
        crate::io::worker_stats(&self.shared, addr).await
    }
}
