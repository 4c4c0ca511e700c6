//! GPG keyrings and simple-signing OpenPGP messages from outside (the
//! policy's keyring files and the lookaside store's signatures).
#![no_main]

use veil_image::simple_signing::{GpgKeyring, verify};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(keyring) = GpgKeyring::parse(data) {
        // The same bytes as a signed message (a keyring file never is one,
        // but the message parser runs over them).
        let _ = verify(
            data,
            &keyring,
            "sha256:0000000000000000000000000000000000000000000000000000000000000000",
        );
    }
});
