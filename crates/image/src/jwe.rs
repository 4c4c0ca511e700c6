//! ocicrypt's JWE recipient scheme (`org.opencontainers.image.enc.keys.jwe`):
//! the layer's private options encrypted as one JWE in the general JSON
//! serialization (RFC 7516 §7.2) to every recipient public key, as Go
//! ocicrypt (go-jose) writes it: `A256GCM` content encryption with the
//! ASCII of `protected` as AAD; `ECDH-ES+A256KW` for EC keys (P-256,
//! P-384, P-521; Concat KDF with SHA-256, AlgorithmID `ECDH-ES+A256KW`,
//! empty PartyU/PartyV), and RSA-OAEP for RSA keys (`RSA-OAEP` with SHA-1,
//! what Go ocicrypt produces, read; `RSA-OAEP-256` written and read).
//!
//! Written by hand on aws-lc-rs: the JOSE crates available do not offer
//! the multi-recipient JSON serialization together with these algorithms.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::agreement::{self, EphemeralPrivateKey, PrivateKey, UnparsedPublicKey};
use aws_lc_rs::key_wrap::{AES_256, AesKek, KeyWrap};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::rsa::{
    OAEP_SHA1_MGF1SHA1, OAEP_SHA256_MGF1SHA256, OaepPrivateDecryptingKey, OaepPublicEncryptingKey,
    PrivateDecryptingKey, PublicEncryptingKey,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use serde_json::{Map, Value, json};

use veil_protocol::jwe::concat_kdf;

use crate::{ImageError, malformed};

const ECDH_ES_A256KW: &str = "ECDH-ES+A256KW";

/// An elliptic curve of a JWE recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    P256,
    P384,
    P521,
}

impl Curve {
    fn name(self) -> &'static str {
        match self {
            Curve::P256 => "P-256",
            Curve::P384 => "P-384",
            Curve::P521 => "P-521",
        }
    }
    fn from_name(s: &str) -> Option<Self> {
        [Curve::P256, Curve::P384, Curve::P521]
            .into_iter()
            .find(|c| c.name() == s)
    }
    fn alg(self) -> &'static agreement::Algorithm {
        match self {
            Curve::P256 => &agreement::ECDH_P256,
            Curve::P384 => &agreement::ECDH_P384,
            Curve::P521 => &agreement::ECDH_P521,
        }
    }
    fn coord_len(self) -> usize {
        match self {
            Curve::P256 => 32,
            Curve::P384 => 48,
            Curve::P521 => 66,
        }
    }
}

/// A recipient's public key (PEM `PUBLIC KEY`, i.e. SubjectPublicKeyInfo).
#[derive(Debug)]
pub enum RecipientKey {
    Ec(Curve, Vec<u8>),
    Rsa(PublicEncryptingKey),
}

/// A private key that may open the JWE (PEM `PRIVATE KEY` (PKCS#8) or
/// `EC PRIVATE KEY` (SEC1)).
pub enum PrivateJweKey {
    Ec(Curve, PrivateKey),
    Rsa(PrivateDecryptingKey),
}

impl std::fmt::Debug for PrivateJweKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PrivateJweKey::Ec(c, _) => write!(f, "PrivateJweKey::Ec({})", c.name()),
            PrivateJweKey::Rsa(_) => f.write_str("PrivateJweKey::Rsa"),
        }
    }
}

pub(crate) fn pem_der(pem: &[u8], what: &'static str) -> Result<(String, Vec<u8>), ImageError> {
    let text = std::str::from_utf8(pem).map_err(|_| malformed(what, "not PEM text"))?;
    let (label, der) =
        der::pem::decode_vec(text.trim().as_bytes()).map_err(|e| malformed(what, e))?;
    Ok((label.to_string(), der))
}

pub(crate) const OID_EC: &str = "1.2.840.10045.2.1";
pub(crate) const OID_RSA: &str = "1.2.840.113549.1.1.1";

