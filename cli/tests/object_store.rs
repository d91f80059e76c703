//! An S3 bucket (moto's server on loopback) mounted into Eddy, end to end:
//! real master and worker processes, reads cold and warm, every write type,
//! changes made directly in the bucket, and mount errors.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{Cluster, WRITE_TYPES, get, pattern, put};
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
    assert!(get(&fs, "/s3/in/obj.bin").await == data, "warm read");
    assert_eq!(
        worker_stat(&fs, &c, "ufs_reads").await,
        cold,
        "warm reads stay in Eddy"
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
    let _ = Duration::from_secs(0);
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
