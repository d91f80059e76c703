//! The permission matrix over a small tree, owned by root (superuser),
//! alice and bob; alice and bob share group `eng`.

use super::*;
use crate::mount::MountPoint;
use crate::namespace::{CreateOpts, Effects, MkdirOpts, NewAttrs};

const NOW: i64 = 1_000;

fn p(s: &str) -> EddyPath {
    EddyPath::parse(s).unwrap()
}

fn code(r: Result<()>) -> Option<eddy_proto::EddyCode> {
    r.err().map(|e| e.code())
}

fn denied(r: Result<()>) -> String {
    match r {
        Err(e @ MasterError::PermissionDenied(_)) => e.to_string(),
        other => panic!("expected PERMISSION_DENIED, got {other:?}"),
    }
}

fn alice() -> Access {
    Access::user("alice", &["alice", "eng"], "root")
}
fn bob() -> Access {
    Access::user("bob", &["bob", "eng"], "root")
}
fn carol() -> Access {
    Access::user("carol", &["carol"], "root")
}

/// `/` root:supergroup 0755; `/home` 0755; `/home/alice` alice:eng 0750
/// holding `f` 0640 and `sub/g`; `/tmp` 01777 holding alice's `a` and
/// bob's `b`; `/pub` 0777.
fn tree() -> Namespace {
    let root = MountPoint {
        id: 1,
        path: EddyPath::root(),
        uri: "file:///ufs".into(),
        read_only: false,
        options: Default::default(),
        sync_interval_ms: -1,
    };
    let (mut n, _) = Namespace::new_owned(root, 1 << 20, NOW, "root", "supergroup");
    let mut fx = Effects::default();
    let mk = |n: &mut Namespace, fx: &mut Effects, path: &str, owner: &str, group: &str, mode| {
        let a = NewAttrs {
            mode: Some(mode),
            owner: owner.into(),
            group: group.into(),
            ..NewAttrs::default()
        };
        n.mkdir(&p(path), MkdirOpts::default(), &a, NOW, fx)
            .unwrap();
    };
    let file = |n: &mut Namespace, fx: &mut Effects, path: &str, owner: &str, mode| {
        let a = NewAttrs {
            mode: Some(mode),
            owner: owner.into(),
            ..NewAttrs::default()
        };
        n.create_file(&p(path), CreateOpts::default(), &a, NOW, fx)
            .unwrap();
    };
    mk(&mut n, &mut fx, "/home", "root", "", 0o755);
    mk(&mut n, &mut fx, "/home/alice", "alice", "eng", 0o750);
    file(&mut n, &mut fx, "/home/alice/f", "alice", 0o640);
    mk(&mut n, &mut fx, "/home/alice/sub", "alice", "", 0o700);
    file(&mut n, &mut fx, "/home/alice/sub/g", "alice", 0o600);
    mk(&mut n, &mut fx, "/tmp", "root", "", 0o1777);
    file(&mut n, &mut fx, "/tmp/a", "alice", 0o644);
    file(&mut n, &mut fx, "/tmp/b", "bob", 0o644);
    mk(&mut n, &mut fx, "/pub", "root", "", 0o777);
    n
}

const READ_NEED: Need = Need {
    owner: false,
    ancestor: 0,
    parent: 0,
    access: READ,
    sub: 0,
};

#[test]
fn traversal_needs_execute_on_every_ancestor() {
    let n = tree();
    let stat = Need::default();
    assert!(n.permit(&alice(), &p("/home/alice/f"), stat).is_ok());
    // bob is in eng: group r-x on /home/alice.
    assert!(n.permit(&bob(), &p("/home/alice/f"), stat).is_ok());
    // carol is "other": ---, so not even a missing name below is found.
    let m = denied(n.permit(&carol(), &p("/home/alice/f"), stat));
    assert_eq!(
        m,
        "Permission denied: user=carol, access=EXECUTE, inode=\"/home/alice\":alice:eng:drwxr-x---"
    );
    assert!(n.permit(&carol(), &p("/home/alice/nope"), stat).is_err());
    // The directory itself is stat-able: only its ancestors need x.
    assert!(n.permit(&carol(), &p("/home/alice"), stat).is_ok());
    // bob may not go into alice's 0700 sub.
    assert!(n.permit(&bob(), &p("/home/alice/sub/g"), stat).is_err());
}

