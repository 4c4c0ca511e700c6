//! Several broker processes on one PostgreSQL database: any step on any
//! replica, one winner per nonce across replicas, a replica SIGKILLed under
//! load, the database going away and coming back, `migrate`, and moving an
//! embedded store into PostgreSQL. Needs `DATABASE_URL` (skipped loudly
//! without it, a failure under CI=true).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use veil_protocol::jwe::{KeyAlgorithm, TeeKeyPair};
use veil_protocol::types::Challenge;

async fn replicas(store: &StoreKind, n: usize, env: &[(&str, &str)]) -> Vec<Broker> {
    (0..n)
        .map(|_| {
            let data = tempfile::tempdir().unwrap().keep();
            start(store, &data, env, &[])
        })
        .collect()
}

/// A raw KBS client that carries the session cookie by hand, so each step
/// can go to a different replica.
struct Hop {
    http: reqwest::Client,
    key: TeeKeyPair,
}

impl Hop {
    fn new() -> Self {
        Hop {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
            key: TeeKeyPair::generate(KeyAlgorithm::EcdhEsP256).unwrap(),
        }
    }

    async fn auth(&self, url: &str) -> Result<(String, String), String> {
        let r = self
            .http
            .post(format!("{url}/kbs/v0/auth"))
            .json(&json!({"version":"0.4.0","tee":"snp","extra-params":{}}))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if r.status() != 200 {
            return Err(format!("auth: {}", r.status()));
        }
        let cookie = r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_string();
        let c: Challenge = r.json().await.map_err(|e| e.to_string())?;
        Ok((cookie, c.nonce))
    }

    fn attest_body(&self, nonce: &str) -> Value {
        let ev = Guest::snp_evidence(nonce, &self.key.public_jwk().unwrap(), |_| {});
        json!({
            "runtime-data": {"nonce": nonce, "tee-pubkey": self.key.public_jwk().unwrap()},
            "tee-evidence": {"primary_evidence": ev, "additional_evidence": ""},
        })
    }

