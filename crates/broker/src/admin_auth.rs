//! Admin API authentication: `Authorization: Bearer <JWT>` signed (EdDSA or
//! ES256) by one of the configured public keys, with `iss`, `aud`, `exp` and
//! a `role` that the ACL maps to endpoint groups.

use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ED25519, UnparsedPublicKey, VerificationAlgorithm,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use der::Decode;
use serde_json::Value;

use crate::config::AdminConfig;

const OID_ED25519: &str = "1.3.101.112";
const OID_EC: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";

/// A trusted admin-token signer.
#[derive(Debug, Clone)]
pub struct AdminKey {
    alg: &'static str,
    raw: Vec<u8>,
}

impl AdminKey {
    /// Parses a PEM `PUBLIC KEY` (Ed25519 or P-256).
    pub fn from_pem(pem: &str) -> Result<Self, String> {
        let (label, der) =
            der::pem::decode_vec(pem.trim().as_bytes()).map_err(|e| e.to_string())?;
        if label != "PUBLIC KEY" {
            return Err(format!("expected a PUBLIC KEY PEM block, got {label}"));
        }
        let spki = x509_cert::spki::SubjectPublicKeyInfoOwned::from_der(&der)
            .map_err(|e| e.to_string())?;
        let raw = spki
            .subject_public_key
            .as_bytes()
            .ok_or("bad public key bits")?
            .to_vec();
        match spki.algorithm.oid.to_string().as_str() {
            OID_ED25519 => Ok(AdminKey { alg: "EdDSA", raw }),
            OID_EC => {
                let curve = spki
                    .algorithm
                    .parameters
                    .as_ref()
                    .and_then(|p| p.decode_as::<der::asn1::ObjectIdentifier>().ok())
                    .map(|o| o.to_string());
                if curve.as_deref() != Some(OID_P256) {
                    return Err("only P-256 EC keys (ES256) are supported".into());
                }
                Ok(AdminKey { alg: "ES256", raw })
            }
            other => Err(format!(
                "unsupported admin key algorithm {other} (use Ed25519 or P-256)"
            )),
        }
    }

    fn algorithm(&self) -> &'static dyn VerificationAlgorithm {
        if self.alg == "EdDSA" {
            &ED25519
        } else {
            &ECDSA_P256_SHA256_FIXED
        }
    }
}

/// Checks a Bearer token for an endpoint group. Returns the role.
pub fn authorize(
    token: &str,
    keys: &[AdminKey],
    cfg: &AdminConfig,
    group: &str,
    now: i64,
) -> Result<String, &'static str> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("malformed token");
    };
    let header: Value = B64URL
        .decode(h)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or("malformed token header")?;
    let alg = header["alg"].as_str().ok_or("token header has no alg")?;
    let sig = B64URL.decode(s).map_err(|_| "malformed token signature")?;
    let signed = token
        .get(..h.len() + 1 + p.len())
        .ok_or("malformed token")?;
    let ok = keys.iter().filter(|k| k.alg == alg).any(|k| {
        UnparsedPublicKey::new(k.algorithm(), &k.raw)
            .verify(signed.as_bytes(), &sig)
            .is_ok()
    });
    if !ok {
        return Err("token not signed by a configured admin key");
    }
    let claims: Value = B64URL
        .decode(p)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or("malformed token claims")?;
    let exp = claims["exp"].as_i64().ok_or("token has no exp")?;
    if now >= exp {
        return Err("token expired");
    }
    if let Some(nbf) = claims["nbf"].as_i64()
        && now < nbf
    {
        return Err("token not yet valid");
    }
    if claims["iss"].as_str() != Some(cfg.issuer.as_str()) {
        return Err("wrong token issuer");
    }
    let aud_ok = match &claims["aud"] {
        Value::String(a) => *a == cfg.audience,
        Value::Array(list) => list
            .iter()
            .any(|a| a.as_str() == Some(cfg.audience.as_str())),
        _ => false,
    };
    if !aud_ok {
        return Err("wrong token audience");
    }
    let role = claims["role"].as_str().ok_or("token has no role")?;
    let groups = cfg.roles.get(role).ok_or("role not allowed")?;
    if groups.iter().any(|g| g == "*" || g == group) {
        Ok(role.to_string())
    } else {
        Err("role not allowed for this endpoint")
    }
}
