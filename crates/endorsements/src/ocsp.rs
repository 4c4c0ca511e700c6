//! OCSP (RFC 6960) wire types for device certificate chains (NVIDIA's OCSP
//! service answers for GPU certificates), and the client that asks a
//! responder (feature `fetch`). Checking a response — its signature, the
//! responder's authority, the certificate it is about, its times and nonce —
//! is the verifier's job (`veil_verifier::ocsp`); this module only encodes
//! requests and decodes responses, with `der`'s strict DER rules.

use der::asn1::{GeneralizedTime, Null, ObjectIdentifier, OctetString};
use der::{Decode, Encode, Enumerated, Sequence};
use x509_cert::Certificate;
use x509_cert::ext::Extensions;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::AlgorithmIdentifierOwned;

/// id-pkix-ocsp-basic.
pub const OID_OCSP_BASIC: &str = "1.3.6.1.5.5.7.48.1.1";
/// id-pkix-ocsp-nonce.
pub const OID_OCSP_NONCE: &str = "1.3.6.1.5.5.7.48.1.2";
/// id-kp-OCSPSigning.
pub const OID_KP_OCSP_SIGNING: &str = "1.3.6.1.5.5.7.3.9";
/// SHA-384, the CertID hash NVIDIA's responder uses.
pub const OID_SHA384: &str = "2.16.840.1.101.3.4.2.2";

/// `CertID`.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct CertId {
    pub hash_algorithm: AlgorithmIdentifierOwned,
    pub issuer_name_hash: OctetString,
    pub issuer_key_hash: OctetString,
    pub serial_number: SerialNumber,
}

/// `Request`.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct Request {
    pub req_cert: CertId,
}

/// `TBSRequest` (version v1 by default; no requestor name).
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct TbsRequest {
    pub request_list: Vec<Request>,
    #[asn1(context_specific = "2", tag_mode = "EXPLICIT", optional = "true")]
    pub request_extensions: Option<Extensions>,
}

/// `OCSPRequest` (unsigned).
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct OcspRequest {
    pub tbs_request: TbsRequest,
}

/// `OCSPResponseStatus`.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Enumerated)]
#[repr(u32)]
pub enum ResponseStatus {
    Successful = 0,
    MalformedRequest = 1,
    InternalError = 2,
    TryLater = 3,
    SigRequired = 5,
    Unauthorized = 6,
}

/// `ResponseBytes`.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct ResponseBytes {
    pub response_type: ObjectIdentifier,
    pub response: OctetString,
}

/// `OCSPResponse`.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct OcspResponse {
    pub response_status: ResponseStatus,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    pub response_bytes: Option<ResponseBytes>,
}

/// `RevokedInfo`.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct RevokedInfo {
    pub revocation_time: GeneralizedTime,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    pub revocation_reason: Option<der::asn1::Any>,
}

/// `CertStatus`.
#[derive(Clone, Debug, Eq, PartialEq, der::Choice)]
pub enum CertStatus {
    #[asn1(context_specific = "0", tag_mode = "IMPLICIT")]
    Good(Null),
    #[asn1(context_specific = "1", tag_mode = "IMPLICIT", constructed = "true")]
    Revoked(RevokedInfo),
    #[asn1(context_specific = "2", tag_mode = "IMPLICIT")]
    Unknown(Null),
}

/// `SingleResponse`.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct SingleResponse {
    pub cert_id: CertId,
    pub cert_status: CertStatus,
    pub this_update: GeneralizedTime,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    pub next_update: Option<GeneralizedTime>,
    #[asn1(context_specific = "1", tag_mode = "EXPLICIT", optional = "true")]
    pub single_extensions: Option<Extensions>,
}

/// `ResponseData`. The responder ID (a CHOICE of a name or a key hash) is
/// kept as received: the verifier identifies the signer by signature.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct ResponseData {
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    pub version: Option<u8>,
    pub responder_id: der::asn1::Any,
    pub produced_at: GeneralizedTime,
    pub responses: Vec<SingleResponse>,
    #[asn1(context_specific = "1", tag_mode = "EXPLICIT", optional = "true")]
    pub response_extensions: Option<Extensions>,
}

/// `BasicOCSPResponse`.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct BasicOcspResponse {
    pub tbs_response_data: ResponseData,
    pub signature_algorithm: AlgorithmIdentifierOwned,
    pub signature: der::asn1::BitString,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    pub certs: Option<Vec<Certificate>>,
}

