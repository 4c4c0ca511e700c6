//! The Confidential Containers SNP evidence JSON, as the CoCo attestation
//! agent sends it (the serde form of `sev::firmware::guest::AttestationReport`
//! plus the host's certificate table):
//!
//! ```json
//! {"attestation_report": {"version": 2, "guest_svn": 4, "policy": 196639,
//!    "family_id": [..16], ..., "current_tcb": {"fmc": null, "bootloader": 3, ...},
//!    "signature": {"r": [..72], "s": [..72]}},
//!  "cert_chain": [{"cert_type": "VCEK", "data": [..DER..]}] | null}
//! ```
//! The structured report is turned back into the exact wire bytes and parsed
//! by [`AttestationReport::parse`], so both encodings give identical results
//! and the signature is checked over real report bytes.

use serde::{Deserialize, Serialize};

use super::report::{AttestationReport, ReportBody, Signature};
use super::types::{Cpuid, FirmwareVersion, GuestPolicy, KeyInfo, PlatformInfo, TcbVersion};
use crate::ParseError;

/// Parsed SNP evidence: the report and any certificates that came with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnpEvidence {
    pub report: AttestationReport,
    pub cert_chain: Vec<CertTableEntry>,
}

/// The kind of a certificate-table entry (the GUIDs of the SNP extended
/// report, named as the `sev` crate serialises them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CertType {
    #[serde(rename = "ARK")]
    Ark,
    #[serde(rename = "ASK")]
    Ask,
    #[serde(rename = "VCEK")]
    Vcek,
    #[serde(rename = "VLEK")]
    Vlek,
    #[serde(rename = "CRL")]
    Crl,
    #[serde(rename = "OTHER")]
    Other(String),
}

/// One certificate (or CRL) supplied with the evidence. `data` is DER or PEM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertTableEntry {
    pub cert_type: CertType,
    pub data: Vec<u8>,
}

/// The evidence object; `C` is the certificate table: borrowed
/// [`CertTableEntry`]s when writing, [`JsonCertEntry`]s (the fast
/// byte-array reader) when reading.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope<C> {
    attestation_report: JsonReport,
    #[serde(default = "Option::default")]
    cert_chain: Option<C>,
}

/// A certificate-table entry as read: [`CertTableEntry`] with its `data`
/// read by [`byte_array`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonCertEntry {
    cert_type: CertType,
    #[serde(deserialize_with = "byte_array")]
    data: Vec<u8>,
}

/// Reads a JSON array of integers 0–255 (how the `sev` crate's serde form
/// writes every byte string: the report's fields and whole DER
/// certificates, ≈ 3,500 numbers in a usual piece of evidence).
///
/// Written by hand because serde's generic sequence path (one `SeqAccess`
/// step and one integer deserialisation per element) was most of the cost
/// of reading CoCo SNP evidence. serde_json first captures the array as raw
/// text, which checks that it is well-formed JSON; this loop then accepts
/// only unsigned integers of at most 255 between the brackets, so floats,
/// signs, exponents, strings, nesting and out-of-range values are refused
/// as serde's `Vec<u8>` would refuse them.
fn byte_array<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    let raw = <&serde_json::value::RawValue>::deserialize(d)?;
    parse_byte_array(raw.get()).map_err(serde::de::Error::custom)
}

