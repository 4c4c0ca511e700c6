//! SNP verification against evidence captured on real AMD hardware.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use veil_testkit as common;

use std::path::Path;

use base64::Engine as _;
use veil_endorsements::snp::SnpEndorsements;
use veil_evidence::snp::{AttestationReport, REPORT_LEN, SIGNED_LEN, parse_evidence};
use veil_verifier::UnixTime;
use veil_verifier::snp::{SnpError, SnpVerifier, TrustAnchors};

fn endorsements(dir: &Path, files: &[&str]) -> SnpEndorsements {
    let mut e = SnpEndorsements::default();
    for f in files {
        e.add_file(&dir.join(f)).unwrap();
    }
    e
}

fn verifier() -> SnpVerifier {
    SnpVerifier::new(TrustAnchors::amd())
}

fn time_of(row: &serde_json::Value) -> UnixTime {
    match row["time"].as_str() {
        None => UnixTime::now(),
        Some(t) => match t.strip_prefix("any<=") {
            // Any time up to the bound: use now when it is inside, else the bound.
            Some(bound) => UnixTime::now().min(UnixTime::parse(bound).unwrap()),
            None => UnixTime::parse(t).unwrap(),
        },
    }
}

#[test]
fn expected_jsonl_snp_rows() {
    let Some(dir) = common::vectors() else { return };
    let text = std::fs::read_to_string(dir.join("EXPECTED.jsonl")).unwrap();
    let v = verifier();
    let mut checked = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        if row["tee"] != "snp" {
            continue;
        }
        let ev = parse_evidence(&common::read(&dir, row["evidence"].as_str().unwrap())).unwrap();
        let certs: Vec<&str> = row["certs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        let e = endorsements(&dir, &certs);
        let result = v.verify(&ev.report, &e, time_of(&row));
        match row["expect"].as_str().unwrap() {
            "VALID" => {
                let ok = result.unwrap_or_else(|e| panic!("{line}: {e}"));
                assert_eq!(
                    ok.claims().measurement.to_string(),
                    row["measurement"].as_str().unwrap(),
                    "{line}"
                );
                assert!(!ok.is_simulated());
            }
            "REJECT" => {
                let err = result.expect_err(line);
                assert!(
                    matches!(err, SnpError::ChainSignature { .. }),
                    "{line}: wrong reason {err}"
                );
            }
            other => panic!("unexpected expectation {other}"),
        }
        checked += 1;
    }
    assert_eq!(checked, 3, "all SNP rows of EXPECTED.jsonl were checked");
}

#[test]
fn vcek_report_claims() {
    let Some(dir) = common::vectors() else { return };
    let report =
        AttestationReport::parse(&common::read(&dir, "snp/trustee/test-report.bin")).unwrap();
    let e = endorsements(&dir, &["snp/trustee/test-vcek.der"]);
    let ok = verifier()
        .verify(&report, &e, UnixTime::parse("2026-11-30").unwrap())
        .unwrap();
    let c = ok.claims();
    assert_eq!(c.report_version, 2);
    assert_eq!(c.policy.raw, 0x3001f);
    assert!(!c.debug);
    assert_eq!(c.guest_svn, 4);
    assert_eq!(
        c.id_key_digest.to_string(),
        "0356215882a825279a85b300b0b742931d113bf7e32dde2e50ffde7ec743ca491ecdd7f336dc28a6e0b2bb57af7a44a3"
    );
    assert_eq!(
        (
            c.reported_tcb.bootloader,
            c.reported_tcb.tee,
            c.reported_tcb.snp,
            c.reported_tcb.microcode
        ),
        (3, 0, 8, 115)
    );
    assert_eq!(c.product, veil_evidence::snp::Product::Milan);
    assert!(c.chip_id.to_string().starts_with("c38427a3"));
    assert_eq!(c.current_version.to_string(), "1.52 build 4");
    assert!(c.endorsement.hwid.is_some());
}

