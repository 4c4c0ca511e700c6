//! The Confidential Containers KBS protocol, version 0.4.0, as both sides
//! need it: the JSON messages with their exact field names ([`types`]), the
//! binding of nonce and TEE key into the hardware report data ([`binding`]),
//! and the JWE in which resources travel ([`jwe`]).
//!
//! Reference: Trustee `kbs/` (server) and guest-components
//! `attestation-agent/kbs_protocol` (client); `docs/architecture.md` says
//! where each part is used.
#![forbid(unsafe_code)]

pub mod binding;
#[cfg(feature = "client")]
pub mod client;
pub mod jwe;
pub mod types;

pub use types::PROTOCOL_VERSION;
