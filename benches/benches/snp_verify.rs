//! SNP verification throughput on one core, Veil side by side with its peers.
//!
//! Rows (all over the same real Milan report from the vector corpus):
//! * raw P-384 verify of the report's signature with aws-lc-rs (Veil's
//!   backend), ring, and RustCrypto `p384`: the floor of SNP verification;
//! * Veil: parse the report bytes + `SnpVerifier::verify` with the chain
//!   already verified and cached (the broker's steady state);
//! * the `sev` crate (v8, OpenSSL): parse the report + verify it with the
//!   VCEK already parsed (`(&Certificate, &AttestationReport).verify()`).
//!
//! Run: `cargo bench -p veil-bench --bench snp_verify` (VEIL_BENCH_SECS sets
//! the time per row, default 3).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::time::Duration;

use sev::certs::snp::Verifiable;
use sev::parser::ByteParser;
use veil_bench::rate;
use veil_endorsements::snp::SnpEndorsements;
use veil_evidence::snp::coco::{CertTableEntry, CertType, SnpEvidence};
use veil_evidence::snp::{AttestationReport, SIGNED_LEN};
use veil_verifier::UnixTime;
use veil_verifier::snp::{SnpVerifier, TrustAnchors};

fn main() {
    // `cargo bench` passes `--bench`; ignore arguments.
    let Some(dir) = veil_testkit::vectors() else {
        eprintln!("the benchmark needs the vector corpus");
        std::process::exit(1);
    };
    let secs: u64 = std::env::var("VEIL_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let budget = Duration::from_secs(secs);
    let bytes = veil_testkit::read(&dir, "snp/trustee/test-report.bin");
    let vcek_der = veil_testkit::read(&dir, "snp/trustee/test-vcek.der");
    let at = UnixTime::parse("2026-11-30").unwrap();

    // The signature as big-endian r‖s and the VCEK's public point.
    let report = AttestationReport::parse(&bytes).unwrap();
    let mut sig = [0u8; 96];
    for (i, b) in report.signature.r[..48].iter().rev().enumerate() {
        sig[i] = *b;
    }
    for (i, b) in report.signature.s[..48].iter().rev().enumerate() {
        sig[48 + i] = *b;
    }
    let cert = veil_verifier::x509::Cert::parse(&vcek_der).unwrap();
    let point = cert.p384_public_key().unwrap().to_vec();
    let msg = &bytes[..SIGNED_LEN];

    let mut rows: Vec<(&str, f64)> = Vec::new();

    let awslc = aws_lc_rs::signature::ParsedPublicKey::new(
        &aws_lc_rs::signature::ECDSA_P384_SHA384_FIXED,
        &point,
    )
    .unwrap();
    assert!(awslc.verify_sig(msg, &sig).is_ok());
    rows.push((
        "raw P-384 verify, aws-lc-rs (Veil's backend)",
        rate(budget, || {
            black_box(awslc.verify_sig(black_box(msg), &sig)).unwrap();
        }),
    ));

    let ring_key = ring::signature::UnparsedPublicKey::new(
        &ring::signature::ECDSA_P384_SHA384_FIXED,
        point.clone(),
    );
    assert!(ring_key.verify(msg, &sig).is_ok());
    rows.push((
        "raw P-384 verify, ring 0.17",
        rate(budget, || {
            black_box(ring_key.verify(black_box(msg), &sig)).unwrap();
        }),
    ));

    {
        use p384::ecdsa::signature::Verifier;
        let vk = p384::ecdsa::VerifyingKey::from_sec1_bytes(&point).unwrap();
        let s = p384::ecdsa::Signature::from_slice(&sig).unwrap();
        assert!(vk.verify(msg, &s).is_ok());
        rows.push((
            "raw P-384 verify, RustCrypto p384 0.13",
            rate(budget, || {
                black_box(vk.verify(black_box(msg), &s)).unwrap();
            }),
        ));
    }

    let verifier = SnpVerifier::new(TrustAnchors::amd());
    let endorsements = SnpEndorsements {
        certs: vec![vcek_der.clone()],
        crls: vec![],
    };
    verifier.verify(&report, &endorsements, at).unwrap();
    let veil = rate(budget, || {
        let r = AttestationReport::parse(black_box(&bytes)).unwrap();
        black_box(verifier.verify(&r, &endorsements, at)).unwrap();
    });
    rows.push(("Veil: parse + verify (chain cached)", veil));

    let sev_vcek = sev::certs::snp::Certificate::from_der(&vcek_der).unwrap();
    let sev_report = sev::firmware::guest::AttestationReport::from_bytes(&bytes).unwrap();
    (&sev_vcek, &sev_report).verify().unwrap();
    let peer = rate(budget, || {
        let r = sev::firmware::guest::AttestationReport::from_bytes(black_box(&bytes)).unwrap();
        black_box((&sev_vcek, &r).verify()).unwrap();
    });
    rows.push(("sev 8 (OpenSSL): parse + verify (VCEK parsed)", peer));

    // The same report as a CoCo guest sends it to a broker: the serde JSON
    // of the report plus the host's certificate table (VCEK and ASK DER as
    // JSON arrays of numbers), ≈ 12 KB of text.
    let ask_der = veil_endorsements::certs::decode_blobs(
        "milan",
        &veil_testkit::read(&dir, "snp/trustee/milan_ask_ark_asvk.pem"),
    )
    .unwrap()
    .into_iter()
    .find_map(|b| match b {
        veil_endorsements::certs::Blob::Certificate(d) => Some(d),
        veil_endorsements::certs::Blob::Crl(_) => None,
    })
    .unwrap();
    let coco = veil_evidence::snp::coco::to_json(&SnpEvidence {
        report: report.clone(),
        cert_chain: vec![
            CertTableEntry {
                cert_type: CertType::Vcek,
                data: vcek_der.clone(),
            },
            CertTableEntry {
                cert_type: CertType::Ask,
                data: ask_der,
            },
        ],
    })
    .unwrap()
    .into_bytes();
    let coco_endorsements = |ev: &SnpEvidence| {
        let mut e = SnpEndorsements::default();
        e.add_cert_table(&ev.cert_chain).unwrap();
        e
    };
    let ev = veil_evidence::snp::coco::parse_json(&coco).unwrap();
    verifier
        .verify(&ev.report, &coco_endorsements(&ev), at)
        .unwrap();
    let mut coco_rows: Vec<(&str, f64)> = Vec::new();
    coco_rows.push((
        "Veil: CoCo JSON parse",
        rate(budget, || {
            black_box(veil_evidence::snp::coco::parse_json(black_box(&coco))).unwrap();
        }),
    ));
    coco_rows.push((
        "Veil: CoCo JSON parse + cert table decode",
        rate(budget, || {
            let ev = veil_evidence::snp::coco::parse_json(black_box(&coco)).unwrap();
            black_box(coco_endorsements(&ev));
        }),
    ));
    let veil_coco = rate(budget, || {
        let ev = veil_evidence::snp::coco::parse_json(black_box(&coco)).unwrap();
        let e = coco_endorsements(&ev);
        black_box(verifier.verify(&ev.report, &e, at)).unwrap();
    });
    coco_rows.push((
        "Veil: CoCo JSON parse + decode + verify (cached)",
        veil_coco,
    ));
    // The peer's route (Trustee's SNP verifier): serde into the sev
    // crate's report type and certificate table.
    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct SevEvidence {
        attestation_report: sev::firmware::guest::AttestationReport,
        cert_chain: Option<Vec<sev::firmware::host::CertTableEntry>>,
    }
    let sev_coco_ok = serde_json::from_slice::<SevEvidence>(&coco);
    match &sev_coco_ok {
        Ok(_) => coco_rows.push((
            "sev 8: CoCo JSON deserialise (serde)",
            rate(budget, || {
                black_box(serde_json::from_slice::<SevEvidence>(black_box(&coco))).unwrap();
            }),
        )),
        Err(e) => println!("sev 8 does not read this CoCo JSON: {e}"),
    }

    let raw = rows[0].1;
    println!("\nSNP report verification, one core, {secs} s per row");
    println!("{:<50} {:>12} {:>14}", "row", "ops/s", "vs aws-lc raw");
    for (name, r) in &rows {
        println!("{name:<50} {r:>12.0} {:>13.2}x", r / raw);
    }
    println!(
        "\nThe same report as CoCo evidence JSON ({} bytes, report + VCEK + ASK)",
        coco.len()
    );
    for (name, r) in &coco_rows {
        println!("{name:<50} {r:>12.0} {:>13.2}x", r / raw);
    }
    println!();
    println!(
        "Veil / raw P-384 (aws-lc-rs): {:.2}x   (goal >= 0.90x)",
        veil / raw
    );
    println!(
        "Veil / sev crate:             {:.2}x   (goal >= 2.50x)",
        veil / peer
    );
}
