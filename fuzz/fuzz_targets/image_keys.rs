//! Encrypted-image key material from outside: the ocicrypt public and
//! private options, the CoCo annotation packet (parsed and unwrapped under
//! a fixed KEK), key-provider requests, and layer decryption with options
//! and ciphertext both from the input.
#![no_main]
use std::sync::OnceLock;

use veil_image::jwe::PrivateJweKey;
use veil_image::keyprovider::Request;
use veil_image::layer::{PrivateOptions, PublicOptions, VecStage, decrypt_to};
use veil_image::packet::AnnotationPacket;

/// A fixed P-256 key (PKCS#8), so JWE recipients reach the ECDH path.
const EC_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgpG068+VsW1cLM2wF
Dbd/AyaKsL3oNnpTay3OhWR4Z+WhRANCAATRw4HeiKZlrFREMcfHDqJYjU6wWXdJ
vQ5pFdHlqHki5TTeto194EX4zOQ7du4kWL0NdL7bQ4yCdENXl38UUcOH
-----END PRIVATE KEY-----
";

static KEYS: OnceLock<Vec<PrivateJweKey>> = OnceLock::new();

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let keys = KEYS.get_or_init(|| PrivateJweKey::from_pem(EC_KEY.as_bytes()).into_iter().collect());
    let _ = veil_image::jwe::decrypt(data, keys);
    let text = String::from_utf8_lossy(data);
    let _ = PublicOptions::from_annotation(&text);
    let _ = Request::parse(data, "veil");
    if let Ok(p) = AnnotationPacket::from_json(data) {
        let _ = p.resource_path();
        let _ = p.unwrap(&[7u8; 32]);
    }
    // Split: public options JSON | private options JSON | ciphertext.
    let mut parts = data.splitn(3, |b| *b == 0);
    if let (Some(a), Some(b), Some(ct)) = (parts.next(), parts.next(), parts.next()) {
        if let (Ok(public), Ok(private)) = (
            serde_json::from_slice::<PublicOptions>(a),
            PrivateOptions::from_json(b),
        ) {
            let mut out = Vec::new();
            let _ = decrypt_to(ct, &public, &private, VecStage::new(&mut out));
        }
    }
});
