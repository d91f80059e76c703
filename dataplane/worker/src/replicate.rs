//! Copies the master asks for (replication bounds): each block is read
//! from a worker that holds it, over the data protocol, or filled from the
//! under-storage, then cached here and committed to the master.

use std::sync::Arc;
use std::time::Duration;

use eddy_client::pb;
use eddy_wire::{ReadRequest, ReadType, UfsSource, WireError, host_port};
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
    copy_within(sh, b, PEER_TIMEOUT).await
}

/// [`copy`], giving each peer `peer_limit` to send the block.
async fn copy_within(sh: &Shared, b: &pb::ReplicateBlock, peer_limit: Duration) -> Result<()> {
    if sh.store.contains(b.block_id) {
        // Already here (a read cached it meanwhile): make sure the master knows.
        return Ok(sh.link.commit(b.block_id, b.length).await?);
    }
    let mut last = WorkerError::NotFound(format!(
        "block {} has no copy to read and no under-storage copy",
        b.block_id
    ));
    for src in &b.sources {
        let addr = host_port(&src.host, src.data_port);
        match tokio::time::timeout(peer_limit, from_peer(sh, &addr, b)).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => last = e,
            Err(_) => last = peer_timeout(&addr, b.block_id, peer_limit),
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
            token: Vec::new(),
        };
        // The fill commits the block itself.
        sh.store.get_or_fill(b.block_id, || fill(sh, &req)).await?;
        return Ok(());
    }
    Err(last)
}

/// How long the READ token a worker signs for a copy from a peer lasts:
/// one copy's time, with room.
const SELF_GRANT_TTL_MS: u64 = 10 * 60 * 1000;

/// A peer that did not send a block within `after`.
fn peer_timeout(addr: &str, block_id: u64, after: Duration) -> WorkerError {
    WorkerError::PeerTimeout {
        peer: addr.to_string(),
        block_id,
        after,
    }
}

