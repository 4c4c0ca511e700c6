//! Attestation results as EAR (draft-ietf-rats-ear-04) in a compact JWS,
//! signed ES256 by a key kept in the store (sealed under the KEK) and created
//! once, race-free, on first start. The public key is served as a JWKS.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair,
    UnparsedPublicKey,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use serde_json::{Map, Value, json};

use crate::policy::Input;
use crate::secrets::Kek;
use crate::store::{Namespace, Store};

/// The EAR profile Veil emits.
pub const EAR_PROFILE: &str = "tag:ietf.org,2026:rats/ear#04";
const KEY_RECORD: &str = "token-signing-key";

/// Most tokens remembered as issued (see [`TokenKeys::verify`]).
const ISSUED_ENTRIES: usize = 4096;

/// A verified token's claims as the resource endpoint uses them: the
/// resource policy's input and the TEE public key (JWK) the token binds.
#[derive(Debug)]
pub struct TokenClaims {
    input: Input,
    tee_pubkey: Option<Value>,
}

impl TokenClaims {
    fn new(input: Input) -> Self {
        let tee_pubkey = input.json().and_then(tee_pubkey).cloned();
        TokenClaims { input, tee_pubkey }
    }

    /// The same claims with the input in regorus form only
    /// ([`Input::into_rego_only`]): how the issuing replica keeps them.
    fn into_rego_only(self) -> Self {
        TokenClaims {
            input: self.input.into_rego_only(),
            tee_pubkey: self.tee_pubkey,
        }
    }

    /// The claims as a policy input.
    pub fn input(&self) -> &Input {
        &self.input
    }

    /// The TEE public key the token binds, as a JWK.
    pub fn tee_pubkey(&self) -> Option<&Value> {
        self.tee_pubkey.as_ref()
    }
}

/// Tokens this process issued, oldest first out: SHA-256 of the compact
/// JWS → (`exp`, claims), and the hashes in the order they were issued.
/// The claims are kept in regorus form only (the form the resource policy
/// reads) with the TEE key: half the memory of keeping the JSON too, and
/// the JSON tree is freed right after signing, while it is still in cache,
/// instead of when the entry is evicted (which had grown to 6 % of the
/// broker's time in long benchmark runs).
/// A full map gives up its oldest entry per insert, so no insert pays for
/// more than one eviction (clearing thousands of claim trees at once under
/// the lock stalled every request of the replica).
#[derive(Debug, Default)]
struct Issued {
    claims: HashMap<[u8; 32], (i64, Arc<TokenClaims>)>,
    order: VecDeque<[u8; 32]>,
}

impl Issued {
    /// Records a token; returns the evicted entry's claims so that the
    /// caller frees them after releasing the lock.
    fn insert(
        &mut self,
        hash: [u8; 32],
        exp: i64,
        claims: Arc<TokenClaims>,
        cap: usize,
    ) -> Option<Arc<TokenClaims>> {
        let evicted = if self.order.len() >= cap {
            self.order
                .pop_front()
                .and_then(|old| self.claims.remove(&old))
                .map(|(_, c)| c)
        } else {
            None
        };
        self.claims.insert(hash, (exp, claims));
        self.order.push_back(hash);
        evicted
    }
}

/// The token signer and verifier.
#[derive(Debug)]
pub struct TokenKeys {
    key: EcdsaKeyPair,
    kid: String,
    jwk: Value,
    /// Tokens this process signed, by SHA-256 of the compact JWS, with
    /// their claims: a guest usually presents its token to the replica
    /// that issued it a moment earlier, which then skips the signature
    /// check and the decoding. Identical bytes are the token signed here;
    /// expiry is still checked on every use. Other replicas' tokens are
    /// verified in full.
    issued: std::sync::Mutex<Issued>,
    /// Most tokens remembered in `issued`.
    issued_cap: usize,
}

fn token_hash(token: &str) -> [u8; 32] {
    use veil_verifier::crypto::{AWS_LC, CryptoBackend as _};
    AWS_LC.sha256(token.as_bytes())
}

fn thumbprint(jwk: &Value) -> String {
    // RFC 7638: SHA-256 over the required members in lexicographic order.
    let canonical = format!(
        r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
        jwk["crv"].as_str().unwrap_or(""),
        jwk["x"].as_str().unwrap_or(""),
        jwk["y"].as_str().unwrap_or("")
    );
    B64URL.encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        canonical.as_bytes(),
    ))
}

