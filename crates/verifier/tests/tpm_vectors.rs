//! TPM 2.0 evidence captured on real vTPMs (GCE Shielded VMs, go-tpm-tools)
//! and from swtpm (Trustee): every `tpm(gce)` row of EXPECTED.jsonl gives
//! its verdict and PCR0, with the AK certified by Google's EK/AK chain and
//! the event log replayed; derived negatives are refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use veil_evidence::gce::GceAttestation;
use veil_evidence::tpm::{TPM_ALG_SHA1, TPM_ALG_SHA256, TpmEvidence};
use veil_testkit as common;
use veil_verifier::UnixTime;
use veil_verifier::crypto::AWS_LC;
use veil_verifier::tpm::{AkPolicy, AkTrust, TpmError, verify_gce, verify_tpm_evidence};
use veil_verifier::x509::Cert;

fn nonce(s: &str) -> Vec<u8> {
    match s.strip_prefix("hex:") {
        Some(h) => hex::decode(h).unwrap(),
        None => s.as_bytes().to_vec(),
    }
}

/// Self-signed certificates are roots, the others intermediates.
fn policy(dir: &std::path::Path, files: &[&str]) -> AkPolicy {
    let mut p = AkPolicy::default();
    for f in files {
        let c = Cert::parse(&common::read(dir, f)).unwrap();
        if c.is_self_issued() {
            p.roots.push(c);
        } else {
            p.intermediates.push(c);
        }
    }
    p
}

const GCE_CERTS: [&str; 2] = [
    "tpm/go-tpm-tools/tpm_ek_intermediate_2.der",
    "tpm/go-tpm-tools/tpm_ek_root_1.der",
];

#[test]
fn expected_gce_rows() {
    let Some(dir) = common::vectors() else { return };
    let text = std::fs::read_to_string(dir.join("EXPECTED.jsonl")).unwrap();
    let mut checked = 0;
    for line in text.lines() {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        if row["tee"] != "tpm(gce)" {
            continue;
        }
        let att =
            GceAttestation::parse(&common::read(&dir, row["evidence"].as_str().unwrap())).unwrap();
        let n = nonce(row["nonce"].as_str().unwrap());
        let r = verify_gce(
            &att,
            &policy(&dir, &GCE_CERTS),
            Some(&n),
            UnixTime::now(),
            &AWS_LC,
        );
        match row["expect"].as_str().unwrap() {
            "VALID" => {
                let v = r.unwrap_or_else(|e| panic!("{line}: {e}"));
                assert!(matches!(v.ak_trust, AkTrust::Certificate(_)));
                if let Some(pcr0) = row["pcr0_sha256"].as_str() {
                    assert_eq!(hex::encode(v.pcr(TPM_ALG_SHA256, 0).unwrap()), pcr0);
                }
                // Three banks quoted, all PCRs.
                assert_eq!(v.pcrs.len(), 72);
                // The replayed event log's claims: UEFI variables measured
                // into PCR 7 (SecureBoot among them), separators for PCRs
                // 0-7, and the boot loader's texts.
                let log = v.event_log.as_ref().unwrap();
                let events = log["events"].as_array().unwrap();
                assert!(events.len() > 20, "{}", events.len());
                assert!(log["secure_boot"].is_boolean(), "{log}");
                for pcr in 0..8 {
                    assert!(
                        events
                            .iter()
                            .any(|e| e["pcr"] == pcr && e["type"] == "EV_SEPARATOR"),
                        "no separator for PCR {pcr}"
                    );
                }
                assert!(events.iter().any(|e| e["variable"]["name"] == "SecureBoot"));
                assert_eq!(
                    hex::encode(v.pcr(TPM_ALG_SHA1, 0).unwrap()),
                    "c032c3b51dbb6f96b047421512fd4b4dfde496f3"
                );
            }
            "REJECT" => {
                assert!(
                    matches!(r, Err(TpmError::NonceMismatch { .. })),
                    "{line}: {r:?}"
                );
            }
            other => panic!("unexpected verdict {other}"),
        }
        checked += 1;
    }
    assert_eq!(checked, 3, "all tpm(gce) rows were checked");
}

