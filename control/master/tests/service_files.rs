//! The master's file operations, under-storage sync, mounts and restarts,
//! driven in process on a temporary metastore and a local under-storage.

mod common;

use common::*;
use eddy_proto::{EddyCode, pb};

#[tokio::test]
async fn mkdir_create_complete_and_status_reach_the_namespace_and_the_ufs() {
    let m = TestMaster::start().await;
    let s = m.state();
    let d = s.mkdir(mkdir("/a/b", true)).await.unwrap();
    assert!(d.is_dir);
    assert_eq!(d.path, b"/a/b");
    assert!(
        d.persisted,
        "a directory is made in the under-storage first"
    );
    assert!(m.ufs().join("a/b").is_dir());

    let (st, loc) = s.create_file(create("/a/b/f")).await.unwrap();
    assert!(!st.is_dir && !st.complete);
    assert_eq!(st.block_size, 1 << 20);
    assert_eq!(loc.key, "a/b/f", "a cache-only file is written at its path");
    let done = s
        .complete_file(complete("/a/b/f", st.id, 3 << 20 | 5))
        .await
        .unwrap();
    assert!(done.complete);
    assert!(!done.persisted, "cache-only: nothing in the under-storage");
    assert_eq!(done.id, st.id);
    assert_eq!(done.length, 3 << 20 | 5);
    assert_eq!(done.block_ids.len(), 4, "three full blocks and a tail");
    assert_eq!(done.block_ids[0], eddy_proto::block_id(st.id, 0));

    let again = s.get_status(stat("/a/b/f")).await.unwrap();
    assert_eq!(again.id, st.id);
    assert_eq!(again.length, done.length);
    assert!(
        s.exists(pb::ExistsRequest {
            path: "/a/b/f".into(),
            sync: None
        })
        .await
        .unwrap()
    );
    assert_eq!(names(s, "/a/b").await, ["f"]);
    assert_eq!(names(s, "/").await, ["a"]);
}

