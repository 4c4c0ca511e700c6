//! The workload API, compatible with Confidential Containers' api-server-rest
//! (default `127.0.0.1:8006`), loopback peers only:
//!
//! * `GET /cdh/resource/<repo>/<type>/<tag>`: the secret's raw bytes;
//! * `GET /aa/token?token_type=kbs`: `{"token": ...}` (the TEE private key
//!   is not handed out);
//! * `GET /aa/evidence?runtime_data=...`: evidence over up to 64 bytes;
//! * `GET /info`: TEE, broker, attestation count, token expiry;
//! * `POST /cdh/unseal`: a `sealed.…` secret in, its plaintext out.
//!
//! Errors are JSON `{"error": "..."}` with a clear message.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use tokio::sync::RwLock;
use veil_protocol::client::ClientError;

use crate::kbs::TokenCache;
use crate::sealed::{self, TrustedKeys};

/// The agent's state.
#[derive(Debug)]
pub struct Agent {
    pub kbs: TokenCache,
    pub sealing_keys: RwLock<TrustedKeys>,
}

type S = Arc<Agent>;

fn err(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, Json(json!({"error": msg.into()}))).into_response()
}

fn client_err(e: &ClientError) -> Response {
    match e {
        ClientError::Status {
            status: 403,
            detail,
            ..
        } => err(
            StatusCode::FORBIDDEN,
            format!("the broker's policy refused: {detail}"),
        ),
        ClientError::Status { status: 404, .. } => {
            err(StatusCode::NOT_FOUND, "no such resource at the broker")
        }
        ClientError::Status {
            status: 401,
            detail,
            step,
        } => err(
            StatusCode::BAD_GATEWAY,
            format!("attestation to the broker failed at {step}: {detail}"),
        ),
        other => err(StatusCode::BAD_GATEWAY, format!("broker: {other}")),
    }
}

async fn loopback_only(
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
    next: Next,
) -> Response {
    if !peer.ip().is_loopback() {
        tracing::warn!(%peer, "refused a non-loopback peer");
        return err(
            StatusCode::FORBIDDEN,
            "the workload API serves loopback peers only",
        );
    }
    next.run(req).await
}

/// The router (with the loopback check; peers come from `ConnectInfo`).
pub fn router(agent: Arc<Agent>) -> Router {
    Router::new()
        .route("/cdh/resource/{repo}/{kind}/{tag}", get(resource))
        .route("/cdh/unseal", post(unseal))
        .route("/aa/token", get(token))
        .route("/aa/evidence", get(evidence))
        .route("/info", get(info))
        .fallback(|| async { err(StatusCode::NOT_FOUND, "no such endpoint") })
        .layer(middleware::from_fn(loopback_only))
        .with_state(agent)
}

fn secret_response(bytes: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response()
}

async fn resource(
    State(a): State<S>,
    Path((repo, kind, tag)): Path<(String, String, String)>,
) -> Response {
    match a.kbs.resource(&format!("{repo}/{kind}/{tag}")).await {
        Ok(b) => secret_response(b),
        Err(e) => client_err(&e),
    }
}

async fn token(State(a): State<S>, Query(q): Query<HashMap<String, String>>) -> Response {
    match q.get("token_type").map(String::as_str) {
        Some("kbs") | None => {}
        Some(other) => {
            return err(
                StatusCode::BAD_REQUEST,
                format!("token_type {other:?} is not supported (kbs)"),
            );
        }
    }
    match a.kbs.token().await {
        Ok((t, _)) => Json(json!({"token": t})).into_response(),
        Err(e) => client_err(&e),
    }
}

async fn evidence(State(a): State<S>, Query(q): Query<HashMap<String, String>>) -> Response {
    let rd = q
        .get("runtime_data")
        .map(String::as_bytes)
        .unwrap_or_default();
    if rd.len() > 64 {
        return err(
            StatusCode::BAD_REQUEST,
            "runtime_data is longer than 64 bytes",
        );
    }
    let mut report_data = [0u8; 64];
    report_data[..rd.len()].copy_from_slice(rd);
    match a.kbs.evidence(&report_data) {
        Ok(v) => Json(v).into_response(),
        Err(e) => err(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("evidence collection failed: {e}"),
        ),
    }
}

async fn info(State(a): State<S>) -> Response {
    Json(json!({
        "tee": a.kbs.tee(),
        "additional_tees": a.kbs.device_tees(),
        "broker": a.kbs.url(),
        "attestations": a.kbs.attestations(),
        "version": env!("CARGO_PKG_VERSION"),
    }))
    .into_response()
}