#[test]
fn gce_negatives() {
    let Some(dir) = common::vectors() else { return };
    let att = GceAttestation::parse(&common::read(
        &dir,
        "tpm/go-tpm-tools/gce-cos-85-nonce9009.pb",
    ))
    .unwrap();
    let p = policy(&dir, &GCE_CERTS);
    let n = [0x90u8, 0x09];
    let run =
        |a: &GceAttestation, p: &AkPolicy| verify_gce(a, p, Some(&n), UnixTime::now(), &AWS_LC);
    run(&att, &p).unwrap();
    // No roots: the AK is not trusted.
    assert!(matches!(
        run(&att, &AkPolicy::default()),
        Err(TpmError::AkNotTrusted(_))
    ));
    // Only the root, not the intermediate that issued the AK certificate.
    let root_only = policy(&dir, &["tpm/go-tpm-tools/tpm_ek_root_1.der"]);
    assert!(matches!(
        run(&att, &root_only),
        Err(TpmError::AkNotTrusted(_))
    ));
    // Another intermediate in its place.
    let wrong = policy(
        &dir,
        &[
            "tpm/go-tpm-tools/tpm_ek_intermediate_3.der",
            "tpm/go-tpm-tools/tpm_ek_root_1.der",
        ],
    );
    assert!(matches!(run(&att, &wrong), Err(TpmError::AkNotTrusted(_))));
    // A changed PCR value, quote byte, signature byte, event-log digest.
    let mut a = att.clone();
    a.quotes[1].pcrs[0].1[0] ^= 1;
    assert!(run(&a, &p).is_err());
    for i in [0, 10, 40, att.quotes[0].quote.len() - 1] {
        let mut a = att.clone();
        a.quotes[0].quote[i] ^= 1;
        assert!(run(&a, &p).is_err(), "quote byte {i}");
    }
    let mut a = att.clone();
    a.quotes[2].raw_sig[20] ^= 1;
    assert!(run(&a, &p).is_err());
    // A measured event's digest changed in the SHA-1 bank, then in the
    // SHA-256 bank: either way the log no longer replays to the quote.
    for bank in [TPM_ALG_SHA1, TPM_ALG_SHA256] {
        let mut a = att.clone();
        let log = veil_evidence::eventlog::parse(&a.event_log).unwrap();
        let event = log
            .events
            .iter()
            .find(|e| e.event_type != 3 && e.index == 0)
            .unwrap();
        let digest = &event
            .digests
            .iter()
            .find(|(alg, _)| *alg == bank)
            .unwrap()
            .1;
        let at = a
            .event_log
            .windows(digest.len())
            .position(|w| w == digest.as_slice())
            .unwrap();
        a.event_log[at] ^= 1;
        let r = run(&a, &p);
        assert!(matches!(r, Err(TpmError::Pcr(_))), "bank {bank:#x}: {r:?}");
    }
    // Another AK certificate (the intermediate's own) does not certify this AK.
    let mut a = att.clone();
    a.ak_cert = Some(common::read(
        &dir,
        "tpm/go-tpm-tools/tpm_ek_intermediate_2.der",
    ));
    assert!(matches!(run(&a, &p), Err(TpmError::AkNotTrusted(_))));
}

