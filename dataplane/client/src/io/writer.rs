//! [`FileWriter`]: a new file's bytes through one worker's write session,
//! into its shared memory when it is on this host ([`ShmWrite`]), else over
//! TCP ([`TcpWrite`]); the master completes the file at close.

use std::sync::Arc;

use eddy_wire::{Kind, UfsSource, WriteOpen, WriteType, host_port};

use super::conn::wire_err;
use super::shm_write::ShmWrite;
use super::tcp_write::TcpWrite;
use crate::shared::Shared;
use crate::{ClientError, CreateOptions, EddyCode, Result, RpcError, pb};

/// Writes a new file through one worker. Call [`FileWriter::close`]: only
/// then is the file complete and visible. Dropping an unclosed writer
/// discards what was written and deletes the file.
pub struct FileWriter {
    shared: Arc<Shared>,
    path: Vec<u8>,
    /// The inode this writer created: completion and clean-up name it, so
    /// they act on this file even if the path was renamed or reused.
    file_id: u64,
    /// The session over TCP, until it closes or fails.
    tcp: Option<TcpWrite>,
    written: u64,
    persisted: bool,
    /// ASYNC_THROUGH: the master has the file persisted after close.
    persist_async: bool,
    /// Short-circuit: writing straight into segments of a worker on this host.
    shm: Option<ShmWrite>,
    /// No byte written yet, so no session opened yet.
    pending: Option<Pending>,
}

/// A session not opened yet. A MUST_CACHE (or ASYNC_THROUGH) file opens
/// its worker session at its first byte: one closed empty (a marker, a
/// `_SUCCESS`, an empty partition) needs no worker at all, only the
/// master's create and complete.
struct Pending {
    status: pb::FileStatus,
    ufs: Option<pb::UfsLocation>,
    write_type: WriteType,
    token: Vec<u8>,
}

impl FileWriter {
    pub(crate) async fn create(
        shared: Arc<Shared>,
        path: &[u8],
        opts: &CreateOptions,
    ) -> Result<Self> {
        let created = shared.master().create_file_full(path, opts).await?;
        // Whatever this client cached about an earlier file at this path is
        // about another inode now.
        shared.invalidate(path);
        let status = created.status.unwrap_or_default();
        let (write_type, persist_async) = match opts.write_type {
            pb::WriteType::Unspecified | pb::WriteType::MustCache => (WriteType::MustCache, false),
            pb::WriteType::CacheThrough => (WriteType::CacheThrough, false),
            pb::WriteType::Through => (WriteType::Through, false),
            // The workers keep the bytes (as MUST_CACHE); the master has one
            // of them persist the file after close.
            pb::WriteType::AsyncThrough => (WriteType::MustCache, true),
        };
        let mut w = Self {
            shared,
            path: path.to_vec(),
            file_id: status.id,
            tcp: None,
            written: 0,
            persisted: write_type != WriteType::MustCache,
            persist_async,
            shm: None,
            pending: None,
        };
        let pending = Pending {
            status,
            ufs: created.ufs,
            write_type,
            token: created.block_token,
        };
        if write_type == WriteType::MustCache {
            w.pending = Some(pending);
            return Ok(w);
        }
        // A write to the under-storage opens it now: a create there that
        // fails (a read-only mount, missing permissions) fails this create.
        w.open(pending).await?;
        Ok(w)
    }

    /// Opens the worker session; on failure the file is discarded.
    async fn open(&mut self, p: Pending) -> Result<()> {
        match self.open_session(p).await {
            Ok(()) => Ok(()),
            Err(e) => {
                self.tcp = None;
                self.discard().await;
                if e.code() == EddyCode::NotFound {
                    // The worker found no such file: another client deleted
                    // (or replaced) it between its creation and this.
                    return Err(ClientError::Rpc(RpcError::new(
                        EddyCode::NotFound,
                        format!(
                            "{} was created, then deleted or replaced by another client before it could be written ({e}); create it again",
                            String::from_utf8_lossy(&self.path)
                        ),
                    )));
                }
                Err(e)
            }
        }
    }

