//! The simulated TDX TEE through the real DCAP verifier.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use veil_endorsements::dcap::Collateral;
use veil_evidence::dcap::Quote;
use veil_sim::tdx::{SimTdx, TdParams};
use veil_verifier::UnixTime;
use veil_verifier::dcap::{DcapError, DcapVerifier, TcbStatus, verify};

fn setup() -> (SimTdx, Collateral, UnixTime) {
    let sim = SimTdx::generate().unwrap();
    let now = UnixTime::now();
    let coll: Collateral = serde_json::from_value(sim.collateral(now.0).unwrap()).unwrap();
    (sim, coll, now)
}

#[test]
fn round_trip_trusted_by_name_only() {
    let (sim, coll, now) = setup();
    let mut p = TdParams {
        mr_td: [0xab; 48],
        mr_config_id: [0xcd; 48],
        report_data: [0x42; 64],
        ..TdParams::default()
    };
    let raw = sim.quote(&p).unwrap();
    let q = Quote::parse(&raw).unwrap();
    assert_eq!(q.header.version, 4);
    // The default (Intel) root refuses it, naming the dangerous option.
    let err = verify(&q, &coll, now).unwrap_err();
    assert!(matches!(err, DcapError::PckChain(_)), "{err}");
    assert!(err.to_string().contains("dangerous"), "{err}");
    // Trusted by name: verifies, UpToDate, claims as launched.
    let v = DcapVerifier::dangerous_trust_simulated_root(sim.root_der()).unwrap();
    let ok = v.verify(&q, &coll, now).unwrap();
    let c = ok.claims();
    assert_eq!(c.tcb_status, TcbStatus::UpToDate);
    assert!(c.simulated);
    assert_eq!(c.measurement.0, vec![0xab; 48]);
    assert_eq!(c.mr_config_id.as_ref().unwrap().0, vec![0xcd; 48]);
    assert_eq!(c.report_data.0, vec![0x42; 64]);
    assert!(c.policy_flags.is_empty(), "{:?}", c.policy_flags);
    // Debug TD: a policy finding, still a valid quote.
    p.td_attributes |= 1;
    let q = Quote::parse(&sim.quote(&p).unwrap()).unwrap();
    let c = v.verify(&q, &coll, now).unwrap().claims().clone();
    assert!(c.debug);
    // A flipped body byte fails at the quote signature.
    let mut bad = raw.clone();
    bad[200] ^= 1;
    let err = v
        .verify(&Quote::parse(&bad).unwrap(), &coll, now)
        .unwrap_err();
    assert_eq!(err, DcapError::QuoteSignature);
    // Collateral from another simulated platform: refused.
    let (_, other_coll, _) = setup();
    assert!(
        v.verify(&Quote::parse(&raw).unwrap(), &other_coll, now)
            .is_err()
    );
    // After the collateral's next update: refused.
    let later = UnixTime(now.0 + 40 * 86_400);
    assert!(
        v.verify(&Quote::parse(&raw).unwrap(), &coll, later)
            .is_err()
    );
}

#[test]
fn revoked_pck_is_rejected() {
    let (sim, _, now) = setup();
    let revoking: Collateral =
        serde_json::from_value(sim.collateral_revoking_pck(now.0).unwrap()).unwrap();
    let q = Quote::parse(&sim.quote(&TdParams::default()).unwrap()).unwrap();
    let v = DcapVerifier::dangerous_trust_simulated_root(sim.root_der()).unwrap();
    let err = v.verify(&q, &revoking, now).unwrap_err();
    assert!(
        matches!(err, DcapError::Crl(ref m) if m.contains("PCK certificate is revoked")),
        "{err}"
    );
}

#[test]
fn event_log_replay() {
    let (sim, coll, now) = setup();
    let (log, rtmr) = veil_sim::tdx::measured_boot_log();
    let p = TdParams {
        rtmr,
        ..TdParams::default()
    };
    let q = Quote::parse(&sim.quote(&p).unwrap()).unwrap();
    let v = DcapVerifier::dangerous_trust_simulated_root(sim.root_der()).unwrap();
    let claims = v.verify(&q, &coll, now).unwrap().claims().clone();
    let events = veil_verifier::dcap::check_event_log(&claims, &log).unwrap();
    assert_eq!(events.as_array().unwrap().len(), 4);
    assert_eq!(events[1]["data"], hex::encode(b"vmlinuz"));
    // A changed digest, a dropped event, or a quote without those RTMRs: refused.
    let mut bad = log.clone();
    let n = bad.len();
    bad[n - 40] ^= 1;
    assert!(veil_verifier::dcap::check_event_log(&claims, &bad).is_err());
    assert!(veil_verifier::dcap::check_event_log(&claims, &log[..log.len() - 10]).is_err());
    let plain = Quote::parse(&sim.quote(&TdParams::default()).unwrap()).unwrap();
    let plain_claims = v.verify(&plain, &coll, now).unwrap().claims().clone();
    let err = veil_verifier::dcap::check_event_log(&plain_claims, &log).unwrap_err();
    assert!(err.contains("RTMR0"), "{err}");
}
