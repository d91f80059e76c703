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
