//! CBOR and COSE_Sign1 from outside, and the AWS Nitro attestation document
//! inside (raw and in its JSON wrapping).
#![no_main]

use veil_evidence::cbor;
use veil_evidence::cose::CoseSign1;
use veil_evidence::nitro::{AttestationDoc, parse_json};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = cbor::decode(data);
    if let Ok(msg) = CoseSign1::parse(data) {
        let _ = msg.to_be_signed();
    }
    if let Ok(doc) = AttestationDoc::parse(data) {
        let _ = doc.is_debug();
    }
    let _ = parse_json(data);
});
