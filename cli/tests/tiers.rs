//! Disk tiers end to end: real worker processes with memory over SSD and
//! HDD directories, io_uring (or its fallback) underneath, read through
//! TCP and short-circuit clients.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use common::{Cluster, WorkerProc, eventually, pattern};
use eddy_client::{FileSystem, OpenOptions, ReadType};

const BS: usize = 1 << 20;
const SMALL_BLOCKS: &str = "default_block_size = 1048576";

/// `[worker]` keys: `mem` MiB of memory over the given disk tiers, each
/// tier `(alias, [(dir, MiB)])`. Background promotion is off so tiers only
/// change when a test says so.
fn tiers(mem: u64, tiers: &[(&str, &[(&Path, u64)])]) -> String {
    let mut s = format!(
        "memory_capacity = {}\npromote_interval_ms = 0\ntiers = [\n",
        mem << 20
    );
    for (alias, dirs) in tiers {
        let paths: Vec<String> = dirs
            .iter()
            .map(|(p, _)| format!("{:?}", p.display().to_string()))
            .collect();
        let quotas: Vec<String> = dirs.iter().map(|(_, q)| (q << 20).to_string()).collect();
        s += &format!(
            "  {{ alias = {alias:?}, dirs = [{}], quotas = [{}] }},\n",
            paths.join(", "),
            quotas.join(", ")
        );
    }
    s + "]\n"
}

/// Writes `n` files of `blocks` blocks straight into the under-storage.
fn ufs_files(c: &Cluster, n: usize, blocks: usize) -> Vec<Vec<u8>> {
    std::fs::create_dir_all(c.ufs()).unwrap();
    (0..n)
        .map(|i| {
            let d = pattern(blocks * BS, 500 + i as u64);
            std::fs::write(c.ufs().join(format!("f{i}")), &d).unwrap();
            d
        })
        .collect()
}

async fn read(fs: &FileSystem, path: &str, rt: ReadType) -> Vec<u8> {
    fs.open(path, &OpenOptions { read_type: rt })
        .await
        .unwrap()
        .read_to_end()
        .await
        .unwrap()
}

/// Blocks per tier as the master lists them, over files `f0..fn`.
async fn master_tiers(fs: &FileSystem, n: usize) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for i in 0..n {
        let r = fs.master().file_blocks(format!("/f{i}")).await.unwrap();
        for b in r.blocks {
            for l in b.locations {
                *out.entry(l.tier).or_default() += 1;
            }
        }
    }
    out
}

/// The tier the master lists for file `f{i}`'s first block.
async fn tier_of(fs: &FileSystem, i: usize) -> String {
    let r = fs.master().file_blocks(format!("/f{i}")).await.unwrap();
    r.blocks[0]
        .locations
        .first()
        .map(|l| l.tier.clone())
        .unwrap_or_default()
}

