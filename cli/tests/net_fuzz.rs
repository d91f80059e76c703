//! Network-level fuzzing against live processes (a master and a worker): a
//! bounded stream of random and mutated data-protocol frames to the worker's
//! TCP port, garbage and mutated short-circuit messages to its Unix socket,
//! HTTP/2 garbage and gRPC calls with random field values to the master.
//! Afterwards both must still serve a normal client byte-exactly, and their
//! open descriptors must return to what they were before.
//!
//! Every run prints its seed; `EDDY_NET_FUZZ_SEED=N` replays one. Each test
//! is bounded twice: a count of connections or calls, and a time budget.

mod common;

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use common::{Cluster, MasterProc, WorkerProc, eventually, get, pattern, put};
use eddy_client::pb;
use eddy_wire::{
    ErrorFrame, Header, Kind, ReadRequest, ReadType, UfsSource, WriteOk, WriteOpen, WriteType,
    encode_lease, encode_lease_ok, encode_release, encode_stats, u64_body, u64_pair,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SEED: u64 = 0x5eed_f022_2026_0001;
/// How long one connection may take to answer and close after our side has
/// finished sending: more is a hang.
const ANSWER_LIMIT: Duration = Duration::from_secs(10);
/// Connections (or calls) kept in flight at once.
const PARALLEL: usize = 8;

/// xorshift64*: small, deterministic, and good enough to pick mutations.
#[derive(Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }
    fn u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.u64() % n as u64) as usize
    }
    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.u64() as u8).collect()
    }
    /// Fewer than `max` random bytes.
    fn some_bytes(&mut self, max: usize) -> Vec<u8> {
        let n = self.below(max);
        self.bytes(n)
    }
    /// A value from the edges (0, 1, max, powers of two) or anywhere.
    fn int(&mut self) -> u64 {
        match self.below(6) {
            0 => 0,
            1 => 1,
            2 => u64::MAX - self.below(2) as u64,
            3 => 1 << self.below(64),
            4 => self.below(1 << 20) as u64,
            _ => self.u64(),
        }
    }
    fn text(&mut self, max: usize) -> String {
        const PIECES: &[&str] = &[
            "a", "b", "/", "..", ".", "//", "\0", "\n", "é", "文", "%2F", " ", "x", "fz",
        ];
        let n = self.below(max + 1);
        (0..n).map(|_| PIECES[self.below(PIECES.len())]).collect()
    }
    /// Bytes of a path field: usually under /fz, sometimes anything.
    fn path(&mut self) -> Vec<u8> {
        match self.below(8) {
            0 => self.some_bytes(64),
            1 => vec![b'a'; 4096 + self.below(3)],
            2 => format!("/fz/{}", "n".repeat(250 + self.below(10))).into_bytes(),
            _ => format!("/fz/{}", self.text(6)).into_bytes(),
        }
    }
}

