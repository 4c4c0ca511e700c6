//! The small part of X.509 that vendor attestation chains need.
//!
//! Certificates are parsed with `x509-cert`, but signatures are checked over
//! the TBS bytes *as received* (sliced out of the input, never re-encoded).
//! Only the algorithms that vendor chains use are accepted, each matched
//! exactly: RSASSA-PSS with SHA-384/MGF1-SHA-384/salt 48 (AMD), and ECDSA
//! with SHA-384. AMD's VCEKs have serial number 0, which RFC 5280 forbids;
//! `x509-cert` accepts it and so do we, without loosening anything else.

use der::{Decode, Encode, Reader, SliceReader};
use x509_cert::Certificate;
use x509_cert::crl::CertificateList;

use crate::UnixTime;
use crate::crypto::{CryptoBackend, RsaScheme};

/// id-RSASSA-PSS.
pub const OID_RSASSA_PSS: &str = "1.2.840.113549.1.1.10";
/// rsaEncryption.
pub const OID_RSA_ENCRYPTION: &str = "1.2.840.113549.1.1.1";
/// sha256WithRSAEncryption.
pub const OID_SHA256_WITH_RSA: &str = "1.2.840.113549.1.1.11";
/// ecdsa-with-SHA384.
pub const OID_ECDSA_SHA384: &str = "1.2.840.10045.4.3.3";
/// ecdsa-with-SHA256.
pub const OID_ECDSA_SHA256: &str = "1.2.840.10045.4.3.2";
/// prime256v1 (P-256).
pub const OID_P256: &str = "1.2.840.10045.3.1.7";
/// id-ecPublicKey.
pub const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
/// secp384r1.
pub const OID_SECP384R1: &str = "1.3.132.0.34";

/// The RSASSA-PSS parameters AMD uses (SHA-384, MGF1 with SHA-384, salt 48,
/// trailer field 1 written out), as DER.
pub const PSS_SHA384_PARAMS: [u8; 59] = [
    0x30, 0x39, 0xa0, 0x0f, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
    0x02, 0x05, 0x00, 0xa1, 0x1c, 0x30, 0x1a, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01,
    0x01, 0x08, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05,
    0x00, 0xa2, 0x03, 0x02, 0x01, 0x30, 0xa3, 0x03, 0x02, 0x01, 0x01,
];

/// Why a certificate or CRL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    #[error("not a valid DER certificate: {0}")]
    Malformed(String),
    #[error("unsupported signature algorithm {0}")]
    UnsupportedAlgorithm(String),
    #[error("inner and outer signature algorithms differ")]
    AlgorithmMismatch,
    #[error("signature by {issuer} does not verify")]
    BadSignature { issuer: String },
    #[error("issuer key is not usable for this signature: {0}")]
    BadIssuerKey(String),
    #[error("certificate chain: {0}")]
    Chain(String),
}

/// Signature algorithms accepted on certificates and CRLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigAlg {
    RsaPssSha384,
    EcdsaSha384,
    /// ECDSA P-256 with SHA-256 (Intel's PCK and TCB-signing chains).
    EcdsaSha256,
    /// RSASSA-PKCS1-v1_5 with SHA-256 (TPM EK/AK chains).
    RsaPkcs1Sha256,
}

/// A parsed certificate, holding its DER and the exact signed bytes.
#[derive(Debug, Clone)]
pub struct Cert {
    pub der: Vec<u8>,
    tbs: Vec<u8>,
    sig_alg: Result<SigAlg, String>,
    signature: Vec<u8>,
    pub parsed: Certificate,
    pub subject: String,
    pub issuer: String,
    pub not_before: UnixTime,
    pub not_after: UnixTime,
}

fn malformed(e: impl std::fmt::Display) -> CertError {
    CertError::Malformed(e.to_string())
}

/// Slices `SEQUENCE { tbs, algorithm, signature }` into its raw TBS TLV.
fn raw_tbs(der: &[u8]) -> Result<Vec<u8>, CertError> {
    let mut r = SliceReader::new(der).map_err(malformed)?;
    let tbs = r
        .sequence(|inner| {
            let tbs = inner.tlv_bytes()?.to_vec();
            // Skip the rest; the full structure is validated by x509-cert.
            inner.read_slice(inner.remaining_len())?;
            Ok::<_, der::Error>(tbs)
        })
        .map_err(malformed)?;
    r.finish().map_err(malformed)?;
    Ok(tbs)
}

