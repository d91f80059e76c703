//! Persisting a file the workers hold to the under-storage, when the master
//! asks (ASYNC_THROUGH writes, `eddy fs persist`): the blocks are streamed
//! in order from whichever tier holds them into one under-storage write,
//! and the master hears how it went. A failure is reported too; the master
//! retries with backoff.

use eddy_client::pb;

use crate::cache::ufs_key;
use crate::disk::RangeReader;
use crate::error::{Result, WorkerError};
use crate::shared::Shared;
use crate::store::Block;

pub async fn persist(sh: &Shared, p: pb::PersistFile) {
    let ufs = p.ufs.clone().unwrap_or_default();
    let (fingerprint, error) = match write(sh, &p, &ufs).await {
        Ok(fp) => (fp, String::new()),
        Err(e) => {
            tracing::warn!("persisting file {} to {} failed: {e}", p.file_id, ufs.key);
            (String::new(), e.to_string())
        }
    };
    let ok = error.is_empty();
    let counter = if ok {
        &sh.store.stats.persists
    } else {
        &sh.store.stats.persist_failures
    };
    crate::store::Stats::add(counter, 1);
    match sh
        .link
        .file_persisted(p.file_id, ufs, fingerprint, p.length, error)
        .await
    {
        Ok(()) if ok => {
            let ids: Vec<u64> = p.blocks.iter().map(|b| b.block_id).collect();
            sh.store.release_sole(&ids);
        }
        Ok(()) => {}
        // The master asks again after its timeout.
        Err(e) => tracing::warn!("could not report the persist of file {}: {e}", p.file_id),
    }
}

async fn write(sh: &Shared, p: &pb::PersistFile, loc: &pb::UfsLocation) -> Result<String> {
    let ufs = sh.link.ufs(loc.mount_id).await?;
    let key = ufs_key(&loc.key)?;
    let mut w = ufs.create(&key).await?;
    match copy_blocks(sh, p, w.as_mut()).await {
        Ok(()) => Ok(w.complete().await?.fingerprint),
        Err(e) => {
            w.abort().await;
            Err(e)
        }
    }
}

async fn copy_blocks(
    sh: &Shared,
    p: &pb::PersistFile,
    w: &mut dyn eddy_ufs::UfsWriter,
) -> Result<()> {
    for b in &p.blocks {
        let block = sh.store.get(b.block_id).ok_or_else(|| {
            WorkerError::NotFound(format!(
                "block {} of file {} is not on this worker",
                b.block_id, p.file_id
            ))
        })?;
        if block.len() != b.length {
            return Err(WorkerError::InvalidArgument(format!(
                "block {} is {} bytes here, the master says {}",
                b.block_id,
                block.len(),
                b.length
            )));
        }
        match &block {
            Block::Mem(seg) => w.write(seg.as_slice()).await?,
            Block::Disk(d) => {
                let mut r = RangeReader::new(sh.store.engine(), d, 0, d.len)
                    .map_err(WorkerError::Memory)?;
                while let Some(piece) = r.next().await {
                    let (buf, range) = piece.map_err(WorkerError::Memory)?;
                    w.write(&buf.as_slice()[range]).await?;
                    r.recycle(buf);
                }
            }
        }
    }
    Ok(())
}
