//! Arm CCA: the realm token's signature by the realm attestation key (RAK)
//! it carries, the RAK bound into the platform token (the platform
//! challenge is the hash of the RAK under the realm's RAK hash algorithm),
//! the platform token's signature by a configured CPAK (the platform
//! attestation key, a trust anchor with no certificate), and the realm
//! challenge against the expected value.

use veil_evidence::cca::CcaToken;
use veil_evidence::cose::ALG_ES384;

use crate::crypto::CryptoBackend;

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CcaError {
    #[error("malformed CCA token: {0}")]
    Parse(#[from] veil_evidence::ParseError),
    #[error("unsupported {0}")]
    Unsupported(String),
    #[error("the realm token's signature does not verify with its RAK")]
    RealmSignature,
    #[error("the platform token does not bind this realm's RAK")]
    RakBinding,
    #[error("the platform token is not signed by a trusted CPAK")]
    PlatformSignature,
    #[error("no CPAK trust anchor is configured")]
    NoTrustAnchor,
    #[error("challenge mismatch: the realm challenge is {actual}, expected {expected}")]
    ChallengeMismatch { expected: String, actual: String },
    #[error("trust anchor: {0}")]
    Anchor(String),
}

/// A CPAK trust anchor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cpak {
    /// Uncompressed P-384 point.
    pub public_key: Vec<u8>,
    /// When set, the platform's implementation ID must equal it.
    pub implementation_id: Option<Vec<u8>>,
    /// When set, the platform's instance ID must equal it.
    pub instance_id: Option<Vec<u8>>,
}

fn jwk_point(jwk: &serde_json::Value) -> Result<Vec<u8>, CcaError> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let field = |k: &str| {
        jwk.get(k)
            .and_then(|v| v.as_str())
            .ok_or_else(|| CcaError::Anchor(format!("JWK has no {k:?}")))
    };
    if field("kty")? != "EC" || field("crv")? != "P-384" {
        return Err(CcaError::Anchor("a CPAK must be an EC P-384 JWK".into()));
    }
    let coord = |k: &str| -> Result<Vec<u8>, CcaError> {
        let c = b64
            .decode(field(k)?)
            .map_err(|e| CcaError::Anchor(format!("JWK {k}: {e}")))?;
        if c.len() != 48 {
            return Err(CcaError::Anchor(format!(
                "JWK {k} is {} bytes, not 48",
                c.len()
            )));
        }
        Ok(c)
    };
    let mut point = vec![0x04];
    point.extend(coord("x")?);
    point.extend(coord("y")?);
    Ok(point)
}

/// Reads CPAKs from a file: one EC P-384 JWK, or a trust-anchor store (a
/// JSON array of `{"pkey": JWK, "implementation-id": hex, "instance-id":
/// hex}`, the layout Veraison's ccatoken uses).
pub fn cpaks_from_json(bytes: &[u8]) -> Result<Vec<Cpak>, CcaError> {
    let v: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| CcaError::Anchor(e.to_string()))?;
    let hex_field = |e: &serde_json::Value, k: &str| -> Result<Option<Vec<u8>>, CcaError> {
        e.get(k)
            .map(|h| {
                h.as_str()
                    .and_then(|s| hex::decode(s).ok())
                    .ok_or_else(|| CcaError::Anchor(format!("{k} is not hex")))
            })
            .transpose()
    };
    match &v {
        serde_json::Value::Array(entries) => entries
            .iter()
            .map(|e| {
                Ok(Cpak {
                    public_key: jwk_point(
                        e.get("pkey")
                            .ok_or_else(|| CcaError::Anchor("entry without pkey".into()))?,
                    )?,
                    implementation_id: hex_field(e, "implementation-id")?,
                    instance_id: hex_field(e, "instance-id")?,
                })
            })
            .collect(),
        serde_json::Value::Object(_) => Ok(vec![Cpak {
            public_key: jwk_point(&v)?,
            implementation_id: None,
            instance_id: None,
        }]),
        _ => Err(CcaError::Anchor(
            "expected a JWK or an array of anchors".into(),
        )),
    }
}

/// A token whose signatures and binding verified.
#[derive(Debug, Clone)]
pub struct VerifiedCca {
    pub token: CcaToken,
}

fn hash(backend: &dyn CryptoBackend, algo: &str, data: &[u8]) -> Result<Vec<u8>, CcaError> {
    Ok(match algo {
        "sha-256" => backend.sha256(data).to_vec(),
        "sha-384" => backend.sha384(data).to_vec(),
        "sha-512" => backend.sha512(data).to_vec(),
        other => return Err(CcaError::Unsupported(format!("hash algorithm {other}"))),
    })
}

