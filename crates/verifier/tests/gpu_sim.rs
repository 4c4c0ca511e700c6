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
