//! Intel DCAP quotes: SGX quote v3 and TDX quotes v4 (TDX 1.0 body) and v5
//! (SGX, TDX 1.0 or TDX 1.5 body, with body type and size). Parse only: the
//! verifier checks the signatures over the bytes kept here as received.
//!
//! ```text
//! header (48)   version u16 | att_key_type u16 (2 = ECDSA P-256) | tee_type u32 (0 SGX, 0x81 TDX)
//!               qe_svn u16 | pce_svn u16 | qe_vendor_id [16] | user_data [20]
//! v5 only       body_type u16 (1 SGX, 2 TDX 1.0, 3 TDX 1.5) | body_size u32
//! body          SGX report (384) | TD report 1.0 (584) | TD report 1.5 (648)
//! sig_len u32, then signature data:
//!   quote signature [64] (r‖s over header‖body) | attestation key [64] (x‖y)
//!   v3:    QE report [384] | QE report signature [64] | auth size u16 | auth data
//!          | cert type u16 (5) | cert size u32 | PCK chain (PEM)
//!   v4/v5: cert type u16 (6) | cert size u32 | { QE report [384] | QE report signature [64]
//!          | auth size u16 | auth data | cert type u16 (5) | cert size u32 | PCK chain (PEM) }
//! ```
//! Lengths are exact. Quotes generated through the TDX quoting service are
//! delivered in a buffer sized for v5, so a v4 quote may be followed by zero
//! bytes: those are accepted and counted ([`Quote::trailing_zeros`]); any
//! non-zero trailing byte is refused. Reserved fields of SGX reports must be zero.

use crate::ParseError;
use crate::reader::Reader;

/// Intel's QE vendor id.
pub const INTEL_QE_VENDOR_ID: [u8; 16] = [
    0x93, 0x9a, 0x72, 0x33, 0xf7, 0x9c, 0x4c, 0xa9, 0x94, 0x0a, 0x0d, 0xb3, 0x95, 0x7f, 0x06, 0x07,
];
const SGX_REPORT_LEN: usize = 384;
const TD10_LEN: usize = 584;
const TD15_LEN: usize = 648;

/// SGX or TDX.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum TeeType {
    Sgx,
    Tdx,
}

/// The quote header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub version: u16,
    pub att_key_type: u16,
    pub tee_type: TeeType,
    pub qe_svn: u16,
    pub pce_svn: u16,
    pub qe_vendor_id: [u8; 16],
    pub user_data: [u8; 20],
}

/// An SGX enclave report body (also the QE report).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnclaveReport {
    pub cpu_svn: [u8; 16],
    pub misc_select: u32,
    pub attributes: [u8; 16],
    pub mr_enclave: [u8; 32],
    pub mr_signer: [u8; 32],
    pub isv_prod_id: u16,
    pub isv_svn: u16,
    pub report_data: [u8; 64],
}

impl EnclaveReport {
    /// ATTRIBUTES.DEBUG (bit 1 of the flags).
    pub fn debug(&self) -> bool {
        self.attributes.first().is_some_and(|b| b & 0x02 != 0)
    }

    fn parse(r: &mut Reader<'_>) -> Result<Self, ParseError> {
        let cpu_svn = r.array("report.cpu_svn")?;
        let misc_select = r.u32_le("report.misc_select")?;
        r.zeros("report.reserved1", 28)?;
        let attributes = r.array("report.attributes")?;
        let mr_enclave = r.array("report.mr_enclave")?;
        r.zeros("report.reserved2", 32)?;
        let mr_signer = r.array("report.mr_signer")?;
        r.zeros("report.reserved3", 96)?;
        let isv_prod_id = r.u16_le("report.isv_prod_id")?;
        let isv_svn = r.u16_le("report.isv_svn")?;
        r.zeros("report.reserved4", 60)?;
        let report_data = r.array("report.report_data")?;
        Ok(EnclaveReport {
            cpu_svn,
            misc_select,
            attributes,
            mr_enclave,
            mr_signer,
            isv_prod_id,
            isv_svn,
            report_data,
        })
    }
}

