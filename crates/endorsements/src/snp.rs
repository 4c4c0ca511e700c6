//! The endorsements of one SNP verification: certificates and CRLs as DER.
//!
//! This is plain data. Which certificate is the VCEK, the ASK or the ARK is
//! decided by the verifier when it builds the chain (by issuer/subject and
//! signature), so a mislabelled input can only cause a rejection.

use std::path::Path;

use veil_evidence::snp::{CertTableEntry, CertType};

use crate::EndorsementError;
use crate::certs::{Blob, decode_blobs};

/// The first byte of a DER certificate or CRL (a SEQUENCE).
const DER_SEQUENCE: u8 = 0x30;

/// Certificates (VCEK/VLEK, ASK/ASVK, ARK) and CRLs, DER-encoded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnpEndorsements {
    pub certs: Vec<Vec<u8>>,
    pub crls: Vec<Vec<u8>>,
}

impl SnpEndorsements {
    /// Adds decoded blobs, skipping exact duplicates.
    pub fn add_blobs(&mut self, blobs: Vec<Blob>) {
        for b in blobs {
            match b {
                Blob::Certificate(der) => {
                    if !self.certs.contains(&der) {
                        self.certs.push(der);
                    }
                }
                Blob::Crl(der) => {
                    if !self.crls.contains(&der) {
                        self.crls.push(der);
                    }
                }
            }
        }
    }

    /// Adds every certificate and CRL of a DER or PEM file.
    pub fn add_file(&mut self, path: &Path) -> Result<(), EndorsementError> {
        let bytes = std::fs::read(path).map_err(|source| EndorsementError::Io {
            path: path.display().to_string(),
            source,
        })?;
        self.add_blobs(decode_blobs(&path.display().to_string(), &bytes)?);
        Ok(())
    }

    /// Adds the certificate table that came with the evidence (CoCo
    /// `cert_chain`, or the SNP extended report's table).
    ///
    /// A DER entry whose table type names a certificate (ARK, ASK, VCEK,
    /// VLEK) or a CRL is filed as that without being decoded here: the
    /// verifier decodes every certificate and CRL in full when it builds a
    /// chain (and rejects the set if any does not decode), and a chain it
    /// has already built is found again by a digest of these exact bytes.
    /// Decoding each entry here only to tell a certificate from a CRL cost
    /// two full X.509 decodes per SNP attestation. The type is still only a
    /// hint for the chain: a certificate under the wrong label is placed by
    /// its issuer and subject like any other. PEM entries and entries of
    /// other types are decoded to find out what they hold.
    pub fn add_cert_table(&mut self, entries: &[CertTableEntry]) -> Result<(), EndorsementError> {
        for (i, e) in entries.iter().enumerate() {
            let der = e.data.first() == Some(&DER_SEQUENCE);
            let blob = match &e.cert_type {
                CertType::Ark | CertType::Ask | CertType::Vcek | CertType::Vlek if der => {
                    Blob::Certificate(e.data.clone())
                }
                CertType::Crl if der => Blob::Crl(e.data.clone()),
                _ => {
                    let what = format!("cert_chain[{i}] ({:?})", e.cert_type);
                    self.add_blobs(decode_blobs(&what, &e.data)?);
                    continue;
                }
            };
            self.add_blobs(vec![blob]);
        }
        Ok(())
    }

    /// Merges another set into this one.
    pub fn extend(&mut self, other: SnpEndorsements) {
        self.add_blobs(
            other
                .certs
                .into_iter()
                .map(Blob::Certificate)
                .chain(other.crls.into_iter().map(Blob::Crl))
                .collect(),
        );
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.certs.is_empty() && self.crls.is_empty()
    }
}
