use super::*;

const NOW: i64 = 1_000;
/// The options tests use most, named for the commands they mirror.
const MKDIR: MkdirOpts = MkdirOpts {
    recursive: false,
    allow_exists: false,
    persisted: true,
};
const MKDIR_P: MkdirOpts = MkdirOpts {
    recursive: true,
    ..MKDIR
};
const CREATE: CreateOpts = CreateOpts {
    recursive: false,
    parents_persisted: true,
};
const RM: DeleteOpts = DeleteOpts {
    recursive: false,
    eddy_only: false,
};
const RM_R: DeleteOpts = DeleteOpts {
    recursive: true,
    eddy_only: false,
};

fn p(s: &str) -> EddyPath {
    EddyPath::parse(s).unwrap()
}

fn root_mount(uri: &str) -> MountPoint {
    MountPoint {
        id: 1,
        path: EddyPath::root(),
        uri: uri.into(),
        read_only: false,
        options: Default::default(),
        sync_interval_ms: -1,
    }
}

fn ns() -> Namespace {
    Namespace::new(root_mount("file:///ufs"), 64 << 20, NOW).0
}

fn fx() -> Effects {
    Effects::default()
}

#[test]
fn expired_ttls_are_found_outermost_first_and_bounds_listed() {
    let mut n = ns();
    let mut f = fx();
    let a = NewAttrs::default();
    n.mkdir(&p("/d"), MKDIR, &a, NOW, &mut f).unwrap();
    for name in ["/d/x", "/y", "/z"] {
        n.create_file(&p(name), CREATE, &a, NOW, &mut f).unwrap();
        n.complete_file(&p(name), 100 << 20, true, "", NOW, &mut f)
            .unwrap();
    }
    let ttl = |ms, action| AttrChange {
        ttl_ms: Some(ms),
        ttl_action: Some(action),
        ..Default::default()
    };
    n.set_attribute(&p("/d"), &ttl(1000, TtlAction::Free), &mut f)
        .unwrap();
    n.set_attribute(&p("/d/x"), &ttl(10, TtlAction::Delete), &mut f)
        .unwrap();
    n.set_attribute(&p("/y"), &ttl(5000, TtlAction::Delete), &mut f)
        .unwrap();
    assert!(n.expired_ttls(NOW + 5).is_empty());
    // Only /d/x has run out.
    let got = n.expired_ttls(NOW + 10);
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].0.as_str(), got[0].1), ("/d/x", TtlAction::Delete));
    // /d too: its action covers /d/x, which is left out.
    let got = n.expired_ttls(NOW + 1000);
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].0.as_str(), got[0].1), ("/d", TtlAction::Free));
    assert_eq!(n.expired_ttls(NOW + 6000).len(), 2);
    assert_eq!(
        n.path_of(n.resolve(&p("/d/x")).unwrap()).unwrap().as_str(),
        "/d/x"
    );

    assert!(n.replicated_files().is_empty());
    let bounds = AttrChange {
        replication_min: Some(2),
        replication_max: Some(3),
        ..Default::default()
    };
    let z = n.set_attribute(&p("/z"), &bounds, &mut f).unwrap();
    let r = n.replicated_files();
    assert_eq!(r.len(), 1);
    assert_eq!((r[0].0, r[0].1.len(), r[0].2, r[0].3), (z, 2, 2, 3));
}

