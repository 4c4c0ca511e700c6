//! KBS protocol messages (kbs-types 0.18 field names, exactly).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

/// The only protocol version Veil speaks (Trustee requires `=0.4.0`).
pub const PROTOCOL_VERSION: &str = "0.4.0";

/// The session cookie name.
pub const SESSION_COOKIE: &str = "kbs-session-id";

/// `POST /kbs/v0/auth` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub version: String,
    pub tee: String,
    #[serde(rename = "extra-params", default)]
    pub extra_params: Value,
}

/// `POST /kbs/v0/auth` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Challenge {
    /// Standard base64 (padded) of 32 random bytes.
    pub nonce: String,
    /// An empty string except for IBM SE.
    #[serde(rename = "extra-params")]
    pub extra_params: Value,
}

/// Init-data as the guest sends it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InitData {
    pub format: String,
    pub body: String,
}

/// The runtime data bound into the evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuntimeData {
    pub nonce: String,
    /// A JWK (`kty` EC or RSA), kept as received: its canonical JSON is hashed.
    #[serde(rename = "tee-pubkey")]
    pub tee_pubkey: Value,
}

/// Primary evidence plus the additional (device) evidence string.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CompositeEvidence {
    /// Kept as the bytes received (the verifier's parser reads them; no
    /// intermediate JSON tree, no re-serialisation).
    pub primary_evidence: Box<RawValue>,
    /// A JSON string `{"<tee>": <evidence>, ...}`, or `""` when there is none.
    #[serde(default)]
    pub additional_evidence: String,
}

/// `POST /kbs/v0/attest` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Attestation {
    #[serde(rename = "init-data", default)]
    pub init_data: Option<InitData>,
    #[serde(rename = "runtime-data")]
    pub runtime_data: RuntimeData,
    #[serde(rename = "tee-evidence")]
    pub tee_evidence: CompositeEvidence,
}

/// `POST /kbs/v0/attest` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttestationToken {
    pub token: String,
}

/// A resource, as a flattened JWE (all fields base64url without padding).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub protected: String,
    pub encrypted_key: String,
    pub iv: String,
    pub ciphertext: String,
    pub tag: String,
}

/// An error body: a stable `type` and a short `detail`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorInformation {
    #[serde(rename = "type")]
    pub error_type: String,
    pub detail: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names_are_exact() {
        let a: Attestation = serde_json::from_str(
            r#"{"init-data":null,"runtime-data":{"nonce":"n","tee-pubkey":{"kty":"EC"}},
                "tee-evidence":{"primary_evidence":{"svn":"1"},"additional_evidence":""}}"#,
        )
        .unwrap();
        assert_eq!(a.runtime_data.nonce, "n");
        assert_eq!(a.tee_evidence.primary_evidence.get(), r#"{"svn":"1"}"#);
        let v = serde_json::to_value(&a).unwrap();
        assert!(v.get("runtime-data").is_some() && v.get("tee-evidence").is_some());
        let c = serde_json::to_string(&Challenge {
            nonce: "x".into(),
            extra_params: Value::String(String::new()),
        })
        .unwrap();
        assert_eq!(c, r#"{"nonce":"x","extra-params":""}"#);
        let r: Request =
            serde_json::from_str(r#"{"version":"0.4.0","tee":"snp","extra-params":{}}"#).unwrap();
        assert_eq!(r.tee, "snp");
    }
}
