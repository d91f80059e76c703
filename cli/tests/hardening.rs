//! Network hardening of the worker: lengths from the wire, requests checked
//! against the master, idle and stalled connections. Real processes on
//! loopback, raw frames from the test.

mod common;

use std::time::Duration;

use common::{Cluster, get, pattern, put};
use eddy_client::{EddyCode, pb};
use eddy_wire::{ErrorFrame, Kind, ReadRequest, ReadType, UfsSource, WriteOpen, WriteType};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

const BS: u64 = 1 << 20;
const SMALL_BLOCKS: &str = "default_block_size = 1048576";
/// Longest any single answer may take in these tests.
const ANSWER: Duration = Duration::from_secs(20);

/// Sends one request frame and returns the kind and body of the answer.
async fn ask(s: &mut TcpStream, kind: Kind, body: &[u8]) -> (Kind, Vec<u8>) {
    eddy_wire::write_frame(s, kind, body).await.unwrap();
    tokio::time::timeout(ANSWER, async {
        let h = eddy_wire::read_header(s).await.unwrap();
        (h.kind, eddy_wire::read_body(s, h).await.unwrap())
    })
    .await
    .expect("the worker answers")
}

fn error_of(kind: Kind, body: &[u8]) -> ErrorFrame {
    assert_eq!(kind, Kind::Error, "expected an Error frame, got {body:?}");
    ErrorFrame::decode(body).unwrap()
}

/// The file's blocks, under-storage location and id, from the master.
async fn blocks_of(fs: &eddy_client::FileSystem, path: &str) -> pb::GetFileBlocksResponse {
    fs.master().file_blocks(path).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lengths_from_the_wire_are_checked_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path(), 1, SMALL_BLOCKS, "");
    let fs = c.fs().await;
    let data = pattern(BS as usize + 7, 10);
    std::fs::write(c.ufs().join("f"), &data).unwrap();
    let fb = blocks_of(&fs, "/f").await;
    let ufs = fb.ufs.clone().unwrap();
    let b0 = &fb.blocks[0];
    let base = ReadRequest {
        block_id: b0.block_id,
        offset: 0,
        length: 0,
        block_length: b0.length,
        file_offset: 0,
        read_type: ReadType::Cache,
        source: Some(UfsSource {
            mount_id: ufs.mount_id,
            key: ufs.key.clone(),
        }),
    };
    let cases = [
        (
            "a 2^64-1 block",
            Kind::Read,
            ReadRequest {
                block_length: u64::MAX,
                ..base.clone()
            },
        ),
        (
            "a 2^64-1 load",
            Kind::Load,
            ReadRequest {
                block_length: u64::MAX,
                ..base.clone()
            },
        ),
        (
            "a 2^64-1 read length",
            Kind::Read,
            ReadRequest {
                length: u64::MAX,
                block_length: u64::MAX,
                ..base.clone()
            },
        ),
        (
            "offset + length overflows",
            Kind::Read,
            ReadRequest {
                offset: u64::MAX,
                length: 2,
                ..base.clone()
            },
        ),
        (
            "file offset + block length overflows",
            Kind::Load,
            ReadRequest {
                file_offset: u64::MAX - 10,
                ..base.clone()
            },
        ),
        (
            "past the block",
            Kind::Read,
            ReadRequest {
                offset: b0.length - 1,
                length: 2,
                ..base.clone()
            },
        ),
    ];
    let mut s = TcpStream::connect(&c.workers[0].addr).await.unwrap();
    for (what, kind, req) in &cases {
        let (k, body) = ask(&mut s, *kind, &req.encode()).await;
        let e = error_of(k, &body);
        assert_eq!(e.code, EddyCode::InvalidArgument, "{what}: {e:?}");
    }
    // The same connection still serves a normal read, with the right bytes.
    let ok = ReadRequest {
        length: 100,
        offset: 5,
        ..base.clone()
    };
    let (k, body) = ask(&mut s, Kind::Read, &ok.encode()).await;
    assert_eq!(k, Kind::ReadOk, "{:?}", ErrorFrame::decode(&body));
    let mut got = vec![0u8; 100];
    s.read_exact(&mut got).await.unwrap();
    assert_eq!(got, &data[5..105]);
    // A write session with an absurd block size is refused the same way.
    let open = WriteOpen {
        file_id: eddy_proto::file_id_of_block(b0.block_id),
        block_size: u64::MAX,
        write_type: WriteType::MustCache,
        target: None,
    };
    let (k, body) = ask(&mut s, Kind::WriteOpen, &open.encode()).await;
    assert_eq!(error_of(k, &body).code, EddyCode::InvalidArgument);
    assert_eq!(get(&fs, "/f").await, data, "the worker is still up");
}

