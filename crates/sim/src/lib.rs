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
pub mod gpu;
mod pki;
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

/// Writes a private key file (mode 0600 on Unix).
pub(crate) fn write_private(path: &std::path::Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    opts.mode(0o600);
    opts.open(path)?.write_all(data)
}

/// A certificate as PEM text.
pub fn pem(der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or(""));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}
