//! `veil verify --tee nvidia|nitro|cca`: NVIDIA GPU reports, AWS Nitro
//! attestation documents and Arm CCA tokens, with the same output
//! conventions as the other verifiers (JSON or text; exit 0 valid, 1
//! rejected, 2 unusable input).

use std::process::ExitCode;

use base64::Engine as _;
use veil_verifier::UnixTime;
use veil_verifier::crypto::AWS_LC;
use veil_verifier::x509::Cert;

use crate::fail;
use crate::output::Format;
use crate::verify::{Tee, VerifyArgs};
use crate::verify_tpm::{parse_nonce, print_valid, reject};

fn first_non_space(bytes: &[u8]) -> Option<u8> {
    bytes.iter().copied().find(|b| !b.is_ascii_whitespace())
}

fn print(format: Format, tee: &str, at: UnixTime, nonce_checked: bool, claims: serde_json::Value) {
    print_valid(format, tee, at, nonce_checked, claims, |claims| {
        let rows: &[(&str, &str)] = match tee {
            "nitro" => &[
                ("module", "/module_id"),
                ("PCR0", "/pcr0"),
                ("debug", "/debug"),
                ("user_data", "/user_data"),
            ],
            "cca" => &[
                ("RIM", "/rim"),
                ("personalization", "/personalization_value"),
                ("platform", "/platform/cca-platform-implementation-id"),
                ("secured", "/platform_secured"),
            ],
            _ => &[],
        };
        for (label, ptr) in rows {
            if let Some(v) = claims.pointer(ptr) {
                println!(
                    "  {label:<14} {}",
                    v.as_str().map_or(v.to_string(), str::to_string)
                );
            }
        }
        for gpu in claims["gpus"].as_array().into_iter().flatten() {
            println!(
                "  GPU {} {}  driver {}  VBIOS {}  FWID {}…",
                gpu["arch"].as_str().unwrap_or("?"),
                gpu["uuid"].as_str().unwrap_or("?"),
                gpu["driver_version"].as_str().unwrap_or("?"),
                gpu["vbios_version"].as_str().unwrap_or("?"),
                gpu["fwid"].as_str().unwrap_or("").get(..16).unwrap_or("")
            );
        }
    });
}

/// Extra roots from `--certs` (every certificate of every file).
fn extra_roots(a: &VerifyArgs) -> Result<Vec<Cert>, String> {
    veil_endorsements::certs::read_certificates(&a.certs)?
        .iter()
        .map(|der| Cert::parse(der).map_err(|e| e.to_string()))
        .collect()
}

pub async fn run(a: &VerifyArgs, at: UnixTime) -> ExitCode {
    let bytes = match std::fs::read(&a.evidence) {
        Ok(b) => b,
        Err(e) => return fail(format!("{}: {e}", a.evidence.display())),
    };
    let nonce = match a.nonce.as_deref() {
        // A GPU nonce is 32 bytes: 64 hex digits are taken as those bytes.
        Some(n)
            if a.tee == Tee::Nvidia
                && n.len() == 64
                && n.bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            hex::decode(n).ok()
        }
        Some(n) => match parse_nonce(n) {
            Ok(v) => Some(v),
            Err(e) => return fail(e),
        },
        None => None,
    };
    if nonce.is_none() {
        eprintln!("WARNING: no --nonce: the evidence's freshness binding is not checked");
    }
    match a.tee {
        Tee::Nitro => nitro(a, at, &bytes, nonce.as_deref()),
        Tee::Cca => cca(a, at, &bytes, nonce.as_deref()),
        _ => nvidia(a, at, &bytes, nonce.as_deref()).await,
    }
}

