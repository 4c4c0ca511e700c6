//! `veil agent`: the attester role inside the confidential VM or pod.
//!
//! It collects evidence through an [`veil_attester::Attester`], attests to a
//! KBS-protocol broker ([`kbs::TokenCache`]: one attestation per token
//! lifetime, re-attesting on expiry or 401), and serves the workload over a
//! loopback-only HTTP API compatible with Confidential Containers
//! ([`api`]): resources, the token, evidence, and sealed-secret unsealing
//! ([`sealed`]).
#![forbid(unsafe_code)]

pub mod api;
pub mod cli;
pub mod initdata;
pub mod kbs;
pub mod sealed;

pub use api::{Agent, serve};
