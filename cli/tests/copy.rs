//! `eddy fs cp` and `eddy fs checksum` against a real cluster: trees,
//! copies across mounts, and the errors a user can make.

mod common;

use common::{Cluster, get, pattern, put};
use eddy_client::pb;
use md5::{Digest, Md5};

const BS: usize = 1 << 20;

fn ok(out: std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn fails(out: std::process::Output) -> String {
    assert_eq!(out.status.code(), Some(1));
    String::from_utf8(out.stderr).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cp_copies_files_and_trees_within_and_across_mounts() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path(), 1, "default_block_size = 1048576", "");
    let fs = c.fs().await;
    let a = pattern(2 * BS + 3, 1);
    let b = pattern(BS / 2, 2);
    let o = eddy_client::CreateOptions {
        block_size: 512 << 10,
        ..Default::default()
    };
    fs.mkdir("/src/sub", true).await.unwrap();
    let mut w = fs.create("/src/a", &o).await.unwrap();
    w.write(&a).await.unwrap();
    w.close().await.unwrap();
    put(&fs, "/src/sub/b", &b, pb::WriteType::MustCache).await;
    fs.mkdir("/src/empty", true).await.unwrap();

    // A file: same bytes, same block size.
    let text = ok(c.master.cli(&["fs", "cp", "/src/a", "/a2"]));
    assert!(text.contains("(1 files)"), "{text}");
    assert!(get(&fs, "/a2").await == a);
    assert_eq!(fs.stat("/a2").await.unwrap().block_size, 512 << 10);
    // Write-once: an existing target is refused, not overwritten.
    let err = fails(c.master.cli(&["fs", "cp", "/src/sub/b", "/a2"]));
    assert!(err.contains("ALREADY_EXISTS"), "{err}");
    assert!(get(&fs, "/a2").await == a);

    // A tree needs -r; then every file, directory and empty directory.
    let err = fails(c.master.cli(&["fs", "cp", "/src", "/dst"]));
    assert!(err.contains("-r"), "{err}");
    let text = ok(c.master.cli(&["fs", "cp", "-r", "/src", "/dst"]));
    assert!(text.contains("(2 files)"), "{text}");
    assert!(get(&fs, "/dst/a").await == a);
    assert!(get(&fs, "/dst/sub/b").await == b);
    assert!(fs.stat("/dst/empty").await.unwrap().is_dir);
    // Into an existing directory, keeping the source's name.
    ok(c.master.cli(&["fs", "cp", "-r", "/src", "/dst"]));
    assert!(get(&fs, "/dst/src/sub/b").await == b);
    let err = fails(c.master.cli(&["fs", "cp", "-r", "/src", "/src/sub"]));
    assert!(err.contains("into itself"), "{err}");

    // Across mounts: into a local directory mounted at /mnt, written through.
    let other = tempfile::tempdir().unwrap();
    ok(c.master
        .cli(&["fs", "mount", "/mnt", other.path().to_str().unwrap()]));
    ok(c.master.cli(&[
        "fs",
        "cp",
        "--write-type",
        "CACHE_THROUGH",
        "/src/a",
        "/mnt/a",
    ]));
    assert!(std::fs::read(other.path().join("a")).unwrap() == a);

    // checksum prints md5sum's format, and agrees with the bytes.
    let text = ok(c.master.cli(&["fs", "checksum", "/mnt/a"]));
    let hex: String = Md5::digest(&a).iter().map(|x| format!("{x:02x}")).collect();
    assert_eq!(text.trim(), format!("{hex}  /mnt/a"));
    let err = fails(c.master.cli(&["fs", "checksum", "/nope"]));
    assert!(err.contains("NOT_FOUND"), "{err}");
}
