//! Veil's verifier: `verify(evidence, endorsements, time) → claims`.
//!
//! Verification here is a pure function: the time and every endorsement are
//! inputs, nothing is fetched, nothing is read from disk. Fetching lives in
//! `veil_endorsements`. A successful verification returns a proof type
//! ([`snp::VerifiedSnpReport`]) that only this crate can construct.
//!
//! Cryptography goes through the [`crypto::CryptoBackend`] trait; the
//! implementation is aws-lc-rs (chosen by measurement, see BENCHMARKS.md).
#![forbid(unsafe_code)]

pub mod azure;
pub mod cca;
pub mod crypto;
pub mod dcap;
pub mod nitro;
pub mod nvidia;
pub mod ocsp;
pub mod snp;
pub mod time;
pub mod tpm;
pub mod x509;

pub use time::UnixTime;
