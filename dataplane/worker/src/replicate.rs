//! Copies the master asks for (replication bounds): each block is read
//! from a worker that holds it, over the data protocol, or filled from the
//! under-storage, then cached here and committed to the master.

use std::sync::Arc;
use std::time::Duration;

use eddy_client::pb;
use eddy_wire::{Kind, ReadRequest, ReadType, UfsSource, write_frame};
use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, watch};

use crate::cache::fill;
use crate::error::{Result, WorkerError};
use crate::jobs::Job;
use crate::segment::SegmentWriter;
use crate::shared::Shared;
use crate::store::Stats;

/// How long one copy from a peer may take before the next source is tried.
const PEER_TIMEOUT: Duration = Duration::from_secs(30);

/// Works through jobs one at a time until `stop`.
pub async fn run(
    sh: Arc<Shared>,
    mut rx: mpsc::UnboundedReceiver<Job>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let job = tokio::select! {
            b = rx.recv() => match b {
                Some(b) => b,
                None => return,
            },
            _ = stop.changed() => return,
        };
        match job {
            Job::Replicate(batch) => {
                for b in batch {
                    match copy(&sh, &b).await {
                        Ok(()) => Stats::add(&sh.store.stats.replicas_made, 1),
                        // The master asks again (or elsewhere) after its timeout.
                        Err(e) => tracing::warn!("could not copy block {}: {e}", b.block_id),
                    }
                }
            }
            Job::Persist(p) => crate::persist::persist(&sh, p).await,
        }
    }
}

async fn copy(sh: &Shared, b: &pb::ReplicateBlock) -> Result<()> {
    if sh.store.contains(b.block_id) {
        // Already here (a read cached it meanwhile): make sure the master knows.
        return Ok(sh.link.commit(b.block_id, b.length).await?);
    }
    let mut last = WorkerError::NotFound(format!(
        "block {} has no copy to read and no under-storage copy",
        b.block_id
    ));
    for src in &b.sources {
        let addr = addr_of(&src.host, src.data_port);
        match tokio::time::timeout(PEER_TIMEOUT, from_peer(sh, &addr, b)).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => last = e,
            Err(_) => last = WorkerError::NotFound(format!("{addr} took too long")),
        }
    }
    if let Some(u) = &b.ufs {
        let req = ReadRequest {
            block_id: b.block_id,
            offset: 0,
            length: b.length,
            block_length: b.length,
            file_offset: b.file_offset,
            read_type: ReadType::Cache,
            source: Some(UfsSource {
                mount_id: u.mount_id,
                key: u.key.clone(),
            }),
        };
        // The fill commits the block itself.
        sh.store.get_or_fill(b.block_id, || fill(sh, &req)).await?;
        return Ok(());
    }
    Err(last)
}

fn addr_of(host: &str, port: u32) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Reads the whole block from `addr` into a new segment, caches it and
/// commits it.
async fn from_peer(sh: &Shared, addr: &str, b: &pb::ReplicateBlock) -> Result<()> {
    let io = |e: std::io::Error| WorkerError::NotFound(format!("reading from {addr}: {e}"));
    let wire = |e: eddy_wire::WireError| WorkerError::NotFound(format!("reading from {addr}: {e}"));
    let res = sh.store.reserve(b.length).await?;
    let mut w = SegmentWriter::create(&format!("eddy-block-{}", b.block_id), b.length, false)
        .map_err(WorkerError::Memory)?;
    let mut sock = tokio::net::TcpStream::connect(addr).await.map_err(io)?;
    let req = ReadRequest {
        block_id: b.block_id,
        offset: 0,
        length: b.length,
        block_length: b.length,
        file_offset: 0,
        // The peer serves what it holds and caches nothing new.
        read_type: ReadType::NoCache,
        source: None,
    };
    write_frame(&mut sock, Kind::Read, &req.encode())
        .await
        .map_err(wire)?;
    let body = match eddy_wire::expect(&mut sock, Kind::ReadOk)
        .await
        .map_err(wire)?
    {
        Ok(body) => body,
        Err(frame) => {
            return Err(WorkerError::NotFound(format!(
                "{addr} does not have block {}: {}",
                b.block_id, frame.message
            )));
        }
    };
    let n = eddy_wire::decode_u64(Kind::ReadOk, &body).map_err(wire)?;
    if n != b.length {
        return Err(WorkerError::InvalidArgument(format!(
            "{addr} sends {n} bytes of block {}, expected {}",
            b.block_id, b.length
        )));
    }
    sock.read_exact(&mut w.as_mut_slice()[..b.length as usize])
        .await
        .map_err(io)?;
    let seg = w.seal(b.length).map_err(WorkerError::Memory)?;
    sh.store.insert(b.block_id, seg, res, false);
    if let Err(e) = sh.link.commit(b.block_id, b.length).await {
        sh.store.remove(&[b.block_id]);
        return Err(e.into());
    }
    Ok(())
}
