//! Every error a client can see, with its status, stable `type` and short
//! `detail`. Internal causes go to the log, never into a response body.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use veil_protocol::types::ErrorInformation;

/// A client-visible error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// 400: malformed request.
    BadRequest(String),
    /// 400: a TEE this broker does not accept.
    UnsupportedTee(String),
    /// 401: the protocol version is not 0.4.0.
    ProtocolVersion(String),
    /// 401: no valid session or token.
    Unauthenticated(String),
    /// 401: the evidence did not verify.
    AttestationFailed(String),
    /// 403: a policy said no.
    PolicyDenied(String),
    /// 404: unknown resource or path.
    NotFound(String),
    /// 409: the challenge was already used.
    NonceReused,
    /// 413: body too large.
    TooLarge,
    /// 503: the store is unavailable.
    Unavailable,
    /// 500: anything else (logged with its cause where it happened).
    Internal,
}

impl ApiError {
    /// Status code, stable type, and detail.
    pub fn parts(&self) -> (StatusCode, &'static str, String) {
        match self {
            ApiError::BadRequest(d) => (StatusCode::BAD_REQUEST, "bad-request", d.clone()),
            ApiError::UnsupportedTee(d) => (StatusCode::BAD_REQUEST, "unsupported-tee", d.clone()),
            ApiError::ProtocolVersion(d) => (
                StatusCode::UNAUTHORIZED,
                "protocol-version-mismatch",
                d.clone(),
            ),
            ApiError::Unauthenticated(d) => {
                (StatusCode::UNAUTHORIZED, "unauthenticated", d.clone())
            }
            ApiError::AttestationFailed(d) => {
                (StatusCode::UNAUTHORIZED, "attestation-failed", d.clone())
            }
            ApiError::PolicyDenied(d) => (StatusCode::FORBIDDEN, "policy-denied", d.clone()),
            ApiError::NotFound(d) => (StatusCode::NOT_FOUND, "not-found", d.clone()),
            ApiError::NonceReused => (
                StatusCode::CONFLICT,
                "nonce-reused",
                "this challenge has already been used; request a new one from /auth".into(),
            ),
            ApiError::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                "request body exceeds the configured limit".into(),
            ),
            ApiError::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the broker's store is unavailable; retry later".into(),
            ),
            ApiError::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error".into(),
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, kind, detail) = self.parts();
        let body = ErrorInformation {
            error_type: format!("veil:{kind}"),
            detail,
        };
        (status, axum::Json(body)).into_response()
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        tracing::error!(error = %e, "store failure");
        ApiError::Unavailable
    }
}
