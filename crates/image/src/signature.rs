//! Cosign-style ("sigstore") image signatures with keys, as cosign and
//! containers/image write and read them:
//!
//! * the payload is the simple-signing JSON
//!   `{"critical":{"identity":{"docker-reference":…},"image":{"docker-manifest-digest":…},"type":"cosign container image signature"},"optional":…}`;
//! * the signature is over the payload bytes as stored (never re-serialised),
//!   base64 in the layer annotation `dev.cosignproject.cosign/signature`;
//! * the signatures of manifest `sha256:<hex>` are the layers of the image
//!   tagged `sha256-<hex>.sig` in the same repository, each layer a payload
//!   of media type `application/vnd.dev.cosign.simplesigning.v1+json`.
//!
//! Keys are PEM: a `PUBLIC KEY` (SPKI: ECDSA P-256/P-384, Ed25519, RSA) to
//! verify; to sign, a PKCS#8 or SEC1 EC private key, or cosign's own
//! `ENCRYPTED SIGSTORE PRIVATE KEY` / `ENCRYPTED COSIGN PRIVATE KEY`
//! (scrypt + NaCl secretbox around the PKCS#8 key, as `cosign
//! generate-key-pair` writes and `skopeo --sign-by-sigstore-private-key`
//! reads), which [`SigningKey::to_cosign_pem`] also writes.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self as sig, EcdsaKeyPair, KeyPair, UnparsedPublicKey};
use base64::Engine;
use serde_json::{Map, Value};

use crate::reference::{Reference, valid_digest};
use crate::{ImageError, b64, malformed};

/// The layer annotation holding the base64 signature.
pub const ANNOTATION_SIGNATURE: &str = "dev.cosignproject.cosign/signature";
/// The media type of a signature payload layer.
pub const MEDIA_SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The `critical.type` of a cosign signature.
pub const SIGNATURE_TYPE: &str = "cosign container image signature";
/// `critical.type` of a GPG simple-signing payload (containers/image).
pub const SIMPLE_SIGNING_TYPE: &str = "atomic container signature";
/// Payloads larger than this are refused before parsing (cosign's are
/// ~250 bytes).
pub const MAX_PAYLOAD: usize = 64 * 1024;

use crate::jwe::{OID_EC, OID_RSA};
const OID_ED25519: &str = "1.3.101.112";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";

/// The tag under which the signatures of `manifest_digest` are stored.
pub fn signature_tag(manifest_digest: &str) -> Result<String, ImageError> {
    if !valid_digest(manifest_digest) {
        return Err(malformed(
            "manifest digest",
            format!("{manifest_digest:?} is not sha256:<64 hex>"),
        ));
    }
    Ok(manifest_digest.replacen(':', "-", 1) + ".sig")
}

/// The claims of a simple-signing payload, parsed strictly (the fields
/// containers/image requires, no others under `critical`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    /// `critical.identity.docker-reference`, normalised.
    pub identity: Reference,
    /// `critical.image.docker-manifest-digest`.
    pub manifest_digest: String,
}

fn exact_object<'a>(
    v: &'a Value,
    what: &'static str,
    fields: &[&str],
) -> Result<&'a Map<String, Value>, ImageError> {
    let o = v
        .as_object()
        .ok_or_else(|| malformed("signature payload", format!("{what} is not an object")))?;
    for k in o.keys() {
        if !fields.contains(&k.as_str()) {
            return Err(malformed(
                "signature payload",
                format!("unknown field {k:?} in {what}"),
            ));
        }
    }
    for f in fields {
        if !o.contains_key(*f) {
            return Err(malformed(
                "signature payload",
                format!("{what} has no {f:?}"),
            ));
        }
    }
    Ok(o)
}

fn string_field<'a>(o: &'a Map<String, Value>, k: &str) -> Result<&'a str, ImageError> {
    o.get(k)
        .and_then(Value::as_str)
        .ok_or_else(|| malformed("signature payload", format!("{k:?} is not a string")))
}

