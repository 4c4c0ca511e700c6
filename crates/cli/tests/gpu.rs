//! CPU + GPU evidence gating one secret, with the real binaries: an agent on
//! the simulated SNP TEE with a simulated H100 attests once with composite
//! evidence; the broker appraises `cpu0` and `gpu0`; a resource policy that
//! requires both releases the secret only when both are affirming — not to
//! a CPU-only guest, not when the GPU is untrusted.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use base64::Engine as _;
use common::{p, set_resource, spawn_agent, spawn_dev_broker, veil};

fn ear(token: &serde_json::Value) -> serde_json::Value {
    let payload = token["token"].as_str().unwrap().split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

/// The simulated SNP platform and H100 (kept in `sim`), the GPU root and
/// one GPU evidence file (zero nonce), and admin keys, under `d`.
struct Platform {
    sim: std::path::PathBuf,
    root: std::path::PathBuf,
    gpu_ev: std::path::PathBuf,
}

fn platform(d: &std::path::Path) -> Platform {
    let sim = d.join("sim");
    let root = d.join("gpu-root.pem");
    let gpu_ev = d.join("gpu.json");
    veil(&[
        "sim",
        "snp",
        "--state-dir",
        p(&sim),
        "--out",
        p(&d.join("ev.json")),
        "--certs-dir",
        p(&d.join("certs")),
    ]);
    veil(&[
        "sim",
        "gpu",
        "--state-dir",
        p(&sim),
        "--root-out",
        p(&root),
        "--out",
        p(&gpu_ev),
    ]);
    veil(&["admin", "keygen", "--out", p(d)]);
    Platform { sim, root, gpu_ev }
}

/// The EAR claims of the token an agent (workload API `api`) holds.
async fn ear_of(api: &str) -> serde_json::Value {
    let token: serde_json::Value = reqwest::get(format!("{api}/aa/token?token_type=kbs"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    ear(&token)
}

async fn get(url: String) -> (u16, Vec<u8>) {
    let r = reqwest::get(url).await.unwrap();
    (r.status().as_u16(), r.bytes().await.unwrap().to_vec())
}

#[tokio::test]
async fn secret_released_only_when_cpu_and_gpu_are_affirming() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let Platform { sim, root, .. } = platform(d);
    let ark = d.join("certs/ark.pem");
    let broker = spawn_dev_broker(
        d,
        &[
            "--dangerous-trust-simulated-tee",
            p(&ark),
            "--dangerous-trust-simulated-gpu",
            p(&root),
        ],
    );
    let url = format!("http://{}", broker.addr);
    let key = d.join("admin.key");
    let secret = d.join("secret");
    std::fs::write(&secret, b"model weights key").unwrap();
    set_resource(&url, d, "default/gpu/model-key", &["--file", p(&secret)]);
    // Releases under default/gpu/* need both a CPU and a GPU submod, all
    // affirming; other paths keep the default rule.
    let policy = d.join("policy.rego");
    std::fs::write(
        &policy,
        r#"package policy
import rego.v1
default allow := false
all_affirming if {
	every _, s in input.submods { s.ear_status == "affirming" }
}
allow if {
	data["resource-path"][0] == "default"
	data["resource-path"][1] == "gpu"
	input.submods.cpu0.ear_status == "affirming"
	input.submods.gpu0.ear_status == "affirming"
	all_affirming
}
allow if {
	data["resource-path"][1] != "gpu"
	count(input.submods) > 0
	all_affirming
}
"#,
    )
    .unwrap();
    veil(&[
        "admin",
        "set-policy",
        "--url",
        &url,
        "--key",
        p(&key),
        "--kind",
        "resource",
        p(&policy),
    ]);

    // CPU + trusted GPU: released, one attestation, both submods affirming.
    let agent = spawn_agent(&url, "sim-snp", &["--sim-state", p(&sim), "--sim-gpu"]);
    let api = format!("http://{}", agent.addr);
    let (status, body) = get(format!("{api}/cdh/resource/default/gpu/model-key")).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(body, b"model weights key");
    let claims = ear_of(&api).await;
    assert_eq!(claims["submods"]["cpu0"]["ear_status"], "affirming");
    let gpu = &claims["submods"]["gpu0"];
    assert_eq!(gpu["ear_status"], "affirming", "{gpu}");
    assert_eq!(gpu["ear_attester_claims"]["tee"], "nvidia");
    assert_eq!(
        gpu["ear_attester_claims"]["driver_version"],
        veil_sim::gpu::DRIVER_VERSION
    );
    assert_eq!(gpu["ear_appraisal_policy_ids"][0], "default_gpu");
    let info: serde_json::Value = reqwest::get(format!("{api}/info"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["additional_tees"][0], "nvidia");
    assert_eq!(info["attestations"], 1);
    drop(agent);

    // CPU only: the token has no gpu0, the GPU secret is refused.
    let cpu_only = spawn_agent(&url, "sim-snp", &["--sim-state", p(&sim)]);
    let (status, _) = get(format!(
        "http://{}/cdh/resource/default/gpu/model-key",
        cpu_only.addr
    ))
    .await;
    assert_eq!(status, 403);
    drop(cpu_only);

    // A registered driver version that the GPU does not run: gpu0 is
    // contraindicated by the appraisal policy and the secret is refused.
    let out = veil(&[
        "admin",
        "set-reference-value",
        "--url",
        &url,
        "--key",
        p(&key),
        "--name",
        "nvidia_driver_version",
        "--value",
        "999.99.99",
    ]);
    assert!(out.status.success(), "{out:?}");
    let old_driver = spawn_agent(&url, "sim-snp", &["--sim-state", p(&sim), "--sim-gpu"]);
    let oapi = format!("http://{}", old_driver.addr);
    let (status, _) = get(format!("{oapi}/cdh/resource/default/gpu/model-key")).await;
    assert_eq!(status, 403);
    let claims = ear_of(&oapi).await;
    assert_eq!(claims["submods"]["cpu0"]["ear_status"], "affirming");
    assert_eq!(claims["submods"]["gpu0"]["ear_status"], "contraindicated");
    drop(old_driver);

    // A broker that does not trust the simulated GPU: gpu0 fails
    // verification, is reported contraindicated, and nothing is released
    // (the default resource policy wants every submod affirming).
    let d2 = d.join("b2");
    std::fs::create_dir_all(&d2).unwrap();
    std::fs::copy(d.join("admin.pub"), d2.join("admin.pub")).unwrap();
    let broker2 = spawn_dev_broker(&d2, &["--dangerous-trust-simulated-tee", p(&ark)]);
    let url2 = format!("http://{}", broker2.addr);
    set_resource(&url2, d, "default/key/1", &["--file", p(&secret)]);
    let untrusted = spawn_agent(&url2, "sim-snp", &["--sim-state", p(&sim), "--sim-gpu"]);
    let uapi = format!("http://{}", untrusted.addr);
    let (status, _) = get(format!("{uapi}/cdh/resource/default/key/1")).await;
    assert_eq!(status, 403);
    let claims = ear_of(&uapi).await;
    assert_eq!(claims["submods"]["gpu0"]["ear_status"], "contraindicated");
    let why = claims["submods"]["gpu0"]["ear_attester_claims"]["error"]
        .as_str()
        .unwrap();
    assert!(why.contains("chain"), "{why}");
    // The same guest without its GPU gets the secret from that broker.
    let cpu_only2 = spawn_agent(&url2, "sim-snp", &["--sim-state", p(&sim)]);
    let (status, body) = get(format!(
        "http://{}/cdh/resource/default/key/1",
        cpu_only2.addr
    ))
    .await;
    assert_eq!(status, 200);
    assert_eq!(body, b"model weights key");
}

/// OCSP for GPU certificates (a loopback stub of NVIDIA's responder,
/// answering as the simulated PKI): good answers are claims, a revoked
/// device certificate rejects the GPU in the broker and in `veil verify`.
#[tokio::test]
async fn revoked_gpu_certificate_blocks_the_secret() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use veil_sim::gpu::{SimGpu, SimOcspStatus};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let Platform { sim, root, gpu_ev } = platform(d);
    let device = SimGpu::load_or_create(&sim).unwrap();
    let revoked = Arc::new(AtomicBool::new(false));
    let r = revoked.clone();
    let responder = veil_testkit::StubHttp::start_handler(move |method, _path, body| {
        let status = if r.load(Ordering::SeqCst) {
            SimOcspStatus::Revoked
        } else {
            SimOcspStatus::Good
        };
        let now = veil_verifier::UnixTime::now().0;
        match (method, device.ocsp_response(body, status, now)) {
            ("POST", Ok(resp)) => (
                "200 OK".into(),
                resp,
                "Content-Type: application/ocsp-response\r\n".into(),
            ),
            _ => ("400 Bad Request".into(), Vec::new(), String::new()),
        }
    });
    let broker = spawn_dev_broker(
        d,
        &[
            "--dangerous-trust-simulated-tee",
            p(&d.join("certs/ark.pem")),
            "--dangerous-trust-simulated-gpu",
            p(&root),
            "--nvidia-ocsp-url",
            &responder.base,
        ],
    );
    let url = format!("http://{}", broker.addr);
    let secret = d.join("secret");
    std::fs::write(&secret, b"s3cret").unwrap();
    set_resource(&url, d, "default/key/1", &["--file", p(&secret)]);

    let good = spawn_agent(&url, "sim-snp", &["--sim-state", p(&sim), "--sim-gpu"]);
    let api = format!("http://{}", good.addr);
    let (status, body) = get(format!("{api}/cdh/resource/default/key/1")).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let claims = ear_of(&api).await;
    let gpu = &claims["submods"]["gpu0"];
    assert_eq!(gpu["ear_status"], "affirming");
    assert_eq!(
        gpu["ear_attester_claims"]["ocsp"]["status"], "good",
        "{gpu}"
    );
    // The device certificate and its CA were both asked about.
    assert_eq!(
        gpu["ear_attester_claims"]["ocsp"]["certificates"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    drop(good);

    revoked.store(true, Ordering::SeqCst);
    let bad = spawn_agent(&url, "sim-snp", &["--sim-state", p(&sim), "--sim-gpu"]);
    let api = format!("http://{}", bad.addr);
    let (status, _) = get(format!("{api}/cdh/resource/default/key/1")).await;
    assert_eq!(status, 403);
    let claims = ear_of(&api).await;
    let gpu = &claims["submods"]["gpu0"];
    assert_eq!(gpu["ear_status"], "contraindicated");
    assert!(
        gpu["ear_attester_claims"]["error"]
            .as_str()
            .unwrap()
            .contains("revoked"),
        "{gpu}"
    );
    drop(bad);

    // `veil verify` asks the same responder.
    let verify = |extra: &[&str]| {
        let mut args = vec![
            "verify",
            "--tee",
            "nvidia",
            p(&gpu_ev),
            "--dangerous-trust-simulated-gpu",
            p(&root),
            "--ocsp-url",
            &responder.base,
        ];
        args.extend_from_slice(extra);
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_veil"))
            .args(&args)
            .output()
            .unwrap();
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        (out.status.code(), json)
    };
    let (code, out) = verify(&[]);
    assert_eq!(
        (code, out["code"].as_str()),
        (Some(1), Some("revoked")),
        "{out}"
    );
    revoked.store(false, Ordering::SeqCst);
    let (code, out) = verify(&[]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(out["claims"]["gpus"][0]["ocsp"]["status"], "good");
    assert!(!responder.hits().is_empty());
}

/// Reference integrity manifests configured in the broker: the GPU's
/// measurements must match them for `gpu0` to be affirming; `veil verify
/// --rim` rejects a mismatch.
#[tokio::test]
async fn rims_gate_the_gpu() {
    use std::collections::BTreeMap;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let Platform { sim, root, gpu_ev } = platform(d);
    let all: BTreeMap<u8, Vec<u8>> = (1..=veil_sim::gpu::BLOCKS)
        .map(|i| (i, veil_sim::gpu::measurement(i).to_vec()))
        .collect();
    let good = d.join("good-rim.xml");
    std::fs::write(
        &good,
        veil_endorsements::rim::encode("GH100", "550.90.07", &all),
    )
    .unwrap();
    let mut changed = all.clone();
    changed.insert(5, vec![0x55; 48]);
    let bad = d.join("bad-rim.xml");
    std::fs::write(
        &bad,
        veil_endorsements::rim::encode("GH100", "550.90.07", &changed),
    )
    .unwrap();
    let secret = d.join("secret");
    std::fs::write(&secret, b"s3cret").unwrap();
    let mut results = Vec::new();
    for (name, rim) in [("good", &good), ("bad", &bad)] {
        let bd = d.join(name);
        std::fs::create_dir_all(&bd).unwrap();
        std::fs::copy(d.join("admin.pub"), bd.join("admin.pub")).unwrap();
        let broker = spawn_dev_broker(
            &bd,
            &[
                "--dangerous-trust-simulated-tee",
                p(&d.join("certs/ark.pem")),
                "--dangerous-trust-simulated-gpu",
                p(&root),
                "--nvidia-rim",
                p(rim),
            ],
        );
        let url = format!("http://{}", broker.addr);
        set_resource(&url, d, "default/key/1", &["--file", p(&secret)]);
        let agent = spawn_agent(&url, "sim-snp", &["--sim-state", p(&sim), "--sim-gpu"]);
        let api = format!("http://{}", agent.addr);
        let (status, _) = get(format!("{api}/cdh/resource/default/key/1")).await;
        results.push((status, ear_of(&api).await["submods"]["gpu0"].clone()));
    }
    let (status, gpu) = &results[0];
    assert_eq!(*status, 200, "{gpu}");
    assert_eq!(gpu["ear_attester_claims"]["rim"]["status"], "match");
    let (status, gpu) = &results[1];
    assert_eq!(*status, 403);
    assert_eq!(gpu["ear_status"], "contraindicated");
    assert_eq!(
        gpu["ear_attester_claims"]["rim"]["mismatched"][0]["index"],
        5
    );
    // The same manifests with `veil verify`.
    let verify = |rim: &std::path::Path| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_veil"))
            .args([
                "verify",
                "--tee",
                "nvidia",
                p(&gpu_ev),
                "--dangerous-trust-simulated-gpu",
                p(&root),
                "--rim",
                p(rim),
            ])
            .output()
            .unwrap();
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        (out.status.code(), json)
    };
    let (code, out) = verify(&good);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(out["claims"]["gpus"][0]["rim"]["status"], "match");
    let (code, out) = verify(&bad);
    assert_eq!(
        (code, out["code"].as_str()),
        (Some(1), Some("rim_mismatch")),
        "{out}"
    );
}
