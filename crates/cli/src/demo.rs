//! `veil demo`: the main job on an embedded default, with no external
//! services. A simulated SNP TEE produces a report bound to a fresh
//! challenge; the verifier checks it (first without, then with the explicit
//! dangerous opt-in for the simulated root) and appraises it; then an
//! in-process broker (loopback, temporary store) serves the KBS protocol to a
//! simulated guest, which attests and receives a secret encrypted to its
//! key, while a guest launched with debug on is refused. The guest agent
//! issue replaces the in-process guest with `veil agent`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use serde::Serialize;
use veil_endorsements::snp::SnpEndorsements;
use veil_evidence::snp::Product;
use veil_sim::snp::{ReportParams, SimSnp};
use veil_verifier::UnixTime;
use veil_verifier::snp::{SnpClaims, SnpVerifier, TrustAnchors};

use crate::output::{self, Format};
use crate::verify::parse_product;
use crate::{EXIT_ERROR, EXIT_REJECTED};

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where the simulated PKI is kept between runs.
    #[arg(long, env = "VEIL_STATE_DIR", default_value = ".veil/sim")]
    pub state_dir: PathBuf,
    /// The simulated processor.
    #[arg(long, value_parser = parse_product, default_value = "Milan")]
    pub product: Product,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

/// One appraisal check against a reference value.
#[derive(Debug, Serialize)]
struct Check {
    name: &'static str,
    expected: String,
    actual: String,
    ok: bool,
}

#[derive(Debug, Serialize)]
struct DemoResult<'a> {
    status: &'static str,
    simulated: bool,
    checks: Vec<Check>,
    claims: &'a SnpClaims,
    broker: BrokerFlow,
}

/// What happened in the broker part of the demo.
#[derive(Debug, Clone, Serialize)]
struct BrokerFlow {
    url: String,
    ear_status: String,
    released: bool,
    debug_guest_denied: bool,
}

