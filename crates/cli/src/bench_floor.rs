//! The floor of a broker's cost per handshake, measured in the same run as
//! `veil bench broker`: what any broker speaking the KBS protocol must
//! spend per handshake besides verifying the evidence, with nothing else
//! (no policy, no store, no JSON beyond the HTTP bodies).
//!
//! * the EAR token's ES256 signature (over a signing input of the real
//!   token's size),
//! * the resource's JWE (`ECDH-ES+A256KW` to a P-256 TEE key: an ephemeral
//!   key, one ECDH, key wrap and AES-GCM), through `veil_protocol::jwe` as
//!   the broker calls it,
//! * the three HTTP exchanges alone: a server that answers `/auth`,
//!   `/attest` and `/resource` with bodies of the real sizes and does
//!   nothing else, driven by the same concurrent guests; its threads' CPU
//!   time per handshake.
//!
//! Verification plus this floor bounds the "vs verify/CPU" ratio a broker
//! can reach on this machine.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use axum::Router;
use axum::body::Bytes;
use axum::http::header::SET_COOKIE;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use veil_protocol::jwe::{KeyAlgorithm, TeeKeyPair, TeePublicKey};

use crate::bench::{NamedRuntime, named_cpu_secs};

/// Threads of the HTTP-only server's runtime.
const FLOOR_THREAD: &str = "veil-http-floor";

/// The floor's parts, in µs per handshake.
pub(crate) struct Floor {
    pub sign_us: f64,
    pub jwe_us: f64,
    pub http_us: f64,
}

impl Floor {
    pub fn total_us(&self) -> f64 {
        self.sign_us + self.jwe_us + self.http_us
    }
}

/// Runs `op` for `secs` on this thread; µs per call.
fn per_call(secs: f64, mut op: impl FnMut() -> Result<(), String>) -> Result<f64, String> {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        op()?;
        n += 1;
    }
    Ok(start.elapsed().as_secs_f64() * 1e6 / n.max(1) as f64)
}

/// How the floor is measured: the guests' runtime, how many guests drive
/// the HTTP server, seconds per part, and the sizes one real handshake
/// gave.
pub(crate) struct Setup<'a> {
    pub guests: &'a tokio::runtime::Handle,
    pub concurrency: usize,
    pub secs: f64,
    /// A `/attest` body (its size is what the server reads).
    pub attest_body: Vec<u8>,
    /// A token's length.
    pub token_len: usize,
}

/// Measures the floor.
pub(crate) async fn measure(setup: Setup<'_>) -> Result<Floor, String> {
    let (secs, token_len) = (setup.secs, setup.token_len);
    // ES256 over a signing input of the token's size.
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .map_err(|_| "key generation failed".to_string())?;
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
        .map_err(|_| "key parse failed".to_string())?;
    let input = vec![b'A'; token_len.saturating_sub(88)];
    let sign_us = per_call(secs, || {
        key.sign(&rng, &input)
            .map(|_| ())
            .map_err(|_| "signing failed".to_string())
    })?;

    // The resource's JWE, from the TEE key's JWK as the token carries it.
    let tee = TeeKeyPair::generate(KeyAlgorithm::EcdhEsP256).map_err(|e| e.to_string())?;
    let jwk = tee.public_jwk().map_err(|e| e.to_string())?;
    let secret = b"benchmark secret";
    let jwe_us = per_call(secs, || {
        let k = TeePublicKey::from_jwk(&jwk).map_err(|e| e.to_string())?;
        veil_protocol::jwe::encrypt(&k, secret)
            .map(|_| ())
            .map_err(|e| e.to_string())
    })?;

    let http_us = http_only(setup).await?;
    Ok(Floor {
        sign_us,
        jwe_us,
        http_us,
    })
}