#[test]
fn reading_and_listing_need_read_on_the_target() {
    let n = tree();
    assert!(n.permit(&alice(), &p("/home/alice/f"), READ_NEED).is_ok());
    assert!(n.permit(&bob(), &p("/home/alice/f"), READ_NEED).is_ok()); // group r
    let list = Need {
        access: READ | EXECUTE,
        ..Need::default()
    };
    assert!(n.permit(&bob(), &p("/home/alice"), list).is_ok());
    assert!(n.permit(&carol(), &p("/home/alice"), list).is_err());
    assert!(n.permit(&bob(), &p("/home/alice/sub"), list).is_err());
    // Owner bits decide for the owner, even when others have more.
    let m = denied(n.permit(
        &alice(),
        &p("/tmp"),
        Need {
            access: WRITE,
            owner: true,
            ..Need::default()
        },
    ));
    assert!(
        m.contains("is not the owner of inode=\"/tmp\":root:supergroup:drwxrwxrwt"),
        "{m}"
    );
}

#[test]
fn creating_needs_write_and_execute_on_the_deepest_existing_directory() {
    let n = tree();
    assert!(n.permit_create(&alice(), &p("/home/alice/new")).is_ok());
    let m = denied(n.permit_create(&bob(), &p("/home/alice/new")));
    assert!(
        m.contains("access=WRITE_EXECUTE, inode=\"/home/alice\""),
        "{m}"
    );
    // mkdir -p: the last existing ancestor decides.
    assert!(n.permit_create(&carol(), &p("/pub/x/y/z")).is_ok());
    assert!(n.permit_create(&carol(), &p("/home/x/y")).is_err());
    // An existing directory (mkdir -p again) needs only traversal.
    assert!(n.permit_create(&carol(), &p("/home")).is_ok());
}

#[test]
fn deleting_needs_write_on_the_parent_and_everything_below_when_recursive() {
    let n = tree();
    assert!(
        n.permit_delete(&alice(), &p("/home/alice/f"), false)
            .is_ok()
    );
    assert!(n.permit_delete(&bob(), &p("/home/alice/f"), false).is_err());
    // alice may not delete her home: / and /home are root's 0755.
    assert!(n.permit_delete(&alice(), &p("/home/alice"), true).is_err());
    // Recursive: bob owns /pub/d but not alice's 0700 directory inside.
    let mut n = n;
    let mut fx = Effects::default();
    let attrs = |o: &str, mode| NewAttrs {
        mode: Some(mode),
        owner: o.into(),
        ..NewAttrs::default()
    };
    n.mkdir(
        &p("/pub/d"),
        MkdirOpts::default(),
        &attrs("bob", 0o777),
        NOW,
        &mut fx,
    )
    .unwrap();
    n.mkdir(
        &p("/pub/d/priv"),
        MkdirOpts::default(),
        &attrs("alice", 0o700),
        NOW,
        &mut fx,
    )
    .unwrap();
    n.create_file(
        &p("/pub/d/priv/x"),
        CreateOpts::default(),
        &attrs("alice", 0o600),
        NOW,
        &mut fx,
    )
    .unwrap();
    let m = denied(n.permit_delete(&bob(), &p("/pub/d"), true));
    assert!(m.contains("access=ALL, inode=\"/pub/d/priv\""), "{m}");
    assert!(n.permit_delete(&alice(), &p("/pub/d"), true).is_ok());
}

#[test]
fn the_sticky_bit_keeps_others_from_removing_or_moving_entries() {
    let n = tree();
    assert!(n.permit_delete(&alice(), &p("/tmp/a"), false).is_ok());
    let m = denied(n.permit_delete(&alice(), &p("/tmp/b"), false));
    assert!(
        m.starts_with("Permission denied by sticky bit: user=alice, path=\"/tmp/b\":bob"),
        "{m}"
    );
    assert!(
        n.permit_rename(&alice(), &p("/tmp/b"), &p("/tmp/c"))
            .is_err()
    );
    assert!(n.permit_rename(&bob(), &p("/tmp/b"), &p("/tmp/c")).is_ok());
    // The superuser, who owns /tmp, may.
    assert!(
        n.permit_delete(&Access::superuser("root"), &p("/tmp/b"), false)
            .is_ok()
    );
    assert!(
        n.permit_delete(&Access::user("root", &[], "root"), &p("/tmp/b"), false)
            .is_ok()
    );
}

#[test]
fn renaming_needs_write_on_both_parents() {
    let n = tree();
    assert!(
        n.permit_rename(&alice(), &p("/home/alice/f"), &p("/pub/f"))
            .is_ok()
    );
    assert!(
        n.permit_rename(&alice(), &p("/home/alice/f"), &p("/home/f"))
            .is_err()
    );
    assert!(
        n.permit_rename(&bob(), &p("/home/alice/f"), &p("/pub/f"))
            .is_err()
    );
}

