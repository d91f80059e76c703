//! Block access tokens and the data-plane handshake (issue 16): real
//! processes on loopback, raw frames from the test. Block ids are small
//! sequential numbers, so nothing may be readable by knowing one: every
//! request needs the token the master hands out with the file's blocks.

mod common;

use std::time::Duration;

use common::{Cluster, data_conn, get, mint_block_token, pattern, put, uds_conn, unix_ms_in};
use eddy_client::{EddyCode, pb};
use eddy_proto::auth::{BlockGrant, BlockOps, Keyring};
use eddy_wire::{ErrorFrame, Kind, ReadRequest, ReadType, WriteOpen, WriteType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BS: u64 = 1 << 20;
const SMALL_BLOCKS: &str = "default_block_size = 1048576";
const ANSWER: Duration = Duration::from_secs(20);

async fn ask<S>(s: &mut S, kind: Kind, body: &[u8]) -> (Kind, Vec<u8>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    eddy_wire::write_frame(s, kind, body).await.unwrap();
    tokio::time::timeout(ANSWER, async {
        let h = eddy_wire::read_header(s).await.unwrap();
        (h.kind, eddy_wire::read_body(s, h).await.unwrap())
    })
    .await
    .expect("the worker answers")
}

fn refusal(kind: Kind, body: &[u8]) -> ErrorFrame {
    assert_eq!(kind, Kind::Error, "expected a refusal, got {kind:?}");
    ErrorFrame::decode(body).unwrap()
}

/// The worker's `access_denied` counter, from its metrics endpoint.
fn denied_metric(c: &Cluster) -> f64 {
    common::scrape(&c.workers[0].metrics)
        .lines()
        .find(|l| l.starts_with("eddy_worker_access_denied_total{"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

fn read_of(block: &pb::FileBlock, token: Vec<u8>) -> ReadRequest {
    ReadRequest {
        block_id: block.block_id,
        offset: 0,
        length: block.length,
        block_length: block.length,
        file_offset: block.offset,
        read_type: ReadType::Cache,
        source: None,
        token,
    }
}

/// A key with the id of the block key the master signs with now, and
/// another secret: a forged token passes the key lookup and fails on the
/// signature.
fn forger_keys(key_file: &std::path::Path) -> Keyring {
    let real = common::block_keys_now(&Keyring::load(key_file).unwrap(), &Default::default());
    Keyring::from_secrets(&[(real.signing_id(), [7u8; 32])]).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn data_requests_without_the_right_token_are_refused_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path(), 1, SMALL_BLOCKS, "");
    let fs = c.fs().await;
    let (a, b) = (pattern(BS as usize + 10, 1), pattern(3000, 2));
    put(&fs, "/a", &a, pb::WriteType::MustCache).await;
    put(&fs, "/b", &b, pb::WriteType::MustCache).await;
    let fa = fs.master().file_blocks("/a").await.unwrap();
    let fb = fs.master().file_blocks("/b").await.unwrap();
    let a_id = fa.status.as_ref().unwrap().id;
    let a0 = &fa.blocks[0];
    assert!(!fa.block_token.is_empty(), "the master hands out a token");
    let me = eddy_client::Credentials::current_user().user;
    let key = dir.path().join("master.key");
    let expired = mint_block_token(&key, a_id, BlockOps::READ, &me, unix_ms_in(0) - 1000);
    let forged = BlockGrant {
        file_id: a_id,
        ops: BlockOps::READ_WRITE,
        user: me.clone(),
        expires_ms: unix_ms_in(3_600_000),
    }
    .sign(&forger_keys(&key))
    .unwrap();
    let cases: [(&str, Vec<u8>, &str); 5] = [
        ("no token", Vec::new(), "no block token"),
        ("another file's token", fb.block_token.clone(), "for file"),
        ("an expired token", expired.clone(), "expired"),
        (
            "a token signed with another key",
            forged.clone(),
            "signature",
        ),
        ("garbage", vec![1; 40], "refused"),
    ];
    let mut s = data_conn(&c.workers[0].addr).await;
    for (what, token, says) in &cases {
        for kind in [Kind::Read, Kind::Load] {
            let (k, body) = ask(&mut s, kind, &read_of(a0, token.clone()).encode()).await;
            let e = refusal(k, &body);
            assert_eq!(
                e.code,
                EddyCode::PermissionDenied,
                "{what} ({kind:?}): {e:?}"
            );
            assert!(e.message.contains(says), "{what}: {}", e.message);
        }
    }
    // Guessing: the first blocks of the first files, no token.
    for file in 1..=8u64 {
        let guess = ReadRequest {
            block_id: eddy_proto::block_id(file, 0),
            length: 1,
            block_length: 1,
            ..read_of(a0, Vec::new())
        };
        let (k, body) = ask(&mut s, Kind::Read, &guess.encode()).await;
        assert_eq!(refusal(k, &body).code, EddyCode::PermissionDenied);
    }
    // A read token does not open a write session.
    let open = WriteOpen {
        file_id: a_id,
        block_size: BS,
        write_type: WriteType::MustCache,
        target: None,
        token: fa.block_token.clone(),
    };
    let (k, body) = ask(&mut s, Kind::WriteOpen, &open.encode()).await;
    let e = refusal(k, &body);
    assert_eq!(e.code, EddyCode::PermissionDenied, "{e:?}");
    assert!(e.message.contains("does not allow write"), "{}", e.message);
    // The same connection, with the file's own token, reads the bytes.
    let (k, body) = ask(
        &mut s,
        Kind::Read,
        &read_of(a0, fa.block_token.clone()).encode(),
    )
    .await;
    assert_eq!(k, Kind::ReadOk, "{:?}", ErrorFrame::decode(&body));
    let mut got = vec![0u8; a0.length as usize];
    s.read_exact(&mut got).await.unwrap();
    assert_eq!(got, a[..BS as usize]);
    let tcp_refusals = (cases.len() * 2 + 8 + 1) as f64;
    assert_eq!(denied_metric(&c), tcp_refusals, "every refusal counted");

    // Short-circuit leases: the same rules, per item.
    let mut u = uds_conn(dir.path().join("w0.sock")).await;
    let items: Vec<ReadRequest> = [Vec::new(), fb.block_token.clone(), expired, forged]
        .into_iter()
        .chain([fa.block_token.clone()])
        .map(|t| read_of(a0, t))
        .collect();
    let (k, body) = ask(&mut u, Kind::Lease, &eddy_wire::encode_lease(&items)).await;
    assert_eq!(k, Kind::LeaseOk, "{:?}", ErrorFrame::decode(&body));
    let (_, grants) = eddy_wire::decode_lease_ok(&body).unwrap();
    let codes: Vec<u16> = grants.iter().map(|g| g.code).collect();
    let pd = EddyCode::PermissionDenied as i32 as u16;
    assert_eq!(codes, [pd, pd, pd, pd, 0], "{grants:?}");
    assert_eq!(denied_metric(&c), tcp_refusals + 4.0);
    // A short-circuit write needs a write token too.
    let (k, body) = ask(&mut u, Kind::WriteOpen, &open.encode()).await;
    assert_eq!(refusal(k, &body).code, EddyCode::PermissionDenied);
    // Normal clients are unaffected, over TCP and shared memory.
    assert_eq!(get(&fs, "/a").await, a);
    assert_eq!(get(&c.fs_local().await, "/b").await, b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_whose_token_expired_gets_a_fresh_one_and_reads_on() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(
        dir.path(),
        1,
        &format!("{SMALL_BLOCKS}\n[security]\nblock_token_ttl_ms = 300"),
        "",
    );
    let opts = eddy_client::ClientOptions {
        short_circuit: false,
        // Long enough that the second open reuses the metadata, and with
        // it the token, after the token expired.
        metadata_ttl: Duration::from_secs(60),
        ..Default::default()
    };
    let fs = eddy_client::FileSystem::connect_with(&c.master.addr, opts)
        .await
        .unwrap();
    let data = pattern(2 * BS as usize, 3);
    put(&fs, "/f", &data, pb::WriteType::MustCache).await;
    assert_eq!(get(&fs, "/f").await, data);
    // No signal says "expired": the token's life is wall-clock time.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(get(&fs, "/f").await, data, "read on with a fresh token");
    assert!(
        denied_metric(&c) >= 1.0,
        "the stale token was refused first"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_unix_socket_knows_who_its_peer_is() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path(), 1, SMALL_BLOCKS, "");
    let fs = c.fs().await;
    let data = pattern(3000, 4);
    put(&fs, "/f", &data, pb::WriteType::MustCache).await;
    let uid = rustix::process::geteuid().as_raw();
    let mut u = tokio::net::UnixStream::connect(dir.path().join("w0.sock"))
        .await
        .unwrap();
    let claim = eddy_wire::hello(&mut u, "not-me").await.unwrap();
    let e = claim.expect_err("another user's name is refused");
    assert_eq!(e.code, EddyCode::PermissionDenied);
    assert!(e.message.contains(&format!("uid {uid}")), "{}", e.message);
    // A token issued to someone else does not lease on the socket in
    // simple mode (the master took that name on trust).
    let fb = fs.master().file_blocks("/f").await.unwrap();
    let theirs = mint_block_token(
        &dir.path().join("master.key"),
        fb.status.as_ref().unwrap().id,
        BlockOps::READ,
        "somebody-else",
        unix_ms_in(60_000),
    );
    let mut u = uds_conn(dir.path().join("w0.sock")).await;
    let items = [read_of(&fb.blocks[0], theirs)];
    let (_, body) = ask(&mut u, Kind::Lease, &eddy_wire::encode_lease(&items)).await;
    let (_, grants) = eddy_wire::decode_lease_ok(&body).unwrap();
    assert_eq!(grants[0].code, EddyCode::PermissionDenied as i32 as u16);
    assert!(grants[0].message.contains("identifies"), "{grants:?}");
    assert_eq!(get(&c.fs_local().await, "/f").await, data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_handshakes_get_an_error_frame_and_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path(), 1, SMALL_BLOCKS, "");
    let fs = c.fs().await;
    let data = pattern(3000, 5);
    put(&fs, "/ok", &data, pb::WriteType::MustCache).await;
    let hello = |version: u16, user: &str| {
        let body = eddy_wire::Hello {
            version,
            user: user.into(),
        }
        .encode();
        let mut f = eddy_wire::Header {
            kind: Kind::Hello,
            body_len: body.len() as u32,
        }
        .encode()
        .to_vec();
        f.extend_from_slice(&body);
        f
    };
    let mut truncated = hello(1, "alice");
    truncated.truncate(truncated.len() - 2);
    let stats_first = eddy_wire::Header {
        kind: Kind::Stats,
        body_len: 0,
    }
    .encode()
    .to_vec();
    // Each case is read whole by the worker before it answers (garbage of
    // one header's length): unread bytes would make its close a reset,
    // which may discard the answer before the test reads it.
    let cases: [(&str, Vec<u8>, EddyCode); 5] = [
        (
            "a request before the handshake",
            stats_first,
            EddyCode::Protocol,
        ),
        ("protocol version 0", hello(0, "alice"), EddyCode::Protocol),
        (
            "a 300-byte user",
            hello(1, &"u".repeat(300)),
            EddyCode::Protocol,
        ),
        ("a truncated hello", truncated, EddyCode::Protocol),
        ("garbage", b"GET / HTTP/1".to_vec(), EddyCode::Protocol),
    ];
    for (what, bytes, code) in cases {
        for unix in [false, true] {
            let mut out = Vec::new();
            if unix {
                let mut u = tokio::net::UnixStream::connect(dir.path().join("w0.sock"))
                    .await
                    .unwrap();
                u.write_all(&bytes).await.unwrap();
                u.shutdown().await.unwrap();
                tokio::time::timeout(ANSWER, u.read_to_end(&mut out))
                    .await
                    .unwrap_or_else(|_| panic!("{what}: left open"))
                    .unwrap();
            } else {
                let mut s = TcpStream::connect(&c.workers[0].addr).await.unwrap();
                s.write_all(&bytes).await.unwrap();
                s.shutdown().await.unwrap();
                tokio::time::timeout(ANSWER, s.read_to_end(&mut out))
                    .await
                    .unwrap_or_else(|_| panic!("{what}: left open"))
                    .unwrap();
            }
            assert!(
                out.len() >= 12,
                "{what} (unix {unix}): an error frame, got {out:?}"
            );
            let h = eddy_wire::Header::decode(out[..12].try_into().unwrap()).unwrap();
            let e = refusal(h.kind, &out[12..12 + h.body_len as usize]);
            assert_eq!(e.code, code, "{what} (unix {unix}): {e:?}");
            assert_eq!(get(&fs, "/ok").await, data, "{what}: others still served");
        }
    }
}

/// Block keys roll ("distributed at registration, rotated"): workers get
/// the keys in force with every heartbeat and drop a key once no token it
/// signed can still be valid, so even a token forged with it to live
/// forever stops working, while clients read on with tokens of new keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn block_keys_roll_and_an_old_key_stops_opening_blocks() {
    const UPDATE_MS: u64 = 1000;
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(
        dir.path(),
        1,
        &format!(
            "{SMALL_BLOCKS}\nworker_heartbeat_interval_ms = 100\n[security]\n\
             block_key_update_ms = {UPDATE_MS}\nblock_token_ttl_ms = {UPDATE_MS}"
        ),
        "",
    );
    let fs = c.fs().await;
    let data = pattern(BS as usize + 10, 4);
    put(&fs, "/f", &data, pb::WriteType::MustCache).await;
    let fb = fs.master().file_blocks("/f").await.unwrap();
    let id = fb.status.as_ref().unwrap().id;
    let keys = Keyring::load(&dir.path().join("master.key")).unwrap();
    let sched = eddy_proto::auth::BlockKeySchedule::new(UPDATE_MS, UPDATE_MS).unwrap();
    let e0 = sched.epoch(unix_ms_in(0));
    let forever = BlockGrant {
        file_id: id,
        ops: BlockOps::READ,
        user: eddy_client::Credentials::current_user().user,
        expires_ms: u64::MAX,
    }
    .sign(&sched.keys(&keys, e0))
    .unwrap();
    // Each try on a new connection: a connection keeps what it verified.
    let try_read = |token: Vec<u8>| {
        let addr = c.workers[0].addr.clone();
        let block = fb.blocks[0].clone();
        async move {
            let mut s = data_conn(&addr).await;
            let (k, body) = ask(&mut s, Kind::Read, &read_of(&block, token).encode()).await;
            match k {
                Kind::ReadOk => Ok(()),
                _ => Err(refusal(k, &body)),
            }
        }
    };
    try_read(forever.clone())
        .await
        .expect("the key of this epoch opens the block");
    // A connection that verified the token before the key rolled out.
    let mut held = data_conn(&c.workers[0].addr).await;
    let block0 = fb.blocks[0].clone();
    let (k, body) = ask(
        &mut held,
        Kind::Read,
        &read_of(&block0, forever.clone()).encode(),
    )
    .await;
    assert_eq!(k, Kind::ReadOk, "{:?}", ErrorFrame::decode(&body));
    let mut sink = vec![0u8; block0.length as usize];
    held.read_exact(&mut sink).await.unwrap();
    // No signal says "the epoch is over": keys roll on wall-clock time.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let refused = loop {
        match try_read(forever.clone()).await {
            Ok(()) => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "epoch {e0}'s key still opens blocks at epoch {}",
                    sched.epoch(unix_ms_in(0))
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => break e,
        }
    };
    assert_eq!(refused.code, EddyCode::PermissionDenied, "{refused:?}");
    assert!(
        refused.message.contains("block keys roll"),
        "{}",
        refused.message
    );
    assert!(
        sched.epoch(unix_ms_in(0)) >= e0 + 2,
        "a key is held for the token lifetime after its epoch"
    );
    // What that connection verified is not trusted past the key either.
    let (k, body) = ask(
        &mut held,
        Kind::Read,
        &read_of(&block0, forever.clone()).encode(),
    )
    .await;
    let e = refusal(k, &body);
    assert!(e.message.contains("block keys roll"), "{}", e.message);
    // Clients read on: new metadata, a token of the new keys.
    let fresh = fs.master().file_blocks("/f").await.unwrap();
    try_read(fresh.block_token.clone())
        .await
        .expect("the new keys open the block");
    assert_eq!(get(&fs, "/f").await, data);
    assert_eq!(get(&c.fs().await, "/f").await, data);
}

/// The master after SIGKILL, started again on its address with `extra`
/// (its workers stay and register again).
fn restart_master(c: Cluster, extra: &str) -> Cluster {
    let Cluster {
        master,
        workers,
        dir,
    } = c;
    let addr = master.addr.clone();
    master.kill9();
    let master = common::MasterProc::start_bound(&dir, &addr, extra);
    Cluster {
        master,
        workers,
        dir,
    }
}

/// Key file rotation, as docs/SECURITY.md tells it: a new key line first
/// and a restart; tokens of the old key stay good until its line goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rotated_key_file_signs_with_the_new_key_and_honours_the_old() {
    use eddy_proto::auth::{Credential, Principal};
    let dir = tempfile::tempdir().unwrap();
    let extra = format!("{SMALL_BLOCKS}\n[security]\nauthentication = \"token\"");
    let c = Cluster::start(dir.path(), 1, &extra, "");
    let key_file = dir.path().join("master.key");
    let me = eddy_client::Credentials::current_user().user;
    let token_of = |keys: &Keyring| {
        Credential::sign(keys, Principal::User, &me, unix_ms_in(0), 3_600_000).unwrap()
    };
    let client = |addr: String, token: String| {
        let user = me.clone();
        async move {
            let opts = eddy_client::ClientOptions {
                short_circuit: false,
                credentials: eddy_client::Credentials {
                    user,
                    token: Some(token),
                },
                ..Default::default()
            };
            eddy_client::FileSystem::connect_with(&addr, opts)
                .await
                .unwrap()
        }
    };
    let old_keys = Keyring::load(&key_file).unwrap();
    let old_token = token_of(&old_keys);
    let data = pattern(BS as usize + 10, 5);
    let fs = client(c.master.addr.clone(), old_token.clone()).await;
    put(&fs, "/f", &data, pb::WriteType::MustCache).await;

    let mut pairs = vec![(old_keys.signing_id().wrapping_add(1), [0x5a; 32])];
    pairs.extend(old_keys.secrets());
    let rotated = Keyring::from_secrets(&pairs).unwrap();
    // Rewriting the file in place keeps its mode (0600).
    std::fs::write(&key_file, rotated.to_file_text()).unwrap();
    let c = restart_master(c, &extra);
    // The old token still opens the file, whose block token is now signed
    // with the new key's block keys, which the worker got by registering.
    let fs = client(c.master.addr.clone(), old_token.clone()).await;
    assert_eq!(get(&fs, "/f").await, data);
    let fb = fs.master().file_blocks("/f").await.unwrap();
    let signed_by = u32::from_be_bytes(fb.block_token[1..5].try_into().unwrap());
    let new_blocks = common::block_keys_now(&rotated, &Default::default());
    assert_eq!(signed_by, new_blocks.signing_id(), "the new key signs");
    let new_token = token_of(&rotated);
    let fs_new = client(c.master.addr.clone(), new_token.clone()).await;
    assert_eq!(get(&fs_new, "/f").await, data);

    // Retire the old key: its tokens are refused, saying why.
    let only_new = Keyring::from_secrets(&rotated.secrets()[..1]).unwrap();
    std::fs::write(&key_file, only_new.to_file_text()).unwrap();
    let c = restart_master(c, &extra);
    let fs = client(c.master.addr.clone(), old_token).await;
    let e = fs.master().file_blocks("/f").await.unwrap_err();
    assert_eq!(e.code(), EddyCode::Unauthenticated, "{e}");
    assert!(e.to_string().contains("rotated out"), "{e}");
    let fs_new = client(c.master.addr.clone(), new_token).await;
    fs_new.master().file_blocks("/f").await.unwrap();
    // The worker's own credential was signed with the retired key: refused,
    // it signs a new one from the key file and registers again.
    assert_eq!(get(&fs_new, "/f").await, data);
}

/// The name a worker reads from its peers under (`eddy-worker`) is no
/// identity a client can take: claiming it in the handshake or to the
/// master buys nothing a block token does not grant.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn claiming_to_be_a_worker_reads_nothing() {
    const WORKER: &str = "eddy-worker";
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path(), 1, SMALL_BLOCKS, "");
    let fs = c.fs().await;
    let data = pattern(3000, 6);
    put(&fs, "/f", &data, pb::WriteType::MustCache).await;
    let fb = fs.master().file_blocks("/f").await.unwrap();
    let b0 = &fb.blocks[0];
    // TCP: the claimed name is accepted (nothing on TCP can check it), and
    // changes nothing: no token, no bytes.
    let mut s = TcpStream::connect(&c.workers[0].addr).await.unwrap();
    eddy_wire::hello(&mut s, WORKER).await.unwrap().unwrap();
    for kind in [Kind::Read, Kind::Load] {
        let (k, body) = ask(&mut s, kind, &read_of(b0, Vec::new()).encode()).await;
        assert_eq!(
            refusal(k, &body).code,
            EddyCode::PermissionDenied,
            "{kind:?}"
        );
    }
    // The Unix socket: the kernel says who the peer is, not the Hello.
    let mut u = tokio::net::UnixStream::connect(dir.path().join("w0.sock"))
        .await
        .unwrap();
    let e = eddy_wire::hello(&mut u, WORKER).await.unwrap().unwrap_err();
    assert_eq!(e.code, EddyCode::PermissionDenied, "{e:?}");
    // A token the master issued to a client that claimed the worker's name
    // (simple mode believes claims) is a user's token like any other: on
    // the socket it must name the peer, so it leases nothing.
    let claimed = eddy_client::Credentials {
        user: WORKER.into(),
        token: None,
    };
    let as_worker = eddy_client::MasterClient::connect_with(&c.master.addr, ANSWER, &claimed)
        .await
        .unwrap();
    let theirs = as_worker.file_blocks("/f").await.unwrap().block_token;
    assert!(!theirs.is_empty());
    let mut u = uds_conn(dir.path().join("w0.sock")).await;
    let items = [read_of(b0, theirs)];
    let (_, body) = ask(&mut u, Kind::Lease, &eddy_wire::encode_lease(&items)).await;
    let (_, grants) = eddy_wire::decode_lease_ok(&body).unwrap();
    assert_eq!(
        grants[0].code,
        EddyCode::PermissionDenied as i32 as u16,
        "{grants:?}"
    );
    // The peer's own tokens still lease.
    assert_eq!(get(&c.fs_local().await, "/f").await, data);
}

