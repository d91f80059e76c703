//! Network hardening of the worker and the master (issue 13, items 10-12):
//! lengths from the wire, requests checked against the master, idle and
//! stalled connections. Real processes on loopback, raw frames from the test.

mod common;

use std::time::Duration;

use common::{Cluster, get, pattern, put};
use eddy_client::{EddyCode, pb};
use eddy_wire::{ErrorFrame, Kind, ReadRequest, ReadType, UfsSource, WriteOpen, WriteType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
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
        token: fb.block_token.clone(),
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
    let mut s = common::data_conn(&c.workers[0].addr).await;
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
        token: common::rw_token(dir.path(), eddy_proto::file_id_of_block(b0.block_id)),
    };
    let (k, body) = ask(&mut s, Kind::WriteOpen, &open.encode()).await;
    assert_eq!(error_of(k, &body).code, EddyCode::InvalidArgument);
    // Short-circuit leases: each bad item is refused in its grant; a good
    // one in the same batch is granted.
    let items = [
        ReadRequest {
            block_length: u64::MAX,
            length: u64::MAX,
            ..base.clone()
        },
        ReadRequest {
            offset: u64::MAX,
            length: 2,
            ..base.clone()
        },
        ReadRequest {
            length: b0.length,
            ..base.clone()
        },
    ];
    let sock = dir.path().join("w0.sock");
    let mut u = common::uds_conn(&sock).await;
    eddy_wire::write_frame(&mut u, Kind::Lease, &eddy_wire::encode_lease(&items))
        .await
        .unwrap();
    let body = tokio::time::timeout(ANSWER, eddy_wire::expect(&mut u, Kind::LeaseOk))
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let (_, grants) = eddy_wire::decode_lease_ok(&body).unwrap();
    let codes: Vec<u16> = grants.iter().map(|g| g.code).collect();
    let bad = EddyCode::InvalidArgument as i32 as u16;
    assert_eq!(codes, [bad, bad, 0], "{grants:?}");
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
        token: fa.block_token.clone(),
    };
    let mut s = common::data_conn(&c.workers[0].addr).await;
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
        token: common::rw_token(dir.path(), st.id),
    };
    let mut s = common::data_conn(&c.workers[0].addr).await;
    assert_eq!(
        open_code(&mut s, &open).await,
        Some(EddyCode::FileAlreadyComplete)
    );
    let sock = dir.path().join("w0.sock");
    let mut u = common::uds_conn(&sock).await;
    assert_eq!(
        open_code(&mut u, &open).await,
        Some(EddyCode::FileAlreadyComplete),
        "the short-circuit write path checks too"
    );
    assert_eq!(get(&fs, "/c").await, data);
    assert_eq!(get(&local, "/c").await, data);

    // A second session for a file being written is refused; the first
    // finishes normally. (Its session opens at its first byte.)
    let wdata = pattern(BS as usize + 3, 4);
    let mut w = fs
        .create("/w", &eddy_client::CreateOptions::default())
        .await
        .unwrap();
    w.write(&wdata[..1000]).await.unwrap();
    let ws = fs.master().stat("/w").await.unwrap();
    let open = WriteOpen {
        file_id: ws.id,
        block_size: ws.block_size,
        write_type: WriteType::MustCache,
        target: None,
        token: common::rw_token(dir.path(), ws.id),
    };
    let mut s = common::data_conn(&c.workers[0].addr).await;
    assert_eq!(
        open_code(&mut s, &open).await,
        Some(EddyCode::AlreadyExists)
    );
    let mut u = common::uds_conn(&sock).await;
    assert_eq!(
        open_code(&mut u, &open).await,
        Some(EddyCode::AlreadyExists)
    );
    w.write(&wdata[1000..]).await.unwrap();
    w.close().await.unwrap();
    assert_eq!(get(&local, "/w").await, wdata);

    // The master refuses a written block of a complete file.
    let e = common::worker_client(&c.master.addr, dir.path())
        .await
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

