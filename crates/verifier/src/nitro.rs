//! AWS Nitro Enclaves: the attestation document's ES384 signature by the
//! enclave's leaf certificate over the COSE `Sig_structure` as received, the
//! leaf's chain through `cabundle` to the pinned AWS root, every certificate
//! valid at the verification time (leaves live three hours), and the nonce.
//!
//! A debug-mode enclave (PCR0–2 all zero) verifies, and is flagged so that
//! policy can refuse it.

use veil_evidence::nitro::AttestationDoc;

use crate::UnixTime;
use crate::crypto::CryptoBackend;
use crate::x509::{Cert, verify_chain};

/// Why a document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NitroError {
    #[error("malformed attestation document: {0}")]
    Parse(#[from] veil_evidence::ParseError),
    #[error("certificate: {0}")]
    Cert(#[from] crate::x509::CertError),
    #[error("the enclave certificate's key is not a P-384 key")]
    LeafKey,
    #[error("the document's signature does not verify with the enclave certificate")]
    BadSignature,
    #[error("nonce mismatch: the document's nonce is {actual}, expected {expected}")]
    NonceMismatch { expected: String, actual: String },
    #[error("no AWS Nitro root is configured")]
    NoRoot,
}

impl NitroError {
    /// A short stable code for metrics and tests.
    pub fn code(&self) -> &'static str {
        match self {
            NitroError::Parse(_) => "malformed",
            NitroError::Cert(_) => "chain",
            NitroError::LeafKey => "leaf_key",
            NitroError::BadSignature => "signature",
            NitroError::NonceMismatch { .. } => "nonce",
            NitroError::NoRoot => "no_root",
        }
    }
}

/// A document whose signature and chain verified.
#[derive(Debug, Clone)]
pub struct VerifiedNitroDoc {
    pub doc: AttestationDoc,
    /// The enclave certificate's subject.
    pub leaf_subject: String,
    pub debug: bool,
}

/// The embedded, pinned AWS root.
pub fn default_roots() -> Result<Vec<Cert>, NitroError> {
    let der = veil_endorsements::roots::aws::nitro_root().ok_or(NitroError::NoRoot)?;
    Ok(vec![Cert::parse(&der)?])
}

/// Verifies a parsed document against `roots` at `at`.
pub fn verify_doc(
    doc: &AttestationDoc,
    roots: &[Cert],
    at: UnixTime,
    backend: &dyn CryptoBackend,
) -> Result<VerifiedNitroDoc, NitroError> {
    if roots.is_empty() {
        return Err(NitroError::NoRoot);
    }
    // cabundle runs root → … → the leaf's issuer; the walk goes the other way.
    let mut chain = vec![Cert::parse(&doc.certificate)?];
    for der in doc.cabundle.iter().rev() {
        chain.push(Cert::parse(der)?);
    }
    let leaf = verify_chain(&chain, roots, at, backend)?;
    let key = leaf.p384_public_key().ok_or(NitroError::LeafKey)?;
    let sig: &[u8; 96] = doc
        .cose
        .signature
        .as_slice()
        .try_into()
        .map_err(|_| NitroError::BadSignature)?;
    backend
        .p384_key(key)
        .map_err(|_| NitroError::LeafKey)?
        .verify_fixed(&doc.cose.to_be_signed(), sig)
        .map_err(|_| NitroError::BadSignature)?;
    Ok(VerifiedNitroDoc {
        leaf_subject: leaf.subject.clone(),
        debug: doc.is_debug(),
        doc: doc.clone(),
    })
}

impl VerifiedNitroDoc {
    /// Requires the document's `nonce` to be exactly `expected`.
    pub fn check_nonce(&self, expected: &[u8]) -> Result<(), NitroError> {
        match &self.doc.nonce {
            Some(n) if n.as_slice() == expected => Ok(()),
            other => Err(NitroError::NonceMismatch {
                expected: hex::encode(expected),
                actual: other
                    .as_ref()
                    .map(hex::encode)
                    .unwrap_or_else(|| "absent".into()),
            }),
        }
    }

    /// Normalised claims.
    pub fn claims(&self) -> serde_json::Value {
        let d = &self.doc;
        let hexo = |v: &Option<Vec<u8>>| v.as_ref().map(hex::encode);
        let pcrs: serde_json::Map<String, serde_json::Value> = d
            .pcrs
            .iter()
            .map(|(i, v)| (i.to_string(), serde_json::Value::String(hex::encode(v))))
            .collect();
        serde_json::json!({
            "tee": "nitro",
            "module_id": d.module_id,
            "digest": d.digest,
            "timestamp_ms": d.timestamp_ms,
            "pcrs": pcrs,
            "pcr0": d.pcrs.get(&0).map(hex::encode),
            // The enclave image measurement, for `nitro_measurement`.
            "measurement": d.pcrs.get(&0).map(hex::encode),
            "debug": self.debug,
            "public_key": hexo(&d.public_key),
            "user_data": hexo(&d.user_data),
            "nonce": hexo(&d.nonce),
            "certificate_subject": self.leaf_subject,
        })
    }
}

/// Finds an attestation document embedded in a TLS certificate the way
/// Evervault enclaves publish it: the hex of the document as the first label
/// of a subjectAltName dNSName. Returns the document bytes and the
/// certificate's SubjectPublicKeyInfo (DER), which the document's
/// `user_data` must equal for the certificate to be bound to the enclave.
pub fn doc_from_certificate(cert: &Cert) -> Option<(Vec<u8>, Vec<u8>)> {
    use der::{Decode, Encode};
    use x509_cert::ext::pkix::SubjectAltName;
    use x509_cert::ext::pkix::name::GeneralName;
    let san = SubjectAltName::from_der(cert.extension("2.5.29.17")?).ok()?;
    let spki = cert
        .parsed
        .tbs_certificate()
        .subject_public_key_info()
        .to_der()
        .ok()?;
    san.0.iter().find_map(|name| {
        let GeneralName::DnsName(dns) = name else {
            return None;
        };
        let label = dns.as_str().split('.').next()?;
        let bytes = hex::decode(label).ok()?;
        AttestationDoc::parse(&bytes).ok()?;
        Some((bytes, spki.clone()))
    })
}
