//! NVIDIA GPU attestation reports: the SPDM 1.1 (DMTF DSP0274)
//! GET_MEASUREMENTS request followed by the signed MEASUREMENTS response,
//! as the GPU driver returns them, and the CoCo `nvidia` evidence JSON.
//!
//! NVIDIA carries device facts in the response's OpaqueData as
//! type/length/value items (driver and VBIOS versions, FWID, SKU, …); they
//! are decoded into the claim names NVIDIA's own verifier uses.
//!
//! One real Hopper report carries a single 0x00 byte after the signature
//! (see `vectors/nvidia/trustee/MANIFEST.md`); exactly that is accepted and
//! recorded, any other trailing data is refused.

use serde_json::{Map, Value, json};

use crate::ParseError;
use crate::reader::Reader;

/// SPDM version 1.1, the version Hopper speaks.
pub const SPDM_VERSION_1_1: u8 = 0x11;
/// Request code GET_MEASUREMENTS.
pub const GET_MEASUREMENTS: u8 = 0xe0;
/// Response code MEASUREMENTS.
pub const MEASUREMENTS: u8 = 0x60;
/// Length of the GET_MEASUREMENTS request with a signature requested.
pub const REQUEST_LEN: usize = 37;
/// ECDSA P-384 signature, r ‖ s.
pub const SIGNATURE_LEN: usize = 96;
/// MeasurementSpecification bit 0: the DMTF measurement layout.
pub const DMTF_MEASUREMENT_SPEC: u8 = 1;

/// The GET_MEASUREMENTS request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeasurementRequest {
    /// Param1: bit 0 asks for a signature.
    pub attributes: u8,
    /// Param2: 0xFF asks for every measurement block.
    pub operation: u8,
    /// The requester's nonce (the freshness binding).
    pub nonce: [u8; 32],
    pub slot_id: u8,
}

/// One DMTF measurement block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeasurementBlock {
    pub index: u8,
    /// DMTFSpecMeasurementValueType.
    pub value_type: u8,
    pub value: Vec<u8>,
}

/// One OpaqueData item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpaqueItem {
    pub kind: u16,
    pub data: Vec<u8>,
}

/// A parsed report: request and response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuReport {
    pub request: MeasurementRequest,
    pub blocks: Vec<MeasurementBlock>,
    /// The responder's nonce.
    pub responder_nonce: [u8; 32],
    pub opaque: Vec<OpaqueItem>,
    pub signature: [u8; SIGNATURE_LEN],
    /// The bytes the signature covers: the request and the response up to
    /// the signature, exactly as received.
    pub signed: Vec<u8>,
    /// The report ended with the single 0x00 byte some drivers append.
    pub trailing_zero: bool,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ParseError {
    ParseError::InvalidField {
        field,
        reason: reason.into(),
    }
}

/// The claim name of an OpaqueData type (the names of NVIDIA's verifier).
pub fn opaque_name(kind: u16) -> Option<&'static str> {
    Some(match kind {
        1 => "cert_issuer_name",
        2 => "cert_authority_key_identifier",
        3 => "driver_version",
        4 => "gpu_info",
        5 => "id_sku",
        6 => "vbios_version",
        7 => "manufacturer_id",
        8 => "tamper_detection",
        9 => "smc",
        10 => "vpr",
        11 => "nvdec0_status",
        12 => "measurement_count",
        13 => "cpr_info",
        14 => "board_id",
        15 => "chip_sku",
        16 => "chip_sku_mod",
        17 => "project",
        18 => "project_sku",
        19 => "project_sku_mod",
        20 => "fwid",
        21 => "protected_pcie_status",
        22 => "switch_pdi",
        23 => "floorswept_ports",
        24 => "position_id",
        25 => "lock_switch_status",
        32 => "gpu_link_conn",
        33 => "sys_enable_status",
        34 => "opaque_data_version",
        35 => "chip_info",
        36 => "feature_flag",
        _ => return None,
    })
}

/// OpaqueData type of the driver version.
pub const OPAQUE_DRIVER_VERSION: u16 = 3;
/// OpaqueData type of the VBIOS version.
pub const OPAQUE_VBIOS_VERSION: u16 = 6;
/// OpaqueData type of the firmware ID (matches the device certificate).
pub const OPAQUE_FWID: u16 = 20;

