//! Resources travel as a flattened JWE (RFC 7516) encrypted to the TEE key
//! that the evidence bound:
//!
//! * content: `A256GCM`, a random 256-bit CEK and 96-bit IV, AAD = the ASCII
//!   of the `protected` member;
//! * key management: `ECDH-ES+A256KW` on P-256 (the CoCo default) or P-521
//!   (ephemeral ECDH, Concat KDF with SHA-256, AlgorithmID
//!   `"ECDH-ES+A256KW"`, empty PartyU/PartyV, 256-bit output; AES key wrap of
//!   the CEK), or `RSA-OAEP-256`.
//!
//! The protected header is emitted as compact JSON with keys in the order
//! `alg`, `enc`, `epk{crv,kty,x,y}`: the CoCo client re-serialises the parsed
//! header to compute the AAD, and this order is what both its
//! insertion-ordered and a key-sorted re-serialisation reproduce.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::agreement::{self, EphemeralPrivateKey, PrivateKey, UnparsedPublicKey};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::key_wrap::{AES_256, AesKek, KeyWrap};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::rsa::{
    KeySize, OAEP_SHA256_MGF1SHA256, OaepPrivateDecryptingKey, OaepPublicEncryptingKey,
    PrivateDecryptingKey, PublicEncryptingKey,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use serde_json::{Value, json};

use crate::types::Response;

pub const ALG_ECDH_ES_A256KW: &str = "ECDH-ES+A256KW";
pub const ALG_RSA_OAEP_256: &str = "RSA-OAEP-256";
pub const ENC_A256GCM: &str = "A256GCM";

/// Why a JWE could not be made or opened. Messages never contain key or
/// plaintext material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JweError {
    #[error("unsupported TEE key: {0}")]
    UnsupportedKey(String),
    #[error("malformed TEE key: {0}")]
    MalformedKey(String),
    #[error("malformed JWE: {0}")]
    Malformed(String),
    #[error("JWE decryption failed")]
    Decrypt,
    #[error("cryptographic failure")]
    Crypto,
}

/// An elliptic curve for ECDH-ES.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    P256,
    P521,
}

impl Curve {
    fn name(self) -> &'static str {
        match self {
            Curve::P256 => "P-256",
            Curve::P521 => "P-521",
        }
    }
    fn coord_len(self) -> usize {
        match self {
            Curve::P256 => 32,
            Curve::P521 => 66,
        }
    }
    fn alg(self) -> &'static agreement::Algorithm {
        match self {
            Curve::P256 => &agreement::ECDH_P256,
            Curve::P521 => &agreement::ECDH_P521,
        }
    }
}

/// The key-management choices a guest can make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlgorithm {
    EcdhEsP256,
    EcdhEsP521,
    RsaOaep256,
}

/// A TEE public key from the `tee-pubkey` JWK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TeePublicKey {
    Ec { curve: Curve, point: Vec<u8> },
    Rsa { spki: Vec<u8> },
}

fn field<'a>(jwk: &'a Value, name: &str) -> Result<&'a str, JweError> {
    jwk.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| JweError::MalformedKey(format!("missing string member {name:?}")))
}

fn b64(s: &str, what: &str) -> Result<Vec<u8>, JweError> {
    B64URL
        .decode(s)
        .map_err(|_| JweError::MalformedKey(format!("{what} is not base64url")))
}

