//! Arm CCA attestation tokens from outside: the tag-399 collection, both
//! COSE_Sign1 tokens and their claims, raw and in the CoCo JSON.
#![no_main]

use veil_evidence::cca::{CcaToken, parse_json};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = CcaToken::parse(data);
    let _ = parse_json(data);
});
