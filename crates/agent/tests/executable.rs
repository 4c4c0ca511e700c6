//! The `veil-agent` executable end to end: a real broker (in this process,
//! on 127.0.0.1:0, trusting the simulated SNP root), the agent started as a
//! process on the simulated TEE, a secret served through its workload API,
//! and a clean stop on SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::BufRead;
use std::process::{Command, Stdio};

use veil_evidence::snp::Product;
use veil_sim::snp::SimSnp;

const AGENT: &str = env!("CARGO_BIN_EXE_veil-agent");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_a_secret_from_the_broker_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sim = SimSnp::load_or_create(&d.join("sim"), Product::Milan).unwrap();
    let ark = d.join("ark.pem");
    std::fs::write(
        &ark,
        veil_endorsements::certs::to_pem("CERTIFICATE", sim.ark_der()),
    )
    .unwrap();
    let cfg = veil_broker::config::Config {
        data_dir: d.join("data"),
        insecure_http: true,
        dangerous_allow_unauthenticated_admin: true,
        dangerous_trust_simulated_tee: Some(ark),
        ..veil_broker::config::Config::default()
    };
    let broker = veil_broker::Broker::build(cfg).await.unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(veil_broker::serve(listener, broker, async {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{url}/kbs/v0/resource/default/key/1"))
        .body("secret for the executable")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());

    let mut child = Command::new(AGENT)
        .args(["run", "--tee", "sim-snp", "--listen", "127.0.0.1:0"])
        .args(["--broker", &url])
        .arg("--sim-state")
        .arg(d.join("sim"))
        .env("VEIL_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("veil agent listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
        .to_string();
    let resource = |tag: &str| {
        http.get(format!("http://{addr}/cdh/resource/default/key/{tag}"))
            .send()
    };
    let r = resource("1").await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "secret for the executable");
    // A resource the broker does not have: the agent says so, and keeps
    // serving.
    let r = resource("none").await.unwrap();
    assert!(r.status().is_client_error(), "{}", r.status());
    assert_eq!(resource("1").await.unwrap().status(), 200);

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

#[test]
fn refuses_to_start_without_a_tee() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(AGENT)
        .args(["run", "--broker", "http://127.0.0.1:9", "--tee", "auto"])
        .arg("--tsm-root")
        .arg(dir.path().join("no-tsm"))
        .arg("--sev-guest-device")
        .arg(dir.path().join("no-sev-guest"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no hardware TEE found"), "{stderr}");
}