impl TeePublicKey {
    /// Parses and validates a JWK: EC P-256/P-521 with `alg`
    /// `ECDH-ES+A256KW`, or RSA (≥ 2048 bits) with `alg` `RSA-OAEP-256`.
    pub fn from_jwk(jwk: &Value) -> Result<Self, JweError> {
        let kty = field(jwk, "kty")?;
        let alg = field(jwk, "alg")?;
        match kty {
            "EC" => {
                if alg != ALG_ECDH_ES_A256KW {
                    return Err(JweError::UnsupportedKey(format!("EC key with alg {alg:?}")));
                }
                let curve = match field(jwk, "crv")? {
                    "P-256" => Curve::P256,
                    "P-521" => Curve::P521,
                    other => return Err(JweError::UnsupportedKey(format!("curve {other:?}"))),
                };
                let x = b64(field(jwk, "x")?, "x")?;
                let y = b64(field(jwk, "y")?, "y")?;
                if x.len() != curve.coord_len() || y.len() != curve.coord_len() {
                    return Err(JweError::MalformedKey(format!(
                        "{} coordinates must be {} bytes",
                        curve.name(),
                        curve.coord_len()
                    )));
                }
                let mut point = vec![4u8];
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                // Decoding checks that the point is on the curve (no
                // scalar multiplication needed).
                agreement::ParsedPublicKey::try_from(&UnparsedPublicKey::new(curve.alg(), &point))
                    .map_err(|_| JweError::MalformedKey("EC point is not on the curve".into()))?;
                Ok(TeePublicKey::Ec { curve, point })
            }
            "RSA" => {
                if alg != ALG_RSA_OAEP_256 {
                    return Err(JweError::UnsupportedKey(format!(
                        "RSA key with alg {alg:?}"
                    )));
                }
                let n = b64(field(jwk, "n")?, "n")?;
                let e = b64(field(jwk, "e")?, "e")?;
                let spki = rsa_spki(&n, &e);
                let key = PublicEncryptingKey::from_der(&spki)
                    .map_err(|_| JweError::MalformedKey("invalid RSA key".into()))?;
                if key.key_size_bytes() < 256 {
                    return Err(JweError::UnsupportedKey("RSA keys under 2048 bits".into()));
                }
                Ok(TeePublicKey::Rsa { spki })
            }
            other => Err(JweError::UnsupportedKey(format!("kty {other:?}"))),
        }
    }
}

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        let sig = bytes.get(skip..).unwrap_or(&[]);
        out.push(0x80 | sig.len() as u8);
        out.extend_from_slice(sig);
    }
    out.extend_from_slice(content);
    out
}

fn der_uint(bytes: &[u8]) -> Vec<u8> {
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    let mut v = bytes.get(skip..).unwrap_or(&[]).to_vec();
    if v.first().is_none_or(|b| b & 0x80 != 0) {
        v.insert(0, 0);
    }
    tlv(0x02, &v)
}

/// SubjectPublicKeyInfo for an RSA key (n, e big-endian). Written by hand:
/// two integers in two sequences, not worth a dependency.
fn rsa_spki(n: &[u8], e: &[u8]) -> Vec<u8> {
    let rsa_pub = tlv(0x30, &[der_uint(n), der_uint(e)].concat());
    let mut bits = vec![0u8];
    bits.extend_from_slice(&rsa_pub);
    // AlgorithmIdentifier { rsaEncryption, NULL }
    let alg = [
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    tlv(0x30, &[alg.to_vec(), tlv(0x03, &bits)].concat())
}

/// Reads n and e back out of an RSA SubjectPublicKeyInfo.
fn rsa_n_e(spki: &[u8]) -> Result<(Vec<u8>, Vec<u8>), JweError> {
    use der::{Decode, Reader, SliceReader};
    let bad = |_| JweError::Crypto;
    let info = x509_spki(spki)?;
    let mut r = SliceReader::new(&info).map_err(bad)?;
    let (n, e) = r
        .sequence(|s| {
            let n = der::asn1::UintRef::decode(s)?.as_bytes().to_vec();
            let e = der::asn1::UintRef::decode(s)?.as_bytes().to_vec();
            Ok::<_, der::Error>((n, e))
        })
        .map_err(bad)?;
    Ok((n, e))
}

/// The subjectPublicKey BIT STRING contents of an SPKI.
fn x509_spki(spki: &[u8]) -> Result<Vec<u8>, JweError> {
    use der::{Decode, Reader, SliceReader};
    let bad = |_| JweError::Crypto;
    let mut r = SliceReader::new(spki).map_err(bad)?;
    r.sequence(|s| {
        let _alg = s.tlv_bytes()?;
        let bits = der::asn1::BitStringRef::decode(s)?;
        Ok::<_, der::Error>(bits.raw_bytes().to_vec())
    })
    .map_err(bad)
}

/// Concat KDF (NIST SP 800-56A, RFC 7518 §4.6.2) for ECDH-ES+A256KW:
/// one SHA-256 round, 256-bit output, empty PartyU/PartyV. Also used by
/// `veil-image` for ocicrypt's JWE recipients.
pub fn concat_kdf(z: &[u8]) -> [u8; 32] {
    let alg = ALG_ECDH_ES_A256KW.as_bytes();
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(&1u32.to_be_bytes());
    ctx.update(z);
    ctx.update(&(alg.len() as u32).to_be_bytes());
    ctx.update(alg);
    ctx.update(&0u32.to_be_bytes()); // PartyUInfo
    ctx.update(&0u32.to_be_bytes()); // PartyVInfo
    ctx.update(&256u32.to_be_bytes()); // SuppPubInfo: keydatalen
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// IV, ciphertext and tag of one AES-256-GCM encryption.
type Sealed = ([u8; 12], Vec<u8>, Vec<u8>);

fn gcm_seal(cek: &[u8; 32], protected: &str, plaintext: &[u8]) -> Result<Sealed, JweError> {
    let rng = SystemRandom::new();
    let mut iv = [0u8; 12];
    rng.fill(&mut iv).map_err(|_| JweError::Crypto)?;
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, cek).map_err(|_| JweError::Crypto)?);
    let mut buf = plaintext.to_vec();
    let tag = key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(iv),
            Aad::from(protected.as_bytes()),
            &mut buf,
        )
        .map_err(|_| JweError::Crypto)?;
    Ok((iv, buf, tag.as_ref().to_vec()))
}

