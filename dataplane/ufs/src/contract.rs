//! The contract every [`UnderFileSystem`] backend passes.
//!
//! A backend's test calls [`run_all`] with a fresh, empty instance. Each check
//! panics with a message naming the broken promise, so the suite runs under
//! any test harness. Object-store backends run the same suite; where a
//! capability differs (atomic rename, real directories) the check follows
//! [`UnderFileSystem::capabilities`].

use bytes::Bytes;

use crate::{UfsError, UfsPath, UfsStatus, UnderFileSystem};

fn p(s: &str) -> UfsPath {
    UfsPath::parse(s).expect("contract paths are valid")
}

/// How the checks put the files they then read.
#[derive(Clone, Copy)]
pub enum Put<'a> {
    /// Through the backend under test (`write`, `mkdir`).
    Backend,
    /// Straight into the store, by a path relative to the backend's root:
    /// for a test server that serves the backend's reads but not its write
    /// calls. Only the read half of the contract runs this way.
    Seed(&'a (dyn Fn(&str, &[u8]) + Sync)),
}

impl Put<'_> {
    /// Puts `data` at `path`; returns the file's status.
    async fn file(self, ufs: &dyn UnderFileSystem, path: &str, data: &[u8]) -> UfsStatus {
        match self {
            Put::Backend => ufs
                .write(&p(path), Bytes::copy_from_slice(data))
                .await
                .unwrap(),
            Put::Seed(seed) => {
                seed(path, data);
                ufs.stat(&p(path)).await.unwrap()
            }
        }
    }

    /// Makes `path` a directory (seeded: by putting a file inside it).
    async fn dir(self, ufs: &dyn UnderFileSystem, path: &str) {
        match self {
            Put::Backend => ufs.mkdir(&p(path)).await.unwrap(),
            Put::Seed(seed) => seed(&format!("{path}/inner"), b"i"),
        }
    }
}

/// Runs every contract check against `ufs`, which must start empty.
pub async fn run_all(ufs: &dyn UnderFileSystem) {
    write_then_read(ufs).await;
    run_reads(ufs, Put::Backend).await;
    mkdir_and_delete(ufs).await;
    rename_moves(ufs).await;
    streamed_writes(ufs).await;
    versions_and_place(ufs).await;
}

/// The read half of the contract: ranged reads, stat and fingerprints,
/// missing paths, listing order and paging. `ufs` must start empty; with
/// [`Put::Seed`] the backend's write calls are never made.
pub async fn run_reads(ufs: &dyn UnderFileSystem, put: Put<'_>) {
    ranged_reads(ufs, put).await;
    stat_and_fingerprint(ufs, put).await;
    missing_paths(ufs, put).await;
    list_paginates_in_order(ufs, put).await;
    read_into_fills_in_place(ufs, put).await;
}

/// A streamed write is invisible until complete; abort and drop leave nothing.
pub async fn streamed_writes(ufs: &dyn UnderFileSystem) {
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 241) as u8).collect();
    let mut w = ufs.create(&p("c8/deep/s.bin")).await.unwrap();
    for chunk in data.chunks(700_001) {
        w.write(chunk).await.unwrap();
    }
    assert!(
        matches!(
            ufs.stat(&p("c8/deep/s.bin")).await,
            Err(UfsError::NotFound(_))
        ),
        "nothing is visible before complete"
    );
    let st = w.complete().await.unwrap();
    assert_eq!(st.length, data.len() as u64);
    assert_eq!(
        ufs.stat(&p("c8/deep/s.bin")).await.unwrap().fingerprint,
        st.fingerprint
    );
    assert_eq!(
        ufs.read(&p("c8/deep/s.bin"), 0..u64::MAX).await.unwrap(),
        data
    );

    let mut w = ufs.create(&p("c8/aborted")).await.unwrap();
    w.write(b"junk").await.unwrap();
    w.abort().await;
    let mut w = ufs.create(&p("c8/dropped")).await.unwrap();
    w.write(b"junk").await.unwrap();
    drop(w);
    let names: Vec<String> = ufs
        .list(&p("c8"), None, 100)
        .await
        .unwrap()
        .entries
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(
        names,
        ["deep"],
        "aborted and dropped writes leave nothing behind"
    );
    assert!(matches!(
        ufs.create(&UfsPath::root()).await.err(),
        Some(UfsError::IsADirectory(_))
    ));
}

