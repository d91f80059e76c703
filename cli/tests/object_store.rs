//! An S3 bucket (moto's server on loopback) mounted into Eddy, end to end:
//! real master and worker processes, reads cold and warm, every write type,
//! changes made directly in the bucket, and mount errors.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{Cluster, WRITE_TYPES, eventually, get, pattern, put};
use eddy_client::{EddyCode, FileSystem, pb};
use eddy_ufs::testkit::S3Server;
use eddy_ufs::{UfsPath, UnderFileSystem};

const BS: usize = 1 << 20;
const SMALL_BLOCKS: &str = "default_block_size = 1048576";

fn ufs_path(s: &str) -> UfsPath {
    UfsPath::parse(s).unwrap()
}

async fn worker_stat(fs: &FileSystem, c: &Cluster, name: &str) -> u64 {
    c.stat_sum(fs, name).await
}

/// Mounts `s3://bucket/data` at /s3 through the CLI; returns the bucket
/// as seen directly.
async fn mount(
    c: &Cluster,
    s3: &S3Server,
    bucket: &str,
    sync: &str,
) -> std::sync::Arc<dyn UnderFileSystem> {
    s3.create_bucket(bucket);
    let o = s3.options();
    let uri = format!("s3://{bucket}/data");
    let opts: Vec<String> = o.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut args = vec!["fs", "mount", "--sync-interval", sync];
    for kv in &opts {
        args.extend(["--option", kv.as_str()]);
    }
    args.extend(["/s3", uri.as_str()]);
    let out = c.master.cli(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eddy_ufs::open(&uri, &o).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bucket_reads_cold_then_warm_and_takes_every_write_type() {
    let s3 = S3Server::start();
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path(), 1, SMALL_BLOCKS, "");
    let bucket = mount(&c, &s3, "eddy", "-1").await;
    let fs = c.fs().await;

    // Objects put straight into the bucket show up and read right.
    let data = pattern(3 * BS + 123, 1);
    bucket
        .write(&ufs_path("in/obj.bin"), Bytes::from(data.clone()))
        .await
        .unwrap();
    let ls: Vec<String> = fs
        .list("/s3/in")
        .await
        .unwrap()
        .into_iter()
        .map(|s| String::from_utf8(s.path).unwrap())
        .collect();
    assert_eq!(ls, ["/s3/in/obj.bin"]);
    assert!(get(&fs, "/s3/in/obj.bin").await == data, "cold read");
    let cold = worker_stat(&fs, &c, "ufs_reads").await;
    assert_eq!(cold, 4, "one ranged GET per block");
    let requests = s3.requests();
    assert!(get(&fs, "/s3/in/obj.bin").await == data, "warm read");
    assert_eq!(
        worker_stat(&fs, &c, "ufs_reads").await,
        cold,
        "warm reads stay in Eddy"
    );
    assert_eq!(
        s3.requests(),
        requests,
        "the server sees no request on a warm read"
    );

    // Every write type; persisted ones land in the bucket.
    fs.mkdir("/s3/out", false).await.unwrap();
    for (i, (wt, _)) in WRITE_TYPES.iter().enumerate() {
        let d = pattern(2 * BS + i, 10 + i as u64);
        let path = format!("/s3/out/w{i}");
        let st = put(&fs, &path, &d, *wt).await;
        assert!(get(&fs, &path).await == d, "{wt:?}");
        let in_bucket = bucket.stat(&ufs_path(&format!("out/w{i}"))).await;
        if *wt == pb::WriteType::MustCache {
            assert!(!st.persisted && in_bucket.is_err(), "{wt:?} stays in Eddy");
        } else {
            assert!(st.persisted, "{wt:?}");
            assert_eq!(in_bucket.unwrap().length, d.len() as u64, "{wt:?}");
            let direct = bucket
                .read(&ufs_path(&format!("out/w{i}")), 0..u64::MAX)
                .await
                .unwrap();
            assert!(direct == d, "{wt:?} bytes in the bucket");
        }
    }

    // Rename and delete reach the bucket (rename is copy + delete there).
    fs.rename("/s3/out/w1", "/s3/out/renamed").await.unwrap();
    assert!(bucket.stat(&ufs_path("out/w1")).await.is_err());
    assert!(bucket.stat(&ufs_path("out/renamed")).await.is_ok());
    fs.delete("/s3/out/renamed", false).await.unwrap();
    assert!(bucket.stat(&ufs_path("out/renamed")).await.is_err());

    // Mount options are stored; secrets are never printed back.
    let out = c.master.cli(&["fs", "mounts"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("s3://eddy/data") && text.contains("region=us-east-1"),
        "{text}"
    );
    assert!(
        !text.contains("eddy-test-secret"),
        "secrets are masked: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn changes_made_in_the_bucket_are_seen_after_sync() {
    let s3 = S3Server::start();
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path(), 1, SMALL_BLOCKS, "");
    // Re-check the bucket on every access.
    let bucket = mount(&c, &s3, "sync", "0").await;
    let fs = c.fs().await;
    let v1 = pattern(2 * BS, 1);
    bucket
        .write(&ufs_path("f"), Bytes::from(v1.clone()))
        .await
        .unwrap();
    assert!(get(&fs, "/s3/f").await == v1);
    assert!(get(&fs, "/s3/f").await == v1);
    // Same length, new bytes: the etag changes, the cached blocks go.
    let v2 = pattern(2 * BS, 2);
    bucket
        .write(&ufs_path("f"), Bytes::from(v2.clone()))
        .await
        .unwrap();
    // (The client's own metadata cache lives up to a second; the master
    // re-checks the bucket on every request to this mount.)
    fs.invalidate(b"/s3/f");
    assert!(
        get(&fs, "/s3/f").await == v2,
        "no stale bytes after the sync"
    );
    bucket
        .write(&ufs_path("new"), Bytes::from_static(b"hello"))
        .await
        .unwrap();
    assert!(get(&fs, "/s3/new").await == b"hello");
    bucket.delete(&ufs_path("f"), false).await.unwrap();
    let e = fs.stat("/s3/f").await.unwrap_err();
    assert_eq!(e.code(), EddyCode::NotFound, "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bad_bucket_is_refused_at_mount_time() {
    let s3 = S3Server::start();
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path(), 0, "", "");
    let o = s3.options();
    let endpoint = format!("endpoint={}", o["endpoint"]);
    let out = c.master.cli(&[
        "fs",
        "mount",
        "--option",
        &endpoint,
        "--option",
        "region=us-east-1",
        "--option",
        "access_key=a",
        "--option",
        "secret_key=b",
        "/s3",
        "s3://missing-bucket/x",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("missing-bucket") && err.contains("UFS_UNAVAILABLE"),
        "{err}"
    );
    let out = c
        .master
        .cli(&["fs", "mount", "--option", "acess_key=a", "/s3", "s3://b/x"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown mount option") && err.contains("INVALID_ARGUMENT"),
        "{err}"
    );
    // Nothing was mounted.
    let out = c.master.cli(&["fs", "mounts"]);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("/s3"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn load_metadata_syncs_on_demand() {
    let s3 = S3Server::start();
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path(), 1, SMALL_BLOCKS, "");
    // Never re-checked on its own: only loadMetadata brings changes in.
    let bucket = mount(&c, &s3, "lazy", "-1").await;
    let fs = c.fs().await;
    let v1 = pattern(BS + 1, 1);
    bucket
        .write(&ufs_path("d/f"), Bytes::from(v1.clone()))
        .await
        .unwrap();
    assert!(get(&fs, "/s3/d/f").await == v1);
    let names = |v: Vec<pb::FileStatus>| -> Vec<String> {
        v.into_iter()
            .map(|s| String::from_utf8(s.name).unwrap())
            .collect()
    };
    assert_eq!(names(fs.list("/s3/d").await.unwrap()), ["f"]);
    let v2 = pattern(BS + 1, 2);
    bucket
        .write(&ufs_path("d/f"), Bytes::from(v2.clone()))
        .await
        .unwrap();
    bucket
        .write(&ufs_path("d/sub/g"), Bytes::from_static(b"g"))
        .await
        .unwrap();
    fs.invalidate(b"/s3");
    assert!(get(&fs, "/s3/d/f").await == v1, "not re-checked yet");
    assert_eq!(
        names(fs.list("/s3/d").await.unwrap()),
        ["f"],
        "not listed again yet"
    );
    let out = c.master.cli(&["fs", "loadMetadata", "-R", "/s3"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("(2 files, 2 directories)"), "{text}");
    fs.invalidate(b"/s3");
    assert!(
        get(&fs, "/s3/d/f").await == v2,
        "the change is in after loadMetadata"
    );
    assert!(get(&fs, "/s3/d/sub/g").await == b"g");
    assert_eq!(names(fs.list("/s3/d").await.unwrap()), ["f", "sub"]);
}

/// Mounts `s3://bucket/data` at /s3 with extra options (through the client).
async fn mount_with(
    fs: &FileSystem,
    s3: &S3Server,
    bucket: &str,
    extra: &[(&str, &str)],
) -> std::sync::Arc<dyn UnderFileSystem> {
    s3.create_bucket(bucket);
    let mut o = s3.options();
    for (k, v) in extra {
        o.insert(k.to_string(), v.to_string());
    }
    let uri = format!("s3://{bucket}/data");
    fs.master()
        .mount(
            "/s3",
            &uri,
            false,
            o.clone().into_iter().collect(),
            Some(-1),
        )
        .await
        .unwrap();
    eddy_ufs::open(&uri, &o).await.unwrap()
}

const FAST_CHECKS: &str = "default_block_size = 1048576\nreplication_check_interval_ms = 100";

/// Mounts `s3://bucket/data` at /s3 with short timeouts, so attempts against
/// a paused server fail quickly, and lists it once.
async fn mount_short_timeouts(
    fs: &FileSystem,
    s3: &S3Server,
    bucket: &str,
) -> std::sync::Arc<dyn UnderFileSystem> {
    let b = mount_with(fs, s3, bucket, &[("timeout_ms", "1000"), ("retries", "0")]).await;
    fs.list("/s3").await.unwrap();
    b
}

fn async_through() -> eddy_client::CreateOptions {
    eddy_client::CreateOptions {
        write_type: pb::WriteType::AsyncThrough,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn async_through_persists_in_the_background_and_survives_an_outage() {
    let s3 = S3Server::start();
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path(), 1, FAST_CHECKS, "");
    let fs = c.fs().await;
    let bucket = mount_short_timeouts(&fs, &s3, "async").await;

    let d = pattern(3 * BS + 5, 7);
    let st = put(&fs, "/s3/a.bin", &d, pb::WriteType::AsyncThrough).await;
    assert!(!st.persisted, "close returns once the worker has the data");
    eventually(Duration::from_secs(20), "the file is persisted", || async {
        let s = fs.stat("/s3/a.bin").await.unwrap();
        s.persisted && !s.persist_pending
    })
    .await;
    let direct = bucket.read(&ufs_path("a.bin"), 0..u64::MAX).await.unwrap();
    assert!(direct == d, "the bucket has the bytes");
    assert!(!fs.stat("/s3/a.bin").await.unwrap().pinned);
    assert!(get(&fs, "/s3/a.bin").await == d);

    // The server stops answering mid-persist: attempts fail, the master
    // retries with backoff, and the persist finishes once it is back.
    let d2 = pattern(2 * BS, 8);
    let o = async_through();
    // (Creating checks the bucket for the name, so the outage starts after.)
    let mut w = fs.create("/s3/b.bin", &o).await.unwrap();
    s3.pause();
    w.write(&d2).await.unwrap();
    let st = w.close().await.unwrap();
    assert!(st.persist_pending && !st.persisted);
    eventually(Duration::from_secs(30), "an attempt fails", || async {
        c.stat_sum(&fs, "persist_failures").await >= 1
    })
    .await;
    assert!(
        get(&fs, "/s3/b.bin").await == d2,
        "readable from the worker meanwhile"
    );
    let out = c.master.cli(&["fs", "stat", "/s3/b.bin"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("waiting to be persisted") && text.contains("pinned:          true"),
        "{text}"
    );
    s3.resume();
    eventually(
        Duration::from_secs(60),
        "persisted after the outage",
        || async { fs.stat("/s3/b.bin").await.unwrap().persisted },
    )
    .await;
    let direct = bucket.read(&ufs_path("b.bin"), 0..u64::MAX).await.unwrap();
    assert!(direct == d2);

    // `eddy fs persist` on a MUST_CACHE file waits until it is there.
    let d3 = pattern(BS + 3, 9);
    put(&fs, "/s3/c.bin", &d3, pb::WriteType::MustCache).await;
    assert!(bucket.stat(&ufs_path("c.bin")).await.is_err());
    let out = c.master.cli(&["fs", "persist", "/s3/c.bin"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("persisted /s3/c.bin (1 file(s))"));
    assert!(fs.stat("/s3/c.bin").await.unwrap().persisted);
    let direct = bucket.read(&ufs_path("c.bin"), 0..u64::MAX).await.unwrap();
    assert!(direct == d3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_worker_resumes_pending_persists_from_its_disk_tier() {
    let s3 = S3Server::start();
    let dir = tempfile::tempdir().unwrap();
    let ssd = dir.path().join("ssd");
    // 1 MiB of memory over a disk tier: written blocks move down to disk.
    let tiers = format!(
        "memory_capacity = 1048576\ntiers = [{{ alias = \"SSD\", dirs = [{:?}], quotas = [16777216] }}]",
        ssd.display().to_string()
    );
    let c = Cluster::start(dir.path(), 1, FAST_CHECKS, &tiers);
    let fs = c.fs().await;
    let bucket = mount_short_timeouts(&fs, &s3, "resume").await;
    let o = async_through();
    let d = pattern(2 * BS, 21);
    let mut w = fs.create("/s3/a.bin", &o).await.unwrap();
    s3.pause();
    w.write(&d).await.unwrap();
    w.close().await.unwrap();
    // Another write pushes the rest of a.bin out of memory.
    put(&fs, "/push", &pattern(BS, 22), pb::WriteType::MustCache).await;
    eventually(
        Duration::from_secs(20),
        "a.bin is all on the SSD tier",
        || async {
            let r = fs.master().file_blocks("/s3/a.bin").await.unwrap();
            r.blocks
                .iter()
                .all(|b| b.locations.iter().any(|l| l.tier == "SSD"))
        },
    )
    .await;
    // The worker dies with the persist still failing; it comes back on the
    // same address with its disk tier, and the store comes back too.
    let (_master, _w) = c.restart_first_worker(&tiers);
    s3.resume();
    eventually(
        Duration::from_secs(90),
        "the persist resumes and finishes",
        || async { fs.stat("/s3/a.bin").await.unwrap().persisted },
    )
    .await;
    let direct = bucket.read(&ufs_path("a.bin"), 0..u64::MAX).await.unwrap();
    assert!(direct == d, "the bucket has every byte");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_azure_container_mounts_reads_warm_and_persists() {
    let az = eddy_ufs::testkit::AzureServer::start();
    az.create_container("eddy");
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path(), 1, FAST_CHECKS, "");
    let fs = c.fs().await;
    let o = az.options();
    fs.master()
        .mount(
            "/az",
            "az://eddy/data",
            false,
            o.clone().into_iter().collect(),
            Some(-1),
        )
        .await
        .unwrap();
    let container = eddy_ufs::open("az://eddy/data", &o).await.unwrap();
    let d = pattern(2 * BS + 9, 31);
    container
        .write(&ufs_path("in.bin"), Bytes::from(d.clone()))
        .await
        .unwrap();
    assert!(get(&fs, "/az/in.bin").await == d, "cold");
    let cold = worker_stat(&fs, &c, "ufs_reads").await;
    assert!(get(&fs, "/az/in.bin").await == d, "warm");
    assert_eq!(worker_stat(&fs, &c, "ufs_reads").await, cold);
    for (i, wt) in [pb::WriteType::CacheThrough, pb::WriteType::AsyncThrough]
        .into_iter()
        .enumerate()
    {
        let d = pattern(BS + i, 40 + i as u64);
        let path = format!("/az/out{i}.bin");
        put(&fs, &path, &d, wt).await;
        eventually(Duration::from_secs(20), "persisted", || async {
            fs.stat(&path).await.unwrap().persisted
        })
        .await;
        let direct = container
            .read(&ufs_path(&format!("out{i}.bin")), 0..u64::MAX)
            .await
            .unwrap();
        assert!(direct == d, "{wt:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_gcs_bucket_mounts_read_only_reads_warm_and_syncs() {
    // fake-gcs-server serves object_store's XML reads, not its XML writes
    // (docs/UFS.md): the bucket is filled through the emulator's JSON API
    // and mounted read-only.
    let gcs = eddy_ufs::testkit::GcsServer::start(&["eddy"]);
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path(), 1, SMALL_BLOCKS, "");
    let fs = c.fs().await;
    let d = pattern(2 * BS + 9, 51);
    gcs.put("eddy", "data/in.bin", &d);
    let opts: Vec<String> = gcs
        .options()
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let mut args = vec!["fs", "mount", "--readonly", "--sync-interval", "-1"];
    for kv in &opts {
        args.extend(["--option", kv.as_str()]);
    }
    args.extend(["/gs", "gs://eddy/data"]);
    let out = c.master.cli(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(get(&fs, "/gs/in.bin").await == d, "cold");
    let before = gcs.requests();
    assert!(get(&fs, "/gs/in.bin").await == d, "warm");
    assert_eq!(gcs.requests(), before, "a warm read asks the store nothing");

    // Changed and new objects come in with loadMetadata; no stale bytes.
    let d2 = pattern(2 * BS + 9, 52);
    gcs.put("eddy", "data/in.bin", &d2);
    gcs.put("eddy", "data/sub/new", b"new");
    let out = c.master.cli(&["fs", "loadMetadata", "-R", "/gs"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    fs.invalidate(b"/gs");
    assert!(
        get(&fs, "/gs/in.bin").await == d2,
        "no stale bytes after the sync"
    );
    assert!(get(&fs, "/gs/sub/new").await == b"new");

    // A read-only mount refuses writes with the promised code.
    let e = fs
        .create("/gs/out", &Default::default())
        .await
        .err()
        .expect("writes to a read-only mount fail");
    assert_eq!(e.code(), EddyCode::ReadOnly, "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn credentials_can_come_from_the_config_file_and_are_never_stored() {
    let s3 = S3Server::start();
    s3.create_bucket("cfg");
    // Endpoint and credentials in each process's `[ufs.s3]`, none at mount.
    let table: String = std::iter::once("[ufs.s3]".to_string())
        .chain(s3.options().iter().map(|(k, v)| format!("{k} = {v:?}")))
        .collect::<Vec<_>>()
        .join("\n");
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path(), 1, &format!("{SMALL_BLOCKS}\n{table}"), &table);
    let out = c.master.cli(&["fs", "mount", "/s3", "s3://cfg/data"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bucket = eddy_ufs::open("s3://cfg/data", &s3.options())
        .await
        .unwrap();
    let d = pattern(BS + 3, 61);
    bucket
        .write(&ufs_path("f"), Bytes::from(d.clone()))
        .await
        .unwrap();
    let fs = c.fs().await;
    // The worker fills the cache with its own file's credentials.
    assert!(get(&fs, "/s3/f").await == d);
    let out = c.master.cli(&["fs", "mounts"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("s3://cfg/data"), "{text}");
    assert!(
        !text.contains("secret_key") && !text.contains("eddy-test-secret"),
        "config-file credentials are not mount options: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unpersisted_file_whose_worker_memory_is_gone_shows_as_lost() {
    let s3 = S3Server::start();
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path(), 1, FAST_CHECKS, "");
    let fs = c.fs().await;
    let _bucket = mount_short_timeouts(&fs, &s3, "lost").await;
    // The store is down: the ASYNC_THROUGH file lives only in the worker's
    // memory when the worker dies.
    let o = async_through();
    let d = pattern(2 * BS + 5, 71);
    let mut w = fs.create("/s3/a.bin", &o).await.unwrap();
    s3.pause();
    w.write(&d).await.unwrap();
    w.close().await.unwrap();
    assert!(get(&fs, "/s3/a.bin").await == d);
    assert!(!fs.stat("/s3/a.bin").await.unwrap().lost);
    let (master, _w) = c.restart_first_worker("");
    s3.resume();
    // The worker is back without the blocks (memory does not survive).
    eventually(
        Duration::from_secs(30),
        "the file shows as lost",
        || async {
            fs.invalidate(b"/s3/a.bin");
            fs.stat("/s3/a.bin").await.unwrap().lost
        },
    )
    .await;
    let st = fs.stat("/s3/a.bin").await.unwrap();
    assert!(!st.persisted && st.persist_pending && st.length == d.len() as u64);
    // Reading fails with the promised code: never short or zero-filled bytes.
    let mut r = fs.open("/s3/a.bin", &Default::default()).await.unwrap();
    let mut buf = vec![0u8; d.len()];
    let e = r.read(&mut buf).await.unwrap_err();
    assert_eq!(e.code(), EddyCode::DataLost, "{e}");
    assert!(e.to_string().contains("/s3/a.bin is lost"), "{e}");
    // So does a client that maps blocks of workers on this host.
    let local = FileSystem::connect(&master.addr).await.unwrap();
    let mut r = local.open("/s3/a.bin", &Default::default()).await.unwrap();
    let e = r.read(&mut buf).await.unwrap_err();
    assert_eq!(e.code(), EddyCode::DataLost, "{e}");
    // The CLI says so.
    let out = master.cli(&["fs", "stat", "/s3/a.bin"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("LOST"));
    let out = master.cli(&["fs", "ls", "/s3"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .any(|l| l.contains("LOST") && l.ends_with("/s3/a.bin")),
        "{text}"
    );
    let out = master.cli(&["report"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Waiting to persist: 1 files"), "{text}");
    let out = master.cli(&["fs", "persist", "/s3/a.bin"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("DATA_LOST"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Nothing half-written reached the bucket, and the file can be removed.
    assert!(
        _bucket.stat(&ufs_path("a.bin")).await.is_err(),
        "no partial object"
    );
    fs.delete("/s3/a.bin", false).await.unwrap();
}

/// Renaming an object larger than a part (a multipart upload, whose copy
/// gets a new ETag), alone and inside a directory, records the copy's
/// fingerprint: checkConsistency finds nothing, and a re-check of the store
/// keeps the same inode and its cached blocks.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_s3_rename_records_the_new_fingerprint() {
    let s3 = S3Server::start();
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path(), 1, "", "");
    let _bucket = mount(&c, &s3, "renames", "-1").await;
    let fs = c.fs().await;
    // Past the 8 MiB part size, a streamed write is a multipart upload.
    let data = pattern((8 << 20) + 4096, 7);
    fs.mkdir("/s3/d", false).await.unwrap();
    let before = put(&fs, "/s3/d/big.bin", &data, pb::WriteType::CacheThrough).await;
    put(&fs, "/s3/d/also.bin", &data, pb::WriteType::CacheThrough).await;
    fs.rename("/s3/d/big.bin", "/s3/big.bin").await.unwrap();
    fs.rename("/s3/d", "/s3/moved").await.unwrap();
    let m = fs.master();
    let report = m.check_consistency("/s3").await.unwrap();
    assert_eq!(report.files_checked, 2);
    assert!(
        report.inconsistent.is_empty(),
        "no drift after renames: {:?}",
        report.inconsistent
    );
    for path in ["/s3/big.bin", "/s3/moved/also.bin"] {
        let st = m.stat_synced(path, 0).await.unwrap();
        assert_eq!(st.percent_cached, 100, "{path} kept its cached blocks");
        if path == "/s3/big.bin" {
            assert_eq!(st.id, before.id, "the same inode");
        }
        assert!(get(&fs, path).await == data);
    }
}
