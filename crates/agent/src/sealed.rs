//! Sealed secrets, in the Confidential Containers format:
//!
//! ```text
//! sealed.<b64url(JWS protected header)>.<b64url(payload JSON)>.<b64url(signature)>
//! ```
//! a JWS (ES256: P-256, raw `r ‖ s` over `"<header>.<payload>"`) whose
//! payload is `{"version":"0.1.0","type":"vault","name":"kbs:///repo/type/tag",
//! "provider":"kbs","provider_settings":{},"annotations":{}}`: the secret
//! itself stays in the broker and is released after attestation. The agent
//! verifies the signature with a key it trusts for the header's `kid` (a
//! local JWK, or a JWK held by the broker when the kid is a `kbs:///` URI);
//! unsigned, wrongly signed, or unknown-kid secrets are refused.

use std::collections::BTreeMap;

use aws_lc_rs::encoding::AsBigEndian;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair,
    UnparsedPublicKey,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Why a sealed secret was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealedError {
    #[error("not a sealed secret: {0}")]
    Malformed(String),
    #[error("sealed secret signed with unknown key id {0:?}")]
    UnknownKid(String),
    #[error("sealed secret signature does not verify")]
    BadSignature,
    #[error("unsupported sealed secret: {0}")]
    Unsupported(String),
}

/// The payload of a `vault` sealed secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VaultPayload {
    pub version: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub provider: String,
    #[serde(default)]
    pub provider_settings: Value,
    #[serde(default)]
    pub annotations: Value,
}

/// A P-256 public JWK as raw point bytes.
pub fn jwk_point(jwk: &Value) -> Result<Vec<u8>, String> {
    if jwk["kty"] != "EC" || jwk["crv"] != "P-256" {
        return Err("sealing keys are EC P-256 JWKs".into());
    }
    let coord = |n: &str| -> Result<Vec<u8>, String> {
        let v = B64URL
            .decode(jwk[n].as_str().ok_or(format!("JWK has no {n}"))?)
            .map_err(|_| format!("JWK {n} is not base64url"))?;
        if v.len() != 32 {
            return Err(format!("JWK {n} must be 32 bytes"));
        }
        Ok(v)
    };
    let mut p = vec![4u8];
    p.extend(coord("x")?);
    p.extend(coord("y")?);
    Ok(p)
}

/// The payload of an `envelope` sealed secret whose data key is held by the
/// broker (`provider: "kbs"`, a Veil extension: CoCo's envelope providers
/// are cloud KMSes). `key_id` names the 32-byte key as a broker resource;
/// `encrypted_data` is AES-256-GCM ciphertext ‖ tag (standard base64) under
/// that key with the 12-byte `iv`; `encrypted_key` is empty (the broker
/// releases the key itself, encrypted to the attested TEE).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopePayload {
    pub version: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub key_id: String,
    #[serde(default)]
    pub encrypted_key: String,
    pub encrypted_data: String,
    pub wrap_type: String,
    pub iv: String,
    pub provider: String,
    #[serde(default)]
    pub provider_settings: Value,
    #[serde(default)]
    pub annotations: Value,
}

/// What a verified sealed secret asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sealed {
    /// Fetch this broker resource.
    Vault(VaultPayload),
    /// Fetch the key `key_id` from the broker and decrypt the data.
    Envelope(EnvelopePayload),
}

/// Keys trusted to sign sealed secrets, by `kid`.
#[derive(Debug, Clone, Default)]
pub struct TrustedKeys(pub BTreeMap<String, Vec<u8>>);

/// A verified sealed secret: what to fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsealed {
    pub kid: String,
    pub payload: Sealed,
}

/// Splits and decodes a sealed secret without verifying it.
fn split(sealed: &str) -> Result<(&str, Value, &str, Vec<u8>), SealedError> {
    let rest = sealed
        .trim()
        .strip_prefix("sealed.")
        .ok_or_else(|| SealedError::Malformed("missing the sealed. prefix".into()))?;
    let mut parts = rest.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SealedError::Malformed(
            "expected sealed.<header>.<payload>.<signature>".into(),
        ));
    };
    let header: Value = B64URL
        .decode(h)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| SealedError::Malformed("header is not base64url JSON".into()))?;
    let sig = B64URL
        .decode(s)
        .map_err(|_| SealedError::Malformed("signature is not base64url".into()))?;
    Ok((h, header, p, sig))
}

/// The `kid` of a sealed secret (to fetch its key from the broker first).
pub fn kid(sealed: &str) -> Result<String, SealedError> {
    let (_, header, _, _) = split(sealed)?;
    header["kid"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| SealedError::Malformed("header has no kid".into()))
}