/// The swtpm quote: verifies only with its AK on the allow-list.
#[test]
fn swtpm_quote_needs_its_ak_allow_listed() {
    let Some(dir) = common::vectors() else { return };
    let ev = TpmEvidence::parse_json(&common::read(&dir, "tpm/trustee/tpm_evidence.json")).unwrap();
    let n = veil_evidence::tpm::Quote::parse(&ev.message)
        .unwrap()
        .extra_data;
    let untrusted = verify_tpm_evidence(
        &ev,
        &AkPolicy::default(),
        Some(&n),
        UnixTime::now(),
        &AWS_LC,
    );
    assert!(matches!(untrusted, Err(TpmError::AkNotTrusted(_))));
    let p = AkPolicy {
        trusted_keys: vec![ev.ak_public.clone()],
        ..AkPolicy::default()
    };
    let v = verify_tpm_evidence(&ev, &p, Some(&n), UnixTime::now(), &AWS_LC).unwrap();
    assert_eq!(v.ak_trust, AkTrust::AllowList);
    let mut other = n.clone();
    other[0] ^= 1;
    assert!(matches!(
        verify_tpm_evidence(&ev, &p, Some(&other), UnixTime::now(), &AWS_LC),
        Err(TpmError::NonceMismatch { .. })
    ));
}