impl GpuReport {
    /// Parses a report: request (37 bytes) then response.
    pub fn parse(buf: &[u8]) -> Result<Self, ParseError> {
        let mut r = Reader::new(buf);
        if r.u8("SPDMVersion")? != SPDM_VERSION_1_1 {
            return Err(ParseError::UnsupportedVersion {
                what: "SPDM request",
                version: u32::from(buf.first().copied().unwrap_or(0)),
            });
        }
        if r.u8("RequestResponseCode")? != GET_MEASUREMENTS {
            return Err(invalid("request", "not a GET_MEASUREMENTS request"));
        }
        let attributes = r.u8("Param1")?;
        if attributes != 0x01 {
            return Err(invalid(
                "request Param1",
                format!("{attributes:#04x}: a signed measurement request has exactly bit 0 set"),
            ));
        }
        let operation = r.u8("Param2")?;
        let nonce = r.array::<32>("request Nonce")?;
        let slot_id = r.u8("SlotIDParam")?;
        if slot_id > 7 {
            return Err(invalid(
                "SlotIDParam",
                format!("{slot_id} is not a slot (0..=7)"),
            ));
        }
        let request = MeasurementRequest {
            attributes,
            operation,
            nonce,
            slot_id,
        };
        let response_version = r.u8("response SPDMVersion")?;
        if response_version != SPDM_VERSION_1_1 {
            return Err(ParseError::UnsupportedVersion {
                what: "SPDM response",
                version: u32::from(response_version),
            });
        }
        if r.u8("response code")? != MEASUREMENTS {
            return Err(invalid("response", "not a MEASUREMENTS response"));
        }
        if r.u8("response Param1")? != 0 {
            return Err(ParseError::ReservedNonZero {
                field: "response Param1",
                offset: REQUEST_LEN.saturating_add(2),
            });
        }
        let param2 = r.u8("response Param2")?;
        if param2 != slot_id {
            return Err(invalid(
                "response Param2",
                format!("slot {param2} answers a request for slot {slot_id}"),
            ));
        }
        let count = r.u8("NumberOfBlocks")?;
        let len = r.array::<3>("MeasurementRecordLength")?;
        let len = u32::from_le_bytes([len[0], len[1], len[2], 0]);
        let record = r.take("MeasurementRecord", len as usize)?;
        let blocks = parse_blocks(record, count)?;
        if operation == 0xff && blocks.is_empty() {
            return Err(invalid(
                "MeasurementRecord",
                "no blocks for an all-blocks request",
            ));
        }
        let responder_nonce = r.array::<32>("response Nonce")?;
        let opaque_len = r.u16_le("OpaqueLength")?;
        let opaque = parse_opaque(r.take("OpaqueData", usize::from(opaque_len))?)?;
        let signed_len = r.offset();
        let signature = r.array::<SIGNATURE_LEN>("Signature")?;
        let trailing_zero = match r.remaining() {
            0 => false,
            1 if buf.last() == Some(&0) => true,
            n => {
                return Err(ParseError::TrailingBytes {
                    what: "SPDM MEASUREMENTS response",
                    count: n,
                });
            }
        };
        Ok(GpuReport {
            request,
            blocks,
            responder_nonce,
            opaque,
            signature,
            signed: buf.get(..signed_len).unwrap_or_default().to_vec(),
            trailing_zero,
        })
    }

    /// The data of an OpaqueData item.
    pub fn opaque(&self, kind: u16) -> Option<&[u8]> {
        self.opaque
            .iter()
            .find(|i| i.kind == kind)
            .map(|i| i.data.as_slice())
    }

    /// OpaqueData decoded into named claims (`driver_version`,
    /// `vbios_version`, `fwid`, …).
    pub fn config_claims(&self) -> Result<Map<String, Value>, ParseError> {
        let mut out = Map::new();
        for item in &self.opaque {
            let name = opaque_name(item.kind)
                .ok_or_else(|| invalid("OpaqueData", format!("unknown type {}", item.kind)))?;
            out.insert(name.to_string(), decode_opaque(item)?);
        }
        Ok(out)
    }
}

fn parse_blocks(record: &[u8], count: u8) -> Result<Vec<MeasurementBlock>, ParseError> {
    let mut r = Reader::new(record);
    let mut blocks: Vec<MeasurementBlock> = Vec::new();
    for _ in 0..count {
        let index = r.u8("measurement Index")?;
        if blocks.iter().any(|b| b.index >= index) {
            return Err(invalid(
                "measurement Index",
                format!("{index} is not in increasing order"),
            ));
        }
        if r.u8("MeasurementSpecification")? != DMTF_MEASUREMENT_SPEC {
            return Err(invalid(
                "MeasurementSpecification",
                "only the DMTF measurement layout is defined",
            ));
        }
        let size = r.u16_le("MeasurementSize")?;
        let mut m = Reader::new(r.take("Measurement", usize::from(size))?);
        let value_type = m.u8("DMTFSpecMeasurementValueType")?;
        let value_size = m.u16_le("DMTFSpecMeasurementValueSize")?;
        let value = m.take("DMTFSpecMeasurementValue", usize::from(value_size))?;
        m.finish("DMTF measurement")?;
        blocks.push(MeasurementBlock {
            index,
            value_type,
            value: value.to_vec(),
        });
    }
    r.finish("MeasurementRecord")?;
    Ok(blocks)
}

