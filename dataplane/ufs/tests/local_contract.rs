//! The under-storage contract suite against the local-directory backend.

use std::collections::BTreeMap;

#[tokio::test]
async fn local_backend_passes_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let uri = format!("file://{}", dir.path().display());
    let ufs = eddy_ufs::open(&uri, &BTreeMap::new()).await.unwrap();
    eddy_ufs::contract::run_all(ufs.as_ref()).await;
}

#[tokio::test]
async fn open_rejects_missing_root_and_unknown_schemes() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("absent");
    let err = eddy_ufs::open(missing.to_str().unwrap(), &BTreeMap::new())
        .await
        .unwrap_err();
    assert!(
        matches!(err, eddy_ufs::UfsError::Unavailable { .. }),
        "{err}"
    );
    let err = eddy_ufs::open("gopher://x/y", &BTreeMap::new())
        .await
        .unwrap_err();
    assert!(
        matches!(err, eddy_ufs::UfsError::InvalidUri { .. }),
        "{err}"
    );
    let err = eddy_ufs::open("relative/dir", &BTreeMap::new())
        .await
        .unwrap_err();
    assert!(
        matches!(err, eddy_ufs::UfsError::InvalidUri { .. }),
        "{err}"
    );
}

/// Two instances over one directory (a worker that opened a mount twice at
/// once) writing files of one directory at the same time: every file holds
/// its own writer's bytes (their temporaries never share a name).
#[tokio::test]
async fn two_instances_over_one_directory_keep_their_writes_apart() {
    let dir = tempfile::tempdir().unwrap();
    let uri = format!("file://{}", dir.path().display());
    let a = eddy_ufs::open(&uri, &BTreeMap::new()).await.unwrap();
    let b = eddy_ufs::open(&uri, &BTreeMap::new()).await.unwrap();
    let key = |n: usize| eddy_ufs::UfsPath::parse(&format!("stage/{n}")).unwrap();
    let mut writers = Vec::new();
    for n in 0..8 {
        let ufs = if n % 2 == 0 { &a } else { &b };
        writers.push(ufs.create(&key(n)).await.unwrap());
    }
    for (n, w) in writers.iter_mut().enumerate() {
        w.write(&vec![n as u8; 100 + n]).await.unwrap();
    }
    for w in writers {
        w.complete().await.unwrap();
    }
    for n in 0..8 {
        let got = a.read(&key(n), 0..u64::MAX).await.unwrap();
        assert_eq!(got, vec![n as u8; 100 + n], "file {n}");
    }
}