impl Payload {
    /// Builds the payload bytes that `sign` signs.
    pub fn encode(identity: &Reference, manifest_digest: &str) -> Result<Vec<u8>, ImageError> {
        if !valid_digest(manifest_digest) {
            return Err(malformed("manifest digest", manifest_digest));
        }
        let v = serde_json::json!({
            "critical": {
                "identity": {"docker-reference": identity.to_string()},
                "image": {"docker-manifest-digest": manifest_digest},
                "type": SIGNATURE_TYPE,
            },
            "optional": null,
        });
        serde_json::to_vec(&v).map_err(|e| malformed("signature payload", e))
    }

    /// Parses a cosign payload (only after its signature verified).
    pub fn parse(bytes: &[u8]) -> Result<Self, ImageError> {
        Self::parse_typed(bytes, SIGNATURE_TYPE)
    }

    /// Parses a payload whose `critical.type` must be `expected_type`
    /// (cosign's, or GPG simple signing's [`SIMPLE_SIGNING_TYPE`]).
    pub fn parse_typed(bytes: &[u8], expected_type: &str) -> Result<Self, ImageError> {
        if bytes.len() > MAX_PAYLOAD {
            return Err(malformed("signature payload", "larger than 64 KiB"));
        }
        let v: Value =
            serde_json::from_slice(bytes).map_err(|e| malformed("signature payload", e))?;
        let top = v
            .as_object()
            .ok_or_else(|| malformed("signature payload", "not an object"))?;
        for k in top.keys() {
            if k != "critical" && k != "optional" {
                return Err(malformed(
                    "signature payload",
                    format!("unknown top-level field {k:?}"),
                ));
            }
        }
        let critical = exact_object(
            top.get("critical").unwrap_or(&Value::Null),
            "critical",
            &["type", "image", "identity"],
        )?;
        let ty = string_field(critical, "type")?;
        if ty != expected_type {
            return Err(ImageError::Unsupported {
                what: "signature type",
                value: ty.to_string(),
            });
        }
        let image = exact_object(
            critical.get("image").unwrap_or(&Value::Null),
            "critical.image",
            &["docker-manifest-digest"],
        )?;
        let manifest_digest = string_field(image, "docker-manifest-digest")?.to_string();
        if !valid_digest(&manifest_digest) {
            return Err(malformed(
                "signature payload",
                "docker-manifest-digest is not sha256:<64 hex>",
            ));
        }
        let identity = exact_object(
            critical.get("identity").unwrap_or(&Value::Null),
            "critical.identity",
            &["docker-reference"],
        )?;
        let identity = Reference::parse(string_field(identity, "docker-reference")?)?;
        Ok(Payload {
            identity,
            manifest_digest,
        })
    }
}

/// A key that verifies signatures.
#[derive(Debug, Clone)]
pub struct PublicKey {
    alg: &'static [&'static dyn sig::VerificationAlgorithm],
    /// The SPKI's subject public key bits (SEC1 point, PKCS#1, or raw).
    raw: Vec<u8>,
}

// Cosign signs ECDSA P-256 with SHA-256 (and P-384 with SHA-384); RSA keys
// sign PKCS#1 v1.5 or PSS with SHA-256; Ed25519 signs the payload itself.
static P256_ALGS: [&dyn sig::VerificationAlgorithm; 1] = [&sig::ECDSA_P256_SHA256_ASN1];
static P384_ALGS: [&dyn sig::VerificationAlgorithm; 1] = [&sig::ECDSA_P384_SHA384_ASN1];
static ED25519_ALGS: [&dyn sig::VerificationAlgorithm; 1] = [&sig::ED25519];
static RSA_ALGS: [&dyn sig::VerificationAlgorithm; 2] = [
    &sig::RSA_PKCS1_2048_8192_SHA256,
    &sig::RSA_PSS_2048_8192_SHA256,
];