/// Verifies a sealed secret against trusted keys.
pub fn verify(sealed: &str, keys: &TrustedKeys) -> Result<Unsealed, SealedError> {
    let (h, header, p, sig) = split(sealed)?;
    if header["alg"] != "ES256" {
        return Err(SealedError::Unsupported(format!("alg {}", header["alg"])));
    }
    let kid = header["kid"]
        .as_str()
        .ok_or_else(|| SealedError::Malformed("header has no kid".into()))?
        .to_string();
    let point = keys
        .0
        .get(&kid)
        .ok_or_else(|| SealedError::UnknownKid(kid.clone()))?;
    let signed = format!("{h}.{p}");
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
        .verify(signed.as_bytes(), &sig)
        .map_err(|_| SealedError::BadSignature)?;
    let raw: Value = B64URL
        .decode(p)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| SealedError::Malformed("payload is not JSON".into()))?;
    if raw["version"] != "0.1.0" {
        return Err(SealedError::Unsupported(format!(
            "version {}",
            raw["version"]
        )));
    }
    if raw["provider"] != "kbs" {
        return Err(SealedError::Unsupported(format!(
            "provider {} (this agent unseals secrets held by the broker: provider kbs)",
            raw["provider"]
        )));
    }
    let payload = match raw["type"].as_str() {
        Some("vault") => Sealed::Vault(
            serde_json::from_value(raw)
                .map_err(|e| SealedError::Malformed(format!("vault payload: {e}")))?,
        ),
        Some("envelope") => {
            let env: EnvelopePayload = serde_json::from_value(raw)
                .map_err(|e| SealedError::Malformed(format!("envelope payload: {e}")))?;
            if env.wrap_type != "A256GCM" {
                return Err(SealedError::Unsupported(format!(
                    "wrap_type {:?} (A256GCM)",
                    env.wrap_type
                )));
            }
            Sealed::Envelope(env)
        }
        other => return Err(SealedError::Unsupported(format!("type {other:?}"))),
    };
    Ok(Unsealed { kid, payload })
}

/// `kbs:///repo/type/tag` → `repo/type/tag`.
pub fn resource_path(uri: &str) -> Result<String, SealedError> {
    let path = uri.strip_prefix("kbs:///").ok_or_else(|| {
        SealedError::Unsupported(format!("resource URI {uri:?} (kbs:///repo/type/tag)"))
    })?;
    if path.split('/').count() != 3 || path.split('/').any(str::is_empty) {
        return Err(SealedError::Malformed(format!("resource URI {uri:?}")));
    }
    Ok(path.to_string())
}

/// A new P-256 signing key as (private JWK, public JWK).
pub fn keygen(kid: &str) -> Result<(Value, Value), String> {
    let kp = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
        .map_err(|_| "keygen failed".to_string())?;
    let point = kp.public_key().as_ref().to_vec();
    let d = kp
        .private_key()
        .as_be_bytes()
        .map_err(|_| "key export failed".to_string())?;
    let x = B64URL.encode(point.get(1..33).unwrap_or(&[]));
    let y = B64URL.encode(point.get(33..65).unwrap_or(&[]));
    let public = json!({"kty":"EC","crv":"P-256","kid":kid,"x":x,"y":y});
    let mut private = public.clone();
    private["d"] = json!(B64URL.encode(d.as_ref()));
    Ok((private, public))
}

/// Seals a `vault` secret pointing at `resource_uri` with a private JWK.
pub fn seal_vault(resource_uri: &str, private_jwk: &Value) -> Result<String, String> {
    resource_path(resource_uri).map_err(|e| e.to_string())?;
    let payload = json!({"version": "0.1.0", "type": "vault", "name": resource_uri,
        "provider": "kbs", "provider_settings": {}, "annotations": {}});
    sign_payload(&payload, private_jwk)
}

fn sign_payload(payload: &Value, private_jwk: &Value) -> Result<String, String> {
    let point = jwk_point(private_jwk)?;
    let d = B64URL
        .decode(
            private_jwk["d"]
                .as_str()
                .ok_or("the signing JWK has no private part d")?,
        )
        .map_err(|_| "JWK d is not base64url")?;
    let kp =
        EcdsaKeyPair::from_private_key_and_public_key(&ECDSA_P256_SHA256_FIXED_SIGNING, &d, &point)
            .map_err(|_| "inconsistent signing JWK".to_string())?;
    let kid = private_jwk["kid"]
        .as_str()
        .ok_or("the signing JWK has no kid")?;
    let h = B64URL.encode(json!({"alg":"ES256","kid":kid}).to_string());
    let p = B64URL.encode(payload.to_string());
    let sig = kp
        .sign(&SystemRandom::new(), format!("{h}.{p}").as_bytes())
        .map_err(|_| "signing failed".to_string())?;
    Ok(format!("sealed.{h}.{p}.{}", B64URL.encode(sig.as_ref())))
}

