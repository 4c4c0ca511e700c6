//! AMD SEV-SNP verification.
//!
//! Trust chain: ARK (AMD root, RSA-4096, self-signed, pinned in the binary)
//! → ASK (or ASVK for VLEK) → VCEK (or VLEK), P-384 → the report.
//!
//! Steps, in order; each failure names its step (see [`SnpError::step`]):
//! 1. The report names a signing key (VCEK or VLEK), not "none".
//! 2. The endorsement key is selected: a P-384 leaf whose hwID equals the
//!    report's chip id (VCEK), or a VLEK.
//! 3. The chain is built by issuer name: leaf → ASK/ASVK (supplied or
//!    embedded) → a pinned ARK. A supplied root that is not byte-identical to
//!    the pinned one is refused; Veil's simulated root is refused unless the
//!    verifier was built with [`TrustAnchors::dangerous_trust_simulated_root`].
//! 4. Every certificate is valid at the given time.
//! 5. Signatures: ARK self-signature, ASK by ARK, VCEK by ASK (RSA-PSS).
//! 6. CRLs, when supplied: signed by the ARK, current at the given time, and
//!    not listing the ASK/ASVK.
//! 7. The report signature (ECDSA P-384/SHA-384) over bytes 0x000–0x29F as
//!    received.
//! 8. The leaf's extensions agree with the report: product, hwID = chip id,
//!    bl/tee/snp/ucode (and fmc on Turin) SPLs = REPORTED_TCB.
//!
//! [`SnpVerifier::verify`] is a pure function of (report, endorsements, time);
//! it caches the outcome of steps 2–6 for a given set of endorsements, and
//! rechecks the time window on every call.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use veil_endorsements::snp::SnpEndorsements;
use veil_evidence::snp::{
    AttestationReport, Cpuid, FirmwareVersion, GuestPolicy, PlatformInfo, Product, SigningKey,
    TcbVersion,
};

use crate::UnixTime;
use crate::crypto::{AWS_LC, CryptoBackend, P384Key};
use crate::x509::{Cert, CertError, Crl};

/// The organisation name in every certificate of Veil's simulated TEE PKI.
/// Used only to give a precise error; trust never depends on names.
pub const SIMULATED_ORG: &str = "Veil Simulated TEE (NOT FOR PRODUCTION)";

/// AMD's VCEK/VLEK extension OIDs (arc 1.3.6.1.4.1.3704.1).
pub mod oid {
    pub const STRUCT_VERSION: &str = "1.3.6.1.4.1.3704.1.1";
    pub const PRODUCT_NAME: &str = "1.3.6.1.4.1.3704.1.2";
    pub const BL_SPL: &str = "1.3.6.1.4.1.3704.1.3.1";
    pub const TEE_SPL: &str = "1.3.6.1.4.1.3704.1.3.2";
    pub const SNP_SPL: &str = "1.3.6.1.4.1.3704.1.3.3";
    pub const UCODE_SPL: &str = "1.3.6.1.4.1.3704.1.3.8";
    pub const FMC_SPL: &str = "1.3.6.1.4.1.3704.1.3.9";
    pub const HWID: &str = "1.3.6.1.4.1.3704.1.4";
    pub const CSP_ID: &str = "1.3.6.1.4.1.3704.1.5";
}

/// Which certificate of the chain an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ChainRole {
    Ark,
    Ask,
    Asvk,
    Vcek,
    Vlek,
}

impl std::fmt::Display for ChainRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ChainRole::Ark => "ARK",
            ChainRole::Ask => "ASK",
            ChainRole::Asvk => "ASVK",
            ChainRole::Vcek => "VCEK",
            ChainRole::Vlek => "VLEK",
        })
    }
}

