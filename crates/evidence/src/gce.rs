//! Google Cloud vTPM evidence: the go-tpm-tools `attest.Attestation`
//! protobuf (proto/attest.proto): `ak_pub` (1, a `TPMT_PUBLIC`), `quotes`
//! (2, repeated `Quote` {`quote` 1: `TPMS_ATTEST`, `raw_sig` 2:
//! `TPMT_SIGNATURE`, `pcrs` 3: `PCRs` {`hash` 1, `pcrs` 2: map<uint32,
//! bytes>}}), `event_log` (3, TCG2 crypto-agile), `ak_cert` (6, DER).
//! Other fields (canonical event logs, intermediate certificates, TEE
//! reports) are well-formed-checked and skipped.
//!
//! Why hand-written: four fields of one message do not justify a protobuf
//! code generator and its build-time dependency; the wire format is small.

use crate::ParseError;

/// One quote of the attestation: one PCR bank.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GceQuote {
    pub quote: Vec<u8>,
    pub raw_sig: Vec<u8>,
    /// The bank (a TPM hash algorithm id).
    pub hash: u16,
    /// PCR index → value.
    pub pcrs: Vec<(u32, Vec<u8>)>,
}

/// A parsed `Attestation`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GceAttestation {
    pub ak_pub: Vec<u8>,
    pub quotes: Vec<GceQuote>,
    pub event_log: Vec<u8>,
    pub ak_cert: Option<Vec<u8>>,
    pub intermediate_certs: Vec<Vec<u8>>,
}

fn bad(reason: impl Into<String>) -> ParseError {
    ParseError::InvalidField {
        field: "protobuf",
        reason: reason.into(),
    }
}

/// A protobuf field: number and value.
enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

struct Proto<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Proto<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Proto { buf, pos: 0 }
    }

    fn varint(&mut self) -> Result<u64, ParseError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self
                .buf
                .get(self.pos)
                .ok_or_else(|| bad("truncated varint"))?;
            self.pos = self.pos.saturating_add(1);
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(bad("varint longer than 10 bytes"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ParseError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or_else(|| bad("truncated field"))?;
        let s = self
            .buf
            .get(self.pos..end)
            .ok_or_else(|| bad("truncated field"))?;
        self.pos = end;
        Ok(s)
    }

    /// The next field, or `None` at the end.
    fn next(&mut self) -> Result<Option<(u64, Field<'a>)>, ParseError> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let number = key >> 3;
        if number == 0 {
            return Err(bad("field number 0"));
        }
        let field = match key & 7 {
            0 => Field::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Field::Fixed
            }
            2 => {
                let n = usize::try_from(self.varint()?).map_err(|_| bad("length overflow"))?;
                Field::Bytes(self.take(n)?)
            }
            5 => {
                self.take(4)?;
                Field::Fixed
            }
            other => return Err(bad(format!("wire type {other}"))),
        };
        Ok(Some((number, field)))
    }
}

fn bytes_of<'a>(f: Field<'a>, what: &str) -> Result<&'a [u8], ParseError> {
    match f {
        Field::Bytes(b) => Ok(b),
        _ => Err(bad(format!("{what} is not length-delimited"))),
    }
}

fn quote(buf: &[u8]) -> Result<GceQuote, ParseError> {
    let mut p = Proto::new(buf);
    let (mut q, mut sig, mut hash, mut pcrs) = (None, None, None, Vec::new());
    while let Some((n, f)) = p.next()? {
        match n {
            1 => q = Some(bytes_of(f, "Quote.quote")?.to_vec()),
            2 => sig = Some(bytes_of(f, "Quote.raw_sig")?.to_vec()),
            3 => {
                let mut pp = Proto::new(bytes_of(f, "Quote.pcrs")?);
                while let Some((n, f)) = pp.next()? {
                    match (n, f) {
                        (1, Field::Varint(h)) => {
                            hash = Some(u16::try_from(h).map_err(|_| bad("PCRs.hash"))?);
                        }
                        (2, Field::Bytes(entry)) => {
                            let mut e = Proto::new(entry);
                            let (mut k, mut v) = (0u32, Vec::new());
                            while let Some((n, f)) = e.next()? {
                                match (n, f) {
                                    (1, Field::Varint(x)) => {
                                        k = u32::try_from(x).map_err(|_| bad("PCR index"))?;
                                    }
                                    (2, Field::Bytes(b)) => v = b.to_vec(),
                                    _ => return Err(bad("unexpected field in a PCR map entry")),
                                }
                            }
                            if pcrs.iter().any(|(i, _)| *i == k) {
                                return Err(bad(format!("PCR {k} given twice")));
                            }
                            pcrs.push((k, v));
                        }
                        (1 | 2, _) => return Err(bad("PCRs field of the wrong type")),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Ok(GceQuote {
        quote: q.ok_or_else(|| bad("Quote without quote"))?,
        raw_sig: sig.ok_or_else(|| bad("Quote without raw_sig"))?,
        hash: hash.ok_or_else(|| bad("PCRs without hash"))?,
        pcrs,
    })
}

impl GceAttestation {
    pub fn parse(buf: &[u8]) -> Result<Self, ParseError> {
        let mut p = Proto::new(buf);
        let mut a = GceAttestation {
            ak_pub: Vec::new(),
            quotes: Vec::new(),
            event_log: Vec::new(),
            ak_cert: None,
            intermediate_certs: Vec::new(),
        };
        while let Some((n, f)) = p.next()? {
            match n {
                1 => a.ak_pub = bytes_of(f, "ak_pub")?.to_vec(),
                2 => a.quotes.push(quote(bytes_of(f, "quotes")?)?),
                3 => a.event_log = bytes_of(f, "event_log")?.to_vec(),
                6 => a.ak_cert = Some(bytes_of(f, "ak_cert")?.to_vec()),
                7 => a
                    .intermediate_certs
                    .push(bytes_of(f, "intermediate_certs")?.to_vec()),
                _ => {}
            }
        }
        if a.ak_pub.is_empty() || a.quotes.is_empty() {
            return Err(bad("an Attestation needs ak_pub and at least one quote"));
        }
        Ok(a)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_the_gce_vectors() {
        let Some(dir) = veil_testkit::vectors() else {
            return;
        };
        for f in ["gce-cos-85-nonce9009.pb", "gce-cos-85-no-nonce.pb"] {
            let a =
                GceAttestation::parse(&veil_testkit::read(&dir, &format!("tpm/go-tpm-tools/{f}")))
                    .unwrap();
            assert_eq!(a.quotes.len(), 3, "{f}");
            assert!(a.ak_cert.is_some());
            assert!(a.event_log.len() > 20_000);
            for q in &a.quotes {
                assert_eq!(q.pcrs.len(), 24);
            }
            crate::tpm::Public::parse(&a.ak_pub).unwrap();
        }
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = GceAttestation::parse(&bytes);
        }
    }
}