impl PublicKey {
    /// From a PEM `PUBLIC KEY`.
    pub fn from_pem(pem: &[u8]) -> Result<Self, ImageError> {
        let (_, key) = crate::jwe::public_key_pem(pem)?;
        let raw = key.bits;
        let alg: &'static [&'static dyn sig::VerificationAlgorithm] = match key.algorithm.as_str() {
            OID_EC => {
                let curve = key
                    .curve
                    .ok_or_else(|| malformed("public key", "EC key without a named curve"))?;
                match curve.as_str() {
                    OID_P256 => &P256_ALGS,
                    OID_P384 => &P384_ALGS,
                    other => {
                        return Err(ImageError::Unsupported {
                            what: "signing curve",
                            value: other.to_string(),
                        });
                    }
                }
            }
            OID_ED25519 => &ED25519_ALGS,
            OID_RSA => &RSA_ALGS,
            other => {
                return Err(ImageError::Unsupported {
                    what: "public key algorithm",
                    value: other.to_string(),
                });
            }
        };
        Ok(PublicKey { alg, raw })
    }

    /// Verifies `signature` over `payload` exactly as given.
    pub fn verify(&self, payload: &[u8], signature: &[u8]) -> Result<(), ImageError> {
        for alg in self.alg {
            if UnparsedPublicKey::new(*alg, &self.raw)
                .verify(payload, signature)
                .is_ok()
            {
                return Ok(());
            }
        }
        Err(ImageError::Signature(
            "the signature does not verify with this key".into(),
        ))
    }
}

/// An ECDSA key that signs (P-256 with SHA-256 or P-384 with SHA-384).
#[derive(Debug)]
pub struct SigningKey {
    pair: EcdsaKeyPair,
}

/// cosign's scrypt cost (N = 2^15, r = 8, p = 1).
const COSIGN_LOG_N: u8 = 15;
const COSIGN_R: u32 = 8;
const COSIGN_P: u32 = 1;

/// The secretbox key of a cosign private key file.
fn cosign_kdf(
    password: &[u8],
    salt: &[u8],
    log_n: u8,
    r: u32,
    p: u32,
) -> Result<[u8; 32], ImageError> {
    let params = scrypt::Params::new(log_n, r, p, 32)
        .map_err(|_| malformed("encrypted private key", "bad scrypt parameters"))?;
    let mut key = [0u8; 32];
    scrypt::scrypt(password, salt, &params, &mut key)
        .map_err(|_| malformed("encrypted private key", "scrypt failed"))?;
    Ok(key)
}