/// Reads until the worker closes `s`, for at most `limit`; returns the
/// bytes and how long it took. Panics if the connection stays open.
async fn until_closed<S: tokio::io::AsyncRead + Unpin>(
    s: &mut S,
    limit: Duration,
) -> (Vec<u8>, Duration) {
    let start = std::time::Instant::now();
    let mut got = Vec::new();
    tokio::time::timeout(limit, async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("the worker closes the connection");
    (got, start.elapsed())
}

/// A `Stats` round trip: the connection was accepted and is served.
async fn served<S>(s: &mut S) -> bool
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    if eddy_wire::write_frame(s, Kind::Stats, &[]).await.is_err() {
        return false;
    }
    matches!(
        tokio::time::timeout(ANSWER, eddy_wire::expect(s, Kind::StatsOk)).await,
        Ok(Ok(Ok(_)))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idle_and_half_sent_connections_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(
        dir.path(),
        1,
        SMALL_BLOCKS,
        "idle_timeout_ms = 600\nframe_timeout_ms = 300",
    );
    let fs = c.fs().await;
    let w = &c.workers[0].addr;
    let mut idle = TcpStream::connect(w).await.unwrap();
    let mut half = TcpStream::connect(w).await.unwrap();
    half.write_all(b"EDDY\x01").await.unwrap();
    let sock = dir.path().join("w0.sock");
    let mut uidle = tokio::net::UnixStream::connect(&sock).await.unwrap();
    let (_, t) = until_closed(&mut idle, Duration::from_secs(10)).await;
    assert!(
        t >= Duration::from_millis(500),
        "closed after the idle timeout, not before ({t:?})"
    );
    until_closed(&mut half, Duration::from_secs(10)).await;
    until_closed(&mut uidle, Duration::from_secs(10)).await;
    // A write session that goes quiet is closed too, on either socket.
    let ws = fs
        .master()
        .create_file("/quiet", &eddy_client::CreateOptions::default())
        .await
        .unwrap();
    let open = WriteOpen {
        file_id: ws.id,
        block_size: ws.block_size,
        write_type: WriteType::MustCache,
        target: None,
        token: common::rw_token(dir.path(), ws.id),
    };
    let mut s = common::data_conn(w).await;
    assert_eq!(open_code(&mut s, &open).await, None);
    until_closed(&mut s, Duration::from_secs(10)).await;
    let mut u = common::uds_conn(&sock).await;
    assert_eq!(open_code(&mut u, &open).await, None, "the slot was freed");
    until_closed(&mut u, Duration::from_secs(10)).await;
    // Busy connections are not affected.
    let data = pattern(BS as usize + 1, 7);
    put(&fs, "/busy", &data, pb::WriteType::MustCache).await;
    assert_eq!(get(&fs, "/busy").await, data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connections_over_the_per_peer_limit_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path(), 1, SMALL_BLOCKS, "max_connections_per_peer = 8");
    let w = &c.workers[0].addr;
    let sock = dir.path().join("w0.sock");
    let mut held = Vec::new();
    for _ in 0..8 {
        let mut s = common::data_conn(w).await;
        assert!(served(&mut s).await);
        held.push(s);
    }
    let mut over = TcpStream::connect(w).await.unwrap();
    let (bytes, _) = until_closed(&mut over, Duration::from_secs(10)).await;
    let h = eddy_wire::Header::decode(bytes[..12].try_into().unwrap()).unwrap();
    let e = error_of(h.kind, &bytes[12..]);
    assert_eq!(e.code, EddyCode::Unavailable, "{e:?}");
    assert!(
        e.message.contains("max_connections_per_peer"),
        "{}",
        e.message
    );
    let mut uheld = Vec::new();
    for _ in 0..8 {
        let mut s = common::uds_conn(&sock).await;
        assert!(served(&mut s).await);
        uheld.push(s);
    }
    let mut uover = tokio::net::UnixStream::connect(&sock).await.unwrap();
    let (bytes, _) = until_closed(&mut uover, Duration::from_secs(10)).await;
    assert_eq!(
        ErrorFrame::decode(&bytes[12..]).unwrap().code,
        EddyCode::Unavailable
    );
    drop(held);
    drop(uheld);
    // Once they are gone, the same peer is served again.
    common::eventually(Duration::from_secs(10), "a slot is free again", || async {
        let mut s = TcpStream::connect(w).await.unwrap();
        let mut u = tokio::net::UnixStream::connect(&sock).await.unwrap();
        common::try_hello(&mut s).await
            && common::try_hello(&mut u).await
            && served(&mut s).await
            && served(&mut u).await
    })
    .await;
    let fs = c.fs().await;
    let data = pattern(3 * BS as usize, 8);
    put(&fs, "/after", &data, pb::WriteType::MustCache).await;
    assert_eq!(get(&fs, "/after").await, data);
    assert_eq!(get(&c.fs_local().await, "/after").await, data);
}

async fn stat_of(fs: &eddy_client::FileSystem, addr: &str, name: &str) -> u64 {
    let s = fs.worker_stats(addr).await.unwrap();
    s.iter().find(|(k, _)| k == name).map_or(0, |(_, v)| *v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stalled_write_sessions_give_their_memory_back() {
    const SESSIONS: usize = 50;
    const MEM: u64 = 16 << 20;
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(
        dir.path(),
        1,
        SMALL_BLOCKS,
        &format!("memory_capacity = {MEM}\nidle_timeout_ms = 3000\nframe_timeout_ms = 2000"),
    );
    let fs = c.fs().await;
    let w = c.workers[0].addr.clone();
    // The files first: creating them (a durable commit each) can take
    // longer than the idle timeout on a loaded machine, and sessions opened
    // early would be closed before the last one reserves.
    let mut files = Vec::new();
    for i in 0..SESSIONS {
        let o = eddy_client::CreateOptions::default();
        files.push(fs.master().create_file(format!("/s{i}"), &o).await.unwrap());
    }
    let mut stalled = Vec::new();
    for st in files {
        let open = WriteOpen {
            file_id: st.id,
            block_size: st.block_size,
            write_type: WriteType::MustCache,
            target: None,
            token: common::rw_token(dir.path(), st.id),
        };
        let mut s = common::data_conn(&w).await;
        assert_eq!(open_code(&mut s, &open).await, None);
        // One byte, then nothing: the session reserves its block and stalls.
        eddy_wire::write_frame(&mut s, Kind::Data, b"x")
            .await
            .unwrap();
        stalled.push(s);
    }
    common::eventually(Duration::from_secs(10), "memory all reserved", || async {
        stat_of(&fs, &w, "memory_reserved").await == MEM
    })
    .await;
    let o = eddy_client::CreateOptions::default();
    let data = pattern(BS as usize, 9);
    let mut fresh = fs.create("/fresh", &o).await.unwrap();
    fresh.write(&data).await.unwrap();
    let e = fresh.close().await.unwrap_err();
    assert_eq!(e.code(), EddyCode::NoSpace, "starved while they stall: {e}");
    for s in &mut stalled {
        until_closed(s, Duration::from_secs(20)).await;
    }
    common::eventually(Duration::from_secs(10), "reservations released", || async {
        stat_of(&fs, &w, "memory_reserved").await == 0
    })
    .await;
    put(&fs, "/fresh", &data, pb::WriteType::MustCache).await;
    assert_eq!(get(&fs, "/fresh").await, data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn servers_raise_their_open_file_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    // Children inherit a low soft limit from this process.
    let mut l = getrlimit(Resource::Nofile);
    let hard = l.maximum;
    l.current = Some(hard.unwrap_or(u64::MAX).min(1024));
    setrlimit(Resource::Nofile, l).unwrap();
    if hard.is_some_and(|h| h <= 1024) {
        eprintln!("the hard open-file limit is 1024 or less here: nothing to raise");
    }
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path(), 1, SMALL_BLOCKS, "");
    let soft_hard = |pid: u32| {
        let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
        let line = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .unwrap()
            .to_string();
        let v: Vec<&str> = line.split_whitespace().collect();
        (v[3].to_string(), v[4].to_string())
    };
    for pid in [c.master.pid(), c.workers[0].pid()] {
        let (soft, hard) = soft_hard(pid);
        assert_eq!(
            soft, hard,
            "process {pid}: soft limit raised to the hard one"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_master_closes_silent_connections_and_limits_peers() {
    let dir = tempfile::tempdir().unwrap();
    let m = common::MasterProc::start(
        dir.path(),
        "handshake_timeout_ms = 3000\nmax_connections_per_peer = 6",
    );
    // A connection that never sends a byte is closed after the handshake
    // timeout.
    let mut silent = TcpStream::connect(&m.addr).await.unwrap();
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(TcpStream::connect(&m.addr).await.unwrap());
    }
    // The seventh from this host is closed at once, long before that.
    let mut over = TcpStream::connect(&m.addr).await.unwrap();
    let (_, t) = until_closed(&mut over, Duration::from_secs(10)).await;
    assert!(t < Duration::from_millis(2500), "refused at once ({t:?})");
    let (_, t) = until_closed(&mut silent, Duration::from_secs(20)).await;
    assert!(
        t >= Duration::from_millis(2000),
        "closed by the handshake timeout ({t:?})"
    );
    drop(held);
    common::eventually(
        Duration::from_secs(20),
        "a client is served again",
        || async {
            match eddy_client::MasterClient::connect(&m.addr).await {
                Ok(c) => c.exists("/").await.is_ok(),
                Err(_) => false,
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clients_survive_the_worker_closing_their_pooled_connections() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path(), 1, SMALL_BLOCKS, "idle_timeout_ms = 300");
    let fs = c.fs().await;
    let data = pattern(2 * BS as usize + 3, 11);
    put(&fs, "/p", &data, pb::WriteType::MustCache).await;
    let before = c.workers[0].fd_count();
    assert_eq!(get(&fs, "/p").await, data);
    // The reads left connections in the client's pool; the worker closes
    // them once idle (its descriptors go).
    common::eventually(
        Duration::from_secs(10),
        "pooled connections closed",
        || async { c.workers[0].fd_count() < before },
    )
    .await;
    // A write session opens on a pooled connection, without retries.
    put(&fs, "/q", &data, pb::WriteType::MustCache).await;
    for _ in 0..3 {
        assert_eq!(get(&fs, "/p").await, data, "read again");
    }
    assert_eq!(get(&fs, "/q").await, data);
}