async fn unseal(State(a): State<S>, body: Bytes) -> Response {
    let Ok(text) = std::str::from_utf8(&body) else {
        return err(StatusCode::BAD_REQUEST, "the sealed secret is not UTF-8");
    };
    // A kid naming a broker resource: fetch that JWK (over the attested
    // channel) and trust it for this kid.
    let kid = match sealed::kid(text) {
        Ok(k) => k,
        Err(e) => return err(StatusCode::BAD_REQUEST, e.to_string()),
    };
    if kid.starts_with("kbs:///") && !a.sealing_keys.read().await.0.contains_key(&kid) {
        let path = match sealed::resource_path(&kid) {
            Ok(p) => p,
            Err(e) => return err(StatusCode::BAD_REQUEST, e.to_string()),
        };
        match a.kbs.resource(&path).await {
            Ok(jwk) => match serde_json::from_slice(&jwk)
                .map_err(|e| e.to_string())
                .and_then(|v| sealed::jwk_point(&v))
            {
                Ok(point) => {
                    a.sealing_keys.write().await.0.insert(kid.clone(), point);
                }
                Err(e) => {
                    return err(
                        StatusCode::BAD_GATEWAY,
                        format!("the broker's key {kid} is not a P-256 JWK: {e}"),
                    );
                }
            },
            Err(e) => return client_err(&e),
        }
    }
    let verified = match sealed::verify(text, &*a.sealing_keys.read().await) {
        Ok(u) => u,
        Err(e) => return err(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let (uri, envelope) = match verified.payload {
        sealed::Sealed::Vault(v) => (v.name, None),
        sealed::Sealed::Envelope(e) => (e.key_id.clone(), Some(e)),
    };
    let path = match sealed::resource_path(&uri) {
        Ok(p) => p,
        Err(e) => return err(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let fetched = match a.kbs.resource(&path).await {
        Ok(b) => b,
        Err(e) => return client_err(&e),
    };
    match envelope {
        None => secret_response(fetched),
        Some(env) => match sealed::open_envelope(&env, &fetched) {
            Ok(plain) => secret_response(plain),
            Err(e) => err(StatusCode::BAD_GATEWAY, e.to_string()),
        },
    }
}

/// Serves the workload API until `shutdown` resolves.
pub async fn serve(
    listener: std::net::TcpListener,
    agent: Arc<Agent>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let listener = tokio::net::TcpListener::from_std(listener).map_err(|e| e.to_string())?;
    axum::serve(
        listener,
        router(agent).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
    .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::extract::connect_info::MockConnectInfo;
    use tower::ServiceExt;

    #[derive(Debug)]
    struct NoTee;
    impl veil_attester::Attester for NoTee {
        fn tee(&self) -> &'static str {
            "snp"
        }
        fn evidence(&self, rd: &[u8; 64]) -> Result<serde_json::Value, veil_attester::AttestError> {
            Ok(json!({"report_data": hex::encode(rd)}))
        }
        fn launch_init_data(&self) -> Result<Vec<u8>, veil_attester::AttestError> {
            Ok(vec![])
        }
    }

    fn agent() -> Arc<Agent> {
        let cfg = crate::kbs::KbsConfig {
            url: "http://127.0.0.1:9".into(),
            key_algorithm: veil_protocol::jwe::KeyAlgorithm::EcdhEsP256,
            ca_pem: None,
            attempts: 1,
            backoff: std::time::Duration::from_millis(1),
        };
        Arc::new(Agent {
            kbs: TokenCache::new(cfg, Arc::new(NoTee), None).unwrap(),
            sealing_keys: RwLock::new(TrustedKeys::default()),
        })
    }

    async fn call(peer: [u8; 4], uri: &str) -> (StatusCode, serde_json::Value) {
        let app = router(agent()).layer(MockConnectInfo(SocketAddr::from((peer, 40000))));
        let resp = app
            .oneshot(
                axum::http::Request::builder()
                    .uri(uri)
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        )
    }

    #[tokio::test]
    async fn refuses_non_loopback_peers() {
        let (s, v) = call([10, 1, 2, 3], "/info").await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        assert!(v["error"].as_str().unwrap().contains("loopback"));
        let (s, v) = call([127, 0, 0, 1], "/info").await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(v["tee"], "snp");
    }

    #[tokio::test]
    async fn evidence_and_errors() {
        let (s, v) = call([127, 0, 0, 1], "/aa/evidence?runtime_data=abc").await;
        assert_eq!(s, StatusCode::OK);
        assert!(
            v["report_data"]
                .as_str()
                .unwrap()
                .starts_with("616263000000")
        );
        let long = "x".repeat(65);
        let (s, _) = call([127, 0, 0, 1], &format!("/aa/evidence?runtime_data={long}")).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        let (s, v) = call([127, 0, 0, 1], "/aa/token?token_type=coco_as").await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
        // No broker listening: a clear gateway error, not a hang or a panic.
        let (s, v) = call([127, 0, 0, 1], "/cdh/resource/default/key/1").await;
        assert_eq!(s, StatusCode::BAD_GATEWAY, "{v}");
        let (s, _) = call([127, 0, 0, 1], "/nothing").await;
        assert_eq!(s, StatusCode::NOT_FOUND);
    }
}
