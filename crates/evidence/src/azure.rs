//! Azure confidential VMs (SEV-SNP and TDX behind a paravisor, "HCL"):
//!
//! * the HCL report, read from the vTPM's NV index `0x01400001`
//!   (2600 bytes): a 32-byte header (`HCLA`, version 1 or 2, report size,
//!   request type, status, reserved), the hardware report in a 1184-byte
//!   slot at `0x20` (an SNP `ATTESTATION_REPORT`, or a TDX `TDREPORT` of 1024
//!   bytes followed by zeros), then `IGVM_REQUEST_DATA` at `0x4C0` (data
//!   size, version, report type 2 = SNP / 4 = TDX, hash type 1 = SHA-256 /
//!   2 = SHA-384 / 3 = SHA-512, variable-data size) and the runtime claims
//!   JSON at `0x4D4`, whose hash is the hardware report's report data;
//! * the CoCo `az-snp-vtpm` / `az-tdx-vtpm` evidence JSON around it, in the
//!   layouts Trustee has used: v0 (byte arrays, `report`, `quote`, a PEM
//!   `vcek`) and v1/v2 (`version`, base64url `hcl_report`, hex `tpm_quote`,
//!   base64url DER `vcek`); the TPM quote's signature is the raw RSA
//!   signature, not a `TPMT_SIGNATURE`.

use base64::Engine;
use serde_json::Value;

use crate::ParseError;
use crate::reader::Reader;

/// The HCL report's size (the NV index).
pub const HCL_REPORT_LEN: usize = 2600;
const HW_SLOT: usize = 1184;
const TDREPORT_LEN: usize = 1024;

/// The hardware report inside an HCL report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HwReport {
    /// An SNP attestation report (1184 bytes).
    Snp(Vec<u8>),
    /// A TDX `TDREPORT` (1024 bytes).
    Tdx(Vec<u8>),
}

/// A parsed HCL report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HclReport {
    pub hw_report: HwReport,
    /// IGVM hash type: 1 SHA-256, 2 SHA-384, 3 SHA-512.
    pub hash_type: u32,
    /// The runtime claims JSON, as the bytes that were hashed.
    pub runtime_claims: Vec<u8>,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ParseError {
    ParseError::InvalidField {
        field,
        reason: reason.into(),
    }
}

impl HclReport {
    pub fn parse(bytes: &[u8]) -> Result<Self, ParseError> {
        if bytes.len() != HCL_REPORT_LEN {
            return Err(ParseError::WrongLength {
                what: "HCL report",
                expected: HCL_REPORT_LEN,
                actual: bytes.len(),
            });
        }
        let mut r = Reader::new(bytes);
        if r.take("signature", 4)? != b"HCLA" {
            return Err(invalid("signature", "not HCLA"));
        }
        let version = r.u32_le("version")?;
        // Version 2 (newer paravisors) has the same layout.
        if version != 1 && version != 2 {
            return Err(ParseError::UnsupportedVersion {
                what: "HCL report",
                version,
            });
        }
        let report_size = r.u32_le("report_size")? as usize;
        let _request_type = r.u32_le("request_type")?;
        let status = r.u32_le("status")?;
        if status != 0 {
            return Err(invalid("status", format!("{status:#x}")));
        }
        r.zeros("reserved", 12)?;
        let slot = r.take("hw_report", HW_SLOT)?;
        // IGVM_REQUEST_DATA.
        let data_size = r.u32_le("igvm.data_size")? as usize;
        let igvm_version = r.u32_le("igvm.version")?;
        if igvm_version != 1 {
            return Err(ParseError::UnsupportedVersion {
                what: "IGVM request data",
                version: igvm_version,
            });
        }
        let report_type = r.u32_le("igvm.report_type")?;
        let hash_type = r.u32_le("igvm.hash_type")?;
        if !(1..=3).contains(&hash_type) {
            return Err(invalid("igvm.hash_type", format!("{hash_type}")));
        }
        let var_size = r.u32_le("igvm.variable_data_size")? as usize;
        if data_size != var_size.saturating_add(20) {
            return Err(invalid(
                "igvm.data_size",
                format!("{data_size}, expected the 20-byte header plus {var_size}"),
            ));
        }
        let header_and_slot = 0x20usize.saturating_add(HW_SLOT);
        if report_size != header_and_slot.saturating_add(data_size) {
            return Err(invalid(
                "report_size",
                format!(
                    "{report_size}, but the parts add up to {}",
                    header_and_slot.saturating_add(data_size)
                ),
            ));
        }
        let runtime_claims = r.take("runtime_claims", var_size)?.to_vec();
        // The rest of the NV index is unused and must be zero.
        let rest = r.remaining();
        r.zeros("padding", rest)?;
        let hw_report = match report_type {
            2 => HwReport::Snp(slot.to_vec()),
            4 => {
                let (td, tail) = slot.split_at_checked(TDREPORT_LEN).unwrap_or((slot, &[]));
                if tail.iter().any(|b| *b != 0) {
                    return Err(ParseError::ReservedNonZero {
                        field: "hw_report after the TDREPORT",
                        offset: 0x20usize.saturating_add(TDREPORT_LEN),
                    });
                }
                HwReport::Tdx(td.to_vec())
            }
            other => {
                return Err(invalid(
                    "igvm.report_type",
                    format!("{other} (2 SNP, 4 TDX)"),
                ));
            }
        };
        Ok(HclReport {
            hw_report,
            hash_type,
            runtime_claims,
        })
    }
}

