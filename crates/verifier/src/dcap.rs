//! Intel DCAP verification (SGX and TDX), following Intel's quote
//! verification library, as a pure function of (quote, collateral, time).
//!
//! Steps; each failure names its step (see [`DcapError::step`]):
//! 1. PCK chain: leaf → Platform/Processor CA → Intel SGX Root CA (embedded,
//!    pinned), every certificate valid at the given time.
//! 2. CRLs: the root CA CRL (signed by the root) and the PCK CRL (signed by
//!    the PCK's issuer) are current; neither lists a certificate of the chain.
//! 3. QE report signed by the PCK key; QE report data = SHA-256(attestation
//!    key ‖ QE authentication data) ‖ 32 zero bytes.
//! 4. Quote signature by the attestation key over header ‖ body as received.
//! 5. QE identity: signed by the TCB Signing certificate (chained to the
//!    root), current, id `QE`/`TD_QE`, MRSIGNER, ISVPRODID, masked
//!    MISCSELECT and ATTRIBUTES equal; its TCB level from ISVSVN.
//! 6. TCB info: signed, current, id `SGX`/`TDX`, FMSPC and PCE-ID equal to
//!    the PCK certificate's; the first TCB level whose SGX components and
//!    PCESVN (and for TDX the TEE_TCB_SVN components, with the TDX module
//!    identity when TEE_TCB_SVN[1] > 0) are all ≤ the platform's.
//! 7. The statuses converge (QE, platform, TDX module) into one
//!    [`TcbStatus`] with the advisory IDs; no matching level is
//!    `TcbStatus::NotSupported`.
//!
//! Policy findings (debug TD or enclave, SEPT_VE_DISABLE off, MRSERVICETD
//! non-zero) are reported, not judged: appraisal decides.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde_json::Value;
use veil_endorsements::dcap::Collateral;
use veil_evidence::dcap::{Body, Quote, TeeType};

use crate::UnixTime;
use crate::crypto::{AWS_LC, CryptoBackend, P256Key};
use crate::snp::Hex;
use crate::x509::{Cert, Crl};

/// Intel's TCB statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum TcbStatus {
    UpToDate,
    SWHardeningNeeded,
    ConfigurationNeeded,
    ConfigurationAndSWHardeningNeeded,
    OutOfDate,
    OutOfDateConfigurationNeeded,
    Revoked,
    /// No TCB level of the collateral matches the platform.
    NotSupported,
}

impl TcbStatus {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "UpToDate" => TcbStatus::UpToDate,
            "SWHardeningNeeded" => TcbStatus::SWHardeningNeeded,
            "ConfigurationNeeded" => TcbStatus::ConfigurationNeeded,
            "ConfigurationAndSWHardeningNeeded" => TcbStatus::ConfigurationAndSWHardeningNeeded,
            "OutOfDate" => TcbStatus::OutOfDate,
            "OutOfDateConfigurationNeeded" => TcbStatus::OutOfDateConfigurationNeeded,
            "Revoked" => TcbStatus::Revoked,
            _ => return None,
        })
    }

    /// Intel's convergence of a platform status with a QE or TDX-module
    /// status that is out of date or revoked.
    fn converge(self, other: TcbStatus) -> TcbStatus {
        match other {
            TcbStatus::Revoked => TcbStatus::Revoked,
            TcbStatus::OutOfDate => match self {
                TcbStatus::UpToDate | TcbStatus::SWHardeningNeeded => TcbStatus::OutOfDate,
                TcbStatus::ConfigurationNeeded | TcbStatus::ConfigurationAndSWHardeningNeeded => {
                    TcbStatus::OutOfDateConfigurationNeeded
                }
                s => s,
            },
            _ => self,
        }
    }
}

impl std::fmt::Display for TcbStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

/// Why a quote was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DcapError {
    #[error("step 1 (PCK chain): {0}")]
    PckChain(String),
    #[error("step 2 (revocation): {0}")]
    Crl(String),
    #[error("step 3 (QE report): {0}")]
    QeReport(String),
    #[error(
        "step 4 (quote signature): the quote signature does not verify with the attestation key"
    )]
    QuoteSignature,
    #[error("step 5 (QE identity): {0}")]
    QeIdentity(String),
    #[error("step 6 (TCB info): {0}")]
    TcbInfo(String),
}

impl DcapError {
    pub fn step(&self) -> u8 {
        match self {
            DcapError::PckChain(_) => 1,
            DcapError::Crl(_) => 2,
            DcapError::QeReport(_) => 3,
            DcapError::QuoteSignature => 4,
            DcapError::QeIdentity(_) => 5,
            DcapError::TcbInfo(_) => 6,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            DcapError::PckChain(_) => "dcap.pck_chain",
            DcapError::Crl(_) => "dcap.crl",
            DcapError::QeReport(_) => "dcap.qe_report",
            DcapError::QuoteSignature => "dcap.quote_signature",
            DcapError::QeIdentity(_) => "dcap.qe_identity",
            DcapError::TcbInfo(_) => "dcap.tcb_info",
        }
    }
}

/// Findings that policy, not signature checking, decides on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum PolicyFlag {
    #[serde(rename = "TD_DEBUG")]
    TdDebug,
    #[serde(rename = "SEPT_VE_DISABLE=0")]
    SeptVeDisableOff,
    #[serde(rename = "MRSERVICETD_NONZERO")]
    MrServiceTdNonZero,
    #[serde(rename = "SGX_DEBUG")]
    SgxDebug,
}

