//! `veil demo`: the main job on an embedded default, with no external
//! services. Today: a simulated SNP TEE produces a report bound to a fresh
//! challenge, the verifier checks it (first without, then with the explicit
//! dangerous opt-in for the simulated root) and the result is appraised
//! against reference values. Later issues extend this to the broker flow.

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
    match a.format {
        Format::Text => {
            println!("{}", output::snp_text(c, at));
            println!("appraisal:");
            for ch in &checks {
                println!("  [{}] {}", if ch.ok { "ok" } else { "FAIL" }, ch.name);
            }
            println!(
                "result: {status} (SIMULATED TEE: this demonstrates the flow, it proves nothing about hardware)"
            );
        }
        Format::Json => {
            let r = DemoResult {
                status,
                simulated: verified.is_simulated(),
                checks,
                claims: c,
            };
            println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
        }
    }
    if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_REJECTED)
    }
}
