//! Shared by the broker integration suites: the simulated platform, the
//! real broker binary on 127.0.0.1:0 over either store, and a KBS-protocol
//! guest built from Veil's protocol crate and the simulated SNP TEE.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use serde_json::{Value, json};
use veil_evidence::snp::{CertTableEntry, CertType, Product, SnpEvidence};
use veil_protocol::binding;
use veil_protocol::jwe::{KeyAlgorithm, TeeKeyPair};
use veil_protocol::types::{Challenge, Response as Jwe};
use veil_sim::snp::{ReportParams, SimSnp};

pub const VEIL: &str = env!("CARGO_BIN_EXE_veil");

/// One simulated platform for the whole test binary, kept in a state dir.
pub fn platform() -> &'static (tempfile::TempDir, SimSnp, PathBuf) {
    static P: OnceLock<(tempfile::TempDir, SimSnp, PathBuf)> = OnceLock::new();
    P.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let sim = SimSnp::load_or_create(dir.path(), Product::Milan).unwrap();
        let ark = dir.path().join("ark.pem");
        std::fs::write(
            &ark,
            veil_endorsements::certs::to_pem("CERTIFICATE", sim.ark_der()),
        )
        .unwrap();
        let out = Command::new(VEIL)
            .args(["admin", "keygen", "--out"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success());
        // The key-encryption key that replicas on one database share.
        std::fs::write(dir.path().join("kek.hex"), "11".repeat(32)).unwrap();
        (dir, sim, ark)
    })
}

pub struct Broker {
    pub child: Child,
    pub url: String,
    pub data: PathBuf,
}

/// Which store a broker runs on.
#[derive(Debug, Clone)]
pub enum StoreKind {
    Embedded,
    /// A fresh PostgreSQL database for one test (its URL).
    Postgres(String),
}

impl StoreKind {
    /// A fresh database on the server named by `DATABASE_URL`; `None`
    /// (loudly skipped) without one, a failure under CI=true.
    pub async fn postgres() -> Option<Self> {
        let url = veil_testkit::pg::database_url()?;
        Some(StoreKind::Postgres(
            veil_testkit::pg::fresh_database(&url, "cli").await.unwrap(),
        ))
    }

