//! DCAP (TDX) quote verification throughput on one core, Veil side by side
//! with the two-P-256-verify floor and with the `dcap-qvl` crate, over the
//! same real quote and collateral (`tdx/dcap-qvl/tdx_quote`).
//!
//! Rows:
//! * two raw P-256 verifies (QE report by the PCK key, quote by the
//!   attestation key) with aws-lc-rs: the floor once collateral is cached;
//! * Veil, collateral cached (`verify_cached`: signatures over certificates,
//!   CRLs and signed JSON checked once; times checked on every call);
//! * Veil, nothing cached (`verify`);
//! * dcap-qvl 0.7 (`dcap_qvl::verify::verify`), which re-verifies all
//!   collateral on every call.
//!
//! Run: `cargo bench -p veil-bench --bench dcap_verify` (VEIL_BENCH_SECS per row, default 3).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::hint::black_box;
use std::time::Duration;

use veil_bench::rate;
use veil_endorsements::dcap::Collateral;
use veil_evidence::dcap::Quote;
use veil_verifier::UnixTime;

fn main() {
    let Some(dir) = veil_testkit::vectors() else {
        eprintln!("the benchmark needs the vector corpus");
        std::process::exit(1);
    };
    let secs: u64 = std::env::var("VEIL_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let budget = Duration::from_secs(secs);
    let raw = veil_testkit::read(&dir, "tdx/dcap-qvl/tdx_quote");
    let coll_bytes = veil_testkit::read(&dir, "tdx/dcap-qvl/tdx_quote_collateral.json");
    let coll = Collateral::parse(&coll_bytes).unwrap();
    let now = 1_751_624_191u64;
    let at = UnixTime(now as i64);

    let quote = Quote::parse(&raw).unwrap();
    let cache = veil_verifier::dcap::DcapCache::default();
    veil_verifier::dcap::verify_cached(&quote, &coll, at, &cache).unwrap();

    // The floor: the two P-256 verifications every quote needs.
    let chain =
        veil_endorsements::certs::decode_blobs("pck", &quote.certification.pck_chain_pem).unwrap();
    let veil_endorsements::certs::Blob::Certificate(pck_der) = &chain[0] else {
        panic!()
    };
    let pck = veil_verifier::x509::Cert::parse(pck_der).unwrap();
    let pck_key = aws_lc_rs::signature::ParsedPublicKey::new(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED,
        pck.p256_public_key().unwrap(),
    )
    .unwrap();
    let mut ak = vec![4u8];
    ak.extend_from_slice(&quote.attestation_key);
    let att_key = aws_lc_rs::signature::ParsedPublicKey::new(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED,
        &ak,
    )
    .unwrap();
    let floor = rate(budget, || {
        pck_key
            .verify_sig(
                &quote.certification.qe_report_raw,
                &quote.certification.qe_report_signature,
            )
            .unwrap();
        att_key
            .verify_sig(quote.signed_bytes(), &quote.signature)
            .unwrap();
    });

    let cached = rate(budget, || {
        let q = Quote::parse(black_box(&raw)).unwrap();
        black_box(veil_verifier::dcap::verify_cached(&q, &coll, at, &cache)).unwrap();
    });
    let uncached = rate(budget, || {
        let q = Quote::parse(black_box(&raw)).unwrap();
        black_box(veil_verifier::dcap::verify(&q, &coll, at)).unwrap();
    });

    let qvl_coll = dcap_qvl::QuoteCollateralV3 {
        pck_crl_issuer_chain: coll.pck_crl_issuer_chain.clone(),
        root_ca_crl: hex::decode(&coll.root_ca_crl).unwrap(),
        pck_crl: hex::decode(&coll.pck_crl).unwrap(),
        tcb_info_issuer_chain: coll.tcb_info_issuer_chain.clone(),
        tcb_info: coll.tcb_info.clone(),
        tcb_info_signature: hex::decode(&coll.tcb_info_signature).unwrap(),
        qe_identity_issuer_chain: coll.qe_identity_issuer_chain.clone(),
        qe_identity: coll.qe_identity.clone(),
        qe_identity_signature: hex::decode(&coll.qe_identity_signature).unwrap(),
        pck_certificate_chain: None,
    };
    dcap_qvl::verify::verify(&raw, &qvl_coll, now).unwrap();
    let qvl = rate(budget, || {
        black_box(dcap_qvl::verify::verify(black_box(&raw), &qvl_coll, now)).unwrap();
    });

    println!("\nTDX quote v4 verification, one core, {secs} s per row");
    println!("{:<58} {:>10} {:>12}", "row", "quotes/s", "vs floor");
    for (name, r) in [
        ("floor: two P-256 verifies, aws-lc-rs", floor),
        ("Veil: parse + verify, collateral cached", cached),
        ("Veil: parse + verify, nothing cached", uncached),
        (
            "dcap-qvl 0.7 (ring): verify (re-checks all collateral)",
            qvl,
        ),
    ] {
        println!("{name:<58} {r:>10.0} {:>11.2}x", r / floor);
    }
    println!();
    println!(
        "Veil (cached) / floor:    {:.2}x   (goal >= 0.80x)",
        cached / floor
    );
    println!(
        "Veil (cached) / dcap-qvl: {:.2}x   (goal >= 4.00x)",
        cached / qvl
    );
}
