//! NVIDIA Hopper GPUs: the SPDM MEASUREMENTS response's ECDSA P-384
//! signature (SHA-384 over the request and the response up to the
//! signature, as received) by the leaf of the device certificate chain, the
//! chain to the pinned NVIDIA Device Identity CA, the leaf's FWID (TCG DICE
//! TcbInfo extension) equal to the FWID the report carries, and the request
//! nonce equal to the expected one.
//!
//! Reference integrity manifests are compared by [`compare_rims`] when the
//! operator supplies them; OCSP is asked by the caller (it needs the
//! network). Claims say what was done (`rim`, `ocsp`), and policy decides.

use veil_evidence::nvidia::{GpuReport, OPAQUE_FWID};

use crate::UnixTime;
use crate::crypto::CryptoBackend;
use crate::x509::{Cert, verify_chain};

/// OID of the TCG DICE TcbInfo extension.
pub const OID_TCG_DICE_TCB_INFO: &str = "2.23.133.5.4.1";
/// OID of SHA-384 (the FWID hash on Hopper).
pub const OID_SHA384: &str = "2.16.840.1.101.3.4.2.2";

/// Why GPU evidence was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GpuError {
    #[error("malformed GPU report: {0}")]
    Parse(#[from] veil_evidence::ParseError),
    #[error("certificate: {0}")]
    Cert(#[from] crate::x509::CertError),
    #[error(
        "the device certificate chain must have at least the root CA and the signing certificate"
    )]
    ShortChain,
    #[error("the device certificate chain is not PEM: {0}")]
    ChainEncoding(String),
    #[error("the signing certificate has no FWID (TCG DICE TcbInfo extension)")]
    NoCertFwid,
    #[error("the report carries no FWID")]
    NoReportFwid,
    #[error("FWID mismatch: the certificate says {cert}, the report says {report}")]
    FwidMismatch { cert: String, report: String },
    #[error("the signing certificate's key is not a P-384 key")]
    LeafKey,
    #[error("the report's signature does not verify with the device certificate")]
    BadSignature,
    #[error("nonce mismatch: the report's nonce is {actual}, expected {expected}")]
    NonceMismatch { expected: String, actual: String },
    #[error("unsupported device architecture {0:?} (Hopper is verified locally)")]
    Architecture(String),
    #[error("the NVIDIA root is not available")]
    NoRoot,
}

impl GpuError {
    /// A short stable code for metrics and tests.
    pub fn code(&self) -> &'static str {
        match self {
            GpuError::Parse(_) => "malformed",
            GpuError::Cert(_) | GpuError::ShortChain | GpuError::ChainEncoding(_) => "chain",
            GpuError::NoCertFwid | GpuError::NoReportFwid | GpuError::FwidMismatch { .. } => "fwid",
            GpuError::LeafKey | GpuError::BadSignature => "signature",
            GpuError::NonceMismatch { .. } => "nonce",
            GpuError::Architecture(_) => "architecture",
            GpuError::NoRoot => "no_root",
        }
    }
}

/// The embedded, pinned NVIDIA Device Identity CA.
pub fn default_roots() -> Result<Vec<Cert>, GpuError> {
    let der = veil_endorsements::roots::nvidia::device_identity_ca().ok_or(GpuError::NoRoot)?;
    Ok(vec![Cert::parse(&der)?])
}

