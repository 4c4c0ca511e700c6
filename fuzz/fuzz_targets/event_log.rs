//! The TCG2 crypto-agile event-log parser (TDX CCEL).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(log) = veil_evidence::eventlog::parse(data) {
        let _ = veil_verifier::dcap::replay_rtmrs(&log);
    }
});