/// The three exchanges against a server that only answers them: its CPU
/// time per handshake.
async fn http_only(setup: Setup<'_>) -> Result<f64, String> {
    let Setup {
        guests,
        concurrency,
        secs,
        attest_body,
        token_len,
    } = setup;
    let cookie = format!(
        "kbs-session-id={}; Path=/kbs/v0; HttpOnly; SameSite=Strict; Max-Age=300",
        "c".repeat(230)
    );
    let token: Arc<str> = "t".repeat(token_len).into();
    let jwe = serde_json::json!({
        "protected": "p".repeat(260), "encrypted_key": "k".repeat(54),
        "iv": "i".repeat(16), "ciphertext": "c".repeat(22), "tag": "t".repeat(22),
    })
    .to_string();
    let (auth_cookie, attest_cookie) = (cookie.clone(), cookie);
    let attest_token = token.clone();
    let app = Router::new()
        .route(
            "/kbs/v0/auth",
            post(move |_body: Bytes| {
                let c = auth_cookie.clone();
                async move {
                    (
                        [(SET_COOKIE, c)],
                        axum::Json(serde_json::json!({
                            "nonce": "n".repeat(44), "extra-params": ""
                        })),
                    )
                        .into_response()
                }
            }),
        )
        .route(
            "/kbs/v0/attest",
            post(move |_body: Bytes| {
                let (c, t) = (attest_cookie.clone(), attest_token.clone());
                async move {
                    (
                        [(SET_COOKIE, c)],
                        axum::Json(serde_json::json!({ "token": &*t })),
                    )
                        .into_response()
                }
            }),
        )
        .route(
            "/kbs/v0/resource/{repo}/{kind}/{tag}",
            get(move || {
                let j = jwe.clone();
                async move { ([("content-type", "application/json")], j).into_response() }
            }),
        );
    let runtime = NamedRuntime::new(FLOOR_THREAD)?;
    let listener = runtime
        .handle()?
        .spawn(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let server = runtime.handle()?.spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    let url = format!("http://{addr}/kbs/v0");
    let body = Bytes::from(attest_body);
    let warm_until = Instant::now() + Duration::from_millis(500);
    let deadline = warm_until + Duration::from_secs_f64(secs);
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (url, body, token) = (url.clone(), body.clone(), token.clone());
        tasks.push(guests.spawn(async move {
            let http = reqwest::Client::builder()
                .cookie_store(true)
                .build()
                .map_err(|e| e.to_string())?;
            let mut n = 0u64;
            loop {
                let t0 = Instant::now();
                if t0 >= deadline {
                    break;
                }
                exchange(
                    http.post(format!("{url}/auth"))
                        .header("content-type", "application/json")
                        .body(r#"{"version":"0.4.0","tee":"snp","extra-params":""}"#),
                )
                .await?;
                exchange(
                    http.post(format!("{url}/attest"))
                        .header("content-type", "application/json")
                        .body(body.clone()),
                )
                .await?;
                exchange(
                    http.get(format!("{url}/resource/default/key/1"))
                        .bearer_auth(&*token),
                )
                .await?;
                if t0 >= warm_until {
                    n += 1;
                }
            }
            Ok::<u64, String>(n)
        }));
    }
    tokio::time::sleep_until(warm_until.into()).await;
    let before = named_cpu_secs(FLOOR_THREAD);
    let mut handshakes = 0;
    for t in tasks {
        handshakes += t.await.map_err(|e| e.to_string())??;
    }
    let after = named_cpu_secs(FLOOR_THREAD);
    server.abort();
    drop(runtime);
    match (before, after) {
        (Some(b), Some(a)) if handshakes > 0 => Ok((a - b) * 1e6 / handshakes as f64),
        _ => Err("could not read the HTTP server's CPU time".into()),
    }
}

/// Sends a request and reads its whole answer, as a guest does.
async fn exchange(request: reqwest::RequestBuilder) -> Result<(), String> {
    request
        .send()
        .await
        .map_err(|e| e.to_string())?
        .bytes()
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}
