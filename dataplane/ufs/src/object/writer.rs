//! Streamed writes to an object store: buffered, then a multipart upload.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};

use crate::{Result, UfsError, UfsPath, UfsStatus, UfsWriter};

/// Bytes a streamed write buffers before it becomes a multipart upload, and
/// the size of each part.
pub const PART: usize = 8 << 20;
/// Parts uploaded at once by one streamed write.
const PART_CONCURRENCY: usize = 2;

/// A streamed write: small objects are one PUT at `complete`; past [`PART`]
/// bytes the write becomes a multipart upload.
pub(super) struct ObjectWriter {
    pub(super) ufs_uri: String,
    pub(super) store: Arc<dyn ObjectStore>,
    pub(super) key: Path,
    pub(super) path: UfsPath,
    pub(super) buf: Vec<u8>,
    pub(super) upload: Option<WriteMultipart>,
    pub(super) written: u64,
}

impl ObjectWriter {
    fn err(&self, e: object_store::Error) -> UfsError {
        UfsError::Io {
            path: format!("{}{}", self.ufs_uri.trim_end_matches('/'), self.path),
            source: std::io::Error::other(e.to_string()),
        }
    }
}

#[async_trait]
impl UfsWriter for ObjectWriter {
    async fn write(&mut self, data: &[u8]) -> Result<()> {
        self.written += data.len() as u64;
        if self.upload.is_none() {
            if self.buf.len() + data.len() <= PART {
                self.buf.extend_from_slice(data);
                return Ok(());
            }
            let up = self
                .store
                .put_multipart(&self.key)
                .await
                .map_err(|e| self.err(e))?;
            let mut w = WriteMultipart::new_with_chunk_size(up, PART);
            w.write(&std::mem::take(&mut self.buf));
            self.upload = Some(w);
        }
        let w = self.upload.as_mut().expect("set above");
        w.write(data);
        let r = w.wait_for_capacity(PART_CONCURRENCY).await;
        r.map_err(|e| self.err(e))
    }

    async fn complete(mut self: Box<Self>) -> Result<UfsStatus> {
        let r = match self.upload.take() {
            Some(w) => w.finish().await,
            None => {
                let data = Bytes::from(std::mem::take(&mut self.buf));
                self.store.put(&self.key, PutPayload::from(data)).await
            }
        };
        let r = r.map_err(|e| self.err(e))?;
        Ok(UfsStatus {
            name: self.path.name().to_string(),
            is_dir: false,
            length: self.written,
            mtime_ms: now_ms(),
            fingerprint: fingerprint(r.e_tag.as_deref(), self.written, 0),
        })
    }

    async fn abort(mut self: Box<Self>) {
        if let Some(w) = self.upload.take() {
            let _ = w.abort().await;
        }
    }
}

pub(super) fn fingerprint(etag: Option<&str>, size: u64, mtime_ms: i64) -> String {
    match etag {
        Some(t) if !t.is_empty() => format!("etag:{}", t.trim_matches('"')),
        _ => format!("size:{size},mtime:{mtime_ms}"),
    }
}

pub(super) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
