//! The data plane end to end: a real master and real workers (separate
//! processes on loopback), driven through the client library.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{
    Cluster, MasterProc, WRITE_TYPES, WorkerProc, eventually, file_shapes, get, memfds, pattern,
    put,
};
use eddy_client::{CreateOptions, EddyCode, FileSystem, OpenOptions, ReadType, pb};

const BS: u64 = 1 << 20;
const SMALL_BLOCKS: &str = "default_block_size = 1048576";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_size_and_write_type_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path(), 2, SMALL_BLOCKS, "");
    let fs = c.fs().await;
    let sizes = file_shapes(BS);
    for (wt, name) in WRITE_TYPES {
        for (i, &size) in sizes.iter().enumerate() {
            let path = format!("/{name}-{size}");
            let data = pattern(size as usize, i as u64 + 1);
            let st = put(&fs, &path, &data, wt).await;
            assert!(st.complete);
            assert_eq!(st.length, size);
            assert_eq!(st.persisted, wt != pb::WriteType::MustCache, "{path}");
            let in_ufs = c.ufs().join(&path[1..]);
            if wt == pb::WriteType::MustCache {
                assert!(!in_ufs.exists(), "{path} is not persisted");
            } else {
                assert_eq!(
                    std::fs::read(&in_ufs).unwrap(),
                    data,
                    "{path} in the under-storage"
                );
            }
            if wt == pb::WriteType::Through && size > 0 {
                assert_eq!(
                    fs.stat(&path).await.unwrap().percent_cached,
                    0,
                    "THROUGH caches nothing"
                );
            }
            // A fresh client (no metadata cache) reads the same bytes.
            let other = c.fs().await;
            assert_eq!(get(&other, &path).await, data, "{path} reads back");
        }
    }
    // Through files are cached once read.
    eventually(
        Duration::from_secs(5),
        "THROUGH file cached after a read",
        || async { fs.stat("/th-1048576").await.unwrap().percent_cached == 100 },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_gigabyte_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path(), 1, "", "memory_capacity = 1500000000");
    let fs = c.fs().await;
    const CHUNK: usize = 4 << 20;
    const CHUNKS: u64 = 256; // 1 GiB
    let base = pattern(CHUNK, 42);
    let chunk = |i: u64| {
        let mut v = base.clone();
        v[..8].copy_from_slice(&i.to_le_bytes());
        v[CHUNK - 8..].copy_from_slice(&(!i).to_le_bytes());
        v
    };
    let mut w = fs.create("/big", &CreateOptions::default()).await.unwrap();
    for i in 0..CHUNKS {
        w.write(&chunk(i)).await.unwrap();
    }
    let st = w.close().await.unwrap();
    assert_eq!(st.length, CHUNKS * CHUNK as u64);
    assert_eq!(st.block_ids.len(), 16, "64 MiB blocks");
    let mut r = fs.open("/big", &OpenOptions::default()).await.unwrap();
    let mut buf = vec![0u8; CHUNK];
    for i in 0..CHUNKS {
        let mut got = 0;
        while got < CHUNK {
            let n = r.read(&mut buf[got..]).await.unwrap();
            assert!(n > 0, "short file at chunk {i}");
            got += n;
        }
        assert!(buf == chunk(i), "chunk {i} differs");
    }
    assert_eq!(r.read(&mut buf).await.unwrap(), 0, "end of file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn positioned_reads_from_eight_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path(), 2, SMALL_BLOCKS, "");
    let fs = c.fs().await;
    let len = 5 * BS as usize + 123;
    let data = Arc::new(pattern(len, 7));
    put(&fs, "/pos", &data, pb::WriteType::CacheThrough).await;
    let r = Arc::new(fs.open("/pos", &OpenOptions::default()).await.unwrap());
    let mut tasks = Vec::new();
    for t in 0..8u64 {
        let (r, data) = (r.clone(), data.clone());
        tasks.push(tokio::spawn(async move {
            let mut x = t * 7919 + 1;
            for _ in 0..40 {
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
            // Past the end: nothing, no error.
            assert_eq!(r.read_at(len as u64 + 10, &mut [0u8; 4]).await.unwrap(), 0);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn second_reads_hit_the_cache_and_cold_misses_fill_once() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path(), 2, SMALL_BLOCKS, "");
    std::fs::create_dir_all(c.ufs()).unwrap();
    let data = pattern(3 * BS as usize, 3);
    std::fs::write(c.ufs().join("lake.bin"), &data).unwrap();
    let fs = c.fs().await;
    let before = c.stat_sum(&fs, "ufs_reads").await;
    assert_eq!(get(&fs, "/lake.bin").await, data);
    assert_eq!(
        c.stat_sum(&fs, "ufs_reads").await - before,
        3,
        "one read per block"
    );
    let again = c.fs().await;
    assert_eq!(get(&again, "/lake.bin").await, data);
    assert_eq!(
        c.stat_sum(&fs, "ufs_reads").await - before,
        3,
        "the second read is all hits"
    );
    assert_eq!(fs.stat("/lake.bin").await.unwrap().percent_cached, 100);

    // 16 concurrent readers of one cold block: one under-storage read.
    let cold = pattern(BS as usize, 4);
    std::fs::write(c.ufs().join("cold.bin"), &cold).unwrap();
    let before = c.stat_sum(&fs, "ufs_reads").await;
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let fs = c.fs().await;
        let cold = cold.clone();
        tasks.push(tokio::spawn(async move {
            assert_eq!(get(&fs, "/cold.bin").await, cold);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(
        c.stat_sum(&fs, "ufs_reads").await - before,
        1,
        "single-flight fill"
    );

    // NO_CACHE reads through without caching.
    std::fs::write(c.ufs().join("nocache.bin"), &cold).unwrap();
    let mut r = fs
        .open(
            "/nocache.bin",
            &OpenOptions {
                read_type: ReadType::NoCache,
            },
        )
        .await
        .unwrap();
    assert_eq!(r.read_to_end().await.unwrap(), cold);
    assert_eq!(fs.stat("/nocache.bin").await.unwrap().percent_cached, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eviction_keeps_every_file_readable_and_spares_pins_and_sole_copies() {
    let dir = tempfile::tempdir().unwrap();
    // 4 MiB of memory for 1 MiB blocks.
    let c = Cluster::start(dir.path(), 1, SMALL_BLOCKS, "memory_capacity = 4194304");
    let fs = c.fs().await;
    let only_here = pattern(BS as usize, 100);
    put(&fs, "/only-here", &only_here, pb::WriteType::MustCache).await;
    std::fs::create_dir_all(c.ufs()).unwrap();
    let files: Vec<Vec<u8>> = (0..8).map(|i| pattern(2 * BS as usize, 200 + i)).collect();
    for (i, d) in files.iter().enumerate() {
        std::fs::write(c.ufs().join(format!("f{i}")), d).unwrap();
    }
    assert_eq!(get(&fs, "/f0").await, files[0]);
    fs.pin("/f0", true).await.unwrap();
    let w = &c.workers[0].addr;
    eventually(
        Duration::from_secs(10),
        "the worker learns the pin",
        || async {
            let s = fs.worker_stats(w).await.unwrap();
            s.iter().any(|(k, v)| k == "pinned_version" && *v > 1)
        },
    )
    .await;
    for round in 0..2 {
        for (i, d) in files.iter().enumerate().skip(1) {
            assert_eq!(
                &get(&fs, &format!("/f{i}")).await,
                d,
                "round {round} file {i}"
            );
        }
    }
    assert!(
        c.stat_sum(&fs, "evictions").await > 0,
        "the budget forced evictions"
    );
    assert!(c.stat_sum(&fs, "memory_used").await <= 4 * BS);
    assert_eq!(
        fs.stat("/f0").await.unwrap().percent_cached,
        100,
        "pinned stays"
    );
    assert_eq!(
        get(&fs, "/only-here").await,
        only_here,
        "a MUST_CACHE sole copy stays"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_killed_in_the_middle_of_a_read_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Cluster::start(dir.path(), 2, SMALL_BLOCKS, "");
    std::fs::create_dir_all(c.ufs()).unwrap();
    let data = pattern(6 * BS as usize, 9);
    std::fs::write(c.ufs().join("f"), &data).unwrap();
    let fs = c.fs().await;
    fs.load("/f", |_| {}).await.unwrap();
    let blocks = fs.master().file_blocks("/f").await.unwrap().blocks;
    let r = fs.open("/f", &OpenOptions::default()).await.unwrap();
    let mut out = vec![0u8; data.len()];
    r.read_at(0, &mut out[..BS as usize]).await.unwrap();
    // Kill the worker holding block 1 (the next one this reader needs).
    let victim_port = blocks[1].locations[0].data_port;
    let i = c
        .workers
        .iter()
        .position(|w| w.addr.ends_with(&format!(":{victim_port}")))
        .unwrap();
    c.workers.remove(i).kill9();
    r.read_at(BS, &mut out[BS as usize..]).await.unwrap();
    assert!(out == data, "the read completed with the right bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn workers_re_register_after_a_master_restart_and_their_own() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path(), 1, SMALL_BLOCKS, "");
    let fs = c.fs().await;
    let data = pattern(2 * BS as usize + 1, 11);
    put(&fs, "/mem", &data, pb::WriteType::MustCache).await;
    let addr = c.master.addr.clone();
    let Cluster {
        master, workers, ..
    } = c;
    master.kill9();
    let _m = MasterProc::start_bound(dir.path(), &addr, SMALL_BLOCKS);
    let fs = FileSystem::connect(&addr).await.unwrap();
    eventually(
        Duration::from_secs(10),
        "the worker re-registers with its blocks",
        || async {
            let info = fs.master().cluster_info().await.unwrap();
            info.workers.iter().filter(|w| w.live).count() == 1 && info.block_count == 3
        },
    )
    .await;
    assert_eq!(
        get(&fs, "/mem").await,
        data,
        "MUST_CACHE data survived the master restart"
    );

    // A worker restarted on the same address takes its old place.
    let waddr = workers[0].addr.clone();
    for w in workers {
        w.kill9();
    }
    let _w = WorkerProc::start_bound(dir.path(), &addr, &waddr, "");
    let info = fs.master().cluster_info().await.unwrap();
    assert_eq!(info.workers.iter().filter(|w| w.live).count(), 1);
    assert_eq!(
        info.workers.len(),
        1,
        "same host and port: same worker entry"
    );
    // Its memory is gone, so the MUST_CACHE file has no copy left: lost.
    let e = fs
        .open("/mem", &OpenOptions::default())
        .await
        .unwrap()
        .read_to_end()
        .await
        .unwrap_err();
    assert_eq!(e.code(), EddyCode::DataLost, "{e}");
    assert!(fs.stat("/mem").await.unwrap().lost);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn malformed_frames_close_only_their_connection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path(), 1, SMALL_BLOCKS, "");
    let fs = c.fs().await;
    let data = pattern(BS as usize + 7, 5);
    put(&fs, "/ok", &data, pb::WriteType::MustCache).await;
    let w = &c.workers[0].addr;
    let mut big = Vec::new();
    big.extend_from_slice(b"EDDY\x01\x01\0\0");
    big.extend_from_slice(&(1u32 << 30).to_le_bytes());
    let mut unknown = b"EDDY\x01\x63\0\0".to_vec();
    unknown.extend_from_slice(&0u32.to_le_bytes());
    let cases: [&[u8]; 5] = [
        b"GET / HTTP/1.1\r\n\r\n",
        &big,
        &unknown,
        b"EDDY\x01\x01\0\0\x08\0\0\0shortbody",
        b"EDDY",
    ];
    for (i, bytes) in cases.iter().enumerate() {
        let mut s = tokio::net::TcpStream::connect(w).await.unwrap();
        s.write_all(bytes).await.unwrap();
        s.shutdown().await.unwrap();
        let mut rest = Vec::new();
        // The worker answers (at most an error frame) and closes: EOF.
        tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut rest))
            .await
            .unwrap_or_else(|_| panic!("case {i}: connection left open"))
            .ok();
        assert_eq!(get(&fs, "/ok").await, data, "case {i}: others still served");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn free_and_delete_release_segments() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path(), 1, SMALL_BLOCKS, "");
    let pid = c.workers[0].pid();
    let fs = c.fs().await;
    assert_eq!(memfds(&pid.to_string()), 0);
    fs.mkdir("/d", false).await.unwrap();
    let data = pattern(2 * BS as usize, 8);
    for i in 0..5 {
        put(&fs, &format!("/d/f{i}"), &data, pb::WriteType::CacheThrough).await;
    }
    assert_eq!(memfds(&pid.to_string()), 10, "one segment per block");
    let e = fs.free("/d", false, false).await.unwrap_err();
    assert_eq!(e.code(), EddyCode::DirectoryNotEmpty);
    assert_eq!(fs.free("/d/f0", false, false).await.unwrap(), 2);
    fs.free("/d/f1", false, false).await.unwrap();
    eventually(Duration::from_secs(10), "freed segments closed", || async {
        memfds(&pid.to_string()) == 6
    })
    .await;
    assert_eq!(fs.stat("/d/f0").await.unwrap().percent_cached, 0);
    assert_eq!(
        get(&fs, "/d/f0").await,
        data,
        "a freed file reads from the under-storage"
    );
    let mem = pattern(10, 1);
    put(&fs, "/d/mem", &mem, pb::WriteType::MustCache).await;
    let e = fs.free("/d/mem", false, false).await.unwrap_err();
    assert_eq!(e.code(), EddyCode::InvalidArgument, "{e}");
    fs.delete("/d", true).await.unwrap();
    eventually(Duration::from_secs(10), "every segment closed", || async {
        memfds(&pid.to_string()) == 0
    })
    .await;
    assert_eq!(c.stat_sum(&fs, "memory_used").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_requests_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path(), 1, SMALL_BLOCKS, "");
    let fs = c.fs().await;
    let e = fs
        .open("/missing", &OpenOptions::default())
        .await
        .err()
        .unwrap();
    assert_eq!(e.code(), EddyCode::NotFound);
    fs.mkdir("/dir", false).await.unwrap();
    let e = fs
        .open("/dir", &OpenOptions::default())
        .await
        .err()
        .unwrap();
    assert_eq!(e.code(), EddyCode::IsADirectory);
    let w = fs
        .create("/incomplete", &CreateOptions::default())
        .await
        .unwrap();
    let e = fs
        .open("/incomplete", &OpenOptions::default())
        .await
        .err()
        .unwrap();
    assert_eq!(e.code(), EddyCode::FileIncomplete);
    w.cancel().await.unwrap();
    assert!(
        !fs.master().exists("/incomplete").await.unwrap(),
        "cancel removes the file"
    );
    put(&fs, "/once", b"x", pb::WriteType::MustCache).await;
    let e = fs
        .create("/once", &CreateOptions::default())
        .await
        .err()
        .unwrap();
    assert_eq!(e.code(), EddyCode::AlreadyExists, "files are write-once");
    let mut r = fs.open("/once", &OpenOptions::default()).await.unwrap();
    assert!(r.seek(std::io::SeekFrom::Current(-5)).is_err());
    assert_eq!(r.seek(std::io::SeekFrom::End(5)).unwrap(), 6);
    assert_eq!(
        r.read(&mut [0u8; 4]).await.unwrap(),
        0,
        "reading past the end gives 0"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cli_moves_bytes_and_reports_errors_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path(), 2, SMALL_BLOCKS, "");
    let run = |args: &[&str]| c.master.cli(args);
    let ok = |args: &[&str]| {
        let o = run(args);
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let local = dir.path().join("tree");
    std::fs::create_dir_all(local.join("sub")).unwrap();
    let a = pattern(3 * BS as usize + 9, 1);
    std::fs::write(local.join("a.bin"), &a).unwrap();
    std::fs::write(local.join("sub/b.txt"), b"hello").unwrap();
    ok(&["fs", "mkdir", "/in"]);
    ok(&[
        "fs",
        "put",
        "--write-type",
        "CACHE_THROUGH",
        local.to_str().unwrap(),
        "/in",
    ]);
    assert_eq!(
        std::fs::read(c.ufs().join("in/tree/a.bin")).unwrap(),
        a,
        "persisted"
    );
    assert_eq!(run(&["fs", "cat", "/in/tree/sub/b.txt"]).stdout, b"hello");
    let count = ok(&["fs", "count", "/in"]);
    assert!(
        count
            .lines()
            .nth(1)
            .unwrap()
            .split_whitespace()
            .eq(["2", "3", &(a.len() + 5).to_string()]),
        "{count}"
    );
    let du = ok(&["fs", "du", "-s", "/in"]);
    assert!(du.contains(&(a.len() + 5).to_string()), "{du}");

    ok(&["fs", "free", "/in"]);
    let fs = c.fs().await;
    assert_eq!(fs.stat("/in/tree/a.bin").await.unwrap().percent_cached, 0);
    let load = ok(&["fs", "load", "/in"]);
    assert!(load.contains("2 files"), "{load}");
    assert_eq!(fs.stat("/in/tree/a.bin").await.unwrap().percent_cached, 100);
    ok(&["fs", "pin", "/in"]);
    assert!(fs.stat("/in/tree/a.bin").await.unwrap().pinned);
    let o = run(&["fs", "free", "/in"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("pinned"));
    ok(&["fs", "free", "-f", "/in"]);
    ok(&["fs", "unpin", "/in"]);

    let back = dir.path().join("back.bin");
    ok(&[
        "fs",
        "copyToLocal",
        "/in/tree/a.bin",
        back.to_str().unwrap(),
    ]);
    assert_eq!(std::fs::read(&back).unwrap(), a);

    // Errors: one line on stderr, a stable code, a non-zero exit.
    let o = run(&["fs", "cat", "/nope"]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("NOT_FOUND"), "{err}");
    let o = run(&["fs", "put", "--write-type", "BOGUS", "x", "/y"]);
    assert_eq!(o.status.code(), Some(2), "bad arguments exit 2");
    let o = run(&[
        "fs",
        "put",
        dir.path().join("missing").to_str().unwrap(),
        "/y",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let o = run(&["fs", "get", "/in/tree/a.bin", "/nonexistent-dir/x"]);
    assert_eq!(o.status.code(), Some(1));
    let report = ok(&["report"]);
    assert!(report.contains("Live workers:   2"), "{report}");
}
