//! The admin API. Every handler first calls [`authorize`] with its endpoint
//! group; listings never return secret values.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{AppState, bearer, body, json, now, valid_segment};
use crate::Broker;
use crate::admin_auth;
use crate::error::ApiError;
use crate::policy::Policy;
use crate::store::Namespace;

fn authorize(b: &Broker, headers: &HeaderMap, group: &str) -> Result<(), ApiError> {
    if b.cfg.dangerous_allow_unauthenticated_admin {
        return Ok(());
    }
    let token = bearer(headers)
        .ok_or_else(|| ApiError::Unauthenticated("admin endpoints need a Bearer token".into()))?;
    admin_auth::authorize(token, &b.admin_keys, &b.cfg.admin, group, now())
        .map(|role| tracing::info!(role, group, "admin request authorised"))
        .map_err(|e| ApiError::Unauthenticated(format!("admin token rejected: {e}")))
}

fn resource_key(repo: &str, kind: &str, tag: &str) -> Result<String, ApiError> {
    if [repo, kind, tag].iter().all(|s| valid_segment(s)) {
        Ok(format!("{repo}/{kind}/{tag}"))
    } else {
        Err(ApiError::BadRequest("invalid resource path".into()))
    }
}

/// `POST /kbs/v0/resource/<repo>/<type>/<tag>`: the raw body is the secret.
pub(crate) async fn put_resource(
    State(b): State<AppState>,
    Path((repo, kind, tag)): Path<(String, String, String)>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    authorize(&b, &headers, "resource")?;
    let value = body(raw)?;
    let key = resource_key(&repo, &kind, &tag)?;
    let sealed = b
        .kek
        .seal(&format!("{}/{key}", Namespace::Resources.name()), &value)
        .map_err(|_| ApiError::Internal)?;
    b.store.put(Namespace::Resources, &key, sealed).await?;
    b.metrics.resource_writes.with_label_values(&["put"]).inc();
    tracing::info!(resource = key, bytes = value.len(), "resource written");
    Ok(StatusCode::OK.into_response())
}

/// `DELETE /kbs/v0/resource/<repo>/<type>/<tag>`.
pub(crate) async fn delete_resource(
    State(b): State<AppState>,
    Path((repo, kind, tag)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&b, &headers, "resource")?;
    let key = resource_key(&repo, &kind, &tag)?;
    if !b.store.delete(Namespace::Resources, &key).await? {
        return Err(ApiError::NotFound("no such resource".into()));
    }
    b.metrics
        .resource_writes
        .with_label_values(&["delete"])
        .inc();
    Ok(StatusCode::OK.into_response())
}

