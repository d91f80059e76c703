//! Room for new blocks: a cache full of blocks it may drop still takes
//! writes over TCP.

mod common;

use std::time::Duration;

use common::{Cluster, eventually, pattern};
use eddy_client::pb::WriteType;
use eddy_client::{CreateOptions, FileSystem};

const MIB: usize = 1 << 20;
/// 1 MiB blocks and heartbeats every 100 ms, so the master's view of the
/// worker's tiers follows quickly.
const MASTER: &str = "default_block_size = 1048576\nworker_heartbeat_interval_ms = 100";

/// Bytes of `tier` used on every live worker, as the master sees them.
async fn master_used(fs: &FileSystem, tier: &str) -> u64 {
    let info = fs.master().cluster_info().await.unwrap();
    info.tiers
        .iter()
        .filter(|t| t.tier == tier)
        .map(|t| t.used_bytes)
        .sum()
}

/// Writes a whole file; the error of `create`, `write` or `close`.
async fn try_put(
    fs: &FileSystem,
    path: &str,
    data: &[u8],
    wt: WriteType,
) -> Result<(), eddy_client::ClientError> {
    let o = CreateOptions {
        write_type: wt,
        ..Default::default()
    };
    let mut w = fs.create(path, &o).await?;
    w.write(data).await?;
    w.close().await.map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_memory_full_of_evictable_blocks_takes_tcp_writes() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(
        dir.path(),
        1,
        MASTER,
        "memory_capacity = 33554432\npromote_interval_ms = 0",
    );
    let fs = c.fs().await;
    // 32 MiB of persisted (CACHE_THROUGH) blocks: memory is full, and every
    // block in it may be dropped (the under-storage has it).
    for i in 0..8 {
        let d = pattern(4 * MIB, 100 + i);
        try_put(&fs, &format!("/old{i}"), &d, WriteType::CacheThrough)
            .await
            .unwrap();
    }
    eventually(
        Duration::from_secs(10),
        "the master sees memory full",
        || {
            let fs = &fs;
            async move { master_used(fs, "MEM").await == 32 * MIB as u64 }
        },
    )
    .await;

    // A fresh write over TCP finds room: the worker drops old blocks.
    let d = pattern(3 * MIB + 5, 7);
    try_put(&fs, "/fresh", &d, WriteType::CacheThrough)
        .await
        .unwrap();
    assert!(common::get(&fs, "/fresh").await == d);

    // Many writers at once against a full cache: none is turned away.
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..16u64 {
        let fs = c.fs().await;
        tasks.spawn(async move {
            let d = pattern(2 * MIB + 3, 1000 + i);
            let path = format!("/many{i}");
            let r = try_put(&fs, &path, &d, WriteType::CacheThrough).await;
            (i, r.map_err(|e| (e.code(), e.to_string())))
        });
    }
    let all = tokio::time::timeout(Duration::from_secs(60), async {
        let mut out = Vec::new();
        while let Some(r) = tasks.join_next().await {
            out.push(r.unwrap());
        }
        out
    })
    .await
    .expect("16 writers finish within a minute");
    for (i, r) in &all {
        assert!(r.is_ok(), "writer {i}: {r:?}");
    }
    for i in 0..16u64 {
        let want = pattern(2 * MIB + 3, 1000 + i);
        assert!(
            common::get(&fs, &format!("/many{i}")).await == want,
            "/many{i}"
        );
    }
    // What was dropped is still readable: the under-storage has it.
    assert!(common::get(&fs, "/old0").await == pattern(4 * MIB, 100));
    let s = fs.worker_stats(&c.workers[0].addr).await.unwrap();
    let evictions = s.iter().find(|(k, _)| k == "evictions").map_or(0, |x| x.1);
    assert!(evictions >= 8, "{s:?}");
}
