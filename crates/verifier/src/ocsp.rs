//! OCSP (RFC 6960) checks of device certificates: the request's CertID
//! (SHA-384 of the issuer's name and key, the serial number), and a
//! response accepted only when its signature verifies with the issuer's key
//! or with a responder certificate that the issuer signed for OCSP signing,
//! the answer is about exactly this certificate, the verification time lies
//! between thisUpdate and nextUpdate, and an echoed nonce is the one sent.

use der::Encode;
use der::asn1::{ObjectIdentifier, OctetString};
use veil_endorsements::ocsp::{
    CertId, CertStatus, OID_KP_OCSP_SIGNING, OID_SHA384, decode_response, response_nonce,
};
use x509_cert::spki::AlgorithmIdentifierOwned;

use crate::UnixTime;
use crate::crypto::CryptoBackend;
use crate::x509::{Cert, verify_signature};

/// Why a response was not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OcspError {
    #[error("{0}")]
    Decode(#[from] veil_endorsements::ocsp::OcspError),
    #[error("OCSP: {0}")]
    Der(String),
    #[error("the OCSP response is not signed by the issuer or an authorised responder")]
    BadSignature,
    #[error("the OCSP response says nothing about this certificate")]
    NoMatchingResponse,
    #[error("the OCSP response is not current at the verification time ({0})")]
    NotCurrent(String),
    #[error("the OCSP response's nonce is not the one sent")]
    NonceMismatch,
}

/// What the responder said about a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revocation {
    Good,
    Revoked { at: UnixTime },
    Unknown,
}

impl Revocation {
    /// `good`, `revoked` or `unknown`.
    pub fn name(&self) -> &'static str {
        match self {
            Revocation::Good => "good",
            Revocation::Revoked { .. } => "revoked",
            Revocation::Unknown => "unknown",
        }
    }
}

fn der_err(e: impl std::fmt::Display) -> OcspError {
    OcspError::Der(e.to_string())
}

/// The CertID of `cert` issued by `issuer` (SHA-384, parameters absent).
pub fn cert_id(
    cert: &Cert,
    issuer: &Cert,
    backend: &dyn CryptoBackend,
) -> Result<CertId, OcspError> {
    let name = issuer
        .parsed
        .tbs_certificate()
        .subject()
        .to_der()
        .map_err(der_err)?;
    let key = issuer
        .parsed
        .tbs_certificate()
        .subject_public_key_info()
        .subject_public_key
        .as_bytes()
        .ok_or_else(|| der_err("issuer key BIT STRING has unused bits"))?;
    Ok(CertId {
        hash_algorithm: AlgorithmIdentifierOwned {
            oid: ObjectIdentifier::new(OID_SHA384).map_err(der_err)?,
            parameters: None,
        },
        issuer_name_hash: OctetString::new(backend.sha384(&name).to_vec()).map_err(der_err)?,
        issuer_key_hash: OctetString::new(backend.sha384(key).to_vec()).map_err(der_err)?,
        serial_number: cert.parsed.tbs_certificate().serial_number().clone(),
    })
}

fn is_ocsp_signer(cert: &Cert) -> bool {
    use der::Decode;
    let Some(ext) = cert.extension("2.5.29.37") else {
        return false;
    };
    let Ok(eku) = x509_cert::ext::pkix::ExtendedKeyUsage::from_der(ext) else {
        return false;
    };
    let Ok(want) = ObjectIdentifier::new(OID_KP_OCSP_SIGNING) else {
        return false;
    };
    eku.0.contains(&want)
}

fn unix(t: &der::asn1::GeneralizedTime) -> UnixTime {
    UnixTime(i64::try_from(t.to_unix_duration().as_secs()).unwrap_or(i64::MAX))
}

/// Checks a response (DER) about `cert` (issued by `issuer`) at `at`;
/// `nonce` is the nonce sent, if any.
pub fn check_response(
    response: &[u8],
    cert: &Cert,
    issuer: &Cert,
    nonce: Option<&[u8]>,
    at: UnixTime,
    backend: &dyn CryptoBackend,
) -> Result<Revocation, OcspError> {
    let (basic, tbs) = decode_response(response)?;
    let signature = basic.signature.as_bytes().ok_or(OcspError::BadSignature)?;
    let signed_by = |signer: &Cert| {
        verify_signature(&basic.signature_algorithm, &tbs, signature, signer, backend).is_ok()
    };
    let authorised = signed_by(issuer)
        || basic.certs.iter().flatten().any(|c| {
            let Ok(der) = c.to_der() else { return false };
            let Ok(responder) = Cert::parse(&der) else {
                return false;
            };
            responder.verify_signed_by(issuer, backend).is_ok()
                && responder.valid_at(at)
                && is_ocsp_signer(&responder)
                && signed_by(&responder)
        });
    if !authorised {
        return Err(OcspError::BadSignature);
    }
    let data = &basic.tbs_response_data;
    if let Some(sent) = nonce
        && let Some(echoed) = response_nonce(data)
        && echoed != sent
    {
        return Err(OcspError::NonceMismatch);
    }
    let id = cert_id(cert, issuer, backend)?;
    let single = data
        .responses
        .iter()
        .find(|r| r.cert_id == id)
        .ok_or(OcspError::NoMatchingResponse)?;
    let this_update = unix(&single.this_update);
    if at < this_update {
        return Err(OcspError::NotCurrent(format!("thisUpdate {this_update}")));
    }
    if let Some(next) = &single.next_update
        && unix(next) < at
    {
        return Err(OcspError::NotCurrent(format!("nextUpdate {}", unix(next))));
    }
    Ok(match &single.cert_status {
        CertStatus::Good(_) => Revocation::Good,
        CertStatus::Revoked(info) => Revocation::Revoked {
            at: unix(&info.revocation_time),
        },
        CertStatus::Unknown(_) => Revocation::Unknown,
    })
}
