//! TPM 2.0 attestation structures (TPM 2.0 Library, Part 2), big-endian:
//!
//! * `TPMS_ATTEST` of type `TPM_ST_ATTEST_QUOTE`: the signed quote, with the
//!   qualifying data (`extraData`, where the verifier's nonce goes), the
//!   clock and reset counters, and `TPMS_QUOTE_INFO` (the PCR selection and
//!   the digest over the selected PCR values);
//! * `TPMT_SIGNATURE`: RSASSA-PKCS1-v1_5, RSA-PSS or ECDSA, with the hash;
//! * `TPMT_PUBLIC` of an attestation key (RSA or ECC), for evidence that
//!   carries the AK in TPM form (go-tpm-tools).
//!
//! Strict: the magic and type are checked, lengths are exact, selections
//! are bounded, and nothing may follow a structure. Parsing proves nothing:
//! `veil_verifier::tpm` checks the signature over the bytes as received.

use crate::ParseError;
use crate::reader::Reader;

/// `TPM_GENERATED_VALUE`: every TPM-made attestation starts with it.
pub const TPM_GENERATED: u32 = 0xff54_4347;
/// `TPM_ST_ATTEST_QUOTE`.
pub const TPM_ST_ATTEST_QUOTE: u16 = 0x8018;

pub const TPM_ALG_RSA: u16 = 0x0001;
pub const TPM_ALG_SHA1: u16 = 0x0004;
pub const TPM_ALG_SHA256: u16 = 0x000B;
pub const TPM_ALG_SHA384: u16 = 0x000C;
pub const TPM_ALG_SHA512: u16 = 0x000D;
pub const TPM_ALG_NULL: u16 = 0x0010;
pub const TPM_ALG_RSASSA: u16 = 0x0014;
pub const TPM_ALG_RSAPSS: u16 = 0x0016;
pub const TPM_ALG_ECDSA: u16 = 0x0018;
pub const TPM_ALG_ECC: u16 = 0x0023;

pub const TPM_ECC_NIST_P256: u16 = 0x0003;
pub const TPM_ECC_NIST_P384: u16 = 0x0004;

/// PCRs a TPM has (a PC Client TPM: 24).
pub const PCR_COUNT: usize = 24;

/// The digest size of a TPM hash algorithm.
pub fn digest_size(alg: u16) -> Option<usize> {
    match alg {
        TPM_ALG_SHA1 => Some(20),
        TPM_ALG_SHA256 => Some(32),
        TPM_ALG_SHA384 => Some(48),
        TPM_ALG_SHA512 => Some(64),
        _ => None,
    }
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ParseError {
    ParseError::InvalidField {
        field,
        reason: reason.into(),
    }
}

/// A `TPM2B_*`: a big-endian `u16` size, then that many bytes.
fn tpm2b<'a>(r: &mut Reader<'a>, field: &'static str) -> Result<&'a [u8], ParseError> {
    let n = r.u16_be(field)?;
    r.take(field, usize::from(n))
}

/// One bank of a PCR selection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcrSelection {
    /// The bank's hash algorithm.
    pub hash: u16,
    /// Selected PCR indices, ascending.
    pub pcrs: Vec<u8>,
}

/// `TPMS_CLOCK_INFO`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockInfo {
    pub clock: u64,
    pub reset_count: u32,
    pub restart_count: u32,
    pub safe: bool,
}

/// A parsed `TPMS_ATTEST` quote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    /// `qualifiedSigner` (a TPM2B_NAME).
    pub qualified_signer: Vec<u8>,
    /// `extraData`: the qualifying data (the nonce binding).
    pub extra_data: Vec<u8>,
    pub clock_info: ClockInfo,
    pub firmware_version: u64,
    pub pcr_select: Vec<PcrSelection>,
    /// `pcrDigest`: the hash of the selected PCR values, in selection order.
    pub pcr_digest: Vec<u8>,
}