fn seed() -> u64 {
    let seed = std::env::var("EDDY_NET_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(SEED);
    println!("net fuzz seed {seed} (replay with EDDY_NET_FUZZ_SEED={seed})");
    seed
}

fn frame(kind: Kind, body: &[u8]) -> Vec<u8> {
    let mut f = Header {
        kind,
        body_len: body.len() as u32,
    }
    .encode()
    .to_vec();
    f.extend_from_slice(body);
    f
}

fn read_request(r: &mut Rng) -> ReadRequest {
    let block_length = r.int();
    let offset = if block_length == 0 {
        0
    } else {
        r.u64() % block_length
    };
    ReadRequest {
        block_id: if r.chance(2) {
            (r.below(4) as u64) << 24 | r.below(3) as u64
        } else {
            r.int()
        },
        offset,
        length: block_length - offset,
        block_length,
        file_offset: r.int(),
        read_type: [ReadType::Cache, ReadType::NoCache, ReadType::CachePromote][r.below(3)],
        // Mount 1 is the root mount: keys then probe the under-storage
        // (reads only; `..` must be refused).
        source: r.chance(2).then(|| UfsSource {
            mount_id: r.below(3) as u64,
            key: r.text(8),
        }),
        token: {
            let max = if r.chance(2) { 400 } else { 2 };
            r.some_bytes(max)
        },
    }
}

fn write_open(r: &mut Rng) -> WriteOpen {
    let write_type = [
        WriteType::MustCache,
        WriteType::CacheThrough,
        WriteType::Through,
        WriteType::AsyncThrough,
    ][r.below(4)];
    WriteOpen {
        file_id: r.int(),
        block_size: [0, 1, 4096, 1 << 20, u64::MAX][r.below(5)],
        write_type,
        // Written keys stay inside the test's under-storage: no `..`.
        target: (write_type != WriteType::MustCache || r.chance(2)).then(|| UfsSource {
            mount_id: r.below(3) as u64,
            key: format!("fz/{}", r.u64()),
        }),
        token: {
            let max = if r.chance(2) { 400 } else { 2 };
            r.some_bytes(max)
        },
    }
}

/// One valid frame (or a short valid sequence) of any kind.
fn valid_frames(r: &mut Rng) -> Vec<u8> {
    match r.below(16) {
        0 => frame(Kind::Read, &read_request(r).encode()),
        1 => frame(Kind::Load, &read_request(r).encode()),
        2 => {
            let mut f = frame(Kind::WriteOpen, &write_open(r).encode());
            for _ in 0..r.below(4) {
                let n = [0, 1, 4095, 4096, 70_000][r.below(5)];
                f.extend(frame(Kind::Data, &r.bytes(n)));
            }
            match r.below(3) {
                0 => f.extend(frame(Kind::WriteClose, &u64_body(r.int()))),
                1 => f.extend(frame(Kind::WriteCancel, &[])),
                _ => {} // the connection ends mid-session
            }
            f
        }
        3 => frame(Kind::Data, &r.some_bytes(100)),
        4 => frame(Kind::WriteClose, &u64_body(r.int())),
        5 => frame(Kind::WriteCancel, &[]),
        6 => frame(Kind::Stats, &[]),
        7 => {
            let items: Vec<_> = (0..1 + r.below(3)).map(|_| read_request(r)).collect();
            frame(Kind::Lease, &encode_lease(&items))
        }
        8 => {
            let ids: Vec<u64> = (0..r.below(5)).map(|_| r.int()).collect();
            frame(Kind::Release, &encode_release(&ids))
        }
        9 => frame(Kind::SegmentRequest, &u64_body(r.int())),
        10 => frame(Kind::SegmentCommit, &u64_pair(r.int(), r.int())),
        11 => frame(Kind::ReadOk, &u64_body(r.int())),
        12 => frame(Kind::LeaseOk, &encode_lease_ok(r.int(), &[])),
        13 => frame(
            Kind::WriteOk,
            &WriteOk {
                length: r.int(),
                blocks: r.u64() as u32,
                fingerprint: r.text(4),
            }
            .encode(),
        ),
        14 => frame(Kind::StatsOk, &encode_stats(&[(r.text(4), r.int())])),
        _ => frame(
            Kind::Error,
            &ErrorFrame::new(eddy_client::EddyCode::Internal, r.text(8)).encode(),
        ),
    }
}

/// Valid frames with a few bytes changed: a field, the kind, the length,
/// a cut, an extension.
fn mutated(r: &mut Rng, mut f: Vec<u8>) -> Vec<u8> {
    for _ in 0..1 + r.below(3) {
        if f.is_empty() {
            break;
        }
        let len = f.len();
        match r.below(7) {
            0 => f[r.below(len)] ^= 1 << r.below(8),
            1 => f[r.below(len)] = r.u64() as u8,
            2 if len > 5 => f[5] = r.u64() as u8,
            3 if len >= 12 => f[8..12].copy_from_slice(&(r.int() as u32).to_le_bytes()),
            4 => f.truncate(r.below(len)),
            5 => f.extend(r.some_bytes(32)),
            _ => {
                let i = r.below(len);
                let x = f[i..].to_vec();
                f.extend(x);
            }
        }
    }
    f
}

/// The handshake a connection starts with: usually a valid one (so the
/// requests behind it reach the worker's dispatch), else none, a claim of
/// another user or version, or a mutated one.
fn hello(r: &mut Rng) -> Vec<u8> {
    let me = eddy_client::Credentials::current_user().user;
    let h = |version, user| frame(Kind::Hello, &eddy_wire::Hello { version, user }.encode());
    match r.below(10) {
        0 => Vec::new(),
        1 => h(r.u64() as u16, r.text(8)),
        2 => h(eddy_wire::HELLO_VERSION, "root".into()),
        3 => {
            let f = h(eddy_wire::HELLO_VERSION, me);
            mutated(r, f)
        }
        _ => h(eddy_wire::HELLO_VERSION, me),
    }
}

/// What one connection sends: random bytes, valid frames, or mutated ones,
/// after a handshake (`hello`).
fn stream(r: &mut Rng) -> Vec<u8> {
    let mut out = hello(r);
    for _ in 0..1 + r.below(4) {
        match r.below(4) {
            0 => out.extend(r.some_bytes(200)),
            1 => out.extend(valid_frames(r)),
            _ => {
                let f = valid_frames(r);
                out.extend(mutated(r, f));
            }
        }
    }
    out
}

/// Runs `n` jobs, `PARALLEL` at a time, stopping early when `budget` is
/// spent; job `i` gets its own generator (seed + i), so a failure names the
/// job to replay. Returns how many ran.
async fn run_bounded<F, Fut>(seed: u64, n: usize, budget: Duration, job: F) -> usize
where
    F: Fn(usize, Rng) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>> + Send + 'static,
{
    let start = Instant::now();
    let mut set: tokio::task::JoinSet<Result<(), String>> = tokio::task::JoinSet::new();
    let mut ran = 0;
    for i in 0..n {
        if start.elapsed() > budget {
            break;
        }
        while set.len() >= PARALLEL {
            let r = set.join_next().await.expect("a job");
            r.expect("job task")
                .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        }
        set.spawn(job(
            i,
            Rng::new(seed.wrapping_add(i as u64).wrapping_mul(0x9E37_79B9)),
        ));
        ran += 1;
    }
    while let Some(r) = set.join_next().await {
        r.expect("job task")
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    }
    ran
}

/// Sends `bytes`, half-closes, and reads until the peer closes. A peer that
/// stops reading or resets is fine; one that keeps the connection open
/// after our side has finished is a hang.
async fn poke_tcp(addr: String, bytes: Vec<u8>, what: String) -> Result<(), String> {
    let mut s = tokio::net::TcpStream::connect(&addr)
        .await
        .map_err(|e| format!("{what}: cannot connect to {addr}: {e}"))?;
    let _ = s.write_all(&bytes).await;
    let _ = s.shutdown().await;
    let mut buf = vec![0u8; 64 << 10];
    tokio::time::timeout(ANSWER_LIMIT, async {
        while let Ok(n) = s.read(&mut buf).await
            && n > 0
        {}
    })
    .await
    .map_err(|_| format!("{what}: {addr} kept the connection open after the input ended"))
}

fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// The descriptor count of `pid` once it has held still for 200 ms.
async fn settled_fds(pid: u32) -> usize {
    let mut last = fd_count(pid);
    let start = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = fd_count(pid);
        if now == last || start.elapsed() > Duration::from_secs(10) {
            return now;
        }
        last = now;
    }
}

