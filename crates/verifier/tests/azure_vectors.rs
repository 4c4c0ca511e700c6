//! Azure SEV-SNP confidential VM evidence (HCL report + vTPM quote)
//! captured on real Azure VMs: every `snp+vtpm(azure)` row of EXPECTED.jsonl
//! verifies to its measurement and PCR0, and the negatives Trustee derives
//! from them are refused for the right reason.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use veil_endorsements::snp::SnpEndorsements;
use veil_evidence::azure::AzEvidence;
use veil_evidence::tpm::TPM_ALG_SHA256;
use veil_testkit as common;
use veil_verifier::UnixTime;
use veil_verifier::azure::{AzureError, VerifiedAzSnp, verify_az_snp};
use veil_verifier::crypto::AWS_LC;
use veil_verifier::snp::{SnpVerifier, TrustAnchors};
use veil_verifier::tpm::{AkTrust, TpmError};

/// `hex:…` bytes, or the string's bytes.
fn nonce(s: &str) -> Vec<u8> {
    match s.strip_prefix("hex:") {
        Some(h) => hex::decode(h).unwrap(),
        None => s.as_bytes().to_vec(),
    }
}

fn endorsements(dir: &Path, ev: &AzEvidence, certs: &[&str]) -> SnpEndorsements {
    let mut e = SnpEndorsements::default();
    for c in &ev.certs {
        e.add_blobs(veil_endorsements::certs::decode_blobs("vcek", c).unwrap());
    }
    for f in certs {
        e.add_file(&dir.join(f)).unwrap();
    }
    e
}

fn verify(
    dir: &Path,
    ev: &AzEvidence,
    certs: &[&str],
    n: &[u8],
) -> Result<VerifiedAzSnp, AzureError> {
    let v = SnpVerifier::new(TrustAnchors::amd());
    verify_az_snp(
        ev,
        &v,
        &endorsements(dir, ev, certs),
        Some(n),
        UnixTime::now(),
        &AWS_LC,
    )
}