fn stat(stats: &[(String, u64)], name: &str) -> u64 {
    stats.iter().find(|(k, _)| k == name).map_or(0, |(_, v)| *v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn blocks_spill_down_the_tiers_and_every_file_stays_readable() {
    let dir = tempfile::tempdir().unwrap();
    let (ssd, hdd) = (dir.path().join("ssd"), dir.path().join("hdd"));
    let cfg = tiers(4, &[("SSD", &[(&ssd, 6)]), ("HDD", &[(&hdd, 6)])]);
    let c = Cluster::start(dir.path(), 1, SMALL_BLOCKS, &cfg);
    // 20 blocks for 16 blocks of room: memory, SSD and HDD fill, HDD evicts.
    let files = ufs_files(&c, 10, 2);
    let fs = c.fs().await;
    for (i, d) in files.iter().enumerate() {
        assert!(
            read(&fs, &format!("/f{i}"), ReadType::Cache).await == *d,
            "cold f{i}"
        );
    }
    let w = &c.workers[0].addr;
    let s = fs.worker_stats(w).await.unwrap();
    assert!(stat(&s, "demotions") >= 12, "{s:?}");
    assert_eq!(stat(&s, "evictions"), 4, "only the last tier evicts");
    assert!(stat(&s, "memory_used") <= 4 * BS as u64);
    // The master's locations follow the moves (on the next heartbeats).
    eventually(
        Duration::from_secs(10),
        "locations follow the tiers",
        || async {
            let t = master_tiers(&fs, 10).await;
            t.get("MEM") == Some(&4) && t.get("SSD") == Some(&6) && t.get("HDD") == Some(&6)
        },
    )
    .await;

    // Warm reads, over TCP and short-circuit (disk blocks by descriptor),
    // are byte-exact and touch the under-storage only for evicted blocks.
    let ufs_before = stat(&fs.worker_stats(w).await.unwrap(), "ufs_reads");
    let local = c.fs_local().await;
    for (i, d) in files.iter().enumerate().rev() {
        assert!(
            read(&local, &format!("/f{i}"), ReadType::NoCache).await == *d,
            "local f{i}"
        );
        assert!(
            read(&fs, &format!("/f{i}"), ReadType::NoCache).await == *d,
            "tcp f{i}"
        );
    }
    let s = fs.worker_stats(w).await.unwrap();
    assert!(stat(&s, "disk_reads") > 0);
    assert!(
        stat(&s, "leases_granted") >= 16,
        "disk blocks were leased too: {s:?}"
    );
    assert!(
        stat(&s, "ufs_reads") - ufs_before <= 2 * 4,
        "only the four evicted blocks come from the under-storage (twice at most)"
    );

    // A CACHE_PROMOTE read moves a disk block up to memory.
    let mut on_disk = None;
    for i in 0..10 {
        if tier_of(&fs, i).await == "HDD" {
            on_disk = Some(i);
            break;
        }
    }
    let i = on_disk.expect("a file on HDD");
    assert!(read(&fs, &format!("/f{i}"), ReadType::CachePromote).await == files[i]);
    eventually(
        Duration::from_secs(10),
        "the promoted block is listed in memory",
        || async { tier_of(&fs, i).await == "MEM" },
    )
    .await;
    assert!(stat(&fs.worker_stats(w).await.unwrap(), "promotions") >= 1);

    // `eddy report` shows every tier, its directory and the engine.
    let out = c.master.cli(&["report"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for want in [
        "Tier SSD",
        "Tier HDD",
        "io engine: ",
        "MEM",
        &ssd.display().to_string(),
    ] {
        assert!(text.contains(want), "report lacks {want:?}:\n{text}");
    }
    assert!(!text.contains("BAD"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn disk_tier_blocks_survive_a_worker_restart() {
    let dir = tempfile::tempdir().unwrap();
    let ssd = dir.path().join("ssd");
    let cfg = tiers(2, &[("SSD", &[(&ssd, 8)])]);
    let c = Cluster::start(dir.path(), 1, SMALL_BLOCKS, &cfg);
    let files = ufs_files(&c, 6, 1);
    let fs = c.fs().await;
    for (i, d) in files.iter().enumerate() {
        assert!(read(&fs, &format!("/f{i}"), ReadType::Cache).await == *d);
    }
    eventually(
        Duration::from_secs(10),
        "4 blocks listed on SSD",
        || async { master_tiers(&fs, 6).await.get("SSD") == Some(&4) },
    )
    .await;
    // Same address: the worker takes its old place and reports what its
    // directory scan found. Memory is gone, and the master learns so.
    let (_master, w) = c.restart_first_worker(&cfg);
    let t = master_tiers(&fs, 6).await;
    assert_eq!(t.get("SSD"), Some(&4), "{t:?}");
    assert_eq!(t.get("MEM"), None, "{t:?}");
    for (i, d) in files.iter().enumerate() {
        assert!(read(&fs, &format!("/f{i}"), ReadType::Cache).await == *d);
    }
    let s = fs.worker_stats(&w.addr).await.unwrap();
    assert_eq!(
        stat(&s, "ufs_reads"),
        2,
        "only the two memory blocks are read again: {s:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_disk_directory_is_reported_and_reads_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let cfg = tiers(2, &[("SSD", &[(&a, 4), (&b, 4)])]);
    let c = Cluster::start(dir.path(), 1, SMALL_BLOCKS, &cfg);
    let files = ufs_files(&c, 6, 1);
    let fs = c.fs().await;
    for (i, d) in files.iter().enumerate() {
        assert!(read(&fs, &format!("/f{i}"), ReadType::Cache).await == *d);
    }
    // Directory a stops being usable (here: its block folder is replaced by
    // a file, which even root cannot write into).
    let blocks = a.join("eddy-blocks");
    std::fs::remove_dir_all(&blocks).unwrap();
    std::fs::write(&blocks, b"not a directory").unwrap();
    eventually(
        Duration::from_secs(10),
        "report shows the bad directory",
        || async {
            let out = c.master.cli(&["report"]);
            String::from_utf8_lossy(&out.stdout).contains("BAD: ")
        },
    )
    .await;
    // Every file still reads right: lost blocks come from the under-storage,
    // and new demotions go to directory b.
    for round in 0..2 {
        for (i, d) in files.iter().enumerate() {
            assert!(
                read(&fs, &format!("/f{i}"), ReadType::Cache).await == *d,
                "round {round} f{i}"
            );
        }
    }
    let out = c.master.cli(&["report"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("{} ", a.display())) && text.contains("not a directory"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pinned_data_survives_pressure_and_full_tiers_refuse_new_writes() {
    let dir = tempfile::tempdir().unwrap();
    let ssd = dir.path().join("ssd");
    let cfg = tiers(2, &[("SSD", &[(&ssd, 2)])]);
    let c = Cluster::start(dir.path(), 1, SMALL_BLOCKS, &cfg);
    let files = ufs_files(&c, 6, 1);
    let fs = c.fs().await;
    let w = &c.workers[0].addr;
    for (i, d) in files.iter().enumerate().take(2) {
        assert!(read(&fs, &format!("/f{i}"), ReadType::Cache).await == *d);
    }
    // f0 and f1 are pinned to memory; f2 may move down, never out.
    for args in [
        &["fs", "pin", "/f0"][..],
        &["fs", "pin", "/f1"],
        &["fs", "pin", "--allow-demotion", "/f2"],
    ] {
        let out = c.master.cli(args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    eventually(
        Duration::from_secs(10),
        "the worker learns the pins",
        || async { stat(&fs.worker_stats(w).await.unwrap(), "pinned_version") >= 3 },
    )
    .await;
    // Memory is all pinned: new blocks go to the SSD tier instead.
    for (i, d) in files.iter().enumerate().skip(2) {
        assert!(
            read(&fs, &format!("/f{i}"), ReadType::Cache).await == *d,
            "f{i}"
        );
    }
    assert_eq!(tier_of(&fs, 0).await, "MEM");
    assert_eq!(tier_of(&fs, 1).await, "MEM");
    assert_eq!(
        tier_of(&fs, 2).await,
        "SSD",
        "the demotable pin stays on the worker"
    );
    for i in 0..3 {
        assert_eq!(
            fs.stat(format!("/f{i}")).await.unwrap().percent_cached,
            100,
            "pinned f{i} stays"
        );
    }
    let st = fs.stat("/f2").await.unwrap();
    assert!(st.pinned && st.pin_allows_demotion);
    // Every tier is full of pinned data: a MUST_CACHE write is refused with
    // a clear error instead of evicting anything.
    let mut wr = fs
        .create(
            "/new",
            &eddy_client::CreateOptions {
                write_type: eddy_client::pb::WriteType::MustCache,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let data = pattern(3 * BS, 9);
    let e = match wr.write(&data).await {
        Err(e) => e,
        Ok(()) => wr.close().await.unwrap_err(),
    };
    assert_eq!(e.code(), eddy_client::EddyCode::NoSpace, "{e}");
    assert!(e.to_string().contains("pinned"), "{e}");
    // The same code reaches a short-circuit writer.
    let local = c.fs_local().await;
    let mut wr = local
        .create(
            "/new-local",
            &eddy_client::CreateOptions {
                write_type: eddy_client::pb::WriteType::MustCache,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let e = match wr.write(&data).await {
        Err(e) => e,
        Ok(()) => wr.close().await.unwrap_err(),
    };
    assert_eq!(e.code(), eddy_client::EddyCode::NoSpace, "{e}");
    for (i, d) in files.iter().enumerate().take(3) {
        assert!(read(&fs, &format!("/f{i}"), ReadType::Cache).await == *d);
    }
}

#[test]
fn a_bad_tier_layout_stops_the_worker_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("w.toml");
    std::fs::write(
        &cfg,
        "[worker]\nmaster = \"127.0.0.1:1\"\nbind = \"127.0.0.1:0\"\n\
         tiers = [{ alias = \"SSD\", dirs = [\"/a\", \"/b\"], quotas = [1] }]\n",
    )
    .unwrap();
    let out = std::process::Command::new(common::EDDY)
        .arg("--config")
        .arg(&cfg)
        .arg("worker")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("tier SSD has 2 directories but 1 quotas"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_io_uring_the_pread_engine_serves_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let ssd = dir.path().join("ssd");
    let master = common::MasterProc::start(dir.path(), SMALL_BLOCKS);
    let cfg = tiers(1, &[("SSD", &[(&ssd, 8)])]);
    // A host where io_uring cannot run (the failpoint stands in for
    // io_uring_disabled or a seccomp filter).
    let w = WorkerProc::start_full(
        dir.path(),
        &master.addr,
        "127.0.0.1:0",
        &cfg,
        &[("EDDY_FAILPOINT", "io-uring-unavailable")],
    );
    std::fs::create_dir_all(master.ufs()).unwrap();
    let files: Vec<Vec<u8>> = (0..4)
        .map(|i| {
            let d = pattern(BS, 700 + i);
            std::fs::write(master.ufs().join(format!("f{i}")), &d).unwrap();
            d
        })
        .collect();
    let fs = FileSystem::connect_with(
        &master.addr,
        eddy_client::ClientOptions {
            short_circuit: false,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    for _round in 0..2 {
        for (i, d) in files.iter().enumerate() {
            assert!(read(&fs, &format!("/f{i}"), ReadType::Cache).await == *d);
        }
    }
    let s = fs.worker_stats(&w.addr).await.unwrap();
    assert!(stat(&s, "disk_reads") > 0, "{s:?}");
    assert_eq!(stat(&s, "ufs_reads"), 4, "every warm read hit a tier");
    let out = master.cli(&["report"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("io engine: pread (io_uring unavailable: disabled by EDDY_FAILPOINT)"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_write_larger_than_memory_spills_to_disk_over_tcp_and_short_circuit() {
    let dir = tempfile::tempdir().unwrap();
    let ssd = dir.path().join("ssd");
    let cfg = tiers(2, &[("SSD", &[(&ssd, 32)])]);
    let c = Cluster::start(dir.path(), 1, SMALL_BLOCKS, &cfg);
    let tcp = c.fs().await;
    let local = c.fs_local().await;
    // Six blocks each for two blocks of memory: each full block joins the
    // store as it is written, so earlier ones move down to the SSD.
    for (i, fs) in [&tcp, &local].into_iter().enumerate() {
        for wt in [
            eddy_client::pb::WriteType::MustCache,
            eddy_client::pb::WriteType::CacheThrough,
        ] {
            let path = format!("/big-{i}-{}", wt.as_str_name());
            let d = pattern(6 * BS + 77, 900 + i as u64);
            let st = common::put(fs, &path, &d, wt).await;
            assert_eq!(st.length, d.len() as u64);
            assert!(common::get(fs, &path).await == d, "{path}");
        }
    }
    let s = tcp.worker_stats(&c.workers[0].addr).await.unwrap();
    assert!(stat(&s, "memory_used") <= 2 * BS as u64, "{s:?}");
    assert!(stat(&s, "demotions") >= 4 * 4, "{s:?}");
    let out = c.master.cli(&["fs", "ls", "/"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.matches(" 100% ").count(), 4, "all cached:\n{text}");
}
