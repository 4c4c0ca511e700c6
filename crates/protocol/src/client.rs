//! A KBS protocol 0.4.0 client: `/auth` → `/attest` → `/resource`, with the
//! evidence supplied by the caller (an attester) for the binding digest the
//! client computes. The cookie carries the session; the token is returned for
//! Bearer use.

use serde_json::{Value, json};

use crate::binding;
use crate::jwe::{KeyAlgorithm, TeeKeyPair};
use crate::types::{
    Attestation, AttestationToken, Challenge, CompositeEvidence, Response, RuntimeData,
};

/// A failed step, with the HTTP status when there was one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    #[error("HTTP request to {step} failed: {detail}")]
    Transport { step: &'static str, detail: String },
    #[error("{step} answered HTTP {status}: {detail}")]
    Status {
        step: &'static str,
        status: u16,
        detail: String,
    },
    #[error("{0}")]
    Protocol(String),
}

/// One guest's connection to a broker, with its TEE key.
#[derive(Debug)]
pub struct KbsClient {
    http: reqwest::Client,
    base: String,
    key: TeeKeyPair,
}

impl KbsClient {
    /// A client with a fresh TEE key of the given kind.
    pub fn new(base_url: &str, alg: KeyAlgorithm) -> Result<Self, ClientError> {
        Self::with_http(base_url, alg, reqwest::Client::builder().cookie_store(true))
    }

    /// A client with a fresh TEE key over an existing HTTP client (which
    /// must have a cookie store): connections are kept alive and reused.
    pub fn with_client(
        base_url: &str,
        alg: KeyAlgorithm,
        http: reqwest::Client,
    ) -> Result<Self, ClientError> {
        Ok(KbsClient {
            http,
            base: base_url.trim_end_matches('/').to_string(),
            key: TeeKeyPair::generate(alg).map_err(|e| ClientError::Protocol(e.to_string()))?,
        })
    }

    /// A client with a configured HTTP builder (extra CA, timeouts).
    pub fn with_http(
        base_url: &str,
        alg: KeyAlgorithm,
        builder: reqwest::ClientBuilder,
    ) -> Result<Self, ClientError> {
        let http = builder
            .cookie_store(true)
            .build()
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        Ok(KbsClient {
            http,
            base: base_url.trim_end_matches('/').to_string(),
            key: TeeKeyPair::generate(alg).map_err(|e| ClientError::Protocol(e.to_string()))?,
        })
    }

    /// The TEE key pair.
    pub fn key(&self) -> &TeeKeyPair {
        &self.key
    }

    async fn post<B: serde::Serialize + ?Sized>(
        &self,
        step: &'static str,
        body: &B,
    ) -> Result<Value, ClientError> {
        let r = self
            .http
            .post(format!("{}/kbs/v0/{step}", self.base))
            .json(body)
            .send()
            .await
            .map_err(|e| ClientError::Transport {
                step,
                detail: e.to_string(),
            })?;
        let status = r.status().as_u16();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        if status != 200 {
            return Err(ClientError::Status {
                step,
                status,
                detail: v["detail"].as_str().unwrap_or("").to_string(),
            });
        }
        Ok(v)
    }

    /// The full handshake. `evidence` receives the challenge nonce and the
    /// 48-byte binding digest and returns the primary evidence JSON.
    pub async fn attest<F, E>(&self, tee: &str, evidence: F) -> Result<String, ClientError>
    where
        F: FnOnce(&str, &[u8; 48]) -> Result<E, String>,
        E: serde::Serialize,
    {
        self.attest_with_init_data(tee, None, evidence).await
    }

    /// The full handshake, sending init-data (TOML) with the attestation.
    pub async fn attest_with_init_data<F, E>(
        &self,
        tee: &str,
        init_data: Option<&crate::types::InitData>,
        evidence: F,
    ) -> Result<String, ClientError>
    where
        F: FnOnce(&str, &[u8; 48]) -> Result<E, String>,
        E: serde::Serialize,
    {
        self.attest_composite(tee, init_data, |_, _| Ok(String::new()), evidence)
            .await
    }