/// What a `PUBLIC KEY` PEM holds: its algorithm, the named curve of an EC
/// key, and the subject public key bits.
pub(crate) struct PublicKeyInfo {
    pub algorithm: String,
    pub curve: Option<String>,
    pub bits: Vec<u8>,
}

/// Reads a `PUBLIC KEY` PEM: (the SPKI DER, what it holds).
pub(crate) fn public_key_pem(pem: &[u8]) -> Result<(Vec<u8>, PublicKeyInfo), ImageError> {
    use der::Decode;
    let (label, der) = pem_der(pem, "public key")?;
    if label != "PUBLIC KEY" {
        return Err(malformed(
            "public key",
            format!("PEM label {label:?}, expected PUBLIC KEY"),
        ));
    }
    let spki =
        spki::SubjectPublicKeyInfoRef::from_der(&der).map_err(|e| malformed("public key", e))?;
    let info = PublicKeyInfo {
        algorithm: spki.algorithm.oid.to_string(),
        curve: spki
            .algorithm
            .parameters
            .and_then(|p| p.decode_as::<der::asn1::ObjectIdentifier>().ok())
            .map(|o| o.to_string()),
        bits: spki.subject_public_key.raw_bytes().to_vec(),
    };
    Ok((der, info))
}

fn curve_of(oid: &str) -> Option<Curve> {
    match oid {
        "1.2.840.10045.3.1.7" => Some(Curve::P256),
        "1.3.132.0.34" => Some(Curve::P384),
        "1.3.132.0.35" => Some(Curve::P521),
        _ => None,
    }
}

impl RecipientKey {
    /// From a PEM public key.
    pub fn from_pem(pem: &[u8]) -> Result<Self, ImageError> {
        let (der, key) = public_key_pem(pem)?;
        match key.algorithm.as_str() {
            OID_EC => {
                let params = key
                    .curve
                    .ok_or_else(|| malformed("public key", "EC key without a named curve"))?;
                let Some(curve) = curve_of(&params) else {
                    return Err(ImageError::Unsupported {
                        what: "EC curve",
                        value: params,
                    });
                };
                Ok(RecipientKey::Ec(curve, der))
            }
            OID_RSA => Ok(RecipientKey::Rsa(
                PublicEncryptingKey::from_der(&der).map_err(|e| malformed("RSA public key", e))?,
            )),
            other => Err(ImageError::Unsupported {
                what: "public key algorithm",
                value: other.to_string(),
            }),
        }
    }
}

impl PrivateJweKey {
    /// From a PEM private key.
    pub fn from_pem(pem: &[u8]) -> Result<Self, ImageError> {
        let (label, der) = pem_der(pem, "private key")?;
        match label.as_str() {
            "PRIVATE KEY" | "EC PRIVATE KEY" => {}
            "RSA PRIVATE KEY" => {
                return Err(malformed(
                    "private key",
                    "PKCS#1 RSA keys are not read; convert with `openssl pkcs8 -topk8 -nocrypt`",
                ));
            }
            other => {
                return Err(malformed(
                    "private key",
                    format!("PEM label {other:?} (encrypted keys are not read)"),
                ));
            }
        }
        for curve in [Curve::P256, Curve::P384, Curve::P521] {
            if let Ok(k) = PrivateKey::from_private_key_der(curve.alg(), &der) {
                return Ok(PrivateJweKey::Ec(curve, k));
            }
        }
        if label == "PRIVATE KEY"
            && let Ok(k) = PrivateDecryptingKey::from_pkcs8(&der)
        {
            return Ok(PrivateJweKey::Rsa(k));
        }
        Err(malformed(
            "private key",
            "not an EC (P-256/384/521) or RSA private key",
        ))
    }
}

