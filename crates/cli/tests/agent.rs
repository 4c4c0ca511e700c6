//! The real `veil` binaries end to end: a broker, and agents on the
//! simulated SNP TEE serving secrets through the workload API.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

mod common;

use common::{VEIL, p, set_resource, spawn_agent, spawn_dev_broker, veil};

#[tokio::test]
async fn broker_and_agent_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // The simulated platform and its root; admin and sealing keys.
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
    veil(&["seal", "keygen", "--kid", "app-key", "--out", p(d)]);
    let broker = spawn_dev_broker(
        d,
        &[
            "--dangerous-trust-simulated-tee",
            p(&d.join("certs/ark.pem")),
        ],
    );
    let url = format!("http://{}", broker.addr);
    let admin_key = d.join("admin.key");
    let admin = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--url", url.as_str(), "--key", p(&admin_key)]);
        veil(&all);
    };
    admin(&[
        "admin",
        "set-resource",
        "default/key/1",
        "--value",
        "model key",
    ]);
    admin(&[
        "admin",
        "set-resource",
        "default/db/password",
        "--value",
        "hunter2",
    ]);

    // An agent on the simulated SNP TEE, with init-data.
    let init = d.join("init.toml");
    std::fs::write(
        &init,
        "version = \"0.1.0\"\nalgorithm = \"sha256\"\n[data]\n\"aa.toml\" = \"x\"\n",
    )
    .unwrap();
    let agent = spawn_agent(
        &url,
        "sim-snp",
        &[
            "--sim-state",
            p(&d.join("sim")),
            "--init-data",
            p(&init),
            "--sealing-key",
            &format!("app-key={}", p(&d.join("app-key-public.json"))),
        ],
    );
    let api = format!("http://{}", agent.addr);
    let http = reqwest::Client::new();
    // Several secrets, one attestation.
    for _ in 0..5 {
        let r = http
            .get(format!("{api}/cdh/resource/default/key/1"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        assert_eq!(r.bytes().await.unwrap().as_ref(), b"model key");
    }
    let r = http
        .get(format!("{api}/cdh/resource/default/db/password"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"hunter2");
    let metrics = reqwest::get(format!("{url}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("veil_attestations_total{outcome=\"affirming\",tee=\"snp\"} 1\n"),
        "{metrics}"
    );
    let info: serde_json::Value = http
        .get(format!("{api}/info"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["attestations"], 1);
    assert_eq!(info["tee"], "snp");
    let token: serde_json::Value = http
        .get(format!("{api}/aa/token?token_type=kbs"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(token["token"].as_str().unwrap().split('.').count() == 3);
    // Unknown resource: a clear 404.
    let r = http
        .get(format!("{api}/cdh/resource/default/key/none"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);

    // Sealed secrets.
    let out = veil(&[
        "seal",
        "vault",
        "--resource",
        "kbs:///default/db/password",
        "--signing-key",
        p(&d.join("app-key-private.json")),
    ]);
    let sealed = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let r = http
        .post(format!("{api}/cdh/unseal"))
        .body(sealed.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"hunter2");
    let mut tampered = sealed.clone();
    tampered.pop();
    tampered.push(if sealed.ends_with('A') { 'B' } else { 'A' });
    let r = http
        .post(format!("{api}/cdh/unseal"))
        .body(tampered)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let manifest = veil(&[
        "seal",
        "vault",
        "--resource",
        "kbs:///default/db/password",
        "--signing-key",
        p(&d.join("app-key-private.json")),
        "--kubernetes-secret",
        "db",
    ]);
    assert!(String::from_utf8_lossy(&manifest.stdout).contains("kind: Secret"));

    // An envelope: data sealed under a key the broker holds.
    let dek = d.join("dek.bin");
    std::fs::write(&dek, [0x33u8; 32]).unwrap();
    admin(&[
        "admin",
        "set-resource",
        "default/key/seal",
        "--file",
        p(&dek),
    ]);
    let plain = d.join("plain.txt");
    std::fs::write(&plain, "enveloped secret").unwrap();
    let out = veil(&[
        "seal",
        "envelope",
        "--key-id",
        "kbs:///default/key/seal",
        "--key-file",
        p(&dek),
        "--file",
        p(&plain),
        "--signing-key",
        p(&d.join("app-key-private.json")),
    ]);
    let env = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let r = http
        .post(format!("{api}/cdh/unseal"))
        .body(env)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"enveloped secret");

    // The same broker refuses a guest launched with debug on: a clear error.
    let debug_agent = spawn_agent(
        &url,
        "sim-snp",
        &["--sim-state", p(&d.join("sim")), "--sim-debug"],
    );
    let r = http
        .get(format!(
            "http://{}/cdh/resource/default/key/1",
            debug_agent.addr
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let v: serde_json::Value = r.json().await.unwrap();
    assert!(
        v["error"].as_str().unwrap().contains("policy refused"),
        "{v}"
    );

    // Init-data that does not match the launch measurement: the agent refuses to start.
    let wrong = d.join("wrong.toml");
    std::fs::write(&wrong, "version = \"0.1.0\"\nalgorithm = \"sha256\"\n").unwrap();
    let out = Command::new(VEIL)
        .args([
            "agent",
            "run",
            "--broker",
            &url,
            "--tee",
            "snp",
            "--tsm-root",
            p(&d.join("no-tsm")),
            "--sev-guest-device",
            p(&d.join("no-sev-guest")),
            "--init-data",
            p(&wrong),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("configfs-tsm") && err.contains("no-sev-guest"),
        "{err}"
    );
}

#[tokio::test]
async fn tdx_broker_and_agent_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    veil(&[
        "sim",
        "tdx",
        "--state-dir",
        p(&d.join("sim")),
        "--collateral-out",
        p(&d.join("collateral.json")),
        "--root-out",
        p(&d.join("intel-root.pem")),
    ]);
    veil(&["admin", "keygen", "--out", p(d)]);
    let broker = spawn_dev_broker(
        d,
        &[
            "--dangerous-trust-simulated-tdx",
            p(&d.join("intel-root.pem")),
            "--dcap-collateral",
            p(&d.join("collateral.json")),
        ],
    );
    let url = format!("http://{}", broker.addr);
    set_resource(&url, d, "default/key/1", &["--value", "tdx secret"]);
    let init = d.join("init.toml");
    std::fs::write(
        &init,
        "version = \"0.1.0\"\nalgorithm = \"sha384\"\n[data]\n\"cdh.toml\" = \"x\"\n",
    )
    .unwrap();
    let agent = spawn_agent(
        &url,
        "sim-tdx",
        &["--sim-state", p(&d.join("sim")), "--init-data", p(&init)],
    );
    let http = reqwest::Client::new();
    let r = http
        .get(format!("http://{}/cdh/resource/default/key/1", agent.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{:?}", r.text().await);
    let r = http
        .get(format!("http://{}/cdh/resource/default/key/1", agent.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"tdx secret");
    let info: serde_json::Value = http
        .get(format!("http://{}/info", agent.addr))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["tee"], "tdx");
    assert_eq!(info["attestations"], 1);
    // The broker replayed the CCEL into the RTMRs and kept the events as claims.
    let token: serde_json::Value = http
        .get(format!("http://{}/aa/token", agent.addr))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let payload = token["token"]
        .as_str()
        .unwrap()
        .split('.')
        .nth(1)
        .unwrap()
        .to_string();
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
            .unwrap(),
    )
    .unwrap();
    let cpu0 = &claims["submods"]["cpu0"];
    assert_eq!(cpu0["ear_status"], "affirming");
    assert_eq!(
        cpu0["ear_attester_claims"]["event_log"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
    assert_eq!(cpu0["ear_attester_claims"]["tcb_status"], "UpToDate");
    // A debug TD attests but is refused by the default policy.
    let debug = spawn_agent(
        &url,
        "sim-tdx",
        &["--sim-state", p(&d.join("sim")), "--sim-debug"],
    );
    let r = http
        .get(format!("http://{}/cdh/resource/default/key/1", debug.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
}

#[tokio::test]
async fn tdx_collateral_fetched_from_a_pccs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    veil(&[
        "sim",
        "tdx",
        "--state-dir",
        p(&d.join("sim")),
        "--collateral-out",
        p(&d.join("collateral.json")),
        "--root-out",
        p(&d.join("intel-root.pem")),
    ]);
    let c: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("collateral.json")).unwrap()).unwrap();
    let pccs = veil_testkit::pccs_stub(&c, "tdx", "00806f050000");
    veil(&["admin", "keygen", "--out", p(d)]);
    let broker = spawn_dev_broker(
        d,
        &[
            "--dangerous-trust-simulated-tdx",
            p(&d.join("intel-root.pem")),
            "--pcs-url",
            &pccs.base,
            "--cache-dir",
            p(&d.join("cache")),
        ],
    );
    let url = format!("http://{}", broker.addr);
    set_resource(&url, d, "default/key/1", &["--value", "via pccs"]);
    let agent = spawn_agent(&url, "sim-tdx", &["--sim-state", p(&d.join("sim"))]);
    let r = reqwest::get(format!("http://{}/cdh/resource/default/key/1", agent.addr))
        .await
        .unwrap();
    let status = r.status().as_u16();
    let body = r.bytes().await.unwrap();
    assert_eq!(
        status,
        200,
        "{}; pccs hits {:?}",
        String::from_utf8_lossy(&body),
        pccs.hits()
    );
    assert_eq!(body.as_ref(), b"via pccs");
    assert_eq!(
        pccs.hits().len(),
        4,
        "collateral fetched once: {:?}",
        pccs.hits()
    );
}

/// A swtpm-backed agent attests through the broker: the broker trusts the
/// TPM's attestation key (registered from `veil agent tpm-ak`), verifies
/// the quote bound to the session, and releases the secret; a broker that
/// does not know the AK refuses.
#[tokio::test]
async fn tpm_agent_through_the_broker() {
    let Some(tpm) = veil_testkit::swtpm::SoftTpm::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tpm_arg = format!("tcp:127.0.0.1:{}", tpm.port);
    let ak = veil(&["agent", "tpm-ak", "--tpm", &tpm_arg]);
    let ak_pem = d.join("ak.pem");
    std::fs::write(&ak_pem, &ak.stdout).unwrap();
    assert!(String::from_utf8_lossy(&ak.stdout).starts_with("-----BEGIN PUBLIC KEY-----"));
    let config = d.join("broker.toml");
    std::fs::write(
        &config,
        format!("[endorsements]\ntpm_trusted_aks = [{:?}]\n", p(&ak_pem)),
    )
    .unwrap();
    veil(&["admin", "keygen", "--out", p(d)]);
    let broker = spawn_dev_broker(d, &["--config", p(&config)]);
    let url = format!("http://{}", broker.addr);
    set_resource(&url, d, "default/key/1", &["--value", "tpm secret"]);
    let agent = spawn_agent(&url, "tpm", &["--tpm", &tpm_arg]);
    let http = reqwest::Client::new();
    let r = http
        .get(format!("http://{}/cdh/resource/default/key/1", agent.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"tpm secret");

    // A broker that does not trust this AK.
    let other = tempfile::tempdir().unwrap();
    let o = other.path();
    veil(&["admin", "keygen", "--out", p(o)]);
    let broker2 = spawn_dev_broker(o, &[]);
    let agent2 = spawn_agent(
        &format!("http://{}", broker2.addr),
        "tpm",
        &["--tpm", &tpm_arg],
    );
    let r = http
        .get(format!("http://{}/cdh/resource/default/key/1", agent2.addr))
        .send()
        .await
        .unwrap();
    assert_ne!(r.status().as_u16(), 200);
}
