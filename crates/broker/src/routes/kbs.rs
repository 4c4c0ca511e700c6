//! The KBS protocol endpoints: `/auth`, `/attest`, `GET /resource/...`.

use std::collections::BTreeMap;

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use veil_protocol::binding;
use veil_protocol::jwe::{self, TeePublicKey};
use veil_protocol::types::{Attestation, AttestationToken, Challenge, Request, SESSION_COOKIE};
use veil_verifier::UnixTime;

use super::{AppState, bearer, body, json, now, valid_segment};
use crate::Broker;
use crate::error::ApiError;
use crate::policy::{
    DEFAULT_ATTESTATION_POLICY, DEFAULT_CPU_POLICY_ID, DEFAULT_RESOURCE_POLICY, Input, Prepared,
    Rule, ear_input, reference_data,
};
use crate::session::Session;
use crate::store::{Namespace, session_key};
use crate::token::{Submod, ear_claims, ear_status};
use crate::verifiers::InitDataDigest;

/// A session's challenge. It is not stored: it travels sealed (AES-256-GCM
/// under the KEK) in the `kbs-session-id` cookie, so `/auth` writes nothing
/// and any replica can open the cookie. Single use is enforced when an
/// attestation succeeds: `/attest` creates the record keyed by the nonce
/// (holding the token, or marking the challenge used when the evidence
/// failed), and the store's unique key lets exactly one request do so:
/// one store write per handshake.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SealedChallenge {
    tee: String,
    nonce: String,
    expires: i64,
}

/// The AAD of session cookies (distinct from every stored record's).
const COOKIE_AAD: &str = "kbs-session-cookie/v1";

/// Longest cookie value accepted (a sealed challenge is about 170 bytes).
const MAX_COOKIE: usize = 512;

fn seal_cookie(b: &Broker, c: &SealedChallenge) -> Result<String, ApiError> {
    let plain = serde_json::to_vec(c).map_err(|_| ApiError::Internal)?;
    let sealed = b.kek.seal(COOKIE_AAD, &plain).map_err(|e| {
        tracing::error!(error = %e, "sealing a session cookie failed");
        ApiError::Internal
    })?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sealed))
}

/// The challenge in a session cookie, if it was sealed by this broker (or
/// a replica sharing its KEK) and is intact.
fn open_cookie(b: &Broker, value: &str) -> Option<SealedChallenge> {
    let sealed = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(value)
        .ok()?;
    let plain = b.kek.open(COOKIE_AAD, &sealed).ok()?;
    serde_json::from_slice(&plain).ok()
}

fn random_b64(n: usize) -> Result<String, ApiError> {
    let mut buf = vec![0u8; n];
    SystemRandom::new()
        .fill(&mut buf)
        .map_err(|_| ApiError::Internal)?;
    Ok(base64::engine::general_purpose::STANDARD.encode(buf))
}

fn cookie(headers: &HeaderMap) -> Option<String> {
    headers.get_all(COOKIE).iter().find_map(|v| {
        v.to_str().ok()?.split(';').find_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            (k == SESSION_COOKIE && !v.is_empty() && v.len() <= MAX_COOKIE).then(|| v.to_string())
        })
    })
}

fn set_cookie(b: &Broker, id: &str) -> Result<HeaderValue, ApiError> {
    let secure = if b.tls { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={id}; Path=/kbs/v0; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        b.cfg.session_ttl_secs
    ))
    .map_err(|_| ApiError::Internal)
}

/// `POST /kbs/v0/auth`.
pub(crate) async fn auth(
    State(b): State<AppState>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: Request = json(&body(raw)?)?;
    if req.version != veil_protocol::PROTOCOL_VERSION {
        return Err(ApiError::ProtocolVersion(format!(
            "protocol version {:?} is not supported; this broker speaks {}",
            req.version,
            veil_protocol::PROTOCOL_VERSION
        )));
    }
    if b.registry.get(&req.tee).is_none() {
        let hint = if req.tee == "sample" {
            " (sample evidence is disabled: dangerous_accept_sample_evidence)"
        } else {
            ""
        };
        return Err(ApiError::UnsupportedTee(format!(
            "TEE {:?} is not accepted by this broker{hint}; accepted: {}",
            req.tee,
            b.registry.tees().join(", ")
        )));
    }
    let nonce = random_b64(32)?;
    let id = seal_cookie(
        &b,
        &SealedChallenge {
            tee: req.tee,
            nonce: nonce.clone(),
            expires: now() + b.cfg.session_ttl_secs as i64,
        },
    )?;
    let mut resp = Json(Challenge {
        nonce,
        extra_params: Value::String(String::new()),
    })
    .into_response();
    resp.headers_mut().insert(SET_COOKIE, set_cookie(&b, &id)?);
    Ok(resp)
}