fn pcr_selection(r: &mut Reader<'_>) -> Result<Vec<PcrSelection>, ParseError> {
    let count = r.u32_be("pcrSelect.count")?;
    // TPM2's HASH_COUNT bound; a real quote has one entry per bank.
    if count > 16 {
        return Err(invalid("pcrSelect.count", format!("{count} banks")));
    }
    let mut out = Vec::new();
    for _ in 0..count {
        let hash = r.u16_be("pcrSelect.hash")?;
        if digest_size(hash).is_none() {
            return Err(invalid("pcrSelect.hash", format!("algorithm {hash:#06x}")));
        }
        let size = r.u8("pcrSelect.sizeofSelect")?;
        if !(1..=4).contains(&size) {
            return Err(invalid(
                "pcrSelect.sizeofSelect",
                format!("{size} (a PC Client TPM selects with 3 bytes; at most 4)"),
            ));
        }
        let bits = r.take("pcrSelect.pcrSelect", usize::from(size))?;
        let mut pcrs = Vec::new();
        for (byte, b) in bits.iter().enumerate() {
            for bit in 0..8u8 {
                if b & (1 << bit) != 0 {
                    let index = u8::try_from(byte)
                        .ok()
                        .and_then(|x| x.checked_mul(8))
                        .and_then(|x| x.checked_add(bit))
                        .ok_or_else(|| invalid("pcrSelect", "index out of range"))?;
                    if usize::from(index) >= PCR_COUNT {
                        return Err(invalid(
                            "pcrSelect",
                            format!("PCR {index} (a TPM has {PCR_COUNT})"),
                        ));
                    }
                    pcrs.push(index);
                }
            }
        }
        if out.iter().any(|s: &PcrSelection| s.hash == hash) {
            return Err(invalid("pcrSelect.hash", "a bank is selected twice"));
        }
        out.push(PcrSelection { hash, pcrs });
    }
    Ok(out)
}

impl Quote {
    /// Parses a `TPMS_ATTEST` that must be a quote.
    pub fn parse(bytes: &[u8]) -> Result<Self, ParseError> {
        let mut r = Reader::new(bytes);
        let magic = r.u32_be("magic")?;
        if magic != TPM_GENERATED {
            return Err(invalid(
                "magic",
                format!("{magic:#010x}, expected TPM_GENERATED_VALUE"),
            ));
        }
        let ty = r.u16_be("type")?;
        if ty != TPM_ST_ATTEST_QUOTE {
            return Err(invalid(
                "type",
                format!("{ty:#06x}, expected TPM_ST_ATTEST_QUOTE"),
            ));
        }
        let qualified_signer = tpm2b(&mut r, "qualifiedSigner")?.to_vec();
        let extra_data = tpm2b(&mut r, "extraData")?.to_vec();
        if extra_data.len() > 64 {
            return Err(invalid("extraData", "longer than a TPM2B_DATA (64 bytes)"));
        }
        let clock = r.u64_be("clockInfo.clock")?;
        let reset_count = r.u32_be("clockInfo.resetCount")?;
        let restart_count = r.u32_be("clockInfo.restartCount")?;
        let safe = match r.u8("clockInfo.safe")? {
            0 => false,
            1 => true,
            other => {
                return Err(invalid(
                    "clockInfo.safe",
                    format!("{other} (a TPMI_YES_NO)"),
                ));
            }
        };
        let firmware_version = r.u64_be("firmwareVersion")?;
        let pcr_select = pcr_selection(&mut r)?;
        let pcr_digest = tpm2b(&mut r, "pcrDigest")?.to_vec();
        r.finish("TPMS_ATTEST")?;
        Ok(Quote {
            qualified_signer,
            extra_data,
            clock_info: ClockInfo {
                clock,
                reset_count,
                restart_count,
                safe,
            },
            firmware_version,
            pcr_select,
            pcr_digest,
        })
    }
}

/// A parsed `TPMT_SIGNATURE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signature {
    /// RSASSA-PKCS1-v1_5 with `hash`.
    RsaSsa { hash: u16, sig: Vec<u8> },
    /// RSA-PSS with `hash`.
    RsaPss { hash: u16, sig: Vec<u8> },
    /// ECDSA with `hash`; `r` and `s` big-endian.
    Ecdsa { hash: u16, r: Vec<u8>, s: Vec<u8> },
}

impl Signature {
    pub fn parse(bytes: &[u8]) -> Result<Self, ParseError> {
        let mut r = Reader::new(bytes);
        let alg = r.u16_be("sigAlg")?;
        let hash = r.u16_be("signature.hash")?;
        if digest_size(hash).is_none() {
            return Err(invalid("signature.hash", format!("algorithm {hash:#06x}")));
        }
        let sig = match alg {
            TPM_ALG_RSASSA => Signature::RsaSsa {
                hash,
                sig: tpm2b(&mut r, "signature.sig")?.to_vec(),
            },
            TPM_ALG_RSAPSS => Signature::RsaPss {
                hash,
                sig: tpm2b(&mut r, "signature.sig")?.to_vec(),
            },
            TPM_ALG_ECDSA => Signature::Ecdsa {
                hash,
                r: tpm2b(&mut r, "signature.r")?.to_vec(),
                s: tpm2b(&mut r, "signature.s")?.to_vec(),
            },
            other => return Err(ParseError::UnsupportedSignatureAlgorithm(u32::from(other))),
        };
        r.finish("TPMT_SIGNATURE")?;
        Ok(sig)
    }

