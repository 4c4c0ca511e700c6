//! NVIDIA reference integrity manifests (SWID XML) from outside.
#![no_main]

use veil_endorsements::rim::Rim;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = Rim::parse("fuzz", data);
});
