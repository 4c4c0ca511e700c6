//! SNP verification of the simulated TEE's reports: round trips for every
//! report version, the dangerous opt-in, and step-8 binding failures.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::OnceLock;

use proptest::prelude::*;
use veil_endorsements::snp::SnpEndorsements;
use veil_evidence::snp::{AttestationReport, Product, TcbVersion};
use veil_sim::snp::{ReportParams, SimSnp};
use veil_verifier::UnixTime;
use veil_verifier::snp::{SnpError, SnpVerifier, TrustAnchors};

fn sim(product: Product) -> &'static SimSnp {
    static MILAN: OnceLock<SimSnp> = OnceLock::new();
    static TURIN: OnceLock<SimSnp> = OnceLock::new();
    let cell = if product == Product::Turin {
        &TURIN
    } else {
        &MILAN
    };
    cell.get_or_init(|| SimSnp::generate(product).unwrap())
}

fn endorsements(s: &SimSnp, tcb: &TcbVersion) -> SnpEndorsements {
    SnpEndorsements {
        certs: vec![
            s.vcek_der(tcb).unwrap(),
            s.ask_der().to_vec(),
            s.ark_der().to_vec(),
        ],
        crls: vec![],
    }
}

fn trusting(s: &SimSnp) -> SnpVerifier {
    SnpVerifier::new(
        TrustAnchors::amd()
            .dangerous_trust_simulated_root(s.product(), s.ark_der())
            .unwrap(),
    )
}

#[test]
fn simulated_organisation_names_agree() {
    assert_eq!(veil_sim::SIMULATED_ORG, veil_verifier::snp::SIMULATED_ORG);
}

#[test]
fn round_trip_every_version() {
    for (product, version) in [
        (Product::Milan, 2),
        (Product::Milan, 3),
        (Product::Milan, 5),
        (Product::Turin, 3),
        (Product::Turin, 5),
    ] {
        let s = sim(product);
        let mut p = ReportParams::new(product);
        p.version = version;
        p.measurement = [0xab; 48];
        p.report_data = [0xcd; 64];
        p.host_data = [0x11; 32];
        let report = s.report(&p).unwrap();
        let reparsed = AttestationReport::parse(report.as_bytes()).unwrap();
        assert_eq!(reparsed, report);
        let ok = trusting(s)
            .verify(&report, &endorsements(s, &p.tcb), UnixTime::now())
            .unwrap_or_else(|e| panic!("{product} v{version}: {e}"));
        assert!(ok.is_simulated());
        let c = ok.claims();
        assert_eq!(c.report_version, version);
        assert_eq!(c.product, product);
        assert_eq!(c.measurement.0, vec![0xab; 48]);
        assert_eq!(c.host_data.0, vec![0x11; 32]);
        assert_eq!(c.reported_tcb, p.tcb);
        assert_eq!(c.reported_tcb.fmc.is_some(), product == Product::Turin);
    }
}

/// The CoCo certificate table is filed by its entry types without being
/// decoded first; whatever an entry holds, the verifier decodes it in full
/// before it is used, so a mislabelled or broken entry only rejects.
#[test]
fn cert_table_entries_are_decoded_by_the_verifier() {
    use veil_evidence::snp::{CertTableEntry, CertType};
    let s = sim(Product::Milan);
    let p = ReportParams::new(Product::Milan);
    let report = s.report(&p).unwrap();
    let vcek = s.vcek_der(&p.tcb).unwrap();
    let entry = |cert_type, data: &[u8]| CertTableEntry {
        cert_type,
        data: data.to_vec(),
    };
    let table = |entries: Vec<CertTableEntry>| {
        let mut e = SnpEndorsements::default();
        e.add_cert_table(&entries).map(|()| e)
    };
    let v = trusting(s);

    // Labels are hints: the VCEK and the ASK swapped still verify.
    let swapped = table(vec![
        entry(CertType::Ask, &vcek),
        entry(CertType::Vcek, s.ask_der()),
    ])
    .unwrap();
    assert_eq!(swapped.certs.len(), 2);
    v.verify(&report, &swapped, UnixTime::now()).unwrap();

    // DER-looking junk under a certificate label is filed, then rejected
    // by the verifier's full decode (and never enters the chain cache).
    let mut junk = vcek.clone();
    junk.truncate(200);
    let broken = table(vec![
        entry(CertType::Vcek, &vcek),
        entry(CertType::Ask, s.ask_der()),
        entry(CertType::Ark, &junk),
    ])
    .unwrap();
    for _ in 0..2 {
        let err = v.verify(&report, &broken, UnixTime::now()).unwrap_err();
        assert!(matches!(err, SnpError::BadEndorsementKey { .. }), "{err:?}");
    }
    // A certificate filed as a CRL is rejected as a CRL.
    let crl = table(vec![
        entry(CertType::Vcek, &vcek),
        entry(CertType::Ask, s.ask_der()),
        entry(CertType::Crl, s.ark_der()),
    ])
    .unwrap();
    assert_eq!(crl.crls.len(), 1);
    let err = v.verify(&report, &crl, UnixTime::now()).unwrap_err();
    assert!(matches!(err, SnpError::BadCrl { .. }), "{err:?}");

    // Entries that are not DER, or of other types, are decoded here.
    assert!(table(vec![entry(CertType::Vcek, b"not a certificate")]).is_err());
    assert!(table(vec![entry(CertType::Other("x".into()), &junk)]).is_err());
    let other = table(vec![entry(CertType::Other("x".into()), &vcek)]).unwrap();
    assert_eq!(other.certs, vec![vcek.clone()]);
    // Duplicates are dropped as before.
    let dup = table(vec![
        entry(CertType::Vcek, &vcek),
        entry(CertType::Vcek, &vcek),
    ])
    .unwrap();
    assert_eq!(dup.certs.len(), 1);
}