#[test]
fn vlek_valid_in_2025_rejected_today() {
    let Some(dir) = common::vectors() else { return };
    let report =
        AttestationReport::parse(&common::read(&dir, "snp/trustee/test-vlek-report.bin")).unwrap();
    let e = endorsements(
        &dir,
        &[
            "snp/trustee/test-vlek.der",
            "snp/trustee/milan_ask_ark_asvk.pem",
        ],
    );
    let v = verifier();
    let ok = v
        .verify(
            &report,
            &e,
            UnixTime::parse("2025-06-01T00:00:00Z").unwrap(),
        )
        .unwrap();
    assert_eq!(
        ok.claims().endorsement.csp_id.as_deref(),
        Some("CN=cc-us-east-2.amazonaws.com")
    );
    assert_eq!(ok.claims().vmpl, 1);
    let err = v
        .verify(
            &report,
            &e,
            UnixTime::parse("2026-11-30T00:00:00Z").unwrap(),
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            SnpError::CertificateNotValid {
                role: veil_verifier::snp::ChainRole::Vlek,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(err.step(), 4);
}

#[test]
fn tampered_vceks_rejected() {
    let Some(dir) = common::vectors() else { return };
    let report =
        AttestationReport::parse(&common::read(&dir, "snp/trustee/test-report.bin")).unwrap();
    for f in [
        "snp/trustee/test-vcek-invalid-legacy.der",
        "snp/trustee/test-vcek-invalid-new.der",
    ] {
        let e = endorsements(&dir, &[f]);
        let err = verifier().verify(&report, &e, UnixTime::now()).unwrap_err();
        // Either its hwID no longer names this chip (so it is not even a
        // candidate) or its signature fails: never accepted.
        assert!(matches!(err, SnpError::ChainSignature { .. }), "{f}: {err}");
    }
    // A VCEK with one flipped byte anywhere is rejected.
    let vcek = common::read(&dir, "snp/trustee/test-vcek.der");
    let v = verifier();
    for i in 0..vcek.len() {
        let mut bad = vcek.clone();
        bad[i] ^= 0x01;
        let e = SnpEndorsements {
            certs: vec![bad],
            crls: vec![],
        };
        assert!(
            v.verify(&report, &e, UnixTime::now()).is_err(),
            "VCEK byte {i}"
        );
    }
}

/// The SNP reports inside the Azure vTPM evidence (HCL report at offset 0x20),
/// each verified with the VCEK carried in the evidence.
#[test]
fn azure_embedded_snp_reports() {
    let Some(dir) = common::vectors() else { return };
    let text = std::fs::read_to_string(dir.join("EXPECTED.jsonl")).unwrap();
    let v = verifier();
    let mut checked = 0;
    for line in text.lines() {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        if row["tee"] != "snp+vtpm(azure)" {
            continue;
        }
        let ev: serde_json::Value =
            serde_json::from_slice(&common::read(&dir, row["evidence"].as_str().unwrap())).unwrap();
        let hcl: Vec<u8> = match (&ev["report"], &ev["hcl_report"]) {
            (serde_json::Value::Array(a), _) => {
                a.iter().map(|b| b.as_u64().unwrap() as u8).collect()
            }
            (_, serde_json::Value::String(s)) => base64::engine::general_purpose::URL_SAFE
                .decode(s)
                .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s))
                .unwrap(),
            _ => panic!("no HCL report in {line}"),
        };
        let report = AttestationReport::parse(&hcl[0x20..0x20 + REPORT_LEN]).unwrap();
        let vcek = ev["vcek"].as_str().unwrap();
        let mut e = SnpEndorsements::default();
        let blobs = if vcek.starts_with("-----") {
            veil_endorsements::certs::decode_blobs("vcek", vcek.as_bytes()).unwrap()
        } else {
            let der = base64::engine::general_purpose::URL_SAFE
                .decode(vcek)
                .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(vcek))
                .unwrap();
            veil_endorsements::certs::decode_blobs("vcek", &der).unwrap()
        };
        e.add_blobs(blobs);
        let ok = v
            .verify(&report, &e, UnixTime::now())
            .unwrap_or_else(|e| panic!("{line}: {e}"));
        assert_eq!(
            ok.claims().measurement.to_string(),
            row["snp_measurement"].as_str().unwrap()
        );
        checked += 1;
    }
    assert_eq!(checked, 4);
    // And the raw HCL report with its PEM chain.
    let hcl = common::read(&dir, "azure-cvm/trustee-az-snp-vtpm/hcl-report.bin");
    let report = AttestationReport::parse(&hcl[0x20..0x20 + REPORT_LEN]).unwrap();
    let e = endorsements(&dir, &["azure-cvm/trustee-az-snp-vtpm/vcek.pem"]);
    let ok = v.verify(&report, &e, UnixTime::now()).unwrap();
    assert_eq!(
        ok.claims().measurement.to_string(),
        "9ac48fcac8a2d88aeeff8d427ad4f2be0e3917c748a18bdf52cc317e7fe20308b459d5ef1a12e0c22944eb386d17c315"
    );
}

/// Every single-byte change in the signed range of every real report is
/// rejected, either by the parser (reserved fields, versions) or by the
/// verifier: 672 positions per report.
#[test]
fn every_signed_byte_flip_is_rejected() {
    let Some(dir) = common::vectors() else { return };
    let cases = [
        (
            "snp/trustee/test-report.bin",
            vec!["snp/trustee/test-vcek.der"],
            None,
        ),
        (
            "snp/trustee/test-vlek-report.bin",
            vec!["snp/trustee/test-vlek.der"],
            Some("2025-06-01"),
        ),
    ];
    let v = verifier();
    for (report_file, certs, at) in cases {
        let bytes = common::read(&dir, report_file);
        let e = endorsements(&dir, &certs);
        let at = at.map_or_else(UnixTime::now, |t| UnixTime::parse(t).unwrap());
        let good = AttestationReport::parse(&bytes).unwrap();
        v.verify(&good, &e, at).unwrap();
        let mut rejected = 0;
        for i in 0..SIGNED_LEN {
            for mask in [0x01u8, 0x80] {
                let mut b = bytes.clone();
                b[i] ^= mask;
                let outcome = AttestationReport::parse(&b).map(|r| v.verify(&r, &e, at));
                assert!(
                    !matches!(outcome, Ok(Ok(_))),
                    "{report_file}: flip {mask:#x} at {i:#x} was accepted"
                );
            }
            rejected += 1;
        }
        assert_eq!(rejected, 672);
        // The signature itself: any change in r or s fails too.
        for i in SIGNED_LEN..SIGNED_LEN + 144 {
            let mut b = bytes.clone();
            b[i] ^= 0x01;
            let outcome = AttestationReport::parse(&b).map(|r| v.verify(&r, &e, at));
            assert!(!matches!(outcome, Ok(Ok(_))), "signature byte {i:#x}");
        }
    }
}