    /// The flags that select this store.
    pub fn args(&self) -> Vec<String> {
        match self {
            StoreKind::Embedded => Vec::new(),
            StoreKind::Postgres(url) => {
                let (dir, _, _) = platform();
                vec![
                    "--database-url".into(),
                    url.clone(),
                    "--kek-file".into(),
                    dir.path().join("kek.hex").display().to_string(),
                ]
            }
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn start(store: &StoreKind, data: &Path, env: &[(&str, &str)], extra: &[&str]) -> Broker {
    let (dir, _, ark) = platform();
    let mut cmd = Command::new(VEIL);
    cmd.args([
        "broker",
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--insecure-http",
        "--data-dir",
    ])
    .arg(data)
    .arg("--admin-key")
    .arg(dir.path().join("admin.pub"))
    .arg("--dangerous-trust-simulated-tee")
    .arg(ark)
    .args(store.args())
    .args(extra)
    .env("VEIL_LOG", "warn")
    // Variables of other commands and of logging do not upset the
    // broker's configuration.
    .env("VEIL_LOG_FORMAT", "json")
    .env("VEIL_ADMIN_KEY", "/nonexistent")
    .env("VEIL_BROKER_URL", "http://127.0.0.1:1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let (child, addr) = spawn_command(cmd, BROKER_LISTENING);
    Broker {
        child,
        url: format!("http://{addr}"),
        data: data.to_path_buf(),
    }
}

pub fn admin_token(extra: &[&str]) -> String {
    let (dir, _, _) = platform();
    let out = Command::new(VEIL)
        .args(["admin", "token", "--key"])
        .arg(dir.path().join("admin.key"))
        .args(extra)
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A KBS-protocol guest.
pub struct Guest {
    pub http: reqwest::Client,
    pub url: String,
    pub key: TeeKeyPair,
}

impl Guest {
    pub fn new(url: &str, alg: KeyAlgorithm) -> Self {
        Guest {
            http: reqwest::Client::builder()
                .cookie_store(true)
                .build()
                .unwrap(),
            url: url.to_string(),
            key: TeeKeyPair::generate(alg).unwrap(),
        }
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}/kbs/v0/{path}", self.url))
            .json(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn auth(&self, tee: &str) -> (u16, Value) {
        self.post(
            "auth",
            &json!({"version":"0.4.0","tee":tee,"extra-params":{}}),
        )
        .await
    }

    /// SNP evidence from the simulator, bound to `nonce` and `jwk`.
    pub fn snp_evidence(nonce: &str, jwk: &Value, p: impl FnOnce(&mut ReportParams)) -> Value {
        let (_, sim, _) = platform();
        let mut params = ReportParams::new(Product::Milan);
        params.report_data =
            binding::expected_report_data(&binding::primary_digest(nonce, jwk, "").unwrap());
        params.measurement = [0x5a; 48];
        p(&mut params);
        let report = sim.report(&params).unwrap();
        let ev = SnpEvidence {
            report,
            cert_chain: vec![
                CertTableEntry {
                    cert_type: CertType::Vcek,
                    data: sim.vcek_der(&params.tcb).unwrap(),
                },
                CertTableEntry {
                    cert_type: CertType::Ask,
                    data: sim.ask_der().to_vec(),
                },
            ],
        };
        serde_json::from_str(&veil_evidence::snp::coco::to_json(&ev).unwrap()).unwrap()
    }

    pub async fn attest_with(&self, nonce: &str, evidence: Value, init: Value) -> (u16, Value) {
        let body = json!({
            "init-data": init,
            "runtime-data": {"nonce": nonce, "tee-pubkey": self.key.public_jwk().unwrap()},
            "tee-evidence": {"primary_evidence": evidence, "additional_evidence": ""},
        });
        self.post("attest", &body).await
    }

    /// auth → attest with honest simulated SNP evidence; the token.
    pub async fn handshake(&self, p: impl FnOnce(&mut ReportParams)) -> String {
        let (s, c) = self.auth("snp").await;
        assert_eq!(s, 200, "{c}");
        let c: Challenge = serde_json::from_value(c).unwrap();
        let ev = Self::snp_evidence(&c.nonce, &self.key.public_jwk().unwrap(), p);
        let (s, t) = self.attest_with(&c.nonce, ev, Value::Null).await;
        assert_eq!(s, 200, "{t}");
        t["token"].as_str().unwrap().to_string()
    }

    pub async fn resource(&self, path: &str, bearer: Option<&str>) -> (u16, Value) {
        let mut r = self
            .http
            .get(format!("{}/kbs/v0/resource/{path}", self.url));
        if let Some(t) = bearer {
            r = r.bearer_auth(t);
        }
        let r = r.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub fn open(&self, v: Value) -> Vec<u8> {
        let jwe: Jwe = serde_json::from_value(v).unwrap();
        self.key.decrypt(&jwe).unwrap()
    }
}

pub async fn put_resource(url: &str, path: &str, value: &[u8]) {
    let r = reqwest::Client::new()
        .post(format!("{url}/kbs/v0/resource/{path}"))
        .bearer_auth(admin_token(&[]))
        .body(value.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
}

/// A `veil` process that prints its address on its first line; killed
/// when dropped.
pub struct Proc {
    pub child: Child,
    pub addr: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn spawn(args: &[&str], prefix: &str) -> Proc {
    let mut cmd = Command::new(VEIL);
    cmd.args(args).env("VEIL_LOG", "warn");
    let (child, addr) = spawn_command(cmd, prefix);
    Proc { child, addr }
}

/// Starts `cmd` (stdout read, stderr discarded) and waits for the address
/// it prints on its first line after `prefix`.
pub fn spawn_command(mut cmd: Command, prefix: &str) -> (Child, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix(prefix)
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    (child, addr)
}

/// What `veil broker serve` prints before its bound address.
pub const BROKER_LISTENING: &str = "veil broker listening on ";

pub fn veil(args: &[&str]) -> std::process::Output {
    let out = Command::new(VEIL).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "veil {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A broker (plain HTTP, admin key `dir/admin.key`) holding the image KEK
/// `default/image-kek/app` (also in the returned file), and an agent on
/// the simulated SNP TEE attesting to it.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub broker: Proc,
    pub agent: Proc,
    pub kek: PathBuf,
    pub agent_url: String,
}

/// A broker on 127.0.0.1:0 over plain HTTP, its data under `d/data`, its
/// admin key `d/admin.pub` (from `veil admin keygen --out d`), with
/// `extra` arguments (what it trusts).
/// `veil admin set-resource PATH SOURCE… --url URL --key DIR/admin.key`,
/// with SOURCE `["--value", V]` or `["--file", F]`.
pub fn set_resource(url: &str, admin_dir: &Path, path: &str, source: &[&str]) {
    let key = admin_dir.join("admin.key");
    let mut args = vec!["admin", "set-resource", path];
    args.extend_from_slice(source);
    args.extend_from_slice(&["--url", url, "--key", p(&key)]);
    veil(&args);
}

pub fn spawn_dev_broker(d: &Path, extra: &[&str]) -> Proc {
    let (data, admin) = (d.join("data"), d.join("admin.pub"));
    let mut args = vec![
        "broker",
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--insecure-http",
        "--data-dir",
        p(&data),
        "--admin-key",
        p(&admin),
    ];
    args.extend_from_slice(extra);
    spawn(&args, "veil broker listening on ")
}

/// `veil agent run` against `broker_url` with `--tee tee`, its workload API
/// on 127.0.0.1:0, with `extra` arguments.
pub fn spawn_agent(broker_url: &str, tee: &str, extra: &[&str]) -> Proc {
    let mut args = vec![
        "agent",
        "run",
        "--broker",
        broker_url,
        "--tee",
        tee,
        "--listen",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    spawn(&args, "veil agent listening on ")
}

pub fn setup_broker_and_agent() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    veil(&[
        "sim",
        "snp",
        "--state-dir",
        p(&d.join("sim")),
        "--out",
        p(&d.join("ev.json")),
        "--certs-dir",
        p(&d.join("certs")),
    ]);
    veil(&["admin", "keygen", "--out", p(d)]);
    let broker = spawn_dev_broker(
        d,
        &[
            "--dangerous-trust-simulated-tee",
            p(&d.join("certs/ark.pem")),
        ],
    );
    let url = format!("http://{}", broker.addr);
    // The image KEK: a file on the build side, a resource in the broker.
    let kek = d.join("image-kek.bin");
    std::fs::write(&kek, [0x42u8; 32]).unwrap();
    set_resource(&url, d, "default/image-kek/app", &["--file", p(&kek)]);
    let agent = spawn_agent(&url, "sim-snp", &["--sim-state", p(&d.join("sim"))]);
    let agent_url = format!("http://{}", agent.addr);
    Setup {
        broker,
        agent,
        kek,
        agent_url,
        dir,
    }
}