/// Parses init-data TOML and digests its raw bytes.
fn init_data_digest(
    init: &veil_protocol::types::InitData,
) -> Result<(InitDataDigest, Value), ApiError> {
    if init.format != "toml" {
        return Err(ApiError::BadRequest(format!(
            "init-data format {:?} is not supported (toml)",
            init.format
        )));
    }
    let doc: toml::Table = init
        .body
        .parse()
        .map_err(|_| ApiError::BadRequest("init-data body is not valid TOML".into()))?;
    let algorithm = doc
        .get("algorithm")
        .and_then(toml::Value::as_str)
        .ok_or_else(|| ApiError::BadRequest("init-data has no algorithm".into()))?
        .to_string();
    let alg = match algorithm.as_str() {
        "sha256" => &aws_lc_rs::digest::SHA256,
        "sha384" => &aws_lc_rs::digest::SHA384,
        "sha512" => &aws_lc_rs::digest::SHA512,
        other => {
            return Err(ApiError::BadRequest(format!(
                "init-data algorithm {other:?} is not supported"
            )));
        }
    };
    let digest = aws_lc_rs::digest::digest(alg, init.body.as_bytes())
        .as_ref()
        .to_vec();
    let data = doc
        .get("data")
        .map(|d| serde_json::to_value(d).unwrap_or(Value::Null))
        .unwrap_or(Value::Null);
    Ok((InitDataDigest { algorithm, digest }, data))
}

async fn reference_values(b: &Broker) -> Result<Value, ApiError> {
    let mut out = serde_json::Map::new();
    let t = now();
    for (name, raw) in b.store.scan(Namespace::ReferenceValues).await? {
        let Ok(rv) = serde_json::from_slice::<super::admin::ReferenceValue>(&raw) else {
            tracing::error!(name, "unreadable reference value");
            continue;
        };
        if rv.expires.is_some_and(|e| e <= t) {
            continue;
        }
        out.insert(rv.name, Value::Array(rv.values));
    }
    Ok(Value::Object(out))
}

/// A policy by id from the store (or the built-in default), prepared for
/// `rule` and the data document `data` (parsed and analysed once per
/// distinct text and data).
pub(crate) async fn policy(
    b: &Broker,
    key: &str,
    default: &str,
    rule: Rule,
    data: &Value,
) -> Result<Prepared, ApiError> {
    let stored = b.store.get(Namespace::Policies, key).await?;
    let text = match &stored {
        Some(t) => std::str::from_utf8(t).map_err(|_| ApiError::Internal)?,
        None => default,
    };
    b.policy_cache.prepared(key, text, rule, data).map_err(|e| {
        tracing::error!(policy = key, error = %e, "stored policy does not compile");
        ApiError::Internal
    })
}

/// Uses a challenge: exactly one request (on any replica) creates the
/// record keyed by its nonce (and expiry), in one store write; every
/// other request with the same challenge gets 409, whatever its evidence.
async fn use_challenge(
    b: &Broker,
    nonce: &str,
    expires: i64,
    record: Vec<u8>,
) -> Result<(), ApiError> {
    let key = session_key(expires, nonce);
    if b.store
        .insert_expiring(Namespace::Sessions, &key, record, expires)
        .await?
    {
        Ok(())
    } else {
        Err(ApiError::NonceReused)
    }
}

