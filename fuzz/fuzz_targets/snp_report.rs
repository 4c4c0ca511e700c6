//! The SNP report parser: raw bytes and CoCo JSON.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = veil_evidence::snp::parse_evidence(data);
});
