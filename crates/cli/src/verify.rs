//! `veil verify`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use veil_endorsements::bundle::Bundle;
use veil_endorsements::kds::{KdsClient, KdsConfig};
use veil_endorsements::snp::SnpEndorsements;
use veil_evidence::snp::{Product, parse_evidence};
use veil_verifier::UnixTime;
use veil_verifier::snp::{ChainRole, SnpError, SnpVerifier, TrustAnchors};

use crate::output::{self, Format};
use crate::{EXIT_REJECTED, fail};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Tee {
    Snp,
    Tdx,
    Sgx,
    /// A TPM 2.0 quote: CoCo `tpm` JSON, or a go-tpm-tools Attestation
    /// protobuf (GCE vTPM).
    Tpm,
    /// Azure SEV-SNP CVM: HCL report + vTPM quote.
    #[value(name = "az-snp-vtpm")]
    AzSnpVtpm,
    /// Azure TDX CVM: HCL report + TD quote (DCAP, --collateral) + vTPM quote.
    #[value(name = "az-tdx-vtpm")]
    AzTdxVtpm,
    /// NVIDIA Hopper GPU: CoCo `nvidia` JSON, or a bare SPDM report (hex or
    /// binary) with its PEM chain in --certs.
    Nvidia,
    /// AWS Nitro Enclaves attestation document: raw CBOR, base64, JSON, or a
    /// TLS certificate embedding one; --certs adds roots to the pinned AWS
    /// root.
    Nitro,
    /// Arm CCA token (CBOR, or CoCo JSON); --certs gives the CPAK (JWK or a
    /// trust-anchor store).
    Cca,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The kind of evidence.
    #[arg(long, value_enum, default_value = "snp")]
    pub tee: Tee,
    /// The evidence: a raw report, or CoCo evidence JSON.
    pub evidence: PathBuf,
    /// Certificate or CRL files (DER or PEM; PEM files may hold several).
    #[arg(long = "certs", num_args = 1..)]
    pub certs: Vec<PathBuf>,
    /// Intel DCAP collateral (TDX/SGX): the JSON with `tcb_info`,
    /// `qe_identity`, CRLs and issuer chains.
    #[arg(long)]
    pub collateral: Option<PathBuf>,
    /// Offline endorsement bundles (from `veil endorsements fetch`).
    #[arg(long = "bundle")]
    pub bundles: Vec<PathBuf>,
    /// Verification time: Unix seconds, RFC 3339, or YYYY-MM-DD (default: now).
    #[arg(long)]
    pub at: Option<String>,
    /// Use only bundles, files and the cache: never the network.
    #[arg(long)]
    pub offline: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "json")]
    pub format: Format,
    /// AMD KDS base URL.
    #[arg(long, env = "VEIL_KDS_URL", default_value = veil_endorsements::kds::DEFAULT_BASE_URL)]
    pub kds_url: String,
    /// Directory for cached endorsements.
    #[arg(long, env = "VEIL_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Intel PCS (or PCCS) base URL, for DCAP collateral when --collateral is not given.
    #[arg(long, env = "VEIL_PCS_URL", default_value = veil_endorsements::pcs::DEFAULT_BASE_URL)]
    pub pcs_url: String,
    /// The processor generation, for fetching a VCEK when the report does not
    /// say (version 2 reports).
    #[arg(long, value_parser = parse_product)]
    pub product: Option<Product>,
    /// DANGEROUS (TDX/SGX): accept CRLs, TCB info and QE identity past their
    /// next update; certificates must still be valid. For audits of old
    /// evidence only.
    #[arg(long)]
    pub dangerous_allow_stale_collateral: bool,
    /// The nonce the evidence must be bound to (TPM qualifying data, Nitro
    /// `nonce`, CCA realm challenge, GPU request nonce — 64 hex digits are
    /// taken as bytes for a GPU):
    /// `hex:…` for bytes, a plain string otherwise. Without it the binding
    /// is not checked (and the output says so).
    #[arg(long)]
    pub nonce: Option<String>,
    /// TPM: attestation keys trusted without a certificate (PEM or DER
    /// SubjectPublicKeyInfo; repeatable).
    #[arg(long = "trusted-ak")]
    pub trusted_ak: Vec<PathBuf>,
    /// DANGEROUS: also trust this simulated ARK (from `veil sim snp`).
    /// Evidence verified under it proves nothing about real hardware.
    #[arg(long, value_name = "ARK_FILE")]
    pub dangerous_trust_simulated_tee: Option<PathBuf>,
    /// DANGEROUS: also trust this simulated NVIDIA GPU root (from `veil sim
    /// gpu`). Evidence verified under it proves nothing about real hardware.
    #[arg(long, value_name = "ROOT_FILE")]
    pub dangerous_trust_simulated_gpu: Option<PathBuf>,
    /// NVIDIA GPUs: ask this OCSP responder about every certificate of the
    /// chain (e.g. https://ocsp.ndis.nvidia.com/); without it revocation is
    /// not checked (and the output says so).
    #[arg(long)]
    pub ocsp_url: Option<String>,
    /// NVIDIA GPUs: reference integrity manifests (SWID XML) to compare the
    /// measurements with; repeatable. A mismatch rejects.
    #[arg(long = "rim")]
    pub rims: Vec<PathBuf>,
}