/// Encrypts `plaintext` (the private options JSON) to every recipient;
/// the JWE JSON.
pub fn encrypt(recipients: &[RecipientKey], plaintext: &[u8]) -> Result<Vec<u8>, ImageError> {
    if recipients.is_empty() {
        return Err(malformed("JWE", "no recipients"));
    }
    let rng = SystemRandom::new();
    let mut cek = [0u8; 32];
    let mut iv = [0u8; 12];
    rng.fill(&mut cek).map_err(|_| ImageError::Crypto)?;
    rng.fill(&mut iv).map_err(|_| ImageError::Crypto)?;
    let mut out_recipients = Vec::new();
    for r in recipients {
        match r {
            RecipientKey::Ec(curve, spki) => {
                let eph = EphemeralPrivateKey::generate(curve.alg(), &rng)
                    .map_err(|_| ImageError::Crypto)?;
                let epk = eph.compute_public_key().map_err(|_| ImageError::Crypto)?;
                let point = epk.as_ref();
                let n = curve.coord_len();
                let x = point
                    .get(1..1usize.saturating_add(n))
                    .ok_or(ImageError::Crypto)?;
                let y = point
                    .get(1usize.saturating_add(n)..)
                    .ok_or(ImageError::Crypto)?;
                let kek = agreement::agree_ephemeral(
                    eph,
                    UnparsedPublicKey::new(curve.alg(), spki.as_slice()),
                    ImageError::Crypto,
                    |z| Ok(concat_kdf(z)),
                )?;
                let mut wrapped = [0u8; 40];
                let kw = AesKek::new(&AES_256, &kek).map_err(|_| ImageError::Crypto)?;
                let wrapped = kw
                    .wrap(&cek, &mut wrapped)
                    .map_err(|_| ImageError::Crypto)?;
                out_recipients.push(json!({
                    "header": {"alg": ECDH_ES_A256KW, "epk": {"kty": "EC", "crv": curve.name(),
                        "x": B64URL.encode(x), "y": B64URL.encode(y)}},
                    "encrypted_key": B64URL.encode(wrapped),
                }));
            }
            RecipientKey::Rsa(key) => {
                let oaep =
                    OaepPublicEncryptingKey::new(key.clone()).map_err(|_| ImageError::Crypto)?;
                let mut buf = vec![0u8; oaep.ciphertext_size()];
                let ct = oaep
                    .encrypt(&OAEP_SHA256_MGF1SHA256, &cek, &mut buf, None)
                    .map_err(|_| ImageError::Crypto)?;
                out_recipients.push(json!({
                    "header": {"alg": "RSA-OAEP-256"},
                    "encrypted_key": B64URL.encode(ct),
                }));
            }
        }
    }
    let protected = B64URL.encode(br#"{"enc":"A256GCM"}"#);
    let key =
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &cek).map_err(|_| ImageError::Crypto)?);
    let mut buf = plaintext.to_vec();
    let tag = key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(iv),
            Aad::from(protected.as_bytes()),
            &mut buf,
        )
        .map_err(|_| ImageError::Crypto)?;
    serde_json::to_vec(&json!({
        "protected": protected,
        "recipients": out_recipients,
        "iv": B64URL.encode(iv),
        "ciphertext": B64URL.encode(&buf),
        "tag": B64URL.encode(tag.as_ref()),
    }))
    .map_err(|e| malformed("JWE", e))
}

fn field<'a>(v: &'a Value, k: &str) -> Option<&'a str> {
    v.get(k).and_then(Value::as_str)
}

fn b64url(v: &Value, k: &str) -> Result<Vec<u8>, ImageError> {
    B64URL
        .decode(field(v, k).ok_or_else(|| malformed("JWE", format!("no {k}")))?)
        .map_err(|_| malformed("JWE", format!("{k} is not base64url")))
}