impl SigningKey {
    /// From cosign's encrypted private key (PEM) and its password.
    pub fn from_cosign_pem(pem: &[u8], password: &[u8]) -> Result<Self, ImageError> {
        use crypto_secretbox::aead::{Aead, KeyInit};
        let (label, body) = crate::jwe::pem_der(pem, "encrypted private key")?;
        if label != "ENCRYPTED SIGSTORE PRIVATE KEY" && label != "ENCRYPTED COSIGN PRIVATE KEY" {
            return Err(malformed(
                "encrypted private key",
                format!("PEM label {label:?}"),
            ));
        }
        let v: Value =
            serde_json::from_slice(&body).map_err(|e| malformed("encrypted private key", e))?;
        let field = |v: &Value, k: &str| -> Result<Vec<u8>, ImageError> {
            v.get(k)
                .and_then(Value::as_str)
                .and_then(|s| b64().decode(s).ok())
                .ok_or_else(|| malformed("encrypted private key", format!("no base64 {k:?}")))
        };
        let kdf = v.get("kdf").unwrap_or(&Value::Null);
        if kdf.get("name").and_then(Value::as_str) != Some("scrypt") {
            return Err(ImageError::Unsupported {
                what: "private key KDF",
                value: kdf.get("name").map(Value::to_string).unwrap_or_default(),
            });
        }
        let params = kdf.get("params").unwrap_or(&Value::Null);
        let num = |k: &str| params.get(k).and_then(Value::as_u64);
        let (Some(n), Some(r), Some(p)) = (num("N"), num("r"), num("p")) else {
            return Err(malformed("encrypted private key", "scrypt params N, r, p"));
        };
        // Bounded, so a hostile file cannot ask for gigabytes of memory.
        if !n.is_power_of_two()
            || !(2..=1 << 20).contains(&n)
            || !(1..=32).contains(&r)
            || !(1..=16).contains(&p)
        {
            return Err(malformed(
                "encrypted private key",
                "scrypt params out of range",
            ));
        }
        let log_n = u8::try_from(n.trailing_zeros()).map_err(|_| ImageError::Crypto)?;
        let cipher = v.get("cipher").unwrap_or(&Value::Null);
        if cipher.get("name").and_then(Value::as_str) != Some("nacl/secretbox") {
            return Err(ImageError::Unsupported {
                what: "private key cipher",
                value: cipher.get("name").map(Value::to_string).unwrap_or_default(),
            });
        }
        let nonce = field(cipher, "nonce")?;
        let nonce = <[u8; 24]>::try_from(nonce.as_slice())
            .map_err(|_| malformed("encrypted private key", "the nonce is not 24 bytes"))?;
        let key = cosign_kdf(
            password,
            &field(kdf, "salt")?,
            log_n,
            u32::try_from(r).map_err(|_| ImageError::Crypto)?,
            u32::try_from(p).map_err(|_| ImageError::Crypto)?,
        )?;
        let der = crypto_secretbox::XSalsa20Poly1305::new(&key.into())
            .decrypt(&nonce.into(), field(&v, "ciphertext")?.as_slice())
            .map_err(|_| {
                ImageError::Signature("the private key does not open with this password".into())
            })?;
        Self::from_der("PRIVATE KEY", &der)
    }

    /// Writes this key as cosign does (`ENCRYPTED SIGSTORE PRIVATE KEY`).
    pub fn to_cosign_pem(&self, password: &[u8]) -> Result<String, ImageError> {
        use aws_lc_rs::rand::SecureRandom;
        use crypto_secretbox::aead::{Aead, KeyInit};
        let der = self.pair.to_pkcs8v1().map_err(|_| ImageError::Crypto)?;
        let rng = SystemRandom::new();
        let mut salt = [0u8; 32];
        let mut nonce = [0u8; 24];
        rng.fill(&mut salt).map_err(|_| ImageError::Crypto)?;
        rng.fill(&mut nonce).map_err(|_| ImageError::Crypto)?;
        let key = cosign_kdf(password, &salt, COSIGN_LOG_N, COSIGN_R, COSIGN_P)?;
        let ciphertext = crypto_secretbox::XSalsa20Poly1305::new(&key.into())
            .encrypt(&nonce.into(), der.as_ref())
            .map_err(|_| ImageError::Crypto)?;
        let body = serde_json::json!({
            "kdf": {"name": "scrypt", "params": {"N": 1u64 << COSIGN_LOG_N, "r": COSIGN_R, "p": COSIGN_P},
                    "salt": b64().encode(salt)},
            "cipher": {"name": "nacl/secretbox", "nonce": b64().encode(nonce)},
            "ciphertext": b64().encode(ciphertext),
        });
        der::pem::encode_string(
            "ENCRYPTED SIGSTORE PRIVATE KEY",
            der::pem::LineEnding::LF,
            body.to_string().as_bytes(),
        )
        .map_err(|e| malformed("encrypted private key", e))
    }

    /// A new P-256 key.
    pub fn generate() -> Result<Self, ImageError> {
        Ok(SigningKey {
            pair: EcdsaKeyPair::generate(&sig::ECDSA_P256_SHA256_ASN1_SIGNING)
                .map_err(|_| ImageError::Crypto)?,
        })
    }

    /// From a PEM `PRIVATE KEY` (PKCS#8) or `EC PRIVATE KEY` (SEC1).
    pub fn from_pem(pem: &[u8]) -> Result<Self, ImageError> {
        let (label, der) = crate::jwe::pem_der(pem, "signing key")?;
        Self::from_der(&label, &der)
    }