impl TokenKeys {
    /// Loads the signing key from the store, creating it on first start.
    pub async fn load_or_create(store: &dyn Store, kek: &Kek) -> Result<Self, String> {
        let aad = format!("{}/{KEY_RECORD}", Namespace::Meta.name());
        let fresh = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
            .map_err(|_| "key generation failed".to_string())?;
        let pkcs8 = fresh
            .to_pkcs8v1()
            .map_err(|_| "key export failed".to_string())?;
        let sealed = kek.seal(&aad, pkcs8.as_ref())?;
        let stored = store
            .put_if_absent(Namespace::Meta, KEY_RECORD, sealed)
            .await
            .map_err(|e| e.to_string())?;
        let pkcs8 = kek.open(&aad, &stored)?;
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8)
            .map_err(|_| "stored token key is invalid".to_string())?;
        let point = key.public_key().as_ref();
        let (x, y) = point
            .get(1..)
            .map(|xy| xy.split_at(32))
            .ok_or("bad point")?;
        let mut jwk = json!({"kty":"EC","crv":"P-256","x":B64URL.encode(x),"y":B64URL.encode(y),"alg":"ES256","use":"sig"});
        let kid = thumbprint(&jwk);
        jwk["kid"] = Value::String(kid.clone());
        Ok(TokenKeys {
            key,
            kid,
            jwk,
            issued: std::sync::Mutex::new(Issued::default()),
            issued_cap: ISSUED_ENTRIES,
        })
    }

    /// The JWKS document.
    pub fn jwks(&self) -> Value {
        json!({"keys": [self.jwk]})
    }

    /// Signs claims as a compact JWS; returns the token (with its
    /// segments as signed) and the claims (kept, not copied, for this
    /// replica's own checks of the token).
    pub fn sign(&self, claims: Input) -> Result<(SignedToken, Arc<TokenClaims>), String> {
        let json = claims.json().ok_or("claims without their JSON form")?;
        let header = json!({"alg":"ES256","typ":"JWT","kid":self.kid})
            .to_string()
            .into_bytes();
        let payload = serde_json::to_vec(json).map_err(|e| e.to_string())?;
        let signing_input = format!("{}.{}", B64URL.encode(&header), B64URL.encode(&payload));
        let signature = self
            .key
            .sign(&SystemRandom::new(), signing_input.as_bytes())
            .map_err(|_| "signing failed".to_string())?
            .as_ref()
            .to_vec();
        let token = format!("{signing_input}.{}", B64URL.encode(&signature));
        let exp = json.get("exp").and_then(Value::as_i64);
        let claims = Arc::new(TokenClaims::new(claims).into_rego_only());
        if let Some(exp) = exp {
            let hash = token_hash(&token);
            let evicted = match self.issued.lock() {
                Ok(mut issued) => issued.insert(hash, exp, claims.clone(), self.issued_cap),
                Err(_) => None,
            };
            drop(evicted);
        }
        let signed = SignedToken {
            compact: token,
            header,
            payload,
            signature,
        };
        Ok((signed, claims))
    }

    /// Verifies a token: signature by this key, `exp` in the future.
    /// Returns the claims.
    pub fn verify(&self, token: &str, now: i64) -> Result<Arc<TokenClaims>, &'static str> {
        let hash = token_hash(token);
        if let Ok(issued) = self.issued.lock()
            && let Some((exp, claims)) = issued.claims.get(&hash)
        {
            return if now >= *exp {
                Err("token expired")
            } else {
                Ok(claims.clone())
            };
        }
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err("not a compact JWS");
        };
        let header: Value = B64URL
            .decode(h)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or("bad token header")?;
        if header["alg"] != "ES256" || header["kid"] != self.kid.as_str() {
            return Err("token not signed by this broker");
        }
        let sig = B64URL.decode(s).map_err(|_| "bad token signature")?;
        let signing_input_len = h.len() + 1 + p.len();
        let signing_input = token.get(..signing_input_len).ok_or("bad token")?;
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, self.key.public_key().as_ref())
            .verify(signing_input.as_bytes(), &sig)
            .map_err(|_| "token signature does not verify")?;
        let claims: Value = B64URL
            .decode(p)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or("bad token claims")?;
        let exp = claims["exp"].as_i64().ok_or("token has no exp")?;
        if now >= exp {
            return Err("token expired");
        }
        Ok(Arc::new(TokenClaims::new(Input::new(claims))))
    }
}

/// A token as [`TokenKeys::sign`] made it: the compact JWS, and its three
/// segments before base64url (what the session record stores, so that
/// `/attest` does not decode what it has just encoded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedToken {
    pub compact: String,
    pub header: Vec<u8>,
    pub payload: Vec<u8>,
    pub signature: Vec<u8>,
}

