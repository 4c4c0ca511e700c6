//! Azure confidential VMs (`az-snp-vtpm`, `az-tdx-vtpm`): the chain from
//! the hardware vendor's root to the vTPM quote.
//!
//! For TDX CVMs the HCL report holds a `TDREPORT` (MAC'd by the CPU, not
//! verifiable outside the TD); the evidence carries the TD quote made from
//! it, verified through DCAP, and the quote must carry the TDREPORT's report
//! data, MRTD and RTMRs. The remaining steps are the same as for SNP:
//!
//! 1. The SNP report inside the HCL report verifies (VCEK → ASK → ARK, at
//!    the given time) through [`SnpVerifier`].
//! 2. Its report data is the hash of the runtime claims JSON as stored
//!    (SHA-256 in the first 32 bytes, the rest zero; or SHA-384/512 as the
//!    IGVM hash type says), so the claims come from the paravisor.
//! 3. The claims' `HCLAkPub` key is the vTPM's attestation key.
//! 4. The TPM quote verifies with that key (raw RSASSA-PKCS1-v1_5 /
//!    SHA-256 signature), its qualifying data is the caller's nonce, and
//!    the supplied PCRs hash to its digest.

use base64::Engine;
use serde_json::Value;
use veil_endorsements::snp::SnpEndorsements;
use veil_evidence::azure::{AzEvidence, HclReport, HwReport};
use veil_evidence::snp::AttestationReport;
use veil_evidence::tpm::{Signature, TPM_ALG_SHA256};

use crate::UnixTime;
use crate::crypto::CryptoBackend;
use crate::snp::{SnpError, SnpVerifier, VerifiedSnpReport};
use crate::tpm::{AkPublic, AkTrust, PcrValues, TpmError, VerifiedQuote, verify_quote};