pub fn parse_product(s: &str) -> Result<Product, String> {
    Product::from_name(s).ok_or_else(|| format!("unknown product {s:?} (Milan, Genoa, Turin)"))
}

/// Builds the trust anchors, with the simulated root only when asked by name.
pub fn anchors(dangerous_sim_root: Option<&PathBuf>) -> Result<TrustAnchors, String> {
    let mut anchors = TrustAnchors::amd();
    if let Some(path) = dangerous_sim_root {
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let blobs = veil_endorsements::certs::decode_blobs(&path.display().to_string(), &bytes)
            .map_err(|e| e.to_string())?;
        let Some(veil_endorsements::certs::Blob::Certificate(der)) = blobs.into_iter().next()
        else {
            return Err(format!("{}: no certificate", path.display()));
        };
        let cert = veil_verifier::x509::Cert::parse(&der).map_err(|e| e.to_string())?;
        let product = cert
            .subject_cn()
            .and_then(|cn| cn.strip_prefix("ARK-").and_then(Product::from_name))
            .ok_or_else(|| "the simulated ARK's name does not say its product".to_string())?;
        eprintln!(
            "WARNING: trusting Veil's SIMULATED {product} root ({}): evidence accepted under it proves nothing about real hardware",
            path.display()
        );
        anchors = anchors
            .dangerous_trust_simulated_root(product, &der)
            .map_err(|e| e.to_string())?;
    }
    Ok(anchors)
}