/// Verified claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DcapClaims {
    pub tee: &'static str,
    pub quote_version: u16,
    pub tcb_status: TcbStatus,
    pub advisory_ids: Vec<String>,
    pub policy_flags: Vec<PolicyFlag>,
    pub fmspc: Hex,
    pub report_data: Hex,
    pub debug: bool,
    /// TDX: MRTD; SGX: MRENCLAVE.
    pub measurement: Hex,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mr_signer: Option<Hex>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mr_config_id: Option<Hex>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtmrs: Option<Vec<Hex>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tee_tcb_svn: Option<Hex>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub isv_prod_id: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub isv_svn: Option<u16>,
    /// TDX: MROWNER, MROWNERCONFIG, MRSEAM, MRSIGNERSEAM, XFAM, MRSERVICETD.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub td: Option<TdClaims>,
    /// SGX: the enclave attributes, decoded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sgx_attributes: Option<SgxAttributes>,
    pub tcb_evaluation_data_number: Option<u64>,
    pub tcb_info_issue_date: String,
    pub tcb_info_next_update: String,
    pub qe_identity_next_update: String,
    /// True when the chain ends at Veil's simulated root.
    pub simulated: bool,
}

/// TDX-only claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TdClaims {
    pub mr_owner: Hex,
    pub mr_owner_config: Hex,
    pub mr_seam: Hex,
    pub mr_signer_seam: Hex,
    pub xfam: Hex,
    pub td_attributes: TdAttributes,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mr_servicetd: Option<Hex>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tee_tcb_svn2: Option<Hex>,
}

/// TD_ATTRIBUTES, decoded (TDX module ABI).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TdAttributes {
    pub raw: Hex,
    pub debug: bool,
    pub sept_ve_disable: bool,
    pub pks: bool,
    pub kl: bool,
    pub perfmon: bool,
}

/// SGX ATTRIBUTES flags, decoded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SgxAttributes {
    pub raw: Hex,
    pub init: bool,
    pub debug: bool,
    pub mode64bit: bool,
    pub provision_key: bool,
    pub einittoken_key: bool,
    pub kss: bool,
}

/// A quote whose signatures, chain and collateral verified. Only
/// [`verify`] constructs it.
#[derive(Debug, Clone)]
pub struct VerifiedQuote {
    claims: DcapClaims,
}

impl VerifiedQuote {
    pub fn claims(&self) -> &DcapClaims {
        &self.claims
    }
}

fn pem_certs(pem: &[u8]) -> Result<Vec<Cert>, String> {
    let blobs = veil_endorsements::certs::decode_blobs("certificate chain", pem)
        .map_err(|e| e.to_string())?;
    blobs
        .into_iter()
        .map(|b| match b {
            veil_endorsements::certs::Blob::Certificate(d) => {
                Cert::parse(&d).map_err(|e| e.to_string())
            }
            veil_endorsements::certs::Blob::Crl(_) => {
                Err("a CRL inside a certificate chain".into())
            }
        })
        .collect()
}

/// Checks the signatures of `chain` (leaf first) up to the pinned root.
fn check_chain_sigs(
    chain: &[Cert],
    root: &Cert,
    backend: &dyn CryptoBackend,
) -> Result<(), String> {
    if let Some(other) = chain
        .iter()
        .find(|c| c.is_self_issued() && c.der != root.der)
    {
        if other.subject_org().as_deref() == Some(crate::snp::SIMULATED_ORG) {
            return Err("the chain ends at Veil's simulated Intel root; simulated evidence is trusted only when the operator enables it explicitly (--dangerous-trust-simulated-tee)".into());
        }
        return Err("the chain's root is not the trusted Intel SGX Root CA".into());
    }
    let mut certs: Vec<&Cert> = chain.iter().filter(|c| c.der != root.der).collect();
    certs.push(root);
    for pair in certs.windows(2) {
        let [child, parent] = pair else { continue };
        if child.issuer != parent.subject {
            return Err(format!(
                "{:?} is not issued by {:?}",
                child.subject, parent.subject
            ));
        }
        child
            .verify_signed_by(parent, backend)
            .map_err(|e| format!("{:?}: {e}", child.subject))?;
    }
    root.verify_signed_by(root, backend)
        .map_err(|e| e.to_string())
}

/// Checks that every certificate of `chain` and the root is valid at `at`.
fn check_chain_times(chain: &[Cert], root: &Cert, at: UnixTime) -> Result<(), String> {
    for c in chain.iter().chain(std::iter::once(root)) {
        if !c.valid_at(at) {
            return Err(format!(
                "{:?} is not valid at {at} (valid {} to {})",
                c.subject, c.not_before, c.not_after
            ));
        }
    }
    Ok(())
}

/// Signature-verified collateral, kept between calls: signatures are
/// checked once per distinct input; times are checked on every call.
#[derive(Debug, Default)]
pub struct DcapCache {
    chains: Mutex<HashMap<[u8; 32], Arc<PckChain>>>,
    crls: Mutex<HashMap<[u8; 32], Arc<Crl>>>,
    docs: Mutex<HashMap<[u8; 32], Arc<SignedDoc>>>,
    attestation_keys: Mutex<HashMap<[u8; 32], Arc<ParsedKey>>>,
}

/// A parsed attestation key.
type ParsedKey = Box<dyn P256Key>;

