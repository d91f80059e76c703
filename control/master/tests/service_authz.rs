//! Permissions at the service: each call runs as a caller (the access the
//! RPC layer would give it, set with `eddy_master::authz::scope`), and the
//! under-storage is untouched by what is refused.

mod common;

use common::*;
use eddy_master::authz::scope;
use eddy_master::namespace::perm::Access;
use eddy_proto::{EddyCode, pb};

fn alice() -> Access {
    Access::user("alice", &["alice", "eng"], "root")
}
fn bob() -> Access {
    Access::user("bob", &["bob"], "root")
}

#[tokio::test]
async fn callers_own_what_they_create_and_are_refused_before_the_ufs_is_touched() {
    let m = TestMaster::start().await;
    let s = m.state();
    // Set-up as the master itself (the superuser): /home 0777.
    s.mkdir(mkdir("/home", false)).await.unwrap();
    s.set_attribute(pb::SetAttributeRequest {
        path: b"/home".to_vec(),
        mode: Some(0o777),
        ..Default::default()
    })
    .await
    .unwrap();

    // alice's directory: hers, with the parent's group, whatever the
    // request claims.
    let req = pb::MkdirRequest {
        owner: "mallory".into(),
        group: "wheel".into(),
        mode: Some(0o755),
        ..mkdir("/home/alice", false)
    };
    let d = scope(alice(), s.mkdir(req)).await.unwrap();
    assert_eq!((d.owner.as_str(), d.mode), ("alice", 0o755));
    let home = s
        .get_status(pb::GetStatusRequest {
            path: b"/home".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(d.group, home.group);

    // bob may not create in it, and nothing appears in the store.
    let e = scope(bob(), s.mkdir(mkdir("/home/alice/x", false)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), EddyCode::PermissionDenied);
    assert!(
        e.to_string().contains("user=bob, access=WRITE_EXECUTE"),
        "{e}"
    );
    assert!(!m.ufs().join("home/alice/x").exists());
    let e = scope(bob(), s.create_file(create("/home/alice/f")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), EddyCode::PermissionDenied);

    // alice writes a file; bob may not read its blocks once it is 0600,
    // nor list her directory, nor delete or rename in it.
    let (st, _) = scope(alice(), s.create_file(create("/home/alice/f")))
        .await
        .unwrap();
    scope(
        alice(),
        s.complete_file(complete("/home/alice/f", st.id, 0)),
    )
    .await
    .unwrap();
    let blocks = pb::GetFileBlocksRequest {
        path: b"/home/alice/f".to_vec(),
    };
    scope(bob(), s.get_file_blocks(blocks.clone()))
        .await
        .unwrap();
    scope(
        alice(),
        s.set_attribute(pb::SetAttributeRequest {
            path: b"/home/alice/f".to_vec(),
            mode: Some(0o600),
            ..Default::default()
        }),
    )
    .await
    .unwrap();
    let e = scope(bob(), s.get_file_blocks(blocks)).await.unwrap_err();
    assert!(e.to_string().contains("access=READ"), "{e}");
    // Traversable but not readable: no listing.
    scope(
        alice(),
        s.set_attribute(pb::SetAttributeRequest {
            path: b"/home/alice".to_vec(),
            mode: Some(0o711),
            ..Default::default()
        }),
    )
    .await
    .unwrap();
    let e = scope(bob(), s.list_status(list("/home/alice")))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("access=READ_EXECUTE"), "{e}");
    let e = scope(bob(), s.delete(delete("/home/alice/f", false)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), EddyCode::PermissionDenied);
    let still = pb::GetStatusRequest {
        path: b"/home/alice/f".to_vec(),
        ..Default::default()
    };
    assert!(
        s.get_status(still).await.is_ok(),
        "a refused delete deletes nothing"
    );
    let mv = pb::RenameRequest {
        src: b"/home/alice/f".to_vec(),
        dst: b"/home/g".to_vec(),
    };
    let e = scope(bob(), s.rename(mv.clone())).await.unwrap_err();
    assert_eq!(e.code(), EddyCode::PermissionDenied);
    scope(alice(), s.rename(mv)).await.unwrap();

    // Admin operations: the superuser's only.
    let ext = tempfile::tempdir().unwrap();
    let mount = pb::MountRequest {
        path: b"/ext".to_vec(),
        ufs_uri: ext.path().display().to_string(),
        ..Default::default()
    };
    let e = scope(alice(), s.mount(mount.clone())).await.unwrap_err();
    assert!(
        e.to_string()
            .contains("may not mount /ext; only the superuser (root)"),
        "{e}"
    );
    scope(Access::superuser("root"), s.mount(mount))
        .await
        .unwrap();
    let e = scope(
        alice(),
        s.check_consistency(pb::CheckConsistencyRequest {
            path: b"/".to_vec(),
        }),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), EddyCode::PermissionDenied);
}