/// Reads the whole block from `addr` into a new segment, caches it and
/// commits it.
async fn from_peer(sh: &Shared, addr: &str, b: &pb::ReplicateBlock) -> Result<()> {
    // Whatever went wrong on the wire (a lost connection, a frame that makes
    // no sense, a `ReadOk` of another length), the wire error says it.
    let wire = |e: WireError| WorkerError::NotFound(format!("reading from {addr}: {e}"));
    let res = sh.store.reserve(b.length).await?;
    let mut w = SegmentWriter::create(&format!("eddy-block-{}", b.block_id), b.length, false)
        .map_err(WorkerError::Memory)?;
    let mut sock = eddy_client::dial_data(addr, sh.tls.dial.as_ref())
        .await
        .map_err(|e| WorkerError::NotFound(format!("reading from {addr}: {e}")))?;
    // A peer checks this worker as any client: the handshake, then a READ
    // token, which this worker signs itself with the block keys it holds.
    match eddy_wire::hello(&mut sock, crate::access::WORKER_USER).await {
        Ok(Ok(())) => {}
        Ok(Err(frame)) => {
            return Err(WorkerError::NotFound(format!(
                "{addr} refused the handshake: {}",
                frame.message
            )));
        }
        Err(e) => return Err(wire(e)),
    }
    let token = sh
        .link
        .keys
        .self_grant(eddy_proto::file_id_of_block(b.block_id), SELF_GRANT_TTL_MS);
    let req = ReadRequest {
        block_id: b.block_id,
        offset: 0,
        length: b.length,
        block_length: b.length,
        file_offset: 0,
        // The peer serves what it holds and caches nothing new.
        read_type: ReadType::NoCache,
        source: None,
        token,
    };
    let dst = &mut w.as_mut_slice()[..b.length as usize];
    match eddy_wire::read_block(&mut sock, &req, dst).await {
        Ok(Ok(())) => {}
        Ok(Err(frame)) => {
            return Err(WorkerError::NotFound(format!(
                "{addr} does not have block {}: {}",
                b.block_id, frame.message
            )));
        }
        Err(e) => return Err(wire(e)),
    }
    let seg = w
        .seal_with(b.length, sh.store.seal_mode())
        .map_err(WorkerError::Memory)?;
    sh.store.insert(b.block_id, seg, res, false);
    if let Err(e) = sh.link.commit(b.block_id, b.length).await {
        sh.store.remove(&[b.block_id]);
        return Err(e.into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use eddy_proto::EddyCode;
    use eddy_wire::Kind;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    use super::*;

    /// A peer on loopback that reads one request, then answers with
    /// `answer` (the bytes of a block) or, given none, never.
    async fn peer(answer: Option<Vec<u8>>) -> (u32, tokio::task::JoinHandle<()>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = u32::from(l.local_addr().unwrap().port());
        let task = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            // The handshake first, as every peer sends it.
            let h = eddy_wire::read_header(&mut s).await.unwrap();
            assert_eq!(h.kind, Kind::Hello);
            let hello = eddy_wire::read_body(&mut s, h).await.unwrap();
            let hello = eddy_wire::Hello::decode(&hello).unwrap();
            assert_eq!(hello.user, crate::access::WORKER_USER);
            eddy_wire::write_frame(&mut s, Kind::Ok, &eddy_wire::u64_body(1))
                .await
                .unwrap();
            let h = eddy_wire::read_header(&mut s).await.unwrap();
            let body = eddy_wire::read_body(&mut s, h).await.unwrap();
            let req = ReadRequest::decode(Kind::Read, &body).unwrap();
            assert_eq!(
                req.read_type,
                ReadType::NoCache,
                "a copy caches nothing new there"
            );
            let Some(bytes) = answer else {
                std::future::pending::<()>().await;
                return;
            };
            let n = eddy_wire::u64_body(bytes.len() as u64);
            eddy_wire::write_frame(&mut s, Kind::ReadOk, &n)
                .await
                .unwrap();
            s.write_all(&bytes).await.unwrap();
        });
        (port, task)
    }

    fn block_from(port: u32, length: u64) -> pb::ReplicateBlock {
        pb::ReplicateBlock {
            block_id: eddy_proto::block_id(3, 0),
            length,
            sources: vec![pb::WorkerAddress {
                host: "127.0.0.1".into(),
                data_port: port,
                ..Default::default()
            }],
            ufs: None,
            file_offset: 0,
        }
    }

    #[tokio::test]
    async fn a_block_is_copied_from_a_peer_that_holds_it() {
        let sh = crate::session::tests::shared(1 << 20);
        let (port, task) = peer(Some(b"eightbyt".to_vec())).await;
        let b = block_from(port, 8);
        copy_within(&sh, &b, Duration::from_secs(5)).await.unwrap();
        let Some(crate::store::Block::Mem(seg)) = sh.store.get(b.block_id) else {
            panic!("block {} is not cached in memory here", b.block_id);
        };
        assert_eq!(seg.as_slice(), b"eightbyt");
        task.await.unwrap();
    }

    #[tokio::test]
    async fn a_peer_announcing_another_length_is_refused_naming_it() {
        let sh = crate::session::tests::shared(1 << 20);
        // Not awaited: the copy hangs up after the announced length, so the
        // peer's write of the bytes may or may not find it still there.
        let (port, _task) = peer(Some(b"ninebytes".to_vec())).await;
        let b = block_from(port, 8);
        let e = copy_within(&sh, &b, Duration::from_secs(5))
            .await
            .unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains(&format!("127.0.0.1:{port}")) && text.contains("sends 9"),
            "{text}"
        );
        assert!(!sh.store.contains(b.block_id));
    }

    #[tokio::test]
    async fn a_peer_that_stops_sending_is_deadline_exceeded_naming_it() {
        let sh = crate::session::tests::shared(1 << 20);
        let (port, _task) = peer(None).await;
        let b = block_from(port, 8);
        let e = copy_within(&sh, &b, Duration::from_millis(200))
            .await
            .unwrap_err();
        assert_eq!(e.code(), EddyCode::DeadlineExceeded, "{e}");
        let text = e.to_string();
        assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
        assert!(!sh.store.contains(b.block_id));
    }
}