fn classify_alg(alg: &spki_alg::AlgorithmIdentifierOwned) -> Result<SigAlg, String> {
    let oid = alg.oid.to_string();
    match oid.as_str() {
        OID_RSASSA_PSS => {
            let params = alg
                .parameters
                .as_ref()
                .and_then(|p| p.to_der().ok())
                .unwrap_or_default();
            // Accept AMD's exact encoding, or the same without the default
            // trailer field. Anything else (another hash, another salt) is
            // refused rather than interpreted.
            let mut short = PSS_SHA384_PARAMS[..54].to_vec();
            short[1] = 0x34;
            if params == PSS_SHA384_PARAMS || params == short {
                Ok(SigAlg::RsaPssSha384)
            } else {
                Err(format!(
                    "RSASSA-PSS with parameters {}",
                    hex::encode(params)
                ))
            }
        }
        OID_ECDSA_SHA384 if alg.parameters.is_none() => Ok(SigAlg::EcdsaSha384),
        OID_ECDSA_SHA256 if alg.parameters.is_none() => Ok(SigAlg::EcdsaSha256),
        // Parameters NULL, or absent (both seen in the wild).
        OID_SHA256_WITH_RSA
            if alg
                .parameters
                .as_ref()
                .is_none_or(|p| p.to_der().ok().as_deref() == Some(&[0x05, 0x00][..])) =>
        {
            Ok(SigAlg::RsaPkcs1Sha256)
        }
        _ => Err(oid),
    }
}

mod spki_alg {
    pub use x509_cert::spki::AlgorithmIdentifierOwned;
}

impl Cert {
    /// Parses a DER certificate.
    pub fn parse(der: &[u8]) -> Result<Self, CertError> {
        let parsed = Certificate::from_der(der).map_err(malformed)?;
        let tbs = raw_tbs(der)?;
        let outer = parsed.signature_algorithm();
        if outer != parsed.tbs_certificate().signature() {
            return Err(CertError::AlgorithmMismatch);
        }
        let sig_alg = classify_alg(outer);
        let signature = parsed
            .signature()
            .as_bytes()
            .ok_or_else(|| malformed("signature BIT STRING has unused bits"))?
            .to_vec();
        let tbsc = parsed.tbs_certificate();
        let v = tbsc.validity();
        let secs = |t: &x509_cert::time::Time| {
            i64::try_from(t.to_unix_duration().as_secs()).unwrap_or(i64::MAX)
        };
        Ok(Cert {
            der: der.to_vec(),
            tbs,
            sig_alg,
            signature,
            subject: tbsc.subject().to_string(),
            issuer: tbsc.issuer().to_string(),
            not_before: UnixTime(secs(&v.not_before)),
            not_after: UnixTime(secs(&v.not_after)),
            parsed,
        })
    }

    /// True when subject and issuer names are equal.
    pub fn is_self_issued(&self) -> bool {
        self.parsed.tbs_certificate().subject() == self.parsed.tbs_certificate().issuer()
    }

    /// The value of the common name (CN) of the subject, if any.
    pub fn subject_cn(&self) -> Option<String> {
        common_name(self.parsed.tbs_certificate().subject())
    }

    /// The organisation (O) of the subject, if any.
    pub fn subject_org(&self) -> Option<String> {
        attr(self.parsed.tbs_certificate().subject(), "2.5.4.10")
    }

    /// The organisation (O) of the issuer, if any.
    pub fn issuer_org(&self) -> Option<String> {
        attr(self.parsed.tbs_certificate().issuer(), "2.5.4.10")
    }

    /// The raw value (inside the OCTET STRING) of an extension.
    pub fn extension(&self, oid: &str) -> Option<&[u8]> {
        let target = der::asn1::ObjectIdentifier::new(oid).ok()?;
        self.parsed
            .tbs_certificate()
            .extensions()?
            .iter()
            .find(|e| e.extn_id == target)
            .map(|e| e.extn_value.as_bytes())
    }

    /// The serial number's bytes.
    pub fn serial(&self) -> &[u8] {
        self.parsed.tbs_certificate().serial_number().as_bytes()
    }

    /// The subject public key as an uncompressed P-384 point.
    pub fn p384_public_key(&self) -> Option<&[u8]> {
        self.ec_public_key(OID_SECP384R1)
    }

    /// The subject public key as an uncompressed P-256 point.
    pub fn p256_public_key(&self) -> Option<&[u8]> {
        self.ec_public_key(OID_P256)
    }