/// Why an SNP report was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SnpError {
    #[error("step 1 (signing key): the report is unsigned (SIGNING_KEY = none)")]
    UnsignedReport,
    #[error(
        "step 2 (endorsement key): the report's chip id is masked (MASK_CHIP_KEY), so no VCEK can be matched to it"
    )]
    ChipIdMasked,
    #[error("step 2 (endorsement key): no {role} certificate for this report was supplied{hint}")]
    MissingEndorsementKey { role: ChainRole, hint: String },
    #[error("step 2 (endorsement key): {role} certificate is unusable: {reason}")]
    BadEndorsementKey { role: ChainRole, reason: String },
    #[error("step 3 (chain): no {role} certificate named {issuer:?} (issuer of the {child})")]
    MissingIntermediate {
        role: ChainRole,
        child: ChainRole,
        issuer: String,
    },
    #[error("step 3 (chain): the chain ends at {issuer:?}, which is not a pinned AMD root")]
    UntrustedRoot { issuer: String },
    #[error(
        "step 3 (chain): the chain ends at Veil's simulated AMD root; simulated evidence is trusted only when the operator enables it explicitly (--dangerous-trust-simulated-tee)"
    )]
    SimulatedRoot,
    #[error("step 3 (chain): the supplied ARK {subject:?} is not the pinned AMD root of that name")]
    RootMismatch { subject: String },
    #[error("step 3 (chain): the report is from a {report} processor but the chain is {chain}'s")]
    ProductMismatch { report: Product, chain: Product },
    #[error(
        "step 4 (validity): {role} {subject:?} is not valid at {at} (valid {not_before} to {not_after})"
    )]
    CertificateNotValid {
        role: ChainRole,
        subject: String,
        at: UnixTime,
        not_before: UnixTime,
        not_after: UnixTime,
    },
    #[error("step 5 (chain signatures): {role} signature: {reason}")]
    ChainSignature { role: ChainRole, reason: String },
    #[error("step 6 (revocation): CRL from {issuer:?} is invalid: {reason}")]
    BadCrl { issuer: String, reason: String },
    #[error("step 6 (revocation): {role} {subject:?} is revoked")]
    Revoked { role: ChainRole, subject: String },
    #[error(
        "step 7 (report signature): the report signature does not verify with the {role}: {reason}"
    )]
    ReportSignature { role: ChainRole, reason: String },
    #[error(
        "step 8 (key/report binding): {field} in the {role} is {cert} but the report says {report}"
    )]
    ExtensionMismatch {
        role: ChainRole,
        field: &'static str,
        cert: String,
        report: String,
    },
}

impl SnpError {
    /// The numbered verification step that failed.
    pub fn step(&self) -> u8 {
        match self {
            SnpError::UnsignedReport => 1,
            SnpError::ChipIdMasked
            | SnpError::MissingEndorsementKey { .. }
            | SnpError::BadEndorsementKey { .. } => 2,
            SnpError::MissingIntermediate { .. }
            | SnpError::UntrustedRoot { .. }
            | SnpError::SimulatedRoot
            | SnpError::RootMismatch { .. }
            | SnpError::ProductMismatch { .. } => 3,
            SnpError::CertificateNotValid { .. } => 4,
            SnpError::ChainSignature { .. } => 5,
            SnpError::BadCrl { .. } | SnpError::Revoked { .. } => 6,
            SnpError::ReportSignature { .. } => 7,
            SnpError::ExtensionMismatch { .. } => 8,
        }
    }

    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            SnpError::UnsignedReport => "snp.unsigned_report",
            SnpError::ChipIdMasked => "snp.chip_id_masked",
            SnpError::MissingEndorsementKey { .. } => "snp.missing_endorsement_key",
            SnpError::BadEndorsementKey { .. } => "snp.bad_endorsement_key",
            SnpError::MissingIntermediate { .. } => "snp.missing_intermediate",
            SnpError::UntrustedRoot { .. } => "snp.untrusted_root",
            SnpError::SimulatedRoot => "snp.simulated_root_not_trusted",
            SnpError::RootMismatch { .. } => "snp.root_mismatch",
            SnpError::ProductMismatch { .. } => "snp.product_mismatch",
            SnpError::CertificateNotValid { .. } => "snp.certificate_not_valid",
            SnpError::ChainSignature { .. } => "snp.chain_signature",
            SnpError::BadCrl { .. } => "snp.bad_crl",
            SnpError::Revoked { .. } => "snp.revoked",
            SnpError::ReportSignature { .. } => "snp.report_signature",
            SnpError::ExtensionMismatch { .. } => "snp.key_report_mismatch",
        }
    }
}

/// One trusted root.
#[derive(Debug, Clone)]
struct Anchor {
    product: Product,
    cert: Cert,
    simulated: bool,
}