/// A TD report body (TDX 1.0), plus the TDX 1.5 fields when present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TdReport {
    pub tee_tcb_svn: [u8; 16],
    pub mr_seam: [u8; 48],
    pub mr_signer_seam: [u8; 48],
    pub seam_attributes: [u8; 8],
    pub td_attributes: [u8; 8],
    pub xfam: [u8; 8],
    pub mr_td: [u8; 48],
    pub mr_config_id: [u8; 48],
    pub mr_owner: [u8; 48],
    pub mr_owner_config: [u8; 48],
    pub rtmr: [[u8; 48]; 4],
    pub report_data: [u8; 64],
    /// TDX 1.5 only.
    pub tee_tcb_svn2: Option<[u8; 16]>,
    /// TDX 1.5 only.
    pub mr_servicetd: Option<[u8; 48]>,
}

impl TdReport {
    /// TD_ATTRIBUTES.DEBUG (bit 0).
    pub fn debug(&self) -> bool {
        self.td_attributes.first().is_some_and(|b| b & 0x01 != 0)
    }

    /// TD_ATTRIBUTES.SEPT_VE_DISABLE (bit 28).
    pub fn sept_ve_disable(&self) -> bool {
        u64::from_le_bytes(self.td_attributes) & (1 << 28) != 0
    }

    fn parse(r: &mut Reader<'_>, v15: bool) -> Result<Self, ParseError> {
        let mut rep = TdReport {
            tee_tcb_svn: r.array("td.tee_tcb_svn")?,
            mr_seam: r.array("td.mr_seam")?,
            mr_signer_seam: r.array("td.mr_signer_seam")?,
            seam_attributes: r.array("td.seam_attributes")?,
            td_attributes: r.array("td.td_attributes")?,
            xfam: r.array("td.xfam")?,
            mr_td: r.array("td.mr_td")?,
            mr_config_id: r.array("td.mr_config_id")?,
            mr_owner: r.array("td.mr_owner")?,
            mr_owner_config: r.array("td.mr_owner_config")?,
            rtmr: [
                r.array("td.rtmr0")?,
                r.array("td.rtmr1")?,
                r.array("td.rtmr2")?,
                r.array("td.rtmr3")?,
            ],
            report_data: r.array("td.report_data")?,
            tee_tcb_svn2: None,
            mr_servicetd: None,
        };
        if v15 {
            rep.tee_tcb_svn2 = Some(r.array("td.tee_tcb_svn2")?);
            rep.mr_servicetd = Some(r.array("td.mr_servicetd")?);
        }
        Ok(rep)
    }
}

/// The quote body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    Sgx(EnclaveReport),
    Td10(TdReport),
    Td15(TdReport),
}

/// The QE report and the PCK chain that certifies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QeCertification {
    pub qe_report: EnclaveReport,
    /// The 384 QE-report bytes as received (signed by the PCK key).
    pub qe_report_raw: Vec<u8>,
    pub qe_report_signature: [u8; 64],
    pub qe_auth_data: Vec<u8>,
    /// PCK leaf, intermediate CA and root, PEM as received.
    pub pck_chain_pem: Vec<u8>,
}

/// A parsed quote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    pub header: Header,
    pub body: Body,
    /// ECDSA P-256 r‖s over header‖body.
    pub signature: [u8; 64],
    /// The attestation key, x‖y.
    pub attestation_key: [u8; 64],
    pub certification: QeCertification,
    raw: Vec<u8>,
    signed_len: usize,
    trailing_zeros: usize,
}

impl Quote {
    /// The signed range (header and body) as received.
    pub fn signed_bytes(&self) -> &[u8] {
        self.raw.get(..self.signed_len).unwrap_or(&[])
    }

    /// The quote bytes as received (without trailing padding).
    pub fn as_bytes(&self) -> &[u8] {
        self.raw
            .get(..self.raw.len().saturating_sub(self.trailing_zeros))
            .unwrap_or(&[])
    }

    /// Zero bytes that followed the quote in its buffer.
    pub fn trailing_zeros(&self) -> usize {
        self.trailing_zeros
    }

