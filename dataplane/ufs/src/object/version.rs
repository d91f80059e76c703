//! Versioned reads of objects: a HEAD to check the version, then a GET
//! conditional on the etag seen, so the bytes read are that version's even
//! if the object is replaced in between.

use object_store::{GetOptions, GetRange, ObjectStore};

use super::ObjectUfs;
use crate::{Result, UfsError, UfsPath, Version};

impl ObjectUfs {
    pub(super) async fn read_version(
        &self,
        path: &UfsPath,
        offset: u64,
        buf: &mut [u8],
        want: &Version,
    ) -> Result<usize> {
        let meta = self
            .head(path)
            .await?
            .ok_or_else(|| UfsError::NotFound(path.to_string()))?;
        want.check(path, &Self::file_status(path.name(), &meta))?;
        let end = offset.saturating_add(buf.len() as u64).min(meta.size);
        if offset >= end {
            return Ok(0);
        }
        let opts = GetOptions {
            if_match: meta.e_tag.clone(),
            // Without an etag, the object's mtime pins the version.
            if_unmodified_since: meta.e_tag.is_none().then_some(meta.last_modified),
            range: Some(GetRange::Bounded(offset..end)),
            ..Default::default()
        };
        let changed = |e: object_store::Error| match e {
            object_store::Error::Precondition { .. } | object_store::Error::NotModified { .. } => {
                UfsError::Changed {
                    path: path.to_string(),
                    reason: "it was replaced while being read".into(),
                }
            }
            object_store::Error::NotFound { .. } => UfsError::NotFound(path.to_string()),
            e => self.err(path, e),
        };
        let got = self
            .store
            .get_opts(&self.key(path), opts)
            .await
            .map_err(changed)?;
        let data = got.bytes().await.map_err(changed)?;
        let n = data.len().min(buf.len());
        buf[..n].copy_from_slice(&data[..n]);
        Ok(n)
    }
}