fn parse_byte_array(text: &str) -> Result<Vec<u8>, String> {
    const EXPECTED: &str = "expected an array of integers 0-255";
    fn skip_ws(it: &mut std::iter::Peekable<impl Iterator<Item = u8>>) {
        while it
            .next_if(|c| matches!(c, b' ' | b'\t' | b'\n' | b'\r'))
            .is_some()
        {}
    }
    let mut it = text.bytes().peekable();
    skip_ws(&mut it);
    if it.next() != Some(b'[') {
        return Err(EXPECTED.into());
    }
    // Each element takes at least two characters ("0,").
    let mut out = Vec::with_capacity(text.len() / 2);
    skip_ws(&mut it);
    if it.next_if_eq(&b']').is_none() {
        loop {
            skip_ws(&mut it);
            let (mut value, mut digits) = (0u16, 0u8);
            while let Some(c) = it.next_if(u8::is_ascii_digit) {
                digits = digits.wrapping_add(1);
                if digits > 3 {
                    return Err(format!("{EXPECTED}: a number has more than 3 digits"));
                }
                // At most 3 digits: no overflow.
                value = value
                    .wrapping_mul(10)
                    .wrapping_add(u16::from(c.wrapping_sub(b'0')));
            }
            if digits == 0 {
                return Err(EXPECTED.into());
            }
            out.push(
                u8::try_from(value).map_err(|_| format!("{EXPECTED}: {value} is out of range"))?,
            );
            skip_ws(&mut it);
            match it.next() {
                Some(b',') => {}
                Some(b']') => break,
                _ => return Err(EXPECTED.into()),
            }
        }
    }
    skip_ws(&mut it);
    match it.next() {
        None => Ok(out),
        Some(_) => Err(EXPECTED.into()),
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonTcb {
    fmc: Option<u8>,
    bootloader: u8,
    tee: u8,
    snp: u8,
    microcode: u8,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonVersion {
    major: u8,
    minor: u8,
    build: u8,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonSignature {
    #[serde(deserialize_with = "byte_array")]
    r: Vec<u8>,
    #[serde(deserialize_with = "byte_array")]
    s: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonReport {
    version: u32,
    guest_svn: u32,
    policy: u64,
    #[serde(deserialize_with = "byte_array")]
    family_id: Vec<u8>,
    #[serde(deserialize_with = "byte_array")]
    image_id: Vec<u8>,
    vmpl: u32,
    sig_algo: u32,
    current_tcb: JsonTcb,
    plat_info: u64,
    key_info: u32,
    #[serde(deserialize_with = "byte_array")]
    report_data: Vec<u8>,
    #[serde(deserialize_with = "byte_array")]
    measurement: Vec<u8>,
    #[serde(deserialize_with = "byte_array")]
    host_data: Vec<u8>,
    #[serde(deserialize_with = "byte_array")]
    id_key_digest: Vec<u8>,
    #[serde(deserialize_with = "byte_array")]
    author_key_digest: Vec<u8>,
    #[serde(deserialize_with = "byte_array")]
    report_id: Vec<u8>,
    #[serde(deserialize_with = "byte_array")]
    report_id_ma: Vec<u8>,
    reported_tcb: JsonTcb,
    cpuid_fam_id: Option<u8>,
    cpuid_mod_id: Option<u8>,
    cpuid_step: Option<u8>,
    #[serde(deserialize_with = "byte_array")]
    chip_id: Vec<u8>,
    committed_tcb: JsonTcb,
    current: JsonVersion,
    committed: JsonVersion,
    launch_tcb: JsonTcb,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    launch_mit_vector: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    current_mit_vector: Option<u64>,
    signature: JsonSignature,
}

fn fixed<const N: usize>(field: &'static str, v: &[u8]) -> Result<[u8; N], ParseError> {
    v.try_into().map_err(|_| ParseError::InvalidField {
        field,
        reason: format!("must be exactly {N} bytes, got {}", v.len()),
    })
}

impl From<&JsonTcb> for TcbVersion {
    fn from(t: &JsonTcb) -> Self {
        TcbVersion {
            fmc: t.fmc,
            bootloader: t.bootloader,
            tee: t.tee,
            snp: t.snp,
            microcode: t.microcode,
        }
    }
}

impl From<&TcbVersion> for JsonTcb {
    fn from(t: &TcbVersion) -> Self {
        JsonTcb {
            fmc: t.fmc,
            bootloader: t.bootloader,
            tee: t.tee,
            snp: t.snp,
            microcode: t.microcode,
        }
    }
}

/// Parses CoCo SNP evidence JSON.
pub fn parse_json(bytes: &[u8]) -> Result<SnpEvidence, ParseError> {
    let env: Envelope<Vec<JsonCertEntry>> =
        serde_json::from_slice(bytes).map_err(|e| ParseError::Json(e.to_string()))?;
    let j = env.attestation_report;
    let cpuid = match (j.cpuid_fam_id, j.cpuid_mod_id, j.cpuid_step) {
        (Some(family), Some(model), Some(stepping)) => Some(Cpuid {
            family,
            model,
            stepping,
        }),
        (None, None, None) => None,
        _ => {
            return Err(ParseError::InvalidField {
                field: "cpuid",
                reason: "cpuid_fam_id, cpuid_mod_id and cpuid_step must all be set or all null"
                    .into(),
            });
        }
    };
    let body = ReportBody {
        version: j.version,
        guest_svn: j.guest_svn,
        policy: GuestPolicy::decode(j.policy)?,
        family_id: fixed("family_id", &j.family_id)?,
        image_id: fixed("image_id", &j.image_id)?,
        vmpl: j.vmpl,
        sig_algo: j.sig_algo,
        current_tcb: (&j.current_tcb).into(),
        platform_info: PlatformInfo::decode(j.plat_info)?,
        key_info: KeyInfo::decode(j.key_info)?,
        report_data: fixed("report_data", &j.report_data)?,
        measurement: fixed("measurement", &j.measurement)?,
        host_data: fixed("host_data", &j.host_data)?,
        id_key_digest: fixed("id_key_digest", &j.id_key_digest)?,
        author_key_digest: fixed("author_key_digest", &j.author_key_digest)?,
        report_id: fixed("report_id", &j.report_id)?,
        report_id_ma: fixed("report_id_ma", &j.report_id_ma)?,
        reported_tcb: (&j.reported_tcb).into(),
        cpuid,
        chip_id: fixed("chip_id", &j.chip_id)?,
        committed_tcb: (&j.committed_tcb).into(),
        current_version: FirmwareVersion {
            major: j.current.major,
            minor: j.current.minor,
            build: j.current.build,
        },
        committed_version: FirmwareVersion {
            major: j.committed.major,
            minor: j.committed.minor,
            build: j.committed.build,
        },
        launch_tcb: (&j.launch_tcb).into(),
        launch_mit_vector: j.launch_mit_vector,
        current_mit_vector: j.current_mit_vector,
        signature: Signature {
            r: fixed("signature.r", &j.signature.r)?,
            s: fixed("signature.s", &j.signature.s)?,
        },
    };
    // Encode to the wire form and parse that: one parser decides validity.
    let bytes = body.encode()?;
    let report = AttestationReport::parse(&bytes)?;
    Ok(SnpEvidence {
        report,
        cert_chain: env
            .cert_chain
            .unwrap_or_default()
            .into_iter()
            .map(|e| CertTableEntry {
                cert_type: e.cert_type,
                data: e.data,
            })
            .collect(),
    })
}

/// Serialises evidence in the CoCo JSON shape (what Veil's agent sends).
pub fn to_json(evidence: &SnpEvidence) -> Result<String, ParseError> {
    serde_json::to_string(&envelope(evidence)).map_err(|e| ParseError::Json(e.to_string()))
}

/// Evidence that serialises in the CoCo JSON shape, so that it can be
/// written straight into a larger document (a KBS `/attest` body) once,
/// without an intermediate string that the document would have to check
/// again as JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CocoJson(pub SnpEvidence);

impl Serialize for CocoJson {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        envelope(&self.0).serialize(s)
    }
}

fn envelope(evidence: &SnpEvidence) -> Envelope<&[CertTableEntry]> {
    let b = evidence.report.body();
    let j = JsonReport {
        version: b.version,
        guest_svn: b.guest_svn,
        policy: b.policy.raw,
        family_id: b.family_id.to_vec(),
        image_id: b.image_id.to_vec(),
        vmpl: b.vmpl,
        sig_algo: b.sig_algo,
        current_tcb: (&b.current_tcb).into(),
        plat_info: b.platform_info.raw,
        key_info: b.key_info.raw,
        report_data: b.report_data.to_vec(),
        measurement: b.measurement.to_vec(),
        host_data: b.host_data.to_vec(),
        id_key_digest: b.id_key_digest.to_vec(),
        author_key_digest: b.author_key_digest.to_vec(),
        report_id: b.report_id.to_vec(),
        report_id_ma: b.report_id_ma.to_vec(),
        reported_tcb: (&b.reported_tcb).into(),
        cpuid_fam_id: b.cpuid.map(|c| c.family),
        cpuid_mod_id: b.cpuid.map(|c| c.model),
        cpuid_step: b.cpuid.map(|c| c.stepping),
        chip_id: b.chip_id.to_vec(),
        committed_tcb: (&b.committed_tcb).into(),
        current: JsonVersion {
            major: b.current_version.major,
            minor: b.current_version.minor,
            build: b.current_version.build,
        },
        committed: JsonVersion {
            major: b.committed_version.major,
            minor: b.committed_version.minor,
            build: b.committed_version.build,
        },
        launch_tcb: (&b.launch_tcb).into(),
        launch_mit_vector: b.launch_mit_vector,
        current_mit_vector: b.current_mit_vector,
        signature: JsonSignature {
            r: b.signature.r.to_vec(),
            s: b.signature.s.to_vec(),
        },
    };
    Envelope {
        attestation_report: j,
        cert_chain: (!evidence.cert_chain.is_empty()).then_some(evidence.cert_chain.as_slice()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::report::tests::sample_body;
    use super::super::types::Product;
    use super::*;

    #[test]
    fn json_round_trip_is_identical_to_raw() {
        for (v, p) in [
            (2, Product::Milan),
            (3, Product::Genoa),
            (5, Product::Turin),
        ] {
            let bytes = sample_body(v, p).encode().unwrap();
            let ev = SnpEvidence {
                report: AttestationReport::parse(&bytes).unwrap(),
                cert_chain: vec![CertTableEntry {
                    cert_type: CertType::Vcek,
                    data: vec![1, 2, 3],
                }],
            };
            let json = to_json(&ev).unwrap();
            let back = super::super::parse_evidence(json.as_bytes()).unwrap();
            assert_eq!(back, ev);
            assert_eq!(back.report.as_bytes(), &bytes);
        }
    }

    #[test]
    fn coco_json_serialises_as_to_json() {
        let bytes = sample_body(5, Product::Turin).encode().unwrap();
        for cert_chain in [
            vec![],
            vec![CertTableEntry {
                cert_type: CertType::Ask,
                data: vec![0, 255, 48],
            }],
        ] {
            let ev = SnpEvidence {
                report: AttestationReport::parse(&bytes).unwrap(),
                cert_chain,
            };
            let text = serde_json::to_string(&CocoJson(ev.clone())).unwrap();
            assert_eq!(text, to_json(&ev).unwrap());
            assert_eq!(parse_json(text.as_bytes()).unwrap(), ev);
        }
    }

    #[test]
    fn byte_arrays_read_exactly_what_serde_reads() {
        for ok in [
            "[]",
            " [ ] ",
            "[0]",
            "[255,0,7]",
            "[ 1 ,\n\t2\r, 3 ]",
            "[10, 100, 200]",
        ] {
            let want: Vec<u8> = serde_json::from_str(ok).unwrap();
            assert_eq!(parse_byte_array(ok).unwrap(), want, "{ok}");
        }
        for bad in [
            "", "[", "]", "[256]", "[1000]", "[-1]", "[1.0]", "[1e2]", "[1,]", "[,1]", "[1 2]",
            "[\"1\"]", "[[1]]", "[null]", "[true]", "{}", "1", "[1]x", "[0001]",
        ] {
            assert!(parse_byte_array(bad).is_err(), "{bad:?} was accepted");
            assert!(
                serde_json::from_str::<Vec<u8>>(bad).is_err(),
                "{bad:?} serde"
            );
        }
    }

    use proptest::strategy::Strategy as _;

    proptest::proptest! {
        /// Whatever the text, the hand-written reader agrees with serde's
        /// `Vec<u8>` on JSON texts (the only input it is given).
        #[test]
        fn byte_array_agrees_with_serde(
            items in proptest::collection::vec(
                proptest::prop_oneof![
                    (0u32..300).prop_map(|v| v.to_string()),
                    proptest::strategy::Just("-1".to_string()),
                    proptest::strategy::Just("1.5".to_string()),
                    proptest::strategy::Just("\"a\"".to_string()),
                    proptest::strategy::Just("[]".to_string()),
                ],
                0..40,
            ),
            sep in proptest::prop_oneof![
                proptest::strategy::Just(","), proptest::strategy::Just(" , "),
                proptest::strategy::Just(",\n"),
            ],
        ) {
            let text = format!("[{}]", items.join(sep));
            let ours = parse_byte_array(&text).ok();
            let serde: Option<Vec<u8>> = serde_json::from_str(&text).ok();
            proptest::prop_assert_eq!(ours, serde, "{}", text);
        }
    }

    #[test]
    fn json_rejects_bad_lengths_and_unknown_fields() {
        let bytes = sample_body(3, Product::Milan).encode().unwrap();
        let ev = SnpEvidence {
            report: AttestationReport::parse(&bytes).unwrap(),
            cert_chain: vec![],
        };
        let json = to_json(&ev).unwrap();
        let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
        v["attestation_report"]["measurement"] = serde_json::json!([1, 2, 3]);
        let err = parse_json(v.to_string().as_bytes()).unwrap_err();
        assert!(err.to_string().contains("measurement"), "{err}");

        let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
        v["attestation_report"]["surprise"] = serde_json::json!(1);
        assert!(parse_json(v.to_string().as_bytes()).is_err());

        let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
        v["attestation_report"]["cpuid_step"] = serde_json::Value::Null;
        assert!(parse_json(v.to_string().as_bytes()).is_err());

        let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
        v["attestation_report"]["current_tcb"]["fmc"] = serde_json::json!(1);
        assert!(
            parse_json(v.to_string().as_bytes()).is_err(),
            "fmc on Milan"
        );
    }

    #[test]
    fn cert_type_names() {
        let e: CertTableEntry =
            serde_json::from_str(r#"{"cert_type":{"OTHER":"abc"},"data":[1]}"#).unwrap();
        assert_eq!(e.cert_type, CertType::Other("abc".into()));
        let e: CertTableEntry = serde_json::from_str(r#"{"cert_type":"VLEK","data":[]}"#).unwrap();
        assert_eq!(e.cert_type, CertType::Vlek);
    }
}
