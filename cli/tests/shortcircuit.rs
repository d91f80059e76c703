//! Short-circuit reads: clients on the worker's host map sealed block
//! segments handed over a Unix socket, with leases the worker enforces.

mod common;

use std::io::{BufRead, BufReader};
use std::os::fd::{AsFd, OwnedFd};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::{
    Cluster, WRITE_TYPES, WorkerProc, eventually, file_shapes, memfds, pattern, put, recv_with_fds,
};
use eddy_client::{CreateOptions, EddyCode, FileSystem, OpenOptions, pb};

const BS: u64 = 1 << 20;
const SMALL_BLOCKS: &str = "default_block_size = 1048576";

async fn stat(fs: &FileSystem, c: &Cluster, i: usize, name: &str) -> u64 {
    let s = fs.worker_stats(&c.workers[i].addr).await.unwrap();
    s.iter().find(|(k, _)| k == name).map_or(0, |(_, v)| *v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mapped_reads_match_tcp_reads_for_every_shape() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path(), 1, SMALL_BLOCKS, "");
    let tcp = c.fs().await;
    let local = c.fs_local().await;
    let sizes = file_shapes(BS);
    for (wt, name) in WRITE_TYPES {
        for (i, &size) in sizes.iter().enumerate() {
            let path = format!("/{name}-{size}");
            let data = pattern(size as usize, i as u64 + 10);
            put(&tcp, &path, &data, wt).await;
            let mut r = local.open(&path, &OpenOptions::default()).await.unwrap();
            let via_shm = r.read_to_end().await.unwrap();
            let via_tcp = tcp
                .open(&path, &OpenOptions::default())
                .await
                .unwrap()
                .read_to_end()
                .await
                .unwrap();
            assert!(via_shm == data && via_tcp == data, "{path}");
            if size > 0 {
                assert!(
                    stat(&local, &c, 0, "leases").await >= 1,
                    "{path} was mapped, not streamed"
                );
                // A view straight into shared memory, within the last block.
                let off = size - 1 - (size - 1) % BS;
                let v = r.map_range(off, size - off).await.unwrap();
                assert_eq!(&v[..], &data[off as usize..], "{path} view");
            }
            drop(r);
            eventually(
                Duration::from_secs(10),
                "leases released on close",
                || async { stat(&local, &c, 0, "leases").await == 0 },
            )
            .await;
        }
    }

    let data = pattern(3 * BS as usize, 77);
    put(&tcp, "/v", &data, pb::WriteType::MustCache).await;
    let r = local.open("/v", &OpenOptions::default()).await.unwrap();
    let e = r.map_range(BS - 10, 20).await.err().unwrap();
    assert_eq!(e.code(), EddyCode::InvalidArgument, "{e}");
    assert!(e.to_string().contains("block boundary"), "{e}");
    let e = r.map_range(3 * BS - 1, 2).await.err().unwrap();
    assert_eq!(e.code(), EddyCode::InvalidArgument, "{e}");
    let e = tcp
        .open("/v", &OpenOptions::default())
        .await
        .unwrap()
        .map_range(0, 10)
        .await
        .err()
        .unwrap();
    assert_eq!(e.code(), EddyCode::Unsupported, "{e}");
    // read_at from 8 tasks through the mappings.
    let r = Arc::new(r);
    let data = Arc::new(data);
    let mut tasks = Vec::new();
    for t in 0..8u64 {
        let (r, data) = (r.clone(), data.clone());
        tasks.push(tokio::spawn(async move {
            let mut x = t + 1;
            for _ in 0..50 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                let off = (x >> 24) as usize % data.len();
                let mut buf = vec![0u8; ((x >> 8) as usize % (BS as usize)).max(1)];
                let n = r.read_at(off as u64, &mut buf).await.unwrap();
                assert!(buf[..n] == data[off..off + n]);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

/// Leases some blocks over a raw Unix socket and returns the descriptors.
async fn raw_lease(
    sock: &mut tokio::net::UnixStream,
    blocks: &[(u64, u64)],
    token: &[u8],
) -> (Vec<eddy_wire::LeaseGrant>, Vec<OwnedFd>) {
    use tokio::io::AsyncReadExt;
    let items: Vec<eddy_wire::ReadRequest> = blocks
        .iter()
        .map(|&(block_id, len)| eddy_wire::ReadRequest {
            block_id,
            offset: 0,
            length: len,
            block_length: len,
            file_offset: 0,
            read_type: eddy_wire::ReadType::Cache,
            source: None,
            token: token.to_vec(),
        })
        .collect();
    let s = sock;
    let body = eddy_wire::encode_lease(&items);
    let mut frame = eddy_wire::Header {
        kind: eddy_wire::Kind::Lease,
        body_len: body.len() as u32,
    }
    .encode()
    .to_vec();
    frame.extend_from_slice(&body);
    s.writable().await.unwrap();
    rustix::io::write(s.as_fd(), &frame).unwrap();
    let mut head = [0u8; 12];
    let (got, fds) = recv_with_fds(s, &mut head).await;
    assert_eq!(got, 12);
    let h = eddy_wire::Header::decode(&head).unwrap();
    let mut body = vec![0u8; h.body_len as usize];
    AsyncReadExt::read_exact(s, &mut body).await.unwrap();
    let (_, grants) = eddy_wire::decode_lease_ok(&body).unwrap();
    (grants, fds)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn handed_segments_cannot_be_modified_and_clients_are_limited() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path(), 1, SMALL_BLOCKS, "max_leases_per_client = 4");
    let fs = c.fs().await;
    let data = pattern(6 * BS as usize, 3);
    put(&fs, "/six", &data, pb::WriteType::MustCache).await;
    let st = fs.stat("/six").await.unwrap();
    let blocks: Vec<(u64, u64)> = st.block_ids.iter().map(|&b| (b, BS)).collect();
    let mut sock = common::uds_conn(dir.path().join("w0.sock")).await;
    let token = fs.master().file_blocks("/six").await.unwrap().block_token;
    let (grants, fds) = raw_lease(&mut sock, &blocks, &token).await;
    assert_eq!(fds.len(), 4, "granted up to the per-client limit");
    assert_eq!(grants.iter().filter(|g| g.code == 0).count(), 4);
    assert!(
        grants[4..]
            .iter()
            .all(|g| g.code == EddyCode::NoSpace as i32 as u16),
        "{grants:?}"
    );
    let f = std::fs::File::from(fds.into_iter().next().unwrap());
    // SAFETY: an attempt that must fail; a mapping, had it been made, would
    // be dropped unused.
    let writable = unsafe { memmap2::MmapOptions::new().len(BS as usize).map_mut(&f) };
    assert!(
        writable.is_err(),
        "a writable mapping of a handed segment is refused"
    );
    assert!(f.set_len(0).is_err(), "ftruncate is refused");
    assert!(f.set_len(4 * BS).is_err(), "growing is refused");
    use std::os::unix::fs::FileExt;
    assert!(f.write_at(b"x", 0).is_err(), "write(2) is refused");
    // SAFETY: the segment is sealed, so the read-only mapping cannot change under us.
    let ro = unsafe {
        memmap2::MmapOptions::new()
            .len(BS as usize)
            .map(&f)
            .unwrap()
    };
    assert!(
        ro[..] == data[..BS as usize],
        "the handed bytes are the block"
    );
    drop(ro);
    drop(f);
    assert_eq!(stat(&fs, &c, 0, "leases").await, 4);
    drop(sock);
    eventually(
        Duration::from_secs(10),
        "leases dropped with the connection",
        || async { stat(&fs, &c, 0, "leases").await == 0 },
    )
    .await;

    // Garbage on the socket: an error, that connection only.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut bad = tokio::net::UnixStream::connect(dir.path().join("w0.sock"))
        .await
        .unwrap();
    bad.write_all(b"not a frame at all").await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), bad.read_to_end(&mut rest))
        .await
        .expect("the worker closes a garbage connection")
        .ok();
    let local = c.fs_local().await;
    let mut r = local.open("/six", &OpenOptions::default()).await.unwrap();
    assert_eq!(
        r.read_to_end().await.unwrap(),
        data,
        "others are still served"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn free_and_eviction_wait_for_leases_and_mappings_outlive_the_worker() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path(), 1, SMALL_BLOCKS, "");
    let pid = c.workers[0].pid();
    let tcp = c.fs().await;
    let data = pattern(4 * BS as usize, 5);
    put(&tcp, "/f", &data, pb::WriteType::CacheThrough).await;
    let local = c.fs_local().await;
    let mut r = local.open("/f", &OpenOptions::default()).await.unwrap();
    let mut first = vec![0u8; BS as usize];
    r.read(&mut first).await.unwrap();
    assert!(first == data[..BS as usize]);
    // Free while leased: the reader keeps reading right bytes to the end.
    tcp.free("/f", false, false).await.unwrap();
    eventually(
        Duration::from_secs(10),
        "the worker drops the freed blocks",
        || async { stat(&tcp, &c, 0, "blocks_cached").await == 0 },
    )
    .await;
    assert_eq!(memfds(&pid.to_string()), 4, "leased segments stay alive");
    let rest = r.read_to_end().await.unwrap();
    assert!(
        rest == data[BS as usize..],
        "reading went on from the mappings"
    );
    drop(r);
    eventually(
        Duration::from_secs(10),
        "segments go once the leases end",
        || async { memfds(&pid.to_string()) == 0 },
    )
    .await;

    // A mapping outlives the worker that handed it over.
    let r = local.open("/f", &OpenOptions::default()).await.unwrap();
    let view = r.map_range(BS, BS).await.unwrap();
    let waddr = c.workers[0].addr.clone();
    let master = c.master.addr.clone();
    let Cluster {
        workers,
        master: _m,
        ..
    } = c;
    for w in workers {
        w.kill9();
    }
    assert!(
        view[..] == data[BS as usize..2 * BS as usize],
        "the client's mapping is its own"
    );
    drop(view);
    drop(r);
    let sock = dir.path().join("w0.sock");
    let extra = format!("domain_socket = {:?}", sock.display().to_string());
    let _w = WorkerProc::start_bound(dir.path(), &master, &waddr, &extra);
    let mut again = local.open("/f", &OpenOptions::default()).await.unwrap();
    assert_eq!(
        again.read_to_end().await.unwrap(),
        data,
        "new reads reconnect"
    );
    let s = local.worker_stats(&waddr).await.unwrap();
    assert!(
        s.iter().any(|(k, v)| k == "lease_clients" && *v == 1),
        "{s:?}"
    );
}

/// Helper process for the kill -9 test: holds views on every block of a file
/// until killed. Does nothing unless EDDY_TEST_HOLD is set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holder_process() {
    let Ok(spec) = std::env::var("EDDY_TEST_HOLD") else {
        return;
    };
    let (master, path) = spec.split_once(' ').unwrap();
    let fs = FileSystem::connect(master).await.unwrap();
    let r = fs.open(path, &OpenOptions::default()).await.unwrap();
    let mut views = Vec::new();
    let mut off = 0;
    while off < r.len() {
        let n = (r.len() - off).min(r.block_size());
        views.push(r.map_range(off, n).await.unwrap());
        off += n;
    }
    println!("HOLDING {}", views.len());
    tokio::time::sleep(Duration::from_secs(120)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_client_gives_back_every_lease() {
    let dir = tempfile::tempdir().unwrap();
    // 6 MiB of memory: the held file (3 MiB) must survive pressure while
    // leased, and be evictable again afterwards.
    let c = Cluster::start(dir.path(), 1, SMALL_BLOCKS, "memory_capacity = 6291456");
    let pid = c.workers[0].pid();
    let tcp = c.fs().await;
    std::fs::create_dir_all(c.ufs()).unwrap();
    let held = pattern(3 * BS as usize, 6);
    std::fs::write(c.ufs().join("held"), &held).unwrap();
    let others: Vec<Vec<u8>> = (0..4).map(|i| pattern(2 * BS as usize, 50 + i)).collect();
    for (i, d) in others.iter().enumerate() {
        std::fs::write(c.ufs().join(format!("o{i}")), d).unwrap();
    }
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "holder_process", "--nocapture"])
        .env("EDDY_TEST_HOLD", format!("{} /held", c.master.addr))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let holding = lines
        .by_ref()
        .map_while(Result::ok)
        .find(|l| l.starts_with("HOLDING"))
        .expect("the holder maps the file");
    assert_eq!(holding, "HOLDING 3");
    assert_eq!(stat(&tcp, &c, 0, "leases").await, 3);
    assert_eq!(stat(&tcp, &c, 0, "lease_clients").await, 1);
    // Pressure while leased: the held blocks stay.
    for (i, d) in others.iter().enumerate() {
        let got = tcp
            .open(format!("/o{i}"), &OpenOptions::default())
            .await
            .unwrap()
            .read_to_end()
            .await
            .unwrap();
        assert!(&got == d);
    }
    assert_eq!(
        tcp.stat("/held").await.unwrap().percent_cached,
        100,
        "leased blocks are not evicted"
    );

    // The worker's descriptors with the holder connected (its socket is one).
    let fds_before = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
        - 1;
    child.kill().unwrap();
    child.wait().unwrap();
    drop(lines);
    eventually(
        Duration::from_secs(10),
        "the dead client's leases and socket are gone",
        || async {
            stat(&tcp, &c, 0, "leases").await == 0
                && stat(&tcp, &c, 0, "lease_clients").await == 0
                && std::fs::read_dir(format!("/proc/{pid}/fd"))
                    .unwrap()
                    .count()
                    <= fds_before
        },
    )
    .await;
    // Under pressure again, those blocks can go now.
    for (i, d) in others.iter().enumerate() {
        let got = tcp
            .open(format!("/o{i}"), &OpenOptions::default())
            .await
            .unwrap()
            .read_to_end()
            .await
            .unwrap();
        assert!(&got == d);
    }
    eventually(
        Duration::from_secs(10),
        "the once-leased blocks were evicted",
        || async { tcp.stat("/held").await.unwrap().percent_cached < 100 },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_expired_lease_is_asked_for_again() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path(), 1, SMALL_BLOCKS, "lease_ttl_ms = 300");
    let tcp = c.fs().await;
    let data = pattern(2 * BS as usize, 9);
    put(&tcp, "/f", &data, pb::WriteType::MustCache).await;
    let local = c.fs_local().await;
    let r = local.open("/f", &OpenOptions::default()).await.unwrap();
    let mut buf = vec![0u8; 10];
    r.read_at(0, &mut buf).await.unwrap();
    assert_eq!(
        stat(&tcp, &c, 0, "leases").await,
        2,
        "both blocks leased in one round trip"
    );
    eventually(
        Duration::from_secs(10),
        "the worker ends leases past their lifetime",
        || async { stat(&tcp, &c, 0, "leases").await == 0 },
    )
    .await;
    r.read_at(BS, &mut buf).await.unwrap();
    assert!(buf[..] == data[BS as usize..BS as usize + 10]);
    assert!(
        stat(&tcp, &c, 0, "leases").await >= 1,
        "the client leased again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shared_memory_writes_store_the_same_bytes_for_every_shape_and_type() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path(), 1, SMALL_BLOCKS, "");
    let tcp = c.fs().await;
    let local = c.fs_local().await;
    let pid = c.workers[0].pid();
    let sizes = file_shapes(BS);
    for (wt, name) in WRITE_TYPES {
        for (i, &size) in sizes.iter().enumerate() {
            let path = format!("/w-{name}-{size}");
            let data = pattern(size as usize, i as u64 + 40);
            let before = stat(&tcp, &c, 0, "blocks_written").await;
            let o = CreateOptions {
                write_type: wt,
                ..Default::default()
            };
            let mut w = local.create(&path, &o).await.unwrap();
            for chunk in data.chunks(700_001) {
                w.write(chunk).await.unwrap();
            }
            let st = w.close().await.unwrap();
            assert_eq!(st.length, size);
            assert_eq!(st.persisted, wt != pb::WriteType::MustCache);
            let cached_blocks = if wt == pb::WriteType::Through {
                0
            } else {
                size.div_ceil(BS)
            };
            assert_eq!(
                stat(&tcp, &c, 0, "blocks_written").await - before,
                cached_blocks,
                "{path}: written through shared memory, block by block"
            );
            let in_ufs = c.ufs().join(&path[1..]);
            if wt == pb::WriteType::MustCache {
                assert!(!in_ufs.exists());
            } else {
                assert!(
                    std::fs::read(&in_ufs).unwrap() == data,
                    "{path} persisted from the segments"
                );
            }
            for fs in [&tcp, &local] {
                let got = fs
                    .open(&path, &OpenOptions::default())
                    .await
                    .unwrap()
                    .read_to_end()
                    .await
                    .unwrap();
                assert!(got == data, "{path} reads back");
            }
        }
    }
    // Every segment is either cached or gone: none leaked by the writes.
    let cached = stat(&tcp, &c, 0, "blocks_cached").await as usize;
    eventually(Duration::from_secs(10), "no leaked segments", || async {
        memfds(&pid.to_string()) == cached
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_segment_still_mapped_writable_cannot_be_committed() {
    use tokio::io::AsyncReadExt;
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path(), 1, SMALL_BLOCKS, "");
    let tcp = c.fs().await;
    let created = tcp
        .master()
        .create_file_full("/raw", &CreateOptions::default())
        .await
        .unwrap();
    let st = created.status.unwrap();
    let mut s = common::uds_conn(dir.path().join("w0.sock")).await;
    let open = eddy_wire::WriteOpen {
        file_id: st.id,
        block_size: BS,
        write_type: eddy_wire::WriteType::MustCache,
        target: None,
        token: created.block_token.clone(),
    };
    eddy_wire::write_frame(&mut s, eddy_wire::Kind::WriteOpen, &open.encode())
        .await
        .unwrap();
    assert!(
        eddy_wire::expect(&mut s, eddy_wire::Kind::Ok)
            .await
            .unwrap()
            .is_ok()
    );
    eddy_wire::write_frame(
        &mut s,
        eddy_wire::Kind::SegmentRequest,
        &eddy_wire::u64_body(BS),
    )
    .await
    .unwrap();
    // Receive the segment's descriptor.
    let mut head = [0u8; 28];
    let (n, fds) = recv_with_fds(&s, &mut head).await;
    assert_eq!(n, 28, "SegmentOk: header and two u64s");
    let fd: OwnedFd = fds.into_iter().next().unwrap();
    let (id, cap) = eddy_wire::decode_u64_pair(eddy_wire::Kind::SegmentOk, &head[12..]).unwrap();
    assert_eq!(cap, BS);
    let f = std::fs::File::from(fd);
    // SAFETY: the worker created this segment for this client and does not
    // touch it before the commit below.
    let mut map = unsafe {
        memmap2::MmapOptions::new()
            .len(BS as usize)
            .map_mut(&f)
            .unwrap()
    };
    map[..5].copy_from_slice(b"hello");
    let commit = eddy_wire::u64_pair(id, 5);
    eddy_wire::write_frame(&mut s, eddy_wire::Kind::SegmentCommit, &commit)
        .await
        .unwrap();
    let e = eddy_wire::expect(&mut s, eddy_wire::Kind::Ok)
        .await
        .unwrap()
        .unwrap_err();
    assert!(e.message.contains("unmap"), "{e:?}");
    // Unmapped, a new segment commits; the old descriptor is now read-only forever.
    drop(map);
    eddy_wire::write_frame(
        &mut s,
        eddy_wire::Kind::SegmentRequest,
        &eddy_wire::u64_body(BS),
    )
    .await
    .unwrap();
    let h = eddy_wire::read_header(&mut s).await.unwrap();
    let mut body = vec![0u8; h.body_len as usize];
    s.read_exact(&mut body).await.unwrap();
    assert_eq!(h.kind, eddy_wire::Kind::SegmentOk);
}

/// Helper process for `another_os_user_leases_with_its_own_tokens`, run as
/// that user: leases without a token and with a tampered one (refused),
/// then reads the file through a client and compares. Does nothing unless
/// EDDY_TEST_OTHER_USER is set ("MASTER SOCKET PATH LEN SEED").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_user_process() {
    let Ok(spec) = std::env::var("EDDY_TEST_OTHER_USER") else {
        return;
    };
    let f: Vec<&str> = spec.split(' ').collect();
    let (master, socket, path) = (f[0], f[1], f[2]);
    let data = pattern(f[3].parse().unwrap(), f[4].parse().unwrap());
    let fs = FileSystem::connect(master).await.unwrap();
    let fb = fs.master().file_blocks(path).await.unwrap();
    let blocks: Vec<(u64, u64)> = fb.blocks.iter().map(|b| (b.block_id, b.length)).collect();
    let mut tampered = fb.block_token.clone();
    *tampered.last_mut().unwrap() ^= 1;
    let mut sock = common::uds_conn(socket).await;
    for (what, token) in [("no token", Vec::new()), ("a tampered token", tampered)] {
        let (grants, fds) = raw_lease(&mut sock, &blocks, &token).await;
        assert!(fds.is_empty(), "{what}: no descriptor");
        for g in grants {
            assert_eq!(
                g.code,
                EddyCode::PermissionDenied as i32 as u16,
                "{what}: {g:?}"
            );
        }
    }
    let mut r = fs.open(path, &OpenOptions::default()).await.unwrap();
    assert!(r.read_to_end().await.unwrap() == data, "bytes differ");
    println!(
        "read {} bytes as {}",
        data.len(),
        eddy_client::Credentials::current_user().user
    );
}

/// A co-located client run by another OS user than the worker's reaches
/// the socket (0666, its directory traversable) and leases with its own
/// tokens; without or with a wrong token it gets nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn another_os_user_leases_with_its_own_tokens() {
    if !common::users::users() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path(), 1, SMALL_BLOCKS, "");
    let tcp = c.fs().await;
    let data = pattern(2 * BS as usize + 5, 31);
    put(&tcp, "/shared", &data, pb::WriteType::MustCache).await;
    let sock = dir.path().join("w0.sock");
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&sock), 0o666, "every local user may connect");
    let state = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        // The under-storage directory is the test's, not the servers'.
        .filter(|p| p.is_dir() && *p != c.ufs())
        .collect::<Vec<_>>();
    assert!(!state.is_empty());
    for d in &state {
        assert_eq!(mode(d) & 0o077, 0, "{} stays private", d.display());
    }
    let granted = stat(&tcp, &c, 0, "leases_granted").await;
    let served = stat(&tcp, &c, 0, "bytes_served").await;
    let spec = format!(
        "{} {} /shared {} 31",
        c.master.addr,
        sock.display(),
        data.len()
    );
    let out = common::users::as_user(
        "eddy-alice",
        std::env::current_exe().unwrap().to_str().unwrap(),
    )
    .args([
        "--exact",
        "other_user_process",
        "--nocapture",
        "--test-threads=1",
    ])
    .env("EDDY_TEST_OTHER_USER", spec)
    .output()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("as eddy-alice"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stat(&tcp, &c, 0, "leases_granted").await,
        granted + 3,
        "every block leased"
    );
    assert_eq!(
        stat(&tcp, &c, 0, "bytes_served").await,
        served,
        "none streamed"
    );
}

