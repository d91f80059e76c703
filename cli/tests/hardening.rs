//! Network hardening of the worker: lengths from the wire, requests checked
//! against the master, idle and stalled connections. Real processes on
//! loopback, raw frames from the test.

mod common;

use std::time::Duration;

use common::{Cluster, get, pattern};
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