/// The vTPM quote of the evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AzQuote {
    /// `TPMS_ATTEST` as signed.
    pub message: Vec<u8>,
    /// The raw RSASSA-PKCS1-v1_5 / SHA-256 signature by the AK.
    pub signature: Vec<u8>,
    /// SHA-256 PCRs 0–23.
    pub pcrs: Vec<Vec<u8>>,
}

/// `az-snp-vtpm` / `az-tdx-vtpm` evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AzEvidence {
    pub hcl_report: Vec<u8>,
    pub quote: AzQuote,
    /// Certificates sent along (SNP: the VCEK, possibly with its chain).
    pub certs: Vec<Vec<u8>>,
    /// An Intel TD quote (az-tdx-vtpm), when present.
    pub td_quote: Option<Vec<u8>>,
}

fn json_err(m: impl std::fmt::Display) -> ParseError {
    ParseError::Json(m.to_string())
}

fn bytes_array(v: &Value, what: &str) -> Result<Vec<u8>, ParseError> {
    v.as_array()
        .ok_or_else(|| json_err(format!("{what} is not a byte array")))?
        .iter()
        .map(|b| {
            b.as_u64()
                .and_then(|x| u8::try_from(x).ok())
                .ok_or_else(|| json_err(format!("{what} holds a non-byte")))
        })
        .collect()
}

fn b64url(v: &Value, what: &str) -> Result<Vec<u8>, ParseError> {
    let s = v
        .as_str()
        .ok_or_else(|| json_err(format!("{what} is not a string")))?;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .map_err(|e| json_err(format!("{what}: {e}")))
}

fn hex_str(v: &Value, what: &str) -> Result<Vec<u8>, ParseError> {
    hex::decode(
        v.as_str()
            .ok_or_else(|| json_err(format!("{what} is not a string")))?,
    )
    .map_err(|e| json_err(format!("{what}: {e}")))
}

fn exact_keys(v: &Value, what: &str, keys: &[&str]) -> Result<(), ParseError> {
    let o = v
        .as_object()
        .ok_or_else(|| json_err(format!("{what} is not an object")))?;
    for k in o.keys() {
        if !keys.contains(&k.as_str()) {
            return Err(json_err(format!("unknown field {k:?} in {what}")));
        }
    }
    Ok(())
}

impl AzEvidence {
    /// Parses the evidence JSON (v0, v1 or v2 layout).
    pub fn parse_json(bytes: &[u8]) -> Result<Self, ParseError> {
        let v: Value = serde_json::from_slice(bytes).map_err(json_err)?;
        let get = |k: &str| v.get(k).ok_or_else(|| json_err(format!("no {k:?}")));
        match v.get("version") {
            None => {
                exact_keys(&v, "evidence", &["quote", "report", "vcek"])?;
                let q = get("quote")?;
                exact_keys(q, "quote", &["message", "signature", "pcrs"])?;
                let pcrs = q
                    .get("pcrs")
                    .and_then(Value::as_array)
                    .ok_or_else(|| json_err("quote.pcrs is not an array"))?
                    .iter()
                    .map(|p| bytes_array(p, "quote.pcrs[]"))
                    .collect::<Result<_, _>>()?;
                let vcek = get("vcek")?
                    .as_str()
                    .ok_or_else(|| json_err("vcek is not a PEM string"))?;
                Ok(AzEvidence {
                    hcl_report: bytes_array(get("report")?, "report")?,
                    quote: AzQuote {
                        message: bytes_array(
                            q.get("message").unwrap_or(&Value::Null),
                            "quote.message",
                        )?,
                        signature: bytes_array(
                            q.get("signature").unwrap_or(&Value::Null),
                            "quote.signature",
                        )?,
                        pcrs,
                    },
                    certs: pem_certs(vcek)?,
                    td_quote: None,
                })
            }
            Some(version) => {
                let version = version.as_u64().unwrap_or(u64::MAX);
                if version != 1 && version != 2 {
                    return Err(ParseError::UnsupportedVersion {
                        what: "az-vtpm evidence",
                        version: u32::try_from(version).unwrap_or(u32::MAX),
                    });
                }
                exact_keys(
                    &v,
                    "evidence",
                    &["version", "hcl_report", "tpm_quote", "vcek", "td_quote"],
                )?;
                let q = get("tpm_quote")?;
                exact_keys(q, "tpm_quote", &["message", "signature", "pcrs"])?;
                let pcrs = q
                    .get("pcrs")
                    .and_then(Value::as_array)
                    .ok_or_else(|| json_err("tpm_quote.pcrs is not an array"))?
                    .iter()
                    .map(|p| hex_str(p, "tpm_quote.pcrs[]"))
                    .collect::<Result<_, _>>()?;
                Ok(AzEvidence {
                    hcl_report: b64url(get("hcl_report")?, "hcl_report")?,
                    quote: AzQuote {
                        message: hex_str(
                            q.get("message").unwrap_or(&Value::Null),
                            "tpm_quote.message",
                        )?,
                        signature: hex_str(
                            q.get("signature").unwrap_or(&Value::Null),
                            "tpm_quote.signature",
                        )?,
                        pcrs,
                    },
                    certs: match v.get("vcek") {
                        Some(c) => vec![b64url(c, "vcek")?],
                        None => Vec::new(),
                    },
                    td_quote: match v.get("td_quote") {
                        Some(t) => Some(b64url(t, "td_quote")?),
                        None => None,
                    },
                })
            }
        }
    }
}