/// `read_into` fills the buffer from an offset and stops at the end.
pub async fn read_into_fills_in_place(ufs: &dyn UnderFileSystem, put: Put<'_>) {
    let data: Vec<u8> = (0..50_000u32).map(|i| (i % 233) as u8).collect();
    put.file(ufs, "c9/f", &data).await;
    let mut buf = vec![0u8; 10_000];
    assert_eq!(
        ufs.read_into(&p("c9/f"), 1_000, &mut buf).await.unwrap(),
        10_000
    );
    assert_eq!(buf, data[1_000..11_000]);
    assert_eq!(
        ufs.read_into(&p("c9/f"), 45_000, &mut buf).await.unwrap(),
        5_000
    );
    assert_eq!(buf[..5_000], data[45_000..]);
    assert_eq!(
        ufs.read_into(&p("c9/f"), 60_000, &mut buf).await.unwrap(),
        0
    );
    assert!(matches!(
        ufs.read_into(&p("c9/missing"), 0, &mut buf).await,
        Err(UfsError::NotFound(_))
    ));
}

pub async fn write_then_read(ufs: &dyn UnderFileSystem) {
    let data = Bytes::from((0..100_000u32).map(|i| (i % 251) as u8).collect::<Vec<_>>());
    let st = ufs
        .write(&p("c1/dir/file.bin"), data.clone())
        .await
        .unwrap();
    assert_eq!(st.length, data.len() as u64, "write returns the new length");
    assert!(!st.is_dir);
    let back = ufs.read(&p("c1/dir/file.bin"), 0..u64::MAX).await.unwrap();
    assert_eq!(back, data, "bytes read equal the bytes written");
    // Overwrite replaces the whole object.
    ufs.write(&p("c1/dir/file.bin"), Bytes::from_static(b"short"))
        .await
        .unwrap();
    let back = ufs.read(&p("c1/dir/file.bin"), 0..u64::MAX).await.unwrap();
    assert_eq!(&back[..], b"short", "write replaces the object");
    let parent = ufs.stat(&p("c1/dir")).await.unwrap();
    assert!(
        parent.is_dir,
        "write makes the parent visible as a directory"
    );
}

pub async fn ranged_reads(ufs: &dyn UnderFileSystem, put: Put<'_>) {
    let data = Bytes::from((0..10_000u32).map(|i| (i % 199) as u8).collect::<Vec<_>>());
    put.file(ufs, "c2/r", &data).await;
    assert_eq!(
        ufs.read(&p("c2/r"), 100..200).await.unwrap(),
        data.slice(100..200)
    );
    assert_eq!(
        ufs.read(&p("c2/r"), 9_990..20_000).await.unwrap(),
        data.slice(9_990..),
        "a range past the end is cut at the end"
    );
    assert!(
        ufs.read(&p("c2/r"), 20_000..30_000)
            .await
            .unwrap()
            .is_empty(),
        "a range wholly past the end is empty"
    );
}

pub async fn stat_and_fingerprint(ufs: &dyn UnderFileSystem, put: Put<'_>) {
    let a = put.file(ufs, "c3/f", b"one").await;
    let s = ufs.stat(&p("c3/f")).await.unwrap();
    assert_eq!(s.name, "f");
    assert_eq!(s.length, 3);
    assert_eq!(s.fingerprint, a.fingerprint, "stat agrees with write");
    assert!(!s.fingerprint.is_empty(), "files have a fingerprint");
    let b = put.file(ufs, "c3/f", b"three").await;
    assert_ne!(
        a.fingerprint, b.fingerprint,
        "a changed file changes its fingerprint"
    );
    let root = ufs.stat(&UfsPath::root()).await.unwrap();
    assert!(root.is_dir, "the root is a directory");
}

