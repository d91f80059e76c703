//! The client's reader and writer against a real master and worker running
//! in the test's own process (no `eddy` binary): the same code paths as a
//! deployment, over real loopback sockets and the worker's real Unix
//! socket, with nothing to spawn or reap.

use std::io::SeekFrom;

use eddy_client::{ClientError, ClientOptions, CreateOptions, EddyCode, FileSystem, OpenOptions};
use eddy_master::{MasterConfig, RunningMaster};
use eddy_worker::{RunningWorker, WorkerConfig};

/// Small blocks, so a few hundred KiB already span many of them.
const BLOCK: u64 = 64 * 1024;

struct Cluster {
    master: RunningMaster,
    worker: RunningWorker,
    dir: tempfile::TempDir,
}

impl Cluster {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("ufs")).unwrap();
        let master = eddy_master::start(MasterConfig {
            bind: "127.0.0.1:0".into(),
            metastore_dir: dir.path().join("meta"),
            root_ufs: dir.path().join("ufs").display().to_string(),
            ..Default::default()
        })
        .await
        .unwrap();
        let worker = eddy_worker::start(WorkerConfig {
            security: eddy_proto::auth::SecurityConfig {
                token: master
                    .state
                    .keys
                    .worker_token("eddy-worker", 3_600_000)
                    .unwrap(),
                ..Default::default()
            },
            master: master.addr.to_string(),
            bind: "127.0.0.1:0".into(),
            memory_capacity: 64 << 20,
            domain_socket: dir.path().join("worker.sock").display().to_string(),
            ..Default::default()
        })
        .await
        .unwrap();
        Cluster {
            master,
            worker,
            dir,
        }
    }

    /// The root under-storage directory.
    fn ufs(&self) -> std::path::PathBuf {
        self.dir.path().join("ufs")
    }

    async fn client(&self, short_circuit: bool) -> FileSystem {
        let opts = ClientOptions {
            short_circuit,
            ..Default::default()
        };
        FileSystem::connect_with(&self.master.addr.to_string(), opts)
            .await
            .unwrap()
    }

    async fn stop(self) {
        self.worker.shutdown().await;
        self.master.shutdown().await;
    }
}

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[1] ^ seed)
        .collect()
}

/// Writes `data` to `path` in uneven pieces, so writes straddle blocks.
async fn write(fs: &FileSystem, path: &str, data: &[u8], write_type: eddy_client::pb::WriteType) {
    let opts = CreateOptions {
        block_size: BLOCK,
        write_type,
        ..Default::default()
    };
    let mut w = fs.create(path, &opts).await.unwrap();
    for piece in data.chunks(50_000) {
        w.write(piece).await.unwrap();
    }
    let st = w.close().await.unwrap();
    assert_eq!(st.length, data.len() as u64);
}