    /// The report data of the body.
    pub fn report_data(&self) -> &[u8; 64] {
        match &self.body {
            Body::Sgx(r) => &r.report_data,
            Body::Td10(t) | Body::Td15(t) => &t.report_data,
        }
    }

    /// Parses a quote strictly.
    pub fn parse(bytes: &[u8]) -> Result<Self, ParseError> {
        let mut r = Reader::new(bytes);
        let version = r.u16_le("header.version")?;
        if !matches!(version, 3..=5) {
            return Err(ParseError::UnsupportedVersion {
                what: "DCAP quote",
                version: u32::from(version),
            });
        }
        let att_key_type = r.u16_le("header.att_key_type")?;
        if att_key_type != 2 {
            return Err(ParseError::UnsupportedSignatureAlgorithm(u32::from(
                att_key_type,
            )));
        }
        let tee_type = match (version, r.u32_le("header.tee_type")?) {
            (_, 0) => TeeType::Sgx,
            (4 | 5, 0x81) => TeeType::Tdx,
            (_, other) => {
                return Err(ParseError::InvalidField {
                    field: "header.tee_type",
                    reason: format!("{other:#x} in a v{version} quote"),
                });
            }
        };
        let header = Header {
            version,
            att_key_type,
            tee_type,
            qe_svn: r.u16_le("header.qe_svn")?,
            pce_svn: r.u16_le("header.pce_svn")?,
            qe_vendor_id: r.array("header.qe_vendor_id")?,
            user_data: r.array("header.user_data")?,
        };
        let body = if version == 5 {
            let body_type = r.u16_le("body_type")?;
            let body_size = r.u32_le("body_size")? as usize;
            let (expected, tee) = match body_type {
                1 => (SGX_REPORT_LEN, TeeType::Sgx),
                2 => (TD10_LEN, TeeType::Tdx),
                3 => (TD15_LEN, TeeType::Tdx),
                other => {
                    return Err(ParseError::InvalidField {
                        field: "body_type",
                        reason: format!("unknown body type {other}"),
                    });
                }
            };
            if body_size != expected || tee != tee_type {
                return Err(ParseError::InvalidField {
                    field: "body_size",
                    reason: format!(
                        "body type {body_type} is {expected} bytes of {tee:?}, got {body_size} bytes in a {tee_type:?} quote"
                    ),
                });
            }
            match body_type {
                1 => Body::Sgx(EnclaveReport::parse(&mut r)?),
                2 => Body::Td10(TdReport::parse(&mut r, false)?),
                _ => Body::Td15(TdReport::parse(&mut r, true)?),
            }
        } else if tee_type == TeeType::Tdx {
            Body::Td10(TdReport::parse(&mut r, false)?)
        } else {
            Body::Sgx(EnclaveReport::parse(&mut r)?)
        };
        let signed_len = r.offset();
        let sig_len = r.u32_le("signature_data_len")? as usize;
        let sig_data = r.take("signature_data", sig_len)?;
        let rest = r.take("trailing", r.remaining())?;
        if rest.iter().any(|b| *b != 0) {
            return Err(ParseError::TrailingBytes {
                what: "DCAP quote",
                count: rest.len(),
            });
        }
        let mut s = Reader::new(sig_data);
        let signature = s.array("signature")?;
        let attestation_key = s.array("attestation_key")?;
        let certification = if version == 3 {
            parse_qe_certification(&mut s)?
        } else {
            let ty = s.u16_le("cert_data_type")?;
            if ty != 6 {
                return Err(ParseError::InvalidField {
                    field: "cert_data_type",
                    reason: format!("{ty}, expected 6 (QE report certification data)"),
                });
            }
            let size = s.u32_le("cert_data_size")? as usize;
            let inner = s.take("cert_data", size)?;
            let mut q = Reader::new(inner);
            let c = parse_qe_certification(&mut q)?;
            q.finish("QE report certification data")?;
            c
        };
        s.finish("signature data")?;
        Ok(Quote {
            header,
            body,
            signature,
            attestation_key,
            certification,
            raw: bytes.to_vec(),
            signed_len,
            trailing_zeros: rest.len(),
        })
    }
}