#[test]
fn simulated_root_refused_without_dangerous_opt_in() {
    let s = sim(Product::Milan);
    let p = ReportParams::new(Product::Milan);
    let report = s.report(&p).unwrap();
    let v = SnpVerifier::new(TrustAnchors::amd());
    for e in [
        endorsements(s, &p.tcb),
        SnpEndorsements {
            certs: vec![s.vcek_der(&p.tcb).unwrap(), s.ask_der().to_vec()],
            crls: vec![],
        },
    ] {
        let err = v.verify(&report, &e, UnixTime::now()).unwrap_err();
        assert_eq!(err, SnpError::SimulatedRoot);
        assert!(err.to_string().contains("dangerous"), "{err}");
    }
}

#[test]
fn tcb_not_matching_vcek_is_rejected_at_step_8() {
    let s = sim(Product::Milan);
    let p = ReportParams::new(Product::Milan);
    let report = s.report(&p).unwrap();
    let mut other = p.tcb;
    other.microcode += 1;
    let err = trusting(s)
        .verify(&report, &endorsements(s, &other), UnixTime::now())
        .unwrap_err();
    assert!(
        matches!(
            err,
            SnpError::ExtensionMismatch {
                field: "microcode SPL",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(err.step(), 8);
}

#[test]
fn debug_policy_is_reported() {
    let s = sim(Product::Milan);
    let mut p = ReportParams::new(Product::Milan);
    p.policy = 0x3_0000 | 1 << 19;
    let report = s.report(&p).unwrap();
    let ok = trusting(s)
        .verify(&report, &endorsements(s, &p.tcb), UnixTime::now())
        .unwrap();
    assert!(ok.claims().debug);
    assert!(ok.claims().policy.debug);
}

#[test]
fn expired_and_not_yet_valid() {
    let s = sim(Product::Milan);
    let p = ReportParams::new(Product::Milan);
    let report = s.report(&p).unwrap();
    let v = trusting(s);
    let e = endorsements(s, &p.tcb);
    for t in ["2019-01-01", "2046-01-01"] {
        let err = v
            .verify(&report, &e, UnixTime::parse(t).unwrap())
            .unwrap_err();
        assert_eq!(err.step(), 4, "{t}: {err}");
    }
    // The cache does not hide a later expiry.
    v.verify(&report, &e, UnixTime::now()).unwrap();
    assert!(
        v.verify(&report, &e, UnixTime::parse("2046-01-01").unwrap())
            .is_err()
    );
}

#[test]
fn unsigned_and_masked_reports() {
    let s = sim(Product::Milan);
    let p = ReportParams::new(Product::Milan);
    let mut body = s.report_body(&p).unwrap();
    body.key_info = veil_evidence::snp::KeyInfo::decode(0b11100).unwrap();
    let report = s.sign(body.clone()).unwrap();
    let err = trusting(s)
        .verify(&report, &endorsements(s, &p.tcb), UnixTime::now())
        .unwrap_err();
    assert_eq!(err, SnpError::UnsignedReport);
    body.key_info = veil_evidence::snp::KeyInfo::decode(0b10).unwrap();
    let report = s.sign(body).unwrap();
    let err = trusting(s)
        .verify(&report, &endorsements(s, &p.tcb), UnixTime::now())
        .unwrap_err();
    assert_eq!(err, SnpError::ChipIdMasked);
}

#[test]
fn crl_checks() {
    let s = sim(Product::Milan);
    let p = ReportParams::new(Product::Milan);
    let report = s.report(&p).unwrap();
    let v = trusting(s);
    let now = UnixTime::now().0;
    let with_crl = |crl: Vec<u8>| {
        let mut e = endorsements(s, &p.tcb);
        e.crls.push(crl);
        e
    };
    // A current CRL that revokes nothing else: accepted, and reported.
    let ok = v
        .verify(
            &report,
            &with_crl(s.crl_der(&[7], now - 60, now + 3600).unwrap()),
            UnixTime(now),
        )
        .unwrap();
    assert!(ok.claims().endorsement.crl_checked);
    // The ASK revoked.
    let err = v
        .verify(
            &report,
            &with_crl(
                s.crl_der(&[SimSnp::ASK_SERIAL], now - 60, now + 3600)
                    .unwrap(),
            ),
            UnixTime(now),
        )
        .unwrap_err();
    assert!(matches!(err, SnpError::Revoked { .. }), "{err}");
    assert_eq!(err.step(), 6);
    // A stale CRL.
    let err = v
        .verify(
            &report,
            &with_crl(s.crl_der(&[], now - 7200, now - 3600).unwrap()),
            UnixTime(now),
        )
        .unwrap_err();
    assert!(matches!(err, SnpError::BadCrl { .. }), "{err}");
    // A CRL whose signature was tampered with.
    let mut crl = s.crl_der(&[], now - 60, now + 3600).unwrap();
    let n = crl.len();
    crl[n - 10] ^= 1;
    let err = v
        .verify(&report, &with_crl(crl), UnixTime(now))
        .unwrap_err();
    assert!(matches!(err, SnpError::BadCrl { .. }), "{err}");
    // A CRL from another PKI (another simulated root) is not applicable.
    let other = SimSnp::generate(Product::Genoa).unwrap();
    v.verify(
        &report,
        &with_crl(other.crl_der(&[2], now - 60, now + 3600).unwrap()),
        UnixTime(now),
    )
    .unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// parse ∘ encode is the identity for the simulator's reports.
    #[test]
    fn parse_encode_identity(
        measurement in prop::array::uniform32(any::<u8>()),
        rd in prop::collection::vec(any::<u8>(), 64),
        version in prop::sample::select(vec![2u32, 3, 5]),
        debug in any::<bool>(),
        vmpl in 0u32..4,
    ) {
        let s = sim(Product::Milan);
        let mut p = ReportParams::new(Product::Milan);
        p.version = version;
        p.measurement[..32].copy_from_slice(&measurement);
        p.report_data.copy_from_slice(&rd);
        p.vmpl = vmpl;
        if debug { p.policy |= 1 << 19; }
        let body = s.report_body(&p).unwrap();
        let bytes = body.encode().unwrap();
        let parsed = AttestationReport::parse(&bytes).unwrap();
        prop_assert_eq!(parsed.body(), &body);
        prop_assert_eq!(parsed.body().encode().unwrap(), bytes);
    }

    /// The parser never panics, whatever the bytes.
    #[test]
    fn parse_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..1300)) {
        let _ = AttestationReport::parse(&bytes);
        let _ = veil_evidence::snp::parse_evidence(&bytes);
    }

    /// Certificate, CRL, PEM and bundle parsing never panic.
    #[test]
    fn endorsement_parsers_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = veil_verifier::x509::Cert::parse(&bytes);
        let _ = veil_verifier::x509::Crl::parse(&bytes);
        let _ = veil_endorsements::certs::decode_blobs("prop", &bytes);
        let _ = veil_endorsements::bundle::Bundle::parse(&bytes);
    }

    /// A simulated VCEK with any one byte changed never verifies a report.
    #[test]
    fn mutated_vcek_never_verifies(pos in 0usize..2000, mask in 1u8..=255) {
        let s = sim(Product::Milan);
        let p = ReportParams::new(Product::Milan);
        let report = s.report(&p).unwrap();
        let mut vcek = s.vcek_der(&p.tcb).unwrap();
        let i = pos % vcek.len();
        vcek[i] ^= mask;
        let e = SnpEndorsements { certs: vec![vcek, s.ask_der().to_vec()], crls: vec![] };
        prop_assert!(trusting(s).verify(&report, &e, UnixTime::now()).is_err());
    }

    /// Parsing 0x4A0 random bytes either fails or yields a report whose
    /// encoding is the input.
    #[test]
    fn parse_of_exact_length(bytes in prop::collection::vec(any::<u8>(), 0x4A0)) {
        if let Ok(r) = AttestationReport::parse(&bytes) {
            prop_assert_eq!(r.body().encode().unwrap().to_vec(), bytes);
        }
    }
}