#[test]
fn expected_rows_verify_with_their_measurement_and_pcr0() {
    let Some(dir) = common::vectors() else { return };
    let text = std::fs::read_to_string(dir.join("EXPECTED.jsonl")).unwrap();
    let mut checked = 0;
    for line in text.lines() {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        if row["tee"] != "snp+vtpm(azure)" {
            continue;
        }
        let ev =
            AzEvidence::parse_json(&common::read(&dir, row["evidence"].as_str().unwrap())).unwrap();
        let certs: Vec<&str> = row["certs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        let n = nonce(row["nonce"].as_str().unwrap());
        let ok = verify(&dir, &ev, &certs, &n).unwrap_or_else(|e| panic!("{line}: {e}"));
        assert_eq!(row["expect"], "VALID");
        assert_eq!(
            ok.snp.claims().measurement.to_string(),
            row["snp_measurement"].as_str().unwrap()
        );
        assert_eq!(
            hex::encode(ok.quote.pcr(TPM_ALG_SHA256, 0).unwrap()),
            row["pcr0_sha256"].as_str().unwrap()
        );
        assert_eq!(ok.quote.ak_trust, AkTrust::HardwareReport);
        assert_eq!(ok.quote.quote.extra_data, n);
        // Another nonce: refused.
        let mut other = n.clone();
        other.reverse();
        assert!(matches!(
            verify(&dir, &ev, &certs, &other),
            Err(AzureError::Tpm(TpmError::NonceMismatch { .. }))
        ));
        checked += 1;
    }
    assert_eq!(checked, 4, "all snp+vtpm(azure) rows were checked");
}

/// The negatives of the vectors' MANIFEST, on evidence-v0.
#[test]
fn derived_negatives() {
    let Some(dir) = common::vectors() else { return };
    let ev = AzEvidence::parse_json(&common::read(
        &dir,
        "azure-cvm/trustee-az-snp-vtpm/evidence-v0.json",
    ))
    .unwrap();
    let certs = ["snp/trustee/milan_ask_ark_asvk.pem"];
    let n = b"challenge";
    verify(&dir, &ev, &certs, n).unwrap();
    let with = |f: &dyn Fn(&mut AzEvidence)| {
        let mut e = ev.clone();
        f(&mut e);
        verify(&dir, &e, &certs, n)
    };
    // A byte of the SNP report (its version): refused by the SNP checks.
    assert!(matches!(
        with(&|e| e.hcl_report[0x20] = 0),
        Err(AzureError::Snp(_) | AzureError::Parse(_))
    ));
    // A byte of the runtime claims: the report data no longer binds them.
    let r = with(&|e| e.hcl_report[0x6e0] = e.hcl_report[0x6e0].wrapping_add(1));
    assert!(matches!(r, Err(AzureError::Binding(_))), "{r:?}");
    // The TPM signature, a PCR value, and the quote itself.
    assert!(matches!(
        with(&|e| e.quote.signature[0] ^= 1),
        Err(AzureError::Tpm(TpmError::BadSignature))
    ));
    assert!(matches!(
        with(&|e| e.quote.pcrs[0][0] ^= 1),
        Err(AzureError::Tpm(TpmError::PcrDigestMismatch))
    ));
    for i in 0..ev.quote.message.len() {
        assert!(
            with(&|e| e.quote.message[i] ^= 1).is_err(),
            "quote byte {i}"
        );
    }
}

/// Azure TDX CVM: the TD quote (DCAP, with the row's collateral and time)
/// bound to the HCL report's TDREPORT, the runtime claims, and the vTPM
/// quote; its TCB status (OutOfDate at that time) is a claim for policy.
#[test]
fn azure_tdx_row_and_negatives() {
    use veil_verifier::azure::verify_az_tdx;
    use veil_verifier::dcap::{DcapVerifier, TcbStatus};
    let Some(dir) = common::vectors() else { return };
    let text = std::fs::read_to_string(dir.join("EXPECTED.jsonl")).unwrap();
    let row: serde_json::Value = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|r| r["tee"] == "tdx+vtpm(azure)")
        .unwrap();
    let td_row: serde_json::Value = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|r| r["evidence"] == "azure-cvm/trustee-az-tdx-vtpm/td-quote.bin")
        .unwrap();
    let ev =
        AzEvidence::parse_json(&common::read(&dir, row["evidence"].as_str().unwrap())).unwrap();
    let collateral = veil_endorsements::dcap::Collateral::parse(&common::read(
        &dir,
        td_row["collateral"].as_str().unwrap(),
    ))
    .unwrap();
    let at = UnixTime(td_row["time"].as_i64().unwrap());
    let dcap = DcapVerifier::intel().unwrap();
    let n = nonce(row["nonce"].as_str().unwrap());
    let run = |e: &AzEvidence, n: &[u8]| verify_az_tdx(e, &dcap, &collateral, Some(n), at, &AWS_LC);
    let ok = run(&ev, &n).unwrap();
    assert_eq!(ok.td.claims().tcb_status, TcbStatus::OutOfDate);
    assert_eq!(td_row["expect"], "OutOfDate");
    assert_eq!(
        hex::encode(ok.quote.pcr(TPM_ALG_SHA256, 0).unwrap()),
        row["pcr0_sha256"].as_str().unwrap()
    );
    assert_eq!(ok.quote.ak_trust, AkTrust::HardwareReport);
    // Another nonce.
    assert!(matches!(
        run(&ev, b"other"),
        Err(AzureError::Tpm(TpmError::NonceMismatch { .. }))
    ));
    // The TDREPORT's MRTD, report data and an RTMR no longer match the quote.
    for (offset, what) in [
        (0x20 + 530, "MRTD"),
        (0x20 + 130, "report data"),
        (0x20 + 800, "RTMRs"),
    ] {
        let mut e = ev.clone();
        e.hcl_report[offset] ^= 1;
        let r = run(&e, &n);
        assert!(matches!(r, Err(AzureError::TdBinding(_))), "{what}: {r:?}");
    }
    // The runtime claims changed: no longer bound.
    let mut e = ev.clone();
    e.hcl_report[0x4D4 + 40] ^= 1;
    assert!(matches!(run(&e, &n), Err(AzureError::Binding(_))));
    // No TD quote at all.
    let mut e = ev.clone();
    e.td_quote = None;
    assert!(matches!(run(&e, &n), Err(AzureError::Dcap(_))));
}
