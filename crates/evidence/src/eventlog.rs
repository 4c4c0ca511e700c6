//! TCG2 crypto-agile event logs, as the TDX CCEL (and CoCo's AAEL appended
//! to it) carries them: a legacy `TCG_PCR_EVENT` holding the
//! `Spec ID Event03` header (algorithms and digest sizes), then
//! `TCG_PCR_EVENT2` records `{index u32, type u32, count u32,
//! [alg u16, digest]…, size u32, data}`. The log may end with padding (all
//! `0xFF` or all `0x00`); anything else after the last event is refused.

use crate::ParseError;
use crate::reader::Reader;

/// SHA-384's TPM algorithm id.
pub const TPM_ALG_SHA384: u16 = 0x000C;

/// One measured event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The measurement-register index (CCEL: 1–4 are RTMR0–3).
    pub index: u32,
    pub event_type: u32,
    /// `(algorithm id, digest)` pairs.
    pub digests: Vec<(u16, Vec<u8>)>,
    pub data: Vec<u8>,
}

impl Event {
    /// The SHA-384 digest, if the event has one.
    pub fn sha384(&self) -> Option<&[u8]> {
        self.digests
            .iter()
            .find(|(a, _)| *a == TPM_ALG_SHA384)
            .map(|(_, d)| d.as_slice())
    }
}

/// A parsed log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventLog {
    /// `(algorithm id, digest size)` from the Spec ID event.
    pub algorithms: Vec<(u16, u16)>,
    pub events: Vec<Event>,
}

/// Parses a crypto-agile event log strictly.
pub fn parse(bytes: &[u8]) -> Result<EventLog, ParseError> {
    let mut r = Reader::new(bytes);
    // The legacy header event.
    let _index = r.u32_le("header.index")?;
    let ty = r.u32_le("header.type")?;
    if ty != 3 {
        return Err(ParseError::InvalidField {
            field: "header.type",
            reason: format!("{ty}, expected EV_NO_ACTION (3)"),
        });
    }
    r.zeros("header.digest", 20)?;
    let size = r.u32_le("header.size")? as usize;
    let spec = r.take("header.spec_id", size)?;
    let mut s = Reader::new(spec);
    let sig = s.take("spec.signature", 16)?;
    if sig != b"Spec ID Event03\0" {
        return Err(ParseError::InvalidField {
            field: "spec.signature",
            reason: "not \"Spec ID Event03\"".into(),
        });
    }
    s.take("spec.platform_class+version", 8)?;
    let n = s.u32_le("spec.algorithm_count")? as usize;
    if n == 0 || n > 8 {
        return Err(ParseError::InvalidField {
            field: "spec.algorithm_count",
            reason: format!("{n}"),
        });
    }
    let mut algorithms = Vec::with_capacity(n);
    for _ in 0..n {
        let alg = s.u16_le("spec.algorithm_id")?;
        let size = s.u16_le("spec.digest_size")?;
        algorithms.push((alg, size));
    }
    let vendor = s.u8("spec.vendor_info_size")? as usize;
    s.take("spec.vendor_info", vendor)?;
    s.finish("Spec ID event")?;
    let mut events = Vec::new();
    while r.remaining() > 0 {
        let rest = bytes.get(r.offset()..).unwrap_or(&[]);
        if rest.iter().all(|b| *b == 0xff) || rest.iter().all(|b| *b == 0) {
            break;
        }
        let index = r.u32_le("event.index")?;
        let event_type = r.u32_le("event.type")?;
        let count = r.u32_le("event.digest_count")? as usize;
        if count > algorithms.len() {
            return Err(ParseError::InvalidField {
                field: "event.digest_count",
                reason: format!("{count} > {} algorithms", algorithms.len()),
            });
        }
        let mut digests = Vec::with_capacity(count);
        for _ in 0..count {
            let alg = r.u16_le("event.algorithm")?;
            let size = algorithms
                .iter()
                .find(|(a, _)| *a == alg)
                .map(|(_, s)| *s as usize)
                .ok_or_else(|| ParseError::InvalidField {
                    field: "event.algorithm",
                    reason: format!("{alg:#06x} not declared in the Spec ID event"),
                })?;
            digests.push((alg, r.take("event.digest", size)?.to_vec()));
        }
        let size = r.u32_le("event.size")? as usize;
        let data = r.take("event.data", size)?.to_vec();
        events.push(Event {
            index,
            event_type,
            digests,
            data,
        });
    }
    Ok(EventLog { algorithms, events })
}

/// Encodes a log (for the simulator and tests): SHA-384 only.
pub fn encode_sha384(events: &[(u32, u32, [u8; 48], Vec<u8>)]) -> Vec<u8> {
    let events: Vec<(u32, u32, &[u8], &[u8])> = events
        .iter()
        .map(|(i, t, d, data)| (*i, *t, d.as_slice(), data.as_slice()))
        .collect();
    encode_one_bank(TPM_ALG_SHA384, 48, &events)
}

/// Encodes a log with one digest bank `alg` of `size`-byte digests (for
/// simulators and tests): `(index, type, digest, data)` per event.
pub fn encode_one_bank(alg: u16, size: u16, events: &[(u32, u32, &[u8], &[u8])]) -> Vec<u8> {
    let mut spec = b"Spec ID Event03\0".to_vec();
    spec.extend_from_slice(&[0, 0, 0, 0, 0, 2, 0, 2]);
    spec.extend_from_slice(&1u32.to_le_bytes());
    spec.extend_from_slice(&alg.to_le_bytes());
    spec.extend_from_slice(&size.to_le_bytes());
    spec.push(0);
    let len = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes();
    let mut out = Vec::new();
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&3u32.to_le_bytes());
    out.extend_from_slice(&[0u8; 20]);
    out.extend_from_slice(&len(spec.len()));
    out.extend_from_slice(&spec);
    for (index, ty, digest, data) in events {
        out.extend_from_slice(&index.to_le_bytes());
        out.extend_from_slice(&ty.to_le_bytes());
        out.extend_from_slice(&1u32.to_le_bytes());
        out.extend_from_slice(&alg.to_le_bytes());
        out.extend_from_slice(digest);
        out.extend_from_slice(&len(data.len()));
        out.extend_from_slice(data);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip_and_padding() {
        let log = encode_sha384(&[
            (1, 0x8000_0001, [7; 48], b"kernel".to_vec()),
            (4, 6, [9; 48], vec![]),
        ]);
        let parsed = parse(&log).unwrap();
        assert_eq!(parsed.events.len(), 2);
        assert_eq!(parsed.events[0].sha384(), Some(&[7u8; 48][..]));
        let mut padded = log.clone();
        padded.extend_from_slice(&[0xff; 8]);
        assert_eq!(parse(&padded).unwrap(), parsed);
        let mut junk = log.clone();
        junk.extend_from_slice(&[1, 2, 3]);
        assert!(parse(&junk).is_err());
        assert!(parse(&log[..log.len() - 3]).is_err());
    }

    proptest! {
        #[test]
        fn never_panics(bytes in prop::collection::vec(any::<u8>(), 0..2000)) {
            let _ = parse(&bytes);
        }
    }
}
