//! Remote leases and one-sided RDMA reads end to end (docs/RDMA.md): real
//! master and worker processes serving remote leases over libfabric's
//! `tcp;ofi_rxm` on loopback, read by the client library forced to
//! `transport = "rdma"`, and by hand through the frames and `eddy-rdma`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Cluster, WRITE_TYPES, data_conn, eventually, file_shapes, get, pattern, put};
use eddy_client::{ClientOptions, EddyCode, FileSystem, TransportMode, pb};
use eddy_rdma::{Fabric, FabricOptions, RemoteKey};
use eddy_wire::{Kind, ReadRequest, ReadType, RemoteLease, RemoteLeaseOk, UfsSource};

const BS: u64 = 1 << 20;
const SMALL_BLOCKS: &str = "default_block_size = 1048576";
const RDMA: &str = "rdma = true\nrdma_provider = \"tcp;ofi_rxm\"\n";

async fn rdma_client(c: &Cluster) -> FileSystem {
    let opts = ClientOptions {
        transport: TransportMode::Rdma,
        timeout: Duration::from_secs(20),
        ..Default::default()
    };
    FileSystem::connect_with(&c.master.addr, opts)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_shape_reads_back_by_one_sided_reads() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path(), 2, SMALL_BLOCKS, RDMA);
    let writer = c.fs().await;
    let mut total = 0u64;
    let mut files = Vec::new();
    for (wt, name) in WRITE_TYPES {
        for (i, &size) in file_shapes(BS).iter().enumerate() {
            let path = format!("/{name}-{size}");
            let data = pattern(size as usize, i as u64 + 11);
            put(&writer, &path, &data, wt).await;
            files.push((path, data));
            total += size;
        }
    }
    let fs = rdma_client(&c).await;
    for (path, data) in &files {
        assert!(get(&fs, path).await == *data, "{path} reads back over RDMA");
    }
    let s = fs.transport_stats();
    assert_eq!(s.rdma_bytes, total, "every byte came by one-sided reads");
    assert_eq!(s.tcp_bytes, 0, "none over TCP: {s:?}");
    assert_eq!(s.rdma_fallbacks, 0, "{s:?}");
    assert!(s.rdma_reads_posted > 0, "{s:?}");
    let granted = c.stat_sum(&writer, "rdma_leases_granted").await;
    assert!(granted > 0, "the workers granted remote leases");
    let leased = c.stat_sum(&writer, "rdma_leased_bytes").await;
    assert!(leased >= total, "every block leased: {leased} of {total}");
    // A TCP client reads the same bytes (parity).
    for (path, data) in &files {
        assert!(get(&writer, path).await == *data, "{path} over TCP");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn positioned_reads_from_eight_tasks_over_rdma() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path(), 2, SMALL_BLOCKS, RDMA);
    let len = 5 * BS as usize + 123;
    let data = Arc::new(pattern(len, 7));
    put(&c.fs().await, "/pos", &data, pb::WriteType::CacheThrough).await;
    let fs = rdma_client(&c).await;
    let r = Arc::new(fs.open("/pos", &Default::default()).await.unwrap());
    let mut tasks = Vec::new();
    for t in 0..8u64 {
        let (r, data) = (r.clone(), data.clone());
        tasks.push(tokio::spawn(async move {
            let mut x = t * 7919 + 1;
            for _ in 0..30 {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let off = (x >> 20) as usize % len;
                let want = ((x >> 5) as usize % (2 * BS as usize)).max(1);
                let mut buf = vec![0u8; want];
                let n = r.read_at(off as u64, &mut buf).await.unwrap();
                assert_eq!(n, want.min(len - off), "length at {off}");
                assert!(buf[..n] == data[off..off + n], "bytes at {off}+{n}");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let s = fs.transport_stats();
    assert!(s.rdma_bytes > 0 && s.tcp_bytes == 0, "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_without_rdma_is_read_over_tcp_and_tcp_mode_never_tries() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path(), 1, SMALL_BLOCKS, "");
    let data = pattern(3 * BS as usize, 5);
    put(&c.fs().await, "/f", &data, pb::WriteType::MustCache).await;
    let fs = rdma_client(&c).await;
    assert!(get(&fs, "/f").await == data);
    let s = fs.transport_stats();
    assert_eq!((s.rdma_bytes, s.tcp_bytes), (0, data.len() as u64), "{s:?}");
    drop(c);
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path(), 1, SMALL_BLOCKS, RDMA);
    put(&c.fs().await, "/f", &data, pb::WriteType::MustCache).await;
    let opts = ClientOptions {
        transport: TransportMode::Tcp,
        ..Default::default()
    };
    let tcp = FileSystem::connect_with(&c.master.addr, opts)
        .await
        .unwrap();
    assert!(get(&tcp, "/f").await == data);
    let s = tcp.transport_stats();
    assert_eq!((s.rdma_bytes, s.rdma_fallbacks), (0, 0), "{s:?}");
    assert_eq!(c.stat_sum(&tcp, "rdma_leases_granted").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_worker_is_read_again_after_falling_back() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path(), 1, SMALL_BLOCKS, RDMA);
    let data = pattern(4 * BS as usize, 3);
    put(&c.fs().await, "/f", &data, pb::WriteType::CacheThrough).await;
    let fs = rdma_client(&c).await;
    // One reader across the restart: it keeps its block tokens, so the
    // client's cached leases (keys of the old worker) are what it tries.
    let r = fs
        .open("/f", &eddy_client::OpenOptions::default())
        .await
        .unwrap();
    let mut buf = vec![0u8; data.len()];
    assert_eq!(r.read_at(0, &mut buf).await.unwrap(), data.len());
    assert!(buf == data);
    let before = fs.transport_stats();
    assert_eq!(before.rdma_bytes, data.len() as u64, "{before:?}");
    assert_eq!(before.rdma_fallbacks, 0, "{before:?}");
    // The worker dies with the client's leases and keys; a new one takes
    // its address (a new fabric, a new epoch).
    let (master, w) = c.restart_first_worker(RDMA);
    let c = Cluster {
        master,
        workers: vec![w],
        dir: dir.path().to_path_buf(),
    };
    buf.fill(0);
    assert_eq!(r.read_at(0, &mut buf).await.unwrap(), data.len());
    assert!(buf == data, "bytes stay right");
    let stale = fs.transport_stats();
    assert!(
        stale.rdma_fallbacks > before.rdma_fallbacks,
        "the old keys opened nothing in the new worker: {stale:?}"
    );
    assert!(get(&fs, "/f").await == data);
    let after = fs.transport_stats();
    assert!(
        after.rdma_bytes > stale.rdma_bytes,
        "RDMA resumed with the new worker: {after:?}"
    );
    // Those bytes came with keys the new worker granted.
    assert!(
        c.stat_sum(&fs, "rdma_leases_granted").await > 0,
        "the new worker leased the blocks again"
    );
    drop(c);
    drop(fs);
}

/// A lease request for `items` as a raw frame exchange.
async fn ask(
    s: &mut tokio::net::TcpStream,
    items: Vec<ReadRequest>,
    want_fabric: bool,
) -> Result<RemoteLeaseOk, eddy_wire::ErrorFrame> {
    let req = RemoteLease {
        provider: "tcp;ofi_rxm".into(),
        want_fabric,
        items,
    };
    eddy_wire::write_frame(s, Kind::RemoteLease, &req.encode())
        .await
        .unwrap();
    eddy_wire::expect(s, Kind::RemoteLeaseOk)
        .await
        .unwrap()
        .map(|b| RemoteLeaseOk::decode(&b).unwrap())
}

fn whole_block(b: &pb::FileBlock, token: &[u8], source: Option<UfsSource>) -> ReadRequest {
    ReadRequest {
        block_id: b.block_id,
        offset: 0,
        length: b.length,
        block_length: b.length,
        file_offset: b.offset,
        read_type: ReadType::Cache,
        source,
        token: token.to_vec(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keys_open_only_their_block_while_leased() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(
        dir.path(),
        1,
        SMALL_BLOCKS,
        &format!("{RDMA}max_leases_per_client = 3\n"),
    );
    let fs = c.fs().await;
    let data = pattern(4 * BS as usize, 21);
    put(&fs, "/f", &data, pb::WriteType::MustCache).await;
    let info = fs.master().file_blocks("/f").await.unwrap();
    let token = info.block_token.clone();
    let mut s = data_conn(&c.workers[0].addr).await;
    let items: Vec<_> = info
        .blocks
        .iter()
        .map(|b| whole_block(b, &token, None))
        .collect();
    let ok = ask(&mut s, items, true).await.unwrap();
    let f = ok
        .fabric
        .clone()
        .expect("the first answer carries the fabric");
    assert_eq!(f.provider, "tcp;ofi_rxm");
    assert_eq!(ok.grants.len(), 4);
    assert!(
        ok.grants[..3].iter().all(|g| g.code == 0),
        "{:?}",
        ok.grants
    );
    assert_eq!(
        ok.grants[3].code,
        EddyCode::NoSpace as i32 as u16,
        "past max_leases_per_client"
    );
    let mut o = FabricOptions::new("tcp;ofi_rxm");
    o.node = Some("127.0.0.1".into());
    o.read_timeout = Duration::from_secs(5);
    let fabric = Fabric::open_with(&o).unwrap();
    let peer = fabric.connect(&f.address).unwrap();
    let key = |g: &eddy_wire::RemoteGrant| RemoteKey {
        addr_or_offset: g.addr,
        len: g.region_len,
        key: g.key,
    };
    // Each key reads its own block, byte-exact.
    for (i, g) in ok.grants[..3].iter().enumerate() {
        let buf = fabric.alloc_buf(BS as usize).unwrap();
        let (buf, r) = fabric.read(buf, peer, &key(g), 0);
        r.unwrap();
        let want = &data[i * BS as usize..(i + 1) * BS as usize];
        assert!(buf.unwrap().as_slice() == want, "block {i}");
    }
    // A deleted file's leased blocks stay readable until released (the
    // worker drops them from its table; the memory waits for the lease).
    fs.delete("/f", false).await.unwrap();
    eventually(Duration::from_secs(10), "blocks dropped", || async {
        c.stat_sum(&fs, "blocks_cached").await == 0
    })
    .await;
    let buf = fabric.alloc_buf(4096).unwrap();
    let (buf, r) = fabric.read(buf, peer, &key(&ok.grants[0]), 0);
    r.unwrap();
    assert!(
        buf.unwrap().as_slice() == &data[..4096],
        "leased after delete"
    );
    assert_eq!(c.stat_sum(&fs, "rdma_leases").await, 3);
    // A wrong key opens nothing.
    let mut wrong = key(&ok.grants[1]);
    wrong.key ^= 1;
    let buf = fabric.alloc_buf(4096).unwrap();
    let (_, r) = fabric.read(buf, peer, &wrong, 0);
    assert!(r.is_err(), "a wrong key is refused");
    // The connection ends: every lease ends, every key is revoked.
    drop(s);
    eventually(Duration::from_secs(10), "leases freed", || async {
        c.stat_sum(&fs, "rdma_leases").await == 0
    })
    .await;
    let fabric = Fabric::open_with(&o).unwrap();
    let peer = fabric.connect(&f.address).unwrap();
    let buf = fabric.alloc_buf(4096).unwrap();
    let (_, r) = fabric.read(buf, peer, &key(&ok.grants[2]), 0);
    assert!(r.is_err(), "a released lease's key is revoked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_remote_leases_get_error_answers() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path(), 1, SMALL_BLOCKS, RDMA);
    let fs = c.fs().await;
    let data = pattern(BS as usize, 2);
    put(&fs, "/f", &data, pb::WriteType::MustCache).await;
    let info = fs.master().file_blocks("/f").await.unwrap();
    let b = &info.blocks[0];
    let mut s = data_conn(&c.workers[0].addr).await;
    // No token, a block the file does not have, an absurd length: each
    // refused in its grant.
    let mut unknown = whole_block(b, &info.block_token, None);
    unknown.block_id += 7;
    let mut long = whole_block(b, &info.block_token, None);
    long.block_length = u64::MAX;
    let ok = ask(
        &mut s,
        vec![whole_block(b, b"", None), unknown, long],
        false,
    )
    .await
    .unwrap();
    let codes: Vec<u16> = ok.grants.iter().map(|g| g.code).collect();
    assert_eq!(
        codes,
        [
            EddyCode::PermissionDenied as i32 as u16,
            EddyCode::NotFound as i32 as u16,
            EddyCode::InvalidArgument as i32 as u16
        ],
        "{:?}",
        ok.grants
    );
    // Another provider: refused as a whole, the connection stays.
    let req = RemoteLease {
        provider: "verbs;ofi_rxm".into(),
        want_fabric: true,
        items: vec![whole_block(b, &info.block_token, None)],
    };
    eddy_wire::write_frame(&mut s, Kind::RemoteLease, &req.encode())
        .await
        .unwrap();
    let e = eddy_wire::expect(&mut s, Kind::RemoteLeaseOk)
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(e.code, EddyCode::Unsupported, "{}", e.message);
    assert!(e.message.contains("tcp;ofi_rxm"), "{}", e.message);
    // Garbage (65 blocks) closes only this connection, with an error.
    let many = RemoteLease {
        provider: "tcp;ofi_rxm".into(),
        want_fabric: false,
        items: vec![whole_block(b, &info.block_token, None); 65],
    };
    eddy_wire::write_frame(&mut s, Kind::RemoteLease, &many.encode())
        .await
        .unwrap();
    let e = eddy_wire::expect(&mut s, Kind::RemoteLeaseOk)
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(e.code, EddyCode::Protocol, "{}", e.message);
    assert_eq!(c.stat_sum(&fs, "rdma_leases").await, 0, "nothing leased");
    assert!(get(&fs, "/f").await == data, "the worker still serves");
}

/// Runs `eddy --master ADDR args...` with `env` set.
fn eddy_env(master: &str, env: &[(&str, &str)], args: &[&str]) -> std::process::Output {
    std::process::Command::new(common::EDDY)
        .arg("--master")
        .arg(master)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

fn stdout_ok(o: std::process::Output, what: &str) -> Vec<u8> {
    assert!(
        o.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o.stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn report_names_each_workers_transports_and_this_clients_choice() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path(), 1, SMALL_BLOCKS, RDMA);
    let report = |mode: &str| {
        let o = eddy_env(&c.master.addr, &[("EDDY_TRANSPORT", mode)], &["report"]);
        String::from_utf8(stdout_ok(o, "eddy report")).unwrap()
    };
    let sock = dir.path().join("w0.sock").display().to_string();
    let offered = format!("transports: tcp, short-circuit ({sock}), rdma (tcp;ofi_rxm)");
    let auto = report("auto");
    assert!(auto.contains(&offered), "{auto}");
    assert!(auto.contains("from here: short-circuit"), "{auto}");
    let rdma = report("rdma");
    assert!(rdma.contains("from here: rdma (tcp;ofi_rxm)"), "{rdma}");
    let tcp = report("tcp");
    assert!(tcp.contains("from here: tcp"), "{tcp}");
    let bad = eddy_env(&c.master.addr, &[("EDDY_TRANSPORT", "ib")], &["report"]);
    assert_eq!(
        bad.status.code(),
        Some(2),
        "a bad transport is a usage error"
    );
    assert!(String::from_utf8_lossy(&bad.stderr).contains("EDDY_TRANSPORT"));
}

/// A host without libfabric (EDDY_LIBFABRIC names a library that is not
/// there): a worker serves TCP only, a client reads over TCP; no error.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_libfabric_workers_and_clients_use_tcp() {
    const NO_LIB: (&str, &str) = ("EDDY_LIBFABRIC", "/nonexistent/libfabric.so.1");
    let dir = tempfile::tempdir().unwrap();
    let master = common::MasterProc::start(dir.path(), SMALL_BLOCKS);
    let bare =
        common::WorkerProc::start_full(dir.path(), &master.addr, "127.0.0.1:0", RDMA, &[NO_LIB]);
    let c = Cluster {
        master,
        workers: vec![bare],
        dir: dir.path().to_path_buf(),
    };
    let data = pattern(3 * BS as usize + 17, 9);
    put(&c.fs().await, "/f", &data, pb::WriteType::MustCache).await;
    let report = stdout_ok(eddy_env(&c.master.addr, &[], &["report"]), "report");
    let report = String::from_utf8(report).unwrap();
    assert!(
        report.contains("transports: tcp; "),
        "no RDMA offered: {report}"
    );
    let fs = rdma_client(&c).await;
    assert!(get(&fs, "/f").await == data);
    let s = fs.transport_stats();
    assert_eq!((s.rdma_bytes, s.tcp_bytes), (0, data.len() as u64), "{s:?}");
    drop(c);
    // A worker with RDMA, a client process that cannot load libfabric.
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path(), 1, SMALL_BLOCKS, RDMA);
    put(&c.fs().await, "/f", &data, pb::WriteType::MustCache).await;
    let env = [NO_LIB, ("EDDY_TRANSPORT", "rdma"), ("EDDY_LOG", "info")];
    let o = eddy_env(&c.master.addr, &env, &["fs", "cat", "/f"]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(stdout_ok(o, "cat") == data, "the bytes came over TCP");
    assert_eq!(
        err.matches("fell back to TCP").count(),
        1,
        "said once, asked for with EDDY_LOG: {err}"
    );
    assert!(err.contains("libfabric could not be loaded"), "{err}");
}

/// The path a verbs worker takes (providers that register only writable
/// memory), forced on tcp with EDDY_RDMA_WRITABLE=1: segments the worker
/// fills are sealed F_SEAL_FUTURE_WRITE and registered through its kept
/// writable mapping, segments a client filled through a private view.
/// Both read back by RDMA and by short-circuit, byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_writable_registration_path_reads_back_every_way() {
    let dir = tempfile::tempdir().unwrap();
    let master = common::MasterProc::start(dir.path(), SMALL_BLOCKS);
    let sock = dir.path().join("w0.sock");
    let extra = format!("domain_socket = {:?}\n{RDMA}", sock.display().to_string());
    let w = common::WorkerProc::start_full(
        dir.path(),
        &master.addr,
        "127.0.0.1:0",
        &extra,
        &[("EDDY_RDMA_WRITABLE", "1")],
    );
    let c = Cluster {
        master,
        workers: vec![w],
        dir: dir.path().to_path_buf(),
    };
    let (tcp, local) = (c.fs().await, c.fs_local().await);
    let mut files = Vec::new();
    for (i, &size) in file_shapes(BS).iter().enumerate() {
        for (fs, by) in [(&tcp, "worker"), (&local, "client")] {
            let path = format!("/{by}-{size}");
            let data = pattern(size as usize, i as u64 + 40);
            put(fs, &path, &data, pb::WriteType::MustCache).await;
            files.push((path, data));
        }
    }
    // The worker maps what it filled writable (shared), what a client
    // filled read-only.
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", c.workers[0].pid())).unwrap();
    let mapped = |perms: &str| {
        maps.lines()
            .filter(|l| l.contains("memfd:eddy-write-") && l.contains(perms))
            .count() as u64
    };
    let blocks: u64 = file_shapes(BS).iter().map(|s| s.div_ceil(BS)).sum();
    assert_eq!(
        mapped(" rw-s "),
        blocks,
        "worker-filled: kept writable\n{maps}"
    );
    assert_eq!(mapped(" r--s "), blocks, "client-filled: read-only\n{maps}");
    let rdma = rdma_client(&c).await;
    let reader = c.fs_local().await;
    for (path, data) in &files {
        assert!(get(&rdma, path).await == *data, "{path} over RDMA");
        assert!(get(&reader, path).await == *data, "{path} by short-circuit");
    }
    let s = rdma.transport_stats();
    assert_eq!((s.tcp_bytes, s.rdma_fallbacks), (0, 0), "{s:?}");
    let total: u64 = files.iter().map(|(_, d)| d.len() as u64).sum();
    assert_eq!(s.rdma_bytes, total);
    let r = reader.transport_stats();
    assert_eq!(r.short_circuit_bytes, total, "{r:?}");
    assert!(
        c.stat_sum(&tcp, "leased_bytes").await >= total,
        "short-circuit leases"
    );
    assert_eq!(c.stat_sum(&tcp, "rdma_registration_failures").await, 0);
    // The worker's metrics show the fabric: its provider, the regions the
    // client's cached leases keep open, the progress thread's polls.
    let m = common::scrape(&c.workers[0].metrics);
    let value = |prefix: &str| {
        m.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
    };
    assert!(value("eddy_worker_rdma_registrations{") >= Some(1.0), "{m}");
    assert!(
        value("eddy_worker_rdma_progress_polls_total{") > Some(0.0),
        "{m}"
    );
    let info = m.lines().find(|l| l.starts_with("eddy_worker_info{"));
    assert!(
        info.is_some_and(|l| l.contains("rdma_provider=\"tcp;ofi_rxm\"")),
        "{m}"
    );
}

/// A client process killed with SIGKILL while it holds remote leases: its
/// connection closes and the worker frees them at once, long before their
/// lifetime ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_killed_holding_remote_leases_frees_them() {
    let dir = tempfile::tempdir().unwrap();
    let long = format!("{RDMA}lease_ttl_ms = 600000\n");
    let c = Cluster::start(dir.path(), 1, SMALL_BLOCKS, &long);
    let fs = c.fs().await;
    let data = pattern(16 * BS as usize, 4);
    put(&fs, "/big", &data, pb::WriteType::MustCache).await;
    // Its stdout is a pipe nobody reads: it blocks mid-file, leases held.
    let mut cat = std::process::Command::new(common::EDDY)
        .args(["--master", &c.master.addr, "fs", "cat", "/big"])
        .env("EDDY_TRANSPORT", "rdma")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    eventually(
        Duration::from_secs(20),
        "the client holds leases",
        || async { c.stat_sum(&fs, "rdma_leases").await > 0 },
    )
    .await;
    cat.kill().unwrap();
    cat.wait().unwrap();
    eventually(Duration::from_secs(20), "its leases are freed", || async {
        c.stat_sum(&fs, "rdma_leases").await == 0
    })
    .await;
    assert!(get(&fs, "/big").await == data, "the worker still serves");
}

/// `read_at_owned`: positioned reads into a caller's buffer, which RDMA
/// reads land in directly once it is registered (on its first RDMA read);
/// across blocks, at the end of the file, and the same bytes by TCP and
/// short-circuit into unregistered buffers.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn owned_reads_land_in_the_callers_registered_buffer() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path(), 1, SMALL_BLOCKS, RDMA);
    let len = 3 * BS as usize + BS as usize / 2;
    let data = pattern(len, 21);
    put(&c.fs().await, "/o", &data, pb::WriteType::MustCache).await;
    let fs = rdma_client(&c).await;
    let r = fs.open("/o", &Default::default()).await.unwrap();
    let mut buf = eddy_client::ReadBuf::new(BS as usize * 5 / 2);
    assert!(!buf.is_registered());
    for pos in [0u64, 7, BS - 1, BS, 2 * BS + 99] {
        let (back, n) = r.read_at_owned(pos, buf).await;
        buf = back;
        let n = n.unwrap();
        let want = (len - pos as usize).min(buf.capacity());
        assert_eq!(n, want, "at {pos}");
        assert!(
            buf.as_slice()[..n] == data[pos as usize..pos as usize + n],
            "bytes at {pos}"
        );
        assert!(buf.is_registered(), "registered by its first RDMA read");
    }
    let (back, n) = r.read_at_owned(len as u64, buf).await;
    assert_eq!(n.unwrap(), 0, "at the end of the file");
    buf = back;
    let s = fs.transport_stats();
    assert_eq!((s.tcp_bytes, s.rdma_fallbacks), (0, 0), "{s:?}");
    assert!(s.rdma_bytes > 0);
    // TCP and short-circuit readers fill the same kind of buffer.
    let tcp = ClientOptions {
        transport: TransportMode::Tcp,
        ..Default::default()
    };
    let tcp = FileSystem::connect_with(&c.master.addr, tcp).await.unwrap();
    for other in [tcp, c.fs_local().await] {
        let r = other.open("/o", &Default::default()).await.unwrap();
        let (back, n) = r.read_at_owned(5, eddy_client::ReadBuf::new(len)).await;
        assert_eq!(n.unwrap(), len - 5);
        assert!(back.as_slice()[..len - 5] == data[5..]);
        assert!(!back.is_registered());
    }
    drop(buf);
}

/// Eviction passes over remotely leased blocks: they stay cached and their
/// keys read the same bytes while newer blocks are evicted around them,
/// and become evictable again when the lease ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eviction_waits_for_remote_leases() {
    let dir = tempfile::tempdir().unwrap();
    let mem = format!("{RDMA}memory_capacity = {}\n", 4 * BS);
    let c = Cluster::start(dir.path(), 1, SMALL_BLOCKS, &mem);
    // TCP only: this client's own remote leases would pin blocks too.
    let tcp = ClientOptions {
        transport: TransportMode::Tcp,
        ..Default::default()
    };
    let fs = FileSystem::connect_with(&c.master.addr, tcp).await.unwrap();
    let a = pattern(2 * BS as usize, 1);
    put(&fs, "/a", &a, pb::WriteType::CacheThrough).await;
    let info = fs.master().file_blocks("/a").await.unwrap();
    let items = info
        .blocks
        .iter()
        .map(|b| whole_block(b, &info.block_token, None))
        .collect();
    let mut s = data_conn(&c.workers[0].addr).await;
    let ok = ask(&mut s, items, true).await.unwrap();
    assert!(ok.grants.iter().all(|g| g.code == 0), "{:?}", ok.grants);
    // Whether reading /a takes the under-storage (its blocks were evicted).
    let read_from_ufs = || async {
        let before = c.stat_sum(&fs, "ufs_reads").await;
        assert!(get(&fs, "/a").await == a);
        c.stat_sum(&fs, "ufs_reads").await > before
    };
    // Three more files of two blocks through a four-block memory tier.
    for (i, p) in ["/b", "/c", "/d"].into_iter().enumerate() {
        put(
            &fs,
            p,
            &pattern(2 * BS as usize, 10 + i as u64),
            pb::WriteType::CacheThrough,
        )
        .await;
    }
    assert!(
        c.stat_sum(&fs, "evictions").await >= 4,
        "newer blocks evicted"
    );
    let mut o = FabricOptions::new("tcp;ofi_rxm");
    o.node = Some("127.0.0.1".into());
    let fabric = Fabric::open_with(&o).unwrap();
    let peer = fabric
        .connect(&ok.fabric.as_ref().unwrap().address)
        .unwrap();
    for (i, g) in ok.grants.iter().enumerate() {
        let key = RemoteKey {
            addr_or_offset: g.addr,
            len: g.region_len,
            key: g.key,
        };
        let (buf, r) = fabric.read(fabric.alloc_buf(BS as usize).unwrap(), peer, &key, 0);
        r.unwrap();
        let want = &a[i * BS as usize..(i + 1) * BS as usize];
        assert!(buf.unwrap().as_slice() == want, "block {i} while leased");
    }
    assert!(!read_from_ufs().await, "the leased blocks stayed cached");
    // Released (the connection ends): the next writes may evict them.
    drop(s);
    eventually(Duration::from_secs(10), "leases freed", || async {
        c.stat_sum(&fs, "rdma_leases").await == 0
    })
    .await;
    // More than the tier holds, whatever the order of eviction.
    for p in ["/e", "/f", "/g"] {
        put(
            &fs,
            p,
            &pattern(2 * BS as usize, 30),
            pb::WriteType::CacheThrough,
        )
        .await;
    }
    assert!(read_from_ufs().await, "evictable again once released");
}

/// A worker killed while a client reads from it over RDMA: the client
/// fails over as on TCP (here to the other worker, which fills the blocks
/// from under-storage), and every byte is right.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_killed_mid_read_is_failed_over() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Cluster::start(dir.path(), 2, SMALL_BLOCKS, RDMA);
    let len = 6 * BS as usize;
    let data = pattern(len, 8);
    put(&c.fs().await, "/f", &data, pb::WriteType::CacheThrough).await;
    let fs = rdma_client(&c).await;
    let r = fs.open("/f", &Default::default()).await.unwrap();
    let mut got = vec![0u8; len];
    let half = len / 2;
    assert_eq!(r.read_at(0, &mut got[..half]).await.unwrap(), half);
    assert!(fs.transport_stats().rdma_bytes > 0, "read by RDMA so far");
    // Kill the worker that holds the file's blocks.
    let info = fs.master().file_blocks("/f").await.unwrap();
    let l = &info.blocks[half / BS as usize].locations[0];
    let holder = format!("{}:{}", l.host, l.data_port);
    let i = c.workers.iter().position(|w| w.addr == holder).unwrap();
    c.workers.remove(i).kill9();
    assert_eq!(
        r.read_at(half as u64, &mut got[half..]).await.unwrap(),
        len - half
    );
    assert!(got == data, "every byte right after the failover");
}

/// A sequential reader has the next range of its block read ahead while
/// it works on this one; a read that finds its range read ahead takes it,
/// one that does not (after a seek) lets it go and reads its own. The
/// bytes are right either way; positioned reads read only what they ask.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sequential_reads_are_read_ahead_and_a_seek_lets_it_go() {
    use std::io::SeekFrom;
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path(), 1, SMALL_BLOCKS, RDMA);
    let len = 2 * BS as usize + BS as usize / 2 + 3;
    let data = pattern(len, 17);
    put(&c.fs().await, "/s", &data, pb::WriteType::MustCache).await;
    let fs = rdma_client(&c).await;
    let mut r = fs.open("/s", &Default::default()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = r.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    assert!(got == data, "sequential bytes");
    let s = fs.transport_stats();
    assert_eq!((s.tcp_bytes, s.rdma_fallbacks), (0, 0), "{s:?}");
    // 16 reads per whole block, the first of each not read ahead.
    assert!(s.rdma_read_ahead >= 2 * 15, "{s:?}");

    let hits = || fs.transport_stats().rdma_read_ahead;
    let mut r = fs.open("/s", &Default::default()).await.unwrap();
    let mut small = vec![0u8; 50_000];
    let before = hits();
    r.read(&mut buf).await.unwrap();
    r.seek(SeekFrom::Start(300_000)).unwrap();
    assert_eq!(r.read(&mut small).await.unwrap(), small.len());
    assert!(small[..] == data[300_000..350_000], "after a seek");
    assert_eq!(hits(), before, "the range read ahead was not the one asked");
    assert_eq!(r.read(&mut small).await.unwrap(), small.len());
    assert!(
        small[..] == data[350_000..400_000],
        "read ahead after the seek"
    );
    assert_eq!(hits(), before + 1);
    // Positioned reads, even back to back, are not read ahead.
    for at in [0u64, 50_000, 100_000] {
        assert_eq!(r.read_at(at, &mut small).await.unwrap(), small.len());
        assert!(small[..] == data[at as usize..at as usize + 50_000]);
    }
    assert_eq!(hits(), before + 1);
    let s = fs.transport_stats();
    assert_eq!((s.tcp_bytes, s.rdma_fallbacks), (0, 0), "{s:?}");
}
