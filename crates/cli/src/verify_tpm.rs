//! `veil verify --tee tpm|az-snp-vtpm|az-tdx-vtpm`: TPM quotes and Azure CVMs, with
//! the same output conventions as the other verifiers (JSON or text; exit
//! 0 valid, 1 rejected, 2 unusable input).

use std::process::ExitCode;

use veil_endorsements::snp::SnpEndorsements;
use veil_verifier::UnixTime;
use veil_verifier::crypto::AWS_LC;
use veil_verifier::snp::SnpVerifier;
use veil_verifier::tpm::AkPolicy;

use crate::output::Format;
use crate::verify::{Tee, VerifyArgs, anchors};
use crate::{EXIT_REJECTED, fail};

/// `hex:…` bytes, or the string's bytes.
pub fn parse_nonce(s: &str) -> Result<Vec<u8>, String> {
    match s.strip_prefix("hex:") {
        Some(h) => hex::decode(h).map_err(|e| format!("--nonce {s:?}: {e}")),
        None => Ok(s.as_bytes().to_vec()),
    }
}

/// The `--certs` files (self-signed ones are roots) and `--trusted-ak`
/// keys.
fn ak_policy(a: &VerifyArgs) -> Result<AkPolicy, String> {
    use veil_endorsements::certs::read_files;
    AkPolicy::from_files(&read_files(&a.certs)?, &read_files(&a.trusted_ak)?)
}

/// A VALID verdict: the JSON document, or for people a header and the
/// TEE-specific lines `details` prints (shared with `verify_device`).
pub(crate) fn print_valid(
    format: Format,
    tee: &str,
    at: UnixTime,
    nonce_checked: bool,
    claims: serde_json::Value,
    details: impl FnOnce(&serde_json::Value),
) {
    match format {
        Format::Json => {
            let v = serde_json::json!({"verdict": "VALID", "tee": tee, "verified_at": at.to_string(),
                "nonce_checked": nonce_checked, "claims": claims});
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        }
        Format::Text => {
            println!("VALID  {tee} at {at}");
            if !nonce_checked {
                println!("  nonce          NOT CHECKED (no --nonce)");
            }
            details(&claims);
        }
    }
}

fn print(format: Format, tee: &str, at: UnixTime, nonce_checked: bool, claims: serde_json::Value) {
    print_valid(format, tee, at, nonce_checked, claims, |claims| {
        let tpm = claims.get("tpm").unwrap_or(claims);
        println!(
            "  AK trusted by  {}",
            tpm["ak_trust"].as_str().unwrap_or("?")
        );
        println!(
            "  qualifying     {}",
            tpm["extra_data"].as_str().unwrap_or("")
        );
        if let Some(pcr0) = tpm["pcrs"]["sha256"]["0"].as_str() {
            println!("  PCR0 (sha256)  {pcr0}");
        }
        if let Some(m) = claims["snp"]["measurement"].as_str() {
            println!("  SNP measurement {m}");
        }
    });
}

pub(crate) fn reject(
    format: Format,
    tee: &str,
    at: UnixTime,
    code: &str,
    error: String,
) -> ExitCode {
    match format {
        Format::Json => {
            let v = serde_json::json!({"verdict": "REJECT", "tee": tee, "verified_at": at.to_string(),
                "code": code, "error": error});
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        }
        Format::Text => println!("REJECTED at {at}\n  {error}\n  code: {code}"),
    }
    ExitCode::from(EXIT_REJECTED)
}

fn tpm_code(e: &veil_verifier::tpm::TpmError) -> &'static str {
    use veil_verifier::tpm::TpmError::*;
    match e {
        Parse(_) => "malformed",
        BadSignature => "tpm_signature",
        Unsupported(_) => "unsupported",
        NonceMismatch { .. } => "nonce_mismatch",
        Pcr(_) => "pcr",
        PcrDigestMismatch => "pcr_digest_mismatch",
        AkNotTrusted(_) => "ak_not_trusted",
        Tee(_) => "tee_attestation",
    }
}

