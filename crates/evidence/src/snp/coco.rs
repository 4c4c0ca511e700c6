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
use crate::json::{self, Reader};

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

/// The evidence object; `C` is the certificate table (borrowed
/// [`CertTableEntry`]s when writing; read by [`read_envelope`], and by
/// serde in the tests, which compare the two readers).
#[derive(Serialize)]
#[cfg_attr(test, derive(Deserialize))]
#[cfg_attr(test, serde(deny_unknown_fields))]
struct Envelope<C> {
    attestation_report: JsonReport,
    #[cfg_attr(test, serde(default = "Option::default"))]
    cert_chain: Option<C>,
}

#[derive(Default, Serialize)]
#[cfg_attr(test, derive(Deserialize), serde(deny_unknown_fields))]
struct JsonTcb {
    fmc: Option<u8>,
    bootloader: u8,
    tee: u8,
    snp: u8,
    microcode: u8,
}

#[derive(Default, Serialize)]
#[cfg_attr(test, derive(Deserialize), serde(deny_unknown_fields))]
struct JsonVersion {
    major: u8,
    minor: u8,
    build: u8,
}

#[derive(Default, Serialize)]
#[cfg_attr(test, derive(Deserialize), serde(deny_unknown_fields))]
struct JsonSignature {
    r: Vec<u8>,
    s: Vec<u8>,
}

