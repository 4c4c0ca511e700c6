//! KBS protocol messages, TEE keys (JWK) and resource JWEs.
#![no_main]
use std::sync::OnceLock;

use veil_protocol::jwe::{KeyAlgorithm, TeeKeyPair, TeePublicKey};
use veil_protocol::types::{Attestation, Request, Response};

static KEY: OnceLock<Option<TeeKeyPair>> = OnceLock::new();

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<Request>(data);
    let _ = serde_json::from_slice::<Attestation>(data);
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = TeePublicKey::from_jwk(&v);
        if let Ok(r) = serde_json::from_value::<Response>(v) {
            if let Some(k) = KEY.get_or_init(|| TeeKeyPair::generate(KeyAlgorithm::EcdhEsP256).ok()) {
                let _ = k.decrypt(&r);
            }
        }
    }
});