pub async fn run(a: &VerifyArgs, at: UnixTime) -> ExitCode {
    let bytes = match std::fs::read(&a.evidence) {
        Ok(b) => b,
        Err(e) => return fail(format!("{}: {e}", a.evidence.display())),
    };
    let nonce = match a.nonce.as_deref().map(parse_nonce).transpose() {
        Ok(n) => n,
        Err(e) => return fail(e),
    };
    if nonce.is_none() {
        eprintln!("WARNING: no --nonce: the evidence's freshness binding is not checked");
    }
    match a.tee {
        Tee::AzTdxVtpm => {
            let tee = "az-tdx-vtpm";
            let ev = match veil_evidence::azure::AzEvidence::parse_json(&bytes) {
                Ok(e) => e,
                Err(e) => return fail(format!("{}: {e}", a.evidence.display())),
            };
            let quote = match veil_verifier::azure::td_quote(&ev) {
                Ok(q) => q,
                Err(e) => return reject(a.format, tee, at, e.code(), e.to_string()),
            };
            let collateral = match &a.collateral {
                Some(path) => match std::fs::read(path)
                    .map_err(|e| e.to_string())
                    .and_then(|b| {
                        veil_endorsements::dcap::Collateral::parse(&b).map_err(|e| e.to_string())
                    }) {
                    Ok(c) => c,
                    Err(e) => return fail(format!("{}: {e}", path.display())),
                },
                None => match crate::verify::fetch_dcap_collateral(a, &quote).await {
                    Ok(c) => c,
                    Err(e) => {
                        return fail(format!("no --collateral given and fetching it failed: {e}"));
                    }
                },
            };
            let dcap = match veil_verifier::dcap::DcapVerifier::intel() {
                Ok(v) => v,
                Err(e) => return fail(e),
            };
            match veil_verifier::azure::verify_az_tdx(
                &ev,
                &dcap,
                &collateral,
                nonce.as_deref(),
                at,
                &AWS_LC,
            ) {
                Ok(v) => {
                    let claims = serde_json::json!({
                        "td": serde_json::to_value(v.td.claims()).unwrap_or_default(),
                        "tpm": v.quote.claims(),
                        "runtime_claims": v.runtime_claims,
                    });
                    print(a.format, tee, at, nonce.is_some(), claims);
                    ExitCode::SUCCESS
                }
                Err(e) => reject(a.format, tee, at, e.code(), e.to_string()),
            }
        }
        Tee::AzSnpVtpm => {
            let tee = "az-snp-vtpm";
            let ev = match veil_evidence::azure::AzEvidence::parse_json(&bytes) {
                Ok(e) => e,
                Err(e) => return fail(format!("{}: {e}", a.evidence.display())),
            };
            let mut endorsements = SnpEndorsements::default();
            for c in &ev.certs {
                match veil_endorsements::certs::decode_blobs("vcek", c) {
                    Ok(b) => endorsements.add_blobs(b),
                    Err(e) => return fail(e),
                }
            }
            for path in &a.certs {
                if let Err(e) = endorsements.add_file(path) {
                    return fail(e);
                }
            }
            let anchors = match anchors(a.dangerous_trust_simulated_tee.as_ref()) {
                Ok(x) => x,
                Err(e) => return fail(e),
            };
            let snp = SnpVerifier::new(anchors);
            match veil_verifier::azure::verify_az_snp(
                &ev,
                &snp,
                &endorsements,
                nonce.as_deref(),
                at,
                &AWS_LC,
            ) {
                Ok(v) => {
                    let claims = serde_json::json!({
                        "snp": serde_json::to_value(v.snp.claims()).unwrap_or_default(),
                        "tpm": v.quote.claims(),
                        "runtime_claims": v.runtime_claims,
                    });
                    print(a.format, tee, at, nonce.is_some(), claims);
                    ExitCode::SUCCESS
                }
                Err(e) => reject(a.format, tee, at, e.code(), e.to_string()),
            }
        }
        _ => {
            let tee = "tpm";
            let policy = match ak_policy(a) {
                Ok(p) => p,
                Err(e) => return fail(e),
            };
            let is_json = bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
            let mut tee_claims = None;
            let result = if is_json {
                match veil_evidence::tpm::TpmEvidence::parse_json(&bytes) {
                    Ok(ev) => veil_verifier::tpm::verify_tpm_evidence(
                        &ev,
                        &policy,
                        nonce.as_deref(),
                        at,
                        &AWS_LC,
                    ),
                    Err(e) => return fail(format!("{}: {e}", a.evidence.display())),
                }
            } else {
                match veil_evidence::gce::GceAttestation::parse(&bytes) {
                    Ok(att) => {
                        // A confidential VM's SEV-SNP report or TD quote,
                        // verified and bound to the same nonce.
                        let snp = match anchors(a.dangerous_trust_simulated_tee.as_ref()) {
                            Ok(x) => SnpVerifier::new(x),
                            Err(e) => return fail(e),
                        };
                        let mut endorsements = SnpEndorsements::default();
                        for path in &a.certs {
                            // AK CA files are not SNP endorsements; only
                            // AMD certificates are picked from them.
                            let _ = endorsements.add_file(path);
                        }
                        let dcap = match &a.collateral {
                            Some(path) => {
                                let c = match std::fs::read(path)
                                    .map_err(|e| e.to_string())
                                    .and_then(|b| {
                                        veil_endorsements::dcap::Collateral::parse(&b)
                                            .map_err(|e| e.to_string())
                                    }) {
                                    Ok(c) => c,
                                    Err(e) => return fail(format!("{}: {e}", path.display())),
                                };
                                match veil_verifier::dcap::DcapVerifier::intel() {
                                    Ok(v) => Some((v, c)),
                                    Err(e) => return fail(e),
                                }
                            }
                            None => None,
                        };
                        match veil_verifier::tpm::verify_gce_tee(
                            &att,
                            &snp,
                            &endorsements,
                            dcap.as_ref().map(|(v, c)| (v, c)),
                            nonce.as_deref(),
                            at,
                        ) {
                            Ok(t) => tee_claims = t.map(|v| v.claims()),
                            Err(e) => {
                                return reject(a.format, tee, at, tpm_code(&e), e.to_string());
                            }
                        }
                        veil_verifier::tpm::verify_gce(&att, &policy, nonce.as_deref(), at, &AWS_LC)
                    }
                    Err(e) => return fail(format!("{}: {e}", a.evidence.display())),
                }
            };
            match result {
                Ok(v) => {
                    let mut claims = v.claims();
                    if let Some((name, c)) = tee_claims {
                        claims[name] = c;
                    }
                    print(a.format, tee, at, nonce.is_some(), claims);
                    ExitCode::SUCCESS
                }
                Err(e) => reject(a.format, tee, at, tpm_code(&e), e.to_string()),
            }
        }
    }
}