    fn from_der(label: &str, der: &[u8]) -> Result<Self, ImageError> {
        if label != "PRIVATE KEY" && label != "EC PRIVATE KEY" {
            return Err(malformed(
                "signing key",
                format!(
                    "PEM label {label:?} (an unencrypted EC private key is needed; cosign's encrypted keys are not read)"
                ),
            ));
        }
        for alg in [
            &sig::ECDSA_P256_SHA256_ASN1_SIGNING,
            &sig::ECDSA_P384_SHA384_ASN1_SIGNING,
        ] {
            let pair = if label == "PRIVATE KEY" {
                EcdsaKeyPair::from_pkcs8(alg, der)
            } else {
                EcdsaKeyPair::from_private_key_der(alg, der)
            };
            if let Ok(pair) = pair {
                return Ok(SigningKey { pair });
            }
        }
        Err(malformed(
            "signing key",
            "not an ECDSA P-256 or P-384 private key",
        ))
    }

    /// Signs `payload`; the DER signature.
    pub fn sign(&self, payload: &[u8]) -> Result<Vec<u8>, ImageError> {
        Ok(self
            .pair
            .sign(&SystemRandom::new(), payload)
            .map_err(|_| ImageError::Crypto)?
            .as_ref()
            .to_vec())
    }

    /// The matching public key, PEM.
    pub fn public_key_pem(&self) -> Result<String, ImageError> {
        use aws_lc_rs::encoding::{AsDer, PublicKeyX509Der};
        let der: PublicKeyX509Der = self
            .pair
            .public_key()
            .as_der()
            .map_err(|_| ImageError::Crypto)?;
        der::pem::encode_string("PUBLIC KEY", der::pem::LineEnding::LF, der.as_ref())
            .map_err(|e| malformed("public key", e))
    }
}

/// One signature found for an image: the payload bytes and the base64
/// signature of its layer annotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub payload: Vec<u8>,
    pub signature_b64: String,
}

impl Candidate {
    /// Verifies the signature with `key` (over the payload bytes as
    /// received), then parses the payload and checks that it names
    /// `manifest_digest`. The identity is the policy's business.
    pub fn verify(&self, key: &PublicKey, manifest_digest: &str) -> Result<Payload, ImageError> {
        let signature = b64()
            .decode(self.signature_b64.trim())
            .map_err(|_| malformed("signature annotation", "not base64"))?;
        key.verify(&self.payload, &signature)?;
        let payload = Payload::parse(&self.payload)?;
        if payload.manifest_digest != manifest_digest {
            return Err(ImageError::Signature(format!(
                "the signature is for manifest {}, not {manifest_digest}",
                payload.manifest_digest
            )));
        }
        Ok(payload)
    }
}

/// A layer of a signature image: where its payload is, and the signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureLayer {
    pub digest: String,
    pub size: u64,
    pub signature_b64: String,
}

/// The signature layers of a cosign signature manifest. Layers of other
/// media types are skipped (as containers/image does); a simple-signing
/// layer without a signature annotation, or with a payload too large, is
/// an error.
pub fn signature_layers(manifest: &Value) -> Result<Vec<SignatureLayer>, ImageError> {
    let layers = manifest
        .get("layers")
        .and_then(Value::as_array)
        .ok_or_else(|| malformed("signature manifest", "no layers"))?;
    let mut out = Vec::new();
    for l in layers {
        if l.get("mediaType").and_then(Value::as_str) != Some(MEDIA_SIMPLE_SIGNING) {
            continue;
        }
        let digest = l
            .get("digest")
            .and_then(Value::as_str)
            .filter(|d| valid_digest(d))
            .ok_or_else(|| malformed("signature manifest", "a layer digest is not sha256:<hex>"))?;
        let size = l
            .get("size")
            .and_then(Value::as_u64)
            .ok_or_else(|| malformed("signature manifest", "a layer has no size"))?;
        if size > MAX_PAYLOAD as u64 {
            return Err(malformed(
                "signature manifest",
                "a payload is larger than 64 KiB",
            ));
        }
        let signature_b64 = l
            .get("annotations")
            .and_then(|a| a.get(ANNOTATION_SIGNATURE))
            .and_then(Value::as_str)
            .ok_or_else(|| {
                malformed(
                    "signature manifest",
                    format!("a layer has no {ANNOTATION_SIGNATURE} annotation"),
                )
            })?;
        out.push(SignatureLayer {
            digest: digest.to_string(),
            size,
            signature_b64: signature_b64.to_string(),
        });
    }
    Ok(out)
}

