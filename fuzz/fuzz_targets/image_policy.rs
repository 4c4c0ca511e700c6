//! Image trust inputs from outside: references, containers-policy.json,
//! cosign signature payloads and signature manifests, and registry
//! `WWW-Authenticate` challenges.
#![no_main]

use veil_image::policy::Policy;
use veil_image::reference::Reference;
use veil_image::registry::Challenge;
use veil_image::signature::{Payload, signature_layers};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(r) = Reference::parse(&text) {
        // What parses must print and parse back to the same reference.
        assert_eq!(Reference::parse(&r.to_string()).ok(), Some(r));
    }
    let _ = Challenge::parse(&text);
    let _ = Payload::parse(data);
    if let Ok(p) = Policy::parse(data) {
        if let Ok(r) = Reference::parse("registry.example/team/app:1") {
            let _ = p.requirements_for(&r);
        }
    }
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = signature_layers(&v);
    }
});
