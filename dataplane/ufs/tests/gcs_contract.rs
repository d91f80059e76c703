//! The read half of the under-storage contract against a GCS emulator
//! (fake-gcs-server) on loopback. The emulator answers the XML API calls
//! object_store makes for reads but not its XML writes (PUT object, copy,
//! multipart), so the objects are put in through the emulator's JSON upload
//! API and the write half is not run here (docs/UFS.md).

use eddy_ufs::testkit::GcsServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcs_passes_the_read_contract() {
    let gcs = GcsServer::start(&["contract"]);
    let ufs = eddy_ufs::open("gs://contract/some/prefix", &gcs.options())
        .await
        .unwrap();
    let seed = |path: &str, data: &[u8]| gcs.put("contract", &format!("some/prefix/{path}"), data);
    eddy_ufs::contract::run_reads(ufs.as_ref(), eddy_ufs::contract::Put::Seed(&seed)).await;

    // A bucket that does not exist fails at open, naming the store's reason.
    let e = eddy_ufs::open("gs://missing", &gcs.options())
        .await
        .unwrap_err();
    assert!(matches!(e, eddy_ufs::UfsError::Unavailable { .. }), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcs_reads_are_ranged_requests_counted_by_the_server() {
    let gcs = GcsServer::start(&["b"]);
    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    gcs.put("b", "big.bin", &data);
    let ufs = eddy_ufs::open("gs://b", &gcs.options()).await.unwrap();
    let before = gcs.requests();
    let path = eddy_ufs::UfsPath::parse("big.bin").unwrap();
    let got = ufs.read(&path, 500_000..500_100).await.unwrap();
    assert!(got[..] == data[500_000..500_100]);
    assert_eq!(gcs.requests() - before, 1, "one ranged GET");
    gcs.delete("b", "big.bin");
    assert!(matches!(
        ufs.stat(&path).await,
        Err(eddy_ufs::UfsError::NotFound(_))
    ));
}