/// An ES384 signature (raw `r ‖ s`) over a COSE `Sig_structure` already
/// built; the algorithm was checked by the caller.
fn verify_es384(backend: &dyn CryptoBackend, key: &[u8], tbs: &[u8], signature: &[u8]) -> bool {
    signature.len() == 96
        && backend
            .verify_p384_sha384(key, tbs, signature, true)
            .is_ok()
}

/// Verifies a parsed token against `cpaks`.
pub fn verify_token(
    token: &CcaToken,
    cpaks: &[Cpak],
    backend: &dyn CryptoBackend,
) -> Result<VerifiedCca, CcaError> {
    if cpaks.is_empty() {
        return Err(CcaError::NoTrustAnchor);
    }
    for (which, alg) in [("realm", token.realm.alg), ("platform", token.platform.alg)] {
        if alg != ALG_ES384 {
            return Err(CcaError::Unsupported(format!(
                "{which} token algorithm {alg} (only ES384)"
            )));
        }
    }
    let realm = &token.realm_claims;
    if !verify_es384(
        backend,
        &realm.rak,
        &token.realm.to_be_signed(),
        &token.realm.signature,
    ) {
        return Err(CcaError::RealmSignature);
    }
    let rak_hash = hash(backend, &realm.rak_hash_algo, &realm.rak)?;
    if rak_hash != token.platform_claims.challenge {
        return Err(CcaError::RakBinding);
    }
    let p = &token.platform_claims;
    let platform_tbs = token.platform.to_be_signed();
    let trusted = cpaks.iter().any(|c| {
        c.implementation_id
            .as_ref()
            .is_none_or(|i| *i == p.implementation_id)
            && c.instance_id.as_ref().is_none_or(|i| *i == p.instance_id)
            && verify_es384(
                backend,
                &c.public_key,
                &platform_tbs,
                &token.platform.signature,
            )
    });
    if !trusted {
        return Err(CcaError::PlatformSignature);
    }
    Ok(VerifiedCca {
        token: token.clone(),
    })
}

impl VerifiedCca {
    /// Requires the realm challenge to be exactly `expected` (64 bytes).
    pub fn check_challenge(&self, expected: &[u8]) -> Result<(), CcaError> {
        let actual = &self.token.realm_claims.challenge;
        if actual.as_slice() != expected {
            return Err(CcaError::ChallengeMismatch {
                expected: hex::encode(expected),
                actual: hex::encode(actual),
            });
        }
        Ok(())
    }

    /// Normalised claims (the claim names of the CCA specifications).
    pub fn claims(&self) -> serde_json::Value {
        let p = &self.token.platform_claims;
        let r = &self.token.realm_claims;
        let sw: Vec<serde_json::Value> = p
            .sw_components
            .iter()
            .map(|c| {
                serde_json::json!({
                    "measurement-type": c.measurement_type,
                    "measurement-value": hex::encode(&c.measurement_value),
                    "version": c.version,
                    "signer-id": hex::encode(&c.signer_id),
                    "hash-algo-id": c.hash_algo,
                })
            })
            .collect();
        // Lifecycle states 0x3000–0x30ff are "secured"; the others
        // (including debug and decommissioned) are not.
        let secured = (0x3000..=0x30ff).contains(&p.lifecycle);
        serde_json::json!({
            "tee": "cca",
            "platform": {
                "cca-platform-profile": p.profile,
                "cca-platform-challenge": hex::encode(&p.challenge),
                "cca-platform-implementation-id": hex::encode(&p.implementation_id),
                "cca-platform-instance-id": hex::encode(&p.instance_id),
                "cca-platform-config": hex::encode(&p.config),
                "cca-platform-lifecycle": p.lifecycle,
                "cca-platform-sw-components": sw,
                "cca-platform-service-indicator": p.verification_service,
                "cca-platform-hash-algo-id": p.hash_algo,
            },
            "realm": {
                "cca-realm-profile": r.profile,
                "cca-realm-challenge": hex::encode(&r.challenge),
                "cca-realm-personalization-value": hex::encode(&r.personalization_value),
                "cca-realm-initial-measurement": hex::encode(&r.rim),
                "cca-realm-extensible-measurements": r.rems.iter().map(hex::encode).collect::<Vec<_>>(),
                "cca-realm-hash-algo-id": r.hash_algo,
                "cca-realm-public-key": hex::encode(&r.rak),
                "cca-realm-public-key-hash-algo-id": r.rak_hash_algo,
            },
            "rim": hex::encode(&r.rim),
            "personalization_value": hex::encode(&r.personalization_value),
            "platform_secured": secured,
        })
    }
}