#[test]
fn chmod_is_the_owners_chown_the_superusers_chgrp_to_ones_own_groups() {
    let n = tree();
    let chmod = AttrChange {
        mode: Some(0o700),
        ..AttrChange::default()
    };
    assert!(
        n.permit_set_attribute(&alice(), &p("/home/alice/f"), &chmod)
            .is_ok()
    );
    let m = denied(n.permit_set_attribute(&bob(), &p("/home/alice/f"), &chmod));
    assert!(m.contains("user=bob is not the owner"), "{m}");
    let chown = AttrChange {
        owner: Some("bob".into()),
        ..AttrChange::default()
    };
    let m = denied(n.permit_set_attribute(&alice(), &p("/home/alice/f"), &chown));
    assert!(m.contains("only the superuser (root)"), "{m}");
    assert!(
        n.permit_set_attribute(&Access::superuser("root"), &p("/home/alice/f"), &chown)
            .is_ok()
    );
    let chgrp = |g: &str| AttrChange {
        group: Some(g.into()),
        ..AttrChange::default()
    };
    assert!(
        n.permit_set_attribute(&alice(), &p("/home/alice/f"), &chgrp("eng"))
            .is_ok()
    );
    assert!(
        n.permit_set_attribute(&alice(), &p("/home/alice/f"), &chgrp("wheel"))
            .is_err()
    );
    assert!(
        n.permit_set_attribute(&bob(), &p("/home/alice/f"), &chgrp("eng"))
            .is_err()
    );
    // Recursive chmod: every entry must be the caller's.
    let r = AttrChange {
        recursive: true,
        ..chmod.clone()
    };
    assert!(n.permit_set_attribute(&alice(), &p("/tmp"), &r).is_err());
    // Pin and TTL need write on the target; replication is the superuser's.
    let pin = AttrChange {
        pinned: Some(true),
        ..AttrChange::default()
    };
    assert!(
        n.permit_set_attribute(&bob(), &p("/home/alice/f"), &pin)
            .is_err()
    );
    assert!(n.permit_set_attribute(&bob(), &p("/tmp/b"), &pin).is_ok());
    let repl = AttrChange {
        replication_min: Some(2),
        ..AttrChange::default()
    };
    assert!(n.permit_set_attribute(&bob(), &p("/tmp/b"), &repl).is_err());
}

#[test]
fn superusers_and_admin_operations() {
    let n = tree();
    let su = Access::superuser("root");
    for path in ["/home/alice/sub/g", "/tmp/b"] {
        assert!(n.permit_delete(&su, &p(path), true).is_ok());
        assert!(n.permit(&su, &p(path), READ_NEED).is_ok());
    }
    let m = alice()
        .require_superuser("mount /m")
        .unwrap_err()
        .to_string();
    assert_eq!(
        m,
        "Permission denied: user=alice may not mount /m; only the superuser (root) or a member of the supergroup may"
    );
    assert!(su.require_superuser("mount /m").is_ok());
    // free: one's own files, or the superuser.
    assert!(n.permit_free(&alice(), &p("/home/alice")).is_ok());
    assert!(n.permit_free(&alice(), &p("/tmp")).is_err());
    assert!(n.permit_free(&su, &p("/tmp")).is_ok());
}

#[test]
fn an_entry_without_an_owner_is_the_superusers_and_new_entries_take_the_parents_group() {
    let n = tree();
    let home = n.get(n.lookup(&p("/home")).unwrap()).unwrap();
    // Created with no group: the root's (the supergroup).
    assert_eq!(&*home.owner.group, "supergroup");
    let sub = n.get(n.lookup(&p("/home/alice/sub")).unwrap()).unwrap();
    assert_eq!(&*sub.owner.group, "eng");
    let (mut old, _) = Namespace::new(
        MountPoint {
            id: 1,
            path: EddyPath::root(),
            uri: "file:///u".into(),
            read_only: false,
            options: Default::default(),
            sync_interval_ms: -1,
        },
        1 << 20,
        NOW,
    );
    let mut fx = Effects::default();
    old.mkdir(
        &p("/d"),
        MkdirOpts::default(),
        &NewAttrs::default(),
        NOW,
        &mut fx,
    )
    .unwrap();
    // /d has no recorded owner: the superuser's, so alice may not write it.
    let m = denied(old.permit_create(&alice(), &p("/d/x")));
    assert!(m.contains("inode=\"/d\":root:-:drwxr-xr-x"), "{m}");
    assert!(
        old.permit_create(&Access::user("root", &[], "root"), &p("/d/x"))
            .is_ok()
    );
    assert_eq!(
        code(old.permit_create(&alice(), &p("/d/x"))),
        Some(eddy_proto::EddyCode::PermissionDenied)
    );
}

#[test]
fn mode_strings_read_as_ls_prints_them() {
    assert_eq!(mode_string(FLAG_DIR, 0o1777), "drwxrwxrwt");
    assert_eq!(mode_string(FLAG_DIR, 0o1770), "drwxrwx--T");
    assert_eq!(mode_string(0, 0o640), "-rw-r-----");
}
