//! The real `veil` binary, run as a user would.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Output};

use veil_testkit::{StubHttp, vectors};

fn veil(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_veil"))
        .args(args)
        .current_dir(cwd)
        .env_remove("VEIL_KDS_URL")
        .env_remove("VEIL_CACHE_DIR")
        .env_remove("VEIL_STATE_DIR")
        .output()
        .unwrap()
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn demo_runs_on_a_fresh_directory() {
    let dir = tempfile::tempdir().unwrap();
    let out = veil(&["demo"], dir.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("local appraisal: affirming"), "{stdout}");
    assert!(
        stdout.contains(
            "result: secrets released to the attested guest, sealed secret unsealed, wrong guest refused"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("EAR status   affirming"), "{stdout}");
    assert!(stdout.contains("refuses it"), "{stdout}");
    // Second run reuses the PKI kept in the state directory.
    let out = veil(&["demo", "--format", "json"], dir.path());
    assert!(out.status.success());
    let v = json(&out);
    assert_eq!(v["status"], "affirming");
    assert_eq!(v["simulated"], true);
    assert_eq!(v["broker"]["released"], true);
    assert_eq!(v["broker"]["unsealed"], true);
    assert_eq!(v["broker"]["wrong_measurement_refused"], true);
    assert_eq!(v["broker"]["attestations"], 1);
    assert_eq!(v["broker"]["ear_status"], "affirming");
    assert!(dir.path().join(".veil/sim/snp-milan/ark.pk8").exists());
}

#[test]
fn demo_with_a_simulated_gpu() {
    let dir = tempfile::tempdir().unwrap();
    let out = veil(&["demo", "--gpu", "--format", "json"], dir.path());
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out);
    assert_eq!(v["broker"]["released"], true);
    assert_eq!(v["broker"]["gpu_ear_status"], "affirming");
    assert_eq!(v["broker"]["untrusted_gpu_refused"], true);
    assert!(dir.path().join(".veil/sim/gpu/device.pk8").exists());
}

#[test]
fn verify_nvidia_nitro_and_cca_vectors() {
    let Some(dir) = veil_testkit::vectors() else {
        return;
    };
    let v = |rel: &str| dir.join(rel).display().to_string();
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_veil"))
            .arg("verify")
            .args(args)
            .output()
            .unwrap();
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        (out.status.code(), json)
    };
    // NVIDIA: a bare hex report with its chain; the nonce as 64 hex digits.
    let report = v("nvidia/trustee/hopper_coco_report1.txt");
    let chain = v("nvidia/trustee/hopper_coco_certs1.txt");
    let nonce = "87d8e24ab336adafe228d49e83d745f6dba4ae505372b6a5704820856b343fec";
    let (code, out) = run(&[
        "--tee", "nvidia", &report, "--certs", &chain, "--nonce", nonce,
    ]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(out["claims"]["gpus"][0]["driver_version"], "580.95.05");
    assert_eq!(out["claims"]["gpus"][0]["trailing_zero_byte"], true);
    let wrong = format!("hex:{}00", &nonce[..62]);
    let (code, out) = run(&[
        "--tee", "nvidia", &report, "--certs", &chain, "--nonce", &wrong,
    ]);
    assert_eq!(
        (code, out["code"].as_str()),
        (Some(1), Some("nonce")),
        "{out}"
    );
    let (code, out) = run(&[
        "--tee",
        "nvidia",
        &report,
        "--certs",
        &v("nvidia/trustee/hopper_cert_chain_case3.txt"),
    ]);
    assert_eq!(
        (code, out["code"].as_str()),
        (Some(1), Some("chain")),
        "{out}"
    );
    // Nitro: base64, raw CBOR and a certificate embedding, each at its time.
    let b64 = v("nitro/evervault/valid-attestation-doc-base64");
    let aws_root = v("nitro/evervault/aws_nitro_root.pem");
    let (code, out) = run(&[
        "--tee",
        "nitro",
        &b64,
        "--certs",
        &aws_root,
        "--at",
        "2023-09-18T15:03:31Z",
    ]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(out["claims"]["debug"], true);
    let (code, out) = run(&["--tee", "nitro", &b64]);
    assert_eq!(
        (code, out["code"].as_str()),
        (Some(1), Some("chain")),
        "{out}"
    );
    let (code, out) = run(&[
        "--tee",
        "nitro",
        &v("nitro/evervault/valid-attestation-doc-bytes"),
        "--at",
        "2022-10-13T09:00:00Z",
    ]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(
        out["claims"]["pcr0"],
        "f4d48b81a460c9916d1e685119074bf24660afd3e34fae9fca0a0d28d9d5599936332687e6f66fc890ac8cf150142d8b"
    );
    let (code, out) = run(&[
        "--tee",
        "nitro",
        &v("nitro/evervault/non-debug-cert-containing-attestation-document-18-1-23-der.crt"),
        "--at",
        "2023-01-18T14:00:00Z",
    ]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(out["claims"]["certificate_bound"], true);
    // CCA: the synthetic token with its CPAK; a wrong challenge.
    let token = v("cca/trustee/cca-example-token.cbor");
    let cpak = v("cca/trustee/cpak-pub.json");
    let (code, out) = run(&["--tee", "cca", &token, "--certs", &cpak]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out["claims"]["rim"]
            .as_str()
            .unwrap()
            .starts_with("ae87fbf7")
    );
    let (code, out) = run(&[
        "--tee", "cca", &token, "--certs", &cpak, "--nonce", "hex:00",
    ]);
    assert_eq!(
        (code, out["code"].as_str()),
        (Some(1), Some("nonce")),
        "{out}"
    );
    let (code, _) = run(&["--tee", "cca", &token]);
    assert_eq!(code, Some(2));
}

#[test]
fn verify_real_vectors() {
    let Some(v) = vectors() else { return };
    let dir = tempfile::tempdir().unwrap();
    let p = |rel: &str| v.join(rel).display().to_string();
    // VCEK report: valid, offline, JSON claims.
    let out = veil(
        &[
            "verify",
            "--tee",
            "snp",
            &p("snp/trustee/test-report.bin"),
            "--certs",
            &p("snp/trustee/test-vcek.der"),
            "--offline",
        ],
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j = json(&out);
    assert_eq!(j["verdict"], "VALID");
    assert_eq!(
        j["claims"]["measurement"],
        "a1f3930413247bb38cfc171579ea3c12d5fe4901f0c792f63fd75d98f1ef827c23500644e0e692e6be917f9050d3d38c"
    );
    assert_eq!(j["claims"]["debug"], false);
    // VLEK: valid at 2025-06-01, rejected (step 4) today.
    let vlek = [
        &p("snp/trustee/test-vlek-report.bin"),
        "--certs",
        &p("snp/trustee/test-vlek.der"),
        "--offline",
    ];
    let mut args = vec!["verify"];
    args.extend(vlek);
    let mut at = args.clone();
    at.extend(["--at", "2025-06-01T00:00:00Z"]);
    assert!(veil(&at, dir.path()).status.success());
    let out = veil(&args, dir.path());
    assert_eq!(out.status.code(), Some(1));
    let j = json(&out);
    assert_eq!(j["verdict"], "REJECT");
    assert_eq!(j["step"], 4);
    assert_eq!(j["code"], "snp.certificate_not_valid");
    // Tampered VCEK: rejected at the chain signature, readable text.
    let out = veil(
        &[
            "verify",
            &p("snp/trustee/test-report.bin"),
            "--certs",
            &p("snp/trustee/test-vcek-invalid-legacy.der"),
            "--offline",
            "--format",
            "text",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("step 5") && text.contains("VCEK"), "{text}");
    // No VCEK at all, offline: a clear rejection naming what is missing.
    let out = veil(
        &[
            "verify",
            &p("snp/trustee/test-report.bin"),
            "--offline",
            "--product",
            "Milan",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(json(&out)["code"], "snp.missing_endorsement_key");
    // Garbage evidence: exit 2 with a parse error.
    std::fs::write(dir.path().join("junk.bin"), b"not a report").unwrap();
    let out = veil(&["verify", "junk.bin"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("must be exactly 1184 bytes"));
}

#[test]
fn simulated_evidence_needs_the_dangerous_flag() {
    let dir = tempfile::tempdir().unwrap();
    for format in ["coco", "raw"] {
        let out = veil(
            &[
                "sim",
                "snp",
                "--out",
                "ev",
                "--format",
                format,
                "--certs-dir",
                "certs",
                "--measurement",
                &"ab".repeat(48),
            ],
            dir.path(),
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let certs = ["--certs", "certs/vcek.pem", "certs/ask.pem"];
        let mut args = vec!["verify", "ev", "--offline"];
        args.extend(certs);
        let out = veil(&args, dir.path());
        assert_eq!(out.status.code(), Some(1));
        let j = json(&out);
        assert_eq!(j["code"], "snp.simulated_root_not_trusted");
        assert!(j["error"].as_str().unwrap().contains("dangerous"));
        args.extend(["--dangerous-trust-simulated-tee", "certs/ark.pem"]);
        let out = veil(&args, dir.path());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(String::from_utf8_lossy(&out.stderr).contains("WARNING"));
        let j = json(&out);
        assert_eq!(j["claims"]["measurement"], "ab".repeat(48));
        assert_eq!(j["claims"]["endorsement"]["simulated"], true);
    }
}

#[test]
fn fetch_bundle_then_verify_offline() {
    let Some(v) = vectors() else { return };
    let report = v.join("snp/trustee/test-report.bin");
    let parsed =
        veil_evidence::snp::AttestationReport::parse(&std::fs::read(&report).unwrap()).unwrap();
    let vcek_path = veil_endorsements::kds::KdsClient::vcek_path(
        veil_evidence::snp::Product::Milan,
        &parsed.chip_id,
        &parsed.reported_tcb,
    );
    let chain = std::fs::read(v.join("snp/trustee/milan_ask_ark_asvk.pem")).unwrap();
    let kds = StubHttp::start(
        vec![
            (
                vcek_path.clone(),
                std::fs::read(v.join("snp/trustee/test-vcek.der")).unwrap(),
            ),
            ("/vcek/v1/Milan/cert_chain".into(), chain.clone()),
            ("/vlek/v1/Milan/cert_chain".into(), chain),
        ],
        0,
    );
    let dir = tempfile::tempdir().unwrap();
    let r = report.display().to_string();
    let out = veil(
        &[
            "endorsements",
            "fetch",
            "--evidence",
            &r,
            "--product",
            "Milan",
            "--out",
            "bundle.json",
            "--no-crl",
            "--kds-url",
            &kds.base,
            "--min-interval-secs",
            "0",
        ],
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(kds.hits()[0], vcek_path);
    let out = veil(
        &["verify", &r, "--offline", "--bundle", "bundle.json"],
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Online verification without certificates fetches the VCEK via KDS
    // into the cache; a second, offline run is answered from that cache.
    let out = veil(
        &[
            "verify",
            &r,
            "--product",
            "Milan",
            "--kds-url",
            &kds.base,
            "--cache-dir",
            "cache",
        ],
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = veil(
        &[
            "verify",
            &r,
            "--product",
            "Milan",
            "--offline",
            "--cache-dir",
            "cache",
        ],
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn verify_intel_quotes() {
    let Some(v) = vectors() else { return };
    let dir = tempfile::tempdir().unwrap();
    let p = |rel: &str| v.join(rel).display().to_string();
    let out = veil(
        &[
            "verify",
            "--tee",
            "tdx",
            &p("tdx/dcap-qvl/tdx_quote"),
            "--collateral",
            &p("tdx/dcap-qvl/tdx_quote_collateral.json"),
            "--at",
            "1751624191",
        ],
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let j = json(&out);
    assert_eq!(j["claims"]["tcb_status"], "UpToDate");
    assert!(
        j["claims"]["measurement"]
            .as_str()
            .unwrap()
            .starts_with("91eb2b44")
    );
    // SGX with advisories, text output.
    let out = veil(
        &[
            "verify",
            "--tee",
            "sgx",
            &p("sgx/dcap-qvl/sgx_quote"),
            "--collateral",
            &p("sgx/dcap-qvl/sgx_quote_collateral.json"),
            "--at",
            "1751624924",
            "--format",
            "text",
        ],
        dir.path(),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("ConfigurationAndSWHardeningNeeded") && text.contains("INTEL-SA-00289"),
        "{text}"
    );
    // No matching TCB level: rejected at step 7.
    let out = veil(
        &[
            "verify",
            "--tee",
            "tdx",
            &p("tdx/dcap-qvl/tdx_quote_outdated"),
            "--collateral",
            &p("tdx/dcap-qvl/tdx_quote_outdated_collateral.json"),
            "--at",
            "1772707803",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(json(&out)["code"], "dcap.tcb_status");
    // Expired collateral today: rejected at the CRL step.
    let out = veil(
        &[
            "verify",
            "--tee",
            "tdx",
            &p("tdx/dcap-qvl/tdx_quote"),
            "--collateral",
            &p("tdx/dcap-qvl/tdx_quote_collateral.json"),
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(json(&out)["code"], "dcap.crl");
    // The wrong kind of quote.
    let out = veil(
        &[
            "verify",
            "--tee",
            "sgx",
            &p("tdx/dcap-qvl/tdx_quote"),
            "--collateral",
            &p("tdx/dcap-qvl/tdx_quote_collateral.json"),
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn verify_tdx_with_collateral_from_a_pccs() {
    let Some(v) = vectors() else { return };
    let want: serde_json::Value = serde_json::from_slice(
        &std::fs::read(v.join("tdx/dcap-qvl/tdx_quote_collateral.json")).unwrap(),
    )
    .unwrap();
    let stub = veil_testkit::pccs_stub(&want, "tdx", "b0c06f000000");
    let dir = tempfile::tempdir().unwrap();
    let q = v.join("tdx/dcap-qvl/tdx_quote").display().to_string();
    let out = veil(
        &[
            "verify",
            "--tee",
            "tdx",
            &q,
            "--pcs-url",
            &stub.base,
            "--at",
            "1751624191",
        ],
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(json(&out)["claims"]["tcb_status"], "UpToDate");
    // Offline without collateral or cache: a clear error, no request.
    let before = stub.hits().len();
    let out = veil(
        &[
            "verify",
            "--tee",
            "tdx",
            &q,
            "--pcs-url",
            &stub.base,
            "--offline",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("offline"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stub.hits().len(), before);
}

/// `veil verify --tee tpm|az-snp-vtpm` on the real vTPM vectors: verdicts,
/// exit codes and claims, with the nonce checked.
#[test]
fn verify_tpm_and_azure_vectors() {
    let Some(dir) = veil_testkit::vectors() else {
        return;
    };
    let v = |rel: &str| dir.join(rel).display().to_string();
    let run = |args: &[String]| {
        let out = Command::new(env!("CARGO_BIN_EXE_veil"))
            .args(args)
            .output()
            .unwrap();
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        (out.status.code(), json)
    };
    let gce = |nonce: &str| {
        run(&[
            "verify".into(),
            "--tee".into(),
            "tpm".into(),
            v("tpm/go-tpm-tools/gce-cos-85-nonce9009.pb"),
            "--certs".into(),
            v("tpm/go-tpm-tools/tpm_ek_intermediate_2.der"),
            v("tpm/go-tpm-tools/tpm_ek_root_1.der"),
            "--nonce".into(),
            nonce.into(),
        ])
    };
    let (code, out) = gce("hex:9009");
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(
        out["claims"]["pcrs"]["sha256"]["0"],
        "0f35c214608d93c7a6e68ae7359b4a8be5a0e99eea9107ece427c4dea4e439cf"
    );
    let (code, out) = gce("hex:9008");
    assert_eq!(code, Some(1));
    assert_eq!(out["code"], "nonce_mismatch");
    // The swtpm quote without its AK on the allow-list: not trusted.
    let (code, out) = run(&[
        "verify".into(),
        "--tee".into(),
        "tpm".into(),
        v("tpm/trustee/tpm_evidence.json"),
    ]);
    assert_eq!(code, Some(1));
    assert_eq!(out["code"], "ak_not_trusted");
    // Azure SNP CVM, the nonce in the vTPM quote.
    let (code, out) = run(&[
        "verify".into(),
        "--tee".into(),
        "az-snp-vtpm".into(),
        v("azure-cvm/trustee-az-snp-vtpm/evidence-v1.json"),
        "--certs".into(),
        v("snp/trustee/milan_ask_ark_asvk.pem"),
        "--nonce".into(),
        "challenge".into(),
    ]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(
        out["claims"]["snp"]["measurement"],
        "6a063be9dd79f6371c842e480f8dc3b5c725961344e57130e88c5adf49e8f7f6c79b75a5eb77fc769959f4aeb2f9401e"
    );
    assert_eq!(out["claims"]["tpm"]["ak_trust"], "hardware report");
    assert_eq!(out["nonce_checked"], true);
    // Azure TDX CVM: the TD quote with its collateral, at capture time.
    let (code, out) = run(&[
        "verify".into(),
        "--tee".into(),
        "az-tdx-vtpm".into(),
        v("azure-cvm/trustee-az-tdx-vtpm/evidence-v1.json"),
        "--collateral".into(),
        v("azure-cvm/trustee-az-tdx-vtpm/ASSEMBLED_collateral_00806f050000_2025-10.json"),
        "--at".into(),
        "1761920231".into(),
        "--nonce".into(),
        "challenge".into(),
    ]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(out["claims"]["td"]["tcb_status"], "OutOfDate");
    assert_eq!(
        out["claims"]["tpm"]["pcrs"]["sha256"]["0"],
        "782b20b10f55cc46e2142cc2145d548698073e5beb82752c8d7f9279f0d8a273"
    );
}

/// `veil bench broker` end to end on the real binary (its in-process broker
/// on 127.0.0.1:0, simulated SNP guests): one row per level with handshakes
/// done, no errors, and the broker's and the guests' CPU per handshake; the
/// floor of a broker's cost and the best ratio it leaves; the latency log.
#[test]
fn bench_broker_runs_and_reports_cpu_per_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("latency.log");
    let out = Command::new(env!("CARGO_BIN_EXE_veil"))
        .args([
            "bench",
            "broker",
            "--duration",
            "1",
            "--warmup",
            "1",
            "--concurrency",
            "2",
            "--floor-secs",
            "0.3",
            "--latency-log",
        ])
        .arg(&log)
        .arg("--state-dir")
        .arg(dir.path().join("sim"))
        .current_dir(dir.path())
        .env("VEIL_LOG", "error")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("guest CPU/hs"), "{stdout}");
    let row: Vec<&str> = stdout
        .lines()
        .find(|l| l.starts_with("embedded"))
        .unwrap_or_else(|| panic!("no result row: {stdout}"))
        .split_whitespace()
        .collect();
    // embedded, concurrency, handshakes/s, p50, p90, p99, errors, ...
    assert_eq!(row[1], "2", "{stdout}");
    let rate: f64 = row[2].parse().unwrap();
    assert!(rate > 0.0, "{stdout}");
    assert_eq!(row[6], "0", "errors: {stdout}");
    // Broker and guest CPU per handshake, in microseconds.
    let per_hs: Vec<f64> = row
        .windows(2)
        .filter(|w| w[1] == "us")
        .map(|w| w[0].parse().unwrap())
        .collect();
    assert_eq!(per_hs.len(), 2, "{stdout}");
    assert!(per_hs.iter().all(|us| *us > 0.0), "{stdout}");

    // The floor: four positive parts that add up, and a ratio below 1.
    let floor = stdout
        .lines()
        .find(|l| l.starts_with("floor per handshake besides verification"))
        .unwrap_or_else(|| panic!("no floor line: {stdout}"));
    let parts: Vec<f64> = floor
        .split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .filter(|w| w[1] == "us" || w[1] == "us,")
        .map(|w| w[0].parse().unwrap())
        .collect();
    assert_eq!(parts.len(), 4, "{floor}");
    assert!(parts.iter().all(|us| *us > 0.0), "{floor}");
    assert!(
        (parts[0] + parts[1] + parts[2] - parts[3]).abs() <= 2.0,
        "{floor}"
    );
    let best: f64 = stdout
        .lines()
        .find_map(|l| l.split("best possible vs verify/CPU ").nth(1))
        .unwrap_or_else(|| panic!("no bound: {stdout}"))
        .trim_end_matches('x')
        .parse()
        .unwrap();
    assert!(best > 0.0 && best < 1.0, "{stdout}");

    // One line per measured handshake: label, concurrency, start, latency.
    let log = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<Vec<&str>> = log.lines().map(|l| l.split(' ').collect()).collect();
    // As many as the row counted (its rate is over the ≈ 1 s window).
    let n = lines.len() as f64;
    assert!(
        n >= 1.0 && (n / rate - 1.0).abs() < 0.5,
        "{n} lines, {rate}/s"
    );
    for l in &lines {
        assert_eq!(l.len(), 4, "{l:?}");
        assert_eq!((l[0], l[1]), ("embedded", "2"));
        let (start, ms): (f64, f64) = (l[2].parse().unwrap(), l[3].parse().unwrap());
        assert!((0.0..1500.0).contains(&start) && ms > 0.0, "{l:?}");
    }
}