    /// The subject public key when it is an EC key on `curve` (dotted OID).
    fn ec_public_key(&self, curve: &str) -> Option<&[u8]> {
        let spki = self.parsed.tbs_certificate().subject_public_key_info();
        let ec = der::asn1::ObjectIdentifier::new(OID_EC_PUBLIC_KEY).ok()?;
        let want = der::asn1::ObjectIdentifier::new(curve).ok()?;
        if spki.algorithm.oid != ec {
            return None;
        }
        let got = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.decode_as::<der::asn1::ObjectIdentifier>().ok())?;
        (got == want).then_some(())?;
        spki.subject_public_key.as_bytes()
    }

    /// The subject public key as a PKCS#1 RSA key (SPKI algorithm
    /// rsaEncryption or id-RSASSA-PSS).
    pub fn rsa_public_key(&self) -> Option<&[u8]> {
        let spki = self.parsed.tbs_certificate().subject_public_key_info();
        let oid = spki.algorithm.oid.to_string();
        if oid != OID_RSA_ENCRYPTION && oid != OID_RSASSA_PSS {
            return None;
        }
        spki.subject_public_key.as_bytes()
    }

    /// Whether the certificate is valid at `t` (inclusive bounds).
    pub fn valid_at(&self, t: UnixTime) -> bool {
        self.not_before <= t && t <= self.not_after
    }

    /// Checks this certificate's signature with `issuer`'s public key.
    pub fn verify_signed_by(
        &self,
        issuer: &Cert,
        backend: &dyn CryptoBackend,
    ) -> Result<(), CertError> {
        verify_sig(
            self.sig_alg.as_ref(),
            &self.tbs,
            &self.signature,
            issuer,
            backend,
        )
    }
}

/// Checks a certificate chain: `chain[0]` is the leaf, each certificate is
/// signed by the next one or by one of `roots`, every certificate on the way
/// (root included) is valid at `at`, and the walk ends at a root. A root
/// that the chain carries itself is only accepted as a root when it is one
/// of `roots` (byte for byte or by subject and signature). Returns the leaf.
pub fn verify_chain<'c>(
    chain: &'c [Cert],
    roots: &[Cert],
    at: UnixTime,
    backend: &dyn CryptoBackend,
) -> Result<&'c Cert, CertError> {
    let fail = |m: String| CertError::Chain(m);
    let leaf = chain.first().ok_or_else(|| fail("no certificate".into()))?;
    let mut current = leaf;
    let mut rest = chain.get(1..).unwrap_or_default().iter();
    // At most chain.len() + 1 steps: each certificate once, then a root.
    for _ in 0..=chain.len() {
        if !current.valid_at(at) {
            return Err(fail(format!(
                "{} is not valid at the verification time (valid {} to {})",
                current.subject, current.not_before, current.not_after
            )));
        }
        if let Some(root) = roots
            .iter()
            .find(|r| r.subject == current.issuer && current.verify_signed_by(r, backend).is_ok())
        {
            if !root.valid_at(at) {
                return Err(fail(format!("root {} is not valid", root.subject)));
            }
            return Ok(leaf);
        }
        let next = rest.next().ok_or_else(|| {
            fail(format!(
                "{} is not issued by a trusted root",
                current.issuer
            ))
        })?;
        current
            .verify_signed_by(next, backend)
            .map_err(|e| fail(e.to_string()))?;
        current = next;
    }
    Err(fail("chain too long".into()))
}

/// Checks `signature` over `tbs` with `signer`'s key under the algorithm
/// `alg` (one of the algorithms accepted on certificates), for signed
/// structures other than certificates and CRLs (OCSP responses).
pub fn verify_signature(
    alg: &x509_cert::spki::AlgorithmIdentifierOwned,
    tbs: &[u8],
    signature: &[u8],
    signer: &Cert,
    backend: &dyn CryptoBackend,
) -> Result<(), CertError> {
    verify_sig(classify_alg(alg).as_ref(), tbs, signature, signer, backend)
}