/// Ranges that start and end inside blocks, on their edges, and across
/// several of them, read with `read_at`, and `seek` + `read` to the end.
async fn check_reads(fs: &FileSystem, path: &str, data: &[u8]) {
    let mut r = fs.open(path, &OpenOptions::default()).await.unwrap();
    assert_eq!(r.len(), data.len() as u64);
    let b = BLOCK as usize;
    for (at, len) in [
        (0, 10),
        (b - 3, 7),
        (b, b),
        (b / 2, 3 * b + 11),
        (data.len() - 5, 5),
    ] {
        let len = len.min(data.len() - at);
        let mut buf = vec![0u8; len];
        let mut got = 0;
        while got < len {
            let n = r.read_at((at + got) as u64, &mut buf[got..]).await.unwrap();
            assert!(n > 0, "read_at({}) returned 0 before the end", at + got);
            got += n;
        }
        assert!(
            buf == data[at..at + len],
            "bytes at {at}..{} differ",
            at + len
        );
    }
    let mut buf = [0u8; 8];
    assert_eq!(r.read_at(data.len() as u64, &mut buf).await.unwrap(), 0);
    r.seek(SeekFrom::Start(b as u64 + 1)).unwrap();
    let mut rest = Vec::new();
    let mut chunk = vec![0u8; 40_000];
    loop {
        let n = r.read(&mut chunk).await.unwrap();
        if n == 0 {
            break;
        }
        rest.extend_from_slice(&chunk[..n]);
    }
    assert!(rest == data[b + 1..], "seek + read to the end");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_reader_and_writer_move_the_bytes_across_blocks() {
    let c = Cluster::start().await;
    let fs = c.client(false).await;
    let data = pattern(5 * BLOCK as usize + 1234, 1);
    write(
        &fs,
        "/tcp.bin",
        &data,
        eddy_client::pb::WriteType::MustCache,
    )
    .await;
    check_reads(&fs, "/tcp.bin", &data).await;
    // Another client reads what this one wrote.
    check_reads(&c.client(false).await, "/tcp.bin", &data).await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_circuit_reader_writer_and_views_move_the_bytes_across_blocks() {
    let c = Cluster::start().await;
    let fs = c.client(true).await;
    let data = pattern(4 * BLOCK as usize + 99, 2);
    write(&fs, "/sc.bin", &data, eddy_client::pb::WriteType::MustCache).await;
    check_reads(&fs, "/sc.bin", &data).await;
    let r = fs.open("/sc.bin", &OpenOptions::default()).await.unwrap();
    let view = r.map_range(BLOCK + 10, BLOCK - 20).await.unwrap();
    assert!(view[..] == data[BLOCK as usize + 10..2 * BLOCK as usize - 10]);
    // A view may not cross a block.
    let Err(e) = r.map_range(BLOCK - 1, 2).await else {
        panic!("a view across a block edge was granted");
    };
    assert_eq!(e.code(), EddyCode::InvalidArgument, "{e}");
    // What the short-circuit wrote reads the same over TCP.
    check_reads(&c.client(false).await, "/sc.bin", &data).await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_through_write_lands_in_the_under_storage_at_close() {
    let c = Cluster::start().await;
    let fs = c.client(false).await;
    let data = pattern(3 * BLOCK as usize + 7, 3);
    write(
        &fs,
        "/through.bin",
        &data,
        eddy_client::pb::WriteType::CacheThrough,
    )
    .await;
    let on_disk = std::fs::read(c.ufs().join("through.bin")).unwrap();
    assert!(on_disk == data, "the under-storage holds the bytes written");
    check_reads(&fs, "/through.bin", &data).await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_or_dropped_writer_leaves_no_file() {
    let c = Cluster::start().await;
    for short_circuit in [false, true] {
        let fs = c.client(short_circuit).await;
        let opts = CreateOptions {
            block_size: BLOCK,
            ..Default::default()
        };
        let mut w = fs.create("/cancelled", &opts).await.unwrap();
        w.write(&pattern(2 * BLOCK as usize, 4)).await.unwrap();
        w.cancel().await.unwrap();
        let e: ClientError = fs.stat("/cancelled").await.unwrap_err();
        assert_eq!(e.code(), EddyCode::NotFound, "{e}");

        // A dropped writer deletes its file in the background; a new
        // create of the name succeeds once it has.
        let mut w = fs.create("/dropped", &opts).await.unwrap();
        w.write(&pattern(BLOCK as usize + 1, 5)).await.unwrap();
        drop(w);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            match fs.stat("/dropped").await {
                Err(e) if e.code() == EddyCode::NotFound => break,
                Ok(st) => assert!(!st.complete, "a dropped writer never completes its file"),
                Err(e) => panic!("stat: {e}"),
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the dropped file stays"
            );
            tokio::task::yield_now().await;
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let data = pattern(100, 6);
        write(
            &fs,
            "/dropped",
            &data,
            eddy_client::pb::WriteType::MustCache,
        )
        .await;
        fs.delete("/dropped", false).await.unwrap();
    }
    c.stop().await;
}
