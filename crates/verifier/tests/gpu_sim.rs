//! The simulated GPU: its evidence verifies only when its root is trusted
//! explicitly (never under the pinned NVIDIA root), binds the nonce, and
//! survives a restart of the simulator (state kept on disk).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use veil_sim::gpu::{DRIVER_VERSION, SimGpu, VBIOS_VERSION, measurement};
use veil_verifier::UnixTime;
use veil_verifier::crypto::AWS_LC;
use veil_verifier::nvidia::{GpuError, default_roots, parse_chain, verify_report};
use veil_verifier::x509::Cert;

#[test]
fn simulated_gpu_verifies_only_under_its_own_root() {
    let dir = tempfile::tempdir().unwrap();
    let sim = SimGpu::load_or_create(dir.path()).unwrap();
    let nonce = [7u8; 32];
    let report = sim.report(&nonce).unwrap();
    let chain = parse_chain(sim.chain_pem().as_bytes()).unwrap();
    let sim_root = vec![Cert::parse(sim.root_der()).unwrap()];
    let ok = verify_report(
        "HOPPER",
        "GPU-1",
        &report,
        &chain,
        &sim_root,
        UnixTime::now(),
        &AWS_LC,
    )
    .unwrap();
    ok.check_nonce(&nonce).unwrap();
    let c = ok.claims().unwrap();
    assert_eq!(c["driver_version"], DRIVER_VERSION);
    assert_eq!(c["vbios_version"], VBIOS_VERSION);
    assert_eq!(c["measurements"]["1"], hex::encode(measurement(1)));
    // Under NVIDIA's real root it is refused.
    let e = verify_report(
        "HOPPER",
        "GPU-1",
        &report,
        &chain,
        &default_roots().unwrap(),
        UnixTime::now(),
        &AWS_LC,
    )
    .unwrap_err();
    assert_eq!(e.code(), "chain", "{e}");
    // The same device after a restart of the simulator.
    let again = SimGpu::load_or_create(dir.path()).unwrap();
    let chain2 = parse_chain(again.chain_pem().as_bytes()).unwrap();
    verify_report(
        "HOPPER",
        "GPU-1",
        &again.report(&nonce).unwrap(),
        &chain2,
        &sim_root,
        UnixTime::now(),
        &AWS_LC,
    )
    .unwrap();
    // Another simulated GPU is not trusted by this one's root.
    let other = SimGpu::generate().unwrap();
    let chain3 = parse_chain(other.chain_pem().as_bytes()).unwrap();
    assert!(matches!(
        verify_report(
            "HOPPER",
            "GPU-2",
            &other.report(&nonce).unwrap(),
            &chain3,
            &sim_root,
            UnixTime::now(),
            &AWS_LC
        ),
        Err(GpuError::Cert(_))
    ));
    // Blackwell and NVSwitch evidence is not verified locally.
    assert!(matches!(
        verify_report(
            "LS10",
            "SW-1",
            &report,
            &chain,
            &sim_root,
            UnixTime::now(),
            &AWS_LC
        ),
        Err(GpuError::Architecture(_))
    ));
}