/// The roots a verifier trusts, plus known intermediates.
#[derive(Debug, Clone)]
pub struct TrustAnchors {
    anchors: Vec<Anchor>,
    intermediates: Vec<Cert>,
}

impl TrustAnchors {
    /// AMD's ARKs for Milan, Genoa and Turin (pinned), with their ASK/ASVK.
    pub fn amd() -> Self {
        Self::amd_products(&Product::ALL)
    }

    /// AMD's ARKs for some products only.
    pub fn amd_products(products: &[Product]) -> Self {
        let mut anchors = Vec::new();
        let mut intermediates = Vec::new();
        for &p in products {
            let pin = veil_endorsements::roots::amd::ark_pin(p);
            for der in veil_endorsements::roots::amd::embedded_certs(p) {
                let Ok(cert) = Cert::parse(&der) else {
                    continue;
                };
                if veil_endorsements::roots::amd::fingerprint(&der) == pin {
                    if cert.verify_signed_by(&cert, &AWS_LC).is_ok() {
                        anchors.push(Anchor {
                            product: p,
                            cert,
                            simulated: false,
                        });
                    }
                } else if !cert.is_self_issued() {
                    intermediates.push(cert);
                }
            }
        }
        TrustAnchors {
            anchors,
            intermediates,
        }
    }

    /// Also trusts a simulated ARK (Veil's simulated TEE) for `product`.
    /// Evidence signed under it proves nothing about real hardware: use only
    /// for demos and tests, and only when the operator says so by name.
    pub fn dangerous_trust_simulated_root(
        mut self,
        product: Product,
        ark_der: &[u8],
    ) -> Result<Self, CertError> {
        let cert = Cert::parse(ark_der)?;
        cert.verify_signed_by(&cert, &AWS_LC)?;
        self.anchors.push(Anchor {
            product,
            cert,
            simulated: true,
        });
        Ok(self)
    }

    /// Number of roots.
    pub fn len(&self) -> usize {
        self.anchors.len()
    }

    /// True when no root is trusted.
    pub fn is_empty(&self) -> bool {
        self.anchors.is_empty()
    }
}

/// Hex-encoded bytes in JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hex(pub Vec<u8>);

impl Serialize for Hex {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(&self.0))
    }
}

impl std::fmt::Display for Hex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(&self.0))
    }
}

/// Facts about the endorsement key that signed the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EndorsementClaims {
    pub kind: ChainRole,
    pub subject: String,
    pub not_after: String,
    /// The VCEK's hwID (VCEK only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hwid: Option<Hex>,
    /// The cloud provider named in a VLEK (VLEK only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub csp_id: Option<String>,
    /// Whether a CRL was checked.
    pub crl_checked: bool,
    /// True when the chain ends at Veil's simulated root.
    pub simulated: bool,
}

/// The claims of a verified SNP report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SnpClaims {
    pub tee: &'static str,
    pub product: Product,
    pub report_version: u32,
    pub measurement: Hex,
    pub host_data: Hex,
    pub report_data: Hex,
    pub id_key_digest: Hex,
    pub author_key_digest: Hex,
    pub family_id: Hex,
    pub image_id: Hex,
    pub guest_svn: u32,
    pub vmpl: u32,
    pub policy: GuestPolicy,
    pub debug: bool,
    pub platform_info: PlatformInfo,
    pub signing_key: SigningKey,
    pub author_key_en: bool,
    pub reported_tcb: TcbVersion,
    pub committed_tcb: TcbVersion,
    pub launch_tcb: TcbVersion,
    pub current_tcb: TcbVersion,
    pub current_version: FirmwareVersion,
    pub committed_version: FirmwareVersion,
    pub chip_id: Hex,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpuid: Option<Cpuid>,
    pub report_id: Hex,
    pub report_id_ma: Hex,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub launch_mit_vector: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_mit_vector: Option<u64>,
    pub endorsement: EndorsementClaims,
}

/// A report whose signature, chain and key binding have been verified.
/// Only [`SnpVerifier::verify`] constructs it.
#[derive(Debug, Clone)]
pub struct VerifiedSnpReport {
    claims: SnpClaims,
    verified_at: UnixTime,
}

