//! Veil's evidence wire formats.
//!
//! Each TEE has a module of the same name in every Veil crate (`evidence::snp`,
//! `verifier::snp`, `attester::snp`). This crate only *parses* (and, for the
//! simulator, *encodes*): it never checks a signature and never does I/O, so a
//! parsed value is untrusted data until the verifier turns it into a proof type.
//!
//! Parsers are strict: exact lengths, reserved fields must be zero, unknown
//! versions and algorithms are refused, and they never panic on any input.
#![forbid(unsafe_code)]
#![deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

pub mod azure;
pub mod cbor;
pub mod cca;
pub mod cose;
pub mod dcap;
pub mod error;
pub mod eventlog;
pub mod gce;
mod json;
pub mod nitro;
pub mod nvidia;
pub mod reader;
pub mod snp;
pub mod tpm;

pub use error::ParseError;
