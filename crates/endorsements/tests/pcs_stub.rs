//! The Intel PCS client against a loopback server serving the vector
//! collateral, split into PCS responses with their issuer-chain headers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use veil_endorsements::dcap::Collateral;
use veil_endorsements::pcs::{DcapTee, PcsClient, PcsConfig};
use veil_testkit::{read, vectors};

#[tokio::test]
async fn assembles_collateral_byte_for_byte() {
    let Some(dir) = vectors() else { return };
    let want = Collateral::parse(&read(&dir, "tdx/dcap-qvl/tdx_quote_collateral.json")).unwrap();
    let json: serde_json::Value = serde_json::to_value(&want).unwrap();
    let stub = veil_testkit::pccs_stub(&json, "tdx", "b0c06f000000");
    let cache = tempfile::tempdir().unwrap();
    let client = PcsClient::new(PcsConfig {
        base_url: stub.base.clone(),
        cache_dir: Some(cache.path().into()),
        ..PcsConfig::default()
    })
    .unwrap();
    let fmspc = hex::decode("b0c06f000000").unwrap();
    let got = client
        .collateral(DcapTee::Tdx, &fmspc, false)
        .await
        .unwrap();
    assert_eq!(got, want);
    assert_eq!(stub.hits().len(), 4);
    // Offline, from the cache: no further request.
    let offline = PcsClient::new(PcsConfig {
        base_url: stub.base.clone(),
        cache_dir: Some(cache.path().into()),
        offline: true,
        ..PcsConfig::default()
    })
    .unwrap();
    assert_eq!(
        offline
            .collateral(DcapTee::Tdx, &fmspc, false)
            .await
            .unwrap(),
        want
    );
    assert_eq!(stub.hits().len(), 4);
    // Refresh: with max_age 0 every call fetches again...
    let eager = PcsClient::new(PcsConfig {
        base_url: stub.base.clone(),
        cache_dir: Some(cache.path().into()),
        max_age: std::time::Duration::ZERO,
        ..PcsConfig::default()
    })
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(
        eager.collateral(DcapTee::Tdx, &fmspc, false).await.unwrap(),
        want
    );
    assert_eq!(stub.hits().len(), 8);
    // ...and when the service is unreachable, the cached answer still serves.
    let unreachable = PcsClient::new(PcsConfig {
        base_url: "http://127.0.0.1:9".into(),
        cache_dir: Some(cache.path().into()),
        max_age: std::time::Duration::ZERO,
        ..PcsConfig::default()
    })
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(
        unreachable
            .collateral(DcapTee::Tdx, &fmspc, false)
            .await
            .unwrap(),
        want
    );
    // Another FMSPC offline: a clear error.
    assert!(
        offline
            .collateral(DcapTee::Tdx, &[1, 2, 3, 4, 5, 6], false)
            .await
            .is_err()
    );
}