/// The SHA-384 FWID the device certificate carries under OID
/// 2.23.133.5.4.1, in either layout that extension has had: the RIoT/DICE
/// v0 form NVIDIA uses (`SEQUENCE { version INTEGER, deviceKey SPKI, fwid
/// FWID }`) or the TCG DICE TcbInfo form (`fwids [6] IMPLICIT SEQUENCE OF
/// FWID`), where `FWID ::= SEQUENCE { hashAlg OID, digest OCTET STRING }`.
pub fn cert_fwid(cert: &Cert) -> Option<Vec<u8>> {
    use der::asn1::AnyRef;
    use der::{Decode, Reader, SliceReader, Tag, TagNumber, Tagged};
    let ext = cert.extension(OID_TCG_DICE_TCB_INFO)?;
    let outer = AnyRef::from_der(ext).ok()?;
    if outer.tag() != Tag::Sequence {
        return None;
    }
    let fwids = Tag::ContextSpecific {
        constructed: true,
        number: TagNumber(6),
    };
    let mut r = SliceReader::new(outer.value()).ok()?;
    while !r.is_finished() {
        let el = AnyRef::decode(&mut r).ok()?;
        if el.tag() == Tag::Sequence
            && let Some(d) = sha384_fwid(el.value())
        {
            return Some(d);
        }
        if el.tag() == fwids {
            let mut list = SliceReader::new(el.value()).ok()?;
            while !list.is_finished() {
                let fwid = AnyRef::decode(&mut list).ok()?;
                if let Some(d) = sha384_fwid(fwid.value()) {
                    return Some(d);
                }
            }
        }
    }
    None
}

/// The digest of `FWID` contents when its hash is SHA-384 (48 bytes).
fn sha384_fwid(contents: &[u8]) -> Option<Vec<u8>> {
    use der::asn1::{ObjectIdentifier, OctetString};
    use der::{Decode, Reader, SliceReader};
    let mut f = SliceReader::new(contents).ok()?;
    let alg = ObjectIdentifier::decode(&mut f).ok()?;
    let digest = OctetString::decode(&mut f).ok()?;
    (f.is_finished()
        && alg == ObjectIdentifier::new(OID_SHA384).ok()?
        && digest.as_bytes().len() == 48)
        .then(|| digest.as_bytes().to_vec())
}

/// One GPU whose report verified.
#[derive(Debug, Clone)]
pub struct VerifiedGpu {
    pub arch: String,
    pub uuid: String,
    pub report: GpuReport,
    /// Subjects of the chain, leaf first.
    pub chain_subjects: Vec<String>,
    pub fwid: Vec<u8>,
}

/// Parses a PEM chain (leaf first, as the driver returns it).
pub fn parse_chain(pem: &[u8]) -> Result<Vec<Cert>, GpuError> {
    let blobs = veil_endorsements::certs::decode_blobs("GPU certificate chain", pem)
        .map_err(|e| GpuError::ChainEncoding(e.to_string()))?;
    blobs
        .into_iter()
        .map(|b| match b {
            veil_endorsements::certs::Blob::Certificate(der) => Ok(Cert::parse(&der)?),
            veil_endorsements::certs::Blob::Crl(_) => {
                Err(GpuError::ChainEncoding("a CRL inside the chain".into()))
            }
        })
        .collect()
}

/// Verifies one device's report against its chain and `roots` at `at`.
pub fn verify_report(
    arch: &str,
    uuid: &str,
    report_bytes: &[u8],
    chain: &[Cert],
    roots: &[Cert],
    at: UnixTime,
    backend: &dyn CryptoBackend,
) -> Result<VerifiedGpu, GpuError> {
    if !arch.eq_ignore_ascii_case("hopper") {
        return Err(GpuError::Architecture(arch.to_string()));
    }
    let report = GpuReport::parse(report_bytes)?;
    if chain.len() < 2 {
        return Err(GpuError::ShortChain);
    }
    let leaf = verify_chain(chain, roots, at, backend)?;
    let cert_fwid = cert_fwid(leaf).ok_or(GpuError::NoCertFwid)?;
    let report_fwid = report.opaque(OPAQUE_FWID).ok_or(GpuError::NoReportFwid)?;
    if cert_fwid != report_fwid {
        return Err(GpuError::FwidMismatch {
            cert: hex::encode(&cert_fwid),
            report: hex::encode(report_fwid),
        });
    }
    let key = leaf.p384_public_key().ok_or(GpuError::LeafKey)?;
    backend
        .verify_p384_sha384(key, &report.signed, &report.signature, true)
        .map_err(|_| GpuError::BadSignature)?;
    Ok(VerifiedGpu {
        arch: arch.to_ascii_uppercase(),
        uuid: uuid.to_string(),
        chain_subjects: chain.iter().map(|c| c.subject.clone()).collect(),
        fwid: cert_fwid,
        report,
    })
}