/// `POST /kbs/v0/attest`.
pub(crate) async fn attest(
    State(b): State<AppState>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let id = cookie(&headers).ok_or_else(|| {
        ApiError::Unauthenticated("no kbs-session-id cookie; start with /auth".into())
    })?;
    let challenge = open_cookie(&b, &id)
        .ok_or_else(|| ApiError::Unauthenticated("unknown session; start with /auth".into()))?;
    if challenge.expires < now() {
        return Err(ApiError::Unauthenticated(
            "session expired; start again with /auth".into(),
        ));
    }
    let SealedChallenge {
        tee,
        nonce,
        expires,
    } = challenge;
    let att: Attestation = json(&body(raw)?)?;
    if att.runtime_data.nonce != nonce {
        return Err(ApiError::Unauthenticated(
            "runtime-data nonce does not match this session's challenge".into(),
        ));
    }
    let key = TeePublicKey::from_jwk(&att.runtime_data.tee_pubkey)
        .map_err(|e| ApiError::BadRequest(format!("tee-pubkey: {e}")))?;
    let digest = binding::primary_digest(
        &nonce,
        &att.runtime_data.tee_pubkey,
        &att.tee_evidence.additional_evidence,
    )
    .map_err(|e| ApiError::BadRequest(format!("runtime-data: {e}")))?;
    let report_data = binding::expected_report_data(&digest);
    let (init, init_claims) = match &att.init_data {
        Some(i) => {
            let (d, c) = init_data_digest(i)?;
            (Some(d), c)
        }
        None => (None, Value::Null),
    };
    let verifier = b.registry.get(&tee).ok_or(ApiError::Internal)?;
    let verified = verifier
        .verify(
            &att.tee_evidence.primary_evidence,
            &report_data,
            init.as_ref(),
            UnixTime::now(),
        )
        .await;
    let mut claims = match verified {
        Ok(c) => c,
        Err(r) => {
            // Failed evidence uses the challenge too (no second try).
            use_challenge(&b, &nonce, expires, Session::consumed_record(expires)).await?;
            b.metrics
                .attestations
                .with_label_values(&[tee.as_str(), "rejected"])
                .inc();
            tracing::warn!(tee, reason = %r.log, "attestation rejected");
            return Err(ApiError::AttestationFailed(r.detail));
        }
    };
    claims["runtime_data_claims"] = json!({
        "nonce": nonce,
        "tee-pubkey": att.runtime_data.tee_pubkey,
    });
    if let Some(i) = &init {
        claims["init_data"] = json!(hex::encode(&i.digest));
        claims["init_data_claims"] = init_claims;
    }
    let reference = reference_data(reference_values(&b).await?);
    let attestation_policy = policy(
        &b,
        &format!("attestation-policy/{DEFAULT_CPU_POLICY_ID}"),
        DEFAULT_ATTESTATION_POLICY,
        Rule::TrustVector,
        &reference,
    )
    .await?;
    let input = Input::appraisal(&tee, claims);
    let vector = attestation_policy.trust_vector(&input).map_err(|e| {
        tracing::error!(error = %e, "attestation policy failed");
        ApiError::Internal
    })?;
    let (claims, claims_rego) = input.into_claims();
    let mut submods = vec![Submod {
        name: "cpu0".into(),
        vector,
        policy_id: DEFAULT_CPU_POLICY_ID.into(),
        attester_claims: claims,
        attester_rego: claims_rego,
    }];
    match device_submods(
        &b,
        &nonce,
        &att.runtime_data.tee_pubkey,
        &att.tee_evidence.additional_evidence,
        &reference,
    )
    .await
    {
        Ok(devices) => submods.extend(devices),
        Err(e @ ApiError::AttestationFailed(_)) => {
            use_challenge(&b, &nonce, expires, Session::consumed_record(expires)).await?;
            return Err(e);
        }
        Err(e) => return Err(e),
    }
    // Metric labels (TEE, EAR status): cpu0 under the TEE the guest named,
    // devices under their own.
    let labels: Vec<(String, &'static str)> = submods
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let tee = match i {
                0 => tee.clone(),
                _ => s.attester_claims["tee"]
                    .as_str()
                    .unwrap_or("device")
                    .to_string(),
            };
            (tee, ear_status(&s.vector))
        })
        .collect();
    let converted: BTreeMap<String, regorus::Value> = submods
        .iter_mut()
        .filter_map(|s| Some((s.name.clone(), s.attester_rego.take()?)))
        .collect();
    let ear = ear_claims(
        submods,
        &nonce,
        now(),
        b.cfg.token_ttl_secs as i64,
        b.cfg.token_dotted_claims,
    );
    let (signed, _) = b.tokens.sign(ear_input(ear, &converted)).map_err(|e| {
        tracing::error!(error = %e, "token signing failed");
        ApiError::Internal
    })?;
    let record =
        Session::attested_record(expires, &signed.header, &signed.payload, &signed.signature)
            .map_err(|e| {
                tracing::error!(error = %e, "encoding a session record failed");
                ApiError::Internal
            })?;
    use_challenge(&b, &nonce, expires, record).await?;
    let token = signed.compact;
    for (tee, status) in &labels {
        b.metrics
            .attestations
            .with_label_values(&[tee.as_str(), status])
            .inc();
    }
    let _ = key; // validated above; the resource endpoint re-reads it from the token
    let mut resp = Json(AttestationToken { token }).into_response();
    resp.headers_mut().insert(SET_COOKIE, set_cookie(&b, &id)?);
    Ok(resp)
}

/// The id of the default device (GPU) attestation policy.
const DEFAULT_GPU_POLICY_ID: &str = "default_gpu";