/// Seals `plaintext` as an envelope under `dek`, the 32-byte key that the
/// broker holds as the resource `key_uri`.
pub fn seal_envelope(
    key_uri: &str,
    dek: &[u8],
    plaintext: &[u8],
    private_jwk: &Value,
) -> Result<String, String> {
    use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
    use base64::engine::general_purpose::STANDARD;
    resource_path(key_uri).map_err(|e| e.to_string())?;
    if dek.len() != 32 {
        return Err(format!("the data key must be 32 bytes, got {}", dek.len()));
    }
    let mut iv = [0u8; 12];
    aws_lc_rs::rand::fill(&mut iv).map_err(|_| "no randomness".to_string())?;
    let key =
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, dek).map_err(|_| "bad key".to_string())?);
    let mut buf = plaintext.to_vec();
    key.seal_in_place_append_tag(Nonce::assume_unique_for_key(iv), Aad::empty(), &mut buf)
        .map_err(|_| "encryption failed".to_string())?;
    let payload = json!({
        "version": "0.1.0", "type": "envelope", "key_id": key_uri, "encrypted_key": "",
        "encrypted_data": STANDARD.encode(buf), "wrap_type": "A256GCM", "iv": STANDARD.encode(iv),
        "provider": "kbs", "provider_settings": {}, "annotations": {},
    });
    sign_payload(&payload, private_jwk)
}

/// Decrypts an envelope with the data key fetched from the broker.
pub fn open_envelope(env: &EnvelopePayload, dek: &[u8]) -> Result<Vec<u8>, SealedError> {
    use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
    use base64::engine::general_purpose::STANDARD;
    let key =
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, dek).map_err(|_| {
            SealedError::Unsupported("the broker's data key is not 32 bytes".into())
        })?);
    let iv: [u8; 12] = STANDARD
        .decode(&env.iv)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| SealedError::Malformed("iv must be 12 bytes of base64".into()))?;
    let mut buf = STANDARD
        .decode(&env.encrypted_data)
        .map_err(|_| SealedError::Malformed("encrypted_data is not base64".into()))?;
    let plain = key
        .open_in_place(Nonce::assume_unique_for_key(iv), Aad::empty(), &mut buf)
        .map_err(|_| {
            SealedError::Malformed("envelope does not decrypt with the broker's key".into())
        })?;
    Ok(plain.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (Value, TrustedKeys) {
        let (private, public) = keygen("test-key").unwrap();
        let mut keys = TrustedKeys::default();
        keys.0
            .insert("test-key".into(), jwk_point(&public).unwrap());
        (private, keys)
    }

    #[test]
    fn round_trip() {
        let (private, keys) = setup();
        let s = seal_vault("kbs:///default/db/password", &private).unwrap();
        let u = verify(&s, &keys).unwrap();
        let Sealed::Vault(v) = u.payload else {
            panic!("not a vault secret")
        };
        assert_eq!(v.name, "kbs:///default/db/password");
        assert_eq!(resource_path(&v.name).unwrap(), "default/db/password");
        // Envelope.
        let dek = [9u8; 32];
        let s = seal_envelope("kbs:///default/key/seal", &dek, b"the data", &private).unwrap();
        let Sealed::Envelope(e) = verify(&s, &keys).unwrap().payload else {
            panic!("not an envelope")
        };
        assert_eq!(e.key_id, "kbs:///default/key/seal");
        assert_eq!(open_envelope(&e, &dek).unwrap(), b"the data");
        assert!(open_envelope(&e, &[8u8; 32]).is_err());
    }

    #[test]
    fn tampering_is_refused() {
        let (private, keys) = setup();
        let s = seal_vault("kbs:///default/db/password", &private).unwrap();
        let parts: Vec<&str> = s.split('.').collect();
        // Tampered header, payload, signature.
        let other_header = B64URL.encode(r#"{"alg":"ES256","kid":"test-key","x":1}"#);
        let other_payload = B64URL.encode(r#"{"version":"0.1.0","type":"vault","name":"kbs:///default/db/other","provider":"kbs"}"#);
        let mut sig = B64URL.decode(parts[3]).unwrap();
        sig[5] ^= 1;
        let bad_sig = B64URL.encode(sig);
        for forged in [
            format!("sealed.{other_header}.{}.{}", parts[2], parts[3]),
            format!("sealed.{}.{other_payload}.{}", parts[1], parts[3]),
            format!("sealed.{}.{}.{bad_sig}", parts[1], parts[2]),
        ] {
            assert_eq!(
                verify(&forged, &keys),
                Err(SealedError::BadSignature),
                "{forged}"
            );
        }
        // The old unsigned style.
        assert!(
            verify(
                &format!("sealed.fakejwsheader.{}.fakesignature", parts[2]),
                &keys
            )
            .is_err()
        );
        // Unknown kid.
        let (other_private, _) = keygen("someone-else").unwrap();
        let s = seal_vault("kbs:///default/db/password", &other_private).unwrap();
        assert_eq!(
            verify(&s, &keys),
            Err(SealedError::UnknownKid("someone-else".into()))
        );
        // Not sealed at all.
        assert!(verify("hunter2", &keys).is_err());
    }
}