fn nitro(a: &VerifyArgs, at: UnixTime, bytes: &[u8], nonce: Option<&[u8]>) -> ExitCode {
    use veil_evidence::nitro::{AttestationDoc, parse_json};
    let tee = "nitro";
    // A TLS certificate that embeds a document binds its key by user_data.
    let mut bound_spki = None;
    let parsed = match first_non_space(bytes) {
        Some(b'{') | Some(b'"') => parse_json(bytes).map_err(|e| e.to_string()),
        Some(b'-') => {
            match veil_endorsements::certs::decode_blobs("certificate", bytes)
                .map_err(|e| e.to_string())
                .and_then(|b| match b.into_iter().next() {
                    Some(veil_endorsements::certs::Blob::Certificate(der)) => {
                        Cert::parse(&der).map_err(|e| e.to_string())
                    }
                    _ => Err("no certificate".into()),
                }) {
                Ok(cert) => match veil_verifier::nitro::doc_from_certificate(&cert) {
                    Some((doc, spki)) => {
                        bound_spki = Some(spki);
                        AttestationDoc::parse(&doc).map_err(|e| e.to_string())
                    }
                    None => Err("the certificate embeds no attestation document".into()),
                },
                Err(e) => Err(e),
            }
        }
        // A DER certificate (SEQUENCE) rather than a COSE array (0x84/0xd2).
        Some(0x30) => match Cert::parse(bytes) {
            Ok(cert) => match veil_verifier::nitro::doc_from_certificate(&cert) {
                Some((doc, spki)) => {
                    bound_spki = Some(spki);
                    AttestationDoc::parse(&doc).map_err(|e| e.to_string())
                }
                None => Err("the certificate embeds no attestation document".into()),
            },
            Err(e) => Err(e.to_string()),
        },
        Some(0x84) | Some(0xd2) => AttestationDoc::parse(bytes).map_err(|e| e.to_string()),
        _ => base64::engine::general_purpose::STANDARD
            .decode(String::from_utf8_lossy(bytes).trim())
            .map_err(|e| format!("neither a document, JSON, a certificate nor base64: {e}"))
            .and_then(|d| AttestationDoc::parse(&d).map_err(|e| e.to_string())),
    };
    let doc = match parsed {
        Ok(d) => d,
        Err(e) => return fail(format!("{}: {e}", a.evidence.display())),
    };
    let mut roots = match veil_verifier::nitro::default_roots() {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    match extra_roots(a) {
        Ok(r) => roots.extend(r),
        Err(e) => return fail(e),
    }
    let v = match veil_verifier::nitro::verify_doc(&doc, &roots, at, &AWS_LC) {
        Ok(v) => v,
        Err(e) => return reject(a.format, tee, at, e.code(), e.to_string()),
    };
    if let Some(n) = nonce
        && let Err(e) = v.check_nonce(n)
    {
        return reject(a.format, tee, at, e.code(), e.to_string());
    }
    let mut claims = v.claims();
    if let Some(spki) = bound_spki {
        if v.doc.user_data.as_deref() != Some(spki.as_slice()) {
            return reject(
                a.format,
                tee,
                at,
                "certificate_binding",
                "the document's user_data is not the certificate's public key".into(),
            );
        }
        claims["certificate_bound"] = serde_json::json!(true);
    }
    print(a.format, tee, at, nonce.is_some(), claims);
    ExitCode::SUCCESS
}

fn cca(a: &VerifyArgs, at: UnixTime, bytes: &[u8], nonce: Option<&[u8]>) -> ExitCode {
    let tee = "cca";
    let token = match first_non_space(bytes) {
        Some(b'{') => veil_evidence::cca::parse_json(bytes),
        _ => veil_evidence::cca::CcaToken::parse(bytes),
    };
    let token = match token {
        Ok(t) => t,
        Err(e) => return fail(format!("{}: {e}", a.evidence.display())),
    };
    if a.certs.is_empty() {
        return fail(
            "--certs: give the platform's CPAK (a P-384 JWK or a trust-anchor store JSON); CCA tokens carry no certificate",
        );
    }
    let mut cpaks = Vec::new();
    for path in &a.certs {
        match std::fs::read(path)
            .map_err(|e| e.to_string())
            .and_then(|b| veil_verifier::cca::cpaks_from_json(&b).map_err(|e| e.to_string()))
        {
            Ok(c) => cpaks.extend(c),
            Err(e) => return fail(format!("{}: {e}", path.display())),
        }
    }
    let v = match veil_verifier::cca::verify_token(&token, &cpaks, &AWS_LC) {
        Ok(v) => v,
        Err(e) => return reject(a.format, tee, at, "cca", e.to_string()),
    };
    if let Some(n) = nonce
        && let Err(e) = v.check_challenge(n)
    {
        return reject(a.format, tee, at, "nonce", e.to_string());
    }
    print(a.format, tee, at, nonce.is_some(), v.claims());
    ExitCode::SUCCESS
}

async fn nvidia(a: &VerifyArgs, at: UnixTime, bytes: &[u8], nonce: Option<&[u8]>) -> ExitCode {
    use veil_verifier::nvidia::{default_roots, parse_chain, verify_report};
    let tee = "nvidia";
    let mut roots = match default_roots() {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    if let Some(path) = &a.dangerous_trust_simulated_gpu {
        match veil_endorsements::certs::read_certificates(std::slice::from_ref(path)) {
            Ok(ders) => {
                eprintln!(
                    "WARNING: trusting Veil's SIMULATED NVIDIA GPU root ({}): evidence accepted under it proves nothing about real hardware",
                    path.display()
                );
                for der in ders {
                    match Cert::parse(&der) {
                        Ok(c) => roots.push(c),
                        Err(e) => return fail(e),
                    }
                }
            }
            Err(e) => return fail(e),
        }
    }
    // (arch, uuid, report, chain PEM) per device.
    let devices: Vec<(String, String, Vec<u8>, Vec<u8>)> = if first_non_space(bytes) == Some(b'{') {
        let ev = match veil_evidence::nvidia::parse_json(bytes) {
            Ok(e) => e,
            Err(e) => return fail(format!("{}: {e}", a.evidence.display())),
        };
        let mut out = Vec::new();
        for d in &ev.device_evidence_list {
            match (d.report_bytes(), d.certificate_bytes()) {
                (Ok(r), Ok(c)) => out.push((d.arch.clone(), d.uuid.clone(), r, c)),
                (Err(e), _) | (_, Err(e)) => return fail(format!("device {}: {e}", d.uuid)),
            }
        }
        out
    } else {
        // A bare report (hex text or binary) with its chain in --certs.
        let text = String::from_utf8_lossy(bytes);
        let report = match hex::decode(text.trim()) {
            Ok(r) => r,
            Err(_) => bytes.to_vec(),
        };
        let mut chain = Vec::new();
        for path in &a.certs {
            match std::fs::read(path) {
                Ok(b) => chain.extend(b),
                Err(e) => return fail(format!("{}: {e}", path.display())),
            }
        }
        if chain.is_empty() {
            return fail(
                "a bare GPU report needs its certificate chain in --certs (PEM, leaf first)",
            );
        }
        vec![("HOPPER".into(), "GPU".into(), report, chain)]
    };
    let ocsp = match &a.ocsp_url {
        Some(url) => {
            match veil_endorsements::ocsp::OcspClient::new(url, std::time::Duration::from_secs(10))
            {
                Ok(c) => Some(c),
                Err(e) => return fail(e),
            }
        }
        None => None,
    };
    let mut rims = Vec::new();
    for path in &a.rims {
        match std::fs::read(path)
            .map_err(|e| e.to_string())
            .and_then(|b| {
                veil_endorsements::rim::Rim::parse(&path.display().to_string(), &b)
                    .map_err(|e| e.to_string())
            }) {
            Ok(r) => rims.push(r),
            Err(e) => return fail(format!("{}: {e}", path.display())),
        }
    }
    let mut gpus = Vec::new();
    for (arch, uuid, report, chain_pem) in &devices {
        let chain = match parse_chain(chain_pem) {
            Ok(c) => c,
            Err(e) => return reject(a.format, tee, at, e.code(), e.to_string()),
        };
        let v = match verify_report(arch, uuid, report, &chain, &roots, at, &AWS_LC) {
            Ok(v) => v,
            Err(e) => return reject(a.format, tee, at, e.code(), e.to_string()),
        };
        if let Some(n) = nonce
            && let Err(e) = v.check_nonce(n)
        {
            return reject(a.format, tee, at, e.code(), e.to_string());
        }
        let mut claims = match v.claims() {
            Ok(c) => c,
            Err(e) => return reject(a.format, tee, at, e.code(), e.to_string()),
        };
        if !rims.is_empty() {
            let rim = veil_verifier::nvidia::compare_rims(&v, &rims);
            if rim["status"] != "match" {
                return reject(
                    a.format,
                    tee,
                    at,
                    "rim_mismatch",
                    format!(
                        "GPU {uuid}: measurements differ from the RIMs: {}",
                        rim["mismatched"]
                    ),
                );
            }
            claims["rim"] = rim;
        }
        if let Some(client) = &ocsp {
            match veil_broker::verifiers::check_gpu_ocsp(client, &chain, &roots, at).await {
                Ok(o) => claims["ocsp"] = o,
                Err(e) => return reject(a.format, tee, at, "revoked", e),
            }
        }
        gpus.push(claims);
    }
    print(
        a.format,
        tee,
        at,
        nonce.is_some(),
        serde_json::json!({"tee": "nvidia", "gpus": gpus}),
    );
    ExitCode::SUCCESS
}
