//! NVIDIA GPU evidence from outside: the SPDM GET_MEASUREMENTS request and
//! MEASUREMENTS response (with its OpaqueData decoded into claims) and the
//! CoCo `nvidia` JSON.
#![no_main]

use veil_evidence::nvidia::{GpuReport, parse_json};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(r) = GpuReport::parse(data) {
        let _ = r.config_claims();
    }
    if let Ok(ev) = parse_json(data) {
        for d in &ev.device_evidence_list {
            let _ = d.report_bytes();
            let _ = d.certificate_bytes();
        }
    }
});
