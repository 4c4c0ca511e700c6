//! The Intel PCS client against a loopback server serving the vector
//! collateral, split into PCS responses with their issuer-chain headers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use veil_endorsements::dcap::Collateral;
use veil_endorsements::pcs::{DcapTee, PcsClient, PcsConfig};
use veil_testkit::{StubHttp, read, vectors};

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn assembles_collateral_byte_for_byte() {
    let Some(dir) = vectors() else { return };
    let want = Collateral::parse(&read(&dir, "tdx/dcap-qvl/tdx_quote_collateral.json")).unwrap();
    let tcb_body = format!(
        r#"{{"tcbInfo":{},"signature":"{}"}}"#,
        want.tcb_info, want.tcb_info_signature
    );
    let qe_body = format!(
        r#"{{"enclaveIdentity":{},"signature":"{}"}}"#,
        want.qe_identity, want.qe_identity_signature
    );
    let h = |k: &str, v: &str| vec![(k.to_string(), encode(v))];
    let stub = StubHttp::start_with_headers(
        vec![
            (
                "/tdx/certification/v4/tcb?fmspc=b0c06f000000".into(),
                tcb_body.into_bytes(),
                h("TCB-Info-Issuer-Chain", &want.tcb_info_issuer_chain),
            ),
            (
                "/tdx/certification/v4/qe/identity".into(),
                qe_body.into_bytes(),
                h(
                    "SGX-Enclave-Identity-Issuer-Chain",
                    &want.qe_identity_issuer_chain,
                ),
            ),
            (
                "/sgx/certification/v4/pckcrl?ca=platform&encoding=der".into(),
                hex::decode(&want.pck_crl).unwrap(),
                h("SGX-PCK-CRL-Issuer-Chain", &want.pck_crl_issuer_chain),
            ),
            (
                "/sgx/certification/v4/rootcacrl".into(),
                want.root_ca_crl.clone().into_bytes(),
                Vec::new(),
            ),
        ],
        0,
    );
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
