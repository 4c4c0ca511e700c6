//! The real broker binary on 127.0.0.1:0, driven by a KBS-protocol guest
//! built from Veil's protocol crate and the simulated SNP TEE. Every test
//! of the suite runs twice: on the embedded store and on PostgreSQL
//! (`DATABASE_URL`; skipped loudly without it, a failure under CI=true).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;

use common::*;
use serde_json::{Value, json};
use veil_protocol::binding;
use veil_protocol::jwe::{KeyAlgorithm, TeeKeyPair};

async fn handshake_and_resource_with_every_key_type(store: StoreKind) {
    let data = tempfile::tempdir().unwrap();
    let b = start(&store, data.path(), &[], &[]);
    put_resource(&b.url, "default/key/1", b"top secret").await;
    for alg in [
        KeyAlgorithm::EcdhEsP256,
        KeyAlgorithm::EcdhEsP521,
        KeyAlgorithm::RsaOaep256,
    ] {
        let g = Guest::new(&b.url, alg);
        let token = g.handshake(|_| {}).await;
        // Bearer (passport) and cookie (background check) both work.
        let (s, v) = g.resource("default/key/1", Some(&token)).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(g.open(v), b"top secret");
        let (s, v) = g.resource("default/key/1", None).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(g.open(v), b"top secret");
        // The token is an EAR with the EAR-04 names.
        let claims: Value = serde_json::from_slice(
            &base64::Engine::decode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                token.split('.').nth(1).unwrap(),
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(claims["eat_profile"], "tag:ietf.org,2026:rats/ear#04");
        let cpu0 = &claims["submods"]["cpu0"];
        assert_eq!(cpu0["ear_status"], "affirming");
        assert_eq!(cpu0["ear_attester_claims"]["tee"], "snp");
        assert_eq!(
            cpu0["ear_attester_claims"]["runtime_data_claims"]["tee-pubkey"],
            g.key.public_jwk().unwrap()
        );
    }
    // JWKS is public and verifies nothing else.
    let jwks: Value = reqwest::get(format!("{}/kbs/v0/.well-known/jwks.json", b.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks["keys"][0]["alg"], "ES256");
    let metrics = reqwest::get(format!("{}/metrics", b.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("veil_attestations_total{outcome=\"affirming\",tee=\"snp\"} 3"),
        "{metrics}"
    );
    assert_eq!(
        reqwest::get(format!("{}/readyz", b.url))
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
}

async fn protocol_negatives(store: StoreKind) {
    let data = tempfile::tempdir().unwrap();
    let b = start(
        &store,
        data.path(),
        &[("VEIL_BODY_LIMIT_BYTES", "65536")],
        &[],
    );
    put_resource(&b.url, "default/key/1", b"v").await;
    let g = Guest::new(&b.url, KeyAlgorithm::EcdhEsP256);
    let jwk = g.key.public_jwk().unwrap();

    // Wrong protocol version: 401.
    let (s, v) = g
        .post(
            "auth",
            &json!({"version":"0.3.0","tee":"snp","extra-params":{}}),
        )
        .await;
    assert_eq!(s, 401, "{v}");
    assert_eq!(v["type"], "veil:protocol-version-mismatch");
    // Unknown TEE, and sample while disabled: 400.
    assert_eq!(g.auth("quantum").await.0, 400);
    let (s, v) = g.auth("sample").await;
    assert_eq!(s, 400);
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .contains("dangerous_accept_sample_evidence")
    );
    // Malformed JSON: 400.
    let r = g
        .http
        .post(format!("{}/kbs/v0/auth", b.url))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    // Oversized body: 413 with a JSON error.
    let r = g
        .http
        .post(format!("{}/kbs/v0/auth", b.url))
        .body(vec![b' '; 100_000])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    assert_eq!(
        r.json::<Value>().await.unwrap()["type"],
        "veil:payload-too-large"
    );
    // Attest without a session: 401.
    let fresh = Guest::new(&b.url, KeyAlgorithm::EcdhEsP256);
    assert_eq!(fresh.attest_with("x", json!({}), Value::Null).await.0, 401);

    // Nonce mismatch: 401.
    let (_, c) = g.auth("snp").await;
    let nonce = c["nonce"].as_str().unwrap().to_string();
    let ev = Guest::snp_evidence(&nonce, &jwk, |_| {});
    let (s, v) = g.attest_with("AAAA", ev.clone(), Value::Null).await;
    assert_eq!(s, 401, "{v}");
    // Report data bound to another key: 401.
    let other = TeeKeyPair::generate(KeyAlgorithm::EcdhEsP256)
        .unwrap()
        .public_jwk()
        .unwrap();
    let (_, c) = g.auth("snp").await;
    let nonce = c["nonce"].as_str().unwrap().to_string();
    let (s, v) = g
        .attest_with(
            &nonce,
            Guest::snp_evidence(&nonce, &other, |_| {}),
            Value::Null,
        )
        .await;
    assert_eq!(s, 401, "{v}");
    assert_eq!(v["type"], "veil:attestation-failed");
    // The nonce was consumed by that failure: reuse is 409.
    let (s, _) = g
        .attest_with(
            &nonce,
            Guest::snp_evidence(&nonce, &jwk, |_| {}),
            Value::Null,
        )
        .await;
    assert_eq!(s, 409);
    // Honest attestation, then the same nonce again: 409.
    let (_, c) = g.auth("snp").await;
    let nonce = c["nonce"].as_str().unwrap().to_string();
    let ev = Guest::snp_evidence(&nonce, &jwk, |_| {});
    assert_eq!(g.attest_with(&nonce, ev.clone(), Value::Null).await.0, 200);
    assert_eq!(g.attest_with(&nonce, ev, Value::Null).await.0, 409);

    // Init-data: HOST_DATA must equal SHA-256 of the TOML.
    let toml = "version = \"0.1.0\"\nalgorithm = \"sha256\"\n[data]\n\"policy.rego\" = \"package agent_policy\"\n";
    let digest: [u8; 32] = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, toml.as_bytes())
        .as_ref()
        .try_into()
        .unwrap();
    let init = json!({"format":"toml","body":toml});
    let (_, c) = g.auth("snp").await;
    let nonce = c["nonce"].as_str().unwrap().to_string();
    let (s, v) = g
        .attest_with(
            &nonce,
            Guest::snp_evidence(&nonce, &jwk, |p| p.host_data = digest),
            init.clone(),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (_, c) = g.auth("snp").await;
    let nonce = c["nonce"].as_str().unwrap().to_string();
    let (s, v) = g
        .attest_with(
            &nonce,
            Guest::snp_evidence(&nonce, &jwk, |p| p.host_data = [1; 32]),
            init,
        )
        .await;
    assert_eq!(s, 401, "{v}");
    assert!(v["detail"].as_str().unwrap().contains("HOST_DATA"));

    // Policy deny: a debug guest is contraindicated; the default resource policy says 403.
    let debug = Guest::new(&b.url, KeyAlgorithm::EcdhEsP256);
    let token = debug.handshake(|p| p.policy |= 1 << 19).await;
    let (s, v) = debug.resource("default/key/1", Some(&token)).await;
    assert_eq!(s, 403, "{v}");
    // Unknown resource: 404 (for an allowed guest).
    let token = g.handshake(|_| {}).await;
    assert_eq!(g.resource("default/key/nope", Some(&token)).await.0, 404);
    // Forged token: 401.
    let mut forged = token.clone();
    forged.pop();
    forged.push(if token.ends_with('A') { 'B' } else { 'A' });
    assert_eq!(g.resource("default/key/1", Some(&forged)).await.0, 401);
    assert_eq!(
        g.resource("default/key/1", Some("not.a.token")).await.0,
        401
    );
    // Unknown paths: 404 JSON.
    let r = reqwest::get(format!("{}/kbs/v0/nothing", b.url))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
}

async fn expired_session_and_token(store: StoreKind) {
    let data = tempfile::tempdir().unwrap();
    let b = start(
        &store,
        data.path(),
        &[("VEIL_SESSION_TTL_SECS", "1"), ("VEIL_TOKEN_TTL_SECS", "1")],
        &[],
    );
    put_resource(&b.url, "default/key/1", b"v").await;
    let g = Guest::new(&b.url, KeyAlgorithm::EcdhEsP256);
    let token = g.handshake(|_| {}).await;
    // The server, not only the client's cookie jar, refuses an expired
    // session: send the cookie by hand after its lifetime.
    let raw = reqwest::Client::new();
    let r = raw
        .post(format!("{}/kbs/v0/auth", b.url))
        .json(&json!({"version":"0.4.0","tee":"snp","extra-params":{}}))
        .send()
        .await
        .unwrap();
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let c: Value = r.json().await.unwrap();
    let nonce = c["nonce"].as_str().unwrap().to_string();
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let ev = Guest::snp_evidence(&nonce, &g.key.public_jwk().unwrap(), |_| {});
    let r = raw
        .post(format!("{}/kbs/v0/attest", b.url))
        .header("cookie", cookie)
        .json(&json!({"init-data": null,
            "runtime-data": {"nonce": nonce, "tee-pubkey": g.key.public_jwk().unwrap()},
            "tee-evidence": {"primary_evidence": ev, "additional_evidence": ""}}))
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    let v: Value = r.json().await.unwrap();
    assert_eq!(s, 401, "{v}");
    assert!(v["detail"].as_str().unwrap().contains("expired"));
    let (s, v) = g.resource("default/key/1", Some(&token)).await;
    assert_eq!(s, 401, "{v}");
    assert!(v["detail"].as_str().unwrap().contains("expired"));
}

async fn admin_api_authentication(store: StoreKind) {
    let data = tempfile::tempdir().unwrap();
    let b = start(&store, data.path(), &[], &[]);
    let http = reqwest::Client::new();
    let put = |token: Option<String>| {
        let mut r = http
            .post(format!("{}/kbs/v0/resource/default/key/9", b.url))
            .body("x");
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    assert_eq!(put(None).await.unwrap().status().as_u16(), 401);
    assert_eq!(
        put(Some("garbage".into())).await.unwrap().status().as_u16(),
        401
    );
    assert_eq!(
        put(Some(admin_token(&["--ttl=-10"])))
            .await
            .unwrap()
            .status()
            .as_u16(),
        401
    );
    assert_eq!(
        put(Some(admin_token(&["--audience", "someone-else"])))
            .await
            .unwrap()
            .status()
            .as_u16(),
        401
    );
    assert_eq!(
        put(Some(admin_token(&["--role", "intern"])))
            .await
            .unwrap()
            .status()
            .as_u16(),
        401
    );
    // A token from another key.
    let other = tempfile::tempdir().unwrap();
    assert!(
        Command::new(VEIL)
            .args(["admin", "keygen", "--out"])
            .arg(other.path())
            .status()
            .unwrap()
            .success()
    );
    let out = Command::new(VEIL)
        .args(["admin", "token", "--key"])
        .arg(other.path().join("admin.key"))
        .output()
        .unwrap();
    let foreign = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(put(Some(foreign)).await.unwrap().status().as_u16(), 401);
    assert_eq!(
        put(Some(admin_token(&[]))).await.unwrap().status().as_u16(),
        200
    );
    // Listings never return secret values.
    let list = http
        .get(format!("{}/kbs/v0/admin/resources", b.url))
        .bearer_auth(admin_token(&[]))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        list.contains("default/key/9") && !list.contains("\"x\""),
        "{list}"
    );
    // The admin CLI drives the same API.
    let (dir, _, _) = platform();
    let key = dir.path().join("admin.key");
    let run = |args: &[&str]| {
        Command::new(VEIL)
            .args(args)
            .arg("--url")
            .arg(&b.url)
            .arg("--key")
            .arg(&key)
            .output()
            .unwrap()
    };
    assert!(
        run(&[
            "admin",
            "set-resource",
            "default/db/password",
            "--value",
            "hunter2"
        ])
        .status
        .success()
    );
    assert!(
        run(&[
            "admin",
            "set-reference-value",
            "--name",
            "snp_measurement",
            "--type",
            "hex",
            "--value",
            &"5a".repeat(48)
        ])
        .status
        .success()
    );
    let out = run(&["admin", "list", "reference-values"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("snp_measurement"));
    let bad = run(&[
        "admin",
        "set-reference-value",
        "--name",
        "x",
        "--type",
        "hex",
        "--value",
        "zz",
    ]);
    assert!(!bad.status.success());
    assert!(
        run(&["admin", "delete-resource", "default/db/password"])
            .status
            .success()
    );
    assert!(
        !run(&["admin", "delete-resource", "default/db/password"])
            .status
            .success()
    );
}

async fn reference_values_and_policies_are_applied(store: StoreKind) {
    let data = tempfile::tempdir().unwrap();
    let b = start(&store, data.path(), &[], &[]);
    put_resource(&b.url, "default/key/1", b"v").await;
    let http = reqwest::Client::new();
    // Register a measurement the guest does not have: contraindicated → 403.
    let r = http
        .post(format!("{}/kbs/v0/reference-value", b.url))
        .bearer_auth(admin_token(&[]))
        .json(&json!({"name":"snp_measurement","type":"hex","values":["ab".repeat(48)]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let g = Guest::new(&b.url, KeyAlgorithm::EcdhEsP256);
    let token = g.handshake(|_| {}).await;
    assert_eq!(g.resource("default/key/1", Some(&token)).await.0, 403);
    // Register the right one (RVPS sample form): affirming → 200.
    let payload = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        json!({"snp_measurement": ["5a".repeat(48)]}).to_string(),
    );
    let r = http
        .post(format!("{}/kbs/v0/reference-value", b.url))
        .bearer_auth(admin_token(&[]))
        .json(&json!({"version":"0.1.0","type":"sample","payload":payload}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let token = g.handshake(|_| {}).await;
    assert_eq!(g.resource("default/key/1", Some(&token)).await.0, 200);
    // A deny-all resource policy: 403; an invalid one is refused with 400.
    let set = |rego: &str| {
        http.post(format!("{}/kbs/v0/resource-policy", b.url))
            .bearer_auth(admin_token(&[]))
            .json(&json!({"policy": base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, rego)}))
            .send()
    };
    assert_eq!(
        set("package policy\nallow if {")
            .await
            .unwrap()
            .status()
            .as_u16(),
        400
    );
    assert_eq!(
        set("package policy\ndefault allow := false\n")
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    assert_eq!(g.resource("default/key/1", Some(&token)).await.0, 403);
}

async fn sample_evidence_only_when_enabled_and_never_released_by_default(store: StoreKind) {
    let data = tempfile::tempdir().unwrap();
    let b = start(
        &store,
        data.path(),
        &[],
        &["--dangerous-accept-sample-evidence"],
    );
    put_resource(&b.url, "default/key/1", b"v").await;
    let g = Guest::new(&b.url, KeyAlgorithm::EcdhEsP256);
    let (s, c) = g.auth("sample").await;
    assert_eq!(s, 200);
    let nonce = c["nonce"].as_str().unwrap().to_string();
    let digest = binding::primary_digest(&nonce, &g.key.public_jwk().unwrap(), "").unwrap();
    let rd = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, digest);
    let (s, t) = g
        .attest_with(&nonce, json!({"svn":"1","report_data":rd}), Value::Null)
        .await;
    assert_eq!(s, 200, "{t}");
    let token = t["token"].as_str().unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            token.split('.').nth(1).unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(
        claims["submods"]["cpu0"]["ear_attester_claims"]["sample"],
        true
    );
    assert_ne!(claims["submods"]["cpu0"]["ear_status"], "affirming");
    assert_eq!(g.resource("default/key/1", Some(token)).await.0, 403);
}

async fn state_survives_sigkill(store: StoreKind) {
    let data = tempfile::tempdir().unwrap();
    let mut b = start(&store, data.path(), &[], &[]);
    put_resource(&b.url, "default/key/1", b"durable").await;
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/kbs/v0/reference-value", b.url))
        .bearer_auth(admin_token(&[]))
        .json(&json!({"name":"snp_measurement","type":"hex","values":["5a".repeat(48)]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = http
        .post(format!("{}/kbs/v0/resource-policy", b.url))
        .bearer_auth(admin_token(&[]))
        .json(&json!({"policy": base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, veil_broker::policy::DEFAULT_RESOURCE_POLICY.replace("default allow := false", "default allow := false\n# persisted"))}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let g = Guest::new(&b.url, KeyAlgorithm::EcdhEsP256);
    let token = g.handshake(|_| {}).await;
    let jwks_before = reqwest::get(format!("{}/kbs/v0/.well-known/jwks.json", b.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // SIGKILL: no chance to flush anything.
    b.child.kill().unwrap();
    b.child.wait().unwrap();
    let data_dir = b.data.clone();
    drop(b);
    let b = start(&store, &data_dir, &[], &[]);
    let jwks_after = reqwest::get(format!("{}/kbs/v0/.well-known/jwks.json", b.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(jwks_before, jwks_after, "token key persisted");
    // The token from before the kill still verifies; the resource is there.
    let g2 = Guest {
        http: reqwest::Client::new(),
        url: b.url.clone(),
        key: g.key,
    };
    let (s, v) = g2.resource("default/key/1", Some(&token)).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(g2.open(v), b"durable");
    let rv = http
        .get(format!("{}/kbs/v0/reference-value", b.url))
        .bearer_auth(admin_token(&[]))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(rv.contains("snp_measurement"));
    let pol: Value = http
        .get(format!("{}/kbs/v0/resource-policy", b.url))
        .bearer_auth(admin_token(&[]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(pol["source"], "stored");
}

#[tokio::test]
async fn tls_and_graceful_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = dir.path().join("tls.crt");
    let key = dir.path().join("tls.key");
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    let (pdir, _, ark) = platform();
    let mut cmd = Command::new(VEIL);
    cmd.args(["broker", "serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .arg("--admin-key")
        .arg(pdir.path().join("admin.pub"))
        .arg("--dangerous-trust-simulated-tee")
        .arg(ark);
    let (mut child, addr) = spawn_command(cmd, BROKER_LISTENING);
    let port = addr.rsplit(':').next().unwrap().to_string();
    let url = format!("https://localhost:{port}");
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ck.cert.pem().as_bytes()).unwrap())
        .cookie_store(true)
        .build()
        .unwrap();
    assert_eq!(
        http.get(format!("{url}/healthz"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    // Plain HTTP to the TLS port does not get an answer.
    assert!(
        reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
            .await
            .is_err()
    );
    // A handshake over TLS; the session cookie is Secure.
    let r = http
        .post(format!("{url}/kbs/v0/auth"))
        .json(&json!({"version":"0.4.0","tee":"snp","extra-params":{}}))
        .send()
        .await
        .unwrap();
    assert!(
        r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("; Secure")
    );
    let c: Value = r.json().await.unwrap();
    let g = Guest {
        http: http.clone(),
        url: url.clone(),
        key: TeeKeyPair::generate(KeyAlgorithm::EcdhEsP256).unwrap(),
    };
    let nonce = c["nonce"].as_str().unwrap().to_string();
    let ev = Guest::snp_evidence(&nonce, &g.key.public_jwk().unwrap(), |_| {});
    assert_eq!(g.attest_with(&nonce, ev, Value::Null).await.0, 200);
    // SIGTERM: a clean exit.
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let start = std::time::Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            assert!(s.success(), "exit status {s:?}");
            break;
        }
        assert!(
            start.elapsed().as_secs() < 15,
            "broker did not stop on SIGTERM"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[test]
fn refuses_to_start_with_an_open_admin_api_or_without_tls() {
    let data = tempfile::tempdir().unwrap();
    let out = Command::new(VEIL)
        .args(["broker", "serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("admin.keys") && err.contains("TLS"), "{err}");
    let out = Command::new(VEIL)
        .args(["broker", "serve", "--insecure-http", "--data-dir"])
        .arg(data.path())
        .env("VEIL_DATABASE_URL", "postgres://u:pw@localhost/db")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("database_url") && !err.contains("pw@"),
        "{err}"
    );
}

/// The session cookie carries the challenge sealed under the broker's KEK:
/// a changed, truncated or foreign cookie is an unknown session.
async fn forged_and_foreign_cookies_are_refused(store: StoreKind) {
    let data = tempfile::tempdir().unwrap();
    let b = start(&store, data.path(), &[], &[]);
    let other_data = tempfile::tempdir().unwrap();
    let other = start(&StoreKind::Embedded, other_data.path(), &[], &[]);
    let raw = reqwest::Client::new();
    let auth = |url: String| {
        let raw = raw.clone();
        async move {
            let r = raw
                .post(format!("{url}/kbs/v0/auth"))
                .json(&json!({"version":"0.4.0","tee":"snp","extra-params":{}}))
                .send()
                .await
                .unwrap();
            let cookie = r.headers()["set-cookie"]
                .to_str()
                .unwrap()
                .split(';')
                .next()
                .unwrap()
                .to_string();
            let c: Value = r.json().await.unwrap();
            (cookie, c["nonce"].as_str().unwrap().to_string())
        }
    };
    let key = TeeKeyPair::generate(KeyAlgorithm::EcdhEsP256).unwrap();
    let attest = |cookie: String, nonce: String| {
        let raw = raw.clone();
        let url = b.url.clone();
        let jwk = key.public_jwk().unwrap();
        async move {
            let ev = Guest::snp_evidence(&nonce, &jwk, |_| {});
            let r = raw
                .post(format!("{url}/kbs/v0/attest"))
                .header("cookie", cookie)
                .json(&json!({"runtime-data": {"nonce": nonce, "tee-pubkey": jwk},
                    "tee-evidence": {"primary_evidence": ev, "additional_evidence": ""}}))
                .send()
                .await
                .unwrap();
            let s = r.status().as_u16();
            (s, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (cookie, nonce) = auth(b.url.clone()).await;
    let (name, value) = cookie.split_once('=').unwrap();
    // Every character of the sealed value changed in turn.
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    for i in (0..value.len()).step_by(7) {
        let mut v: Vec<char> = value.chars().collect();
        v[i] = alphabet.chars().find(|c| *c != v[i]).unwrap();
        let forged = format!("{name}={}", v.into_iter().collect::<String>());
        let (s, body) = attest(forged, nonce.clone()).await;
        assert_eq!(s, 401, "position {i}: {body}");
        assert!(body["detail"].as_str().unwrap().contains("unknown session"));
    }
    let (s, _) = attest(
        format!("{name}={}", &value[..value.len() - 4]),
        nonce.clone(),
    )
    .await;
    assert_eq!(s, 401);
    // A challenge sealed by another broker (another KEK).
    let (foreign, foreign_nonce) = auth(other.url.clone()).await;
    let (s, _) = attest(foreign, foreign_nonce).await;
    assert_eq!(s, 401);
    // The genuine cookie still works, once.
    assert_eq!(attest(cookie.clone(), nonce.clone()).await.0, 200);
    assert_eq!(attest(cookie, nonce).await.0, 409);
}

/// Each test of the suite, once per store.
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::StoreKind::Embedded).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    if let Some(store) = super::StoreKind::postgres().await {
                        super::$name(store).await
                    }
                }
            )*
        }
    };
}

on_both_stores!(
    forged_and_foreign_cookies_are_refused,
    handshake_and_resource_with_every_key_type,
    protocol_negatives,
    expired_session_and_token,
    admin_api_authentication,
    reference_values_and_policies_are_applied,
    sample_evidence_only_when_enabled_and_never_released_by_default,
    state_survives_sigkill
);

/// The container of `deploy/kubernetes/veil-broker.yaml`, as the test reads
/// it: its `args`, its environment (`name` → literal value, or `None` for a
/// value from a Secret), its volume mounts and its probes' paths.
struct Manifest {
    args: Vec<String>,
    env: Vec<(String, Option<String>)>,
    mounts: Vec<(String, String)>,
    probes: Vec<String>,
}

/// Reads the parts of the manifest the test needs, line by line (the file
/// is ours and written in one style; a change of style fails the test
/// loudly rather than passing it).
fn read_manifest() -> Manifest {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy/kubernetes/veil-broker.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut m = Manifest {
        args: Vec::new(),
        env: Vec::new(),
        mounts: Vec::new(),
        probes: Vec::new(),
    };
    let mut section = "";
    for line in text.lines() {
        let t = line.trim();
        if let Some(key) = t.strip_suffix(':').filter(|k| !k.contains(' ')) {
            section = match key {
                "args" | "env" | "volumeMounts" => key,
                _ => "",
            };
            continue;
        }
        if let Some(rest) = t.strip_prefix("httpGet: {path: ") {
            m.probes.push(rest.split(',').next().unwrap().to_string());
        }
        match section {
            "args" => match t.strip_prefix("- ") {
                Some(arg) => m.args.push(arg.to_string()),
                None => section = "",
            },
            "env" => {
                if let Some(name) = t.strip_prefix("- name: ") {
                    m.env.push((name.to_string(), None));
                } else if let Some(value) = t.strip_prefix("value: ") {
                    m.env.last_mut().unwrap().1 = Some(value.to_string());
                } else if !t.starts_with("valueFrom: {secretKeyRef:") {
                    section = "";
                }
            }
            "volumeMounts" => match t.strip_prefix("- {name: ") {
                Some(rest) => {
                    let (name, rest) = rest.split_once(", mountPath: ").unwrap();
                    let mount = rest.split([',', '}']).next().unwrap();
                    m.mounts.push((name.to_string(), mount.to_string()));
                }
                None => section = "",
            },
            _ => {}
        }
    }
    m
}

/// The Kubernetes manifest stays true to the binary: its command line and
/// environment, with each volume mounted where the manifest mounts it (a
/// directory per volume, holding what its Secret would: `tls.crt` and
/// `tls.key`, `admin.pub`), start a broker on PostgreSQL that answers the
/// manifest's readiness and liveness probes over TLS.
#[tokio::test]
async fn kubernetes_manifest_starts_a_broker_that_passes_its_probes() {
    let m = read_manifest();
    assert_eq!(&m.args[..2], ["broker", "serve"], "{:?}", m.args);
    let names: Vec<&str> = m.env.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["VEIL_DATABASE_URL", "VEIL_KEK", "VEIL_LOG_FORMAT"]);
    assert_eq!(m.probes, ["/readyz", "/healthz"]);
    let mounts: Vec<&str> = m.mounts.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(mounts, ["data", "tls", "admin"]);
    let Some(StoreKind::Postgres(db)) = StoreKind::postgres().await else {
        eprintln!(
            "SKIPPED kubernetes_manifest_starts_a_broker_that_passes_its_probes: no DATABASE_URL"
        );
        return;
    };

    // The volumes, where the pod would see them.
    let root = tempfile::tempdir().unwrap();
    let (pdir, _, _) = platform();
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let mut volumes = Vec::new();
    for (name, mount) in &m.mounts {
        let dir = root.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        match name.as_str() {
            "tls" => {
                std::fs::write(dir.join("tls.crt"), ck.cert.pem()).unwrap();
                std::fs::write(dir.join("tls.key"), ck.signing_key.serialize_pem()).unwrap();
            }
            "admin" => {
                std::fs::copy(pdir.path().join("admin.pub"), dir.join("admin.pub")).unwrap();
            }
            _ => {}
        }
        volumes.push((mount.clone(), dir));
    }
    // Every path in the arguments lies under a mount; the listen address
    // becomes loopback with a free port.
    let args: Vec<String> = m.args[2..]
        .iter()
        .map(|a| {
            let (flag, value) = a.split_once('=').unwrap_or((a, ""));
            if flag == "--listen" {
                assert!(value.ends_with(":8080"), "{a}");
                return "--listen=127.0.0.1:0".to_string();
            }
            if value.starts_with('/') {
                let (mount, dir) = volumes
                    .iter()
                    .find(|(mount, _)| value.starts_with(mount.as_str()))
                    .unwrap_or_else(|| panic!("{a}: not under any volume mount"));
                return format!("{flag}={}{}", dir.display(), &value[mount.len()..]);
            }
            a.clone()
        })
        .collect();
    let mut kek = [0u8; 32];
    aws_lc_rs::rand::fill(&mut kek).unwrap();
    let mut cmd = Command::new(VEIL);
    cmd.args(&m.args[..2]).args(&args);
    for (name, value) in &m.env {
        let value = match (name.as_str(), value) {
            (_, Some(v)) => v.clone(),
            ("VEIL_DATABASE_URL", None) => db.clone(),
            ("VEIL_KEK", None) => hex::encode(kek),
            (other, None) => panic!("no Secret value for {other}"),
        };
        cmd.env(name, value);
    }
    cmd.env("VEIL_LOG", "warn");
    let (child, addr) = spawn_command(cmd, BROKER_LISTENING);
    let broker = Proc { child, addr };
    let port = broker.addr.rsplit(':').next().unwrap();
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ck.cert.pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    for probe in &m.probes {
        let status = http
            .get(format!("https://localhost:{port}{probe}"))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status.as_u16(), 200, "{probe}");
    }
}
