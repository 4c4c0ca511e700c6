//! COSE_Sign1 (RFC 9052 §4.2) as attestation tokens use it: Nitro
//! attestation documents and both halves of an Arm CCA token.
//!
//! Parsing keeps the protected header and the payload as the exact bytes
//! received, so that [`CoseSign1::to_be_signed`] rebuilds the
//! `Sig_structure` over them and nothing is re-encoded.

use crate::ParseError;
use crate::cbor::{self, Value};

/// COSE algorithm ES256 (ECDSA P-256, SHA-256).
pub const ALG_ES256: i64 = -7;
/// COSE algorithm ES384 (ECDSA P-384, SHA-384).
pub const ALG_ES384: i64 = -35;
/// COSE algorithm ES512 (ECDSA P-521, SHA-512).
pub const ALG_ES512: i64 = -36;
/// The CBOR tag of a COSE_Sign1 message.
pub const TAG_COSE_SIGN1: u64 = 18;

/// A parsed COSE_Sign1 message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoseSign1 {
    /// The serialised protected header, as received.
    pub protected: Vec<u8>,
    /// The `alg` from the protected header.
    pub alg: i64,
    /// The payload, as received.
    pub payload: Vec<u8>,
    /// The signature bytes.
    pub signature: Vec<u8>,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ParseError {
    ParseError::InvalidField {
        field,
        reason: reason.into(),
    }
}

impl CoseSign1 {
    /// Parses a COSE_Sign1 message, tagged (18) or untagged.
    pub fn parse(buf: &[u8]) -> Result<Self, ParseError> {
        Self::from_value(&cbor::decode(buf)?)
    }

    /// From an already decoded item (for tokens that nest messages).
    pub fn from_value(v: &Value<'_>) -> Result<Self, ParseError> {
        let v = match v {
            Value::Tag(TAG_COSE_SIGN1, inner) => inner.as_ref(),
            Value::Tag(t, _) => {
                return Err(invalid("COSE_Sign1", format!("unexpected CBOR tag {t}")));
            }
            other => other,
        };
        let [protected, unprotected, payload, signature] = v.array("COSE_Sign1")? else {
            return Err(invalid("COSE_Sign1", "expected an array of 4 elements"));
        };
        let protected = protected.bytes("COSE_Sign1 protected header")?;
        let header = cbor::decode(protected)?;
        let entries = header.map("COSE_Sign1 protected header")?;
        let mut alg = None;
        for (k, val) in entries {
            match k.as_i64() {
                Some(1) => {
                    alg = Some(val.as_i64().ok_or_else(|| {
                        invalid(
                            "COSE alg",
                            "only integer algorithm identifiers are accepted",
                        )
                    })?)
                }
                // crit: this parser understands no extension.
                Some(2) => return Err(invalid("COSE crit", "critical headers are not supported")),
                _ => {}
            }
        }
        let alg = alg.ok_or_else(|| invalid("COSE alg", "missing from the protected header"))?;
        let unprotected = unprotected.map("COSE_Sign1 unprotected header")?;
        if unprotected.iter().any(|(k, _)| k.as_i64() == Some(1)) {
            return Err(invalid(
                "COSE alg",
                "the algorithm must be in the protected header only",
            ));
        }
        let payload = match payload {
            Value::Bytes(b) => *b,
            Value::Null => {
                return Err(invalid(
                    "COSE payload",
                    "detached payloads are not accepted",
                ));
            }
            _ => return Err(invalid("COSE payload", "expected a byte string")),
        };
        Ok(CoseSign1 {
            protected: protected.to_vec(),
            alg,
            payload: payload.to_vec(),
            signature: signature.bytes("COSE signature")?.to_vec(),
        })
    }

    /// The `Sig_structure` for `Signature1` with empty external AAD: the
    /// bytes the signature covers.
    pub fn to_be_signed(&self) -> Vec<u8> {
        sig_structure(&self.protected, &self.payload)
    }

    /// Serialises the message (tagged when `tagged`).
    pub fn encode(&self, tagged: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.payload.len().saturating_add(160));
        if tagged {
            cbor::enc::tag(&mut out, TAG_COSE_SIGN1);
        }
        cbor::enc::array(&mut out, 4);
        cbor::enc::bytes(&mut out, &self.protected);
        cbor::enc::map(&mut out, 0);
        cbor::enc::bytes(&mut out, &self.payload);
        cbor::enc::bytes(&mut out, &self.signature);
        out
    }
}

/// `["Signature1", protected, h'', payload]`.
pub fn sig_structure(protected: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        payload
            .len()
            .saturating_add(protected.len())
            .saturating_add(24),
    );
    cbor::enc::array(&mut out, 4);
    cbor::enc::text(&mut out, "Signature1");
    cbor::enc::bytes(&mut out, protected);
    cbor::enc::bytes(&mut out, &[]);
    cbor::enc::bytes(&mut out, payload);
    out
}

/// The serialised protected header `{1: alg}`.
pub fn protected_header(alg: i64) -> Vec<u8> {
    let mut out = Vec::new();
    cbor::enc::map(&mut out, 1);
    cbor::enc::int(&mut out, 1);
    cbor::enc::int(&mut out, alg);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_and_parses_back() {
        let msg = CoseSign1 {
            protected: protected_header(ALG_ES384),
            alg: ALG_ES384,
            payload: b"payload".to_vec(),
            signature: vec![7; 96],
        };
        for tagged in [false, true] {
            assert_eq!(CoseSign1::parse(&msg.encode(tagged)).unwrap(), msg);
        }
        let tbs = msg.to_be_signed();
        assert_eq!(&tbs[..12], b"\x84\x6aSignature1");
    }

    #[test]
    fn refuses_malformed_messages() {
        let mut no_alg = Vec::new();
        cbor::enc::array(&mut no_alg, 4);
        cbor::enc::bytes(&mut no_alg, &[0xa0]);
        cbor::enc::map(&mut no_alg, 0);
        cbor::enc::bytes(&mut no_alg, b"p");
        cbor::enc::bytes(&mut no_alg, b"s");
        assert!(CoseSign1::parse(&no_alg).is_err());
        let mut three = Vec::new();
        cbor::enc::array(&mut three, 3);
        cbor::enc::bytes(&mut three, &protected_header(ALG_ES384));
        cbor::enc::map(&mut three, 0);
        cbor::enc::bytes(&mut three, b"p");
        assert!(CoseSign1::parse(&three).is_err());
    }
}