/// The DER certificates of a PEM string.
fn pem_certs(pem: &str) -> Result<Vec<Vec<u8>>, ParseError> {
    let mut out = Vec::new();
    let mut b64 = String::new();
    let mut inside = false;
    for line in pem.lines().map(str::trim) {
        if line == "-----BEGIN CERTIFICATE-----" {
            inside = true;
            b64.clear();
        } else if line == "-----END CERTIFICATE-----" {
            inside = false;
            out.push(
                base64::engine::general_purpose::STANDARD
                    .decode(&b64)
                    .map_err(|e| json_err(format!("vcek PEM: {e}")))?,
            );
        } else if inside {
            b64.push_str(line);
        }
    }
    if out.is_empty() || inside {
        return Err(json_err("vcek holds no complete PEM certificate"));
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_every_layout() {
        let Some(dir) = veil_testkit::vectors() else {
            return;
        };
        for f in [
            "evidence-v0.json",
            "evidence-v1.json",
            "evidence-v2.json",
            "evidence-genoa.json",
        ] {
            let bytes = veil_testkit::read(&dir, &format!("azure-cvm/trustee-az-snp-vtpm/{f}"));
            let e = AzEvidence::parse_json(&bytes).unwrap();
            let h = HclReport::parse(&e.hcl_report).unwrap();
            assert!(
                matches!(h.hw_report, HwReport::Snp(ref r) if r.len() == 1184),
                "{f}"
            );
            assert_eq!(h.hash_type, 1);
            let claims: Value = serde_json::from_slice(&h.runtime_claims).unwrap();
            assert!(
                claims["keys"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|k| k["kid"] == "HCLAkPub"),
                "{f}"
            );
            assert_eq!(e.quote.pcrs.len(), 24);
            assert_eq!(e.quote.signature.len(), 256);
            assert!(!e.certs.is_empty());
        }
        let raw = veil_testkit::read(&dir, "azure-cvm/trustee-az-snp-vtpm/hcl-report.bin");
        HclReport::parse(&raw).unwrap();
        let tdx = veil_testkit::read(&dir, "azure-cvm/trustee-az-tdx-vtpm/hcl-report.bin");
        assert!(
            matches!(HclReport::parse(&tdx).unwrap().hw_report, HwReport::Tdx(ref r) if r.len() == 1024)
        );
        let e = AzEvidence::parse_json(&veil_testkit::read(
            &dir,
            "azure-cvm/trustee-az-tdx-vtpm/evidence-v1.json",
        ))
        .unwrap();
        assert!(e.td_quote.is_some() && e.certs.is_empty());
        // Strictness: a wrong size, a bad magic, a bad IGVM size.
        assert!(HclReport::parse(&raw[..2599]).is_err());
        let mut bad = raw.clone();
        bad[0] = b'X';
        assert!(HclReport::parse(&bad).is_err());
        let mut bad = raw.clone();
        bad[0x4C0] ^= 1;
        assert!(HclReport::parse(&bad).is_err());
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 2600..=2600)) {
            let _ = HclReport::parse(&bytes);
        }

        #[test]
        fn json_never_panics(s in ".{0,200}") {
            let _ = AzEvidence::parse_json(s.as_bytes());
        }
    }
}