/// As above on the short-circuit path: the lease refused for the expired
/// token sends that read over TCP, which refreshes the token, and the
/// reader leases again after (it does not stay on TCP for its life).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lease_refused_for_an_expired_token_is_taken_again_after_the_refresh() {
    const TTL_MS: u64 = 1000;
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(
        dir.path(),
        1,
        &format!("{SMALL_BLOCKS}\n[security]\nblock_token_ttl_ms = {TTL_MS}"),
        "",
    );
    let opts = eddy_client::ClientOptions {
        metadata_ttl: Duration::from_secs(60),
        ..Default::default()
    };
    let fs = eddy_client::FileSystem::connect_with(&c.master.addr, opts)
        .await
        .unwrap();
    let data = pattern(3000, 8);
    put(&c.fs().await, "/f", &data, pb::WriteType::MustCache).await;
    assert_eq!(get(&fs, "/f").await, data, "leased with a fresh token");
    assert_eq!(c.stat_sum(&fs, "leases_granted").await, 1);
    // No signal says "expired": the token's life is wall-clock time.
    tokio::time::sleep(Duration::from_millis(TTL_MS + 100)).await;
    let served = c.stat_sum(&fs, "bytes_served").await;
    let mut r = fs
        .open("/f", &eddy_client::OpenOptions::default())
        .await
        .unwrap();
    assert_eq!(r.read_to_end().await.unwrap(), data, "read on over TCP");
    assert!(
        denied_metric(&c) >= 1.0,
        "the stale token was refused first"
    );
    assert_eq!(
        c.stat_sum(&fs, "bytes_served").await,
        served + data.len() as u64
    );
    assert_eq!(
        c.stat_sum(&fs, "leases_granted").await,
        1,
        "no lease on the stale token"
    );
    // The reader now holds the fresh token: the next read maps the block.
    let mut again = vec![0u8; data.len()];
    assert_eq!(r.read_at(0, &mut again).await.unwrap(), data.len());
    assert_eq!(again, data);
    assert_eq!(
        c.stat_sum(&fs, "leases_granted").await,
        2,
        "leased after the refresh"
    );
    assert_eq!(
        c.stat_sum(&fs, "bytes_served").await,
        served + data.len() as u64,
        "not streamed again"
    );
}
