//! The DCAP quote parser (raw, hex and CoCo JSON forms).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = veil_evidence::dcap::parse_evidence(data);
});