impl VerifiedSnpReport {
    /// The verified claims.
    pub fn claims(&self) -> &SnpClaims {
        &self.claims
    }

    /// The time the verification was done for.
    pub fn verified_at(&self) -> UnixTime {
        self.verified_at
    }

    /// True if the chain ends at Veil's simulated root.
    pub fn is_simulated(&self) -> bool {
        self.claims.endorsement.simulated
    }
}

/// The outcome of steps 2–6 for one set of endorsements.
#[derive(Debug)]
struct TrustedKey {
    key: Box<dyn P384Key>,
    role: ChainRole,
    product: Product,
    leaf: Cert,
    /// The chain's certificates with their roles, leaf first.
    chain: Vec<(ChainRole, Cert)>,
    crls: Vec<Crl>,
    simulated: bool,
}

/// The SNP verifier: trust anchors, a crypto backend and a chain cache.
#[derive(Debug)]
pub struct SnpVerifier {
    anchors: TrustAnchors,
    backend: &'static dyn CryptoBackend,
    cache: Mutex<HashMap<[u8; 32], Arc<TrustedKey>>>,
}

/// The most chains kept in the cache; past this it is cleared (simple and
/// bounded; a fleet has few distinct VCEK/TCB combinations).
const CACHE_LIMIT: usize = 4096;

impl SnpVerifier {
    /// A verifier with the given anchors and the aws-lc-rs backend.
    pub fn new(anchors: TrustAnchors) -> Self {
        Self::with_backend(anchors, &AWS_LC)
    }

