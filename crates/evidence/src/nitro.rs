//! AWS Nitro Enclaves attestation documents: a COSE_Sign1 (ES384) whose
//! payload is a CBOR map (AWS "Verifying the root of trust", the NSM API's
//! `AttestationDocument`). Field limits follow that document: PCR indices
//! below 32 with 32/48/64-byte values, at most 1024 bytes for the
//! certificates and `public_key`, 512 for `user_data` and `nonce`.

use std::collections::BTreeMap;

use crate::ParseError;
use crate::cbor::{self, Value};
use crate::cose::{ALG_ES384, CoseSign1};

/// A parsed attestation document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestationDoc {
    /// The COSE_Sign1 envelope (signature over its bytes as received).
    pub cose: CoseSign1,
    pub module_id: String,
    /// Always `SHA384`.
    pub digest: String,
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    pub pcrs: BTreeMap<u8, Vec<u8>>,
    /// The enclave's leaf certificate (DER).
    pub certificate: Vec<u8>,
    /// The chain from the root (first) to the leaf's issuer (last), DER.
    pub cabundle: Vec<Vec<u8>>,
    pub public_key: Option<Vec<u8>>,
    pub user_data: Option<Vec<u8>>,
    pub nonce: Option<Vec<u8>>,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ParseError {
    ParseError::InvalidField {
        field,
        reason: reason.into(),
    }
}

fn bounded(v: &Value<'_>, field: &'static str, max: usize) -> Result<Vec<u8>, ParseError> {
    let b = v.bytes(field)?;
    if b.is_empty() || b.len() > max {
        return Err(invalid(
            field,
            format!("length {} outside 1..={max}", b.len()),
        ));
    }
    Ok(b.to_vec())
}

fn optional(v: &Value<'_>, field: &'static str, max: usize) -> Result<Option<Vec<u8>>, ParseError> {
    match v {
        Value::Null => Ok(None),
        Value::Bytes(b) if b.len() <= max => Ok(Some(b.to_vec())),
        Value::Bytes(b) => Err(invalid(field, format!("{} bytes, at most {max}", b.len()))),
        _ => Err(invalid(field, "expected a byte string or null")),
    }
}

impl AttestationDoc {
    /// Parses a document (the raw COSE_Sign1 bytes, tagged or not).
    pub fn parse(buf: &[u8]) -> Result<Self, ParseError> {
        let cose = CoseSign1::parse(buf)?;
        if cose.alg != ALG_ES384 {
            return Err(invalid(
                "COSE alg",
                format!("Nitro documents are ES384 (-35), got {}", cose.alg),
            ));
        }
        if cose.signature.len() != 96 {
            return Err(ParseError::WrongLength {
                what: "ES384 signature",
                expected: 96,
                actual: cose.signature.len(),
            });
        }
        let payload = cbor::decode(&cose.payload)?;
        let mut module_id = None;
        let mut digest = None;
        let mut timestamp = None;
        let mut pcrs = None;
        let mut certificate = None;
        let mut cabundle = None;
        let (mut public_key, mut user_data, mut nonce) = (None, None, None);
        for (k, v) in payload.map("attestation document")? {
            let Value::Text(key) = k else {
                return Err(invalid("attestation document", "keys must be text"));
            };
            match *key {
                "module_id" => {
                    let t = v.text("module_id")?;
                    if t.is_empty() {
                        return Err(invalid("module_id", "empty"));
                    }
                    module_id = Some(t.to_string());
                }
                "digest" => {
                    let t = v.text("digest")?;
                    if t != "SHA384" {
                        return Err(invalid("digest", format!("{t:?}; only SHA384 is defined")));
                    }
                    digest = Some(t.to_string());
                }
                "timestamp" => {
                    let t = v.uint("timestamp")?;
                    if t == 0 {
                        return Err(invalid("timestamp", "zero"));
                    }
                    timestamp = Some(t);
                }
                "pcrs" => {
                    let mut out = BTreeMap::new();
                    let entries = v.map("pcrs")?;
                    if entries.is_empty() || entries.len() > 32 {
                        return Err(invalid(
                            "pcrs",
                            format!("{} entries, 1..=32", entries.len()),
                        ));
                    }
                    for (i, val) in entries {
                        let i = i.uint("PCR index")?;
                        let i = u8::try_from(i)
                            .ok()
                            .filter(|i| *i < 32)
                            .ok_or_else(|| invalid("PCR index", format!("{i} is not below 32")))?;
                        let val = val.bytes("PCR value")?;
                        if ![32, 48, 64].contains(&val.len()) {
                            return Err(invalid(
                                "PCR value",
                                format!("PCR{i} is {} bytes, not 32/48/64", val.len()),
                            ));
                        }
                        out.insert(i, val.to_vec());
                    }
                    pcrs = Some(out);
                }
                "certificate" => certificate = Some(bounded(v, "certificate", 1024)?),
                "cabundle" => {
                    let items = v.array("cabundle")?;
                    if items.is_empty() {
                        return Err(invalid("cabundle", "empty"));
                    }
                    cabundle = Some(
                        items
                            .iter()
                            .map(|c| bounded(c, "cabundle entry", 1024))
                            .collect::<Result<Vec<_>, _>>()?,
                    );
                }
                "public_key" => public_key = optional(v, "public_key", 1024)?,
                "user_data" => user_data = optional(v, "user_data", 512)?,
                "nonce" => nonce = optional(v, "nonce", 512)?,
                other => {
                    return Err(invalid(
                        "attestation document",
                        format!("unknown field {other:?}"),
                    ));
                }
            }
        }
        let missing = |f: &'static str| invalid(f, "missing");
        Ok(AttestationDoc {
            module_id: module_id.ok_or_else(|| missing("module_id"))?,
            digest: digest.ok_or_else(|| missing("digest"))?,
            timestamp_ms: timestamp.ok_or_else(|| missing("timestamp"))?,
            pcrs: pcrs.ok_or_else(|| missing("pcrs"))?,
            certificate: certificate.ok_or_else(|| missing("certificate"))?,
            cabundle: cabundle.ok_or_else(|| missing("cabundle"))?,
            public_key,
            user_data,
            nonce,
            cose,
        })
    }