/// Appraises the CoCo `additional_evidence` (`{"<device tee>": evidence}`):
/// each device is verified against the device runtime digest and becomes a
/// submod of its class (`gpu0`, `gpu1`, …) appraised by the device policy.
/// A device whose evidence fails verification is still reported, as a
/// contraindicated submod with the reason, so that policy (which by
/// default requires every submod to be affirming) refuses releases.
async fn device_submods(
    b: &Broker,
    nonce: &str,
    tee_pubkey: &Value,
    additional: &str,
    reference: &Value,
) -> Result<Vec<Submod>, ApiError> {
    if additional.is_empty() {
        return Ok(Vec::new());
    }
    let map: BTreeMap<String, Box<serde_json::value::RawValue>> = serde_json::from_str(additional)
        .map_err(|e| {
            ApiError::BadRequest(format!(
                "additional_evidence is not a JSON object of device evidence: {e}"
            ))
        })?;
    let digest = binding::device_digest(nonce, tee_pubkey)
        .map_err(|e| ApiError::BadRequest(format!("runtime-data: {e}")))?;
    let policy = policy(
        b,
        &format!("attestation-policy/{DEFAULT_GPU_POLICY_ID}"),
        DEFAULT_ATTESTATION_POLICY,
        Rule::TrustVector,
        reference,
    )
    .await?;
    let mut counters: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut out = Vec::new();
    for (tee, evidence) in &map {
        let verifier = b.registry.device(tee).ok_or_else(|| {
            ApiError::AttestationFailed(format!(
                "additional evidence for {tee:?}: this broker verifies device evidence from: nvidia"
            ))
        })?;
        let results = verifier
            .verify(evidence, &digest, UnixTime::now())
            .await
            .map_err(|r| {
                tracing::warn!(tee, reason = %r.log, "device evidence rejected");
                ApiError::AttestationFailed(r.detail)
            })?;
        for result in results {
            let n = counters.entry(verifier.class()).or_insert(0);
            let name = format!("{}{n}", verifier.class());
            *n += 1;
            let (vector, claims, rego) = match result {
                Ok(claims) => {
                    let input = Input::appraisal(tee, claims);
                    let vector = policy.trust_vector(&input).map_err(|e| {
                        tracing::error!(error = %e, "device attestation policy failed");
                        ApiError::Internal
                    })?;
                    let (claims, rego) = input.into_claims();
                    (vector, claims, rego)
                }
                Err(r) => {
                    tracing::warn!(tee, submod = name, reason = %r.log, "device evidence rejected");
                    let mut vector = serde_json::Map::new();
                    for key in ["instance-identity", "hardware"] {
                        vector.insert(key.into(), json!(97));
                    }
                    (
                        vector,
                        json!({"tee": tee, "verified": false, "error": r.detail}),
                        None,
                    )
                }
            };
            out.push(Submod {
                name,
                vector,
                policy_id: DEFAULT_GPU_POLICY_ID.into(),
                attester_claims: claims,
                attester_rego: rego,
            });
        }
    }
    Ok(out)
}

/// The stored record of a cookie's session: under its key
/// ([`session_key`]: expiry and nonce), or, for a session that attested to
/// a replica of an earlier version during a rolling upgrade, under the bare
/// nonce (the key those versions used). The second read happens only when
/// the first finds nothing.
async fn session_record(
    b: &Broker,
    challenge: &SealedChallenge,
) -> Result<Option<Vec<u8>>, ApiError> {
    let key = session_key(challenge.expires, &challenge.nonce);
    if let Some(raw) = b.store.get(Namespace::Sessions, &key).await? {
        return Ok(Some(raw));
    }
    Ok(b.store.get(Namespace::Sessions, &challenge.nonce).await?)
}