#[tokio::test]
async fn listing_pages_in_name_order() {
    let m = TestMaster::start().await;
    let s = m.state();
    s.mkdir(mkdir("/d", false)).await.unwrap();
    for n in ["c", "a", "e", "b", "d"] {
        make_file(s, &format!("/d/{n}"), 1).await;
    }
    let first = s
        .list_status(pb::ListStatusRequest {
            path: "/d".into(),
            limit: 2,
            ..Default::default()
        })
        .await
        .unwrap();
    let got: Vec<_> = first.entries.iter().map(|e| e.name.clone()).collect();
    assert_eq!(got, [b"a".to_vec(), b"b".to_vec()]);
    assert_eq!(first.next_start_after, b"b");
    let rest = s
        .list_status(pb::ListStatusRequest {
            path: "/d".into(),
            start_after: first.next_start_after,
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    let got: Vec<_> = rest.entries.iter().map(|e| e.name.clone()).collect();
    assert_eq!(got, [b"c".to_vec(), b"d".to_vec(), b"e".to_vec()]);
    assert!(rest.next_start_after.is_empty(), "the last page");
}

#[tokio::test]
async fn rename_and_delete_move_persisted_entries_in_the_ufs_too() {
    let m = TestMaster::start().await;
    let s = m.state();
    s.mkdir(mkdir("/src/inner", true)).await.unwrap();
    let f = make_file(s, "/src/cached", 7).await;
    s.rename(rename("/src", "/dst")).await.unwrap();
    assert_eq!(code(s.get_status(stat("/src")).await), EddyCode::NotFound);
    assert!(!m.ufs().join("src").exists());
    assert!(m.ufs().join("dst/inner").is_dir(), "moved in the ufs");
    let moved = s.get_status(stat("/dst/cached")).await.unwrap();
    assert_eq!(moved.id, f.id, "the same inode, at its new path");
    assert_eq!(moved.path, b"/dst/cached");

    assert_eq!(
        code(s.delete(delete("/dst", false)).await),
        EddyCode::DirectoryNotEmpty
    );
    s.delete(delete("/dst/cached", false)).await.unwrap();
    s.delete(delete("/dst", true)).await.unwrap();
    assert_eq!(code(s.get_status(stat("/dst")).await), EddyCode::NotFound);
    assert!(!m.ufs().join("dst").exists(), "deleted in the ufs");
    assert!(names(s, "/").await.is_empty());
}

#[tokio::test]
async fn bad_input_gets_the_documented_codes() {
    let m = TestMaster::start().await;
    let s = m.state();
    make_file(s, "/file", 1).await;
    s.mkdir(mkdir("/dir", false)).await.unwrap();

    // Not found.
    assert_eq!(
        code(s.get_status(stat("/missing")).await),
        EddyCode::NotFound
    );
    assert_eq!(
        code(s.list_status(list("/missing")).await),
        EddyCode::NotFound
    );
    assert_eq!(
        code(s.rename(rename("/missing", "/x")).await),
        EddyCode::NotFound
    );
    assert_eq!(
        code(s.delete(delete("/missing", false)).await),
        EddyCode::NotFound
    );
    assert_eq!(
        code(s.mkdir(mkdir("/no/parent", false)).await),
        EddyCode::NotFound
    );
    // Already exists.
    assert_eq!(
        code(s.mkdir(mkdir("/dir", false)).await),
        EddyCode::AlreadyExists
    );
    assert_eq!(
        code(s.create_file(create("/file")).await),
        EddyCode::AlreadyExists
    );
    assert_eq!(
        code(s.create_file(create("/dir")).await),
        EddyCode::AlreadyExists
    );
    assert_eq!(
        code(s.rename(rename("/file", "/dir")).await),
        EddyCode::AlreadyExists
    );
    // Invalid paths: relative, escaping the root, empty, not UTF-8.
    for bad in [&b"relative"[..], b"/../x", b"", b"/a\n"] {
        let r = s.get_status(pb::GetStatusRequest {
            path: bad.to_vec(),
            sync: None,
        });
        assert_eq!(code(r.await), EddyCode::InvalidPath, "{bad:?}");
    }
    assert_eq!(
        code(
            s.create_file(pb::CreateFileRequest {
                path: vec![b'/', 0xff],
                ..Default::default()
            })
            .await
        ),
        EddyCode::InvalidPath
    );
    // Not a directory: a file in the middle of a path.
    assert_eq!(
        code(s.mkdir(mkdir("/file/sub", true)).await),
        EddyCode::NotADirectory
    );
    assert_eq!(
        code(s.create_file(create("/file/sub")).await),
        EddyCode::NotADirectory
    );
    // Write-once files.
    let f = s.get_status(stat("/file")).await.unwrap();
    assert_eq!(
        code(s.complete_file(complete("/file", f.id, 1)).await),
        EddyCode::FileAlreadyComplete
    );
    // Nothing above changed the namespace.
    assert_eq!(names(s, "/").await, ["dir", "file"]);
}

#[tokio::test]
async fn errors_cross_the_grpc_glue_with_their_code() {
    use eddy_master::identity::Caller;
    use eddy_master::rpc::MasterRpc;
    use eddy_proto::RpcError;
    use pb::file_system_master_server::FileSystemMaster;
    let m = TestMaster::start().await;
    let rpc = MasterRpc(m.state().clone());
    // As the authentication layer would pass them on: from nobody checked.
    let me = Caller::unchecked();
    let status = rpc
        .get_status(me.request(stat("/missing")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);
    assert_eq!(RpcError::from(status).code, EddyCode::NotFound);
    let status = rpc
        .mkdir(me.request(mkdir("nope", false)))
        .await
        .unwrap_err();
    assert_eq!(RpcError::from(status).code, EddyCode::InvalidPath);
    let made = rpc
        .mkdir(me.request(mkdir("/ok", false)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(made.status.unwrap().path, b"/ok");
}

#[tokio::test]
async fn a_file_placed_in_the_ufs_directory_is_synced_in() {
    let m = TestMaster::start().await;
    let s = m.state();
    std::fs::create_dir_all(m.ufs().join("outside")).unwrap();
    std::fs::write(m.ufs().join("outside/data.bin"), vec![9u8; 5000]).unwrap();

    // Never seen: loaded on first access.
    let st = s.get_status(stat("/outside/data.bin")).await.unwrap();
    assert!(st.persisted && st.complete);
    assert_eq!(st.length, 5000);
    assert!(!st.ufs_fingerprint.is_empty());
    let blocks = s
        .get_file_blocks(pb::GetFileBlocksRequest {
            path: "/outside/data.bin".into(),
        })
        .await
        .unwrap();
    assert_eq!(blocks.blocks.len(), 1);
    assert!(blocks.blocks[0].locations.is_empty(), "not cached anywhere");
    assert_eq!(blocks.ufs.unwrap().key, "outside/data.bin");

    // A second file appears: the root never re-syncs by itself (interval
    // -1), but a listing that asks for it sees it.
    std::fs::write(m.ufs().join("outside/late.txt"), b"hi").unwrap();
    let l = s
        .list_status(pb::ListStatusRequest {
            path: "/outside".into(),
            sync: Some(pb::SyncPolicy {
                interval_ms: Some(0),
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let got: Vec<_> = l
        .entries
        .iter()
        .map(|e| (e.name.clone(), e.length))
        .collect();
    assert_eq!(
        got,
        [(b"data.bin".to_vec(), 5000), (b"late.txt".to_vec(), 2)]
    );

    // Removed from the store behind Eddy's back: a synced stat drops it.
    std::fs::remove_file(m.ufs().join("outside/data.bin")).unwrap();
    assert!(
        s.get_status(stat("/outside/data.bin")).await.is_ok(),
        "not re-checked"
    );
    assert_eq!(
        code(s.get_status(stat_synced("/outside/data.bin")).await),
        EddyCode::NotFound
    );
    assert_eq!(names(s, "/outside").await, ["late.txt"]);
}

#[tokio::test]
async fn mount_serves_another_ufs_until_unmounted() {
    let m = TestMaster::start().await;
    let s = m.state();
    let other = tempfile::tempdir().unwrap();
    std::fs::write(other.path().join("x.txt"), b"hello").unwrap();
    let uri = format!("file://{}", path_of(other.path()));
    s.mount(pb::MountRequest {
        path: "/mnt".into(),
        ufs_uri: uri.clone(),
        read_only: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let mounts = s.list_mounts();
    let mine = mounts.iter().find(|x| x.path == b"/mnt").expect("listed");
    assert_eq!(mine.ufs_uri, uri);
    assert!(mine.read_only);
    assert!(s.get_status(stat("/mnt")).await.unwrap().is_mount_point);

    let x = s.get_status(stat("/mnt/x.txt")).await.unwrap();
    assert_eq!(x.length, 5);
    assert!(x.persisted);
    assert_eq!(
        code(s.create_file(create("/mnt/new")).await),
        EddyCode::ReadOnly
    );
    assert_eq!(
        code(s.delete(delete("/mnt/x.txt", false)).await),
        EddyCode::ReadOnly
    );
    // A second mount at the same place conflicts.
    assert_eq!(
        code(
            s.mount(pb::MountRequest {
                path: "/mnt".into(),
                ufs_uri: uri.clone(),
                ..Default::default()
            })
            .await
        ),
        EddyCode::MountConflict
    );
    assert_eq!(
        code(
            s.mount(pb::MountRequest {
                path: "/elsewhere".into(),
                ufs_uri: String::new(),
                ..Default::default()
            })
            .await
        ),
        EddyCode::InvalidArgument
    );

    s.unmount(pb::UnmountRequest {
        path: "/mnt".into(),
    })
    .await
    .unwrap();
    assert!(s.list_mounts().iter().all(|x| x.path != b"/mnt"));
    assert_eq!(
        code(s.get_status(stat("/mnt/x.txt")).await),
        EddyCode::NotFound
    );
    assert!(
        other.path().join("x.txt").exists(),
        "unmount leaves the store alone"
    );
}

#[tokio::test]
async fn a_restart_on_the_same_metastore_keeps_what_was_acknowledged() {
    let mut m = TestMaster::start().await;
    let s = m.state().clone();
    s.mkdir(mkdir("/keep/deep", true)).await.unwrap();
    let f = make_file(&s, "/keep/file", 3 << 20).await;
    make_file(&s, "/gone", 1).await;
    s.rename(rename("/keep/file", "/keep/renamed"))
        .await
        .unwrap();
    s.delete(delete("/gone", false)).await.unwrap();
    let other = tempfile::tempdir().unwrap();
    s.mount(pb::MountRequest {
        path: "/keep/mnt".into(),
        ufs_uri: format!("file://{}", path_of(other.path())),
        ..Default::default()
    })
    .await
    .unwrap();
    drop(s);

    m.restart().await;
    let s = m.state();
    assert_eq!(names(s, "/").await, ["keep"]);
    assert_eq!(names(s, "/keep").await, ["deep", "mnt", "renamed"]);
    let r = s.get_status(stat("/keep/renamed")).await.unwrap();
    assert_eq!(r.id, f.id);
    assert_eq!(r.length, 3 << 20);
    assert!(r.complete);
    assert_eq!(r.block_ids, f.block_ids);
    assert_eq!(code(s.get_status(stat("/gone")).await), EddyCode::NotFound);
    assert!(s.list_mounts().iter().any(|x| x.path == b"/keep/mnt"));
    // Ids are not handed out twice after a restart.
    let (n, _) = s.create_file(create("/keep/new")).await.unwrap();
    assert!(n.id > f.id);
}

#[tokio::test]
async fn a_write_through_file_is_moved_from_its_staging_name_at_completion() {
    let m = TestMaster::start().await;
    let s = m.state();
    let (st, loc) = s
        .create_file(pb::CreateFileRequest {
            write_type: pb::WriteType::CacheThrough as i32,
            ..create("/through")
        })
        .await
        .unwrap();
    assert_ne!(
        loc.key, "through",
        "written at a staging name, not its path"
    );
    let staged = m.ufs().join(&loc.key);
    std::fs::create_dir_all(staged.parent().unwrap()).unwrap();
    std::fs::write(&staged, b"0123456789").unwrap();
    // The writer's length must match what the store holds.
    assert_eq!(
        code(
            s.complete_file(pb::CompleteFileRequest {
                persisted: true,
                ..complete("/through", st.id, 11)
            })
            .await
        ),
        EddyCode::InvalidArgument
    );
    let done = s
        .complete_file(pb::CompleteFileRequest {
            persisted: true,
            ..complete("/through", st.id, 10)
        })
        .await
        .unwrap();
    assert!(done.complete && done.persisted);
    assert!(!done.ufs_fingerprint.is_empty());
    assert_eq!(
        std::fs::read(m.ufs().join("through")).unwrap(),
        b"0123456789"
    );
    assert!(!staged.exists(), "moved, not copied");
    assert_eq!(names(s, "/").await, ["through"], "staging is not listed");
}
