//! What the store keeps for a KBS session once its challenge is used,
//! keyed by its expiry and nonce (`store::session_key`): one record written per handshake (the write that
//! makes the challenge single-use across replicas), read back by
//! cookie-authenticated resource requests, which CoCo's client makes.
//!
//! The record of a successful attestation holds the EAR token, which is
//! most of its size. Sessions live for `session_ttl_secs` (300 s by
//! default), so under steady load the store holds hundreds of thousands
//! of them, and redb gives a value larger than its 4 KiB page a leaf of
//! 8 KiB of its own. The token of SNP evidence is ≈ 4.2 KB in its compact
//! form (base64 of ≈ 3 KB of JSON claims), so the record keeps its three
//! segments decoded: ≈ 3.1 KB, one page. (Compressing them with zstd
//! level 1 made ≈ 1.6 KB records but no smaller store: sessions are
//! written in key order, the B-tree's leaves split half full and keep one
//! record each, and compression cost 3 % of the broker's CPU.) The token
//! is rebuilt byte for byte on read (the record is written from the
//! segments the token was encoded from, `token::SignedToken`, and
//! base64url without padding is canonical for given bytes) and verified as
//! before, so a record changed in the store is caught by the token's
//! signature.
//!
//! Encoding (all integers big-endian):
//!
//! ```text
//! consumed:  0x01 | expires: i64
//! attested:  0x02 | expires: i64 | len(header): u16 | header
//!                 | len(signature): u16 | signature
//!                 | len(payload): u32 | payload
//! ```
//!
//! Records written by earlier versions (JSON, `{"state": …}`) are still
//! read, so that a rolling upgrade keeps the sessions of the old replicas.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use serde::Deserialize;

const CONSUMED: u8 = 0x01;
const ATTESTED: u8 = 0x02;

/// A session's state.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "state", rename_all = "lowercase", deny_unknown_fields)]
pub(crate) enum Session {
    /// The challenge was used by evidence that failed verification.
    Consumed { expires: i64 },
    /// Attestation succeeded: the token serves cookie-authenticated reads.
    Attested { token: String, expires: i64 },
}

/// Why a record could not be written or read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum RecordError {
    #[error("the token is not a compact JWS with canonical base64url segments")]
    Token,
    #[error("a token segment is too long for a session record")]
    TooLong,
    #[error("the session record is malformed: {0}")]
    Malformed(&'static str),
}

impl Session {
    /// The stored form, from a session as [`Session::decode`] returns it
    /// (its inverse, for the tests; the broker writes records with
    /// [`Session::consumed_record`] and [`Session::attested_record`]). A
    /// token whose segments would not decode canonically is refused.
    #[cfg(test)]
    pub(crate) fn encode(&self) -> Result<Vec<u8>, RecordError> {
        match self {
            Session::Consumed { expires } => Ok(Self::consumed_record(*expires)),
            Session::Attested { token, expires } => {
                let mut parts = token.split('.');
                let (Some(h), Some(p), Some(s), None) =
                    (parts.next(), parts.next(), parts.next(), parts.next())
                else {
                    return Err(RecordError::Token);
                };
                let decode = |seg: &str| B64URL.decode(seg).map_err(|_| RecordError::Token);
                let (header, payload, sig) = (decode(h)?, decode(p)?, decode(s)?);
                Self::attested_record(*expires, &header, &payload, &sig)
            }
        }
    }

    /// The stored form of [`Session::Consumed`].
    pub(crate) fn consumed_record(expires: i64) -> Vec<u8> {
        let mut out = Vec::with_capacity(9);
        out.push(CONSUMED);
        out.extend_from_slice(&expires.to_be_bytes());
        out
    }

    /// The stored form of [`Session::Attested`] from the token's segments
    /// before base64url, as the broker signed them: the same bytes as
    /// [`Session::encode`] gives for the token, without decoding it.
    pub(crate) fn attested_record(
        expires: i64,
        header: &[u8],
        payload: &[u8],
        sig: &[u8],
    ) -> Result<Vec<u8>, RecordError> {
        if header.is_empty() || payload.is_empty() || sig.is_empty() {
            return Err(RecordError::Token);
        }
        let len16 = |v: &[u8]| u16::try_from(v.len()).map_err(|_| RecordError::TooLong);
        let len32 = u32::try_from(payload.len()).map_err(|_| RecordError::TooLong)?;
        let mut plain = Vec::with_capacity(17 + header.len() + sig.len() + payload.len());
        plain.push(ATTESTED);
        plain.extend_from_slice(&expires.to_be_bytes());
        plain.extend_from_slice(&len16(header)?.to_be_bytes());
        plain.extend_from_slice(header);
        plain.extend_from_slice(&len16(sig)?.to_be_bytes());
        plain.extend_from_slice(sig);
        plain.extend_from_slice(&len32.to_be_bytes());
        plain.extend_from_slice(payload);
        Ok(plain)
    }

