//! The endorsements of one SNP verification: certificates and CRLs as DER.
//!
//! This is plain data. Which certificate is the VCEK, the ASK or the ARK is
//! decided by the verifier when it builds the chain (by issuer/subject and
//! signature), so a mislabelled input can only cause a rejection.

use std::path::Path;

use veil_evidence::snp::CertTableEntry;

use crate::EndorsementError;
use crate::certs::{Blob, decode_blobs};

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
    pub fn add_cert_table(&mut self, entries: &[CertTableEntry]) -> Result<(), EndorsementError> {
        for (i, e) in entries.iter().enumerate() {
            let what = format!("cert_chain[{i}] ({:?})", e.cert_type);
            self.add_blobs(decode_blobs(&what, &e.data)?);
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