pub async fn missing_paths(ufs: &dyn UnderFileSystem, put: Put<'_>) {
    assert!(matches!(
        ufs.stat(&p("nope/x")).await,
        Err(UfsError::NotFound(_))
    ));
    assert!(matches!(
        ufs.read(&p("nope/x"), 0..10).await,
        Err(UfsError::NotFound(_))
    ));
    if let Put::Backend = put {
        assert!(matches!(
            ufs.delete(&p("nope/x"), false).await,
            Err(UfsError::NotFound(_))
        ));
    }
    assert!(matches!(
        ufs.list(&p("nope"), None, 10).await,
        Err(UfsError::NotFound(_))
    ));
}

pub async fn list_paginates_in_order(ufs: &dyn UnderFileSystem, put: Put<'_>) {
    let mut expected: Vec<String> = (0..25).map(|i| format!("f{i:03}")).collect();
    for name in &expected {
        put.file(ufs, &format!("c5/{name}"), b"x").await;
    }
    put.dir(ufs, "c5/sub").await;
    expected.push("sub".into());
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = ufs.list(&p("c5"), after.as_deref(), 7).await.unwrap();
        assert!(
            page.entries.len() <= 7,
            "a page holds at most `limit` entries"
        );
        seen.extend(page.entries.iter().map(|e| (e.name.clone(), e.is_dir)));
        pages += 1;
        assert!(pages < 100, "listing terminates");
        match page.next_start_after {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    let names: Vec<_> = seen.iter().map(|(n, _)| n.clone()).collect();
    assert_eq!(names, expected, "every entry once, sorted");
    assert!(
        seen.iter().any(|(n, d)| n == "sub" && *d),
        "directories are marked"
    );
    assert!(matches!(
        ufs.list(&p("c5/f000"), None, 10).await,
        Err(UfsError::NotADirectory(_))
    ));

    // Listing order: a directory sorts as its name followed by `/`, the
    // order object stores list keys in, one page at a time.
    for f in ["c5b/abc.txt", "c5b/abc-1", "c5b/abc/x", "c5b/abd"] {
        put.file(ufs, f, b"x").await;
    }
    let mut keys = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = ufs.list(&p("c5b"), after.as_deref(), 1).await.unwrap();
        keys.extend(
            page.entries
                .iter()
                .map(|e| crate::listing_key(&e.name, e.is_dir).into_owned()),
        );
        match page.next_start_after {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    assert_eq!(keys, ["abc-1", "abc.txt", "abc/", "abd"]);
}

pub async fn mkdir_and_delete(ufs: &dyn UnderFileSystem) {
    ufs.mkdir(&p("c6/a/b")).await.unwrap();
    ufs.mkdir(&p("c6/a/b")).await.unwrap(); // existing directory is fine
    assert!(ufs.stat(&p("c6/a")).await.unwrap().is_dir);
    ufs.write(&p("c6/a/b/f"), Bytes::from_static(b"x"))
        .await
        .unwrap();
    if ufs.capabilities().real_directories {
        assert!(
            ufs.delete(&p("c6/a"), false).await.is_err(),
            "a non-empty directory needs `recursive`"
        );
        assert!(
            ufs.stat(&p("c6/a/b/f")).await.is_ok(),
            "a refused delete removes nothing"
        );
    }
    ufs.delete(&p("c6/a"), true).await.unwrap();
    assert!(matches!(
        ufs.stat(&p("c6/a/b/f")).await,
        Err(UfsError::NotFound(_))
    ));
    assert!(matches!(
        ufs.stat(&p("c6/a")).await,
        Err(UfsError::NotFound(_))
    ));
    ufs.write(&p("c6/file"), Bytes::from_static(b"x"))
        .await
        .unwrap();
    ufs.delete(&p("c6/file"), false).await.unwrap();
    assert!(matches!(
        ufs.stat(&p("c6/file")).await,
        Err(UfsError::NotFound(_))
    ));
}

pub async fn rename_moves(ufs: &dyn UnderFileSystem) {
    ufs.write(&p("c7/src"), Bytes::from_static(b"payload"))
        .await
        .unwrap();
    ufs.rename(&p("c7/src"), &p("c7/moved/dst")).await.unwrap();
    assert!(matches!(
        ufs.stat(&p("c7/src")).await,
        Err(UfsError::NotFound(_))
    ));
    assert_eq!(
        &ufs.read(&p("c7/moved/dst"), 0..100).await.unwrap()[..],
        b"payload"
    );
    ufs.write(&p("c7/other"), Bytes::from_static(b"o"))
        .await
        .unwrap();
    assert!(
        ufs.rename(&p("c7/other"), &p("c7/moved/dst"))
            .await
            .is_err(),
        "rename never overwrites"
    );
    assert_eq!(
        &ufs.read(&p("c7/moved/dst"), 0..100).await.unwrap()[..],
        b"payload",
        "a refused rename changes nothing"
    );
    // Directories move with their contents.
    ufs.write(&p("c7/d/x"), Bytes::from_static(b"1"))
        .await
        .unwrap();
    ufs.rename(&p("c7/d"), &p("c7/e")).await.unwrap();
    assert_eq!(&ufs.read(&p("c7/e/x"), 0..10).await.unwrap()[..], b"1");
}

/// A versioned read reads only the version asked for: another file put at
/// the path (same length or not) is `Changed` and nothing is read. `place`
/// moves a staged file over whatever is at the target, creating parents.
pub async fn versions_and_place(ufs: &dyn UnderFileSystem) {
    let a = ufs
        .write(&p("c10/f"), Bytes::from_static(b"first"))
        .await
        .unwrap();
    let want = crate::Version {
        length: 5,
        digest: crate::digest_hex(&a.fingerprint),
    };
    let mut buf = [0u8; 8];
    let n = ufs
        .read_into_version(&p("c10/f"), 1, &mut buf, &want)
        .await
        .unwrap();
    assert_eq!(&buf[..n], b"irst");
    // Another file of the same length at the same path.
    ufs.write(&p("c10/g"), Bytes::from_static(b"other"))
        .await
        .unwrap();
    ufs.place(&p("c10/g"), &p("c10/f")).await.unwrap();
    assert_eq!(ufs.read(&p("c10/f"), 0..10).await.unwrap(), &b"other"[..]);
    assert!(
        matches!(ufs.stat(&p("c10/g")).await, Err(UfsError::NotFound(_))),
        "place moves, it does not copy"
    );
    let mut buf = [7u8; 8];
    let r = ufs.read_into_version(&p("c10/f"), 0, &mut buf, &want).await;
    assert!(matches!(r, Err(UfsError::Changed { .. })), "{r:?}");
    assert_eq!(buf, [7u8; 8], "nothing of the other file was read");
    let longer = crate::Version {
        length: 6,
        digest: String::new(),
    };
    let r = ufs
        .read_into_version(&p("c10/f"), 0, &mut buf, &longer)
        .await;
    assert!(matches!(r, Err(UfsError::Changed { .. })), "{r:?}");
    let r = ufs
        .read_into_version(&p("c10/none"), 0, &mut buf, &want)
        .await;
    assert!(matches!(r, Err(UfsError::NotFound(_))), "{r:?}");
    // Into a directory that does not exist yet.
    ufs.write(&p("c10/h"), Bytes::from_static(b"h"))
        .await
        .unwrap();
    ufs.place(&p("c10/h"), &p("c10/new/deeper/h"))
        .await
        .unwrap();
    assert_eq!(
        ufs.read(&p("c10/new/deeper/h"), 0..10).await.unwrap(),
        &b"h"[..]
    );
}