/// The CEK for one recipient, if `key` is theirs.
fn recipient_cek(
    header: &Map<String, Value>,
    encrypted_key: &[u8],
    key: &PrivateJweKey,
) -> Option<[u8; 32]> {
    let alg = header.get("alg").and_then(Value::as_str)?;
    let cek: Vec<u8> = match (key, alg) {
        (PrivateJweKey::Ec(curve, k), ECDH_ES_A256KW) => {
            let epk = header.get("epk")?;
            if field(epk, "kty") != Some("EC")
                || Curve::from_name(field(epk, "crv")?) != Some(*curve)
            {
                return None;
            }
            let x = B64URL.decode(field(epk, "x")?).ok()?;
            let y = B64URL.decode(field(epk, "y")?).ok()?;
            if x.len() != curve.coord_len() || y.len() != curve.coord_len() {
                return None;
            }
            let mut point = vec![4u8];
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            let kek = agreement::agree(k, UnparsedPublicKey::new(curve.alg(), &point), (), |z| {
                Ok(concat_kdf(z))
            })
            .ok()?;
            let kw = AesKek::new(&AES_256, &kek).ok()?;
            let mut out = [0u8; 32];
            kw.unwrap(encrypted_key, &mut out).ok()?.to_vec()
        }
        (PrivateJweKey::Rsa(k), "RSA-OAEP" | "RSA-OAEP-256") => {
            let oaep = OaepPrivateDecryptingKey::new(k.clone()).ok()?;
            let alg = if alg == "RSA-OAEP" {
                &OAEP_SHA1_MGF1SHA1
            } else {
                &OAEP_SHA256_MGF1SHA256
            };
            let mut out = vec![0u8; oaep.key_size_bytes()];
            oaep.decrypt(alg, encrypted_key, &mut out, None)
                .ok()?
                .to_vec()
        }
        _ => return None,
    };
    cek.try_into().ok()
}