/// A cluster with one worker, warmed up by a client that wrote and read a
/// file and then went away, and the processes' settled descriptor counts.
async fn warm_cluster(dir: &std::path::Path) -> (Cluster, usize, usize) {
    // Errors only (every refused connection is a warning, thousands of
    // them), into log files that are searched for panics afterwards.
    let env = [("EDDY_LOG", "error"), ("RUST_BACKTRACE", "1")];
    let log = |name: &str| std::fs::File::create(dir.join(name)).unwrap().into();
    let master = MasterProc::start_stderr(dir, "127.0.0.1:0", "", &env, log("master.log"));
    let extra = format!(
        "domain_socket = {:?}",
        dir.join("w0.sock").display().to_string()
    );
    let worker = WorkerProc::start_stderr(
        dir,
        &master.addr,
        "127.0.0.1:0",
        &extra,
        &env,
        log("worker.log"),
    );
    let c = Cluster {
        master,
        workers: vec![worker],
        dir: dir.to_path_buf(),
    };
    {
        let fs = c.fs().await;
        let data = pattern(100_000, 1);
        put(&fs, "/warm", &data, pb::WriteType::CacheThrough).await;
        assert_eq!(get(&fs, "/warm").await, data);
        let local = c.fs_local().await;
        assert_eq!(get(&local, "/warm").await, data);
    }
    let w = settled_fds(c.workers[0].pid()).await;
    let m = settled_fds(c.master.pid()).await;
    (c, w, m)
}

