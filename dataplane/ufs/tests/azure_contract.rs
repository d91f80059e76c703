//! The under-storage contract against Azure Blob Storage's emulator
//! (Azurite) on loopback.

use eddy_ufs::testkit::AzureServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_passes_the_contract() {
    let az = AzureServer::start();
    az.create_container("contract");
    let ufs = eddy_ufs::open("az://contract/some/prefix", &az.options())
        .await
        .unwrap();
    eddy_ufs::contract::run_all(ufs.as_ref()).await;
    // A container that does not exist fails at open.
    let e = eddy_ufs::open("az://missing", &az.options())
        .await
        .unwrap_err();
    assert!(matches!(e, eddy_ufs::UfsError::Unavailable { .. }), "{e}");
}