/// A request that reached a method without the authentication layer is
/// nobody's: refused, and nothing is done for it.
#[tokio::test]
async fn a_request_without_a_caller_is_refused() {
    use eddy_master::identity::Caller;
    use eddy_master::rpc::MasterRpc;
    use eddy_proto::RpcError;
    use pb::block_master_server::BlockMaster;
    use pb::file_system_master_server::FileSystemMaster;
    use pb::meta_master_server::MetaMaster;
    let m = TestMaster::start().await;
    let rpc = MasterRpc(m.state().clone());
    let refused = |s: tonic::Status| {
        let e = RpcError::from(s);
        assert_eq!(e.code, EddyCode::Unauthenticated, "{e:?}");
        assert!(e.message.contains("authentication layer"), "{}", e.message);
    };
    refused(
        rpc.mkdir(tonic::Request::new(mkdir("/x", false)))
            .await
            .unwrap_err(),
    );
    assert!(!m.ufs().join("x").exists(), "nothing was made for it");
    refused(
        rpc.get_status(tonic::Request::new(stat("/")))
            .await
            .unwrap_err(),
    );
    refused(
        rpc.select_worker(tonic::Request::new(pb::SelectWorkerRequest::default()))
            .await
            .unwrap_err(),
    );
    refused(
        rpc.register_worker(tonic::Request::new(pb::RegisterWorkerRequest::default()))
            .await
            .unwrap_err(),
    );
    refused(
        rpc.get_cluster_info(tonic::Request::new(pb::GetClusterInfoRequest {}))
            .await
            .unwrap_err(),
    );
    // Saying who one is makes the same call work.
    let me = Caller::user(&m.state().authz.superuser);
    rpc.mkdir(me.request(mkdir("/x", false))).await.unwrap();
    assert!(m.ufs().join("x").is_dir());
}

/// Every service the master serves is behind the layer: a call with no
/// user and no token is refused by it, whatever the service.
#[tokio::test]
async fn every_service_is_served_behind_the_authentication_layer() {
    use eddy_proto::RpcError;
    let m = TestMaster::start().await;
    let url = format!("http://{}", m.running().addr);
    let ch = tonic::transport::Endpoint::from_shared(url)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let by_layer = |s: tonic::Status| {
        let e = RpcError::from(s);
        assert_eq!(e.code, EddyCode::Unauthenticated, "{e:?}");
        assert!(e.message.contains("no user name was sent"), "{}", e.message);
    };
    let mut fs = pb::file_system_master_client::FileSystemMasterClient::new(ch.clone());
    by_layer(fs.get_status(stat("/")).await.unwrap_err());
    let mut bm = pb::block_master_client::BlockMasterClient::new(ch.clone());
    by_layer(
        bm.select_worker(pb::SelectWorkerRequest::default())
            .await
            .unwrap_err(),
    );
    let mut meta = pb::meta_master_client::MetaMasterClient::new(ch);
    by_layer(
        meta.get_cluster_info(pb::GetClusterInfoRequest {})
            .await
            .unwrap_err(),
    );
}

