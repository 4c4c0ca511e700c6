//! NVIDIA Hopper GPU evidence captured by a CoCo CI run: the SPDM
//! measurement report verifies (signature, chain to the pinned NVIDIA root,
//! FWID, nonce) despite its trailing 0x00 byte; the broken chains of the
//! corpus, every flipped byte, a substituted signing certificate and a
//! wrong nonce are refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use veil_testkit as common;
use veil_verifier::UnixTime;
use veil_verifier::crypto::AWS_LC;
use veil_verifier::nvidia::{
    GpuError, VerifiedGpu, cert_fwid, default_roots, parse_chain, verify_report,
};
use veil_verifier::x509::Cert;

const REPORT: &str = "nvidia/trustee/hopper_coco_report1.txt";
const CHAIN: &str = "nvidia/trustee/hopper_coco_certs1.txt";

fn report(dir: &Path) -> Vec<u8> {
    hex::decode(String::from_utf8(common::read(dir, REPORT)).unwrap().trim()).unwrap()
}

fn verify(report: &[u8], chain: &[Cert]) -> Result<VerifiedGpu, GpuError> {
    verify_report(
        "HOPPER",
        "GPU-0",
        report,
        chain,
        &default_roots().unwrap(),
        UnixTime::now(),
        &AWS_LC,
    )
}

#[test]
fn expected_row_verifies_with_the_trailing_byte_quirk() {
    let Some(dir) = common::vectors() else { return };
    let text = std::fs::read_to_string(dir.join("EXPECTED.jsonl")).unwrap();
    let row = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|r| r["tee"] == "nvidia-hopper")
        .unwrap();
    assert!(row["expect"].as_str().unwrap().starts_with("VALID"));
    let chain = parse_chain(&common::read(&dir, row["certs"][0].as_str().unwrap())).unwrap();
    let ok = verify(&report(&dir), &chain).unwrap();
    assert!(ok.report.trailing_zero);
    let nonce = hex::decode(row["nonce"].as_str().unwrap()).unwrap();
    ok.check_nonce(&nonce).unwrap();
    let c = ok.claims().unwrap();
    assert_eq!(c["driver_version"], "580.95.05");
    assert_eq!(c["arch"], "HOPPER");
    assert_eq!(c["config"]["project"], "1010");
    assert_eq!(c["config"]["project_sku"], "0200");
    assert_eq!(c["config"]["chip_sku"], "882");
    assert_eq!(c["measurements"].as_object().unwrap().len(), 64);
    // A wrong nonce, and the 48-byte value the protocol digests into it.
    let mut wrong = nonce.clone();
    wrong[31] ^= 1;
    assert_eq!(ok.check_nonce(&wrong).unwrap_err().code(), "nonce");
    let long = hex::decode("87d8e24ab336adafe228d49e83d745f6dba4ae505372b6a5704820856b343fece279b616efefc2aae21da80cf5581250").unwrap();
    assert_eq!(ok.check_nonce(&long).unwrap_err().code(), "nonce");
}

#[test]
fn the_signing_certificate_carries_the_asserted_fwid() {
    let Some(dir) = common::vectors() else { return };
    let pem = common::read(&dir, "nvidia/trustee/hopper_signing_cert.pem");
    let cert = parse_chain(&pem).unwrap().remove(0);
    assert_eq!(
        hex::encode(cert_fwid(&cert).unwrap()),
        "f5c384aebb579217a2c66b17ed0f28e6a9b8d639041acd7b4721cec004f7275494ba94bb5cdfdb3055ee051762b1f75d"
    );
}

#[test]
fn broken_chains_are_refused() {
    let Some(dir) = common::vectors() else { return };
    let r = report(&dir);
    let chain = |f: &str| parse_chain(&common::read(&dir, &format!("nvidia/trustee/{f}"))).unwrap();
    assert!(matches!(
        verify(&r, &chain("hopper_cert_chain_case2.txt")),
        Err(GpuError::ShortChain)
    ));
    let e = verify(&r, &chain("hopper_cert_chain_case3.txt")).unwrap_err();
    assert_eq!(e.code(), "chain", "{e}");
    let e = verify(&r, &chain("hopper_cert_chain_case4.txt")).unwrap_err();
    assert!(matches!(e, GpuError::NoCertFwid | GpuError::Cert(_)), "{e}");
    // Another GPU's signing certificate in place of this one's.
    let mut swapped = chain("hopper_coco_certs1.txt");
    swapped[0] = chain("hopper_signing_cert.pem").remove(0);
    assert!(verify(&r, &swapped).is_err());
    // The chain without its root is still checked against the pinned root.
    let mut no_root = chain("hopper_coco_certs1.txt");
    no_root.pop();
    verify(&r, &no_root).unwrap();
    // No leaf: the first certificate is an intermediate.
    let mut no_leaf = chain("hopper_coco_certs1.txt");
    no_leaf.remove(0);
    assert!(verify(&r, &no_leaf).is_err());
}

#[test]
fn every_flipped_byte_is_refused() {
    let Some(dir) = common::vectors() else { return };
    let r = report(&dir);
    let chain = parse_chain(&common::read(&dir, CHAIN)).unwrap();
    verify(&r, &chain).unwrap();
    for i in 0..r.len() {
        let mut b = r.clone();
        b[i] ^= 0x01;
        assert!(
            verify(&b, &chain).is_err(),
            "flipping byte {i} was accepted"
        );
    }
}