/// Encrypts `plaintext` to a TEE key.
pub fn encrypt(key: &TeePublicKey, plaintext: &[u8]) -> Result<Response, JweError> {
    let rng = SystemRandom::new();
    let mut cek = [0u8; 32];
    rng.fill(&mut cek).map_err(|_| JweError::Crypto)?;
    let (protected_json, encrypted_key) = match key {
        TeePublicKey::Ec { curve, point } => {
            let eph =
                EphemeralPrivateKey::generate(curve.alg(), &rng).map_err(|_| JweError::Crypto)?;
            let eph_pub = eph.compute_public_key().map_err(|_| JweError::Crypto)?;
            let (x, y) = eph_pub
                .as_ref()
                .get(1..)
                .map(|xy| xy.split_at(curve.coord_len()))
                .ok_or(JweError::Crypto)?;
            let kek = agreement::agree_ephemeral(
                eph,
                UnparsedPublicKey::new(curve.alg(), point),
                JweError::Crypto,
                |z| Ok(concat_kdf(z)),
            )?;
            let mut wrapped = [0u8; 40];
            let kw = AesKek::new(&AES_256, &kek).map_err(|_| JweError::Crypto)?;
            let out = kw
                .wrap(&cek, &mut wrapped)
                .map_err(|_| JweError::Crypto)?
                .to_vec();
            let header = format!(
                r#"{{"alg":"{ALG_ECDH_ES_A256KW}","enc":"{ENC_A256GCM}","epk":{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}}}"#,
                curve.name(),
                B64URL.encode(x),
                B64URL.encode(y)
            );
            (header, out)
        }
        TeePublicKey::Rsa { spki } => {
            let pk = PublicEncryptingKey::from_der(spki).map_err(|_| JweError::Crypto)?;
            let oaep = OaepPublicEncryptingKey::new(pk).map_err(|_| JweError::Crypto)?;
            let mut out = vec![0u8; oaep.ciphertext_size()];
            let ct = oaep
                .encrypt(&OAEP_SHA256_MGF1SHA256, &cek, &mut out, None)
                .map_err(|_| JweError::Crypto)?
                .to_vec();
            (
                format!(r#"{{"alg":"{ALG_RSA_OAEP_256}","enc":"{ENC_A256GCM}"}}"#),
                ct,
            )
        }
    };
    let protected = B64URL.encode(protected_json.as_bytes());
    let (iv, ciphertext, tag) = gcm_seal(&cek, &protected, plaintext)?;
    Ok(Response {
        protected,
        encrypted_key: B64URL.encode(encrypted_key),
        iv: B64URL.encode(iv),
        ciphertext: B64URL.encode(ciphertext),
        tag: B64URL.encode(tag),
    })
}

/// The guest side: a fresh TEE key pair, its JWK, and decryption.
#[derive(Debug)]
pub struct TeeKeyPair {
    inner: KeyPairInner,
}

#[derive(Debug)]
enum KeyPairInner {
    Ec(Curve, PrivateKey),
    Rsa(Box<PrivateDecryptingKey>),
}

impl TeeKeyPair {
    /// Generates a key pair.
    pub fn generate(alg: KeyAlgorithm) -> Result<Self, JweError> {
        let inner = match alg {
            KeyAlgorithm::EcdhEsP256 => KeyPairInner::Ec(
                Curve::P256,
                PrivateKey::generate(&agreement::ECDH_P256).map_err(|_| JweError::Crypto)?,
            ),
            KeyAlgorithm::EcdhEsP521 => KeyPairInner::Ec(
                Curve::P521,
                PrivateKey::generate(&agreement::ECDH_P521).map_err(|_| JweError::Crypto)?,
            ),
            KeyAlgorithm::RsaOaep256 => KeyPairInner::Rsa(Box::new(
                PrivateDecryptingKey::generate(KeySize::Rsa2048).map_err(|_| JweError::Crypto)?,
            )),
        };
        Ok(TeeKeyPair { inner })
    }

    /// The public key as the JWK sent in `tee-pubkey`.
    pub fn public_jwk(&self) -> Result<Value, JweError> {
        match &self.inner {
            KeyPairInner::Ec(curve, key) => {
                let public = key.compute_public_key().map_err(|_| JweError::Crypto)?;
                let (x, y) = public
                    .as_ref()
                    .get(1..)
                    .map(|xy| xy.split_at(curve.coord_len()))
                    .ok_or(JweError::Crypto)?;
                Ok(
                    json!({"kty":"EC","crv":curve.name(),"alg":ALG_ECDH_ES_A256KW,
                    "x":B64URL.encode(x),"y":B64URL.encode(y)}),
                )
            }
            KeyPairInner::Rsa(key) => {
                let spki = key.public_key().as_der().map_err(|_| JweError::Crypto)?;
                let (n, e) = rsa_n_e(spki.as_ref())?;
                Ok(
                    json!({"kty":"RSA","alg":ALG_RSA_OAEP_256,"n":B64URL.encode(n),"e":B64URL.encode(e)}),
                )
            }
        }
    }

    /// Opens a resource JWE. The AAD is the `protected` member as received.
    pub fn decrypt(&self, jwe: &Response) -> Result<Vec<u8>, JweError> {
        let bad = |what: &str| JweError::Malformed(what.to_string());
        let header_bytes = B64URL
            .decode(&jwe.protected)
            .map_err(|_| bad("protected"))?;
        let header: Value =
            serde_json::from_slice(&header_bytes).map_err(|_| bad("protected header JSON"))?;
        if header.get("enc").and_then(Value::as_str) != Some(ENC_A256GCM) {
            return Err(bad("enc must be A256GCM"));
        }
        let alg = header.get("alg").and_then(Value::as_str).unwrap_or("");
        let encrypted_key = B64URL
            .decode(&jwe.encrypted_key)
            .map_err(|_| bad("encrypted_key"))?;
        let cek: Vec<u8> = match (&self.inner, alg) {
            (KeyPairInner::Ec(curve, key), ALG_ECDH_ES_A256KW) => {
                let epk = header.get("epk").ok_or_else(|| bad("epk"))?;
                if epk.get("crv").and_then(Value::as_str) != Some(curve.name()) {
                    return Err(bad("epk curve"));
                }
                let x = B64URL
                    .decode(epk.get("x").and_then(Value::as_str).unwrap_or(""))
                    .map_err(|_| bad("epk.x"))?;
                let y = B64URL
                    .decode(epk.get("y").and_then(Value::as_str).unwrap_or(""))
                    .map_err(|_| bad("epk.y"))?;
                let mut point = vec![4u8];
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                let kek = agreement::agree(
                    key,
                    UnparsedPublicKey::new(curve.alg(), &point),
                    JweError::Decrypt,
                    |z| Ok(concat_kdf(z)),
                )?;
                let mut out = [0u8; 32];
                let kw = AesKek::new(&AES_256, &kek).map_err(|_| JweError::Crypto)?;
                kw.unwrap(&encrypted_key, &mut out)
                    .map_err(|_| JweError::Decrypt)?
                    .to_vec()
            }
            (KeyPairInner::Rsa(key), ALG_RSA_OAEP_256) => {
                let oaep =
                    OaepPrivateDecryptingKey::new((**key).clone()).map_err(|_| JweError::Crypto)?;
                let mut out = vec![0u8; oaep.key_size_bytes()];
                oaep.decrypt(&OAEP_SHA256_MGF1SHA256, &encrypted_key, &mut out, None)
                    .map_err(|_| JweError::Decrypt)?
                    .to_vec()
            }
            _ => return Err(bad("alg does not match this key")),
        };
        let cek: [u8; 32] = cek.try_into().map_err(|_| JweError::Decrypt)?;
        let iv: [u8; 12] = B64URL
            .decode(&jwe.iv)
            .map_err(|_| bad("iv"))?
            .try_into()
            .map_err(|_| bad("iv must be 12 bytes"))?;
        let mut buf = B64URL
            .decode(&jwe.ciphertext)
            .map_err(|_| bad("ciphertext"))?;
        let tag = B64URL.decode(&jwe.tag).map_err(|_| bad("tag"))?;
        if tag.len() != 16 {
            return Err(bad("tag must be 16 bytes"));
        }
        buf.extend_from_slice(&tag);
        let key =
            LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &cek).map_err(|_| JweError::Crypto)?);
        let plain = key
            .open_in_place(
                Nonce::assume_unique_for_key(iv),
                Aad::from(jwe.protected.as_bytes()),
                &mut buf,
            )
            .map_err(|_| JweError::Decrypt)?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_every_key_type() {
        for alg in [
            KeyAlgorithm::EcdhEsP256,
            KeyAlgorithm::EcdhEsP521,
            KeyAlgorithm::RsaOaep256,
        ] {
            let kp = TeeKeyPair::generate(alg).unwrap();
            let jwk = kp.public_jwk().unwrap();
            let pk = TeePublicKey::from_jwk(&jwk).unwrap();
            let jwe = encrypt(&pk, b"the secret").unwrap();
            assert_eq!(kp.decrypt(&jwe).unwrap(), b"the secret", "{alg:?}");
            // Any change to any member fails.
            let mut bad = jwe.clone();
            bad.ciphertext = B64URL.encode(b"XXXXXXXXXX");
            assert!(kp.decrypt(&bad).is_err());
            let mut bad = jwe.clone();
            bad.tag = B64URL.encode([0u8; 16]);
            assert_eq!(kp.decrypt(&bad), Err(JweError::Decrypt));
            // Another key cannot open it.
            let other = TeeKeyPair::generate(alg).unwrap();
            assert!(other.decrypt(&jwe).is_err());
        }
    }

    /// The CoCo client (guest-components kbs_protocol) parses the protected
    /// header and re-serialises it to compute the AAD: the header Veil emits
    /// must survive that byte for byte, whether the re-serialiser keeps
    /// insertion order or sorts keys (serde_json without preserve_order).
    #[test]
    fn protected_header_survives_coco_reserialisation() {
        for alg in [
            KeyAlgorithm::EcdhEsP256,
            KeyAlgorithm::EcdhEsP521,
            KeyAlgorithm::RsaOaep256,
        ] {
            let kp = TeeKeyPair::generate(alg).unwrap();
            let pk = TeePublicKey::from_jwk(&kp.public_jwk().unwrap()).unwrap();
            let jwe = encrypt(&pk, b"x").unwrap();
            let raw = B64URL.decode(&jwe.protected).unwrap();
            let parsed: Value = serde_json::from_slice(&raw).unwrap();
            let reserialised = serde_json::to_string(&parsed).unwrap();
            assert_eq!(reserialised.as_bytes(), raw.as_slice());
            assert_eq!(B64URL.encode(reserialised), jwe.protected);
            let text = String::from_utf8(raw).unwrap();
            assert!(text.starts_with(r#"{"alg":""#), "{text}");
            if alg != KeyAlgorithm::RsaOaep256 {
                assert!(
                    text.contains(r#","enc":"A256GCM","epk":{"crv":""#),
                    "{text}"
                );
            }
        }
    }

    /// The client's Concat KDF, checked against RFC 7518 Appendix C's
    /// structure with an independent computation of the same bytes.
    #[test]
    fn concat_kdf_layout() {
        let z = [0x42u8; 32];
        let mut input = vec![0, 0, 0, 1];
        input.extend_from_slice(&z);
        input.extend_from_slice(&[0, 0, 0, 14]);
        input.extend_from_slice(b"ECDH-ES+A256KW");
        input.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
        let expect = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &input);
        assert_eq!(concat_kdf(&z).as_slice(), expect.as_ref());
    }

    #[test]
    fn rejects_bad_keys() {
        let bad = [
            json!({"kty":"EC","crv":"P-384","alg":"ECDH-ES+A256KW","x":"AA","y":"AA"}),
            json!({"kty":"EC","crv":"P-256","alg":"ECDH-ES","x":"AA","y":"AA"}),
            json!({"kty":"EC","crv":"P-256","alg":"ECDH-ES+A256KW","x":"AA","y":"AA"}),
            json!({"kty":"EC","crv":"P-256","alg":"ECDH-ES+A256KW",
                   "x":B64URL.encode([1u8;32]),"y":B64URL.encode([2u8;32])}),
            json!({"kty":"EC","crv":"P-521","alg":"ECDH-ES+A256KW",
                   "x":B64URL.encode([1u8;66]),"y":B64URL.encode([2u8;66])}),
            json!({"kty":"RSA","alg":"RSA1_5","n":"AQAB","e":"AQAB"}),
            json!({"kty":"RSA","alg":"RSA-OAEP-256","n":B64URL.encode([0xc1u8;64]),"e":"AQAB"}),
            json!({"kty":"oct","alg":"A256KW"}),
            json!("not an object"),
        ];
        for k in bad {
            assert!(TeePublicKey::from_jwk(&k).is_err(), "{k}");
        }
    }
}