/// SelectWorker names a worker for a block of a file the caller writes
/// (it owns the incomplete file) or may read; anyone else is refused.
#[tokio::test]
async fn select_worker_needs_access_to_the_blocks_file() {
    let m = TestMaster::start().await;
    let s = m.state();
    s.register_worker(pb::RegisterWorkerRequest {
        address: Some(pb::WorkerAddress {
            host: "127.0.0.1".into(),
            data_port: 7001,
            ..Default::default()
        }),
        tiers: vec![pb::TierUsage {
            tier: "MEM".into(),
            capacity_bytes: 1 << 30,
            ..Default::default()
        }],
        ..Default::default()
    })
    .unwrap();
    s.mkdir(mkdir("/home", false)).await.unwrap();
    s.set_attribute(pb::SetAttributeRequest {
        path: b"/home".to_vec(),
        mode: Some(0o777),
        ..Default::default()
    })
    .await
    .unwrap();
    let pick = |block_id| pb::SelectWorkerRequest {
        block_id,
        bytes_needed: 1,
        ..Default::default()
    };
    // alice's file being written: hers to place, not bob's.
    let (st, _) = scope(alice(), s.create_file(create("/home/w")))
        .await
        .unwrap();
    let b = eddy_proto::block_id(st.id, 0);
    scope(alice(), s.select_worker_in_grace(pick(b)))
        .await
        .unwrap();
    let e = scope(bob(), s.select_worker_in_grace(pick(b)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), EddyCode::PermissionDenied, "{e}");
    assert!(e.to_string().contains("user=bob is not the owner"), "{e}");

    // Complete: whoever may read it (a miss to fill), nobody else.
    scope(alice(), s.complete_file(complete("/home/w", st.id, 10)))
        .await
        .unwrap();
    scope(bob(), s.select_worker_in_grace(pick(b)))
        .await
        .unwrap();
    let private = pb::SetAttributeRequest {
        path: b"/home/w".to_vec(),
        mode: Some(0o600),
        ..Default::default()
    };
    scope(alice(), s.set_attribute(private)).await.unwrap();
    let e = scope(bob(), s.select_worker_in_grace(pick(b)))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("user=bob, access=READ"), "{e}");
    scope(alice(), s.select_worker_in_grace(pick(b)))
        .await
        .unwrap();

    // A block of no file: nothing to place, for anyone.
    let none = eddy_proto::block_id(st.id + 1000, 0);
    let e = s.select_worker_in_grace(pick(none)).await.unwrap_err();
    assert_eq!(e.code(), EddyCode::NotFound, "{e}");
}

/// A local directory mounted at /ext with `mode`, listed once by the
/// superuser (so later changes in the directory are unknown to the master
/// until it looks again).
async fn mount_listed(s: &eddy_master::service::MasterState, mode: u32) -> tempfile::TempDir {
    let ext = tempfile::tempdir().unwrap();
    s.mount(pb::MountRequest {
        path: b"/ext".to_vec(),
        ufs_uri: ext.path().display().to_string(),
        ..Default::default()
    })
    .await
    .unwrap();
    s.set_attribute(pb::SetAttributeRequest {
        path: b"/ext".to_vec(),
        mode: Some(mode),
        ..Default::default()
    })
    .await
    .unwrap();
    assert!(names(s, "/ext").await.is_empty());
    ext
}