fn verify_sig(
    alg: Result<&SigAlg, &String>,
    tbs: &[u8],
    signature: &[u8],
    issuer: &Cert,
    backend: &dyn CryptoBackend,
) -> Result<(), CertError> {
    let bad = || CertError::BadSignature {
        issuer: issuer.subject.clone(),
    };
    match alg {
        Ok(SigAlg::RsaPssSha384) => {
            let key = issuer
                .rsa_public_key()
                .ok_or_else(|| CertError::BadIssuerKey("issuer key is not RSA".into()))?;
            backend
                .verify_rsa(key, RsaScheme::PssSha384, tbs, signature)
                .map_err(|_| bad())
        }
        Ok(SigAlg::EcdsaSha384) => {
            let key = issuer
                .p384_public_key()
                .ok_or_else(|| CertError::BadIssuerKey("issuer key is not P-384".into()))?;
            backend
                .p384_key(key)
                .map_err(|e| CertError::BadIssuerKey(e.to_string()))?
                .verify_der(tbs, signature)
                .map_err(|_| bad())
        }
        Ok(SigAlg::EcdsaSha256) => {
            let key = issuer
                .p256_public_key()
                .ok_or_else(|| CertError::BadIssuerKey("issuer key is not P-256".into()))?;
            backend
                .verify_p256_sha256(key, tbs, signature, false)
                .map_err(|_| bad())
        }
        Ok(SigAlg::RsaPkcs1Sha256) => {
            let key = issuer
                .rsa_public_key()
                .ok_or_else(|| CertError::BadIssuerKey("issuer key is not RSA".into()))?;
            backend
                .verify_rsa(key, RsaScheme::Pkcs1Sha256, tbs, signature)
                .map_err(|_| bad())
        }
        Err(oid) => Err(CertError::UnsupportedAlgorithm(oid.clone())),
    }
}

fn attr(name: &x509_cert::name::Name, oid: &str) -> Option<String> {
    for rdn in name.iter() {
        {
            let atv = rdn;
            if atv.oid.to_string() == oid {
                if let Ok(s) = atv.value.decode_as::<der::asn1::Utf8StringRef<'_>>() {
                    return Some(s.as_str().to_string());
                }
                if let Ok(s) = atv.value.decode_as::<der::asn1::PrintableStringRef<'_>>() {
                    return Some(s.as_str().to_string());
                }
                if let Ok(s) = atv.value.decode_as::<der::asn1::Ia5StringRef<'_>>() {
                    return Some(s.as_str().to_string());
                }
            }
        }
    }
    None
}

fn common_name(name: &x509_cert::name::Name) -> Option<String> {
    attr(name, "2.5.4.3")
}

/// A parsed CRL, holding the exact signed bytes.
#[derive(Debug, Clone)]
pub struct Crl {
    pub der: Vec<u8>,
    tbs: Vec<u8>,
    sig_alg: Result<SigAlg, String>,
    signature: Vec<u8>,
    pub issuer: String,
    pub this_update: UnixTime,
    pub next_update: Option<UnixTime>,
    /// Revoked serial numbers (big-endian bytes as encoded).
    pub revoked: Vec<Vec<u8>>,
}

impl Crl {
    /// Parses a DER CRL.
    pub fn parse(der: &[u8]) -> Result<Self, CertError> {
        let parsed = <CertificateList>::from_der(der).map_err(malformed)?;
        let tbs = raw_tbs(der)?;
        if parsed.signature_algorithm != parsed.tbs_cert_list.signature {
            return Err(CertError::AlgorithmMismatch);
        }
        let sig_alg = classify_alg(&parsed.signature_algorithm);
        let signature = parsed
            .signature
            .as_bytes()
            .ok_or_else(|| malformed("signature BIT STRING has unused bits"))?
            .to_vec();
        let secs = |t: &x509_cert::time::Time| {
            UnixTime(i64::try_from(t.to_unix_duration().as_secs()).unwrap_or(i64::MAX))
        };
        let list = &parsed.tbs_cert_list;
        Ok(Crl {
            der: der.to_vec(),
            tbs,
            sig_alg,
            signature,
            issuer: list.issuer.to_string(),
            this_update: secs(&list.this_update),
            next_update: list.next_update.as_ref().map(secs),
            revoked: list
                .revoked_certificates
                .iter()
                .flatten()
                .map(|r| r.serial_number.as_bytes().to_vec())
                .collect(),
        })
    }

    /// Checks the CRL's signature with `issuer`'s key.
    pub fn verify_signed_by(
        &self,
        issuer: &Cert,
        backend: &dyn CryptoBackend,
    ) -> Result<(), CertError> {
        verify_sig(
            self.sig_alg.as_ref(),
            &self.tbs,
            &self.signature,
            issuer,
            backend,
        )
    }
}
