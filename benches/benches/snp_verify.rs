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

    let raw = rows[0].1;
    println!("\nSNP report verification, one core, {secs} s per row");
    println!("{:<50} {:>12} {:>14}", "row", "ops/s", "vs aws-lc raw");
    for (name, r) in &rows {
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