/// Without execute on a mounted directory, a stat, an exists or a listing
/// below it is refused before the master asks the under-storage anything.
/// The mount is a local directory: a file added there is seen only when
/// the master looks, and a file removed there stays known once seen, so
/// what the master knows afterwards shows whether bob's calls made it look.
#[tokio::test]
async fn a_caller_who_may_not_traverse_makes_the_master_touch_no_under_storage() {
    let m = TestMaster::start().await;
    let s = m.state();
    let ext = mount_listed(s, 0o700).await;
    // The store changes after the superuser's listing.
    std::fs::write(ext.path().join("secret"), b"x").unwrap();
    std::fs::create_dir(ext.path().join("sub")).unwrap();

    fn denied<T>(r: Result<T, eddy_master::MasterError>, what: &str) {
        let e = r.err().unwrap_or_else(|| panic!("{what} was allowed"));
        assert_eq!(e.code(), EddyCode::PermissionDenied, "{what}: {e}");
        assert!(e.to_string().contains("access=EXECUTE"), "{what}: {e}");
    }
    let sync = Some(pb::SyncPolicy {
        interval_ms: Some(0),
    });
    let r = scope(bob(), s.get_status(stat("/ext/secret"))).await;
    denied(r, "stat of an existing child");
    let r = scope(bob(), s.get_status(stat("/ext/missing"))).await;
    denied(r, "stat of a missing child (not NOT_FOUND)");
    let exists = pb::ExistsRequest {
        path: b"/ext/secret".to_vec(),
        sync,
    };
    denied(scope(bob(), s.exists(exists)).await, "exists");
    let listing = pb::ListStatusRequest {
        sync,
        ..list("/ext/sub")
    };
    denied(scope(bob(), s.list_status(listing)).await, "list below");
    let blocks = pb::GetFileBlocksRequest {
        path: b"/ext/secret".to_vec(),
    };
    denied(scope(bob(), s.get_file_blocks(blocks)).await, "blocks");

    // Gone again from the store before the master ever looked: had bob's
    // calls loaded them, they would still be known now.
    std::fs::remove_file(ext.path().join("secret")).unwrap();
    std::fs::remove_dir(ext.path().join("sub")).unwrap();
    let never = |p: &str| pb::GetStatusRequest {
        path: p.into(),
        sync: Some(pb::SyncPolicy {
            interval_ms: Some(-1),
        }),
    };
    for p in ["/ext/secret", "/ext/sub"] {
        let e = s.get_status(never(p)).await.unwrap_err();
        assert_eq!(e.code(), EddyCode::NotFound, "{p} was loaded for bob");
    }
}

/// A directory one may traverse but not read is not listed from the store
/// for that caller either.
#[tokio::test]
async fn a_listing_refused_lists_nothing_from_the_under_storage() {
    let m = TestMaster::start().await;
    let s = m.state();
    let ext = mount_listed(s, 0o711).await;
    std::fs::write(ext.path().join("late"), b"x").unwrap();
    let listing = pb::ListStatusRequest {
        sync: Some(pb::SyncPolicy {
            interval_ms: Some(0),
        }),
        ..list("/ext")
    };
    let e = scope(bob(), s.list_status(listing)).await.unwrap_err();
    assert!(e.to_string().contains("access=READ_EXECUTE"), "{e}");
    // The superuser's listing that does not sync: still the old one.
    let cached = pb::ListStatusRequest {
        sync: Some(pb::SyncPolicy {
            interval_ms: Some(-1),
        }),
        ..list("/ext")
    };
    assert!(s.list_status(cached).await.unwrap().entries.is_empty());
}