#[test]
fn edited_tcb_no_longer_matches() {
    let Some(dir) = common::vectors() else { return };
    let mut bytes = common::read(&dir, "snp/trustee/test-report.bin");
    bytes[0x180] = 4; // reported_tcb.bootloader 3 → 4
    let report = AttestationReport::parse(&bytes).unwrap();
    let e = endorsements(&dir, &["snp/trustee/test-vcek.der"]);
    let err = verifier().verify(&report, &e, UnixTime::now()).unwrap_err();
    assert!(matches!(err, SnpError::ReportSignature { .. }), "{err}");
}

#[test]
fn swapped_chains_rejected() {
    let Some(dir) = common::vectors() else { return };
    let report =
        AttestationReport::parse(&common::read(&dir, "snp/trustee/test-report.bin")).unwrap();
    // Milan report with the Genoa VCEK and Genoa chain.
    let e = endorsements(
        &dir,
        &[
            "azure-cvm/trustee-az-snp-vtpm/vcek-genoa.pem",
            "snp/trustee/genoa_ask_ark_asvk.pem",
        ],
    );
    let err = verifier().verify(&report, &e, UnixTime::now()).unwrap_err();
    assert!(
        matches!(
            err,
            SnpError::ReportSignature { .. } | SnpError::ExtensionMismatch { .. }
        ),
        "{err}"
    );
    // Milan report and VCEK, but a verifier that trusts only Genoa's root.
    let e = endorsements(
        &dir,
        &[
            "snp/trustee/test-vcek.der",
            "snp/trustee/genoa_ask_ark_asvk.pem",
        ],
    );
    let genoa_only = SnpVerifier::new(TrustAnchors::amd_products(&[
        veil_evidence::snp::Product::Genoa,
    ]));
    let err = genoa_only.verify(&report, &e, UnixTime::now()).unwrap_err();
    assert!(
        matches!(
            err,
            SnpError::MissingIntermediate { .. } | SnpError::UntrustedRoot { .. }
        ),
        "{err}"
    );
    // Genoa report (Azure) with the Milan VCEK.
    let ev: serde_json::Value = serde_json::from_slice(&common::read(
        &dir,
        "azure-cvm/trustee-az-snp-vtpm/evidence-genoa.json",
    ))
    .unwrap();
    let hcl: Vec<u8> = ev["report"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_u64().unwrap() as u8)
        .collect();
    let genoa = AttestationReport::parse(&hcl[0x20..0x20 + REPORT_LEN]).unwrap();
    let e = endorsements(
        &dir,
        &[
            "snp/trustee/test-vcek.der",
            "snp/trustee/milan_ask_ark_asvk.pem",
        ],
    );
    assert!(verifier().verify(&genoa, &e, UnixTime::now()).is_err());
}

#[test]
fn raw_and_coco_json_give_identical_claims() {
    let Some(dir) = common::vectors() else { return };
    let bytes = common::read(&dir, "snp/trustee/test-report.bin");
    let raw = parse_evidence(&bytes).unwrap();
    let vcek = common::read(&dir, "snp/trustee/test-vcek.der");
    let with_chain = veil_evidence::snp::SnpEvidence {
        report: raw.report.clone(),
        cert_chain: vec![veil_evidence::snp::CertTableEntry {
            cert_type: veil_evidence::snp::CertType::Vcek,
            data: vcek.clone(),
        }],
    };
    let json = veil_evidence::snp::coco::to_json(&with_chain).unwrap();
    let from_json = parse_evidence(json.as_bytes()).unwrap();
    assert_eq!(from_json.report.as_bytes(), raw.report.as_bytes());
    let mut e1 = SnpEndorsements::default();
    e1.add_cert_table(&from_json.cert_chain).unwrap();
    let e2 = endorsements(&dir, &["snp/trustee/test-vcek.der"]);
    let v = verifier();
    let a = v.verify(&from_json.report, &e1, UnixTime::now()).unwrap();
    let b = v.verify(&raw.report, &e2, UnixTime::now()).unwrap();
    assert_eq!(a.claims(), b.claims());
}