#[test]
fn pins_are_tracked_and_free_refuses_what_it_must() {
    let mut n = ns();
    let mut f = fx();
    let a = NewAttrs::default();
    n.mkdir(&p("/d"), MKDIR, &a, NOW, &mut f).unwrap();
    for (name, persisted) in [("/d/a", true), ("/d/b", true), ("/d/mem", false)] {
        n.create_file(&p(name), CREATE, &a, NOW, &mut f).unwrap();
        n.complete_file(&p(name), 100 << 20, persisted, "", NOW, &mut f)
            .unwrap();
    }
    let (v0, none) = n.pinned_files();
    assert!(none.is_empty());
    let pin = |pinned| AttrChange {
        pinned: Some(pinned),
        ..Default::default()
    };
    let a_id = n.set_attribute(&p("/d/a"), &pin(true), &mut f).unwrap();
    let (v1, pinned) = n.pinned_files();
    assert!(v1 > v0);
    assert_eq!(pinned, [a_id]);

    // Two blocks of 64 MiB for a 100 MiB file.
    assert_eq!(
        n.free_targets(&p("/d/b"), FreeOpts::default())
            .unwrap()
            .len(),
        2
    );
    let e = n.free_targets(&p("/d/a"), FreeOpts::default()).unwrap_err();
    assert!(e.to_string().contains("pinned"), "{e}");
    assert_eq!(
        n.free_targets(
            &p("/d/a"),
            FreeOpts {
                force: true,
                ..Default::default()
            }
        )
        .unwrap()
        .len(),
        2
    );
    let e = n
        .free_targets(&p("/d/mem"), FreeOpts::default())
        .unwrap_err();
    assert!(e.to_string().contains("not persisted"), "{e}");
    let e = n.free_targets(&p("/d"), FreeOpts::default()).unwrap_err();
    assert_eq!(e.code(), eddy_proto::EddyCode::DirectoryNotEmpty);
    n.delete(&p("/d/mem"), RM, NOW, &mut f).unwrap();
    assert_eq!(
        n.free_targets(
            &p("/d"),
            FreeOpts {
                recursive: true,
                force: true
            }
        )
        .unwrap()
        .len(),
        4
    );

    // Deleting a pinned file unpins it.
    n.delete(&p("/d/a"), RM, NOW, &mut f).unwrap();
    let (v2, pinned) = n.pinned_files();
    assert!(v2 > v1);
    assert!(pinned.is_empty());
}

#[test]
fn mkdir_create_complete() {
    let mut n = ns();
    let mut f = fx();
    assert!(matches!(
        n.mkdir(&p("/a/b"), MKDIR, &NewAttrs::default(), NOW, &mut f),
        Err(MasterError::NotFound(_))
    ));
    assert!(f.is_empty(), "a refused mkdir records nothing");
    n.mkdir(&p("/a/b"), MKDIR_P, &NewAttrs::default(), NOW, &mut f)
        .unwrap();
    assert!(n.lookup(&p("/a")).is_some());
    assert!(matches!(
        n.mkdir(&p("/a/b"), MKDIR_P, &NewAttrs::default(), NOW, &mut f),
        Err(MasterError::AlreadyExists(_))
    ));
    n.mkdir(
        &p("/a/b"),
        MkdirOpts {
            allow_exists: true,
            ..MKDIR_P
        },
        &NewAttrs::default(),
        NOW,
        &mut f,
    )
    .unwrap();
    let id = n
        .create_file(&p("/a/b/f"), CREATE, &NewAttrs::default(), NOW, &mut f)
        .unwrap();
    assert!(!n.get(id).unwrap().flag(FLAG_COMPLETE));
    assert!(matches!(
        n.create_file(&p("/a/b/f"), CREATE, &NewAttrs::default(), NOW, &mut f),
        Err(MasterError::AlreadyExists(_))
    ));
    assert!(matches!(
        n.mkdir(&p("/a/b/f"), MKDIR_P, &NewAttrs::default(), NOW, &mut f),
        Err(MasterError::AlreadyExists(_))
    ));
    assert!(matches!(
        n.mkdir(&p("/a/b/f/g"), MKDIR_P, &NewAttrs::default(), NOW, &mut f),
        Err(MasterError::NotADirectory(_))
    ));
    n.complete_file(&p("/a/b/f"), 200 << 20, false, "", NOW, &mut f)
        .unwrap();
    let ino = n.get(id).unwrap();
    assert_eq!(ino.block_count(), 4);
    assert_eq!(ino.block_length(3), 8 << 20);
    assert!(matches!(
        n.complete_file(&p("/a/b/f"), 1, false, "", NOW, &mut f),
        Err(MasterError::FileAlreadyComplete(_))
    ));
}

#[test]
fn bad_block_sizes_and_replication_are_refused() {
    let mut n = ns();
    let mut f = fx();
    for bs in [1, MAX_BLOCK_SIZE + 1] {
        let a = NewAttrs {
            block_size: bs,
            ..Default::default()
        };
        assert!(matches!(
            n.create_file(&p("/f"), CREATE, &a, NOW, &mut f),
            Err(MasterError::InvalidArgument(_))
        ));
    }
    let a = NewAttrs {
        replication_min: 3,
        replication_max: 2,
        ..Default::default()
    };
    assert!(matches!(
        n.create_file(&p("/f"), CREATE, &a, NOW, &mut f),
        Err(MasterError::InvalidArgument(_))
    ));
    assert!(f.is_empty());
}