/// Why Azure evidence was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AzureError {
    #[error("malformed evidence: {0}")]
    Parse(#[from] veil_evidence::ParseError),
    #[error("the HCL report holds a {0} report, not an SNP one")]
    WrongHardware(&'static str),
    #[error("SNP report: {0}")]
    Snp(#[from] SnpError),
    #[error("the SNP report data does not bind the runtime claims: {0}")]
    Binding(String),
    #[error("runtime claims: {0}")]
    Claims(String),
    #[error("vTPM quote: {0}")]
    Tpm(#[from] TpmError),
    #[error("TD quote: {0}")]
    Dcap(String),
    #[error("the TD quote is not the quote of the HCL report's TDREPORT: {0}")]
    TdBinding(String),
}

impl AzureError {
    /// A stable code for the reason.
    pub fn code(&self) -> &'static str {
        match self {
            AzureError::Parse(_) => "malformed",
            AzureError::WrongHardware(_) => "wrong_hardware",
            AzureError::Snp(e) => e.code(),
            AzureError::Binding(_) => "runtime_data_binding",
            AzureError::Claims(_) => "runtime_claims",
            AzureError::Tpm(TpmError::NonceMismatch { .. }) => "nonce_mismatch",
            AzureError::Tpm(TpmError::PcrDigestMismatch) => "pcr_digest_mismatch",
            AzureError::Tpm(TpmError::BadSignature) => "tpm_signature",
            AzureError::Tpm(_) => "tpm_quote",
            AzureError::Dcap(_) => "td_quote",
            AzureError::TdBinding(_) => "td_report_binding",
        }
    }
}

/// Verified `az-snp-vtpm` evidence.
#[derive(Debug, Clone)]
pub struct VerifiedAzSnp {
    pub snp: VerifiedSnpReport,
    pub quote: VerifiedQuote,
    /// The runtime claims (vm-configuration, user-data, keys).
    pub runtime_claims: Value,
}

/// The hash the IGVM hash type names, over `data`.
fn claims_hash(
    hash_type: u32,
    data: &[u8],
    backend: &dyn CryptoBackend,
) -> Result<Vec<u8>, AzureError> {
    match hash_type {
        1 => Ok(backend.sha256(data).to_vec()),
        2 => Ok(backend.sha384(data).to_vec()),
        other => Err(AzureError::Binding(format!(
            "unsupported hash type {other}"
        ))),
    }
}

/// The AK from the runtime claims' `HCLAkPub` JWK.
fn ak_of(claims: &Value) -> Result<AkPublic, AzureError> {
    let key = claims["keys"]
        .as_array()
        .and_then(|ks| ks.iter().find(|k| k["kid"] == "HCLAkPub"))
        .ok_or_else(|| AzureError::Claims("no HCLAkPub key".into()))?;
    if key["kty"] != "RSA" {
        return Err(AzureError::Claims("HCLAkPub is not an RSA key".into()));
    }
    let field = |k: &str| {
        key[k]
            .as_str()
            .and_then(|s| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(s.trim_end_matches('='))
                    .ok()
            })
            .filter(|b| !b.is_empty())
            .ok_or_else(|| AzureError::Claims(format!("HCLAkPub.{k} is not base64url")))
    };
    Ok(AkPublic::Rsa {
        modulus: field("n")?,
        exponent: field("e")?,
    })
}

/// Verifies the TPM quote of Azure evidence with `ak` (SHA-256 PCRs 0–23).
pub fn verify_az_quote(
    evidence: &AzEvidence,
    ak: &AkPublic,
    nonce: Option<&[u8]>,
    backend: &dyn CryptoBackend,
) -> Result<VerifiedQuote, AzureError> {
    if evidence.quote.pcrs.len() != veil_evidence::tpm::PCR_COUNT {
        return Err(AzureError::Tpm(TpmError::Pcr(format!(
            "{} values supplied, expected 24",
            evidence.quote.pcrs.len()
        ))));
    }
    let pcrs: PcrValues = evidence
        .quote
        .pcrs
        .iter()
        .zip(0u8..)
        .map(|(v, i)| ((TPM_ALG_SHA256, i), v.clone()))
        .collect();
    let sig = Signature::RsaSsa {
        hash: TPM_ALG_SHA256,
        sig: evidence.quote.signature.clone(),
    };
    Ok(
        verify_quote(ak, &evidence.quote.message, &sig, &pcrs, nonce, backend)?
            .with_trust(AkTrust::HardwareReport),
    )
}

/// Checks that the report data is the runtime claims' hash (zero after
/// it); the claims as JSON.
fn bind_claims(
    hcl: &HclReport,
    report_data: &[u8],
    backend: &dyn CryptoBackend,
) -> Result<Value, AzureError> {
    let digest = claims_hash(hcl.hash_type, &hcl.runtime_claims, backend)?;
    let (head, tail) = report_data.split_at(digest.len().min(report_data.len()));
    if head != digest.as_slice() {
        return Err(AzureError::Binding(format!(
            "report data {} is not the hash {} of the runtime claims",
            hex::encode(head),
            hex::encode(&digest)
        )));
    }
    if tail.iter().any(|b| *b != 0) {
        return Err(AzureError::Binding(
            "the report data after the claims hash is not zero".into(),
        ));
    }
    serde_json::from_slice(&hcl.runtime_claims)
        .map_err(|e| AzureError::Claims(format!("not JSON: {e}")))
}

/// Verified `az-tdx-vtpm` evidence.
#[derive(Debug, Clone)]
pub struct VerifiedAzTdx {
    pub td: crate::dcap::VerifiedQuote,
    pub quote: VerifiedQuote,
    pub runtime_claims: Value,
}

/// `TDREPORT` offsets: REPORTMACSTRUCT.reportdata, TDINFO.mrtd, TDINFO.rtmr.
const TDREPORT_REPORT_DATA: std::ops::Range<usize> = 128..192;
const TDREPORT_MRTD: std::ops::Range<usize> = 528..576;
const TDREPORT_RTMRS: std::ops::Range<usize> = 720..912;

/// Verifies `az-tdx-vtpm` evidence: the TD quote through DCAP with
/// `collateral` at `at` (a TCB status of NotSupported or Revoked is
/// refused; others are claims for policy), the quote bound to the HCL
/// report's TDREPORT (report data, MRTD, RTMRs), the runtime claims bound
/// by the report data, and the vTPM quote by `HCLAkPub` with `nonce`.
pub fn verify_az_tdx(
    evidence: &AzEvidence,
    dcap: &crate::dcap::DcapVerifier,
    collateral: &veil_endorsements::dcap::Collateral,
    nonce: Option<&[u8]>,
    at: UnixTime,
    backend: &dyn CryptoBackend,
) -> Result<VerifiedAzTdx, AzureError> {
    let quote = td_quote(evidence)?;
    let td = dcap
        .verify(&quote, collateral, at)
        .map_err(|e| AzureError::Dcap(e.to_string()))?;
    verify_az_tdx_quoted(evidence, td, nonce, backend)
}

/// The TD quote of `az-tdx-vtpm` evidence, parsed.
pub fn td_quote(evidence: &AzEvidence) -> Result<veil_evidence::dcap::Quote, AzureError> {
    let raw = evidence
        .td_quote
        .as_deref()
        .ok_or_else(|| AzureError::Dcap("the evidence has no td_quote".into()))?;
    Ok(veil_evidence::dcap::Quote::parse(raw)?)
}

/// The rest of [`verify_az_tdx`] once the TD quote (from [`td_quote`]) has
/// been verified through DCAP, with whatever collateral the caller chose.
pub fn verify_az_tdx_quoted(
    evidence: &AzEvidence,
    td: crate::dcap::VerifiedQuote,
    nonce: Option<&[u8]>,
    backend: &dyn CryptoBackend,
) -> Result<VerifiedAzTdx, AzureError> {
    let hcl = HclReport::parse(&evidence.hcl_report)?;
    let HwReport::Tdx(td_report) = &hcl.hw_report else {
        return Err(AzureError::WrongHardware("SNP"));
    };
    let c = td.claims();
    if matches!(
        c.tcb_status,
        crate::dcap::TcbStatus::NotSupported | crate::dcap::TcbStatus::Revoked
    ) {
        return Err(AzureError::Dcap(format!("TCB status {}", c.tcb_status)));
    }
    let field = |r: std::ops::Range<usize>| td_report.get(r).unwrap_or_default();
    let report_data = field(TDREPORT_REPORT_DATA);
    if c.report_data.0 != report_data {
        return Err(AzureError::TdBinding("report data differs".into()));
    }
    if c.measurement.0 != field(TDREPORT_MRTD) {
        return Err(AzureError::TdBinding("MRTD differs".into()));
    }
    let rtmrs: Vec<u8> = c
        .rtmrs
        .as_ref()
        .map(|r| r.iter().flat_map(|h| h.0.clone()).collect())
        .unwrap_or_default();
    if rtmrs != field(TDREPORT_RTMRS) {
        return Err(AzureError::TdBinding("RTMRs differ".into()));
    }
    let runtime_claims = bind_claims(&hcl, report_data, backend)?;
    let ak = ak_of(&runtime_claims)?;
    let quote = verify_az_quote(evidence, &ak, nonce, backend)?;
    Ok(VerifiedAzTdx {
        td,
        quote,
        runtime_claims,
    })
}

/// Verifies `az-snp-vtpm` evidence (see the module documentation).
/// `endorsements` must hold the VCEK (the evidence's `certs`) and the
/// ASK/ARK unless the verifier's anchors carry them.
pub fn verify_az_snp(
    evidence: &AzEvidence,
    snp: &SnpVerifier,
    endorsements: &SnpEndorsements,
    nonce: Option<&[u8]>,
    at: UnixTime,
    backend: &dyn CryptoBackend,
) -> Result<VerifiedAzSnp, AzureError> {
    let parsed = parse_az_snp(evidence)?;
    verify_az_snp_parsed(evidence, &parsed, snp, endorsements, nonce, at, backend)
}

/// The HCL report of `az-snp-vtpm` evidence and its SNP report, parsed
/// (so a caller can pick endorsements for the report's chip first).
#[derive(Debug, Clone)]
pub struct AzSnpParts {
    pub hcl: HclReport,
    pub report: AttestationReport,
}

pub fn parse_az_snp(evidence: &AzEvidence) -> Result<AzSnpParts, AzureError> {
    let hcl = HclReport::parse(&evidence.hcl_report)?;
    let HwReport::Snp(raw) = &hcl.hw_report else {
        return Err(AzureError::WrongHardware("TDX"));
    };
    let report = AttestationReport::parse(raw)?;
    Ok(AzSnpParts { hcl, report })
}

/// [`verify_az_snp`] on evidence already parsed by [`parse_az_snp`].
pub fn verify_az_snp_parsed(
    evidence: &AzEvidence,
    parts: &AzSnpParts,
    snp: &SnpVerifier,
    endorsements: &SnpEndorsements,
    nonce: Option<&[u8]>,
    at: UnixTime,
    backend: &dyn CryptoBackend,
) -> Result<VerifiedAzSnp, AzureError> {
    let (hcl, report) = (&parts.hcl, &parts.report);
    let verified = snp.verify(report, endorsements, at)?;
    let claims = bind_claims(hcl, &report.report_data, backend)?;
    let ak = ak_of(&claims)?;
    let quote = verify_az_quote(evidence, &ak, nonce, backend)?;
    Ok(VerifiedAzSnp {
        snp: verified,
        quote,
        runtime_claims: claims,
    })
}
