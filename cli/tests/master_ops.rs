//! The master's namespace operations through real gRPC against the real
//! `eddy master` binary.

mod common;

use common::MasterProc;
use eddy_client::{CreateOptions, EddyCode, pb};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_operations() {
    let dir = tempfile::tempdir().unwrap();
    let m = MasterProc::start(dir.path(), "");
    let c = m.client().await;

    let d = c.mkdir("/data/in", true).await.unwrap();
    assert!(d.is_dir && d.persisted);
    assert!(
        m.ufs().join("data/in").is_dir(),
        "directories are created in the under-storage"
    );

    let opts = CreateOptions {
        block_size: 1 << 20,
        ..Default::default()
    };
    let f = c.create_file("/data/in/f", &opts).await.unwrap();
    assert!(!f.complete);
    assert!(f.block_ids.is_empty(), "an incomplete file lists no blocks");
    let f = c
        .complete_file("/data/in/f", (5 << 20) + 7, false)
        .await
        .unwrap();
    assert!(f.complete && !f.persisted);
    assert_eq!(f.length, (5 << 20) + 7);
    assert_eq!(f.block_size, 1 << 20);
    assert_eq!(f.block_ids.len(), 6);
    for (i, b) in f.block_ids.iter().enumerate() {
        assert_eq!(
            eddy_proto::file_id_of_block(*b),
            f.id,
            "a block id names its file"
        );
        assert_eq!(eddy_proto::block_index(*b), i as u64);
    }
    let err = c.complete_file("/data/in/f", 1, false).await.unwrap_err();
    assert_eq!(
        err.code(),
        EddyCode::FileAlreadyComplete,
        "files are write-once"
    );

    let s = c.stat("/data/in/f").await.unwrap();
    assert_eq!(s.path, b"/data/in/f");
    assert_eq!(s.mode, 0o644);
    assert_eq!(s.ttl_ms, -1);
    assert_eq!(s.percent_cached, 0);
    assert!(c.exists("/data/in/f").await.unwrap());
    assert!(!c.exists("/data/in/nope").await.unwrap());

    // Paged listing.
    for i in 0..30 {
        c.create_file(format!("/data/in/x{i:02}"), &CreateOptions::default())
            .await
            .unwrap();
    }
    let mut names = Vec::new();
    let mut after = Vec::new();
    let mut pages = 0;
    loop {
        let (entries, next) = c.list_page("/data/in", &after, 7, None).await.unwrap();
        assert!(entries.len() <= 7);
        names.extend(
            entries
                .into_iter()
                .map(|e| String::from_utf8(e.name).unwrap()),
        );
        pages += 1;
        match next {
            Some(n) => after = n,
            None => break,
        }
    }
    assert_eq!(pages, 5);
    assert_eq!(names.len(), 31);
    assert!(
        names.windows(2).all(|w| w[0] < w[1]),
        "sorted, no duplicates"
    );

    // Attributes.
    let s = c
        .set_attribute(pb::SetAttributeRequest {
            path: b"/data/in/f".to_vec(),
            mode: Some(0o600),
            owner: Some("alice".into()),
            group: Some("ml".into()),
            pinned: Some(true),
            ttl_ms: Some(60_000),
            ttl_action: pb::TtlAction::Free as i32,
            replication_min: Some(1),
            replication_max: Some(3),
            recursive: false,
            pin_allow_demotion: Some(true),
        })
        .await
        .unwrap();
    assert_eq!(
        (s.mode, s.owner.as_str(), s.group.as_str()),
        (0o600, "alice", "ml")
    );
    assert!(s.pinned && s.pin_allows_demotion);
    assert_eq!(
        (s.ttl_ms, s.ttl_action),
        (60_000, pb::TtlAction::Free as i32)
    );
    assert_eq!((s.replication_min, s.replication_max), (1, 3));

    // Rename, including a whole directory; it moves in the under-storage too.
    c.rename("/data/in", "/data/out").await.unwrap();
    assert!(!c.exists("/data/in/f").await.unwrap());
    assert_eq!(
        c.stat("/data/out/f").await.unwrap().id,
        f.id,
        "rename keeps the inode"
    );
    assert!(m.ufs().join("data/out").is_dir() && !m.ufs().join("data/in").exists());

    // Delete.
    let err = c.delete("/data/out", false).await.unwrap_err();
    assert_eq!(err.code(), EddyCode::DirectoryNotEmpty);
    c.delete("/data/out/x00", false).await.unwrap();
    c.delete("/data", true).await.unwrap();
    assert!(!c.exists("/data").await.unwrap());
    assert!(
        !m.ufs().join("data").exists(),
        "recursive delete reaches the under-storage"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_typed_errors_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let m = MasterProc::start(dir.path(), "");
    let c = m.client().await;
    c.mkdir("/d/sub", true).await.unwrap();
    c.create_file("/d/file", &CreateOptions::default())
        .await
        .unwrap();
    c.complete_file("/d/file", 10, false).await.unwrap();
    let ro = tempfile::tempdir().unwrap();
    std::fs::write(ro.path().join("r"), b"x").unwrap();
    c.mount(
        "/ro",
        ro.path().to_str().unwrap(),
        true,
        Default::default(),
        None,
    )
    .await
    .unwrap();

    let snapshot = |c: eddy_client::MasterClient| async move {
        let mut all = Vec::new();
        for p in ["/", "/d", "/d/sub", "/ro"] {
            for e in c.list(p).await.unwrap() {
                all.push((e.path, e.length, e.mtime_ms, e.mode, e.complete));
            }
        }
        all
    };
    let before = snapshot(c.clone()).await;
    let spare = tempfile::tempdir().unwrap();
    let long = format!("/{}", "a/".repeat(2100));
    let long_name = format!("/{}", "n".repeat(256));
    let cases: Vec<(&str, Result<(), eddy_client::ClientError>, EddyCode)> = vec![
        (
            "relative",
            c.mkdir("rel/x", false).await.map(drop),
            EddyCode::InvalidPath,
        ),
        ("empty", c.stat("").await.map(drop), EddyCode::InvalidPath),
        (
            "dotdot escape",
            c.stat("/../etc").await.map(drop),
            EddyCode::InvalidPath,
        ),
        (
            "too long",
            c.mkdir(&long, true).await.map(drop),
            EddyCode::InvalidPath,
        ),
        (
            "name too long",
            c.mkdir(&long_name, true).await.map(drop),
            EddyCode::InvalidPath,
        ),
        (
            "invalid utf-8",
            c.mkdir(b"/d/\xff\xfe".as_slice(), false).await.map(drop),
            EddyCode::InvalidPath,
        ),
        (
            "mkdir over file",
            c.mkdir("/d/file", false).await.map(drop),
            EddyCode::AlreadyExists,
        ),
        (
            "mkdir below file",
            c.mkdir("/d/file/x", true).await.map(drop),
            EddyCode::NotADirectory,
        ),
        (
            "mkdir missing parent",
            c.mkdir("/nope/x", false).await.map(drop),
            EddyCode::NotFound,
        ),
        (
            "create over existing",
            c.create_file("/d/file", &CreateOptions::default())
                .await
                .map(drop),
            EddyCode::AlreadyExists,
        ),
        (
            "create over dir",
            c.create_file("/d/sub", &CreateOptions::default())
                .await
                .map(drop),
            EddyCode::AlreadyExists,
        ),
        (
            "bad block size",
            c.create_file(
                "/d/bs",
                &CreateOptions {
                    block_size: 3,
                    ..Default::default()
                },
            )
            .await
            .map(drop),
            EddyCode::InvalidArgument,
        ),
        (
            "complete dir",
            c.complete_file("/d/sub", 1, false).await.map(drop),
            EddyCode::IsADirectory,
        ),
        (
            "rename into own subtree",
            c.rename("/d", "/d/sub/d").await,
            EddyCode::InvalidArgument,
        ),
        (
            "rename over existing",
            c.rename("/d/sub", "/d/file").await,
            EddyCode::AlreadyExists,
        ),
        (
            "rename missing",
            c.rename("/nope", "/x").await,
            EddyCode::NotFound,
        ),
        (
            "rename root",
            c.rename("/", "/x").await,
            EddyCode::InvalidArgument,
        ),
        (
            "rename across mounts",
            c.rename("/d/file", "/ro/file").await,
            EddyCode::InvalidArgument,
        ),
        (
            "delete non-empty",
            c.delete("/d", false).await,
            EddyCode::DirectoryNotEmpty,
        ),
        (
            "delete root",
            c.delete("/", true).await,
            EddyCode::InvalidArgument,
        ),
        (
            "delete missing",
            c.delete("/nope", true).await,
            EddyCode::NotFound,
        ),
        (
            "delete mount point",
            c.delete("/ro", true).await,
            EddyCode::MountConflict,
        ),
        (
            "create under read-only",
            c.create_file("/ro/new", &CreateOptions::default())
                .await
                .map(drop),
            EddyCode::ReadOnly,
        ),
        (
            "mkdir under read-only",
            c.mkdir("/ro/dir", false).await.map(drop),
            EddyCode::ReadOnly,
        ),
        (
            "delete under read-only",
            c.delete("/ro/r", false).await,
            EddyCode::ReadOnly,
        ),
        (
            "mount under read-only",
            c.mount(
                "/ro/m",
                spare.path().to_str().unwrap(),
                false,
                Default::default(),
                None,
            )
            .await,
            EddyCode::ReadOnly,
        ),
        (
            "mount a file as store",
            c.mount(
                "/f2",
                ro.path().join("r").to_str().unwrap(),
                false,
                Default::default(),
                None,
            )
            .await,
            EddyCode::UfsUnavailable,
        ),
        (
            "mount unknown scheme",
            c.mount("/z", "gopher://h/x", false, Default::default(), None)
                .await,
            EddyCode::InvalidArgument,
        ),
        (
            "mount unreachable",
            c.mount(
                "/z",
                "/definitely/not/here",
                false,
                Default::default(),
                None,
            )
            .await,
            EddyCode::UfsUnavailable,
        ),
        (
            "unmount non-mount",
            c.unmount("/d").await,
            EddyCode::NotFound,
        ),
        (
            "unmount root",
            c.unmount("/").await,
            EddyCode::InvalidArgument,
        ),
        (
            "bad mode",
            c.set_attribute(pb::SetAttributeRequest {
                path: b"/d".to_vec(),
                mode: Some(0o17777),
                ..Default::default()
            })
            .await
            .map(drop),
            EddyCode::InvalidArgument,
        ),
        (
            "bad replication",
            c.set_attribute(pb::SetAttributeRequest {
                path: b"/d/file".to_vec(),
                replication_min: Some(5),
                replication_max: Some(2),
                ..Default::default()
            })
            .await
            .map(drop),
            EddyCode::InvalidArgument,
        ),
        (
            "stat missing",
            c.stat("/nope").await.map(drop),
            EddyCode::NotFound,
        ),
    ];
    for (what, result, want) in cases {
        match result {
            Ok(()) => panic!("{what}: succeeded, expected {want:?}"),
            Err(e) => assert_eq!(e.code(), want, "{what}: {e}"),
        }
    }
    // Mounting over a non-empty Eddy directory with a reachable store.
    let other = tempfile::tempdir().unwrap();
    let e = c
        .mount(
            "/d",
            other.path().to_str().unwrap(),
            false,
            Default::default(),
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), EddyCode::MountConflict, "{e}");
    assert_eq!(
        snapshot(c.clone()).await,
        before,
        "no refused operation changed anything"
    );
    assert!(ro.path().join("r").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_storage_is_loaded_lazily_and_synced() {
    let dir = tempfile::tempdir().unwrap();
    let m = MasterProc::start(dir.path(), "");
    let c = m.client().await;
    let ufs = m.ufs();
    std::fs::create_dir_all(ufs.join("lake/2026")).unwrap();
    std::fs::write(ufs.join("lake/2026/a.parquet"), vec![1u8; 1000]).unwrap();
    std::fs::write(ufs.join("lake/top.csv"), b"x,y\n").unwrap();

    // Never seen by Eddy: loaded on first access.
    let s = c.stat("/lake/2026/a.parquet").await.unwrap();
    assert!(s.persisted && s.complete);
    assert_eq!(s.length, 1000);
    let names: Vec<_> = c
        .list("/lake")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, vec![b"2026".to_vec(), b"top.csv".to_vec()]);

    // Changed behind Eddy's back: the default (never re-check) keeps the old
    // view; a sync interval of 0 notices the new fingerprint.
    std::fs::write(ufs.join("lake/2026/a.parquet"), vec![2u8; 5000]).unwrap();
    assert_eq!(c.stat("/lake/2026/a.parquet").await.unwrap().length, 1000);
    let s = c.stat_synced("/lake/2026/a.parquet", 0).await.unwrap();
    assert_eq!(s.length, 5000);
    // Deleted behind Eddy's back.
    std::fs::remove_file(ufs.join("lake/top.csv")).unwrap();
    std::fs::write(ufs.join("lake/new.csv"), b"1").unwrap();
    let (entries, _) = c.list_page("/lake", b"", 0, Some(0)).await.unwrap();
    let names: Vec<_> = entries.into_iter().map(|e| e.name).collect();
    assert_eq!(names, vec![b"2026".to_vec(), b"new.csv".to_vec()]);
    let e = c.stat_synced("/lake/top.csv", 0).await.unwrap_err();
    assert_eq!(e.code(), EddyCode::NotFound);
    // Eddy-only (not persisted) files survive a sync.
    c.create_file("/lake/mine", &CreateOptions::default())
        .await
        .unwrap();
    c.complete_file("/lake/mine", 0, false).await.unwrap();
    assert!(c.stat_synced("/lake/mine", 0).await.is_ok());

    // Mounts: nested, with their own sync interval; unmount forgets the subtree.
    let ext = tempfile::tempdir().unwrap();
    std::fs::write(ext.path().join("e.bin"), b"ext").unwrap();
    c.mount(
        "/lake/ext",
        ext.path().to_str().unwrap(),
        false,
        [("region".to_string(), "x".to_string())].into(),
        Some(0),
    )
    .await
    .unwrap();
    assert_eq!(c.stat("/lake/ext/e.bin").await.unwrap().length, 3);
    std::fs::write(ext.path().join("e.bin"), b"longer").unwrap();
    assert_eq!(
        c.stat("/lake/ext/e.bin").await.unwrap().length,
        6,
        "the mount's interval 0 re-checks"
    );
    c.create_file("/lake/ext/w", &CreateOptions::default())
        .await
        .unwrap();
    c.mkdir("/lake/ext/newdir", false).await.unwrap();
    assert!(ext.path().join("newdir").is_dir());
    let mounts = c.list_mounts().await.unwrap();
    assert_eq!(mounts.len(), 2);
    assert!(
        mounts
            .iter()
            .any(|m| m.path == b"/lake/ext" && m.sync_interval_ms == 0)
    );
    let e = c
        .rename("/lake/ext/e.bin", "/lake/e.bin")
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        EddyCode::InvalidArgument,
        "cross-mount rename: {e}"
    );
    let e = c.delete("/lake", true).await.unwrap_err();
    assert_eq!(
        e.code(),
        EddyCode::MountConflict,
        "deleting a mount's parent: {e}"
    );
    c.unmount("/lake/ext").await.unwrap();
    assert!(!c.exists("/lake/ext/e.bin").await.unwrap());
    assert!(
        ext.path().join("e.bin").exists(),
        "unmount leaves the store alone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mount_whose_store_vanishes_reports_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let m = MasterProc::start(dir.path(), "");
    let c = m.client().await;
    let ext = tempfile::tempdir().unwrap();
    let ext_path = ext.path().to_path_buf();
    c.mount(
        "/gone",
        ext_path.to_str().unwrap(),
        false,
        Default::default(),
        Some(0),
    )
    .await
    .unwrap();
    drop(ext); // removes the directory
    let e = c.stat("/gone/file").await.unwrap_err();
    assert_eq!(e.code(), EddyCode::UfsUnavailable, "{e}");
    let e = c.mkdir("/gone/d", false).await.unwrap_err();
    assert_eq!(e.code(), EddyCode::UfsUnavailable, "{e}");
    assert!(!ext_path.exists(), "the vanished root is not recreated");
    let e = c.exists("/gone/d").await.unwrap_err();
    assert_eq!(e.code(), EddyCode::UfsUnavailable, "{e}");
    let names: Vec<_> = c
        .list("/")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(
        names,
        vec![b"gone".to_vec()],
        "a failed under-storage write changes nothing"
    );
}