/// After the fuzzing: both processes alive, a normal client (TCP and
/// short-circuit) writes and reads byte-exactly, and the descriptor counts
/// come back to the baseline.
async fn assert_still_serving(c: &Cluster, worker_fds: usize, master_fds: usize) {
    // A panic in a connection's task leaves the process up, so look for it:
    // no input from a socket may panic a server.
    for name in ["worker.log", "master.log"] {
        let text = std::fs::read_to_string(c.dir.join(name)).unwrap();
        let panics: Vec<String> = text
            .lines()
            .enumerate()
            .filter(|(_, l)| l.contains("panicked at"))
            .map(|(i, _)| {
                // The message, and the frames that name Eddy's code.
                let mut report: Vec<&str> = text.lines().skip(i).take(2).collect();
                report.extend(
                    text.lines()
                        .skip(i + 2)
                        .take_while(|l| !l.contains("panicked at"))
                        .filter(|l| l.contains("eddy_") && !l.contains("tokio"))
                        .take(6),
                );
                report.join("\n")
            })
            .collect();
        assert!(
            panics.is_empty(),
            "{} panic(s) in {name}; the first:\n{}",
            panics.len(),
            panics[0]
        );
    }
    let (wpid, mpid) = (c.workers[0].pid(), c.master.pid());
    eventually(
        Duration::from_secs(20),
        "the worker's and master's descriptors to return to the baseline",
        || async move {
            let (w, m) = (fd_count(wpid), fd_count(mpid));
            if w != worker_fds || m != master_fds {
                println!(
                    "fds: worker {w} (baseline {worker_fds}), master {m} (baseline {master_fds})"
                );
            }
            w == worker_fds && m == master_fds
        },
    )
    .await;
    for (i, wt) in [pb::WriteType::MustCache, pb::WriteType::CacheThrough]
        .into_iter()
        .enumerate()
    {
        let fs = c.fs().await;
        let data = pattern(300_000 + i, 7 + i as u64);
        let path = format!("/after-{i}");
        put(&fs, &path, &data, wt).await;
        assert_eq!(get(&fs, &path).await, data, "TCP read of {path}");
        let local = c.fs_local().await;
        assert_eq!(
            get(&local, &path).await,
            data,
            "short-circuit read of {path}"
        );
        assert_eq!(get(&fs, "/warm").await, pattern(100_000, 1));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn worker_data_port_survives_random_and_mutated_frames() {
    let seed = seed();
    let dir = tempfile::tempdir().unwrap();
    let (c, wfds, mfds) = warm_cluster(dir.path()).await;
    let addr = c.workers[0].addr.clone();
    let ran = run_bounded(seed, 3000, Duration::from_secs(20), |i, mut r| {
        let bytes = stream(&mut r);
        poke_tcp(addr.clone(), bytes, format!("data-port connection {i}"))
    })
    .await;
    println!("{ran} data-port connections");
    assert_still_serving(&c, wfds, mfds).await;
}

/// Sends `bytes` on the worker's Unix socket, half-closes, and drains the
/// answers (with any descriptors they carry, which are closed at once)
/// until the worker closes.
async fn poke_unix(path: std::path::PathBuf, bytes: Vec<u8>, what: String) -> Result<(), String> {
    let mut s = tokio::net::UnixStream::connect(&path)
        .await
        .map_err(|e| format!("{what}: cannot connect to {}: {e}", path.display()))?;
    let _ = s.write_all(&bytes).await;
    let _ = s.shutdown().await;
    tokio::time::timeout(ANSWER_LIMIT, async {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            if s.readable().await.is_err() {
                return;
            }
            let mut space =
                vec![std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(64))];
            let mut cmsg = rustix::net::RecvAncillaryBuffer::new(&mut space);
            match rustix::net::recvmsg(
                s.as_fd(),
                &mut [std::io::IoSliceMut::new(&mut buf)],
                &mut cmsg,
                rustix::net::RecvFlags::CMSG_CLOEXEC | rustix::net::RecvFlags::DONTWAIT,
            ) {
                Ok(r) if r.bytes == 0 => return,
                Ok(_) => drop(cmsg.drain().count()),
                Err(rustix::io::Errno::AGAIN) => {}
                Err(_) => return,
            }
        }
    })
    .await
    .map_err(|_| format!("{what}: the worker kept the socket open after the input ended"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn worker_unix_socket_survives_garbage_and_mutated_messages() {
    let seed = seed();
    let dir = tempfile::tempdir().unwrap();
    let (c, wfds, mfds) = warm_cluster(dir.path()).await;
    let sock = dir.path().join("w0.sock");
    let ran = run_bounded(seed, 2000, Duration::from_secs(20), |i, mut r| {
        let bytes = stream(&mut r);
        poke_unix(sock.clone(), bytes, format!("socket connection {i}"))
    })
    .await;
    println!("{ran} short-circuit connections");
    assert_still_serving(&c, wfds, mfds).await;
}

/// Raw bytes at the master's gRPC port: random bytes, or the HTTP/2
/// preface followed by random and half-valid frames.
fn http2_garbage(r: &mut Rng) -> Vec<u8> {
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let mut out = Vec::new();
    if !r.chance(4) {
        out.extend_from_slice(PREFACE);
    }
    for _ in 0..r.below(6) {
        let body = r.some_bytes(64);
        // length (24 bits), type, flags, stream id (31 bits), then payload;
        // the length sometimes lies.
        let len = if r.chance(3) {
            r.u64() as u32 & 0xff_ffff
        } else {
            body.len() as u32
        };
        out.extend_from_slice(&len.to_be_bytes()[1..]);
        out.push(r.below(12) as u8);
        out.push(r.u64() as u8);
        out.extend_from_slice(&(r.u64() as u32).to_be_bytes());
        out.extend(body);
    }
    if r.chance(4) {
        out = mutated(r, out);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn master_survives_http2_garbage_and_random_grpc_fields() {
    let seed = seed();
    let dir = tempfile::tempdir().unwrap();
    let (c, wfds, mfds) = warm_cluster(dir.path()).await;
    let addr = c.master.addr.clone();
    let ran = run_bounded(seed, 1500, Duration::from_secs(10), |i, mut r| {
        let bytes = http2_garbage(&mut r);
        poke_tcp(addr.clone(), bytes, format!("HTTP/2 connection {i}"))
    })
    .await;
    println!("{ran} HTTP/2 garbage connections");
    let client = eddy_client::MasterClient::connect(&addr).await.unwrap();
    let existing = dir.path().join("ufs").display().to_string();
    let ran = run_bounded(seed ^ 0xa5, 3000, Duration::from_secs(20), |i, mut r| {
        let client = client.clone();
        let existing = existing.clone();
        async move {
            let call = random_call(&client, &mut r, &existing);
            let what = format!("gRPC call {i}: {}", call.0);
            match tokio::time::timeout(ANSWER_LIMIT, call.1).await {
                Ok(()) => Ok(()),
                Err(_) => Err(format!("{what}: no answer within {ANSWER_LIMIT:?}")),
            }
        }
    })
    .await;
    println!("{ran} random gRPC calls");
    drop(client);
    assert_still_serving(&c, wfds, mfds).await;
}

type Call = (String, std::pin::Pin<Box<dyn Future<Output = ()> + Send>>);

/// An optional small mode, ttl etc.: absent, an edge value or anything.
fn opt_u32(r: &mut Rng) -> Option<u32> {
    r.chance(2).then(|| r.int() as u32)
}

fn enum_value(r: &mut Rng) -> i32 {
    match r.below(3) {
        0 => r.below(5) as i32,
        1 => -(r.below(3) as i32),
        _ => r.u64() as i32,
    }
}

fn sync(r: &mut Rng) -> Option<pb::SyncPolicy> {
    r.chance(2).then(|| pb::SyncPolicy {
        interval_ms: r.chance(2).then(|| r.int() as i64),
    })
}

/// One RPC of the master's services with random field values, described
/// (Debug of the request) for the failure message. Registering workers is
/// left out: a made-up worker is one the master must believe, and the
/// normal client's writes would then be placed on it.
fn random_call(c: &eddy_client::MasterClient, r: &mut Rng, existing: &str) -> Call {
    let mut fs = c.fs_service();
    let mut block = c.block_service();
    macro_rules! call {
        ($client:ident . $rpc:ident ($req:expr)) => {{
            let req = $req;
            let what = format!("{}({req:?})", stringify!($rpc));
            let fut = async move {
                let _ = $client.$rpc(req).await;
            };
            (
                what,
                Box::pin(fut) as std::pin::Pin<Box<dyn Future<Output = ()> + Send>>,
            )
        }};
    }
    match r.below(20) {
        0 => call!(fs.mkdir(pb::MkdirRequest {
            path: r.path(),
            recursive: r.chance(2),
            allow_exists: r.chance(2),
            mode: opt_u32(r),
            owner: r.text(3),
            group: r.text(3),
        })),
        1 => call!(fs.create_file(pb::CreateFileRequest {
            path: r.path(),
            block_size: r.int(),
            recursive: r.chance(2),
            mode: opt_u32(r),
            owner: r.text(3),
            group: r.text(3),
            write_type: enum_value(r),
            replication_min: r.int() as u32,
            replication_max: r.int() as u32,
            ttl_ms: r.int() as i64,
            ttl_action: enum_value(r),
        })),
        2 => call!(fs.complete_file(pb::CompleteFileRequest {
            path: r.path(),
            length: r.int(),
            persisted: r.chance(2),
            ufs_fingerprint: r.text(4),
            persist_async: r.chance(2),
            file_id: r.int(),
        })),
        3 => call!(fs.get_status(pb::GetStatusRequest {
            path: r.path(),
            sync: sync(r),
        })),
        4 => call!(fs.exists(pb::ExistsRequest {
            path: r.path(),
            sync: sync(r),
        })),
        5 => call!(fs.list_status(pb::ListStatusRequest {
            path: r.path(),
            start_after: r.some_bytes(8),
            limit: r.int() as u32,
            sync: sync(r),
        })),
        6 => call!(fs.rename(pb::RenameRequest {
            src: r.path(),
            dst: r.path(),
        })),
        7 => call!(fs.delete(pb::DeleteRequest {
            path: r.path(),
            recursive: r.chance(2),
            eddy_only: r.chance(2),
            file_id: r.int(),
        })),
        8 => call!(fs.set_attribute(pb::SetAttributeRequest {
            path: r.path(),
            mode: opt_u32(r),
            owner: r.chance(2).then(|| r.text(3)),
            group: r.chance(2).then(|| r.text(3)),
            pinned: r.chance(2).then(|| r.chance(2)),
            ttl_ms: r.chance(2).then(|| r.int() as i64),
            ttl_action: enum_value(r),
            replication_min: opt_u32(r),
            replication_max: opt_u32(r),
            recursive: r.chance(2),
            pin_allow_demotion: r.chance(2).then(|| r.chance(2)),
        })),
        9 => {
            // Under-storage URIs: the test's own directory, or ones that
            // must be refused; never an object store (no traffic off the
            // host).
            let uri = match r.below(4) {
                0 => existing.to_string(),
                1 => format!("file://{existing}"),
                2 => format!("/nonexistent/{}", r.text(3)),
                _ => format!("bogus://{}", r.text(4)),
            };
            let options = (0..r.below(3)).map(|_| (r.text(3), r.text(3))).collect();
            call!(fs.mount(pb::MountRequest {
                path: r.path(),
                ufs_uri: uri,
                read_only: r.chance(2),
                options,
                sync_interval_ms: r.chance(2).then(|| r.int() as i64),
            }))
        }
        10 => call!(fs.unmount(pb::UnmountRequest { path: r.path() })),
        11 => call!(fs.list_mounts(pb::ListMountsRequest {})),
        12 => call!(fs.get_file_blocks(pb::GetFileBlocksRequest { path: r.path() })),
        13 => call!(fs.free(pb::FreeRequest {
            path: r.path(),
            recursive: r.chance(2),
            force: r.chance(2),
        })),
        14 => call!(fs.persist(pb::PersistRequest { path: r.path() })),
        15 => call!(fs.check_consistency(pb::CheckConsistencyRequest { path: r.path() })),
        16 => call!(block.get_mount(pb::GetMountRequest {
            mount_id: r.int(),
            worker_id: 1000 + r.int() % 1000,
        })),
        17 => call!(block.commit_block(pb::CommitBlockRequest {
            worker_id: 1000 + r.int() % 1000,
            block_id: r.int(),
            length: r.int(),
            tier: r.text(3),
            written: r.chance(2),
        })),
        18 => call!(block.select_worker(pb::SelectWorkerRequest {
            block_id: r.int(),
            client_host: r.text(4),
            bytes_needed: r.int(),
            policy: enum_value(r),
            exclude_workers: (0..r.below(3)).map(|_| r.int()).collect(),
        })),
        _ => {
            // Unknown workers only: a real worker's heartbeat with made-up
            // usage would make placement refuse it until its next one.
            let worker_id = 1000 + r.int() % 1000;
            if r.chance(2) {
                call!(
                    block.heartbeat(pb::HeartbeatRequest {
                        worker_id,
                        tiers: vec![],
                        added_blocks: (0..r.below(3))
                            .map(|_| pb::BlockReport {
                                block_id: r.int(),
                                length: r.int(),
                                tier: r.text(3),
                            })
                            .collect(),
                        removed_blocks: (0..r.below(3)).map(|_| r.int()).collect(),
                        pinned_version: r.int(),
                        io_engine: r.text(3),
                        wait_ms: r.int() % 100,
                    })
                )
            } else {
                call!(block.file_persisted(pb::FilePersistedRequest {
                    worker_id,
                    file_id: r.int(),
                    ufs: r.chance(2).then(|| pb::UfsLocation {
                        mount_id: r.int(),
                        key: r.text(4),
                    }),
                    fingerprint: r.text(4),
                    length: r.int(),
                    error: r.text(3),
                }))
            }
        }
    }
}