    /// Reads a stored record (this format, or the JSON of earlier
    /// versions).
    pub(crate) fn decode(raw: &[u8]) -> Result<Session, RecordError> {
        let Some((&tag, rest)) = raw.split_first() else {
            return Err(RecordError::Malformed("empty"));
        };
        if tag == b'{' {
            return serde_json::from_slice(raw).map_err(|_| RecordError::Malformed("bad JSON"));
        }
        let (expires, rest) = rest
            .split_first_chunk::<8>()
            .ok_or(RecordError::Malformed("truncated expiry"))?;
        let expires = i64::from_be_bytes(*expires);
        match tag {
            CONSUMED if rest.is_empty() => Ok(Session::Consumed { expires }),
            CONSUMED => Err(RecordError::Malformed("trailing bytes")),
            ATTESTED => {
                let (header, rest) = take_part::<2>(rest)?;
                let (sig, rest) = take_part::<2>(rest)?;
                let (payload, rest) = take_part::<4>(rest)?;
                if !rest.is_empty() {
                    return Err(RecordError::Malformed("trailing bytes"));
                }
                if header.is_empty() || sig.is_empty() || payload.is_empty() {
                    return Err(RecordError::Malformed("empty token segment"));
                }
                let token = format!(
                    "{}.{}.{}",
                    B64URL.encode(header),
                    B64URL.encode(payload),
                    B64URL.encode(sig)
                );
                Ok(Session::Attested { token, expires })
            }
            _ => Err(RecordError::Malformed("unknown record kind")),
        }
    }
}

