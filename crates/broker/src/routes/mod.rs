//! HTTP routes: the KBS protocol ([`kbs`]), the admin API ([`admin`]) and
//! operations endpoints (health, readiness, metrics, JWKS).

mod admin;
mod kbs;

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};

use crate::Broker;
use crate::error::ApiError;
use crate::store::Namespace;

pub(crate) type AppState = Arc<Broker>;

pub(crate) fn router(broker: Arc<Broker>) -> Router {
    let limit = broker.cfg.body_limit_bytes;
    Router::new()
        .route("/kbs/v0/auth", post(kbs::auth))
        .route("/kbs/v0/attest", post(kbs::attest))
        .route(
            "/kbs/v0/resource/{repo}/{kind}/{tag}",
            get(kbs::get_resource)
                .post(admin::put_resource)
                .delete(admin::delete_resource),
        )
        .route(
            "/kbs/v0/resource-policy",
            get(admin::get_resource_policy).post(admin::set_resource_policy),
        )
        .route(
            "/kbs/v0/attestation-policy",
            get(admin::list_attestation_policies).post(admin::set_attestation_policy),
        )
        .route(
            "/kbs/v0/reference-value",
            get(admin::list_reference_values).post(admin::set_reference_value),
        )
        .route(
            "/kbs/v0/reference-value/{name}",
            delete(admin::delete_reference_value),
        )
        .route("/kbs/v0/admin/resources", get(admin::list_resources))
        .route("/kbs/v0/.well-known/jwks.json", get(jwks))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError::NotFound("no such path".into()) })
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn_with_state(broker.clone(), observe))
        .with_state(broker)
}

/// Per-request metrics and a tracing span.
async fn observe(State(b): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = req.method().clone();
    let start = Instant::now();
    let resp = next.run(req).await;
    let status = resp.status().as_u16();
    b.metrics
        .requests
        .with_label_values(&[route.as_str(), &status.to_string()])
        .inc();
    b.metrics
        .latency
        .with_label_values(&[route.as_str()])
        .observe(start.elapsed().as_secs_f64());
    tracing::info!(%method, route, status, micros = start.elapsed().as_micros() as u64, "request");
    resp
}

async fn jwks(State(b): State<AppState>) -> Json<serde_json::Value> {
    Json(b.jwks())
}

async fn readyz(State(b): State<AppState>) -> Response {
    if b.store.ready().await {
        (StatusCode::OK, "ready").into_response()
    } else {
        ApiError::Unavailable.into_response()
    }
}

async fn metrics(State(b): State<AppState>) -> String {
    b.metrics.render()
}

/// The body, with the length-limit rejection turned into a JSON 413.
pub(crate) fn body(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge
        } else {
            ApiError::BadRequest("unreadable request body".into())
        }
    })
}

/// Parses a JSON body.
pub(crate) fn json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        // Position and kind only: serde's message can quote the input, and
        // request bodies may hold evidence or secrets.
        let kind = match e.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                "not valid JSON"
            }
            serde_json::error::Category::Data => {
                "JSON of the wrong shape (a member is missing, unknown or of the wrong type)"
            }
            serde_json::error::Category::Io => "unreadable",
        };
        ApiError::BadRequest(format!(
            "malformed request: {kind} at line {}, column {}",
            e.line(),
            e.column()
        ))
    })
}

/// The Bearer token of a request, if any.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// Validates a resource path segment (`^[a-zA-Z0-9_\-]+[a-zA-Z0-9_\-\.]*$`).
pub(crate) fn valid_segment(s: &str) -> bool {
    let mut chars = s.chars();
    let ok = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    match chars.next() {
        Some(c) if ok(c) => chars.all(|c| ok(c) || c == '.'),
        _ => false,
    }
}

pub(crate) fn now() -> i64 {
    veil_verifier::UnixTime::now().0
}

/// Deletes expired sessions every minute. Every replica runs it; the
/// store deletes in small batches that skip rows in use, so sweeps neither
/// block requests nor each other.
pub(crate) async fn sweep_sessions(b: AppState) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
    loop {
        tick.tick().await;
        match b.store.sweep_expired(Namespace::Sessions, now()).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(deleted = n, "expired sessions swept"),
            Err(e) => tracing::warn!(error = %e, "session sweep failed; retrying next minute"),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn segments() {
        for ok in ["default", "key", "1", "a.b", "A_b-9", "x.tar.gz"] {
            assert!(super::valid_segment(ok), "{ok}");
        }
        for bad in ["", ".hidden", "..", "a/b", "a b", "é", "%2e"] {
            assert!(!super::valid_segment(bad), "{bad}");
        }
    }
}