pub async fn run(a: VerifyArgs) -> ExitCode {
    let at = match a.at.as_deref().map(UnixTime::parse).transpose() {
        Ok(t) => t.unwrap_or_else(UnixTime::now),
        Err(e) => return fail(e),
    };
    match a.tee {
        Tee::Snp => {}
        Tee::Tdx | Tee::Sgx => return run_dcap(&a, at).await,
        Tee::Tpm | Tee::AzSnpVtpm | Tee::AzTdxVtpm => return crate::verify_tpm::run(&a, at).await,
        Tee::Nvidia | Tee::Nitro | Tee::Cca => return crate::verify_device::run(&a, at).await,
    }
    let bytes = match std::fs::read(&a.evidence) {
        Ok(b) => b,
        Err(e) => return fail(format!("{}: {e}", a.evidence.display())),
    };
    let evidence = match parse_evidence(&bytes) {
        Ok(e) => e,
        Err(e) => return fail(format!("{}: {e}", a.evidence.display())),
    };
    let report = &evidence.report;
    let mut endorsements = SnpEndorsements::default();
    if let Err(e) = endorsements.add_cert_table(&evidence.cert_chain) {
        return fail(e);
    }
    for path in &a.certs {
        if let Err(e) = endorsements.add_file(path) {
            return fail(e);
        }
    }
    for path in &a.bundles {
        match Bundle::read(path) {
            Ok(b) => endorsements.extend(b.snp_endorsements(report.product(), &report.chip_id)),
            Err(e) => return fail(format!("{}: {e}", path.display())),
        }
    }
    let anchors = match anchors(a.dangerous_trust_simulated_tee.as_ref()) {
        Ok(x) => x,
        Err(e) => return fail(e),
    };
    let verifier = SnpVerifier::new(anchors);
    let mut result = verifier.verify(report, &endorsements, at);
    // A missing VCEK is fetched from AMD KDS (or the cache), then retried.
    if let Err(SnpError::MissingEndorsementKey {
        role: ChainRole::Vcek,
        ..
    }) = &result
    {
        let product = report.product().or(a.product);
        match product {
            None => eprintln!(
                "note: not fetching the VCEK: the report (v{}) does not name its processor; pass --product",
                report.version
            ),
            Some(product) => {
                let cfg = KdsConfig {
                    base_url: a.kds_url.clone(),
                    cache_dir: a.cache_dir.clone(),
                    offline: a.offline,
                    ..KdsConfig::default()
                };
                let fetched = match KdsClient::new(cfg) {
                    Ok(kds) => {
                        kds.vcek(product, &report.chip_id, &report.reported_tcb)
                            .await
                    }
                    Err(e) => Err(e),
                };
                match fetched {
                    Ok((der, _)) => {
                        endorsements.certs.push(der);
                        result = verifier.verify(report, &endorsements, at);
                    }
                    Err(e) => eprintln!("note: could not obtain the VCEK: {e}"),
                }
            }
        }
    }
    match result {
        Ok(v) => {
            println!("{}", output::accepted(a.format, v.claims(), at));
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("{}", output::rejected(a.format, &e, at));
            ExitCode::from(EXIT_REJECTED)
        }
    }
}

