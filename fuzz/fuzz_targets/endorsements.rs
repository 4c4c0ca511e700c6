//! Certificate, CRL and bundle parsing.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = veil_endorsements::certs::decode_blobs("fuzz", data);
    let _ = veil_endorsements::bundle::Bundle::parse(data);
    let _ = veil_verifier::x509::Cert::parse(data);
    let _ = veil_verifier::x509::Crl::parse(data);
});