/// `GET /kbs/v0/resource/<repo>/<type>/<tag>`.
pub(crate) async fn get_resource(
    State(b): State<AppState>,
    Path((repo, kind, tag)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if ![&repo, &kind, &tag].iter().all(|s| valid_segment(s)) {
        return Err(ApiError::BadRequest("invalid resource path".into()));
    }
    let token = match bearer(&headers) {
        Some(t) => t.to_string(),
        None => {
            let id = cookie(&headers).ok_or_else(|| {
                ApiError::Unauthenticated("no attestation token (Bearer) or session cookie".into())
            })?;
            let challenge = open_cookie(&b, &id)
                .ok_or_else(|| ApiError::Unauthenticated("unknown session".into()))?;
            let raw = session_record(&b, &challenge)
                .await?
                .ok_or_else(|| ApiError::Unauthenticated("session has not attested".into()))?;
            let session = Session::decode(&raw).map_err(|e| {
                tracing::error!(error = %e, "unreadable session record");
                ApiError::Internal
            })?;
            match session {
                Session::Attested { token, expires } if expires >= now() => token,
                Session::Attested { .. } => {
                    return Err(ApiError::Unauthenticated("session expired".into()));
                }
                _ => return Err(ApiError::Unauthenticated("session has not attested".into())),
            }
        }
    };
    let claims = b
        .tokens
        .verify(&token, now())
        .map_err(|e| ApiError::Unauthenticated(format!("attestation token rejected: {e}")))?;
    let path = format!("{repo}/{kind}/{tag}");
    let data = json!({"plugin": "resource", "resource-path": [repo, kind, tag], "query": {}});
    // The (sealed) record is read while the policy is evaluated; it is
    // opened only if the policy allows the release.
    let (sealed, allowed) = tokio::join!(b.store.get(Namespace::Resources, &path), async {
        let resource_policy = policy(
            &b,
            "resource-policy",
            DEFAULT_RESOURCE_POLICY,
            Rule::Allow,
            &data,
        )
        .await?;
        resource_policy.allow(claims.input()).map_err(|e| {
            tracing::error!(error = %e, "resource policy failed");
            ApiError::Internal
        })
    });
    let allowed = allowed?;
    b.metrics
        .policy_decisions
        .with_label_values(&["resource", if allowed { "allow" } else { "deny" }])
        .inc();
    if !allowed {
        b.metrics
            .resource_reads
            .with_label_values(&["denied"])
            .inc();
        return Err(ApiError::PolicyDenied(
            "the resource policy does not allow this release".into(),
        ));
    }
    let Some(sealed) = sealed? else {
        b.metrics
            .resource_reads
            .with_label_values(&["not_found"])
            .inc();
        return Err(ApiError::NotFound("no such resource".into()));
    };
    let secret = b
        .kek
        .open(&format!("{}/{path}", Namespace::Resources.name()), &sealed)
        .map_err(|e| {
            tracing::error!(resource = path, error = %e, "resource does not open");
            ApiError::Internal
        })?;
    let jwk = claims
        .tee_pubkey()
        .ok_or_else(|| ApiError::Unauthenticated("token binds no TEE key".into()))?;
    let key = TeePublicKey::from_jwk(jwk)
        .map_err(|_| ApiError::Unauthenticated("token's TEE key is unusable".into()))?;
    let out = jwe::encrypt(&key, &secret).map_err(|_| ApiError::Internal)?;
    b.metrics
        .resource_reads
        .with_label_values(&["released"])
        .inc();
    Ok((StatusCode::OK, Json(out)).into_response())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::Config;
    use crate::store::embedded::EmbeddedStore;

    /// A cookie's session is read under its key, or under the bare nonce
    /// when it attested to a replica of an earlier version (rolling
    /// upgrade); the current key wins when both exist.
    #[tokio::test]
    async fn cookie_sessions_are_found_under_the_current_or_the_earlier_key() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Config {
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        let store = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        let b = Broker::with_store(cfg, store).await.unwrap();
        let sealed = SealedChallenge {
            tee: "snp".into(),
            nonce: "bm9uY2Ugb2YgYSBzZXNzaW9u".into(),
            expires: now() + 60,
        };
        let c = open_cookie(&b, &seal_cookie(&b, &sealed).unwrap()).unwrap();
        assert_eq!(
            (c.tee.as_str(), c.nonce.as_str(), c.expires),
            ("snp", sealed.nonce.as_str(), sealed.expires)
        );
        assert_eq!(session_record(&b, &c).await.unwrap(), None);
        b.store
            .put_expiring(
                Namespace::Sessions,
                &c.nonce,
                b"earlier".to_vec(),
                c.expires,
            )
            .await
            .unwrap();
        assert_eq!(
            session_record(&b, &c).await.unwrap(),
            Some(b"earlier".to_vec())
        );
        let key = session_key(c.expires, &c.nonce);
        assert!(
            b.store
                .insert_expiring(Namespace::Sessions, &key, b"current".to_vec(), c.expires)
                .await
                .unwrap()
        );
        assert_eq!(
            session_record(&b, &c).await.unwrap(),
            Some(b"current".to_vec())
        );
        // A cookie sealed for another broker, or altered, opens to nothing.
        let mut forged = seal_cookie(&b, &sealed).unwrap();
        forged.replace_range(10..11, if &forged[10..11] == "A" { "B" } else { "A" });
        assert!(open_cookie(&b, &forged).is_none());
    }
}
