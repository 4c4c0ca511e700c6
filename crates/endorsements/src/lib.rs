//! Endorsements: what a verifier needs besides the evidence.
//!
//! * [`roots`]: vendor trust anchors compiled into the binary and pinned by
//!   SHA-256 fingerprint (AMD ARKs for Milan, Genoa, Turin).
//! * [`snp::SnpEndorsements`]: certificates and CRLs for one SNP verification,
//!   gathered from the evidence, files, a cache or a bundle.
//! * [`bundle`]: offline bundles (`veil endorsements fetch` writes them,
//!   `--offline` reads only them and files).
//! * [`kds`] (feature `fetch`): the AMD Key Distribution Service client with an
//!   on-disk cache and rate-limit handling. This is the only network I/O on the
//!   verifier side; `veil_verifier` never calls it.
#![forbid(unsafe_code)]

pub mod bundle;
pub mod certs;
pub mod dcap;
#[cfg(feature = "fetch")]
pub mod kds;
pub mod ocsp;
#[cfg(feature = "fetch")]
pub mod pcs;
pub mod rim;
pub mod roots;
pub mod snp;

use thiserror::Error;

/// Errors loading or fetching endorsements.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum EndorsementError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: not a DER or PEM certificate/CRL: {reason}")]
    Decode { what: String, reason: String },
    #[error("malformed bundle: {0}")]
    Bundle(String),
    #[error("AMD KDS request {url} failed: {reason}")]
    Kds { url: String, reason: String },
    #[error("AMD KDS rate limit: gave up on {url} after {attempts} attempts")]
    RateLimited { url: String, attempts: u32 },
    #[error("offline mode: {0} is not in any bundle or file")]
    NotAvailableOffline(String),
}