fn parse_opaque(data: &[u8]) -> Result<Vec<OpaqueItem>, ParseError> {
    let mut r = Reader::new(data);
    let mut items: Vec<OpaqueItem> = Vec::new();
    while r.remaining() > 0 {
        let kind = r.u16_le("OpaqueData type")?;
        let size = r.u16_le("OpaqueData size")?;
        let value = r.take("OpaqueData value", usize::from(size))?;
        if opaque_name(kind).is_none() {
            return Err(invalid("OpaqueData", format!("unknown type {kind}")));
        }
        if items.iter().any(|i| i.kind == kind) {
            return Err(invalid("OpaqueData", format!("type {kind} appears twice")));
        }
        items.push(OpaqueItem {
            kind,
            data: value.to_vec(),
        });
    }
    for required in [OPAQUE_DRIVER_VERSION, OPAQUE_VBIOS_VERSION] {
        if !items.iter().any(|i| i.kind == required) {
            return Err(invalid(
                "OpaqueData",
                format!("{} is missing", opaque_name(required).unwrap_or("?")),
            ));
        }
    }
    Ok(items)
}

fn text(item: &OpaqueItem) -> Result<Value, ParseError> {
    let s = std::str::from_utf8(&item.data).map_err(|_| {
        invalid(
            "OpaqueData",
            format!("type {} is not UTF-8 text", item.kind),
        )
    })?;
    Ok(Value::String(s.trim_end_matches('\0').to_string()))
}

fn le_u64(data: &[u8]) -> Result<u64, ParseError> {
    if data.len() > 8 {
        return Err(invalid("OpaqueData", "integer longer than 8 bytes"));
    }
    let mut b = [0u8; 8];
    for (d, s) in b.iter_mut().zip(data) {
        *d = *s;
    }
    Ok(u64::from_le_bytes(b))
}

fn decode_opaque(item: &OpaqueItem) -> Result<Value, ParseError> {
    let d = &item.data;
    Ok(match item.kind {
        3 | 15 | 16 | 17 | 18 | 35 => text(item)?,
        6 => {
            // Eight bytes: the first half is printed most significant byte
            // first, then the first byte of the second half (e.g.
            // 00 9f 00 96 01 00 00 00 → 96.00.9f.00.01).
            if d.len() != 8 {
                return Err(invalid(
                    "vbios_version",
                    format!("{} bytes, expected 8", d.len()),
                ));
            }
            let (hi, lo) = d.split_at(4);
            let mut parts: Vec<String> = hi.iter().rev().map(|b| format!("{b:02x}")).collect();
            parts.push(format!("{:02x}", lo.first().copied().unwrap_or(0)));
            Value::String(parts.join("."))
        }
        11 => match d.as_slice() {
            [0xaa] => json!("enabled"),
            [0x55] => json!("disabled"),
            _ => return Err(invalid("nvdec0_status", hex::encode(d))),
        },
        12 => {
            if !d.len().is_multiple_of(4) {
                return Err(invalid("measurement_count", "not a list of 32-bit counts"));
            }
            let mut m = Map::new();
            for (i, c) in (1u32..).zip(d.chunks_exact(4)) {
                let mut b = [0u8; 4];
                b.copy_from_slice(c);
                m.insert(i.to_string(), json!(u32::from_le_bytes(b)));
            }
            Value::Object(m)
        }
        22 => {
            if !d.len().is_multiple_of(8) {
                return Err(invalid("switch_pdi", "not a list of 8-byte PDIs"));
            }
            Value::Array(d.chunks_exact(8).map(|c| json!(hex::encode(c))).collect())
        }
        34 => json!(le_u64(d)?),
        36 => json!(match le_u64(d)? {
            0 => "SPT",
            1 => "MPT",
            2 => "PPCIE",
            _ => "unknown",
        }),
        _ => Value::String(hex::encode(d)),
    })
}