/// Opens a JWE (general or flattened JSON serialization) with the first
/// of `keys` that is one of its recipients; the plaintext.
pub fn decrypt(jwe: &[u8], keys: &[PrivateJweKey]) -> Result<Vec<u8>, ImageError> {
    let v: Value = serde_json::from_slice(jwe).map_err(|e| malformed("JWE", e))?;
    let protected_b64 = field(&v, "protected").unwrap_or("");
    let mut shared = Map::new();
    if !protected_b64.is_empty() {
        let p: Value = serde_json::from_slice(
            &B64URL
                .decode(protected_b64)
                .map_err(|_| malformed("JWE", "protected is not base64url"))?,
        )
        .map_err(|_| malformed("JWE", "protected header is not JSON"))?;
        shared.extend(p.as_object().cloned().unwrap_or_default());
    }
    if let Some(u) = v.get("unprotected").and_then(Value::as_object) {
        shared.extend(u.clone());
    }
    if shared.get("enc").and_then(Value::as_str) != Some("A256GCM") {
        return Err(ImageError::Unsupported {
            what: "JWE content encryption",
            value: shared.get("enc").map(Value::to_string).unwrap_or_default(),
        });
    }
    if shared.contains_key("zip") {
        return Err(ImageError::Unsupported {
            what: "JWE compression",
            value: "zip".into(),
        });
    }
    let recipients: Vec<Value> = match v.get("recipients").and_then(Value::as_array) {
        Some(r) => r.clone(),
        None => vec![
            json!({"header": v.get("header").cloned().unwrap_or(json!({})),
            "encrypted_key": v.get("encrypted_key").cloned().unwrap_or(Value::Null)}),
        ],
    };
    let iv: [u8; 12] = b64url(&v, "iv")?
        .try_into()
        .map_err(|_| malformed("JWE", "iv must be 12 bytes"))?;
    let mut ct = b64url(&v, "ciphertext")?;
    let tag = b64url(&v, "tag")?;
    if tag.len() != 16 {
        return Err(malformed("JWE", "tag must be 16 bytes"));
    }
    let aad = match field(&v, "aad") {
        Some(a) => format!("{protected_b64}.{a}"),
        None => protected_b64.to_string(),
    };
    for r in &recipients {
        let mut header = shared.clone();
        if let Some(h) = r.get("header").and_then(Value::as_object) {
            header.extend(h.clone());
        }
        let Ok(encrypted_key) = b64url(r, "encrypted_key") else {
            continue;
        };
        for key in keys {
            if let Some(cek) = recipient_cek(&header, &encrypted_key, key) {
                let k = LessSafeKey::new(
                    UnboundKey::new(&AES_256_GCM, &cek).map_err(|_| ImageError::Crypto)?,
                );
                let mut buf = ct.clone();
                buf.extend_from_slice(&tag);
                if let Ok(plain) = k.open_in_place(
                    Nonce::assume_unique_for_key(iv),
                    Aad::from(aad.as_bytes()),
                    &mut buf,
                ) {
                    let out = plain.to_vec();
                    ct.clear();
                    return Ok(out);
                }
            }
        }
    }
    Err(ImageError::Unwrap)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ec_pair(curve: Curve) -> (Vec<u8>, PrivateJweKey, Curve) {
        use aws_lc_rs::encoding::{AsDer, EcPrivateKeyRfc5915Der, PublicKeyX509Der};
        let k = PrivateKey::generate(curve.alg()).unwrap();
        let spki: PublicKeyX509Der = k.compute_public_key().unwrap().as_der().unwrap();
        let sec1: EcPrivateKeyRfc5915Der = k.as_der().unwrap();
        let pk = PrivateJweKey::from_pem(
            der::pem::encode_string("EC PRIVATE KEY", der::pem::LineEnding::LF, sec1.as_ref())
                .unwrap()
                .as_bytes(),
        )
        .unwrap();
        (
            der::pem::encode_string("PUBLIC KEY", der::pem::LineEnding::LF, spki.as_ref())
                .unwrap()
                .into_bytes(),
            pk,
            curve,
        )
    }

    #[test]
    fn round_trip_every_curve_and_several_recipients() {
        let pairs: Vec<_> = [Curve::P256, Curve::P384, Curve::P521]
            .into_iter()
            .map(ec_pair)
            .collect();
        let recipients: Vec<RecipientKey> = pairs
            .iter()
            .map(|(pem, _, _)| RecipientKey::from_pem(pem).unwrap())
            .collect();
        let jwe = encrypt(&recipients, b"{\"symkey\":\"k\"}").unwrap();
        for (_, key, curve) in &pairs {
            assert_eq!(
                decrypt(&jwe, std::slice::from_ref(key)).unwrap(),
                b"{\"symkey\":\"k\"}",
                "{curve:?}"
            );
        }
        // Someone else's key.
        let (_, other, _) = ec_pair(Curve::P256);
        assert_eq!(decrypt(&jwe, &[other]), Err(ImageError::Unwrap));
        // Any changed character of the ciphertext, tag or protected header.
        let v: Value = serde_json::from_slice(&jwe).unwrap();
        for k in ["ciphertext", "tag", "iv"] {
            let mut w = v.clone();
            let s = w[k].as_str().unwrap().to_string();
            let flipped = match s.strip_prefix('A') {
                Some(rest) => format!("B{rest}"),
                None => format!("A{}", &s[1..]),
            };
            w[k] = flipped.into();
            assert!(
                decrypt(w.to_string().as_bytes(), std::slice::from_ref(&pairs[0].1)).is_err(),
                "{k}"
            );
        }
        let mut w = v.clone();
        w["protected"] = B64URL.encode(br#"{"enc":"A256GCM","x":1}"#).into();
        assert!(decrypt(w.to_string().as_bytes(), std::slice::from_ref(&pairs[0].1)).is_err());
        let mut w = v.clone();
        w["protected"] = B64URL.encode(br#"{"enc":"A128GCM"}"#).into();
        assert!(matches!(
            decrypt(w.to_string().as_bytes(), std::slice::from_ref(&pairs[0].1)),
            Err(ImageError::Unsupported { .. })
        ));
    }

    #[test]
    fn keys_from_pem() {
        assert!(RecipientKey::from_pem(b"not pem").is_err());
        assert!(
            PrivateJweKey::from_pem(
                b"-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n"
            )
            .is_err()
        );
        let (pem, _, _) = ec_pair(Curve::P256);
        let as_private = String::from_utf8(pem)
            .unwrap()
            .replace("PUBLIC KEY", "PRIVATE KEY");
        assert!(PrivateJweKey::from_pem(as_private.as_bytes()).is_err());
    }
}