/// Starts an in-process broker (loopback, temporary store, admin key made
/// for the occasion, simulated root trusted by name), stores a secret and a
/// reference value, and runs two guests through the KBS protocol: an honest
/// one (gets the secret) and one launched with debug on (refused, 403).
async fn broker_flow(
    sim: &SimSnp,
    params: &ReportParams,
    state_dir: &std::path::Path,
    text: bool,
) -> Result<BrokerFlow, String> {
    use veil_protocol::client::{ClientError, KbsClient};
    use veil_protocol::jwe::KeyAlgorithm;

    let work = state_dir.join(format!("demo-broker-{}", std::process::id()));
    let _cleanup = RemoveOnDrop(work.clone());
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    let ark = work.join("sim-ark.pem");
    std::fs::write(
        &ark,
        veil_endorsements::certs::to_pem("CERTIFICATE", sim.ark_der()),
    )
    .map_err(|e| e.to_string())?;
    crate::admin::keygen(&work)?;
    let kek = work.join("kek.hex");
    let mut kek_bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut kek_bytes).map_err(|_| "no randomness".to_string())?;
    std::fs::write(&kek, hex::encode(kek_bytes)).map_err(|e| e.to_string())?;
    let cfg = veil_broker::config::Config {
        data_dir: work.join("data"),
        insecure_http: true,
        dangerous_trust_simulated_tee: Some(ark),
        kek_file: Some(kek),
        admin: veil_broker::config::AdminConfig {
            keys: vec![work.join("admin.pub")],
            ..veil_broker::config::AdminConfig::default()
        },
        ..veil_broker::config::Config::default()
    };
    let broker = veil_broker::Broker::build(cfg).await?;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let url = format!(
        "http://{}",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(veil_broker::serve(listener, broker, async {
        let _ = stopped.await;
    }));
    if text {
        println!(
            "\n[broker] veil broker on {url} (in-process, loopback, temporary store; simulated root trusted by name)"
        );
    }
    let token = crate::admin::mint(&crate::admin::TokenArgs {
        key: work.join("admin.key"),
        role: "admin".into(),
        issuer: "veil-admin".into(),
        audience: "veil-broker".into(),
        ttl: 60,
    })?;
    let http = reqwest::Client::new();
    let admin = |path: &str, body: reqwest::Body| {
        http.post(format!("{url}/kbs/v0/{path}"))
            .bearer_auth(&token)
            .body(body)
            .send()
    };
    let r = admin(
        "resource/default/db/password",
        "correct horse battery staple".into(),
    )
    .await
    .map_err(|e| e.to_string())?;
    if !r.status().is_success() {
        return Err(format!("storing the secret: HTTP {}", r.status()));
    }
    let rv = serde_json::json!({"name": "snp_measurement", "type": "hex", "values": [hex::encode(params.measurement)]});
    let r = admin("reference-value", rv.to_string().into())
        .await
        .map_err(|e| e.to_string())?;
    if !r.status().is_success() {
        return Err(format!(
            "registering the reference value: HTTP {}",
            r.status()
        ));
    }
    if text {
        println!(
            "[admin]  stored secret default/db/password; registered reference value snp_measurement"
        );
    }
    let evidence = |p: &ReportParams, digest: &[u8; 48]| -> Result<serde_json::Value, String> {
        let mut p = p.clone();
        p.report_data = veil_protocol::binding::expected_report_data(digest);
        let report = sim.report(&p).map_err(|e| e.to_string())?;
        let ev = veil_evidence::snp::SnpEvidence {
            report,
            cert_chain: vec![
                veil_evidence::snp::CertTableEntry {
                    cert_type: veil_evidence::snp::CertType::Vcek,
                    data: sim.vcek_der(&p.tcb).map_err(|e| e.to_string())?,
                },
                veil_evidence::snp::CertTableEntry {
                    cert_type: veil_evidence::snp::CertType::Ask,
                    data: sim.ask_der().to_vec(),
                },
            ],
        };
        let json = veil_evidence::snp::coco::to_json(&ev).map_err(|e| e.to_string())?;
        serde_json::from_str(&json).map_err(|e| e.to_string())
    };
    // The honest guest.
    let guest = KbsClient::new(&url, KeyAlgorithm::EcdhEsP256).map_err(|e| e.to_string())?;
    let token = guest
        .attest("snp", |_, d| evidence(params, d))
        .await
        .map_err(|e| e.to_string())?;
    let ear_status = token
        .split('.')
        .nth(1)
        .and_then(|p| {
            base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, p).ok()
        })
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|c| {
            c["submods"]["cpu0"]["ear_status"]
                .as_str()
                .map(str::to_string)
        })
        .unwrap_or_default();
    if text {
        println!(
            "[guest]  /auth → /attest with SNP evidence bound to the nonce and a fresh P-256 key: EAR token, cpu0 {ear_status}"
        );
    }
    let secret = guest
        .resource("default/db/password", Some(&token))
        .await
        .map_err(|e| e.to_string())?;
    let released = secret == b"correct horse battery staple";
    if text {
        println!(
            "[guest]  GET /resource/default/db/password → JWE (ECDH-ES+A256KW) → decrypted {} bytes{}",
            secret.len(),
            if released {
                ", matches the stored secret"
            } else {
                ", MISMATCH"
            }
        );
    }
    // A guest launched with debug on: attests, but the policy refuses it.
    let mut debug_params = params.clone();
    debug_params.policy |= 1 << 19;
    let debug_guest = KbsClient::new(&url, KeyAlgorithm::EcdhEsP256).map_err(|e| e.to_string())?;
    let debug_token = debug_guest
        .attest("snp", |_, d| evidence(&debug_params, d))
        .await
        .map_err(|e| e.to_string())?;
    let denied = matches!(
        debug_guest
            .resource("default/db/password", Some(&debug_token))
            .await,
        Err(ClientError::Status { status: 403, .. })
    );
    if text {
        println!(
            "[guest]  a guest launched with DEBUG on: {}",
            if denied {
                "attested as contraindicated, resource refused (403)"
            } else {
                "NOT refused"
            }
        );
    }
    let _ = stop.send(());
    let _ = server.await;
    Ok(BrokerFlow {
        url,
        ear_status,
        released,
        debug_guest_denied: denied,
    })
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn digest384(data: &[u8]) -> [u8; 48] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA384, data);
    let mut out = [0u8; 48];
    out.copy_from_slice(d.as_ref());
    out
}