/// AR4SI tiers → EAR status of one submod.
pub fn ear_status(vector: &Map<String, Value>) -> &'static str {
    let vals: Vec<i64> = vector.values().filter_map(Value::as_i64).collect();
    if vals
        .iter()
        .any(|v| (96..=127).contains(v) || (-128..=-97).contains(v))
    {
        "contraindicated"
    } else if vals
        .iter()
        .any(|v| (32..=95).contains(v) || (-96..=-33).contains(v))
    {
        "warning"
    } else if vals
        .iter()
        .any(|v| (2..=31).contains(v) || (-32..=-2).contains(v))
    {
        "affirming"
    } else {
        "none"
    }
}

/// Inputs of one submod's appraisal.
#[derive(Debug, Clone)]
pub struct Submod {
    pub name: String,
    pub vector: Map<String, Value>,
    pub policy_id: String,
    pub attester_claims: Value,
    /// The regorus form of `attester_claims`, when the attestation policy
    /// made one (reused by the token's policy input: `policy::ear_input`).
    pub attester_rego: Option<regorus::Value>,
}

/// The EAR-04 claim of a submod's attester claims.
pub const ATTESTER_CLAIMS: &str = "ear_attester_claims";
/// The older dotted name of the same (`token_dotted_claims`).
pub const ANNOTATED_EVIDENCE: &str = "ear.veraison.annotated-evidence";

/// Builds the EAR claims set (the submods' claims are moved in, not
/// copied).
pub fn ear_claims(submods: Vec<Submod>, nonce: &str, iat: i64, ttl: i64, dotted: bool) -> Value {
    let mut subs = Map::new();
    for s in submods {
        let status = ear_status(&s.vector);
        let mut m = Map::new();
        m.insert("ear_status".into(), Value::from(status));
        if dotted {
            m.insert("ear.status".into(), Value::from(status));
            m.insert(
                "ear.trustworthiness-vector".into(),
                Value::Object(s.vector.clone()),
            );
            m.insert(
                "ear.appraisal-policy-id".into(),
                Value::from(s.policy_id.as_str()),
            );
            m.insert(ANNOTATED_EVIDENCE.into(), s.attester_claims.clone());
        }
        m.insert("ear_trustworthiness_vector".into(), Value::Object(s.vector));
        m.insert(
            "ear_appraisal_policy_ids".into(),
            Value::Array(vec![Value::String(s.policy_id)]),
        );
        m.insert(ATTESTER_CLAIMS.into(), s.attester_claims);
        subs.insert(s.name, Value::Object(m));
    }
    // Built by hand rather than with `json!`, which would serialise the
    // submods (the whole claims tree) into a copy and drop the original.
    let mut ear = Map::new();
    ear.insert("eat_profile".into(), Value::from(EAR_PROFILE));
    ear.insert("iat".into(), Value::from(iat));
    ear.insert("exp".into(), Value::from(iat + ttl));
    ear.insert(
        "ear_verifier_id".into(),
        json!({"developer": "veil", "build": concat!("veil ", env!("CARGO_PKG_VERSION"))}),
    );
    ear.insert("eat_nonce".into(), Value::from(nonce));
    ear.insert("submods".into(), Value::Object(subs));
    Value::Object(ear)
}