    pub fn hash(&self) -> u16 {
        match self {
            Signature::RsaSsa { hash, .. }
            | Signature::RsaPss { hash, .. }
            | Signature::Ecdsa { hash, .. } => *hash,
        }
    }
}

/// The key of a `TPMT_PUBLIC`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicKey {
    /// RSA: the modulus and the public exponent (0 in TPM form means 65537).
    Rsa { modulus: Vec<u8>, exponent: u32 },
    /// ECC: the curve (`TPM_ECC_*`) and the point.
    Ecc { curve: u16, x: Vec<u8>, y: Vec<u8> },
}

/// The symmetric (NULL for a signing key) and scheme fields that RSA and
/// ECC parameters start with.
fn signing_parameters(r: &mut Reader<'_>) -> Result<(), ParseError> {
    let sym = r.u16_be("parameters.symmetric")?;
    if sym != TPM_ALG_NULL {
        return Err(invalid(
            "parameters.symmetric",
            "not TPM_ALG_NULL for a signing key",
        ));
    }
    let scheme = r.u16_be("parameters.scheme")?;
    if scheme != TPM_ALG_NULL {
        r.u16_be("parameters.scheme.hash")?;
    }
    Ok(())
}

/// A parsed `TPMT_PUBLIC` (an attestation key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Public {
    pub name_alg: u16,
    pub object_attributes: u32,
    pub key: PublicKey,
}

/// `TPMA_OBJECT`: `sign` (bit 18) and `restricted` (bit 16), which an AK
/// must have, and `fixedTPM` (bit 1).
pub const TPMA_OBJECT_FIXED_TPM: u32 = 1 << 1;
pub const TPMA_OBJECT_RESTRICTED: u32 = 1 << 16;
pub const TPMA_OBJECT_SIGN: u32 = 1 << 18;

impl Public {
    pub fn parse(bytes: &[u8]) -> Result<Self, ParseError> {
        let mut r = Reader::new(bytes);
        let ty = r.u16_be("type")?;
        let name_alg = r.u16_be("nameAlg")?;
        let object_attributes = r.u32_be("objectAttributes")?;
        let _auth_policy = tpm2b(&mut r, "authPolicy")?;
        let key = match ty {
            TPM_ALG_RSA => {
                // TPMS_RSA_PARMS: symmetric, scheme, keyBits, exponent.
                signing_parameters(&mut r)?;
                let _bits = r.u16_be("parameters.keyBits")?;
                let exponent = r.u32_be("parameters.exponent")?;
                let modulus = tpm2b(&mut r, "unique.rsa")?.to_vec();
                PublicKey::Rsa { modulus, exponent }
            }
            TPM_ALG_ECC => {
                signing_parameters(&mut r)?;
                let curve = r.u16_be("parameters.curveID")?;
                let kdf = r.u16_be("parameters.kdf")?;
                if kdf != TPM_ALG_NULL {
                    r.u16_be("parameters.kdf.hash")?;
                }
                let x = tpm2b(&mut r, "unique.ecc.x")?.to_vec();
                let y = tpm2b(&mut r, "unique.ecc.y")?.to_vec();
                PublicKey::Ecc { curve, x, y }
            }
            other => {
                return Err(invalid(
                    "type",
                    format!("{other:#06x} (only RSA and ECC keys)"),
                ));
            }
        };
        r.finish("TPMT_PUBLIC")?;
        Ok(Public {
            name_alg,
            object_attributes,
            key,
        })
    }
}

/// The CoCo `tpm` evidence JSON: `ak_public` (base64 DER
/// SubjectPublicKeyInfo), `tpm_quote` {`message` (base64 `TPMS_ATTEST`),
/// `signature` (base64 `TPMT_SIGNATURE`), `pcrs` (24 hex SHA-256 values)},
/// and optionally `ak_cert` (base64 DER) and `event_log` (base64 TCG2 log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TpmEvidence {
    pub ak_public: Vec<u8>,
    pub message: Vec<u8>,
    pub signature: Vec<u8>,
    /// SHA-256 PCRs 0–23.
    pub pcrs: Vec<Vec<u8>>,
    pub ak_cert: Option<Vec<u8>>,
    pub event_log: Option<Vec<u8>>,
}

