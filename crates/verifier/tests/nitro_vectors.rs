//! AWS Nitro Enclaves attestation documents from real enclaves: every
//! `nitro` row of EXPECTED.jsonl gives its verdict at its time (leaves are
//! valid for three hours), and derived negatives fail: every byte flipped,
//! a missing or substituted chain certificate, a wrong nonce.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use base64::Engine as _;
use veil_evidence::nitro::{AttestationDoc, encode_payload};
use veil_testkit as common;
use veil_verifier::UnixTime;
use veil_verifier::crypto::AWS_LC;
use veil_verifier::nitro::{NitroError, default_roots, doc_from_certificate, verify_doc};
use veil_verifier::x509::Cert;

/// The document bytes of a corpus file and, for a certificate that embeds
/// one, the certificate's SPKI.
fn load(dir: &Path, rel: &str, encoding: Option<&str>) -> (Vec<u8>, Option<Vec<u8>>) {
    let raw = common::read(dir, rel);
    if rel.ends_with(".pem") || rel.ends_with(".crt") {
        let der = veil_endorsements::certs::decode_blobs(rel, &raw).unwrap();
        let veil_endorsements::certs::Blob::Certificate(der) = &der[0] else {
            panic!("{rel}: not a certificate")
        };
        let (doc, spki) = doc_from_certificate(&Cert::parse(der).unwrap()).unwrap();
        return (doc, Some(spki));
    }
    match encoding {
        Some("base64") => (
            base64::engine::general_purpose::STANDARD
                .decode(String::from_utf8(raw).unwrap().trim())
                .unwrap(),
            None,
        ),
        None => (raw, None),
        Some(e) => panic!("encoding {e}"),
    }
}

fn verify_at(
    bytes: &[u8],
    at: UnixTime,
) -> Result<veil_verifier::nitro::VerifiedNitroDoc, NitroError> {
    let doc = AttestationDoc::parse(bytes)?;
    verify_doc(&doc, &default_roots().unwrap(), at, &AWS_LC)
}

#[test]
fn expected_rows_give_their_verdict() {
    let Some(dir) = common::vectors() else { return };
    let text = std::fs::read_to_string(dir.join("EXPECTED.jsonl")).unwrap();
    let mut checked = 0;
    for line in text.lines() {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        if row["tee"] != "nitro" {
            continue;
        }
        let (doc, spki) = load(
            &dir,
            row["evidence"].as_str().unwrap(),
            row["encoding"].as_str(),
        );
        let at = UnixTime::parse(row["time"].as_str().unwrap()).unwrap();
        let expect = row["expect"].as_str().unwrap();
        let result = verify_at(&doc, at);
        if expect.starts_with("VALID") {
            let ok = result.unwrap_or_else(|e| panic!("{line}: {e}"));
            assert_eq!(ok.debug, expect.contains("debug"), "{line}");
            if let Some(p) = row["pcr0"].as_str() {
                assert_eq!(hex::encode(&ok.doc.pcrs[&0]), p, "{line}");
            }
            if let Some(spki) = spki {
                // The certificate is bound to the enclave by user_data.
                assert_eq!(ok.doc.user_data.as_deref(), Some(spki.as_slice()), "{line}");
            }
            assert_eq!(ok.claims()["tee"], "nitro");
        } else {
            assert_eq!(expect, "REJECT");
            let err = result.err().unwrap_or_else(|| panic!("{line}: accepted"));
            assert_eq!(err.code(), "chain", "{line}: {err}");
            assert!(
                err.to_string()
                    .contains("not valid at the verification time"),
                "{err}"
            );
        }
        checked += 1;
    }
    assert_eq!(checked, 5);
}

fn beta_doc(dir: &Path) -> (Vec<u8>, UnixTime) {
    (
        common::read(dir, "nitro/evervault/valid-attestation-doc-bytes"),
        UnixTime::parse("2022-10-13T09:00:00Z").unwrap(),
    )
}

#[test]
fn every_flipped_byte_is_refused() {
    let Some(dir) = common::vectors() else { return };
    let (doc, at) = beta_doc(&dir);
    verify_at(&doc, at).unwrap();
    for i in 0..doc.len() {
        let mut d = doc.clone();
        d[i] ^= 0x01;
        assert!(verify_at(&d, at).is_err(), "flipping byte {i} was accepted");
    }
}

#[test]
fn nonce_is_checked_exactly() {
    let Some(dir) = common::vectors() else { return };
    let (doc, at) = beta_doc(&dir);
    let ok = verify_at(&doc, at).unwrap();
    let nonce = ok.doc.nonce.clone().unwrap();
    ok.check_nonce(&nonce).unwrap();
    let mut wrong = nonce.clone();
    wrong[0] ^= 1;
    assert_eq!(ok.check_nonce(&wrong).unwrap_err().code(), "nonce");
    assert!(ok.check_nonce(&nonce[..nonce.len() - 1]).is_err());
}

/// Re-encodes a document with a changed cabundle (the signature no longer
/// matters: the chain is refused first).
fn with_cabundle(doc: &AttestationDoc, cabundle: Vec<Vec<u8>>) -> Vec<u8> {
    let mut d = doc.clone();
    d.cabundle = cabundle;
    d.cose.payload = encode_payload(&d);
    d.cose.encode(false)
}

#[test]
fn missing_or_substituted_chain_certificates_are_refused() {
    let Some(dir) = common::vectors() else { return };
    let (bytes, at) = beta_doc(&dir);
    let doc = AttestationDoc::parse(&bytes).unwrap();
    // Re-encoding an unchanged document reproduces its bytes exactly.
    assert_eq!(with_cabundle(&doc, doc.cabundle.clone()), bytes);
    // Without the zonal intermediate.
    let mut missing = doc.cabundle.clone();
    missing.remove(2);
    let e = verify_at(&with_cabundle(&doc, missing), at).unwrap_err();
    assert_eq!(e.code(), "chain", "{e}");
    // The instance intermediate of another enclave's document.
    let other = AttestationDoc::parse(&common::read(
        &dir,
        "nitro/evervault/debug-mode-attestation-doc-bytes",
    ))
    .unwrap();
    let mut swapped = doc.cabundle.clone();
    *swapped.last_mut().unwrap() = other.cabundle.last().unwrap().clone();
    let e = verify_at(&with_cabundle(&doc, swapped), at).unwrap_err();
    assert_eq!(e.code(), "chain", "{e}");
    // Another root in place of AWS's.
    let roots =
        vec![Cert::parse(&common::read(&dir, "nitro/evervault/valid-certificate.der")).unwrap()];
    let e = verify_doc(&doc, &roots, at, &AWS_LC).unwrap_err();
    assert_eq!(e.code(), "chain", "{e}");
}