#[test]
fn rename_rules() {
    let mut n = ns();
    let mut f = fx();
    n.mkdir(&p("/a/b/c"), MKDIR_P, &NewAttrs::default(), NOW, &mut f)
        .unwrap();
    n.create_file(&p("/x"), CREATE, &NewAttrs::default(), NOW, &mut f)
        .unwrap();
    assert!(matches!(
        n.rename(&p("/a"), &p("/a/b/c/d"), NOW, &mut f),
        Err(MasterError::InvalidArgument(_))
    ));
    assert!(matches!(
        n.rename(&p("/a"), &p("/x"), NOW, &mut f),
        Err(MasterError::AlreadyExists(_))
    ));
    assert!(matches!(
        n.rename(&p("/a"), &p("/nope/a"), NOW, &mut f),
        Err(MasterError::NotFound(_))
    ));
    assert!(matches!(
        n.rename(&p("/a"), &p("/x/a"), NOW, &mut f),
        Err(MasterError::NotADirectory(_))
    ));
    let id = n.lookup(&p("/a/b/c")).unwrap();
    let mut f = fx();
    n.rename(&p("/a/b"), &p("/moved"), NOW, &mut f).unwrap();
    assert_eq!(
        f.ops.len(),
        3,
        "a rename is the moved inode's record and both parents' (their mtimes)"
    );
    assert_eq!(n.lookup(&p("/moved/c")), Some(id));
    assert!(n.lookup(&p("/a/b")).is_none());
}

#[test]
fn delete_rules() {
    let mut n = ns();
    let mut f = fx();
    n.mkdir(&p("/d/e"), MKDIR_P, &NewAttrs::default(), NOW, &mut f)
        .unwrap();
    assert!(matches!(
        n.delete(&p("/d"), RM, NOW, &mut f),
        Err(MasterError::DirectoryNotEmpty(_))
    ));
    assert!(matches!(
        n.delete(&p("/"), RM_R, NOW, &mut f),
        Err(MasterError::InvalidArgument(_))
    ));
    let before = n.inode_count();
    n.delete(&p("/d"), RM_R, NOW, &mut f).unwrap();
    assert_eq!(n.inode_count(), before - 2);
    assert!(n.lookup(&p("/d")).is_none());
}

#[test]
fn mounts_guard_the_tree() {
    let mut n = ns();
    let mut f = fx();
    let m = |id, path: &str, uri: &str, ro| MountPoint {
        id,
        path: p(path),
        uri: uri.into(),
        read_only: ro,
        options: Default::default(),
        sync_interval_ms: -1,
    };
    n.mount(m(2, "/ro", "file:///other", true), NOW, &mut f)
        .unwrap();
    assert!(matches!(
        n.mount(m(3, "/ro/x", "file:///third", false), NOW, &mut f),
        Err(MasterError::ReadOnly(_))
    ));
    assert!(matches!(
        n.mount(m(3, "/y", "file:///other/sub", false), NOW, &mut f),
        Err(MasterError::MountConflict(_))
    ));
    assert!(matches!(
        n.create_file(&p("/ro/f"), CREATE, &NewAttrs::default(), NOW, &mut f),
        Err(MasterError::ReadOnly(_))
    ));
    assert!(matches!(
        n.delete(&p("/ro"), RM_R, NOW, &mut f),
        Err(MasterError::MountConflict(_))
    ));
    assert!(matches!(
        n.rename(&p("/ro"), &p("/ro2"), NOW, &mut f),
        Err(MasterError::MountConflict(_))
    ));
    n.mkdir(&p("/full/x"), MKDIR_P, &NewAttrs::default(), NOW, &mut f)
        .unwrap();
    assert!(matches!(
        n.mount(m(4, "/full", "file:///fourth", false), NOW, &mut f),
        Err(MasterError::MountConflict(_))
    ));
    n.create_file(&p("/w"), CREATE, &NewAttrs::default(), NOW, &mut f)
        .unwrap();
    assert!(matches!(
        n.rename(&p("/w"), &p("/ro/w"), NOW, &mut f),
        Err(MasterError::InvalidArgument(_))
    ));
    n.unmount(&p("/ro"), &mut f).unwrap();
    assert!(n.lookup(&p("/ro")).is_none());
    assert!(matches!(
        n.unmount(&p("/ro"), &mut f),
        Err(MasterError::NotFound(_))
    ));
}