/// A signature-verified PCK chain with what verification needs from it.
#[derive(Debug)]
struct PckChain {
    certs: Vec<Cert>,
    ext: PckExtensions,
    pck_key: Box<dyn P256Key>,
    /// Index of the PCK's issuer in `certs`.
    issuer: usize,
}

fn build_pck_chain(
    pem: &[u8],
    root: &Cert,
    backend: &dyn CryptoBackend,
) -> Result<PckChain, String> {
    let certs = pem_certs(pem)?;
    check_chain_sigs(&certs, root, backend)?;
    let pck = certs.first().ok_or("empty PCK chain")?;
    let issuer = certs
        .iter()
        .position(|c| c.subject == pck.issuer)
        .ok_or("the PCK's issuer is not in the chain")?;
    let pck_key = backend
        .p256_key(pck.p256_public_key().ok_or("the PCK key is not P-256")?)
        .map_err(|e| e.to_string())?;
    let ext = pck_extensions(pck)?;
    Ok(PckChain {
        certs,
        ext,
        pck_key,
        issuer,
    })
}

/// A signature-verified collateral document.
#[derive(Debug)]
struct SignedDoc {
    value: Value,
    chain: Vec<Cert>,
    issue: UnixTime,
    next: UnixTime,
    /// `tcbLevels` of a TCB info, decoded once.
    levels: Vec<Level>,
}

/// One TCB level of a TCB info document.
#[derive(Debug)]
struct Level {
    sgx: Option<[u64; 16]>,
    pcesvn: Option<u64>,
    tdx: Option<[u64; 16]>,
    status: Option<TcbStatus>,
    status_text: String,
    advisories: Vec<String>,
}

fn components(v: &Value) -> Option<[u64; 16]> {
    let arr = v.as_array()?;
    if arr.len() != 16 {
        return None;
    }
    let mut out = [0u64; 16];
    for (o, c) in out.iter_mut().zip(arr) {
        *o = c.get("svn")?.as_u64()?;
    }
    Some(out)
}

fn decode_levels(doc: &Value) -> Vec<Level> {
    doc.get("tcbLevels")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|l| {
            let tcb = l.get("tcb")?;
            let status_text = l
                .get("tcbStatus")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            Some(Level {
                sgx: tcb.get("sgxtcbcomponents").and_then(components),
                pcesvn: tcb.get("pcesvn").and_then(Value::as_u64),
                tdx: tcb.get("tdxtcbcomponents").and_then(components),
                status: TcbStatus::parse(&status_text),
                status_text,
                advisories: l
                    .get("advisoryIDs")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|a| a.as_str().map(str::to_string))
                    .collect(),
            })
        })
        .collect()
}

const DCAP_CACHE_LIMIT: usize = 1024;

fn memo<T, E>(
    map: &Mutex<HashMap<[u8; 32], Arc<T>>>,
    key: [u8; 32],
    make: impl FnOnce() -> Result<T, E>,
) -> Result<Arc<T>, E> {
    if let Some(v) = map.lock().ok().and_then(|m| m.get(&key).cloned()) {
        return Ok(v);
    }
    let v = Arc::new(make()?);
    if let Ok(mut m) = map.lock() {
        if m.len() >= DCAP_CACHE_LIMIT {
            m.clear();
        }
        m.insert(key, v.clone());
    }
    Ok(v)
}

fn key(backend: &dyn CryptoBackend, parts: &[&[u8]]) -> [u8; 32] {
    // Length-prefixed parts, hashed without copying them.
    let lens: Vec<[u8; 8]> = parts
        .iter()
        .map(|p| (p.len() as u64).to_le_bytes())
        .collect();
    let mut all: Vec<&[u8]> = Vec::with_capacity(parts.len() * 2);
    for (l, p) in lens.iter().zip(parts) {
        all.push(l);
        all.push(p);
    }
    backend.sha256_parts(&all)
}

/// A minimal DER walker for the PCK certificate's SGX extension.
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 {
            return None;
        }
        let (bytes, rest) = (rest.get(..n)?, rest.get(n..)?);
        (
            bytes.iter().fold(0usize, |a, b| (a << 8) | *b as usize),
            rest,
        )
    };
    Some((tag, rest.get(..len)?, rest.get(len..)?))
}

fn oid_text(body: &[u8]) -> String {
    der::asn1::ObjectIdentifier::from_bytes(body).map_or_else(|_| String::new(), |o| o.to_string())
}

/// FMSPC, PCE-ID, the 16 SGX TCB component SVNs and PCESVN from the PCK
/// certificate (OID 1.2.840.113741.1.13.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PckExtensions {
    pub fmspc: Vec<u8>,
    pub pce_id: Vec<u8>,
    pub tcb_svns: [u8; 16],
    pub pcesvn: u16,
}

fn int_value(body: &[u8]) -> Option<u64> {
    if body.is_empty() || body.len() > 3 {
        return None;
    }
    Some(body.iter().fold(0u64, |a, b| (a << 8) | u64::from(*b)))
}