/// `GET /kbs/v0/admin/resources`: paths only.
pub(crate) async fn list_resources(
    State(b): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    authorize(&b, &headers, "list")?;
    Ok(Json(
        json!({"resources": b.store.list(Namespace::Resources).await?}),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyBody {
    policy: String,
}

fn decode_policy(b64: &str) -> Result<String, ApiError> {
    let bytes = B64URL
        .decode(b64.trim_end_matches('='))
        .map_err(|_| ApiError::BadRequest("policy must be base64url".into()))?;
    String::from_utf8(bytes).map_err(|_| ApiError::BadRequest("policy is not UTF-8".into()))
}

/// `POST /kbs/v0/resource-policy` `{"policy": "<base64url Rego>"}`.
pub(crate) async fn set_resource_policy(
    State(b): State<AppState>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    authorize(&b, &headers, "resource-policy")?;
    let req: PolicyBody = json(&body(raw)?)?;
    let text = decode_policy(&req.policy)?;
    Policy::compile("resource-policy", &text).map_err(ApiError::BadRequest)?;
    b.store
        .put(Namespace::Policies, "resource-policy", text.into_bytes())
        .await?;
    Ok(StatusCode::OK.into_response())
}

/// `GET /kbs/v0/resource-policy`: the active policy text (policies are not secret).
pub(crate) async fn get_resource_policy(
    State(b): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    authorize(&b, &headers, "list")?;
    let (text, source) = match b.store.get(Namespace::Policies, "resource-policy").await? {
        Some(t) => (String::from_utf8_lossy(&t).into_owned(), "stored"),
        None => (
            crate::policy::DEFAULT_RESOURCE_POLICY.to_string(),
            "built-in default",
        ),
    };
    Ok(Json(
        json!({"policy": B64URL.encode(text), "source": source}),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AttestationPolicyBody {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    policy_id: String,
    policy: String,
}

/// `POST /kbs/v0/attestation-policy` `{"type":"rego","policy_id":..,"policy":"<base64url>"}`.
pub(crate) async fn set_attestation_policy(
    State(b): State<AppState>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    authorize(&b, &headers, "attestation-policy")?;
    let req: AttestationPolicyBody = json(&body(raw)?)?;
    if req.kind.as_deref().is_some_and(|k| k != "rego") {
        return Err(ApiError::BadRequest(
            "only Rego attestation policies are supported".into(),
        ));
    }
    if !valid_segment(&req.policy_id) {
        return Err(ApiError::BadRequest("invalid policy_id".into()));
    }
    let text = decode_policy(&req.policy)?;
    let p = Policy::compile(&req.policy_id, &text).map_err(ApiError::BadRequest)?;
    // Refuse a policy that cannot produce a trust vector at all.
    p.trust_vector(&json!({"tee":"snp","claims":{}}), &json!({}))
        .map_err(|e| {
            ApiError::BadRequest(format!("policy must define data.policy.trust_vector: {e}"))
        })?;
    b.store
        .put(
            Namespace::Policies,
            &format!("attestation-policy/{}", req.policy_id),
            text.into_bytes(),
        )
        .await?;
    Ok(StatusCode::OK.into_response())
}

/// `GET /kbs/v0/attestation-policy`: policy ids.
pub(crate) async fn list_attestation_policies(
    State(b): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    authorize(&b, &headers, "list")?;
    let mut ids: Vec<String> = b
        .store
        .list(Namespace::Policies)
        .await?
        .into_iter()
        .filter_map(|k| k.strip_prefix("attestation-policy/").map(str::to_string))
        .collect();
    if !ids
        .iter()
        .any(|i| i == crate::policy::DEFAULT_CPU_POLICY_ID)
    {
        ids.push(format!(
            "{} (built-in)",
            crate::policy::DEFAULT_CPU_POLICY_ID
        ));
    }
    Ok(Json(json!({"policies": ids})))
}

/// A named, typed reference value with an optional expiry (Unix seconds).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReferenceValue {
    pub name: String,
    #[serde(rename = "type", default = "default_rv_type")]
    pub kind: String,
    pub values: Vec<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<i64>,
}

fn default_rv_type() -> String {
    "string".into()
}

/// Veil's form, or the Trustee RVPS `sample` message
/// `{"version":"0.1.0","type":"sample","payload":"<base64 JSON {name: [values]}>"}`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ReferenceValueBody {
    Veil(ReferenceValue),
    Rvps {
        version: String,
        #[serde(rename = "type")]
        kind: String,
        payload: String,
    },
}

/// `POST /kbs/v0/reference-value`.
pub(crate) async fn set_reference_value(
    State(b): State<AppState>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    authorize(&b, &headers, "reference-value")?;
    let req: ReferenceValueBody = json(&body(raw)?)?;
    let values = match req {
        ReferenceValueBody::Veil(rv) => vec![rv],
        ReferenceValueBody::Rvps {
            version,
            kind,
            payload,
        } => {
            if version != "0.1.0" || kind != "sample" {
                return Err(ApiError::BadRequest(
                    "only RVPS messages of version 0.1.0 and type sample are supported".into(),
                ));
            }
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(&payload)
                .map_err(|_| ApiError::BadRequest("payload must be base64".into()))?;
            let map: serde_json::Map<String, Value> = json(&bytes)?;
            map.into_iter()
                .map(|(name, v)| ReferenceValue {
                    name,
                    kind: "string".into(),
                    values: match v {
                        Value::Array(a) => a,
                        other => vec![other],
                    },
                    expires: None,
                })
                .collect()
        }
    };
    for rv in values {
        if !valid_segment(&rv.name) {
            return Err(ApiError::BadRequest(format!(
                "invalid reference value name {:?}",
                rv.name
            )));
        }
        if !["string", "hex", "integer", "tcb"].contains(&rv.kind.as_str()) {
            return Err(ApiError::BadRequest(format!(
                "unknown reference value type {:?} (string, hex, integer, tcb)",
                rv.kind
            )));
        }
        let ok = rv.values.iter().all(|v| match rv.kind.as_str() {
            "hex" => v.as_str().is_some_and(|s| hex::decode(s).is_ok()),
            "integer" => v.is_i64(),
            "tcb" => ["bootloader", "tee", "snp", "microcode"]
                .iter()
                .all(|k| v.get(k).is_some_and(Value::is_u64)),
            _ => v.is_string(),
        });
        if !ok {
            return Err(ApiError::BadRequest(format!(
                "values of {:?} do not match type {:?}",
                rv.name, rv.kind
            )));
        }
        let name = rv.name.clone();
        b.store
            .put(
                Namespace::ReferenceValues,
                &name,
                serde_json::to_vec(&rv).map_err(|_| ApiError::Internal)?,
            )
            .await?;
    }
    Ok(StatusCode::OK.into_response())
}

/// `GET /kbs/v0/reference-value`.
pub(crate) async fn list_reference_values(
    State(b): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    authorize(&b, &headers, "list")?;
    let mut out = Vec::new();
    for name in b.store.list(Namespace::ReferenceValues).await? {
        if let Some(raw) = b.store.get(Namespace::ReferenceValues, &name).await?
            && let Ok(v) = serde_json::from_slice::<Value>(&raw)
        {
            out.push(v);
        }
    }
    Ok(Json(json!({"reference_values": out})))
}

/// `DELETE /kbs/v0/reference-value/<name>`.
pub(crate) async fn delete_reference_value(
    State(b): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&b, &headers, "reference-value")?;
    if !b.store.delete(Namespace::ReferenceValues, &name).await? {
        return Err(ApiError::NotFound("no such reference value".into()));
    }
    Ok(StatusCode::OK.into_response())
}