pub async fn run(a: DemoArgs) -> ExitCode {
    let text = a.format == Format::Text;
    let say = |s: String| {
        if text {
            println!("{s}");
        }
    };
    say(format!(
        "[1/5] simulated AMD SEV-SNP TEE ({}), PKI kept in {}",
        a.product,
        a.state_dir.display()
    ));
    let sim = match SimSnp::load_or_create(&a.state_dir, a.product) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    // The relying party's challenge, bound into REPORT_DATA as SHA-384 of
    // the nonce followed by 16 zero bytes (the KBS binding layout).
    let mut nonce = [0u8; 32];
    if aws_lc_rs::rand::fill(&mut nonce).is_err() {
        eprintln!("error: no randomness");
        return ExitCode::from(EXIT_ERROR);
    }
    let mut report_data = [0u8; 64];
    report_data[..48].copy_from_slice(&digest384(&nonce));
    let reference_measurement = digest384(b"veil demo guest image v1");
    let mut p = ReportParams::new(a.product);
    p.measurement = reference_measurement;
    p.report_data = report_data;
    say(format!("[2/5] challenge nonce {}", hex::encode(nonce)));
    let report = match sim.report(&p) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    let vcek = match sim.vcek_der(&p.tcb) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    let endorsements = SnpEndorsements {
        certs: vec![vcek, sim.ask_der().to_vec()],
        crls: vec![],
    };
    say(format!(
        "[3/5] guest produced an SNP report v{} ({} bytes), measurement {}",
        report.version,
        report.as_bytes().len(),
        hex::encode(report.measurement)
    ));
    let at = UnixTime::now();
    // Default trust: AMD's roots only. The simulated evidence must fail.
    let strict = SnpVerifier::new(TrustAnchors::amd());
    match strict.verify(&report, &endorsements, at) {
        Ok(_) => {
            eprintln!("error: simulated evidence was accepted without the dangerous opt-in");
            return ExitCode::from(EXIT_ERROR);
        }
        Err(e) => say(format!(
            "[4/5] default verifier (AMD roots only) refuses it, as it must:\n      {e}"
        )),
    }
    let anchors = match TrustAnchors::amd().dangerous_trust_simulated_root(a.product, sim.ark_der())
    {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    say("[5/5] verifier with dangerous_trust_simulated_root (demo only):".into());
    let p = p;
    let verified = match SnpVerifier::new(anchors).verify(&report, &endorsements, at) {
        Ok(v) => v,
        Err(e) => {
            println!("{}", output::rejected(a.format, &e, at));
            return ExitCode::from(EXIT_REJECTED);
        }
    };
    let c = verified.claims();
    // Appraisal against the reference values this demo launched with.
    let checks = vec![
        Check {
            name: "measurement",
            expected: hex::encode(reference_measurement),
            actual: c.measurement.to_string(),
            ok: c.measurement.0 == reference_measurement,
        },
        Check {
            name: "report_data binds the challenge",
            expected: hex::encode(report_data),
            actual: c.report_data.to_string(),
            ok: c.report_data.0 == report_data,
        },
        Check {
            name: "debug disabled",
            expected: "false".into(),
            actual: c.debug.to_string(),
            ok: !c.debug,
        },
        Check {
            name: "vmpl",
            expected: "0".into(),
            actual: c.vmpl.to_string(),
            ok: c.vmpl == 0,
        },
    ];
    let all_ok = checks.iter().all(|c| c.ok);
    let status = if all_ok {
        "affirming"
    } else {
        "contraindicated"
    };
    if text {
        println!("{}", output::snp_text(c, at));
        println!("appraisal:");
        for ch in &checks {
            println!("  [{}] {}", if ch.ok { "ok" } else { "FAIL" }, ch.name);
        }
        println!("local appraisal: {status}");
    }
    if !all_ok {
        return ExitCode::from(EXIT_REJECTED);
    }
    // The broker flow: an in-process broker, a simulated guest, a secret.
    let flow = match broker_flow(&sim, &p, &a.state_dir, text).await {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: broker flow: {e}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    if text {
        println!(
            "result: {} (SIMULATED TEE: this demonstrates the flow, it proves nothing about hardware)",
            if flow.released {
                "secret released to the attested guest"
            } else {
                "secret NOT released"
            }
        );
    } else {
        let r = DemoResult {
            status,
            simulated: verified.is_simulated(),
            checks,
            claims: c,
            broker: flow.clone(),
        };
        println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
    }
    if flow.released && flow.debug_guest_denied {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_REJECTED)
    }
}