/// Encodes the report bytes that precede the signature (for the
/// simulator): request, then the response up to and including OpaqueData.
pub fn encode_unsigned(
    request_nonce: &[u8; 32],
    blocks: &[MeasurementBlock],
    responder_nonce: &[u8; 32],
    opaque: &[OpaqueItem],
) -> Result<Vec<u8>, ParseError> {
    let too_big = |what: &'static str| invalid(what, "too large to encode");
    let mut out = vec![SPDM_VERSION_1_1, GET_MEASUREMENTS, 0x01, 0xff];
    out.extend_from_slice(request_nonce);
    out.push(0);
    let mut record = Vec::new();
    for b in blocks {
        let vlen = u16::try_from(b.value.len()).map_err(|_| too_big("measurement"))?;
        let mlen = vlen.checked_add(3).ok_or_else(|| too_big("measurement"))?;
        record.push(b.index);
        record.push(DMTF_MEASUREMENT_SPEC);
        record.extend(mlen.to_le_bytes());
        record.push(b.value_type);
        record.extend(vlen.to_le_bytes());
        record.extend(&b.value);
    }
    let rlen = u32::try_from(record.len())
        .ok()
        .filter(|l| *l < (1 << 24))
        .ok_or_else(|| too_big("MeasurementRecord"))?;
    let count = u8::try_from(blocks.len()).map_err(|_| too_big("NumberOfBlocks"))?;
    out.extend([SPDM_VERSION_1_1, MEASUREMENTS, 0, 0, count]);
    out.extend(rlen.to_le_bytes().get(..3).unwrap_or_default());
    out.extend(record);
    out.extend_from_slice(responder_nonce);
    let mut od = Vec::new();
    for i in opaque {
        od.extend(i.kind.to_le_bytes());
        od.extend(
            u16::try_from(i.data.len())
                .map_err(|_| too_big("OpaqueData"))?
                .to_le_bytes(),
        );
        od.extend(&i.data);
    }
    out.extend(
        u16::try_from(od.len())
            .map_err(|_| too_big("OpaqueData"))?
            .to_le_bytes(),
    );
    out.extend(od);
    Ok(out)
}

/// One device in the CoCo `nvidia` evidence.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceEvidence {
    /// `HOPPER`, `BLACKWELL` or `LS10`.
    pub arch: String,
    pub uuid: String,
    /// The report, hex (older attesters) or standard base64.
    pub evidence: String,
    /// The device certificate chain as PEM, in standard base64.
    pub certificate: String,
}

/// The CoCo `nvidia` evidence.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct NvidiaEvidence {
    pub device_evidence_list: Vec<DeviceEvidence>,
}

/// Parses the CoCo JSON; at least one device.
pub fn parse_json(bytes: &[u8]) -> Result<NvidiaEvidence, ParseError> {
    let ev: NvidiaEvidence =
        serde_json::from_slice(bytes).map_err(|e| ParseError::Json(e.to_string()))?;
    if ev.device_evidence_list.is_empty() {
        return Err(invalid("device_evidence_list", "empty"));
    }
    Ok(ev)
}

impl DeviceEvidence {
    /// The report bytes (hex or base64, as the attester sent them).
    pub fn report_bytes(&self) -> Result<Vec<u8>, ParseError> {
        use base64::Engine as _;
        let s = self.evidence.trim();
        if let Ok(b) = hex::decode(s) {
            return Ok(b);
        }
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(|_| invalid("evidence", "neither hex nor base64"))
    }

    /// The certificate chain's text (base64 of PEM).
    pub fn certificate_bytes(&self) -> Result<Vec<u8>, ParseError> {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(self.certificate.trim())
            .map_err(|_| invalid("certificate", "not base64"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let blocks = vec![
            MeasurementBlock {
                index: 1,
                value_type: 1,
                value: vec![0xab; 48],
            },
            MeasurementBlock {
                index: 2,
                value_type: 1,
                value: vec![0xcd; 48],
            },
        ];
        let opaque = vec![
            OpaqueItem {
                kind: 3,
                data: b"550.90.07\0".to_vec(),
            },
            OpaqueItem {
                kind: 6,
                data: vec![0x00, 0x9f, 0x00, 0x96, 0x01, 0, 0, 0],
            },
        ];
        let mut b = encode_unsigned(&[1; 32], &blocks, &[2; 32], &opaque).unwrap();
        b.extend([9u8; SIGNATURE_LEN]);
        b
    }

    #[test]
    fn parses_what_it_encodes() {
        let b = sample();
        let r = GpuReport::parse(&b).unwrap();
        assert_eq!(r.request.nonce, [1; 32]);
        assert_eq!(r.blocks.len(), 2);
        assert_eq!(r.signed.len(), b.len() - SIGNATURE_LEN);
        let c = r.config_claims().unwrap();
        assert_eq!(c["driver_version"], "550.90.07");
        assert_eq!(c["vbios_version"], "96.00.9f.00.01");
        assert!(!r.trailing_zero);
    }

    #[test]
    fn accepts_only_the_one_byte_quirk() {
        let mut b = sample();
        b.push(0);
        assert!(GpuReport::parse(&b).unwrap().trailing_zero);
        b.push(0);
        assert!(GpuReport::parse(&b).is_err());
        let mut c = sample();
        c.push(1);
        assert!(GpuReport::parse(&c).is_err());
    }

    #[test]
    fn every_truncation_is_an_error() {
        let b = sample();
        for n in 0..b.len() {
            assert!(GpuReport::parse(&b[..n]).is_err(), "length {n}");
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = GpuReport::parse(&bytes);
        }
    }
}