#[derive(Default, Serialize)]
#[cfg_attr(test, derive(Deserialize), serde(deny_unknown_fields))]
struct JsonReport {
    version: u32,
    guest_svn: u32,
    policy: u64,
    family_id: Vec<u8>,
    image_id: Vec<u8>,
    vmpl: u32,
    sig_algo: u32,
    current_tcb: JsonTcb,
    plat_info: u64,
    key_info: u32,
    report_data: Vec<u8>,
    measurement: Vec<u8>,
    host_data: Vec<u8>,
    id_key_digest: Vec<u8>,
    author_key_digest: Vec<u8>,
    report_id: Vec<u8>,
    report_id_ma: Vec<u8>,
    reported_tcb: JsonTcb,
    cpuid_fam_id: Option<u8>,
    cpuid_mod_id: Option<u8>,
    cpuid_step: Option<u8>,
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

/// Reads the evidence object in one pass ([`crate::json`]: serde would
/// scan every byte array twice). Keys, types, bounds, unknown, repeated and
/// missing fields are checked as serde's derived reader checks them (the
/// tests compare the two on mutated documents); in addition a string with
/// an escape sequence is refused.
fn read_envelope(bytes: &[u8]) -> json::Result<(JsonReport, Option<Vec<CertTableEntry>>)> {
    let mut r = Reader::new(bytes);
    let (mut report, mut chain) = (None, None);
    r.members(
        &["attestation_report", "cert_chain"],
        &["cert_chain"],
        |r, i| {
            match i {
                0 => report = Some(read_report(r)?),
                _ => {
                    chain = if r.null() {
                        None
                    } else {
                        let mut entries = Vec::new();
                        r.array(|r| {
                            entries.push(read_cert(r)?);
                            Ok(())
                        })?;
                        Some(entries)
                    }
                }
            }
            Ok(())
        },
    )?;
    let Some(report) = report else {
        return r.error("missing field \"attestation_report\"");
    };
    r.end()?;
    Ok((report, chain))
}

const REPORT_FIELDS: [&str; 29] = [
    "version",
    "guest_svn",
    "policy",
    "family_id",
    "image_id",
    "vmpl",
    "sig_algo",
    "current_tcb",
    "plat_info",
    "key_info",
    "report_data",
    "measurement",
    "host_data",
    "id_key_digest",
    "author_key_digest",
    "report_id",
    "report_id_ma",
    "reported_tcb",
    "cpuid_fam_id",
    "cpuid_mod_id",
    "cpuid_step",
    "chip_id",
    "committed_tcb",
    "current",
    "committed",
    "launch_tcb",
    "launch_mit_vector",
    "current_mit_vector",
    "signature",
];

/// `Option` members may be missing (serde reads a missing `Option` as
/// `None`).
const REPORT_OPTIONAL: [&str; 5] = [
    "cpuid_fam_id",
    "cpuid_mod_id",
    "cpuid_step",
    "launch_mit_vector",
    "current_mit_vector",
];

fn read_report(r: &mut Reader<'_>) -> json::Result<JsonReport> {
    let mut j = JsonReport::default();
    r.members(&REPORT_FIELDS, &REPORT_OPTIONAL, |r, i| {
        match i {
            0 => j.version = r.u32()?,
            1 => j.guest_svn = r.u32()?,
            2 => j.policy = r.uint(u64::MAX)?,
            3 => j.family_id = r.bytes()?,
            4 => j.image_id = r.bytes()?,
            5 => j.vmpl = r.u32()?,
            6 => j.sig_algo = r.u32()?,
            7 => j.current_tcb = read_tcb(r)?,
            8 => j.plat_info = r.uint(u64::MAX)?,
            9 => j.key_info = r.u32()?,
            10 => j.report_data = r.bytes()?,
            11 => j.measurement = r.bytes()?,
            12 => j.host_data = r.bytes()?,
            13 => j.id_key_digest = r.bytes()?,
            14 => j.author_key_digest = r.bytes()?,
            15 => j.report_id = r.bytes()?,
            16 => j.report_id_ma = r.bytes()?,
            17 => j.reported_tcb = read_tcb(r)?,
            18 => j.cpuid_fam_id = r.opt_u8()?,
            19 => j.cpuid_mod_id = r.opt_u8()?,
            20 => j.cpuid_step = r.opt_u8()?,
            21 => j.chip_id = r.bytes()?,
            22 => j.committed_tcb = read_tcb(r)?,
            23 => j.current = read_version(r)?,
            24 => j.committed = read_version(r)?,
            25 => j.launch_tcb = read_tcb(r)?,
            26 => j.launch_mit_vector = r.opt_uint(u64::MAX)?,
            27 => j.current_mit_vector = r.opt_uint(u64::MAX)?,
            _ => j.signature = read_signature(r)?,
        }
        Ok(())
    })?;
    Ok(j)
}

fn read_tcb(r: &mut Reader<'_>) -> json::Result<JsonTcb> {
    let mut t = JsonTcb::default();
    let names = &["fmc", "bootloader", "tee", "snp", "microcode"];
    r.members(names, &["fmc"], |r, i| {
        match i {
            0 => t.fmc = r.opt_u8()?,
            1 => t.bootloader = r.u8()?,
            2 => t.tee = r.u8()?,
            3 => t.snp = r.u8()?,
            _ => t.microcode = r.u8()?,
        }
        Ok(())
    })?;
    Ok(t)
}

fn read_version(r: &mut Reader<'_>) -> json::Result<JsonVersion> {
    let mut v = JsonVersion::default();
    r.members(&["major", "minor", "build"], &[], |r, i| {
        match i {
            0 => v.major = r.u8()?,
            1 => v.minor = r.u8()?,
            _ => v.build = r.u8()?,
        }
        Ok(())
    })?;
    Ok(v)
}

fn read_signature(r: &mut Reader<'_>) -> json::Result<JsonSignature> {
    let mut sig = JsonSignature::default();
    r.members(&["r", "s"], &[], |r, i| {
        match i {
            0 => sig.r = r.bytes()?,
            _ => sig.s = r.bytes()?,
        }
        Ok(())
    })?;
    Ok(sig)
}

fn read_cert(r: &mut Reader<'_>) -> json::Result<CertTableEntry> {
    let (mut cert_type, mut data) = (None, Vec::new());
    r.members(&["cert_type", "data"], &[], |r, i| {
        match i {
            0 => cert_type = Some(read_cert_type(r)?),
            _ => data = r.bytes()?,
        }
        Ok(())
    })?;
    match cert_type {
        Some(cert_type) => Ok(CertTableEntry { cert_type, data }),
        None => r.error("missing field \"cert_type\""),
    }
}

/// A unit variant's name, or `{"OTHER": "<GUID>"}`.
fn read_cert_type(r: &mut Reader<'_>) -> json::Result<CertType> {
    if r.next_is(b'{') {
        let mut other = None;
        r.members(&["OTHER"], &[], |r, _| {
            other = Some(r.string()?.to_string());
            Ok(())
        })?;
        return match other {
            Some(guid) => Ok(CertType::Other(guid)),
            None => r.error("missing field \"OTHER\""),
        };
    }
    Ok(match r.string()? {
        "ARK" => CertType::Ark,
        "ASK" => CertType::Ask,
        "VCEK" => CertType::Vcek,
        "VLEK" => CertType::Vlek,
        "CRL" => CertType::Crl,
        _ => return r.error("unknown certificate type"),
    })
}

/// Parses CoCo SNP evidence JSON.
pub fn parse_json(bytes: &[u8]) -> Result<SnpEvidence, ParseError> {
    let (j, cert_chain) = read_envelope(bytes).map_err(|e| ParseError::Json(e.to_string()))?;
    from_json_report(j, cert_chain.unwrap_or_default())
}

fn from_json_report(
    j: JsonReport,
    cert_chain: Vec<CertTableEntry>,
) -> Result<SnpEvidence, ParseError> {
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
    Ok(SnpEvidence { report, cert_chain })
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

    /// The reader serde derives for the same types: the reference the
    /// hand-written reader is compared with.
    fn parse_json_serde(bytes: &[u8]) -> Result<SnpEvidence, ParseError> {
        let env: Envelope<Vec<CertTableEntry>> =
            serde_json::from_slice(bytes).map_err(|e| ParseError::Json(e.to_string()))?;
        from_json_report(env.attestation_report, env.cert_chain.unwrap_or_default())
    }

    fn sample_json(version: u32, product: Product, cert_chain: Vec<CertTableEntry>) -> String {
        let bytes = sample_body(version, product).encode().unwrap();
        to_json(&SnpEvidence {
            report: AttestationReport::parse(&bytes).unwrap(),
            cert_chain,
        })
        .unwrap()
    }

    fn sample_chain() -> Vec<CertTableEntry> {
        vec![
            CertTableEntry {
                cert_type: CertType::Vcek,
                data: vec![0, 9, 10, 99, 100, 255],
            },
            CertTableEntry {
                cert_type: CertType::Other("c0b406a4-a803-4952-9743-3fb6014cd0ae".into()),
                data: vec![],
            },
            CertTableEntry {
                cert_type: CertType::Crl,
                data: vec![7],
            },
        ]
    }

    /// Valid documents written differently (whitespace everywhere, members
    /// in another order, `null` and missing optional members) read the same
    /// with both readers.
    #[test]
    fn reader_agrees_with_serde_on_valid_documents() {
        for (v, p) in [
            (2, Product::Milan),
            (3, Product::Genoa),
            (5, Product::Turin),
        ] {
            for chain in [vec![], sample_chain()] {
                let text = sample_json(v, p, chain.clone());
                let value: serde_json::Value = serde_json::from_str(&text).unwrap();
                let mut no_chain = value.clone();
                no_chain.as_object_mut().unwrap().remove("cert_chain");
                let mut null_chain = value.clone();
                null_chain["cert_chain"] = serde_json::Value::Null;
                for doc in [
                    text.clone(),
                    // Keys in sorted order (serde_json's map), pretty-printed.
                    serde_json::to_string_pretty(&value).unwrap(),
                    format!(" \r\n\t{}\n ", value),
                    no_chain.to_string(),
                    null_chain.to_string(),
                ] {
                    let ours = parse_json(doc.as_bytes()).unwrap();
                    assert_eq!(Ok(&ours), parse_json_serde(doc.as_bytes()).as_ref());
                }
                assert_eq!(parse_json(text.as_bytes()).unwrap().cert_chain, chain);
            }
        }
        // Missing optional members read as null.
        let text = sample_json(2, Product::Milan, vec![]);
        let mut value: serde_json::Value = serde_json::from_str(&text).unwrap();
        let report = value["attestation_report"].as_object_mut().unwrap();
        for k in ["cpuid_fam_id", "cpuid_mod_id", "cpuid_step"] {
            assert!(report.remove(k).is_some());
        }
        report["current_tcb"].as_object_mut().unwrap().remove("fmc");
        let doc = value.to_string();
        assert_eq!(
            parse_json(doc.as_bytes()).unwrap(),
            parse_json_serde(doc.as_bytes()).unwrap()
        );
    }

    /// Where the readers may differ: the hand-written one refuses escape
    /// sequences and a unit variant written as a map; serde reads them.
    /// Nothing else.
    fn documented_difference(text: &str) -> bool {
        text.contains('\\') || text.contains("{\"ARK\"")
    }

    #[test]
    fn documented_differences_are_refused() {
        let text = sample_json(3, Product::Milan, sample_chain());
        for (from, to) in [
            ("\"version\"", "\"vers\\u0069on\""),
            ("\"cert_type\":\"VCEK\"", "\"cert_type\":{\"VCEK\":null}"),
        ] {
            let doc = text.replacen(from, to, 1);
            assert_ne!(doc, text, "{from}");
            assert!(parse_json(doc.as_bytes()).is_err(), "{to}");
            assert!(parse_json_serde(doc.as_bytes()).is_ok(), "serde reads {to}");
        }
    }

    fn edit() -> impl proptest::strategy::Strategy<Value = (f64, u8, u8)> {
        const ALPHABET: &[u8] = b"0123456789,[]{}:\" -.eEnul\n\t\\x";
        (
            0.0f64..1.0,
            0u8..4,
            proptest::sample::select(ALPHABET.to_vec()),
        )
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(512))]
        /// A valid document with a few characters replaced, inserted or
        /// deleted: whenever the hand-written reader accepts it, serde's
        /// reads the same evidence, and it refuses only what serde refuses
        /// or what is a documented difference.
        #[test]
        fn reader_agrees_with_serde_on_mutated_documents(
            which in 0usize..3,
            chain in proptest::bool::ANY,
            edits in proptest::collection::vec(edit(), 1..4),
        ) {
            let (v, p) = [(2, Product::Milan), (3, Product::Genoa), (5, Product::Turin)][which];
            let mut doc = sample_json(v, p, if chain { sample_chain() } else { vec![] }).into_bytes();
            for (at, kind, c) in edits {
                let i = ((doc.len() as f64) * at) as usize;
                let i = i.min(doc.len().saturating_sub(1));
                match kind {
                    0 => doc[i] = c,
                    1 => doc.insert(i, c),
                    2 => { doc.remove(i); }
                    _ => doc.insert(i, b' '),
                }
            }
            let ours = parse_json(&doc);
            let theirs = parse_json_serde(&doc);
            match (&ours, &theirs) {
                (Ok(a), Ok(b)) => proptest::prop_assert_eq!(a, b),
                (Ok(_), Err(e)) => proptest::prop_assert!(false, "accepted what serde refuses ({e}): {}", String::from_utf8_lossy(&doc)),
                (Err(e), Ok(_)) => proptest::prop_assert!(
                    documented_difference(&String::from_utf8_lossy(&doc)),
                    "refused what serde accepts ({e}): {}", String::from_utf8_lossy(&doc)
                ),
                (Err(_), Err(_)) => {}
            }
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