/// Protobuf encoding helpers for the test (varint, length-delimited).
fn pb_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn pb_bytes(out: &mut Vec<u8>, field: u64, b: &[u8]) {
    pb_varint(out, field << 3 | 2);
    pb_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn pb_uint(out: &mut Vec<u8>, field: u64, v: u64) {
    pb_varint(out, field << 3);
    pb_varint(out, v);
}

/// A go-sev-guest `sevsnp.Report` message holding the fields of `raw`.
fn sevsnp_report(raw: &[u8], cpuid_eax: u32) -> Vec<u8> {
    let le = |o: usize, n: usize| {
        let mut b = [0u8; 8];
        b[..n].copy_from_slice(&raw[o..o + n]);
        u64::from_le_bytes(b)
    };
    let mut m = Vec::new();
    for (f, o, n) in [
        (1, 0x0, 4),
        (2, 0x4, 4),
        (3, 0x8, 8),
        (6, 0x30, 4),
        (7, 0x34, 4),
        (8, 0x38, 8),
        (9, 0x40, 8),
        (10, 0x48, 4),
        (18, 0x180, 8),
        (20, 0x1e0, 8),
    ] {
        pb_uint(&mut m, f, le(o, n));
    }
    for (f, o, n) in [
        (4, 0x10, 16),
        (5, 0x20, 16),
        (11, 0x50, 64),
        (12, 0x90, 48),
        (13, 0xc0, 32),
        (14, 0xe0, 48),
        (15, 0x110, 48),
        (16, 0x140, 32),
        (17, 0x160, 32),
        (19, 0x1a0, 64),
    ] {
        pb_bytes(&mut m, f, &raw[o..o + n]);
    }
    for (f, o) in [
        (21, 0x1e8),
        (22, 0x1e9),
        (23, 0x1ea),
        (24, 0x1ec),
        (25, 0x1ed),
        (26, 0x1ee),
    ] {
        pb_uint(&mut m, f, u64::from(raw[o]));
    }
    pb_uint(&mut m, 27, le(0x1f0, 8));
    pb_bytes(&mut m, 28, &raw[0x2a0..0x4a0]);
    pb_uint(&mut m, 29, u64::from(cpuid_eax));
    m
}

/// A confidential GCE VM: the real GCE vTPM attestation with a (simulated)
/// SEV-SNP report attached as go-tpm-tools does (field 8). The report is
/// rebuilt byte for byte from go-sev-guest's fields, verified under its
/// (simulated) chain, and must carry the TPM nonce zero-padded.
#[test]
fn gce_confidential_vm_snp_report() {
    use veil_evidence::snp::Product;
    use veil_sim::snp::{ReportParams, SimSnp};
    use veil_verifier::snp::{SnpVerifier, TrustAnchors};
    use veil_verifier::tpm::{VerifiedGceTee, verify_gce_tee};
    let Some(dir) = common::vectors() else { return };
    let pb = common::read(&dir, "tpm/go-tpm-tools/gce-cos-85-nonce9009.pb");
    let sim = SimSnp::generate(Product::Milan).unwrap();
    let mut p = ReportParams::new(Product::Milan);
    p.report_data[..2].copy_from_slice(&[0x90, 0x09]);
    let report = sim.report(&p).unwrap();
    let raw = report.as_bytes().to_vec();
    // Milan: family 0x19 (0xF + 0x0A), model 0x01, stepping 1.
    let eax = 0x00a0_0f11;
    let mut chain = Vec::new();
    pb_bytes(&mut chain, 1, &sim.vcek_der(&p.tcb).unwrap());
    pb_bytes(&mut chain, 2, sim.ask_der());
    let mut snp_att = Vec::new();
    pb_bytes(&mut snp_att, 1, &sevsnp_report(&raw, eax));
    pb_bytes(&mut snp_att, 2, &chain);
    let mut with_snp = pb.clone();
    pb_bytes(&mut with_snp, 8, &snp_att);
    let att = GceAttestation::parse(&with_snp).unwrap();
    let Some(veil_evidence::gce::GceTee::Snp(g)) = &att.tee else {
        panic!("no SNP report")
    };
    assert_eq!(
        g.report, raw,
        "the rebuilt report differs from the original"
    );
    // The TPM part is unchanged and still verifies.
    let pol = policy(&dir, &GCE_CERTS);
    verify_gce(&att, &pol, Some(&[0x90, 0x09]), UnixTime::now(), &AWS_LC).unwrap();
    let anchors = TrustAnchors::amd()
        .dangerous_trust_simulated_root(Product::Milan, sim.ark_der())
        .unwrap();
    let snp = SnpVerifier::new(anchors);
    let none = veil_endorsements::snp::SnpEndorsements::default();
    let verify_gce_snp =
        |att: &GceAttestation,
         snp: &SnpVerifier,
         none: &veil_endorsements::snp::SnpEndorsements,
         n: Option<&[u8]>,
         at: UnixTime| { verify_gce_tee(att, snp, none, None, n, at) };
    let v = verify_gce_snp(&att, &snp, &none, Some(&[0x90, 0x09]), UnixTime::now())
        .unwrap()
        .unwrap();
    let VerifiedGceTee::Snp(v) = v else {
        panic!("not SNP")
    };
    assert_eq!(
        v.claims().measurement.to_string(),
        hex::encode(p.measurement)
    );
    // Another nonce: refused.
    assert!(matches!(
        verify_gce_snp(&att, &snp, &none, Some(&[0x90, 0x08]), UnixTime::now()),
        Err(TpmError::NonceMismatch { .. })
    ));
    // AMD's roots only: the simulated chain is refused.
    let strict = SnpVerifier::new(TrustAnchors::amd());
    assert!(matches!(
        verify_gce_snp(&att, &strict, &none, Some(&[0x90, 0x09]), UnixTime::now()),
        Err(TpmError::Tee(_))
    ));
    // A changed measurement byte in the message: the signature fails.
    let mut tampered = raw.clone();
    tampered[0x90] ^= 1;
    let mut snp_att = Vec::new();
    pb_bytes(&mut snp_att, 1, &sevsnp_report(&tampered, eax));
    pb_bytes(&mut snp_att, 2, &chain);
    let mut bad = pb.clone();
    pb_bytes(&mut bad, 8, &snp_att);
    let att = GceAttestation::parse(&bad).unwrap();
    assert!(matches!(
        verify_gce_snp(&att, &snp, &none, Some(&[0x90, 0x09]), UnixTime::now()),
        Err(TpmError::Tee(_))
    ));
    // An unknown Report field is refused by the parser.
    let mut extra = sevsnp_report(&raw, eax);
    pb_uint(&mut extra, 99, 1);
    let mut snp_att = Vec::new();
    pb_bytes(&mut snp_att, 1, &extra);
    let mut unknown = pb.clone();
    pb_bytes(&mut unknown, 8, &snp_att);
    assert!(GceAttestation::parse(&unknown).is_err());
}

/// A go-tdx-guest `tdx.QuoteV4` message holding the fields of a v4 quote.
fn tdx_quote_v4(q: &[u8]) -> Vec<u8> {
    let le = |o: usize, n: usize| {
        let mut b = [0u8; 8];
        b[..n].copy_from_slice(&q[o..o + n]);
        u64::from_le_bytes(b)
    };
    let mut header = Vec::new();
    for (f, o, n) in [(1, 0, 2), (2, 2, 2), (3, 4, 4)] {
        pb_uint(&mut header, f, le(o, n));
    }
    for (f, o, n) in [(4, 8, 2), (5, 10, 2), (6, 12, 16), (7, 28, 20)] {
        pb_bytes(&mut header, f, &q[o..o + n]);
    }
    let mut body = Vec::new();
    let b = 48;
    for (f, o, n) in [
        (1, 0, 16),
        (2, 16, 48),
        (3, 64, 48),
        (4, 112, 8),
        (5, 120, 8),
        (6, 128, 8),
        (7, 136, 48),
        (8, 184, 48),
        (9, 232, 48),
        (10, 280, 48),
    ] {
        pb_bytes(&mut body, f, &q[b + o..b + o + n]);
    }
    for i in 0..4 {
        pb_bytes(&mut body, 11, &q[b + 328 + 48 * i..b + 376 + 48 * i]);
    }
    pb_bytes(&mut body, 12, &q[b + 520..b + 584]);
    let sig_len = le(632, 4) as usize;
    let s = 636;
    let cert_size = le(s + 130, 4) as usize;
    let qe = s + 134;
    let mut report = Vec::new();
    for (f, o, n) in [
        (1, 0, 16),
        (3, 20, 28),
        (4, 48, 16),
        (5, 64, 32),
        (6, 96, 32),
        (7, 128, 32),
        (8, 160, 96),
        (11, 260, 60),
        (12, 320, 64),
    ] {
        pb_bytes(&mut report, f, &q[qe + o..qe + o + n]);
    }
    for (f, o, n) in [(2, 16, 4), (9, 256, 2), (10, 258, 2)] {
        pb_uint(&mut report, f, le(qe + o, n));
    }
    let auth_len = le(qe + 448, 2) as usize;
    let mut auth = Vec::new();
    pb_uint(&mut auth, 1, auth_len as u64);
    pb_bytes(&mut auth, 2, &q[qe + 450..qe + 450 + auth_len]);
    let pck_at = qe + 450 + auth_len;
    let chain_len = le(pck_at + 2, 4) as usize;
    let mut pck = Vec::new();
    pb_uint(&mut pck, 1, le(pck_at, 2));
    pb_uint(&mut pck, 2, chain_len as u64);
    pb_bytes(&mut pck, 3, &q[pck_at + 6..pck_at + 6 + chain_len]);
    let mut qe_cert = Vec::new();
    pb_bytes(&mut qe_cert, 1, &report);
    pb_bytes(&mut qe_cert, 2, &q[qe + 384..qe + 448]);
    pb_bytes(&mut qe_cert, 3, &auth);
    pb_bytes(&mut qe_cert, 4, &pck);
    let mut cert = Vec::new();
    pb_uint(&mut cert, 1, le(s + 128, 2));
    pb_uint(&mut cert, 2, cert_size as u64);
    pb_bytes(&mut cert, 3, &qe_cert);
    let mut signed = Vec::new();
    pb_bytes(&mut signed, 1, &q[s..s + 64]);
    pb_bytes(&mut signed, 2, &q[s + 64..s + 128]);
    pb_bytes(&mut signed, 3, &cert);
    let mut m = Vec::new();
    pb_bytes(&mut m, 1, &header);
    pb_bytes(&mut m, 2, &body);
    pb_uint(&mut m, 3, sig_len as u64);
    pb_bytes(&mut m, 4, &signed);
    let end = s + sig_len;
    if end < q.len() {
        pb_bytes(&mut m, 5, &q[end..]);
    }
    m
}

/// A confidential GCE VM on TDX: the TD quote go-tpm-tools attaches (field
/// 9) is rebuilt byte for byte from go-tdx-guest's fields, verified by DCAP
/// with the (simulated) collateral, and must carry the TPM nonce.
#[test]
fn gce_confidential_vm_td_quote() {
    use veil_sim::tdx::{SimTdx, TdParams};
    use veil_verifier::dcap::DcapVerifier;
    use veil_verifier::snp::{SnpVerifier, TrustAnchors};
    use veil_verifier::tpm::{VerifiedGceTee, verify_gce_tee};
    let Some(dir) = common::vectors() else { return };
    let pb = common::read(&dir, "tpm/go-tpm-tools/gce-cos-85-nonce9009.pb");
    let sim = SimTdx::generate().unwrap();
    let mut p = TdParams::default();
    p.report_data[..2].copy_from_slice(&[0x90, 0x09]);
    p.mr_td = [0x5a; 48];
    let quote = sim.quote(&p).unwrap();
    let collateral = veil_endorsements::dcap::Collateral::parse(
        sim.collateral(UnixTime::now().0)
            .unwrap()
            .to_string()
            .as_bytes(),
    )
    .unwrap();
    let mut with_tdx = pb.clone();
    pb_bytes(&mut with_tdx, 9, &tdx_quote_v4(&quote));
    let att = GceAttestation::parse(&with_tdx).unwrap();
    let Some(veil_evidence::gce::GceTee::Tdx(rebuilt)) = &att.tee else {
        panic!("no TD quote")
    };
    assert_eq!(
        *rebuilt, quote,
        "the rebuilt quote differs from the original"
    );
    let dcap = DcapVerifier::dangerous_trust_simulated_root(sim.root_der()).unwrap();
    let snp = SnpVerifier::new(TrustAnchors::amd());
    let none = veil_endorsements::snp::SnpEndorsements::default();
    let v = verify_gce_tee(
        &att,
        &snp,
        &none,
        Some((&dcap, &collateral)),
        Some(&[0x90, 0x09]),
        UnixTime::now(),
    )
    .unwrap()
    .unwrap();
    let VerifiedGceTee::Tdx(_) = &v else {
        panic!("not TDX")
    };
    let (name, claims) = v.claims();
    assert_eq!(name, "tdx");
    assert_eq!(claims["measurement"], hex::encode([0x5a; 48]), "{claims}");
    assert!(matches!(
        verify_gce_tee(
            &att,
            &snp,
            &none,
            Some((&dcap, &collateral)),
            Some(&[0x90, 0x08]),
            UnixTime::now()
        ),
        Err(TpmError::NonceMismatch { .. })
    ));
    // Without collateral, or under Intel's real root: refused.
    assert!(matches!(
        verify_gce_tee(&att, &snp, &none, None, None, UnixTime::now()),
        Err(TpmError::Tee(_))
    ));
    let intel = DcapVerifier::intel().unwrap();
    assert!(matches!(
        verify_gce_tee(
            &att,
            &snp,
            &none,
            Some((&intel, &collateral)),
            None,
            UnixTime::now()
        ),
        Err(TpmError::Tee(_))
    ));
    // One changed MRTD byte in the message: the quote signature fails.
    let mut tampered = quote.clone();
    tampered[48 + 136] ^= 1;
    let mut bad = pb.clone();
    pb_bytes(&mut bad, 9, &tdx_quote_v4(&tampered));
    let att = GceAttestation::parse(&bad).unwrap();
    assert!(matches!(
        verify_gce_tee(
            &att,
            &snp,
            &none,
            Some((&dcap, &collateral)),
            None,
            UnixTime::now()
        ),
        Err(TpmError::Tee(_))
    ));
}
