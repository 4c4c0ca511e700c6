//! OCSP responses from outside (a responder the verifier asks about GPU
//! certificates): the DER decoder down to the basic response and its nonce.
#![no_main]

use veil_endorsements::ocsp::{decode_response, response_nonce};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok((basic, _tbs)) = decode_response(data) {
        let _ = response_nonce(&basic.tbs_response_data);
    }
});