#[test]
fn ufs_merge_adds_updates_and_drops() {
    let mut n = ns();
    let mut f = fx();
    let st = |name: &str, dir, fp: &str| UfsStatus {
        name: name.into(),
        is_dir: dir,
        length: 100,
        mtime_ms: 5,
        fingerprint: fp.into(),
    };
    let id = n
        .merge_ufs_child(ROOT_ID, &st("f", false, "a"), NOW, &mut f)
        .unwrap();
    n.complete_file(&p("/f"), 1, false, "", NOW, &mut f)
        .unwrap_err();
    // A changed fingerprint refreshes the file and drops its cached blocks.
    let mut f = fx();
    let mut changed = st("f", false, "b");
    changed.length = 200 << 20;
    let new_id = n.merge_ufs_child(ROOT_ID, &changed, NOW, &mut f).unwrap();
    assert_ne!(new_id, id, "new content, new block ids");
    assert_eq!(f.dropped_blocks, vec![eddy_proto::block_id(id, 0)]);
    assert!(n.get(id).is_none());
    assert_eq!(n.get(new_id).unwrap().length, 200 << 20);
    assert_eq!(n.lookup(&p("/f")), Some(new_id));
    // Unchanged: same id.
    assert_eq!(
        n.merge_ufs_child(ROOT_ID, &changed, NOW, &mut f),
        Some(new_id)
    );
    // Eddy-only files are never replaced or dropped by a sync.
    n.create_file(&p("/mine"), CREATE, &NewAttrs::default(), NOW, &mut f)
        .unwrap();
    assert_eq!(
        n.merge_ufs_child(ROOT_ID, &st("mine", false, "z"), NOW, &mut f),
        None
    );
    let listed: HashSet<&str> = HashSet::new();
    n.drop_unlisted(ROOT_ID, None, None, &listed, &mut f);
    assert!(n.lookup(&p("/f")).is_none(), "gone from the under-storage");
    assert!(n.lookup(&p("/mine")).is_some(), "Eddy-only file kept");

    // Pages in listing order (a directory sorts as `name/`): each page
    // drops only what falls in its own key range and was not listed.
    for (name, dir) in [
        ("abb", false),
        ("abc", true),
        ("abc-1", false),
        ("abc.txt", false),
    ] {
        n.merge_ufs_child(ROOT_ID, &st(name, dir, "x"), NOW, &mut f)
            .unwrap();
    }
    let page1: HashSet<&str> = ["abc-1", "abc.txt"].into();
    n.drop_unlisted(ROOT_ID, Some("abb0"), Some("abc.txt"), &page1, &mut f);
    assert!(
        n.lookup(&p("/abc")).is_some(),
        "the directory `abc/` sorts after abc.txt"
    );
    assert!(n.lookup(&p("/abb")).is_some(), "outside the page");
    let page2: HashSet<&str> = ["abc"].into();
    n.drop_unlisted(ROOT_ID, Some("abc.txt"), Some("abc/"), &page2, &mut f);
    assert!(n.lookup(&p("/abc")).is_some() && n.lookup(&p("/abc-1")).is_some());
    let none: HashSet<&str> = HashSet::new();
    n.drop_unlisted(ROOT_ID, None, Some("abb"), &none, &mut f);
    assert!(n.lookup(&p("/abb")).is_none(), "unlisted in its own range");
    assert!(n.lookup(&p("/abc.txt")).is_some());
}

#[test]
fn list_pages() {
    let mut n = ns();
    let mut f = fx();
    for i in 0..25 {
        n.create_file(
            &p(&format!("/f{i:02}")),
            CREATE,
            &NewAttrs::default(),
            NOW,
            &mut f,
        )
        .unwrap();
    }
    let mut after = String::new();
    let mut seen = 0;
    loop {
        let (page, next) = n.list(ROOT_ID, &after, 10);
        seen += page.len();
        match next {
            Some(nx) => after = nx,
            None => break,
        }
    }
    assert_eq!(seen, 25);
}

