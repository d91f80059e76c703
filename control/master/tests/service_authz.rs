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