/// `veil verify --tee tdx|sgx`.
async fn run_dcap(a: &VerifyArgs, at: UnixTime) -> ExitCode {
    use veil_verifier::dcap::TcbStatus;
    let tee = if a.tee == Tee::Tdx { "tdx" } else { "sgx" };
    let bytes = match std::fs::read(&a.evidence) {
        Ok(b) => b,
        Err(e) => return fail(format!("{}: {e}", a.evidence.display())),
    };
    let (quote, eventlog) = match veil_evidence::dcap::parse_evidence(&bytes) {
        Ok(x) => x,
        Err(e) => return fail(format!("{}: {e}", a.evidence.display())),
    };
    let expected_tee = if a.tee == Tee::Tdx {
        veil_evidence::dcap::TeeType::Tdx
    } else {
        veil_evidence::dcap::TeeType::Sgx
    };
    if quote.header.tee_type != expected_tee {
        return fail(format!(
            "the quote is a {:?} quote, not {tee}",
            quote.header.tee_type
        ));
    }
    let collateral = match &a.collateral {
        Some(path) => match std::fs::read(path)
            .map_err(|e| e.to_string())
            .and_then(|b| veil_endorsements::dcap::Collateral::parse(&b).map_err(|e| e.to_string()))
        {
            Ok(c) => c,
            Err(e) => return fail(format!("{}: {e}", path.display())),
        },
        None => match fetch_dcap_collateral(a, &quote).await {
            Ok(c) => c,
            Err(e) => return fail(format!("no --collateral given and fetching it failed: {e}")),
        },
    };
    let reject = |step: u8, code: &str, error: String| {
        let v = serde_json::json!({"verdict": "REJECT", "tee": tee, "verified_at": at.to_string(),
            "step": step, "code": code, "error": error});
        match a.format {
            Format::Json => println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default()),
            Format::Text => println!("REJECTED at {at}\n  {error}\n  code: {code}"),
        }
        ExitCode::from(EXIT_REJECTED)
    };
    let verifier = match veil_verifier::dcap::DcapVerifier::intel() {
        Ok(v) if a.dangerous_allow_stale_collateral => {
            eprintln!(
                "WARNING: accepting stale DCAP collateral (--dangerous-allow-stale-collateral)"
            );
            v.dangerous_allow_stale_collateral()
        }
        Ok(v) => v,
        Err(e) => return fail(e),
    };
    match verifier.verify(&quote, &collateral, at) {
        Err(e) => reject(e.step(), e.code(), e.to_string()),
        Ok(v) => {
            let c = v.claims();
            if matches!(c.tcb_status, TcbStatus::NotSupported | TcbStatus::Revoked) {
                return reject(
                    7,
                    "dcap.tcb_status",
                    format!(
                        "step 7 (TCB status): {} — the quote is authentic but its platform TCB is not acceptable",
                        c.tcb_status
                    ),
                );
            }
            let events = match &eventlog {
                Some(log) => match veil_verifier::dcap::check_event_log(c, log) {
                    Ok(ev) => Some(ev),
                    Err(e) => {
                        return reject(8, "dcap.event_log", format!("step 8 (event log): {e}"));
                    }
                },
                None => None,
            };
            match a.format {
                Format::Json => {
                    let mut v = serde_json::json!({"verdict": "VALID", "tee": tee, "verified_at": at.to_string(), "claims": c});
                    if let Some(ev) = events {
                        v["event_log"] = ev;
                    }
                    println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
                }
                Format::Text => {
                    println!(
                        "VALID  Intel {} quote v{} at {at}",
                        tee.to_uppercase(),
                        c.quote_version
                    );
                    println!("  TCB status     {}", c.tcb_status);
                    println!(
                        "  advisories     {}",
                        if c.advisory_ids.is_empty() {
                            "none".to_string()
                        } else {
                            c.advisory_ids.join(", ")
                        }
                    );
                    let flags: Vec<String> =
                        c.policy_flags.iter().map(|f| format!("{f:?}")).collect();
                    println!(
                        "  policy flags   {}",
                        if flags.is_empty() {
                            "none".to_string()
                        } else {
                            flags.join(", ")
                        }
                    );
                    println!("  measurement    {}", c.measurement);
                    println!("  report_data    {}", c.report_data);
                    println!("  FMSPC          {}", c.fmspc);
                    println!(
                        "  collateral     TCB info until {}, QE identity until {}",
                        c.tcb_info_next_update, c.qe_identity_next_update
                    );
                }
            }
            ExitCode::SUCCESS
        }
    }
}

/// DCAP collateral from Intel PCS (or a PCCS) for the quote's platform.
pub(crate) async fn fetch_dcap_collateral(
    a: &VerifyArgs,
    quote: &veil_evidence::dcap::Quote,
) -> Result<veil_endorsements::dcap::Collateral, String> {
    let chain =
        veil_endorsements::certs::decode_blobs("PCK chain", &quote.certification.pck_chain_pem)
            .map_err(|e| e.to_string())?;
    let Some(veil_endorsements::certs::Blob::Certificate(der)) = chain.into_iter().next() else {
        return Err("the quote carries no PCK certificate".into());
    };
    let pck = veil_verifier::x509::Cert::parse(&der).map_err(|e| e.to_string())?;
    let ext = veil_verifier::dcap::pck_extensions(&pck)?;
    let processor = pck.issuer.contains("Processor");
    let tee = if quote.header.tee_type == veil_evidence::dcap::TeeType::Tdx {
        veil_endorsements::pcs::DcapTee::Tdx
    } else {
        veil_endorsements::pcs::DcapTee::Sgx
    };
    let client = veil_endorsements::pcs::PcsClient::new(veil_endorsements::pcs::PcsConfig {
        base_url: a.pcs_url.clone(),
        cache_dir: a.cache_dir.clone(),
        offline: a.offline,
        ..veil_endorsements::pcs::PcsConfig::default()
    })
    .map_err(|e| e.to_string())?;
    client
        .collateral(tee, &ext.fmspc, processor)
        .await
        .map_err(|e| e.to_string())
}