    /// A debug-mode enclave reports PCR0, PCR1 and PCR2 as all zeros.
    pub fn is_debug(&self) -> bool {
        (0u8..=2).all(|i| self.pcrs.get(&i).is_some_and(|v| v.iter().all(|b| *b == 0)))
    }
}

/// JSON evidence for `nitro`: the document in standard base64, either as
/// the JSON string itself or as `{"attestation_document": "<base64>"}`.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(untagged)]
pub enum NitroEvidence {
    Raw(String),
    Object { attestation_document: String },
}

/// Parses the JSON evidence and the document inside it.
pub fn parse_json(bytes: &[u8]) -> Result<AttestationDoc, ParseError> {
    use base64::Engine as _;
    let ev: NitroEvidence =
        serde_json::from_slice(bytes).map_err(|e| ParseError::Json(e.to_string()))?;
    let (NitroEvidence::Raw(b64)
    | NitroEvidence::Object {
        attestation_document: b64,
    }) = ev;
    let doc = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|e| invalid("attestation_document", format!("not base64: {e}")))?;
    AttestationDoc::parse(&doc)
}

/// Encodes a payload map for the simulator and tests (fields in AWS's
/// order).
pub fn encode_payload(doc: &AttestationDoc) -> Vec<u8> {
    use cbor::enc;
    let mut out = Vec::new();
    enc::map(&mut out, 9);
    enc::text(&mut out, "module_id");
    enc::text(&mut out, &doc.module_id);
    enc::text(&mut out, "digest");
    enc::text(&mut out, &doc.digest);
    enc::text(&mut out, "timestamp");
    enc::head(&mut out, 0, doc.timestamp_ms);
    enc::text(&mut out, "pcrs");
    enc::map(&mut out, doc.pcrs.len());
    for (i, v) in &doc.pcrs {
        enc::head(&mut out, 0, u64::from(*i));
        enc::bytes(&mut out, v);
    }
    enc::text(&mut out, "certificate");
    enc::bytes(&mut out, &doc.certificate);
    enc::text(&mut out, "cabundle");
    enc::array(&mut out, doc.cabundle.len());
    for c in &doc.cabundle {
        enc::bytes(&mut out, c);
    }
    for (name, v) in [
        ("public_key", &doc.public_key),
        ("user_data", &doc.user_data),
        ("nonce", &doc.nonce),
    ] {
        enc::text(&mut out, name);
        match v {
            Some(b) => enc::bytes(&mut out, b),
            None => enc::null(&mut out),
        }
    }
    out
}