/// Through the RPC glue, every call runs as its caller: bob, who may not
/// traverse /p, is refused each file system call on what is inside it,
/// the admin calls, and a placement for its file; a user is refused every
/// worker call.
#[tokio::test]
async fn every_rpc_is_checked_for_its_caller() {
    use eddy_master::identity::Caller;
    use eddy_master::rpc::MasterRpc;
    use eddy_proto::RpcError;
    use pb::block_master_server::BlockMaster;
    use pb::file_system_master_server::FileSystemMaster;
    let m = TestMaster::start().await;
    let s = m.state();
    s.mkdir(mkdir("/p", false)).await.unwrap();
    let f = make_file(s, "/p/f", 10).await;
    s.set_attribute(pb::SetAttributeRequest {
        path: b"/p".to_vec(),
        mode: Some(0o700),
        ..Default::default()
    })
    .await
    .unwrap();
    let rpc = MasterRpc(s.clone());
    let bob = Caller::user("bob");
    let code = |r: Result<(), tonic::Status>| r.map_err(|e| RpcError::from(e).code).err();
    macro_rules! as_bob {
        ($method:ident, $req:expr) => {
            code(rpc.$method(bob.request($req)).await.map(|_| ()))
        };
    }
    let p = |s: &str| s.as_bytes().to_vec();
    let denied = Some(EddyCode::PermissionDenied);
    let fs = [
        ("Mkdir", as_bob!(mkdir, mkdir("/p/x", false))),
        ("CreateFile", as_bob!(create_file, create("/p/x"))),
        (
            "CompleteFile",
            as_bob!(complete_file, complete("/p/f", f.id, 10)),
        ),
        ("GetStatus", as_bob!(get_status, stat("/p/f"))),
        (
            "Exists",
            as_bob!(
                exists,
                pb::ExistsRequest {
                    path: p("/p/f"),
                    sync: None
                }
            ),
        ),
        ("ListStatus", as_bob!(list_status, list("/p"))),
        ("Rename", as_bob!(rename, rename("/p/f", "/g"))),
        ("Delete", as_bob!(delete, delete("/p/f", false))),
        (
            "SetAttribute",
            as_bob!(
                set_attribute,
                pb::SetAttributeRequest {
                    path: p("/p/f"),
                    pinned: Some(true),
                    ..Default::default()
                }
            ),
        ),
        (
            "Mount",
            as_bob!(
                mount,
                pb::MountRequest {
                    path: p("/m"),
                    ufs_uri: m.dir.path().display().to_string(),
                    ..Default::default()
                }
            ),
        ),
        (
            "Unmount",
            as_bob!(unmount, pb::UnmountRequest { path: p("/p") }),
        ),
        (
            "GetFileBlocks",
            as_bob!(
                get_file_blocks,
                pb::GetFileBlocksRequest { path: p("/p/f") }
            ),
        ),
        (
            "Free",
            as_bob!(
                free,
                pb::FreeRequest {
                    path: p("/p/f"),
                    ..Default::default()
                }
            ),
        ),
        (
            "CheckConsistency",
            as_bob!(
                check_consistency,
                pb::CheckConsistencyRequest { path: p("/") }
            ),
        ),
        (
            "Persist",
            as_bob!(persist, pb::PersistRequest { path: p("/p/f") }),
        ),
        (
            "SelectWorker",
            as_bob!(
                select_worker,
                pb::SelectWorkerRequest {
                    block_id: eddy_proto::block_id(f.id, 0),
                    ..Default::default()
                }
            ),
        ),
    ];
    for (name, got) in fs {
        assert_eq!(got, denied, "{name} as bob");
    }
    assert_eq!(
        as_bob!(list_mounts, pb::ListMountsRequest {}),
        None,
        "any user"
    );
    let unauthenticated = Some(EddyCode::Unauthenticated);
    let worker_only = [
        (
            "RegisterWorker",
            as_bob!(register_worker, pb::RegisterWorkerRequest::default()),
        ),
        (
            "Heartbeat",
            as_bob!(heartbeat, pb::HeartbeatRequest::default()),
        ),
        (
            "GetMount",
            as_bob!(get_mount, pb::GetMountRequest::default()),
        ),
        (
            "CommitBlock",
            as_bob!(commit_block, pb::CommitBlockRequest::default()),
        ),
        (
            "GetBlockInfo",
            as_bob!(get_block_info, pb::GetBlockInfoRequest::default()),
        ),
        (
            "FilePersisted",
            as_bob!(file_persisted, pb::FilePersistedRequest::default()),
        ),
    ];
    for (name, got) in worker_only {
        assert_eq!(got, unauthenticated, "{name} as bob");
    }
}