impl TpmEvidence {
    pub fn parse_json(bytes: &[u8]) -> Result<Self, ParseError> {
        use base64::Engine;
        use serde_json::Value;
        let json = |m: String| ParseError::Json(m);
        let v: Value = serde_json::from_slice(bytes).map_err(|e| json(e.to_string()))?;
        let obj = v.as_object().ok_or_else(|| json("not an object".into()))?;
        for k in obj.keys() {
            if !["ak_public", "tpm_quote", "ak_cert", "event_log"].contains(&k.as_str()) {
                return Err(json(format!("unknown field {k:?}")));
            }
        }
        let b64 = |v: Option<&Value>, what: &str| -> Result<Vec<u8>, ParseError> {
            let s = v
                .and_then(Value::as_str)
                .ok_or_else(|| json(format!("{what} is missing or not a string")))?;
            base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(|e| json(format!("{what}: {e}")))
        };
        let q = obj
            .get("tpm_quote")
            .and_then(Value::as_object)
            .ok_or_else(|| json("no tpm_quote object".into()))?;
        for k in q.keys() {
            if !["message", "signature", "pcrs"].contains(&k.as_str()) {
                return Err(json(format!("unknown field {k:?} in tpm_quote")));
            }
        }
        let pcrs = q
            .get("pcrs")
            .and_then(Value::as_array)
            .ok_or_else(|| json("tpm_quote.pcrs is not an array".into()))?
            .iter()
            .map(|p| {
                p.as_str()
                    .and_then(|h| hex::decode(h).ok())
                    .ok_or_else(|| json("tpm_quote.pcrs holds a non-hex value".into()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TpmEvidence {
            ak_public: b64(obj.get("ak_public"), "ak_public")?,
            message: b64(q.get("message"), "tpm_quote.message")?,
            signature: b64(q.get("signature"), "tpm_quote.signature")?,
            pcrs,
            ak_cert: match obj.get("ak_cert") {
                Some(c) => Some(b64(Some(c), "ak_cert")?),
                None => None,
            },
            event_log: match obj.get("event_log") {
                Some(c) => Some(b64(Some(c), "event_log")?),
                None => None,
            },
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use base64::Engine;
    use proptest::prelude::*;

    /// The swtpm quote of Trustee's test data.
    fn trustee() -> Option<(Vec<u8>, Vec<u8>)> {
        let dir = veil_testkit::vectors()?;
        let v: serde_json::Value =
            serde_json::from_slice(&veil_testkit::read(&dir, "tpm/trustee/tpm_evidence.json"))
                .unwrap();
        let b64 = base64::engine::general_purpose::STANDARD;
        Some((
            b64.decode(v["tpm_quote"]["message"].as_str().unwrap())
                .unwrap(),
            b64.decode(v["tpm_quote"]["signature"].as_str().unwrap())
                .unwrap(),
        ))
    }

    #[test]
    fn parses_the_coco_json() {
        let Some(dir) = veil_testkit::vectors() else {
            return;
        };
        let bytes = veil_testkit::read(&dir, "tpm/trustee/tpm_evidence.json");
        let e = TpmEvidence::parse_json(&bytes).unwrap();
        assert_eq!(e.pcrs.len(), 24);
        assert!(e.ak_cert.is_none());
        let mut v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        v["extra"] = 1.into();
        assert!(TpmEvidence::parse_json(v.to_string().as_bytes()).is_err());
    }

    #[test]
    fn parses_a_real_quote() {
        let Some((msg, sig)) = trustee() else { return };
        let q = Quote::parse(&msg).unwrap();
        assert_eq!(q.extra_data.len(), 64);
        assert_eq!(q.firmware_version, 0x2019_1023_0016_3636);
        assert_eq!(q.pcr_select.len(), 1);
        assert_eq!(q.pcr_select[0].hash, TPM_ALG_SHA256);
        assert_eq!(q.pcr_select[0].pcrs, (0..24).collect::<Vec<u8>>());
        assert_eq!(q.pcr_digest.len(), 32);
        let s = Signature::parse(&sig).unwrap();
        assert!(
            matches!(s, Signature::RsaSsa { hash: TPM_ALG_SHA256, ref sig } if sig.len() == 256)
        );
        // Strictness: a trailing byte, a wrong magic, a bad `safe`.
        let mut long = msg.clone();
        long.push(0);
        assert!(Quote::parse(&long).is_err());
        let mut bad = msg.clone();
        bad[0] ^= 1;
        assert!(Quote::parse(&bad).is_err());
        for cut in 0..msg.len() {
            assert!(Quote::parse(&msg[..cut]).is_err());
        }
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = Quote::parse(&bytes);
            let _ = Signature::parse(&bytes);
            let _ = Public::parse(&bytes);
        }
    }
}