/// Splits `len | bytes[len]` off the front of `buf`, `len` being an
/// unsigned big-endian integer of `N` bytes (2 or 4).
fn take_part<const N: usize>(buf: &[u8]) -> Result<(&[u8], &[u8]), RecordError> {
    let (len, rest) = buf
        .split_first_chunk::<N>()
        .ok_or(RecordError::Malformed("truncated token"))?;
    let len = len
        .iter()
        .try_fold(0usize, |n, &b| {
            n.checked_mul(256)?.checked_add(usize::from(b))
        })
        .ok_or(RecordError::Malformed("token segment too long"))?;
    if rest.len() < len {
        return Err(RecordError::Malformed("truncated token"));
    }
    Ok(rest.split_at(len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn token(payload: &str) -> String {
        format!(
            "{}.{}.{}",
            B64URL.encode(r#"{"alg":"ES256","typ":"JWT","kid":"k"}"#),
            B64URL.encode(payload),
            B64URL.encode([7u8; 64])
        )
    }

    #[test]
    fn round_trips_a_token_in_fewer_bytes() {
        // A claims set shaped like an SNP token's: field names repeat,
        // hex strings are half zeros.
        let claims = format!(
            r#"{{"eat_profile":"tag:ietf.org,2026:rats/ear#04","submods":{{"cpu0":{{"ear_status":"affirming","ear_attester_claims":{{"measurement":"{m}","host_data":"{z}","id_key_digest":"{z}","author_key_digest":"{z}","reported_tcb":{{"bootloader":9,"tee":0,"snp":23,"microcode":72}},"committed_tcb":{{"bootloader":9,"tee":0,"snp":23,"microcode":72}},"launch_tcb":{{"bootloader":9,"tee":0,"snp":23,"microcode":72}}}}}}}}}}"#,
            m = "3a54fbcea2798f2a22832ed68199297f3aba866d65198e95b1cbbd1e67411d60da7a5d254aad80b95fc94f73d95768c3",
            z = "0".repeat(96)
        );
        let t = token(&claims);
        let s = Session::Attested {
            token: t.clone(),
            expires: 1_700_000_000,
        };
        let raw = s.encode().unwrap();
        assert_eq!(raw[0], ATTESTED);
        // Base64 makes 4 characters of 3 bytes: the record is a quarter
        // smaller than the token.
        assert!(
            raw.len() * 4 < t.len() * 3 + 4 * 16,
            "record of {} bytes for a {}-byte token",
            raw.len(),
            t.len()
        );
        assert_eq!(Session::decode(&raw).unwrap(), s);
        let c = Session::Consumed { expires: -5 };
        let raw = c.encode().unwrap();
        assert_eq!(raw, [&[CONSUMED][..], &(-5i64).to_be_bytes()].concat());
        assert_eq!(Session::decode(&raw).unwrap(), c);
    }

    #[test]
    fn reads_records_of_earlier_versions() {
        let old = br#"{"state":"attested","token":"a.b.c","expires":9}"#;
        assert_eq!(
            Session::decode(old).unwrap(),
            Session::Attested {
                token: "a.b.c".into(),
                expires: 9
            }
        );
        let old = br#"{"state":"consumed","expires":9}"#;
        assert_eq!(
            Session::decode(old).unwrap(),
            Session::Consumed { expires: 9 }
        );
        assert!(Session::decode(br#"{"state":"other","expires":9}"#).is_err());
    }

    #[test]
    fn refuses_tokens_that_would_not_round_trip() {
        for t in [
            "a.b",
            "a.b.c.d",
            // Non-canonical base64url: the last character carries bits
            // that a re-encoding would drop.
            "eyJ9.eyJ9.AB",
            "e+J9.eyJ9.AA",
            // An empty segment (the record could not be read back).
            ".eyJ9.AA",
            "eyJ9.eyJ9.",
        ] {
            let s = Session::Attested {
                token: t.into(),
                expires: 1,
            };
            assert_eq!(s.encode(), Err(RecordError::Token), "{t}");
        }
    }

    #[test]
    fn refuses_damaged_records() {
        let good = Session::Attested {
            token: token(r#"{"exp":1}"#),
            expires: 1,
        }
        .encode()
        .unwrap();
        assert!(Session::decode(&[]).is_err());
        assert!(Session::decode(&[CONSUMED, 0, 0]).is_err());
        assert!(Session::decode(&[CONSUMED, 0, 0, 0, 0, 0, 0, 0, 0, 1]).is_err());
        assert!(Session::decode(&[9, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
        for cut in 0..good.len() {
            assert!(Session::decode(&good[..cut]).is_err(), "cut at {cut}");
        }
        // An empty token segment (a header of length 0).
        let raw = [&[ATTESTED][..], &[0; 8], &[0, 0, 0, 1, 7, 0, 0, 0, 1, b'x']].concat();
        assert_eq!(
            Session::decode(&raw),
            Err(RecordError::Malformed("empty token segment"))
        );
        // Bytes after the payload.
        assert_eq!(
            Session::decode(&[&good[..], &[0]].concat()),
            Err(RecordError::Malformed("trailing bytes"))
        );
        // A header or signature longer than 65,535 bytes has no length.
        let long = format!(
            "{}.{}.{}",
            B64URL.encode("h".repeat(70_000)),
            B64URL.encode("{}"),
            B64URL.encode([1u8; 64])
        );
        let s = Session::Attested {
            token: long,
            expires: 1,
        };
        assert_eq!(s.encode(), Err(RecordError::TooLong));
    }

    proptest! {
        #[test]
        fn decode_never_panics(raw in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Session::decode(&raw);
        }

        #[test]
        fn damaged_records_fail_or_read_back_exactly(
            at in 0usize..400, byte in any::<u8>(), cut in any::<bool>(),
        ) {
            let good = Session::Attested {
                token: token(r#"{"exp":1,"submods":{"cpu0":{"ear_status":"affirming"}}}"#),
                expires: 1_700_000_000,
            }
            .encode()
            .unwrap();
            let at = at % good.len();
            let mut raw = good.clone();
            if cut {
                raw.truncate(at);
            } else if let Some(b) = raw.get_mut(at) {
                *b = byte;
            }
            // A binary record that still reads is exactly what its session
            // encodes to: nothing was skipped or padded.
            if let Ok(s) = Session::decode(&raw)
                && raw.first() != Some(&b'{')
            {
                prop_assert_eq!(s.encode().unwrap(), raw);
            }
        }

        #[test]
        fn any_token_round_trips(
            header in proptest::collection::vec(any::<u8>(), 1..100),
            payload in proptest::collection::vec(any::<u8>(), 1..3000),
            sig in proptest::collection::vec(any::<u8>(), 1..132),
            expires in any::<i64>(),
        ) {
            let token = format!("{}.{}.{}", B64URL.encode(&header), B64URL.encode(&payload), B64URL.encode(&sig));
            let s = Session::Attested { token, expires };
            let raw = s.encode().unwrap();
            // The record made from the segments as signed is the same.
            prop_assert_eq!(&Session::attested_record(expires, &header, &payload, &sig).unwrap(), &raw);
            prop_assert_eq!(Session::decode(&raw).unwrap(), s);
        }
    }
}