    /// A verifier with a chosen crypto backend.
    pub fn with_backend(anchors: TrustAnchors, backend: &'static dyn CryptoBackend) -> Self {
        SnpVerifier {
            anchors,
            backend,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Verifies a report against endorsements at time `at`.
    pub fn verify(
        &self,
        report: &AttestationReport,
        endorsements: &SnpEndorsements,
        at: UnixTime,
    ) -> Result<VerifiedSnpReport, SnpError> {
        // Step 1.
        let role = match report.signing_key() {
            SigningKey::Vcek => ChainRole::Vcek,
            SigningKey::Vlek => ChainRole::Vlek,
            SigningKey::None => return Err(SnpError::UnsignedReport),
        };
        if role == ChainRole::Vcek && report.key_info.mask_chip_key {
            return Err(SnpError::ChipIdMasked);
        }
        let cache_key = self.cache_key(report, endorsements, role);
        let cached = self
            .cache
            .lock()
            .ok()
            .and_then(|c| c.get(&cache_key).cloned());
        let trusted = match cached {
            Some(t) if t.chain.iter().all(|(_, c)| c.valid_at(at)) && crls_current(&t.crls, at) => {
                t
            }
            _ => {
                let t = Arc::new(self.build_chain(report, endorsements, role, at)?);
                if let Ok(mut c) = self.cache.lock() {
                    if c.len() >= CACHE_LIMIT {
                        c.clear();
                    }
                    c.insert(cache_key, t.clone());
                }
                t
            }
        };
        if let Some(p) = report.product()
            && p != trusted.product
        {
            return Err(SnpError::ProductMismatch {
                report: p,
                chain: trusted.product,
            });
        }
        // Step 7.
        let sig = be_signature(report).map_err(|reason| SnpError::ReportSignature {
            role,
            reason: reason.into(),
        })?;
        trusted
            .key
            .verify_fixed(report.signed_bytes(), &sig)
            .map_err(|e| SnpError::ReportSignature {
                role,
                reason: e.to_string(),
            })?;
        // Step 8.
        let ext = check_extensions(&trusted.leaf, role, trusted.product, report)?;
        Ok(VerifiedSnpReport {
            claims: claims(report, &trusted, ext),
            verified_at: at,
        })
    }

    fn cache_key(
        &self,
        report: &AttestationReport,
        e: &SnpEndorsements,
        role: ChainRole,
    ) -> [u8; 32] {
        let mut buf = Vec::with_capacity(8192);
        buf.extend_from_slice(if role == ChainRole::Vcek {
            b"vcek"
        } else {
            b"vlek"
        });
        buf.extend_from_slice(&report.chip_id);
        for d in e.certs.iter().chain(e.crls.iter()) {
            buf.extend_from_slice(&(d.len() as u64).to_le_bytes());
            buf.extend_from_slice(d);
        }
        buf.extend_from_slice(&(e.crls.len() as u64).to_le_bytes());
        self.backend.sha256(&buf)
    }

    /// Steps 2–6.
    fn build_chain(
        &self,
        report: &AttestationReport,
        endorsements: &SnpEndorsements,
        role: ChainRole,
        at: UnixTime,
    ) -> Result<TrustedKey, SnpError> {
        let mut supplied = Vec::new();
        for (i, der) in endorsements.certs.iter().enumerate() {
            let cert = Cert::parse(der).map_err(|e| SnpError::BadEndorsementKey {
                role,
                reason: format!("certificate {i}: {e}"),
            })?;
            supplied.push(cert);
        }
        // Step 2: candidate leaves. For a VCEK, those whose hwID names this
        // chip come first; the others are still tried so that a forged or
        // foreign VCEK fails at its signature (step 5) or binding (step 8)
        // with a precise error.
        let mut leaves: Vec<&Cert> = supplied
            .iter()
            .filter(|c| c.p384_public_key().is_some() && !c.is_self_issued())
            .filter(|c| match role {
                ChainRole::Vcek => c.extension(oid::HWID).is_some(),
                _ => c.extension(oid::HWID).is_none(),
            })
            .collect();
        leaves.sort_by_key(|c| {
            !c.extension(oid::HWID)
                .and_then(decode_hwid)
                .is_some_and(|h| report.chip_id.starts_with(&h))
        });
        if leaves.is_empty() {
            let hint = match role {
                ChainRole::Vcek => format!(
                    "; fetch it from AMD KDS for chip id {} and TCB {}",
                    hex::encode(report.chip_id),
                    report.reported_tcb
                ),
                _ => "; VLEKs come from the cloud provider with the evidence".into(),
            };
            return Err(SnpError::MissingEndorsementKey { role, hint });
        }
        let mut first_err = None;
        for leaf in leaves {
            match self.chain_from(leaf, role, &supplied, endorsements, report, at) {
                Ok(t) => return Ok(t),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        Err(first_err.unwrap_or(SnpError::MissingEndorsementKey {
            role,
            hint: String::new(),
        }))
    }

    fn chain_from(
        &self,
        leaf: &Cert,
        role: ChainRole,
        supplied: &[Cert],
        endorsements: &SnpEndorsements,
        _report: &AttestationReport,
        at: UnixTime,
    ) -> Result<TrustedKey, SnpError> {
        let inter_role = if role == ChainRole::Vlek {
            ChainRole::Asvk
        } else {
            ChainRole::Ask
        };
        // Step 3: intermediate by name (supplied first, then embedded).
        let intermediate = supplied
            .iter()
            .chain(self.anchors.intermediates.iter())
            .find(|c| c.subject == leaf.issuer && !c.is_self_issued())
            .ok_or_else(|| SnpError::MissingIntermediate {
                role: inter_role,
                child: role,
                issuer: leaf.issuer.clone(),
            })?;
        // Any supplied self-signed root must be the pinned one.
        for c in supplied.iter().filter(|c| c.is_self_issued()) {
            if c.subject == intermediate.issuer
                && !self.anchors.anchors.iter().any(|a| a.cert.der == c.der)
            {
                if c.subject_org().as_deref() == Some(SIMULATED_ORG) {
                    return Err(SnpError::SimulatedRoot);
                }
                return Err(SnpError::RootMismatch {
                    subject: c.subject.clone(),
                });
            }
        }
        let Some(anchor) = self
            .anchors
            .anchors
            .iter()
            .find(|a| a.cert.subject == intermediate.issuer)
        else {
            if intermediate.issuer_org().as_deref() == Some(SIMULATED_ORG) {
                return Err(SnpError::SimulatedRoot);
            }
            return Err(SnpError::UntrustedRoot {
                issuer: intermediate.issuer.clone(),
            });
        };
        let root = &anchor.cert;
        // Step 4.
        let chain = vec![
            (role, leaf.clone()),
            (inter_role, intermediate.clone()),
            (ChainRole::Ark, root.clone()),
        ];
        for (r, c) in chain.iter().rev() {
            if !c.valid_at(at) {
                return Err(SnpError::CertificateNotValid {
                    role: *r,
                    subject: c.subject.clone(),
                    at,
                    not_before: c.not_before,
                    not_after: c.not_after,
                });
            }
        }
        // Step 5.
        let sig_err = |r: ChainRole| {
            move |e: CertError| SnpError::ChainSignature {
                role: r,
                reason: e.to_string(),
            }
        };
        root.verify_signed_by(root, self.backend)
            .map_err(sig_err(ChainRole::Ark))?;
        intermediate
            .verify_signed_by(root, self.backend)
            .map_err(sig_err(inter_role))?;
        leaf.verify_signed_by(intermediate, self.backend)
            .map_err(sig_err(role))?;
        // Step 6: CRLs issued by this root.
        let mut crls = Vec::new();
        for der in &endorsements.crls {
            let crl = Crl::parse(der).map_err(|e| SnpError::BadCrl {
                issuer: "?".into(),
                reason: e.to_string(),
            })?;
            if crl.issuer != root.subject {
                continue;
            }
            let bad = |reason: String| SnpError::BadCrl {
                issuer: crl.issuer.clone(),
                reason,
            };
            crl.verify_signed_by(root, self.backend)
                .map_err(|e| bad(e.to_string()))?;
            if !crl_current(&crl, at) {
                return Err(bad(format!(
                    "not current at {at} (this update {}, next update {})",
                    crl.this_update,
                    crl.next_update
                        .map_or_else(|| "none".to_string(), |t| t.to_string())
                )));
            }
            if crl.revoked.iter().any(|s| s == intermediate.serial()) {
                return Err(SnpError::Revoked {
                    role: inter_role,
                    subject: intermediate.subject.clone(),
                });
            }
            crls.push(crl);
        }
        let key = leaf
            .p384_public_key()
            .ok_or_else(|| SnpError::BadEndorsementKey {
                role,
                reason: "not a P-384 key".into(),
            })
            .and_then(|k| {
                self.backend
                    .p384_key(k)
                    .map_err(|e| SnpError::BadEndorsementKey {
                        role,
                        reason: e.to_string(),
                    })
            })?;
        Ok(TrustedKey {
            key,
            role,
            product: anchor.product,
            leaf: leaf.clone(),
            chain,
            crls,
            simulated: anchor.simulated,
        })
    }
}

fn crl_current(crl: &Crl, at: UnixTime) -> bool {
    crl.this_update <= at && crl.next_update.is_none_or(|n| at <= n)
}

fn crls_current(crls: &[Crl], at: UnixTime) -> bool {
    crls.iter().all(|c| crl_current(c, at))
}

/// The report's little-endian 72-byte r and s as big-endian 48-byte values.
/// The upper 24 bytes of each must be zero: nothing is truncated to fit.
fn be_signature(report: &AttestationReport) -> Result<[u8; 96], &'static str> {
    let mut out = [0u8; 96];
    let (r_out, s_out) = out.split_at_mut(48);
    for (src, dst) in [(&report.signature.r, r_out), (&report.signature.s, s_out)] {
        let (low, high) = src.split_at(48);
        if high.iter().any(|b| *b != 0) {
            return Err("r or s exceeds 48 bytes");
        }
        for (d, s) in dst.iter_mut().zip(low.iter().rev()) {
            *d = *s;
        }
    }
    Ok(out)
}

/// The hwID extension: 64 raw bytes (Milan/Genoa), 8 raw bytes (Turin), or
/// the same wrapped in an OCTET STRING (newer KDS encoding).
pub fn decode_hwid(v: &[u8]) -> Option<Vec<u8>> {
    match v.len() {
        8 | 64 => Some(v.to_vec()),
        _ => {
            use der::Decode;
            let os = <&der::asn1::OctetStringRef>::from_der(v).ok()?;
            matches!(os.as_bytes().len(), 8 | 64).then(|| os.as_bytes().to_vec())
        }
    }
}

fn ext_int(cert: &Cert, oid: &str) -> Option<u8> {
    use der::Decode;
    cert.extension(oid).and_then(|v| u8::from_der(v).ok())
}

fn ext_string(cert: &Cert, oid: &str) -> Option<String> {
    use der::Decode;
    let v = cert.extension(oid)?;
    der::asn1::Ia5StringRef::from_der(v)
        .map(|s| s.as_str().to_string())
        .or_else(|_| der::asn1::Utf8StringRef::from_der(v).map(|s| s.as_str().to_string()))
        .ok()
}

struct ExtFacts {
    hwid: Option<Vec<u8>>,
    csp_id: Option<String>,
}

/// Step 8.
fn check_extensions(
    leaf: &Cert,
    role: ChainRole,
    product: Product,
    report: &AttestationReport,
) -> Result<ExtFacts, SnpError> {
    let mismatch = |field: &'static str, cert: String, rep: String| SnpError::ExtensionMismatch {
        role,
        field,
        cert,
        report: rep,
    };
    if let Some(name) = ext_string(leaf, oid::PRODUCT_NAME)
        && Product::from_name(&name) != Some(product)
    {
        return Err(mismatch("product name", name, product.to_string()));
    }
    let tcb = report.reported_tcb;
    let spl = |oid: &str, field: &'static str, want: u8| -> Result<(), SnpError> {
        match ext_int(leaf, oid) {
            Some(v) if v == want => Ok(()),
            Some(v) => Err(mismatch(field, v.to_string(), want.to_string())),
            None => Err(mismatch(field, "missing".into(), want.to_string())),
        }
    };
    spl(oid::BL_SPL, "bootloader SPL", tcb.bootloader)?;
    spl(oid::TEE_SPL, "TEE SPL", tcb.tee)?;
    spl(oid::SNP_SPL, "SNP SPL", tcb.snp)?;
    spl(oid::UCODE_SPL, "microcode SPL", tcb.microcode)?;
    if let Some(fmc) = tcb.fmc {
        spl(oid::FMC_SPL, "FMC SPL", fmc)?;
    }
    let mut facts = ExtFacts {
        hwid: None,
        csp_id: None,
    };
    if role == ChainRole::Vcek {
        let hwid = leaf
            .extension(oid::HWID)
            .and_then(decode_hwid)
            .ok_or_else(|| mismatch("hwID", "missing".into(), hex::encode(report.chip_id)))?;
        let want = report.chip_id.get(..product.hwid_len()).unwrap_or(&[]);
        if hwid != want {
            return Err(mismatch("hwID", hex::encode(&hwid), hex::encode(want)));
        }
        facts.hwid = Some(hwid);
    } else {
        facts.csp_id = ext_string(leaf, oid::CSP_ID);
    }
    Ok(facts)
}

fn claims(report: &AttestationReport, t: &TrustedKey, ext: ExtFacts) -> SnpClaims {
    SnpClaims {
        tee: "snp",
        product: t.product,
        report_version: report.version,
        measurement: Hex(report.measurement.to_vec()),
        host_data: Hex(report.host_data.to_vec()),
        report_data: Hex(report.report_data.to_vec()),
        id_key_digest: Hex(report.id_key_digest.to_vec()),
        author_key_digest: Hex(report.author_key_digest.to_vec()),
        family_id: Hex(report.family_id.to_vec()),
        image_id: Hex(report.image_id.to_vec()),
        guest_svn: report.guest_svn,
        vmpl: report.vmpl,
        policy: report.policy,
        debug: report.policy.debug,
        platform_info: report.platform_info,
        signing_key: report.signing_key(),
        author_key_en: report.key_info.author_key_en,
        reported_tcb: report.reported_tcb,
        committed_tcb: report.committed_tcb,
        launch_tcb: report.launch_tcb,
        current_tcb: report.current_tcb,
        current_version: report.current_version,
        committed_version: report.committed_version,
        chip_id: Hex(report.chip_id.to_vec()),
        cpuid: report.cpuid,
        report_id: Hex(report.report_id.to_vec()),
        report_id_ma: Hex(report.report_id_ma.to_vec()),
        launch_mit_vector: report.launch_mit_vector,
        current_mit_vector: report.current_mit_vector,
        endorsement: EndorsementClaims {
            kind: t.role,
            subject: t.leaf.subject.clone(),
            not_after: t.leaf.not_after.to_string(),
            hwid: ext.hwid.map(Hex),
            csp_id: ext.csp_id,
            crl_checked: !t.crls.is_empty(),
            simulated: t.simulated,
        },
    }
}