/// Why a request could not be built or a response decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OcspError {
    #[error("OCSP DER: {0}")]
    Der(String),
    #[error("OCSP responder answered {0:?}")]
    Status(ResponseStatus),
    #[error("OCSP response has no basic response")]
    NotBasic,
    #[error("OCSP responder unreachable: {0}")]
    Unreachable(String),
}

fn der_err(e: der::Error) -> OcspError {
    OcspError::Der(e.to_string())
}

/// The DER of an unsigned request for `ids`, with `nonce` when given.
pub fn encode_request(ids: &[CertId], nonce: Option<&[u8]>) -> Result<Vec<u8>, OcspError> {
    let request_extensions = match nonce {
        Some(n) => Some(vec![x509_cert::ext::Extension {
            extn_id: ObjectIdentifier::new(OID_OCSP_NONCE)
                .map_err(|e| OcspError::Der(e.to_string()))?,
            critical: false,
            // RFC 8954: the nonce is an OCTET STRING inside the value.
            extn_value: OctetString::new(
                OctetString::new(n)
                    .map_err(der_err)?
                    .to_der()
                    .map_err(der_err)?,
            )
            .map_err(der_err)?,
        }]),
        None => None,
    };
    OcspRequest {
        tbs_request: TbsRequest {
            request_list: ids
                .iter()
                .map(|id| Request {
                    req_cert: id.clone(),
                })
                .collect(),
            request_extensions,
        },
    }
    .to_der()
    .map_err(der_err)
}

/// Decodes a response down to its basic response (successful status
/// required). The signed `tbsResponseData` bytes are re-encoded by `der`,
/// which only accepts DER, so they equal the bytes received.
pub fn decode_response(der: &[u8]) -> Result<(BasicOcspResponse, Vec<u8>), OcspError> {
    let outer = OcspResponse::from_der(der).map_err(der_err)?;
    if outer.response_status != ResponseStatus::Successful {
        return Err(OcspError::Status(outer.response_status));
    }
    let bytes = outer.response_bytes.ok_or(OcspError::NotBasic)?;
    if bytes.response_type.to_string() != OID_OCSP_BASIC {
        return Err(OcspError::NotBasic);
    }
    let basic = BasicOcspResponse::from_der(bytes.response.as_bytes()).map_err(der_err)?;
    let tbs = basic.tbs_response_data.to_der().map_err(der_err)?;
    Ok((basic, tbs))
}

/// The nonce of a response (the OCTET STRING inside the extension), if any.
pub fn response_nonce(data: &ResponseData) -> Option<Vec<u8>> {
    let oid = ObjectIdentifier::new(OID_OCSP_NONCE).ok()?;
    let ext = data
        .response_extensions
        .as_ref()?
        .iter()
        .find(|e| e.extn_id == oid)?;
    let v = ext.extn_value.as_bytes();
    // Accept the RFC 8954 wrapping, or a bare value (older responders).
    Some(match OctetString::from_der(v) {
        Ok(inner) => inner.as_bytes().to_vec(),
        Err(_) => v.to_vec(),
    })
}

/// A client for one OCSP responder (HTTP POST, RFC 6960 appendix A).
#[cfg(feature = "fetch")]
#[derive(Debug, Clone)]
pub struct OcspClient {
    url: String,
    http: reqwest::Client,
}

#[cfg(feature = "fetch")]
impl OcspClient {
    /// A client for the responder at `url`; each exchange gives up after
    /// `timeout`.
    pub fn new(url: &str, timeout: std::time::Duration) -> Result<Self, OcspError> {
        Ok(OcspClient {
            url: url.to_string(),
            http: reqwest::Client::builder()
                .timeout(timeout)
                .build()
                .map_err(|e| OcspError::Unreachable(e.to_string()))?,
        })
    }

    /// POSTs `request` (DER) and returns the response DER.
    pub async fn fetch(&self, request: Vec<u8>) -> Result<Vec<u8>, OcspError> {
        let resp = self
            .http
            .post(&self.url)
            .header("content-type", "application/ocsp-request")
            .header("accept", "application/ocsp-response")
            .body(request)
            .send()
            .await
            .map_err(|e| OcspError::Unreachable(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(OcspError::Unreachable(format!("HTTP {}", resp.status())));
        }
        let body = resp
            .bytes()
            .await
            .map_err(|e| OcspError::Unreachable(e.to_string()))?;
        Ok(body.to_vec())
    }
}