impl VerifiedGpu {
    /// Requires the request nonce to be exactly `expected`.
    pub fn check_nonce(&self, expected: &[u8]) -> Result<(), GpuError> {
        if self.report.request.nonce.as_slice() != expected {
            return Err(GpuError::NonceMismatch {
                expected: hex::encode(expected),
                actual: hex::encode(self.report.request.nonce),
            });
        }
        Ok(())
    }

    /// Normalised claims: measurements by index, the OpaqueData facts
    /// (`driver_version`, `vbios_version`, …), the device identity.
    pub fn claims(&self) -> Result<serde_json::Value, GpuError> {
        let measurements: serde_json::Map<String, serde_json::Value> = self
            .report
            .blocks
            .iter()
            .map(|b| {
                (
                    b.index.to_string(),
                    serde_json::json!(hex::encode(&b.value)),
                )
            })
            .collect();
        let config = self.report.config_claims()?;
        Ok(serde_json::json!({
            "tee": "nvidia",
            "arch": self.arch,
            "uuid": self.uuid,
            "measurements": measurements,
            "driver_version": config.get("driver_version"),
            "vbios_version": config.get("vbios_version"),
            "config": config,
            "fwid": hex::encode(&self.fwid),
            "nonce": hex::encode(self.report.request.nonce),
            "device_certificate": self.chain_subjects.first(),
            "certificate_chain": self.chain_subjects,
            "trailing_zero_byte": self.report.trailing_zero,
            "rim": "not compared",
            "ocsp": "not checked",
        }))
    }
}

/// Compares a GPU's measurements with reference integrity manifests (the
/// driver's and the VBIOS's): every active RIM entry must be reported by
/// the GPU (RIM index *i* is measurement block *i* + 1) with one of its
/// values; two RIMs listing the same active index is a conflict. Returns
/// the `rim` claim: `status` `match` or `mismatch`, the manifests used and
/// what did not match.
pub fn compare_rims(gpu: &VerifiedGpu, rims: &[veil_endorsements::rim::Rim]) -> serde_json::Value {
    use std::collections::BTreeMap;
    let mut expected: BTreeMap<u32, (&[[u8; 48]], &str)> = BTreeMap::new();
    let mut problems = Vec::new();
    for rim in rims {
        for (index, entry) in rim.entries.iter().filter(|(_, e)| e.active) {
            if expected
                .insert(*index, (&entry.values, rim.version.as_str()))
                .is_some()
            {
                problems.push(serde_json::json!({
                    "index": index.saturating_add(1),
                    "problem": "listed as active by two manifests",
                }));
            }
        }
    }
    for (index, (values, version)) in &expected {
        let block = index.saturating_add(1);
        let reported = gpu
            .report
            .blocks
            .iter()
            .find(|b| u32::from(b.index) == block)
            .map(|b| b.value.as_slice());
        match reported {
            Some(v) if values.iter().any(|x| x.as_slice() == v) => {}
            Some(v) => problems.push(serde_json::json!({
                "index": block,
                "reported": hex::encode(v),
                "expected": values.iter().map(hex::encode).collect::<Vec<_>>(),
                "manifest": version,
            })),
            None => problems.push(serde_json::json!({
                "index": block,
                "problem": "not reported by the GPU",
                "manifest": version,
            })),
        }
    }
    serde_json::json!({
        "status": if problems.is_empty() { "match" } else { "mismatch" },
        "compared": expected.len(),
        "manifests": rims.iter().map(|r| serde_json::json!({
            "name": r.name, "version": r.version, "edition": r.edition,
        })).collect::<Vec<_>>(),
        "mismatched": problems,
    })
}