/// With a write pool, writes after the first take segments allocated
/// ahead, over TCP and short-circuit alike; every file reads back as
/// written (CACHE_THROUGH ones from the under-storage too, once freed),
/// and deleting them leaves only the pool's stock open.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_through_the_write_pool_read_back_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let pool = 4 * BS;
    let c = Cluster::start(
        dir.path(),
        1,
        SMALL_BLOCKS,
        &format!("write_pool_bytes = {pool}"),
    );
    let tcp = c.fs().await;
    let local = c.fs_local().await;
    let pid = c.workers[0].pid().to_string();
    let stocked = || async { stat(&tcp, &c, 0, "write_pool_bytes").await == pool };
    put(&tcp, "/first", &pattern(10, 1), pb::WriteType::MustCache).await;
    eventually(Duration::from_secs(10), "the pool fills", stocked).await;
    let mut files = Vec::new();
    for (i, (fs, wt)) in [
        (&tcp, pb::WriteType::MustCache),
        (&local, pb::WriteType::MustCache),
        (&tcp, pb::WriteType::CacheThrough),
        (&local, pb::WriteType::CacheThrough),
    ]
    .into_iter()
    .enumerate()
    {
        let path = format!("/f{i}");
        let data = pattern(3 * BS as usize - 5, 40 + i as u64);
        put(fs, &path, &data, wt).await;
        files.push((path, data));
        eventually(Duration::from_secs(10), "the pool refills", stocked).await;
    }
    assert!(stat(&tcp, &c, 0, "write_pool_hits").await >= 8);
    for (path, data) in &files {
        let mut r = local.open(path, &OpenOptions::default()).await.unwrap();
        assert_eq!(&r.read_to_end().await.unwrap(), data, "{path} mapped");
        let mut r = tcp.open(path, &OpenOptions::default()).await.unwrap();
        assert_eq!(&r.read_to_end().await.unwrap(), data, "{path} over TCP");
    }
    tcp.free("/f2", false, false).await.unwrap();
    let mut r = tcp.open("/f2", &OpenOptions::default()).await.unwrap();
    assert_eq!(r.read_to_end().await.unwrap(), files[2].1, "from the ufs");
    drop(r);
    for f in ["/first", "/f0", "/f1", "/f2", "/f3"] {
        tcp.delete(f, false).await.unwrap();
    }
    let stock = (pool / BS) as usize;
    eventually(Duration::from_secs(10), "only the stock stays", || async {
        memfds(&pid) == stock
    })
    .await;
}
