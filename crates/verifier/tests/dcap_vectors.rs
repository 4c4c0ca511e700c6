//! DCAP verification of every Intel row of EXPECTED.jsonl: TCB status,
//! advisory IDs and policy findings at the given time; derived negatives.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use veil_endorsements::dcap::Collateral;
use veil_evidence::dcap::{Quote, parse_evidence};
use veil_testkit::{read, vectors};
use veil_verifier::UnixTime;
use veil_verifier::dcap::{DcapError, TcbStatus, verify};

fn status_name(s: TcbStatus) -> String {
    match s {
        TcbStatus::NotSupported => "TCB_NOT_SUPPORTED".into(),
        other => other.to_string(),
    }
}

#[test]
fn expected_jsonl_intel_rows() {
    let Some(dir) = vectors() else { return };
    let text = std::fs::read_to_string(dir.join("EXPECTED.jsonl")).unwrap();
    let mut checked = 0;
    for line in text.lines() {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        if row["tee"] != "tdx" && row["tee"] != "sgx" {
            continue;
        }
        let (quote, _) = parse_evidence(&read(&dir, row["evidence"].as_str().unwrap())).unwrap();
        let coll = Collateral::parse(&read(&dir, row["collateral"].as_str().unwrap())).unwrap();
        let at = UnixTime(row["time"].as_i64().unwrap());
        let result = verify(&quote, &coll, at);
        let expect = row["expect"].as_str().unwrap();
        if expect == "REJECT" {
            let err = result.expect_err(line);
            assert!(matches!(err, DcapError::Crl(_)), "{line}: {err}");
            checked += 1;
            continue;
        }
        let ok = result.unwrap_or_else(|e| panic!("{line}: {e}"));
        let c = ok.claims();
        assert_eq!(status_name(c.tcb_status), expect, "{line}");
        if let Some(adv) = row["advisories"].as_array() {
            let want: Vec<&str> = adv.iter().map(|a| a.as_str().unwrap()).collect();
            assert_eq!(c.advisory_ids, want, "{line}");
        }
        let flags: Vec<String> = c
            .policy_flags
            .iter()
            .map(|f| {
                serde_json::to_value(f)
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        for f in row["policy_flags"].as_array().into_iter().flatten() {
            assert!(
                flags.contains(&f.as_str().unwrap().to_string()),
                "{line}: flags {flags:?}"
            );
        }
        checked += 1;
    }
    assert_eq!(checked, 12, "every Intel row was checked");
}

#[test]
fn every_signed_byte_flip_is_rejected() {
    let Some(dir) = vectors() else { return };
    for (q, c, t) in [
        (
            "tdx/trustee/tdx_quote_4.dat",
            "tdx/trustee/ASSEMBLED_collateral_50806f000000_2023-06.json",
            1688173200,
        ),
        (
            "sgx/dcap-qvl/sgx_quote",
            "sgx/dcap-qvl/sgx_quote_collateral.json",
            1751624924,
        ),
    ] {
        let raw = read(&dir, q);
        let coll = Collateral::parse(&read(&dir, c)).unwrap();
        let at = UnixTime(t);
        let good = Quote::parse(&raw).unwrap();
        verify(&good, &coll, at).unwrap();
        let signed = good.signed_bytes().len();
        // Header and body (signed by the attestation key), the QE report
        // (signed by the PCK) and the signature bytes themselves.
        let qe_off = signed + 4 + 128 + if good.header.version == 3 { 0 } else { 6 };
        let positions: Vec<usize> = (0..signed)
            .chain(qe_off..qe_off + 384 + 64)
            .chain(signed + 4..signed + 4 + 128)
            .collect();
        for i in positions {
            let mut b = raw.clone();
            b[i] ^= 0x01;
            let accepted = Quote::parse(&b).is_ok_and(|q| verify(&q, &coll, at).is_ok());
            assert!(!accepted, "{q}: flip at {i:#x} accepted");
        }
    }
}

#[test]
fn collateral_tampering_and_wrong_pairs() {
    let Some(dir) = vectors() else { return };
    let (quote, _) = parse_evidence(&read(&dir, "tdx/dcap-qvl/tdx_quote")).unwrap();
    let coll = Collateral::parse(&read(&dir, "tdx/dcap-qvl/tdx_quote_collateral.json")).unwrap();
    let at = UnixTime(1751624191);
    verify(&quote, &coll, at).unwrap();
    // The signed JSON edited (one status changed): signature fails.
    let mut c = coll.clone();
    c.tcb_info = c.tcb_info.replacen("UpToDate", "Revoked!", 1);
    assert!(matches!(verify(&quote, &c, at), Err(DcapError::TcbInfo(_))));
    let mut c = coll.clone();
    c.qe_identity = c
        .qe_identity
        .replacen("\"isvprodid\":2", "\"isvprodid\":3", 1);
    assert!(matches!(
        verify(&quote, &c, at),
        Err(DcapError::QeIdentity(_))
    ));
    // Today the collateral has expired.
    let err = verify(&quote, &coll, UnixTime::parse("2026-11-30").unwrap()).unwrap_err();
    assert!(matches!(err, DcapError::Crl(_)), "{err}");
    // An SGX quote with TDX collateral.
    let (sgx, _) = parse_evidence(&read(&dir, "sgx/dcap-qvl/sgx_quote")).unwrap();
    let err = verify(&sgx, &coll, at).unwrap_err();
    assert!(err.step() >= 2, "{err}");
}

#[test]
fn cached_verification_is_identical_and_rechecks_time() {
    let Some(dir) = vectors() else { return };
    let cache = veil_verifier::dcap::DcapCache::default();
    let text = std::fs::read_to_string(dir.join("EXPECTED.jsonl")).unwrap();
    for line in text.lines() {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        if row["tee"] != "tdx" && row["tee"] != "sgx" {
            continue;
        }
        let (quote, _) = parse_evidence(&read(&dir, row["evidence"].as_str().unwrap())).unwrap();
        let coll = Collateral::parse(&read(&dir, row["collateral"].as_str().unwrap())).unwrap();
        let at = UnixTime(row["time"].as_i64().unwrap());
        for _ in 0..2 {
            let a = verify(&quote, &coll, at).map(|v| v.claims().clone());
            let b = veil_verifier::dcap::verify_cached(&quote, &coll, at, &cache)
                .map(|v| v.claims().clone());
            assert_eq!(a, b, "{line}");
        }
    }
    // After a cached success, a later time still fails on expired collateral.
    let (quote, _) = parse_evidence(&read(&dir, "tdx/dcap-qvl/tdx_quote")).unwrap();
    let coll = Collateral::parse(&read(&dir, "tdx/dcap-qvl/tdx_quote_collateral.json")).unwrap();
    veil_verifier::dcap::verify_cached(&quote, &coll, UnixTime(1751624191), &cache).unwrap();
    assert!(
        veil_verifier::dcap::verify_cached(
            &quote,
            &coll,
            UnixTime::parse("2026-11-30").unwrap(),
            &cache
        )
        .is_err()
    );
}

#[test]
fn stale_collateral_only_by_explicit_choice() {
    let Some(dir) = vectors() else { return };
    let (quote, _) = parse_evidence(&read(&dir, "tdx/dcap-qvl/tdx_quote")).unwrap();
    let coll = Collateral::parse(&read(&dir, "tdx/dcap-qvl/tdx_quote_collateral.json")).unwrap();
    let today = UnixTime::parse("2026-11-30").unwrap();
    let strict = veil_verifier::dcap::DcapVerifier::intel().unwrap();
    assert!(matches!(
        strict.verify(&quote, &coll, today),
        Err(DcapError::Crl(_))
    ));
    let lenient = veil_verifier::dcap::DcapVerifier::intel()
        .unwrap()
        .dangerous_allow_stale_collateral();
    let ok = lenient.verify(&quote, &coll, today).unwrap();
    assert_eq!(ok.claims().tcb_status, TcbStatus::UpToDate);
}
