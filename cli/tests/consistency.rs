//! `eddy fs checkConsistency`: persisted files against the under-storage,
//! changed behind Eddy's back, then brought up to date.

mod common;

use common::{Cluster, pattern, put};
use eddy_client::pb;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn check_consistency_finds_changed_and_missing_files() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path(), 1, "default_block_size = 1048576", "");
    let fs = c.fs().await;
    fs.mkdir("/d", true).await.unwrap();
    for p in ["/f1", "/d/f2", "/d/f3"] {
        put(&fs, p, &pattern(3000, 1), pb::WriteType::CacheThrough).await;
    }
    // Never persisted: not the under-storage's business.
    put(&fs, "/mc", &pattern(10, 2), pb::WriteType::MustCache).await;
    let out = c.master.cli(&["fs", "checkConsistency", "/"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("(3 persisted files checked)"), "{text}");

    // Behind Eddy's back: one file grows, one goes, one keeps its length
    // but changes (a new mtime changes the local fingerprint).
    let ufs = c.ufs();
    std::fs::write(ufs.join("d/f2"), pattern(3100, 3)).unwrap();
    std::fs::remove_file(ufs.join("d/f3")).unwrap();
    std::fs::write(ufs.join("f1"), pattern(3000, 4)).unwrap();
    let f = std::fs::File::options()
        .write(true)
        .open(ufs.join("f1"))
        .unwrap();
    f.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(100))
        .unwrap();
    drop(f);
    let out = c.master.cli(&["fs", "checkConsistency", "/"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{text}{err}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            "/d/f2: 3000 bytes in Eddy, 3100 in the under-storage",
            "/d/f3: missing from the under-storage",
            "/f1: changed in the under-storage (its fingerprint differs)",
        ],
        "{text}"
    );
    assert!(err.contains("3 of 3 persisted files differ"), "{err}");
    assert!(err.contains("loadMetadata -R /"), "{err}");
    // Below a path only; and nothing was changed by checking.
    let out = c.master.cli(&["fs", "checkConsistency", "/d"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("2 of 2"));
    assert_eq!(fs.stat("/d/f2").await.unwrap().length, 3000);

    let out = c.master.cli(&["fs", "loadMetadata", "-R", "/"]);
    assert!(out.status.success());
    let out = c.master.cli(&["fs", "checkConsistency", "/"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("(2 persisted files checked)"), "{text}");
    let out = c.master.cli(&["fs", "checkConsistency", "/nope"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("NOT_FOUND"));
}