/// Parses the SGX extension of a PCK certificate.
pub fn pck_extensions(pck: &Cert) -> Result<PckExtensions, String> {
    let ext = pck
        .extension("1.2.840.113741.1.13.1")
        .ok_or("the PCK certificate has no SGX extension")?;
    let (_, mut seq, _) = tlv(ext).ok_or("malformed SGX extension")?;
    let (mut fmspc, mut pce_id, mut svns, mut pcesvn) = (None, None, [None; 16], None);
    while !seq.is_empty() {
        let (_, item, rest) = tlv(seq).ok_or("malformed SGX extension item")?;
        seq = rest;
        let (_, oid, value) = tlv(item).ok_or("malformed SGX extension item")?;
        let (vtag, vbody, _) = tlv(value).ok_or("malformed SGX extension value")?;
        match oid_text(oid).as_str() {
            "1.2.840.113741.1.13.1.4" => fmspc = Some(vbody.to_vec()),
            "1.2.840.113741.1.13.1.3" => pce_id = Some(vbody.to_vec()),
            "1.2.840.113741.1.13.1.2" if vtag == 0x30 => {
                let mut tcb = vbody;
                while !tcb.is_empty() {
                    let (_, comp, rest) = tlv(tcb).ok_or("malformed TCB item")?;
                    tcb = rest;
                    let (_, coid, cval) = tlv(comp).ok_or("malformed TCB item")?;
                    let (_, cbody, _) = tlv(cval).ok_or("malformed TCB value")?;
                    let name = oid_text(coid);
                    let Some(n) = name.strip_prefix("1.2.840.113741.1.13.1.2.") else {
                        continue;
                    };
                    match n.parse::<usize>() {
                        Ok(i @ 1..=16) => {
                            let v = int_value(cbody).ok_or("bad TCB component SVN")?;
                            if let Some(slot) = svns.get_mut(i - 1) {
                                *slot =
                                    Some(u8::try_from(v).map_err(|_| "TCB component SVN > 255")?);
                            }
                        }
                        Ok(17) => {
                            pcesvn = Some(
                                u16::try_from(int_value(cbody).ok_or("bad PCESVN")?)
                                    .map_err(|_| "PCESVN > 65535")?,
                            )
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    let mut tcb_svns = [0u8; 16];
    for (dst, src) in tcb_svns.iter_mut().zip(svns.iter()) {
        *dst = src.ok_or("a TCB component SVN is missing")?;
    }
    Ok(PckExtensions {
        fmspc: fmspc.ok_or("no FMSPC")?,
        pce_id: pce_id.ok_or("no PCE-ID")?,
        tcb_svns,
        pcesvn: pcesvn.ok_or("no PCESVN")?,
    })
}

fn hex_field(v: &Value, k: &str) -> Result<Vec<u8>, String> {
    hex::decode(v[k].as_str().ok_or(format!("{k} missing"))?).map_err(|_| format!("{k} is not hex"))
}

fn time_field(v: &Value, k: &str) -> Result<UnixTime, String> {
    UnixTime::parse(v[k].as_str().ok_or(format!("{k} missing"))?)
}

/// Verifies a signed collateral document's signature and chain (cacheable).
fn verify_signed_json(
    text: &str,
    sig_hex: &str,
    chain_pem: &str,
    root: &Cert,
    backend: &dyn CryptoBackend,
) -> Result<SignedDoc, String> {
    let chain = pem_certs(chain_pem.as_bytes())?;
    check_chain_sigs(&chain, root, backend)?;
    let signer = chain.first().ok_or("empty issuer chain")?;
    let key = signer
        .p256_public_key()
        .ok_or("the signing certificate's key is not P-256")?;
    let sig = hex::decode(sig_hex).map_err(|_| "signature is not hex".to_string())?;
    backend
        .verify_p256_sha256(key, text.as_bytes(), &sig, true)
        .map_err(|_| "signature over the document does not verify".to_string())?;
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let (issue, next) = (
        time_field(&value, "issueDate")?,
        time_field(&value, "nextUpdate")?,
    );
    let levels = decode_levels(&value);
    Ok(SignedDoc {
        value,
        chain,
        issue,
        next,
        levels,
    })
}

/// A signed document, verified (from the cache when possible) and current.
fn signed_json(
    (text, sig_hex, chain_pem): (&str, &str, &str),
    root: &Cert,
    at: UnixTime,
    backend: &dyn CryptoBackend,
    cache: Option<&DcapCache>,
    allow_stale: bool,
) -> Result<Arc<SignedDoc>, String> {
    let doc = match cache {
        Some(c) => memo(
            &c.docs,
            key(
                backend,
                &[text.as_bytes(), sig_hex.as_bytes(), chain_pem.as_bytes()],
            ),
            || verify_signed_json(text, sig_hex, chain_pem, root, backend),
        )?,
        None => Arc::new(verify_signed_json(text, sig_hex, chain_pem, root, backend)?),
    };
    check_chain_times(&doc.chain, root, at)?;
    if !allow_stale && (at < doc.issue || at > doc.next) {
        return Err(format!(
            "not current at {at} (issued {}, next update {})",
            doc.issue, doc.next
        ));
    }
    Ok(doc)
}

fn masked_eq(value: &[u8], expected: &[u8], mask: &[u8]) -> bool {
    value.len() == expected.len()
        && value.len() == mask.len()
        && value
            .iter()
            .zip(mask)
            .zip(expected)
            .all(|((v, m), e)| v & m == e & m)
}

/// The pinned Intel root, or the error every caller reports without it.
fn pinned_intel_root() -> Result<&'static Cert, DcapError> {
    intel_root()
        .ok_or_else(|| DcapError::PckChain("the embedded Intel root does not match its pin".into()))
}

/// The pinned Intel SGX Root CA, parsed once.
fn intel_root() -> Option<&'static Cert> {
    static ROOT: std::sync::OnceLock<Option<Cert>> = std::sync::OnceLock::new();
    ROOT.get_or_init(|| {
        veil_endorsements::roots::intel::sgx_root().and_then(|der| Cert::parse(der).ok())
    })
    .as_ref()
}

/// Verifies a quote with its collateral at time `at`.
pub fn verify(
    quote: &Quote,
    collateral: &Collateral,
    at: UnixTime,
) -> Result<VerifiedQuote, DcapError> {
    let root = pinned_intel_root()?;
    verify_with(
        quote,
        collateral,
        at,
        &AWS_LC,
        None,
        root,
        VerifyOptions::default(),
    )
}

/// How a quote is verified beyond the defaults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VerifyOptions {
    /// The root is Veil's simulated one (reported in the claims).
    pub simulated: bool,
    /// Accept CRLs, TCB info and QE identity past their next update (or
    /// before their issue date). Certificates must still be valid. For
    /// air-gapped audits of old evidence, by explicit choice only.
    pub allow_stale_collateral: bool,
}

/// A DCAP verifier: its trusted root and a collateral cache.
#[derive(Debug)]
pub struct DcapVerifier {
    root: Cert,
    opts: VerifyOptions,
    cache: DcapCache,
}

impl DcapVerifier {
    /// Trusting Intel's pinned root.
    pub fn intel() -> Result<Self, DcapError> {
        let root = pinned_intel_root()?.clone();
        Ok(DcapVerifier {
            root,
            opts: VerifyOptions::default(),
            cache: DcapCache::default(),
        })
    }

    /// Trusting Veil's simulated Intel root instead. Evidence verified under
    /// it proves nothing about hardware: for demos and tests, by name only.
    pub fn dangerous_trust_simulated_root(root_der: &[u8]) -> Result<Self, DcapError> {
        let root = Cert::parse(root_der).map_err(|e| DcapError::PckChain(e.to_string()))?;
        root.verify_signed_by(&root, &AWS_LC)
            .map_err(|e| DcapError::PckChain(e.to_string()))?;
        Ok(DcapVerifier {
            root,
            opts: VerifyOptions {
                simulated: true,
                allow_stale_collateral: false,
            },
            cache: DcapCache::default(),
        })
    }

    /// Also accepts collateral past its next update (certificates must still
    /// be valid): for audits of old evidence only, by explicit choice.
    pub fn dangerous_allow_stale_collateral(mut self) -> Self {
        self.opts.allow_stale_collateral = true;
        self
    }

    /// Verifies a quote (collateral cached across calls).
    pub fn verify(
        &self,
        quote: &Quote,
        collateral: &Collateral,
        at: UnixTime,
    ) -> Result<VerifiedQuote, DcapError> {
        verify_with(
            quote,
            collateral,
            at,
            &AWS_LC,
            Some(&self.cache),
            &self.root,
            self.opts,
        )
    }
}

/// [`verify`] reusing signature-verified collateral from `cache` (the
/// result is the same; times are checked on every call).
pub fn verify_cached(
    quote: &Quote,
    collateral: &Collateral,
    at: UnixTime,
    cache: &DcapCache,
) -> Result<VerifiedQuote, DcapError> {
    let root = pinned_intel_root()?;
    verify_with(
        quote,
        collateral,
        at,
        &AWS_LC,
        Some(cache),
        root,
        VerifyOptions::default(),
    )
}

/// [`verify`] with a chosen crypto backend.
pub fn verify_with(
    quote: &Quote,
    collateral: &Collateral,
    at: UnixTime,
    backend: &dyn CryptoBackend,
    cache: Option<&DcapCache>,
    root: &Cert,
    opts: VerifyOptions,
) -> Result<VerifiedQuote, DcapError> {
    let simulated = opts.simulated;
    // Step 1.
    let pem = &quote.certification.pck_chain_pem;
    let chain = match cache {
        Some(c) => memo(&c.chains, key(backend, &[pem]), || {
            build_pck_chain(pem, root, backend)
        }),
        None => build_pck_chain(pem, root, backend).map(Arc::new),
    }
    .map_err(DcapError::PckChain)?;
    check_chain_times(&chain.certs, root, at).map_err(DcapError::PckChain)?;
    let pck = chain
        .certs
        .first()
        .ok_or_else(|| DcapError::PckChain("empty PCK chain".into()))?;
    let pck_issuer = chain
        .certs
        .get(chain.issuer)
        .ok_or_else(|| DcapError::PckChain("the PCK's issuer is not in the chain".into()))?;
    // Step 2.
    let crl = |hex_der: &str, issuer: &Cert, what: &str| -> Result<Arc<Crl>, DcapError> {
        let build = || -> Result<Crl, DcapError> {
            let der = hex::decode(hex_der.trim())
                .map_err(|_| DcapError::Crl(format!("{what} is not hex")))?;
            let c = Crl::parse(&der).map_err(|e| DcapError::Crl(format!("{what}: {e}")))?;
            if c.issuer != issuer.subject {
                return Err(DcapError::Crl(format!(
                    "{what} is not issued by {:?}",
                    issuer.subject
                )));
            }
            c.verify_signed_by(issuer, backend)
                .map_err(|e| DcapError::Crl(format!("{what}: {e}")))?;
            Ok(c)
        };
        let c = match cache {
            Some(cc) => memo(
                &cc.crls,
                key(backend, &[hex_der.as_bytes(), &issuer.der]),
                build,
            )?,
            None => Arc::new(build()?),
        };
        if !opts.allow_stale_collateral
            && (at < c.this_update || c.next_update.is_some_and(|n| at > n))
        {
            return Err(DcapError::Crl(format!(
                "{what} is not current at {at} (this update {}, next update {})",
                c.this_update,
                c.next_update
                    .map_or_else(|| "none".into(), |t| t.to_string())
            )));
        }
        Ok(c)
    };
    let root_crl = crl(&collateral.root_ca_crl, root, "root CA CRL")?;
    let pck_crl = crl(&collateral.pck_crl, pck_issuer, "PCK CRL")?;
    if root_crl.revoked.iter().any(|s| s == pck_issuer.serial()) {
        return Err(DcapError::Crl(format!(
            "{:?} is revoked",
            pck_issuer.subject
        )));
    }
    if pck_crl.revoked.iter().any(|s| s == pck.serial()) {
        return Err(DcapError::Crl("the PCK certificate is revoked".into()));
    }
    // Step 3.
    let cert = &quote.certification;
    chain
        .pck_key
        .verify_fixed(&cert.qe_report_raw, &cert.qe_report_signature)
        .map_err(|_| {
            DcapError::QeReport("the QE report signature does not verify with the PCK key".into())
        })?;
    let mut bound = quote.attestation_key.to_vec();
    bound.extend_from_slice(&cert.qe_auth_data);
    let expected = backend.sha256(&bound);
    let rd = &cert.qe_report.report_data;
    if rd.get(..32) != Some(&expected[..])
        || rd.get(32..).is_some_and(|z| z.iter().any(|b| *b != 0))
    {
        return Err(DcapError::QeReport(
            "QE report data does not bind the attestation key".into(),
        ));
    }
    // Step 4.
    let mut att_key = vec![4u8];
    att_key.extend_from_slice(&quote.attestation_key);
    let parse_key = || {
        backend
            .p256_key(&att_key)
            .map_err(|_| DcapError::QuoteSignature)
    };
    let key = match cache {
        // The attestation key is the QE's, the same for every quote of a
        // platform until the QE restarts: parsed once.
        Some(c) => memo(&c.attestation_keys, backend.sha256(&att_key), parse_key)?,
        None => Arc::new(parse_key()?),
    };
    key.verify_fixed(quote.signed_bytes(), &quote.signature)
        .map_err(|_| DcapError::QuoteSignature)?;
    // Step 5.
    let tdx = quote.header.tee_type == TeeType::Tdx;
    let qe_doc = signed_json(
        (
            &collateral.qe_identity,
            &collateral.qe_identity_signature,
            &collateral.qe_identity_issuer_chain,
        ),
        root,
        at,
        backend,
        cache,
        opts.allow_stale_collateral,
    )
    .map_err(DcapError::QeIdentity)?;
    let qe_id = &qe_doc.value;
    let want_id = if tdx { "TD_QE" } else { "QE" };
    if qe_id["id"] != want_id {
        return Err(DcapError::QeIdentity(format!(
            "id is {}, expected {want_id}",
            qe_id["id"]
        )));
    }
    let qe = &cert.qe_report;
    let e = |m: String| DcapError::QeIdentity(m);
    if hex_field(qe_id, "mrsigner").map_err(e)? != qe.mr_signer {
        return Err(DcapError::QeIdentity(
            "MRSIGNER differs from the QE identity".into(),
        ));
    }
    if qe_id["isvprodid"].as_u64() != Some(u64::from(qe.isv_prod_id)) {
        return Err(DcapError::QeIdentity(
            "ISVPRODID differs from the QE identity".into(),
        ));
    }
    let misc = qe.misc_select.to_le_bytes();
    let mut want_misc = hex_field(qe_id, "miscselect").map_err(e)?;
    let mut mask_misc = hex_field(qe_id, "miscselectMask").map_err(e)?;
    // MISCSELECT is written big-endian in the JSON.
    want_misc.reverse();
    mask_misc.reverse();
    if !masked_eq(&misc, &want_misc, &mask_misc) {
        return Err(DcapError::QeIdentity("masked MISCSELECT differs".into()));
    }
    if !masked_eq(
        &qe.attributes,
        &hex_field(qe_id, "attributes").map_err(e)?,
        &hex_field(qe_id, "attributesMask").map_err(e)?,
    ) {
        return Err(DcapError::QeIdentity("masked ATTRIBUTES differ".into()));
    }
    let qe_level = qe_id["tcbLevels"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|l| {
            l["tcb"]["isvsvn"]
                .as_u64()
                .is_some_and(|s| s <= u64::from(qe.isv_svn))
        });
    let qe_status = qe_level
        .and_then(|l| l["tcbStatus"].as_str())
        .and_then(TcbStatus::parse)
        .unwrap_or(TcbStatus::NotSupported);
    if qe_status == TcbStatus::NotSupported {
        return Err(DcapError::QeIdentity(format!(
            "no QE TCB level for ISVSVN {}",
            qe.isv_svn
        )));
    }
    // Step 6.
    let t = |m: String| DcapError::TcbInfo(m);
    let info_doc = signed_json(
        (
            &collateral.tcb_info,
            &collateral.tcb_info_signature,
            &collateral.tcb_info_issuer_chain,
        ),
        root,
        at,
        backend,
        cache,
        opts.allow_stale_collateral,
    )
    .map_err(t)?;
    let info = &info_doc.value;
    let want = if tdx { "TDX" } else { "SGX" };
    if info["id"] != want {
        return Err(t(format!("id is {}, expected {want}", info["id"])));
    }
    if info["version"].as_u64() != Some(3) {
        return Err(t(format!(
            "unsupported TCB info version {}",
            info["version"]
        )));
    }
    let ext = &chain.ext;
    if hex_field(info, "fmspc").map_err(t)? != ext.fmspc {
        return Err(t("FMSPC differs from the PCK certificate's".into()));
    }
    if hex_field(info, "pceId").map_err(t)? != ext.pce_id {
        return Err(t("PCE-ID differs from the PCK certificate's".into()));
    }
    let td = match &quote.body {
        Body::Td10(r) | Body::Td15(r) => Some(r),
        Body::Sgx(_) => None,
    };
    let tee_tcb_svn = td.map(|r| r.tee_tcb_svn);
    // TDX module identity: with TEE_TCB_SVN[1] > 0, components 0 and 1 are
    // judged by the module identity, not by the TCB levels.
    let mut module_status = None;
    if let Some(svn) = tee_tcb_svn
        && svn[1] > 0
    {
        let id = format!("TDX_{:02X}", svn[1]);
        let m = info["tdxModuleIdentities"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|m| m["id"].as_str() == Some(id.as_str()))
            .ok_or_else(|| t(format!("no TDX module identity {id}")))?;
        if let Some(r) = td
            && hex_field(m, "mrsigner").map_err(t)? != r.mr_signer_seam
        {
            return Err(t("MRSIGNERSEAM differs from the TDX module identity".into()));
        }
        let level = m["tcbLevels"].as_array().into_iter().flatten().find(|l| {
            l["tcb"]["isvsvn"]
                .as_u64()
                .is_some_and(|s| s <= u64::from(svn[0]))
        });
        module_status = Some(
            level
                .and_then(|l| l["tcbStatus"].as_str())
                .and_then(TcbStatus::parse)
                .unwrap_or(TcbStatus::NotSupported),
        );
    }
    let mut platform = TcbStatus::NotSupported;
    let mut advisories: Vec<String> = Vec::new();
    for level in &info_doc.levels {
        let sgx_ok = level.sgx.is_some_and(|c| {
            c.iter()
                .zip(ext.tcb_svns.iter())
                .all(|(l, p)| *l <= u64::from(*p))
        });
        let pce_ok = level.pcesvn.is_some_and(|s| s <= u64::from(ext.pcesvn));
        let tdx_ok = match tee_tcb_svn {
            None => true,
            Some(svn) => level.tdx.is_some_and(|c| {
                c.iter()
                    .zip(svn.iter())
                    .enumerate()
                    .all(|(i, (l, p))| (i < 2 && svn[1] > 0) || *l <= u64::from(*p))
            }),
        };
        if sgx_ok && pce_ok && tdx_ok {
            platform = level
                .status
                .ok_or_else(|| t(format!("unknown tcbStatus {:?}", level.status_text)))?;
            advisories = level.advisories.clone();
            break;
        }
    }
    // Step 7.
    let mut status = platform;
    if status != TcbStatus::NotSupported {
        if let Some(m) = module_status {
            if m == TcbStatus::NotSupported {
                status = TcbStatus::NotSupported;
            } else {
                status = status.converge(m);
            }
        }
        if status != TcbStatus::NotSupported {
            status = status.converge(qe_status);
        }
    }
    if let Some(a) = qe_level.and_then(|l| l["advisoryIDs"].as_array()) {
        advisories.extend(a.iter().filter_map(|x| x.as_str().map(str::to_string)));
    }
    advisories.sort();
    advisories.dedup();
    let mut flags = Vec::new();
    let claims = match &quote.body {
        Body::Sgx(r) => {
            if r.debug() {
                flags.push(PolicyFlag::SgxDebug);
            }
            DcapClaims {
                tee: "sgx",
                quote_version: quote.header.version,
                tcb_status: status,
                advisory_ids: advisories,
                policy_flags: flags,
                fmspc: Hex(ext.fmspc.clone()),
                report_data: Hex(r.report_data.to_vec()),
                debug: r.debug(),
                measurement: Hex(r.mr_enclave.to_vec()),
                mr_signer: Some(Hex(r.mr_signer.to_vec())),
                mr_config_id: None,
                rtmrs: None,
                tee_tcb_svn: None,
                isv_prod_id: Some(r.isv_prod_id),
                isv_svn: Some(r.isv_svn),
                td: None,
                sgx_attributes: Some({
                    let f = r.attributes.first().copied().unwrap_or(0);
                    SgxAttributes {
                        raw: Hex(r.attributes.to_vec()),
                        init: f & 0x01 != 0,
                        debug: f & 0x02 != 0,
                        mode64bit: f & 0x04 != 0,
                        provision_key: f & 0x10 != 0,
                        einittoken_key: f & 0x20 != 0,
                        kss: f & 0x80 != 0,
                    }
                }),
                tcb_evaluation_data_number: info["tcbEvaluationDataNumber"].as_u64(),
                tcb_info_issue_date: info["issueDate"].as_str().unwrap_or("").to_string(),
                tcb_info_next_update: info["nextUpdate"].as_str().unwrap_or("").to_string(),
                qe_identity_next_update: qe_id["nextUpdate"].as_str().unwrap_or("").to_string(),
                simulated,
            }
        }
        Body::Td10(r) | Body::Td15(r) => {
            if r.debug() {
                flags.push(PolicyFlag::TdDebug);
            }
            if !r.sept_ve_disable() {
                flags.push(PolicyFlag::SeptVeDisableOff);
            }
            if r.mr_servicetd.is_some_and(|m| m.iter().any(|b| *b != 0)) {
                flags.push(PolicyFlag::MrServiceTdNonZero);
            }
            DcapClaims {
                tee: "tdx",
                quote_version: quote.header.version,
                tcb_status: status,
                advisory_ids: advisories,
                policy_flags: flags,
                fmspc: Hex(ext.fmspc.clone()),
                report_data: Hex(r.report_data.to_vec()),
                debug: r.debug(),
                measurement: Hex(r.mr_td.to_vec()),
                mr_signer: None,
                mr_config_id: Some(Hex(r.mr_config_id.to_vec())),
                rtmrs: Some(r.rtmr.iter().map(|m| Hex(m.to_vec())).collect()),
                tee_tcb_svn: Some(Hex(r.tee_tcb_svn.to_vec())),
                isv_prod_id: None,
                isv_svn: None,
                td: Some({
                    let a = u64::from_le_bytes(r.td_attributes);
                    TdClaims {
                        mr_owner: Hex(r.mr_owner.to_vec()),
                        mr_owner_config: Hex(r.mr_owner_config.to_vec()),
                        mr_seam: Hex(r.mr_seam.to_vec()),
                        mr_signer_seam: Hex(r.mr_signer_seam.to_vec()),
                        xfam: Hex(r.xfam.to_vec()),
                        td_attributes: TdAttributes {
                            raw: Hex(r.td_attributes.to_vec()),
                            debug: a & 1 != 0,
                            sept_ve_disable: a & (1 << 28) != 0,
                            pks: a & (1 << 30) != 0,
                            kl: a & (1 << 31) != 0,
                            perfmon: a & (1 << 63) != 0,
                        },
                        mr_servicetd: r.mr_servicetd.map(|m| Hex(m.to_vec())),
                        tee_tcb_svn2: r.tee_tcb_svn2.map(|m| Hex(m.to_vec())),
                    }
                }),
                sgx_attributes: None,
                tcb_evaluation_data_number: info["tcbEvaluationDataNumber"].as_u64(),
                tcb_info_issue_date: info["issueDate"].as_str().unwrap_or("").to_string(),
                tcb_info_next_update: info["nextUpdate"].as_str().unwrap_or("").to_string(),
                qe_identity_next_update: qe_id["nextUpdate"].as_str().unwrap_or("").to_string(),
                simulated,
            }
        }
    };
    Ok(VerifiedQuote { claims })
}

/// Replays a TDX event log (CCEL, indices 1–4 = RTMR0–3) with SHA-384 and
/// returns the four RTMR values it produces.
pub fn replay_rtmrs(log: &veil_evidence::eventlog::EventLog) -> Result<[[u8; 48]; 4], String> {
    let mut rtmr = [[0u8; 48]; 4];
    for (n, e) in log.events.iter().enumerate() {
        let slot = match e.index {
            1..=4 => rtmr.get_mut((e.index - 1) as usize).ok_or("index")?,
            // MRTD is measured by the TDX module, not extended from the log.
            0 => continue,
            other => return Err(format!("event {n}: index {other} is not an RTMR")),
        };
        let digest = e
            .sha384()
            .ok_or_else(|| format!("event {n} has no SHA-384 digest"))?;
        let mut buf = slot.to_vec();
        buf.extend_from_slice(digest);
        let d = AWS_LC.sha384(&buf);
        *slot = d;
    }
    Ok(rtmr)
}

/// Checks a TDX event log against the quote's RTMRs; returns the events as
/// claims (`index`, `type`, `sha384`, and the data when it is short).
pub fn check_event_log(claims: &DcapClaims, log_bytes: &[u8]) -> Result<Value, String> {
    let log = veil_evidence::eventlog::parse(log_bytes).map_err(|e| format!("event log: {e}"))?;
    let replayed = replay_rtmrs(&log)?;
    let quoted = claims.rtmrs.as_ref().ok_or("not a TDX quote")?;
    for (i, (r, q)) in replayed.iter().zip(quoted).enumerate() {
        if r.as_slice() != q.0.as_slice() {
            return Err(format!(
                "event log replay gives RTMR{i} = {}, the quote says {}",
                hex::encode(r),
                q
            ));
        }
    }
    Ok(Value::Array(
        log.events
            .iter()
            .map(|e| {
                serde_json::json!({
                    "index": e.index,
                    "type": e.event_type,
                    "sha384": e.sha384().map(hex::encode),
                    "data": if e.data.len() <= 1024 { Value::String(hex::encode(&e.data)) } else { Value::Null },
                    "data_len": e.data.len(),
                })
            })
            .collect(),
    ))
}

/// Decodes a TCB info or QE identity document's TCB levels (no signature
/// check): the parsing half of steps 5–6, exposed for fuzzing and tools.
pub fn decode_collateral_document(text: &str) -> Result<usize, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    time_field(&value, "issueDate")?;
    time_field(&value, "nextUpdate")?;
    Ok(decode_levels(&value).len())
}
