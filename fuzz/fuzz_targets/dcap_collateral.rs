//! DCAP collateral: the PCCS JSON envelope and the TCB info / QE identity documents.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(c) = veil_endorsements::dcap::Collateral::parse(data) {
        let _ = veil_verifier::dcap::decode_collateral_document(&c.tcb_info);
        let _ = veil_verifier::dcap::decode_collateral_document(&c.qe_identity);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = veil_verifier::dcap::decode_collateral_document(text);
    }
});