fn parse_qe_certification(r: &mut Reader<'_>) -> Result<QeCertification, ParseError> {
    let raw = r.take("qe_report", SGX_REPORT_LEN)?;
    let qe_report = EnclaveReport::parse(&mut Reader::new(raw))?;
    let qe_report_signature = r.array("qe_report_signature")?;
    let auth_len = r.u16_le("qe_auth_data_size")? as usize;
    let qe_auth_data = r.take("qe_auth_data", auth_len)?.to_vec();
    let ty = r.u16_le("pck_cert_type")?;
    if ty != 5 {
        return Err(ParseError::InvalidField {
            field: "pck_cert_type",
            reason: format!("{ty}, expected 5 (PCK certificate chain)"),
        });
    }
    let size = r.u32_le("pck_cert_size")? as usize;
    let pem = r.take("pck_cert_chain", size)?.to_vec();
    Ok(QeCertification {
        qe_report,
        qe_report_raw: raw.to_vec(),
        qe_report_signature,
        qe_auth_data,
        pck_chain_pem: pem,
    })
}

/// Accepts a quote as raw bytes, hex text (optionally `0x`-prefixed), or the
/// CoCo evidence JSON (`{"quote": "<base64>", "cc_eventlog": ...}` for TDX,
/// `{"quote": "<base64>"}` for SGX). Returns the quote and the event log.
pub fn parse_evidence(bytes: &[u8]) -> Result<(Quote, Option<Vec<u8>>), ParseError> {
    use base64::Engine as _;
    let text = std::str::from_utf8(bytes).ok().map(str::trim);
    if let Some(t) = text.filter(|t| t.starts_with('{')) {
        let v: serde_json::Value =
            serde_json::from_str(t).map_err(|e| ParseError::Json(e.to_string()))?;
        let q = v
            .get("quote")
            .unwrap_or(&serde_json::Value::Null)
            .as_str()
            .ok_or_else(|| ParseError::Json("no \"quote\" string".into()))?;
        let quote = base64::engine::general_purpose::STANDARD
            .decode(q)
            .map_err(|e| ParseError::Json(format!("quote: {e}")))?;
        let eventlog = match v.get("cc_eventlog").unwrap_or(&serde_json::Value::Null) {
            serde_json::Value::Null => None,
            serde_json::Value::String(s) => Some(
                base64::engine::general_purpose::STANDARD
                    .decode(s)
                    .map_err(|e| ParseError::Json(format!("cc_eventlog: {e}")))?,
            ),
            _ => {
                return Err(ParseError::Json(
                    "cc_eventlog must be base64 or null".into(),
                ));
            }
        };
        return Ok((Quote::parse(&quote)?, eventlog));
    }
    if let Some(t) = text {
        let h = t.strip_prefix("0x").unwrap_or(t);
        if !h.is_empty() && h.len() % 2 == 0 && h.bytes().all(|b| b.is_ascii_hexdigit()) {
            let raw = hex::decode(h).map_err(|e| ParseError::Json(e.to_string()))?;
            return Ok((Quote::parse(&raw)?, None));
        }
    }
    Ok((Quote::parse(bytes)?, None))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// The parser never panics, whatever the bytes, in any accepted form.
        #[test]
        fn never_panics(bytes in prop::collection::vec(any::<u8>(), 0..6000)) {
            let _ = Quote::parse(&bytes);
            let _ = parse_evidence(&bytes);
        }

        /// A plausible header followed by noise never panics either.
        #[test]
        fn never_panics_after_a_valid_header(version in 3u16..=5, tdx in any::<bool>(), tail in prop::collection::vec(any::<u8>(), 0..5000)) {
            let mut b = Vec::new();
            b.extend_from_slice(&version.to_le_bytes());
            b.extend_from_slice(&2u16.to_le_bytes());
            b.extend_from_slice(&(if tdx { 0x81u32 } else { 0 }).to_le_bytes());
            b.extend_from_slice(&[0u8; 4]);
            b.extend_from_slice(&INTEL_QE_VENDOR_ID);
            b.extend_from_slice(&[0u8; 20]);
            b.extend_from_slice(&tail);
            let _ = Quote::parse(&b);
        }
    }
}
