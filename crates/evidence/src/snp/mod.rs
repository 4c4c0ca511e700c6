//! AMD SEV-SNP evidence: the `ATTESTATION_REPORT` structure (versions 2, 3 and 5)
//! and the Confidential Containers evidence JSON that carries it.
//!
//! Layout source: AMD SEV-SNP Firmware ABI specification, "ATTESTATION_REPORT
//! Structure" (Table 23 in revision 1.57). Offsets are written next to every
//! field in [`report`].

pub mod coco;
pub mod report;
pub mod types;

pub use coco::{CertTableEntry, CertType, SnpEvidence};
pub use report::{
    AttestationReport, REPORT_LEN, ReportBody, SIGNATURE_OFFSET, SIGNED_LEN, Signature,
};
pub use types::{
    Cpuid, FirmwareVersion, GuestPolicy, KeyInfo, PlatformInfo, Product, SigningKey, TcbLayout,
    TcbVersion,
};

use crate::ParseError;

/// Parses SNP evidence in any of the accepted encodings: the raw 1184-byte
/// report, or the CoCo evidence JSON `{"attestation_report": {...},
/// "cert_chain": [...]}`. Both produce the same [`AttestationReport`].
pub fn parse_evidence(bytes: &[u8]) -> Result<SnpEvidence, ParseError> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'{') {
        coco::parse_json(bytes)
    } else {
        Ok(SnpEvidence {
            report: AttestationReport::parse(bytes)?,
            cert_chain: Vec::new(),
        })
    }
}