    /// The full handshake with device (additional) evidence: `devices`
    /// receives the nonce and the device binding digest
    /// (`SHA-384(JCS({"nonce", "tee-pubkey"}))`) and returns the
    /// `additional_evidence` string (`{"<tee>": evidence, …}` or `""`);
    /// `evidence` then receives the primary digest, which covers that string.
    pub async fn attest_composite<D, F, E>(
        &self,
        tee: &str,
        init_data: Option<&crate::types::InitData>,
        devices: D,
        evidence: F,
    ) -> Result<String, ClientError>
    where
        D: FnOnce(&str, &[u8; 48]) -> Result<String, String>,
        F: FnOnce(&str, &[u8; 48]) -> Result<E, String>,
        E: serde::Serialize,
    {
        let c = self
            .post(
                "auth",
                &json!({"version": crate::PROTOCOL_VERSION, "tee": tee, "extra-params": {}}),
            )
            .await?;
        let c: Challenge = serde_json::from_value(c)
            .map_err(|e| ClientError::Protocol(format!("challenge: {e}")))?;
        let jwk = self
            .key
            .public_jwk()
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let device_digest =
            binding::device_digest(&c.nonce, &jwk).map_err(ClientError::Protocol)?;
        let additional = devices(&c.nonce, &device_digest).map_err(ClientError::Protocol)?;
        let digest =
            binding::primary_digest(&c.nonce, &jwk, &additional).map_err(ClientError::Protocol)?;
        let ev = evidence(&c.nonce, &digest).map_err(ClientError::Protocol)?;
        // The evidence is serialised once into the body's raw member:
        // evidence given as JSON text (`RawValue`) is copied, not parsed
        // into a tree.
        let primary_evidence = serde_json::value::to_raw_value(&ev)
            .map_err(|e| ClientError::Protocol(format!("evidence: {e}")))?;
        let t = self
            .post(
                "attest",
                &Attestation {
                    init_data: init_data.cloned(),
                    runtime_data: RuntimeData {
                        nonce: c.nonce,
                        tee_pubkey: jwk,
                    },
                    tee_evidence: CompositeEvidence {
                        primary_evidence,
                        additional_evidence: additional,
                    },
                },
            )
            .await?;
        let t: AttestationToken =
            serde_json::from_value(t).map_err(|e| ClientError::Protocol(format!("token: {e}")))?;
        Ok(t.token)
    }

    /// Fetches and decrypts a resource (`repo/type/tag`), with the token as
    /// Bearer when given, else the session cookie.
    pub async fn resource(&self, path: &str, token: Option<&str>) -> Result<Vec<u8>, ClientError> {
        self.resource_from(&self.base, path, token).await
    }

    /// [`KbsClient::resource`] from another broker URL (another replica of
    /// the same broker, behind no sticky load balancer).
    pub async fn resource_from(
        &self,
        base: &str,
        path: &str,
        token: Option<&str>,
    ) -> Result<Vec<u8>, ClientError> {
        let step = "resource";
        let base = base.trim_end_matches('/');
        let mut r = self.http.get(format!("{base}/kbs/v0/resource/{path}"));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        let r = r.send().await.map_err(|e| ClientError::Transport {
            step,
            detail: e.to_string(),
        })?;
        let status = r.status().as_u16();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        if status != 200 {
            return Err(ClientError::Status {
                step,
                status,
                detail: v["detail"].as_str().unwrap_or("").to_string(),
            });
        }
        let jwe: Response =
            serde_json::from_value(v).map_err(|e| ClientError::Protocol(format!("JWE: {e}")))?;
        self.key
            .decrypt(&jwe)
            .map_err(|e| ClientError::Protocol(e.to_string()))
    }
}