/// A signature image as cosign writes it: the layers of `previous` (an
/// existing signature manifest, whose signatures are kept) plus one layer
/// for `payload` signed by `signature`. Returns (config, manifest) bytes;
/// the payload blob itself is `payload`.
pub fn signature_image(
    previous: Option<&Value>,
    payload: &[u8],
    signature: &[u8],
) -> Result<(Vec<u8>, Vec<u8>), ImageError> {
    let mut layers: Vec<Value> = match previous {
        Some(m) => m
            .get("layers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default(),
        None => Vec::new(),
    };
    layers.push(serde_json::json!({
        "mediaType": MEDIA_SIMPLE_SIGNING,
        "size": payload.len(),
        "digest": crate::blob_digest(payload),
        "annotations": {ANNOTATION_SIGNATURE: b64().encode(signature)},
    }));
    let diff_ids: Vec<Value> = layers
        .iter()
        .map(|l| l.get("digest").cloned().unwrap_or(Value::Null))
        .collect();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "", "os": "", "created": "0001-01-01T00:00:00Z",
        "history": [{"created": "0001-01-01T00:00:00Z"}],
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "config": {},
    }))
    .map_err(|e| malformed("signature config", e))?;
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "size": config.len(),
            "digest": crate::blob_digest(&config),
        },
        "layers": layers,
    }))
    .map_err(|e| malformed("signature manifest", e))?;
    Ok((config, manifest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::encoding::AsDer;
    use proptest::prelude::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn key() -> SigningKey {
        let pair = EcdsaKeyPair::generate(&sig::ECDSA_P256_SHA256_ASN1_SIGNING).unwrap();
        let der = pair.to_pkcs8v1().unwrap();
        let pem =
            der::pem::encode_string("PRIVATE KEY", der::pem::LineEnding::LF, der.as_ref()).unwrap();
        SigningKey::from_pem(pem.as_bytes()).unwrap()
    }

    fn candidate(k: &SigningKey, identity: &str, digest: &str) -> Candidate {
        let payload = Payload::encode(&Reference::parse(identity).unwrap(), digest).unwrap();
        Candidate {
            signature_b64: b64().encode(k.sign(&payload).unwrap()),
            payload,
        }
    }

    #[test]
    fn sign_and_verify_round_trip() {
        let k = key();
        let public = PublicKey::from_pem(k.public_key_pem().unwrap().as_bytes()).unwrap();
        let c = candidate(&k, "127.0.0.1:5000/app:1", D);
        let p = c.verify(&public, D).unwrap();
        assert_eq!(p.identity.to_string(), "127.0.0.1:5000/app:1");
        assert_eq!(signature_tag(D).unwrap(), format!("sha256-{}.sig", &D[7..]));
        // Another manifest: refused even though the signature is good.
        let other = D.replace("0123", "3210");
        assert!(matches!(
            c.verify(&public, &other),
            Err(ImageError::Signature(_))
        ));
        // Another key.
        let stranger = PublicKey::from_pem(key().public_key_pem().unwrap().as_bytes()).unwrap();
        assert!(c.verify(&stranger, D).is_err());
        let _ = k.pair.public_key().as_der().unwrap();
    }

    #[test]
    fn every_payload_and_signature_byte_matters() {
        let k = key();
        let public = PublicKey::from_pem(k.public_key_pem().unwrap().as_bytes()).unwrap();
        let c = candidate(&k, "example.com/app:1", D);
        for i in 0..c.payload.len() {
            let mut bad = c.clone();
            bad.payload[i] ^= 0x01;
            assert!(bad.verify(&public, D).is_err(), "payload byte {i}");
        }
        let sig = b64().decode(&c.signature_b64).unwrap();
        for i in 0..sig.len() {
            let mut s = sig.clone();
            s[i] ^= 0x01;
            let bad = Candidate {
                payload: c.payload.clone(),
                signature_b64: b64().encode(&s),
            };
            assert!(bad.verify(&public, D).is_err(), "signature byte {i}");
        }
    }

    #[test]
    fn payload_is_parsed_strictly() {
        let ok = format!(
            r#"{{"critical":{{"identity":{{"docker-reference":"example.com/app"}},"image":{{"docker-manifest-digest":"{D}"}},"type":"cosign container image signature"}},"optional":{{"creator":"cosign"}}}}"#
        );
        let p = Payload::parse(ok.as_bytes()).unwrap();
        assert!(p.identity.is_name_only());
        for bad in [
            ok.replace("\"type\"", "\"kind\""),
            ok.replace("cosign container", "atomic container"),
            ok.replace("\"optional\"", "\"extra\""),
            ok.replace(
                "\"docker-reference\":\"example.com/app\"",
                "\"docker-reference\":\"example.com/app\",\"x\":1",
            ),
            ok.replace(D, "sha256:00"),
            ok.replace("example.com/app", "Example.com/App"),
            "[]".into(),
            "{}".into(),
        ] {
            assert!(Payload::parse(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn keys_of_each_kind() {
        use aws_lc_rs::encoding::PublicKeyX509Der;
        let ed = sig::Ed25519KeyPair::generate().unwrap();
        let der: PublicKeyX509Der = ed.public_key().as_der().unwrap();
        let pem =
            der::pem::encode_string("PUBLIC KEY", der::pem::LineEnding::LF, der.as_ref()).unwrap();
        let public = PublicKey::from_pem(pem.as_bytes()).unwrap();
        let s = ed.sign(b"payload");
        public.verify(b"payload", s.as_ref()).unwrap();
        assert!(public.verify(b"payloaD", s.as_ref()).is_err());
        assert!(
            PublicKey::from_pem(b"-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n")
                .is_err()
        );
        assert!(SigningKey::from_pem(pem.as_bytes()).is_err());
    }

    #[test]
    fn cosign_encrypted_keys_round_trip() {
        let k = SigningKey::generate().unwrap();
        let pem = k.to_cosign_pem(b"hunter2").unwrap();
        assert!(pem.starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----"));
        let back = SigningKey::from_cosign_pem(pem.as_bytes(), b"hunter2").unwrap();
        assert_eq!(back.public_key_pem().unwrap(), k.public_key_pem().unwrap());
        assert!(matches!(
            SigningKey::from_cosign_pem(pem.as_bytes(), b"hunter3"),
            Err(ImageError::Signature(_))
        ));
        // A hostile cost is refused before any work.
        let (_, body) = crate::jwe::pem_der(pem.as_bytes(), "k").unwrap();
        let mut v: Value = serde_json::from_slice(&body).unwrap();
        v["kdf"]["params"]["N"] = (1u64 << 30).into();
        let bad = der::pem::encode_string(
            "ENCRYPTED COSIGN PRIVATE KEY",
            der::pem::LineEnding::LF,
            v.to_string().as_bytes(),
        )
        .unwrap();
        assert!(
            SigningKey::from_cosign_pem(bad.as_bytes(), b"hunter2")
                .unwrap_err()
                .to_string()
                .contains("out of range")
        );
    }

    proptest! {
        #[test]
        fn payload_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Payload::parse(&bytes);
        }
    }
}