/// Writes `open` on a fresh connection (TCP or the worker's Unix socket)
/// and returns the answer's error code, or None for `Ok`.
async fn open_code<S>(s: &mut S, open: &WriteOpen) -> Option<EddyCode>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    eddy_wire::write_frame(s, Kind::WriteOpen, &open.encode())
        .await
        .unwrap();
    let r = tokio::time::timeout(ANSWER, eddy_wire::expect(s, Kind::Ok))
        .await
        .expect("the worker answers")
        .unwrap();
    r.err().map(|e| e.code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_are_checked_against_the_master_before_anything_is_cached() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path(), 1, SMALL_BLOCKS, "");
    let fs = c.fs().await;
    let local = c.fs_local().await;
    let (a, b) = (pattern(5000, 1), pattern(5000, 2));
    std::fs::write(c.ufs().join("a"), &a).unwrap();
    std::fs::write(c.ufs().join("b"), &b).unwrap();
    let fa = blocks_of(&fs, "/a").await;
    let fb = blocks_of(&fs, "/b").await;
    let ub = fb.ufs.clone().unwrap();
    // Attack 1: /a's block filled from /b's key.
    let poison = ReadRequest {
        block_id: fa.blocks[0].block_id,
        offset: 0,
        length: 0,
        block_length: 5000,
        file_offset: 0,
        read_type: ReadType::Cache,
        source: Some(UfsSource {
            mount_id: ub.mount_id,
            key: ub.key.clone(),
        }),
    };
    let mut s = TcpStream::connect(&c.workers[0].addr).await.unwrap();
    for kind in [Kind::Load, Kind::Read] {
        let (k, body) = ask(&mut s, kind, &poison.encode()).await;
        let e = error_of(k, &body);
        assert_eq!(e.code, EddyCode::InvalidArgument, "{kind:?}: {e:?}");
        assert!(e.message.contains("lives at"), "{}", e.message);
    }
    // A wrong block length for the right key is refused the same way.
    let short = ReadRequest {
        block_length: 100,
        source: fa.ufs.clone().map(|u| UfsSource {
            mount_id: u.mount_id,
            key: u.key,
        }),
        ..poison.clone()
    };
    let (k, body) = ask(&mut s, Kind::Load, &short.encode()).await;
    assert_eq!(error_of(k, &body).code, EddyCode::InvalidArgument);
    assert_eq!(get(&fs, "/a").await, a, "TCP readers get /a's bytes");
    assert_eq!(get(&local, "/a").await, a, "short-circuit readers too");
    assert_eq!(get(&local, "/b").await, b);
    assert!(
        c.stat_sum(&fs, "leases_granted").await > 0,
        "mapped reads ran"
    );

    // Attack 2: a write session over a complete (and cached) file.
    let data = pattern(3000, 3);
    let st = put(&fs, "/c", &data, pb::WriteType::CacheThrough).await;
    let open = WriteOpen {
        file_id: st.id,
        block_size: st.block_size,
        write_type: WriteType::MustCache,
        target: None,
    };
    let mut s = TcpStream::connect(&c.workers[0].addr).await.unwrap();
    assert_eq!(
        open_code(&mut s, &open).await,
        Some(EddyCode::FileAlreadyComplete)
    );
    let sock = dir.path().join("w0.sock");
    let mut u = tokio::net::UnixStream::connect(&sock).await.unwrap();
    assert_eq!(
        open_code(&mut u, &open).await,
        Some(EddyCode::FileAlreadyComplete),
        "the short-circuit write path checks too"
    );
    assert_eq!(get(&fs, "/c").await, data);
    assert_eq!(get(&local, "/c").await, data);

    // A second session for a file being written is refused; the first
    // finishes normally.
    let mut w = fs
        .create("/w", &eddy_client::CreateOptions::default())
        .await
        .unwrap();
    let ws = fs.master().stat("/w").await.unwrap();
    let open = WriteOpen {
        file_id: ws.id,
        block_size: ws.block_size,
        write_type: WriteType::MustCache,
        target: None,
    };
    let mut s = TcpStream::connect(&c.workers[0].addr).await.unwrap();
    assert_eq!(
        open_code(&mut s, &open).await,
        Some(EddyCode::AlreadyExists)
    );
    let mut u = tokio::net::UnixStream::connect(&sock).await.unwrap();
    assert_eq!(
        open_code(&mut u, &open).await,
        Some(EddyCode::AlreadyExists)
    );
    let wdata = pattern(BS as usize + 3, 4);
    w.write(&wdata).await.unwrap();
    w.close().await.unwrap();
    assert_eq!(get(&local, "/w").await, wdata);

    // The master refuses a written block of a complete file.
    let e = fs
        .master()
        .block_service()
        .commit_block(pb::CommitBlockRequest {
            worker_id: 0,
            block_id: eddy_proto::block_id(st.id, 0),
            length: 3000,
            tier: "MEM".into(),
            written: true,
        })
        .await
        .unwrap_err();
    assert_eq!(
        eddy_proto::RpcError::from(e).code,
        EddyCode::FileAlreadyComplete
    );
}
