//! The KDS client against a small HTTP server on 127.0.0.1 that serves the
//! vector certificates (and answers 429 when told to).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use veil_endorsements::kds::{KdsClient, KdsConfig, KeyFamily, Source};
use veil_evidence::snp::{Product, TcbVersion};
use veil_testkit::{StubHttp, vectors};

fn stub(routes: Vec<(String, Vec<u8>)>, throttle: usize) -> StubHttp {
    StubHttp::start(routes, throttle)
}

fn cfg(base: &str, cache: Option<&std::path::Path>) -> KdsConfig {
    KdsConfig {
        base_url: base.into(),
        cache_dir: cache.map(Into::into),
        min_interval: Duration::ZERO,
        backoff: Duration::from_millis(10),
        ..KdsConfig::default()
    }
}

const CHIP: [u8; 64] = [0xc3; 64];
const TCB: TcbVersion = TcbVersion {
    fmc: None,
    bootloader: 3,
    tee: 0,
    snp: 8,
    microcode: 115,
};

#[tokio::test]
async fn fetches_caches_and_respects_rate_limit() {
    let Some(dir) = vectors() else { return };
    let vcek = std::fs::read(dir.join("snp/trustee/test-vcek.der")).unwrap();
    let chain = std::fs::read(dir.join("snp/trustee/milan_ask_ark_asvk.pem")).unwrap();
    let vcek_path = KdsClient::vcek_path(Product::Milan, &CHIP, &TCB);
    assert_eq!(
        vcek_path,
        format!(
            "/vcek/v1/Milan/{}?blSPL=3&teeSPL=0&snpSPL=8&ucodeSPL=115",
            hex::encode(CHIP)
        )
    );
    let s = stub(
        vec![
            (vcek_path.clone(), vcek.clone()),
            ("/vcek/v1/Milan/cert_chain".into(), chain),
        ],
        1,
    );
    let cache = tempfile::tempdir().unwrap();
    let client = KdsClient::new(cfg(&s.base, Some(cache.path()))).unwrap();
    let (got, src) = client.vcek(Product::Milan, &CHIP, &TCB).await.unwrap();
    assert_eq!((got, src), (vcek.clone(), Source::Network));
    // The 429 was retried once, not hammered.
    assert_eq!(s.hits().len(), 2);
    let (got, src) = client.vcek(Product::Milan, &CHIP, &TCB).await.unwrap();
    assert_eq!((got, src), (vcek.clone(), Source::Cache));
    assert_eq!(s.hits().len(), 2, "served from the cache");
    let (certs, _) = client
        .cert_chain(Product::Milan, KeyFamily::Vcek)
        .await
        .unwrap();
    assert_eq!(certs.len(), 3);
    // Offline: the cache answers, anything else fails without a request.
    let offline = KdsClient::new(KdsConfig {
        offline: true,
        ..cfg(&s.base, Some(cache.path()))
    })
    .unwrap();
    assert!(offline.vcek(Product::Milan, &CHIP, &TCB).await.is_ok());
    let before = s.hits().len();
    assert!(offline.crl(Product::Milan, KeyFamily::Vcek).await.is_err());
    assert_eq!(s.hits().len(), before);
}

#[tokio::test]
async fn gives_up_when_always_throttled() {
    let s = stub(vec![], usize::MAX);
    let client = KdsClient::new(KdsConfig {
        max_attempts: 3,
        ..cfg(&s.base, None)
    })
    .unwrap();
    let err = client.vcek(Product::Genoa, &CHIP, &TCB).await.unwrap_err();
    assert!(err.to_string().contains("rate limit"), "{err}");
    assert_eq!(s.hits().len(), 3);
}

#[tokio::test]
async fn http_errors_are_reported() {
    let s = stub(vec![], 0);
    let client = KdsClient::new(cfg(&s.base, None)).unwrap();
    let err = client
        .crl(Product::Turin, KeyFamily::Vlek)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("404"), "{err}");
    assert_eq!(s.hits()[0], "/vlek/v1/Turin/crl");
}