/// The TEE public key bound by a token (EAR-04 or dotted names).
pub fn tee_pubkey(claims: &Value) -> Option<&Value> {
    let cpu = claims.get("submods")?.get("cpu0")?;
    cpu.get(ATTESTER_CLAIMS)
        .or_else(|| cpu.get(ANNOTATED_EVIDENCE))?
        .get("runtime_data_claims")?
        .get("tee-pubkey")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An integer claim, read from the regorus form (which every path
    /// keeps).
    fn claim(c: &TokenClaims, name: &str) -> i64 {
        c.input().rego()[&regorus::Value::from(name)]
            .as_i64()
            .unwrap()
    }

    #[test]
    fn ear_claims_names_and_dotted_option() {
        let s = Submod {
            name: "cpu0".into(),
            vector: [("hardware".to_string(), json!(2))].into_iter().collect(),
            policy_id: "default_cpu".into(),
            attester_claims: json!({"tee":"snp","runtime_data_claims":{"tee-pubkey":{"kty":"EC"}}}),
            attester_rego: None,
        };
        let c = ear_claims(vec![s.clone()], "n", 100, 300, false);
        // Exactly the EAR's top-level claims, nothing else.
        let names: Vec<&str> = c.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "ear_verifier_id",
                "eat_nonce",
                "eat_profile",
                "exp",
                "iat",
                "submods"
            ]
        );
        assert_eq!(c["iat"], 100);
        assert_eq!(c["ear_verifier_id"]["developer"], "veil");
        assert_eq!(c["eat_profile"], EAR_PROFILE);
        assert_eq!(c["exp"], 400);
        assert_eq!(c["eat_nonce"], "n");
        assert_eq!(c["submods"]["cpu0"]["ear_status"], "affirming");
        assert!(c["submods"]["cpu0"].get("ear.status").is_none());
        assert_eq!(tee_pubkey(&c), Some(&json!({"kty":"EC"})));
        let d = ear_claims(vec![s], "n", 100, 300, true);
        assert_eq!(d["submods"]["cpu0"]["ear.status"], "affirming");
        assert_eq!(
            d["submods"]["cpu0"]["ear.trustworthiness-vector"]["hardware"],
            2
        );
        // A dotted-only token (older CoCo AS) still yields its TEE key.
        let old = json!({"submods":{"cpu0":{"ear.veraison.annotated-evidence":{"runtime_data_claims":{"tee-pubkey":{"kty":"RSA"}}}}}});
        assert_eq!(tee_pubkey(&old), Some(&json!({"kty":"RSA"})));
    }

    #[tokio::test]
    async fn token_round_trip_and_tampering() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::embedded::EmbeddedStore::open(dir.path()).unwrap();
        let kek = Kek::from_bytes(&[1; 32]).unwrap();
        let keys = TokenKeys::load_or_create(&store, &kek).await.unwrap();
        let again = TokenKeys::load_or_create(&store, &kek).await.unwrap();
        assert_eq!(keys.jwks(), again.jwks(), "one key per store");
        let (signed, claims) = keys.sign(Input::new(json!({"exp": 200, "x": 1}))).unwrap();
        let t = signed.compact.clone();
        // The segments as signed are the token's, before base64url.
        assert_eq!(
            t,
            [&signed.header, &signed.payload, &signed.signature]
                .map(|seg| B64URL.encode(seg))
                .join(".")
        );
        assert_eq!(signed.signature.len(), 64);
        assert_eq!(claim(&claims, "x"), 1);
        // Kept by the issuer in regorus form only.
        assert!(claims.input().json().is_none());
        let other = again.verify(&t, 100).unwrap();
        assert_eq!(claim(&other, "x"), 1);
        assert_eq!(other.input().json().unwrap()["x"], 1);
        assert_eq!(keys.verify(&t, 200).err(), Some("token expired"));
        let mut parts: Vec<&str> = t.split('.').collect();
        let forged = B64URL.encode(json!({"exp": 999, "x": 2}).to_string());
        parts[1] = &forged;
        assert!(keys.verify(&parts.join("."), 100).is_err());
        assert!(keys.verify("a.b", 100).is_err());
    }

    #[tokio::test]
    async fn issued_tokens_evict_oldest_first_and_still_verify() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::embedded::EmbeddedStore::open(dir.path()).unwrap();
        let kek = Kek::from_bytes(&[1; 32]).unwrap();
        let mut keys = TokenKeys::load_or_create(&store, &kek).await.unwrap();
        keys.issued_cap = 2;
        let tokens: Vec<String> = (0..3)
            .map(|i| {
                keys.sign(Input::new(json!({"exp": 200, "i": i})))
                    .unwrap()
                    .0
                    .compact
            })
            .collect();
        {
            let issued = keys.issued.lock().unwrap();
            assert_eq!(issued.claims.len(), 2);
            assert_eq!(issued.order.len(), 2);
            assert!(!issued.claims.contains_key(&token_hash(&tokens[0])));
            assert!(issued.claims.contains_key(&token_hash(&tokens[2])));
        }
        // The evicted token is verified in full; the remembered ones by hash;
        // both paths check expiry.
        for (i, t) in tokens.iter().enumerate() {
            assert_eq!(claim(&keys.verify(t, 100).unwrap(), "i"), i as i64);
            assert_eq!(keys.verify(t, 200).err(), Some("token expired"));
        }
    }

    #[test]
    fn statuses() {
        let v = |pairs: &[(&str, i64)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), json!(v)))
                .collect::<Map<_, _>>()
        };
        assert_eq!(
            ear_status(&v(&[("hardware", 2), ("configuration", 0)])),
            "affirming"
        );
        assert_eq!(
            ear_status(&v(&[("hardware", 2), ("executables", 33)])),
            "warning"
        );
        assert_eq!(
            ear_status(&v(&[("hardware", 97), ("executables", 2)])),
            "contraindicated"
        );
        assert_eq!(ear_status(&v(&[("hardware", 0)])), "none");
    }
}
