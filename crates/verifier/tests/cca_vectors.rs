//! The Arm CCA token of the corpus (synthetic: signed by Veraison's
//! published test CPAK, no real silicon token is public): platform and realm
//! signatures, the RAK binding and the challenge verify, with the CPAK as a
//! JWK and as a trust-anchor store; every flipped byte, another CPAK, an
//! anchor for another implementation and a wrong challenge are refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use veil_evidence::cca::{CcaToken, parse_json};
use veil_testkit as common;
use veil_verifier::cca::{CcaError, Cpak, cpaks_from_json, verify_token};
use veil_verifier::crypto::AWS_LC;

const TOKEN: &str = "cca/trustee/cca-example-token.cbor";

fn verify(bytes: &[u8], cpaks: &[Cpak]) -> Result<veil_verifier::cca::VerifiedCca, CcaError> {
    verify_token(&CcaToken::parse(bytes)?, cpaks, &AWS_LC)
}

#[test]
fn expected_row_verifies_with_its_claims() {
    let Some(dir) = common::vectors() else { return };
    let text = std::fs::read_to_string(dir.join("EXPECTED.jsonl")).unwrap();
    let row = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|r| r["tee"] == "cca(synthetic)")
        .unwrap();
    assert!(row["expect"].as_str().unwrap().starts_with("VALID"));
    let token = common::read(&dir, row["evidence"].as_str().unwrap());
    let cpaks = cpaks_from_json(&common::read(&dir, row["certs"][0].as_str().unwrap())).unwrap();
    let ok = verify(&token, &cpaks).unwrap();
    let c = ok.claims();
    assert_eq!(c["tee"], "cca");
    assert!(c["rim"].as_str().unwrap().starts_with("ae87fbf7"));
    assert!(
        c["realm"]["cca-realm-challenge"]
            .as_str()
            .unwrap()
            .starts_with("57e979ae")
    );
    assert_eq!(c["platform"]["cca-platform-lifecycle"], 12291);
    assert_eq!(
        c["platform"]["cca-platform-sw-components"]
            .as_array()
            .unwrap()
            .len(),
        13
    );
    assert_eq!(c["platform_secured"], true);
    // The challenge binds exactly.
    let challenge = ok.token.realm_claims.challenge.clone();
    ok.check_challenge(&challenge).unwrap();
    let mut wrong = challenge.clone();
    wrong[63] ^= 1;
    assert!(matches!(
        ok.check_challenge(&wrong),
        Err(CcaError::ChallengeMismatch { .. })
    ));
    // The same token through the CoCo JSON shape (a number array).
    let json = serde_json::json!({"token": token}).to_string();
    verify_token(&parse_json(json.as_bytes()).unwrap(), &cpaks, &AWS_LC).unwrap();
    // The trust-anchor store pins the implementation and instance IDs.
    let store = cpaks_from_json(&common::read(&dir, "cca/trustee/tastore.json")).unwrap();
    verify(&token, &store).unwrap();
    let mut other_impl = store.clone();
    other_impl[0].implementation_id = Some(vec![0; 32]);
    assert!(matches!(
        verify(&token, &other_impl),
        Err(CcaError::PlatformSignature)
    ));
}

#[test]
fn another_cpak_is_refused() {
    let Some(dir) = common::vectors() else { return };
    let token = common::read(&dir, TOKEN);
    // The realm's own RAK is a valid P-384 key, but not the platform's.
    let rak = CcaToken::parse(&token).unwrap().realm_claims.rak;
    let cpaks = vec![Cpak {
        public_key: rak,
        implementation_id: None,
        instance_id: None,
    }];
    assert!(matches!(
        verify(&token, &cpaks),
        Err(CcaError::PlatformSignature)
    ));
    assert!(matches!(verify(&token, &[]), Err(CcaError::NoTrustAnchor)));
}

#[test]
fn every_flipped_byte_is_refused() {
    let Some(dir) = common::vectors() else { return };
    let token = common::read(&dir, TOKEN);
    let cpaks = cpaks_from_json(&common::read(&dir, "cca/trustee/cpak-pub.json")).unwrap();
    verify(&token, &cpaks).unwrap();
    for i in 0..token.len() {
        let mut t = token.clone();
        t[i] ^= 0x01;
        assert!(
            verify(&t, &cpaks).is_err(),
            "flipping byte {i} was accepted"
        );
    }
}