/// OCSP for the simulated device chain: good, revoked and unknown answers;
/// a wrong nonce, a stale answer, an answer about another certificate and
/// a forged signature are refused.
#[test]
fn ocsp_answers_are_checked() {
    use veil_endorsements::ocsp::encode_request;
    use veil_sim::gpu::SimOcspStatus;
    use veil_verifier::ocsp::{OcspError, Revocation, cert_id, check_response};
    let sim = SimGpu::generate().unwrap();
    let chain = parse_chain(sim.chain_pem().as_bytes()).unwrap();
    let (device, ica) = (&chain[0], &chain[1]);
    let now = UnixTime::now();
    let nonce = [9u8; 32];
    let request = encode_request(&[cert_id(device, ica, &AWS_LC).unwrap()], Some(&nonce)).unwrap();
    let answer = |status| sim.ocsp_response(&request, status, now.0).unwrap();
    let check = |resp: &[u8], n: &[u8], at: UnixTime| {
        check_response(resp, device, ica, Some(n), at, &AWS_LC)
    };
    assert_eq!(
        check(&answer(SimOcspStatus::Good), &nonce, now),
        Ok(Revocation::Good)
    );
    assert!(matches!(
        check(&answer(SimOcspStatus::Revoked), &nonce, now),
        Ok(Revocation::Revoked { .. })
    ));
    assert_eq!(
        check(&answer(SimOcspStatus::Unknown), &nonce, now),
        Ok(Revocation::Unknown)
    );
    let good = answer(SimOcspStatus::Good);
    assert_eq!(check(&good, &[8u8; 32], now), Err(OcspError::NonceMismatch));
    assert!(matches!(
        check(&good, &nonce, UnixTime(now.0 + 7200)),
        Err(OcspError::NotCurrent(_))
    ));
    // The same answer is not about the CA certificate.
    assert_eq!(
        check_response(&good, ica, &chain[2], Some(&nonce), now, &AWS_LC),
        Err(OcspError::BadSignature)
    );
    // The CA certificate, answered by the root.
    let ca_req = encode_request(&[cert_id(ica, &chain[2], &AWS_LC).unwrap()], None).unwrap();
    let ca_answer = sim
        .ocsp_response(&ca_req, SimOcspStatus::Revoked, now.0)
        .unwrap();
    assert_eq!(
        check_response(&ca_answer, ica, &chain[2], None, now, &AWS_LC),
        Ok(Revocation::Good)
    );
    // An answer about the CA certificate presented for the device.
    assert_eq!(
        check_response(&ca_answer, device, ica, None, now, &AWS_LC),
        Err(OcspError::BadSignature)
    );
    // Any flipped byte of a signed answer: never "good" for another reason.
    for i in 0..good.len() {
        let mut b = good.clone();
        b[i] ^= 1;
        if let Ok(r) = check(&b, &nonce, now) {
            // Only bytes outside the signed data and CertID may change
            // without effect (none exist in this encoding).
            panic!("flipping byte {i} still gave {r:?}");
        }
    }
}

/// Reference integrity manifests: the simulated GPU's own measurements
/// match; a changed value, a block the GPU does not report and two
/// manifests claiming one index do not.
#[test]
fn rims_are_compared() {
    use std::collections::BTreeMap;
    use veil_endorsements::rim::{Rim, encode};
    use veil_verifier::nvidia::compare_rims;
    let sim = SimGpu::generate().unwrap();
    let chain = parse_chain(sim.chain_pem().as_bytes()).unwrap();
    let roots = vec![Cert::parse(sim.root_der()).unwrap()];
    let v = verify_report(
        "HOPPER",
        "GPU-1",
        &sim.report(&[1; 32]).unwrap(),
        &chain,
        &roots,
        UnixTime::now(),
        &AWS_LC,
    )
    .unwrap();
    let all: BTreeMap<u8, Vec<u8>> = (1..=veil_sim::gpu::BLOCKS)
        .map(|i| (i, measurement(i).to_vec()))
        .collect();
    let rim = |m: &BTreeMap<u8, Vec<u8>>, version: &str| {
        Rim::parse("t", encode("GH100", version, m).as_bytes()).unwrap()
    };
    // Driver and VBIOS manifests splitting the blocks between them.
    let (driver, vbios): (BTreeMap<u8, Vec<u8>>, BTreeMap<u8, Vec<u8>>) =
        all.clone().into_iter().partition(|(i, _)| *i <= 4);
    let r = compare_rims(
        &v,
        &[rim(&driver, "550.90.07"), rim(&vbios, "96.00.9f.00.01")],
    );
    assert_eq!(r["status"], "match", "{r}");
    assert_eq!(r["compared"], 8);
    let mut changed = all.clone();
    changed.insert(3, vec![0; 48]);
    let r = compare_rims(&v, &[rim(&changed, "x")]);
    assert_eq!(r["status"], "mismatch");
    assert_eq!(r["mismatched"][0]["index"], 3);
    let mut more = all.clone();
    more.insert(20, vec![1; 48]);
    let r = compare_rims(&v, &[rim(&more, "x")]);
    assert_eq!(r["mismatched"][0]["problem"], "not reported by the GPU");
    let r = compare_rims(&v, &[rim(&all, "a"), rim(&driver, "b")]);
    assert_eq!(r["status"], "mismatch");
}