    async fn attest(&self, url: &str, cookie: &str, body: &Value) -> Result<(u16, Value), String> {
        let r = self
            .http
            .post(format!("{url}/kbs/v0/attest"))
            .header("cookie", cookie)
            .json(body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let s = r.status().as_u16();
        Ok((s, r.json().await.unwrap_or(Value::Null)))
    }

    async fn resource(
        &self,
        url: &str,
        path: &str,
        cookie: Option<&str>,
        bearer: Option<&str>,
    ) -> Result<(u16, Value), String> {
        let mut r = self.http.get(format!("{url}/kbs/v0/resource/{path}"));
        if let Some(c) = cookie {
            r = r.header("cookie", c);
        }
        if let Some(t) = bearer {
            r = r.bearer_auth(t);
        }
        let r = r.send().await.map_err(|e| e.to_string())?;
        let s = r.status().as_u16();
        Ok((s, r.json().await.unwrap_or(Value::Null)))
    }

    fn open(&self, v: Value) -> Vec<u8> {
        let jwe: veil_protocol::types::Response = serde_json::from_value(v).unwrap();
        self.key.decrypt(&jwe).unwrap()
    }

    /// auth on `a`, attest on `b`: the token.
    async fn handshake(&self, a: &str, b: &str) -> Result<(String, String), String> {
        let (cookie, nonce) = self.auth(a).await?;
        let body = self.attest_body(&nonce);
        let (s, t) = self.attest(b, &cookie, &body).await?;
        if s != 200 {
            return Err(format!("attest: {s} {t}"));
        }
        Ok((cookie, t["token"].as_str().unwrap().to_string()))
    }
}

async fn get_text(url: &str) -> String {
    reqwest::get(url).await.unwrap().text().await.unwrap()
}

#[tokio::test]
async fn any_step_on_any_replica() {
    let Some(store) = StoreKind::postgres().await else {
        return;
    };
    let rs = replicas(&store, 3, &[]).await;
    let urls: Vec<String> = rs.iter().map(|b| b.url.clone()).collect();
    // One token key, created race-free by three replicas starting together.
    let jwks: Vec<String> = futures_util::future::join_all(
        urls.iter()
            .map(|u| get_text_owned(format!("{u}/kbs/v0/.well-known/jwks.json"))),
    )
    .await;
    assert!(jwks.iter().all(|j| j == &jwks[0]), "{jwks:?}");
    put_resource(&urls[0], "default/key/1", b"replicated").await;
    let g = Hop::new();
    // /auth on 0, /attest on 1, the resource from 2 with the cookie and
    // with the Bearer token.
    let (cookie, token) = g.handshake(&urls[0], &urls[1]).await.unwrap();
    let (s, v) = g
        .resource(&urls[2], "default/key/1", Some(&cookie), None)
        .await
        .unwrap();
    assert_eq!(s, 200, "{v}");
    assert_eq!(g.open(v), b"replicated");
    let (s, v) = g
        .resource(&urls[0], "default/key/1", None, Some(&token))
        .await
        .unwrap();
    assert_eq!(s, 200, "{v}");
    assert_eq!(g.open(v), b"replicated");
    // Every replica's readiness reflects the shared database.
    for u in &urls {
        assert_eq!(get_text(&format!("{u}/readyz")).await, "ready");
    }
    // Pool and database-latency metrics are exported.
    let m = get_text(&format!("{}/metrics", urls[1])).await;
    assert!(m.contains("veil_db_pool_connections"), "{m}");
    assert!(
        m.contains(
            "veil_store_operation_seconds_bucket{op=\"insert\",outcome=\"ok\",store=\"postgres\""
        ),
        "{m}"
    );
}

async fn get_text_owned(url: String) -> String {
    get_text(&url).await
}

#[tokio::test]
async fn a_nonce_is_used_once_across_replicas() {
    let Some(store) = StoreKind::postgres().await else {
        return;
    };
    let rs = replicas(&store, 3, &[]).await;
    let g = Hop::new();
    for round in 0..12 {
        let (cookie, nonce) = g.auth(&rs[round % 3].url).await.unwrap();
        let body = g.attest_body(&nonce);
        // The same attestation, to two other replicas at the same moment.
        let (a, b) = tokio::join!(
            g.attest(&rs[(round + 1) % 3].url, &cookie, &body),
            g.attest(&rs[(round + 2) % 3].url, &cookie, &body)
        );
        let mut statuses = [a.unwrap().0, b.unwrap().0];
        statuses.sort_unstable();
        assert_eq!(statuses, [200, 409], "round {round}");
        // And once more, later, on the replica that issued it.
        let (s, _) = g.attest(&rs[round % 3].url, &cookie, &body).await.unwrap();
        assert_eq!(s, 409);
    }
}

#[tokio::test]
async fn a_replica_killed_under_load_loses_nothing() {
    let Some(store) = StoreKind::postgres().await else {
        return;
    };
    let mut rs = replicas(&store, 3, &[]).await;
    let urls: Arc<Vec<String>> = Arc::new(rs.iter().map(|b| b.url.clone()).collect());
    let admin = admin_token(&[]);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let handshakes = Arc::new(AtomicUsize::new(0));
    let retries = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for worker in 0..6usize {
        let (urls, admin, stop, handshakes, retries) = (
            urls.clone(),
            admin.clone(),
            stop.clone(),
            handshakes.clone(),
            retries.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let g = Hop::new();
            let mut acked: Vec<(String, Vec<u8>)> = Vec::new();
            let mut failed: Vec<String> = Vec::new();
            let mut i = 0usize;
            while !stop.load(Ordering::SeqCst) {
                i += 1;
                // A handshake spread over replicas, retried (from /auth, on
                // the next replica) when a replica does not answer.
                let mut done = false;
                for attempt in 0..3 {
                    let a = &urls[(worker + i + attempt) % 3];
                    let b = &urls[(worker + i + attempt + 1) % 3];
                    match g.handshake(a, b).await {
                        Ok(_) => {
                            done = true;
                            break;
                        }
                        Err(_) => {
                            retries.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
                if done {
                    handshakes.fetch_add(1, Ordering::SeqCst);
                } else {
                    failed.push(format!("handshake {worker}/{i}"));
                }
                // A resource write; remembered only when acknowledged.
                let path = format!("load/w{worker}/r{i}");
                let value = format!("value {worker} {i}").into_bytes();
                let url = &urls[(worker + i) % 3];
                if let Ok(r) = reqwest::Client::new()
                    .post(format!("{url}/kbs/v0/resource/{path}"))
                    .bearer_auth(&admin)
                    .body(value.clone())
                    .send()
                    .await
                    && r.status() == 200
                {
                    acked.push((path, value));
                }
            }
            (acked, failed)
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before_kill = handshakes.load(Ordering::SeqCst);
    rs[1].child.kill().unwrap(); // SIGKILL
    rs[1].child.wait().unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::SeqCst);
    let mut acked = Vec::new();
    for t in tasks {
        let (a, failed) = t.await.unwrap();
        assert!(
            failed.is_empty(),
            "handshakes failed after retries: {failed:?}"
        );
        acked.extend(a);
    }
    let total = handshakes.load(Ordering::SeqCst);
    assert!(
        before_kill > 0 && total > before_kill,
        "{before_kill} then {total}"
    );
    eprintln!(
        "{total} handshakes ({before_kill} before the kill), {} client retries, {} acknowledged writes",
        retries.load(Ordering::SeqCst),
        acked.len()
    );
    // Every acknowledged write is there, and opens, on a surviving replica.
    let g = Hop::new();
    let (_, token) = g.handshake(&urls[0], &urls[2]).await.unwrap();
    for (path, value) in &acked {
        let (s, v) = g
            .resource(&urls[2], path, None, Some(&token))
            .await
            .unwrap();
        assert_eq!(s, 200, "{path}: {v}");
        assert_eq!(&g.open(v), value, "{path}");
    }
}

/// While the database is unreachable: not ready, /attest (which must
/// record the challenge's use) and admin writes answer 503.
async fn while_down(url: &str, g: &Hop, cookie: &str, nonce: &str) -> Value {
    let http = reqwest::Client::new();
    let r = http.get(format!("{url}/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let (s, body) = g.attest(url, cookie, &g.attest_body(nonce)).await.unwrap();
    assert_eq!(s, 503, "{body}");
    assert_eq!(body["type"], "veil:unavailable", "{body}");
    // An admin write during the outage is refused, not half-written.
    let r = http
        .post(format!("{url}/kbs/v0/resource/default/key/2"))
        .bearer_auth(admin_token(&[]))
        .body("lost?")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    body
}

/// Once the database is back: ready again within `within` without a
/// restart; the challenge issued before (its use was never recorded)
/// still works, new handshakes work, `default/key/1` still holds `kept`
/// and the write refused during the outage is absent.
async fn after_recovery(
    url: &str,
    g: &Hop,
    cookie: &str,
    nonce: &str,
    kept: &[u8],
    within: Duration,
) {
    let http = reqwest::Client::new();
    let t = Instant::now();
    while http
        .get(format!("{url}/readyz"))
        .send()
        .await
        .unwrap()
        .status()
        != 200
    {
        assert!(t.elapsed() < within, "never ready again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (s, _) = g.attest(url, cookie, &g.attest_body(nonce)).await.unwrap();
    assert_eq!(s, 200);
    let (_, token) = g.handshake(url, url).await.unwrap();
    let (s, v) = g
        .resource(url, "default/key/1", None, Some(&token))
        .await
        .unwrap();
    assert_eq!(s, 200, "{v}");
    assert_eq!(g.open(v), kept);
    let (s, _) = g
        .resource(url, "default/key/2", None, Some(&token))
        .await
        .unwrap();
    assert_eq!(s, 404);
}

#[tokio::test]
async fn database_outage_gives_503_then_recovers() {
    let Some(StoreKind::Postgres(url)) = StoreKind::postgres().await else {
        return;
    };
    // The broker reaches the database through a proxy that can cut it off.
    let target: std::net::SocketAddr = {
        let opts: Vec<&str> = url.split("://").nth(1).unwrap().split('/').collect();
        let hostport = opts[0].rsplit('@').next().unwrap();
        let hostport = if hostport.contains(':') {
            hostport.to_string()
        } else {
            format!("{hostport}:5432")
        };
        tokio::net::lookup_host(hostport)
            .await
            .unwrap()
            .find(|a| a.is_ipv4())
            .unwrap()
    };
    let proxy = veil_testkit::pg::CutProxy::start(target);
    let via_proxy = {
        let (scheme, rest) = url.split_once("://").unwrap();
        let (authority, path) = rest.split_once('/').unwrap();
        let creds = authority
            .rsplit_once('@')
            .map(|(c, _)| format!("{c}@"))
            .unwrap_or_default();
        format!("{scheme}://{creds}{}/{path}", proxy.addr)
    };
    let store = StoreKind::Postgres(via_proxy);
    let data = tempfile::tempdir().unwrap();
    let b = start(
        &store,
        data.path(),
        &[("VEIL_DATABASE__TIMEOUT_MS", "400")],
        &[],
    );
    put_resource(&b.url, "default/key/1", b"kept").await;
    let g = Hop::new();
    g.handshake(&b.url, &b.url).await.unwrap();

    proxy.cut();
    let t = Instant::now();
    // /auth needs no database (the challenge travels sealed in the
    // cookie); /attest must record the challenge's use, and cannot.
    let (cookie, nonce) = g.auth(&b.url).await.unwrap();
    let body = while_down(&b.url, &g, &cookie, &nonce).await;
    assert!(
        !body.to_string().contains("postgres"),
        "no internals: {body}"
    );
    assert!(t.elapsed() < Duration::from_secs(5), "fails fast");
    // Liveness is not readiness: the process is alive.
    assert_eq!(get_text(&format!("{}/healthz", b.url)).await, "ok");

    proxy.restore();
    after_recovery(
        &b.url,
        &g,
        &cookie,
        &nonce,
        b"kept",
        Duration::from_secs(10),
    )
    .await;
}

#[tokio::test]
async fn database_stopped_and_restarted() {
    if StoreKind::postgres().await.is_none() {
        return;
    }
    // A PostgreSQL server of this test's own, so it can really be stopped.
    let Some(pg) = veil_testkit::pg::PrivatePostgres::start() else {
        return;
    };
    let store = StoreKind::Postgres(pg.url());
    let data = tempfile::tempdir().unwrap();
    let b = start(
        &store,
        data.path(),
        &[("VEIL_DATABASE__TIMEOUT_MS", "500")],
        &[],
    );
    put_resource(&b.url, "default/key/1", b"survives").await;
    let g = Hop::new();
    g.handshake(&b.url, &b.url).await.unwrap();
    let (cookie, nonce) = g.auth(&b.url).await.unwrap();

    pg.stop();
    while_down(&b.url, &g, &cookie, &nonce).await;

    pg.start_again();
    after_recovery(
        &b.url,
        &g,
        &cookie,
        &nonce,
        b"survives",
        Duration::from_secs(15),
    )
    .await;
}

#[tokio::test]
async fn migrate_separately_and_refuse_an_unmigrated_database() {
    let Some(store) = StoreKind::postgres().await else {
        return;
    };
    let StoreKind::Postgres(url) = &store else {
        unreachable!()
    };
    let data = tempfile::tempdir().unwrap();
    // Without migrations and with database.migrate = false: a clear refusal.
    let (dir, _, ark) = platform();
    let out = Command::new(VEIL)
        .args([
            "broker",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--insecure-http",
        ])
        .arg("--data-dir")
        .arg(data.path())
        .arg("--admin-key")
        .arg(dir.path().join("admin.pub"))
        .arg("--dangerous-trust-simulated-tee")
        .arg(ark)
        .args(store.args())
        .env("VEIL_DATABASE__MIGRATE", "false")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("veil broker migrate"), "{err}");
    // `veil broker migrate`, twice (idempotent), then the broker starts.
    for _ in 0..2 {
        let out = Command::new(VEIL)
            .args(["broker", "migrate", "--database-url", url])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let b = start(
        &store,
        data.path(),
        &[("VEIL_DATABASE__MIGRATE", "false")],
        &[],
    );
    Guest::new(&b.url, KeyAlgorithm::EcdhEsP256)
        .handshake(|_| {})
        .await;
}

#[tokio::test]
async fn embedded_store_moves_to_postgres() {
    let Some(pg) = StoreKind::postgres().await else {
        return;
    };
    let (dir, _, _) = platform();
    let kek = dir.path().join("kek.hex");
    let kek_arg = kek.display().to_string();
    let data = tempfile::tempdir().unwrap();
    // An embedded broker with resources, a policy and a reference value.
    let jwks_before;
    {
        let b = start(
            &StoreKind::Embedded,
            data.path(),
            &[],
            &["--kek-file", &kek_arg],
        );
        for i in 0..5 {
            put_resource(
                &b.url,
                &format!("default/key/{i}"),
                format!("secret {i}").as_bytes(),
            )
            .await;
        }
        let r = reqwest::Client::new()
            .post(format!("{}/kbs/v0/reference-value", b.url))
            .bearer_auth(admin_token(&[]))
            .json(&json!({"name":"snp_measurement","type":"hex","values":["5a".repeat(48)]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        jwks_before = get_text(&format!("{}/kbs/v0/.well-known/jwks.json", b.url)).await;
    }
    let export = data.path().join("export.jsonl");
    let out = Command::new(VEIL)
        .args(["broker", "export", "--data-dir"])
        .arg(data.path())
        .arg("--out")
        .arg(&export)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&export).unwrap();
    assert!(!text.contains("secret 1"), "secrets stay sealed");
    // Into PostgreSQL (fresh database, migrated by the import).
    let mut args = vec!["broker".to_string(), "import".into(), "--in".into()];
    args.push(export.display().to_string());
    args.extend(pg.args());
    let out = Command::new(VEIL).args(&args).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("imported 7 record(s)"));
    // A broker on PostgreSQL serves every resource, with the same token key.
    let pdata = tempfile::tempdir().unwrap();
    let b = start(&pg, pdata.path(), &[], &[]);
    assert_eq!(
        get_text(&format!("{}/kbs/v0/.well-known/jwks.json", b.url)).await,
        jwks_before
    );
    let g = Guest::new(&b.url, KeyAlgorithm::EcdhEsP256);
    let token = g.handshake(|_| {}).await;
    for i in 0..5 {
        let (s, v) = g.resource(&format!("default/key/{i}"), Some(&token)).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(g.open(v), format!("secret {i}").as_bytes());
    }
    // The reference value came along: a different measurement is refused.
    let g = Guest::new(&b.url, KeyAlgorithm::EcdhEsP256);
    let t = g.handshake(|p| p.measurement = [0x11; 48]).await;
    assert_eq!(g.resource("default/key/0", Some(&t)).await.0, 403);
    // A second import of the same file changes nothing.
    let out = Command::new(VEIL).args(&args).output().unwrap();
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("imported 0 record(s), 7 already present")
    );
}
