//! The simulated TEE.
//!
//! Software that emits evidence in the real hardware formats, signed by a test
//! PKI that mirrors the vendor's, so that the whole stack runs and is tested
//! on any machine. Evidence from here proves nothing: the verifier refuses it
//! unless the caller trusts the simulated root through an API or flag whose
//! name starts with `dangerous`.
//!
//! Every certificate of the simulated PKI carries the organisation name
//! [`SIMULATED_ORG`], so that a verifier can say precisely why it refused it.
#![forbid(unsafe_code)]

mod derw;
pub mod snp;
pub mod tdx;

/// The organisation name of every simulated certificate.
pub const SIMULATED_ORG: &str = "Veil Simulated TEE (NOT FOR PRODUCTION)";

/// Errors of the simulator.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("crypto failure in the simulator: {0}")]
    Crypto(&'static str),
    #[error("simulator state {path}: {reason}")]
    State { path: String, reason: String },
    #[error("cannot encode the report: {0}")]
    Encode(#[from] veil_evidence::ParseError),
}