#[test]
fn load_rebuilds_the_tree() {
    let (mut n, mut f) = Namespace::new(root_mount("file:///u"), 1 << 20, NOW);
    n.mkdir(&p("/a/b"), MKDIR_P, &NewAttrs::default(), NOW, &mut f)
        .unwrap();
    n.create_file(&p("/a/b/f"), CREATE, &NewAttrs::default(), NOW, &mut f)
        .unwrap();
    n.rename(&p("/a/b"), &p("/c"), NOW, &mut f).unwrap();
    // Replay the ops the way the metastore would store them.
    let mut inodes = std::collections::HashMap::new();
    let mut mounts = Vec::new();
    let mut next_id = 0;
    for op in f.into_ops() {
        match op {
            MetaOp::PutInode { id, record } => {
                inodes.insert(id, record);
            }
            MetaOp::DeleteInode(id) => {
                inodes.remove(&id);
            }
            MetaOp::PutMount { path, record } => mounts.push((path, record)),
            MetaOp::DeleteMount(_) => {}
            MetaOp::SetNextId(x) => next_id = x,
            MetaOp::PutIntent { .. } | MetaOp::DeleteIntent(_) => {}
        }
    }
    let loaded = Loaded {
        inodes: inodes.into_values().collect(),
        mounts,
        next_id,
        intents: Vec::new(),
    };
    let back = Namespace::load(loaded, 1 << 20).unwrap().unwrap();
    assert_eq!(back.inode_count(), n.inode_count());
    assert_eq!(back.lookup(&p("/c/f")), n.lookup(&p("/c/f")));
    assert!(back.lookup(&p("/a/b")).is_none());
    // A restart starts past the ids reserved, never below one handed out.
    assert_eq!(back.next_id, n.id_reserved);
    assert!(back.next_id > n.next_id);
}

#[test]
fn ids_are_reserved_in_ranges_and_only_a_lone_create_defers() {
    let (mut n, _) = Namespace::new(root_mount("file:///u"), 1 << 20, NOW);
    let mut fx = Effects::default();
    n.create_file(&p("/f0"), CREATE, &NewAttrs::default(), NOW, &mut fx)
        .unwrap();
    assert!(fx.next_id.is_none(), "the first range covers it");
    assert!(fx.deferrable);
    // Creates in a directory that does not exist yet make it: not deferred.
    let mut fx = Effects::default();
    n.create_file(
        &p("/d/f"),
        CreateOpts {
            recursive: true,
            ..CREATE
        },
        &NewAttrs::default(),
        NOW,
        &mut fx,
    )
    .unwrap();
    assert!(!fx.deferrable, "it made /d");
    // The create that needs a new range waits for it to be durable.
    let mut reserving = 0;
    for i in 0..ID_RESERVATION {
        let mut fx = Effects::default();
        n.create_file(
            &p(&format!("/g{i}")),
            CREATE,
            &NewAttrs::default(),
            NOW,
            &mut fx,
        )
        .unwrap();
        if let Some(end) = fx.next_id {
            reserving += 1;
            assert!(
                !fx.deferrable,
                "a reservation is committed before its ids are used"
            );
            assert_eq!(end, n.next_id - 1 + ID_RESERVATION);
        }
    }
    assert_eq!(reserving, 1);
}

#[test]
fn an_inode_id_at_the_top_of_the_range_is_an_error_not_a_panic() {
    // Found by the metastore fuzz target (ci/fuzz): `max_id + 1` overflowed.
    let n = ns();
    let root = n.inodes.get(&ROOT_ID).unwrap().encode();
    let mut top = crate::inode::tests::sample(u64::MAX);
    top.parent = ROOT_ID;
    let loaded = Loaded {
        inodes: vec![root, top.encode()],
        mounts: vec![("/".into(), root_mount("file:///ufs").encode())],
        next_id: 0,
        intents: Vec::new(),
    };
    let e = Namespace::load(loaded, 1 << 20).err().expect("refused");
    assert!(
        matches!(&e, MasterError::Metastore(m) if m.contains(&u64::MAX.to_string())),
        "{e}"
    );
}