    async fn open_session(&mut self, p: Pending) -> Result<()> {
        let status = p.status;
        // One request for either front door: the shared-memory open below,
        // or the TCP one if that is refused.
        let open = WriteOpen {
            file_id: status.id,
            block_size: status.block_size,
            write_type: p.write_type,
            target: p.ufs.map(|u| UfsSource {
                mount_id: u.mount_id,
                key: u.key,
            }),
            token: p.token,
        };
        // A worker on this host: write into its shared memory.
        if let Some(socket) = self.shared.local_write_socket().await {
            match ShmWrite::open(&socket, &open, self.shared.user(), self.shared.opts.timeout).await
            {
                Ok(s) => {
                    self.shm = Some(s);
                    return Ok(());
                }
                Err(e) => self.shared.note_fallback(&e.to_string()),
            }
        }
        let first = eddy_proto::block_id(status.id, 0);
        let w = self
            .shared
            .master()
            .select_worker(
                first,
                self.shared.host(),
                status.block_size,
                pb::PlacementKind::LocalFirst,
                &[],
            )
            .await?;
        let a = w.address.unwrap_or_default();
        let addr = host_port(&a.host, a.data_port);
        // A write session holds its connection until close.
        self.tcp = Some(TcpWrite::open(&self.shared, &addr, &open).await?);
        Ok(())
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    pub async fn write(&mut self, data: &[u8]) -> Result<()> {
        if let Some(p) = self.pending.take() {
            if data.is_empty() {
                self.pending = Some(p);
                return Ok(());
            }
            self.open(p).await?;
        }
        if let Some(s) = self.shm.as_mut() {
            if let Err(e) = s.write(data).await {
                let e = s.err(e);
                self.shm = None;
                return Err(e);
            }
            self.written += data.len() as u64;
            return Ok(());
        }
        let Some(t) = self.tcp.as_mut() else {
            return Err(ClientError::InvalidArgument("the writer is closed".into()));
        };
        if let Err(e) = t.write(data).await {
            let e = wire_err(t.addr(), e);
            self.tcp = None;
            return Err(e);
        }
        self.written += data.len() as u64;
        Ok(())
    }

    /// Finishes the file: the worker caches (and, by write type, persists)
    /// it, then the master marks it complete. Returns its status.
    pub async fn close(mut self) -> Result<pb::FileStatus> {
        if self.pending.take().is_some() {
            // Empty, and cached only: there is nothing for a worker to keep.
            let path = std::mem::take(&mut self.path);
            return self.complete(path, 0, "").await;
        }
        if let Some(mut s) = self.shm.take() {
            let ok = match s.close(self.written).await {
                Ok(ok) => ok,
                Err(e) => {
                    let e = s.err(e);
                    self.discard().await;
                    return Err(e);
                }
            };
            let path = std::mem::take(&mut self.path);
            return self.complete(path, ok.length, &ok.fingerprint).await;
        }
        let t = self.tcp.take().ok_or_else(|| {
            ClientError::InvalidArgument("the writer failed earlier; nothing was kept".into())
        })?;
        let ok = match t.close(self.written).await {
            Ok(ok) => ok,
            Err(e) => {
                self.discard().await;
                return Err(e);
            }
        };
        let path = std::mem::take(&mut self.path);
        self.complete(path, ok.length, &ok.fingerprint).await
    }

    async fn complete(
        &self,
        path: Vec<u8>,
        length: u64,
        fingerprint: &str,
    ) -> Result<pb::FileStatus> {
        let r = self
            .shared
            .master()
            .complete_file_with(pb::CompleteFileRequest {
                path: path.clone(),
                length,
                persisted: self.persisted,
                ufs_fingerprint: fingerprint.to_string(),
                persist_async: self.persist_async,
                file_id: self.file_id,
            })
            .await;
        // Read-after-write in this client: an open after close must not be
        // answered from metadata fetched while the file was incomplete.
        self.shared.invalidate(&path);
        r
    }

    /// Discards the file.
    pub async fn cancel(mut self) -> Result<()> {
        if let Some(mut s) = self.shm.take() {
            let _ = s.step(Kind::WriteCancel, &[], Kind::Ok).await;
        }
        if let Some(t) = self.tcp.take() {
            t.cancel().await;
        }
        let path = std::mem::take(&mut self.path);
        self.shared.invalidate(&path);
        match self
            .shared
            .master()
            .delete_file_id(&path, false, self.file_id)
            .await
        {
            // Renamed or deleted by someone else meanwhile: this file is
            // gone from the path either way, and nothing else was touched.
            Err(ClientError::Rpc(e)) if e.code == EddyCode::NotFound => Ok(()),
            r => r,
        }
    }

    /// Deletes this writer's incomplete file after a failure — this inode
    /// only, wherever a concurrent rename put it is not chased (its
    /// incomplete state is visible and it can be deleted by hand).
    async fn discard(&self) {
        let _ = self
            .shared
            .master()
            .delete_file_id(&self.path, false, self.file_id)
            .await;
        self.shared.invalidate(&self.path);
    }
}

impl Drop for FileWriter {
    fn drop(&mut self) {
        // Not closed: the worker drops the session with the connection; the
        // incomplete file goes too, if a runtime is still around to say so.
        if !self.path.is_empty()
            && let Ok(h) = tokio::runtime::Handle::try_current()
        {
            let master = self.shared.master().clone();
            let path = std::mem::take(&mut self.path);
            let id = self.file_id;
            h.spawn(async move {
                let _ = master.delete_file_id(&path, false, id).await;
            });
        }
    }
}
