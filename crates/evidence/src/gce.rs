//! Google Cloud vTPM evidence: the go-tpm-tools `attest.Attestation`
//! protobuf (proto/attest.proto): `ak_pub` (1, a `TPMT_PUBLIC`), `quotes`
//! (2, repeated `Quote` {`quote` 1: `TPMS_ATTEST`, `raw_sig` 2:
//! `TPMT_SIGNATURE`, `pcrs` 3: `PCRs` {`hash` 1, `pcrs` 2: map<uint32,
//! bytes>}}), `event_log` (3, TCG2 crypto-agile), `ak_cert` (6, DER),
//! `intermediate_certs` (7), and the TEE attestation of a confidential VM:
//! `sev_snp_attestation` (8, go-sev-guest's `sevsnp.Attestation`, whose
//! report travels field by field and is rebuilt here into the 0x4A0-byte
//! `ATTESTATION_REPORT` the AMD signature covers) or `tdx_attestation` (9,
//! go-tdx-guest's `tdx.QuoteV4`, rebuilt the same way into the DCAP quote
//! v4 bytes the attestation key signs). Other fields (instance info,
//! canonical event logs) are well-formed-checked and skipped.
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
    /// The confidential VM's hardware attestation, if any.
    pub tee: Option<GceTee>,
}

/// The hardware attestation a confidential GCE VM attaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GceTee {
    Snp(GceSnp),
    /// The TD quote (v4) rebuilt from go-tdx-guest's `QuoteV4` message.
    Tdx(Vec<u8>),
}

/// An SEV-SNP report and the certificates the host supplied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GceSnp {
    /// The `ATTESTATION_REPORT` rebuilt from the message's fields.
    pub report: Vec<u8>,
    pub vcek: Option<Vec<u8>>,
    pub vlek: Option<Vec<u8>>,
    pub ask: Option<Vec<u8>>,
    pub ark: Option<Vec<u8>>,
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

/// `sevsnp.Attestation` {report 1, certificate_chain 2, product 3}.
fn sev_snp(buf: &[u8]) -> Result<GceSnp, ParseError> {
    let mut p = Proto::new(buf);
    let mut snp = GceSnp {
        report: Vec::new(),
        vcek: None,
        vlek: None,
        ask: None,
        ark: None,
    };
    while let Some((n, f)) = p.next()? {
        match n {
            1 => snp.report = snp_report(bytes_of(f, "sevsnp.Report")?)?,
            2 => {
                let mut c = Proto::new(bytes_of(f, "sevsnp.CertificateChain")?);
                while let Some((n, f)) = c.next()? {
                    let slot = match n {
                        1 => &mut snp.vcek,
                        6 => &mut snp.vlek,
                        2 => &mut snp.ask,
                        3 => &mut snp.ark,
                        _ => continue,
                    };
                    let der = bytes_of(f, "certificate")?;
                    if !der.is_empty() {
                        *slot = Some(der.to_vec());
                    }
                }
            }
            _ => {}
        }
    }
    if snp.report.is_empty() {
        return Err(bad("sev_snp_attestation without a report"));
    }
    Ok(snp)
}

/// Rebuilds the `ATTESTATION_REPORT` (AMD SEV-SNP ABI, Table 23) from
/// go-sev-guest's `sevsnp.Report`: every field at its offset, reserved
/// bytes zero. Unknown fields and wrong lengths are refused, so nothing
/// the signature does not cover can ride along.
fn snp_report(buf: &[u8]) -> Result<Vec<u8>, ParseError> {
    let mut out = vec![0u8; 0x4a0];
    let mut put = |offset: usize, bytes: &[u8]| -> Result<(), ParseError> {
        let end = offset
            .checked_add(bytes.len())
            .ok_or_else(|| bad("offset"))?;
        out.get_mut(offset..end)
            .ok_or_else(|| bad("offset"))?
            .copy_from_slice(bytes);
        Ok(())
    };
    let u32_of = |v: u64, what: &str| {
        u32::try_from(v).map_err(|_| bad(format!("{what} does not fit 32 bits")))
    };
    let mut version = None;
    let mut fms = None;
    let mut mit = [None, None];
    let mut p = Proto::new(buf);
    while let Some((n, f)) = p.next()? {
        // (offset, exact length) of byte fields.
        let bytes_at: Option<(usize, usize)> = match n {
            4 => Some((0x10, 16)),
            5 => Some((0x20, 16)),
            11 => Some((0x50, 64)),
            12 => Some((0x90, 48)),
            13 => Some((0xc0, 32)),
            14 => Some((0xe0, 48)),
            15 => Some((0x110, 48)),
            16 => Some((0x140, 32)),
            17 => Some((0x160, 32)),
            19 => Some((0x1a0, 64)),
            28 => Some((0x2a0, 512)),
            _ => None,
        };
        if let Some((offset, len)) = bytes_at {
            let b = bytes_of(f, "sevsnp.Report bytes field")?;
            if b.len() != len {
                return Err(bad(format!(
                    "sevsnp.Report field {n} is {} bytes, not {len}",
                    b.len()
                )));
            }
            put(offset, b)?;
            continue;
        }
        let Field::Varint(v) = f else {
            return Err(bad(format!("sevsnp.Report field {n} is not a varint")));
        };
        match n {
            1 => {
                version = Some(u32_of(v, "version")?);
                put(0x00, &u32_of(v, "version")?.to_le_bytes())?;
            }
            2 => put(0x04, &u32_of(v, "guest_svn")?.to_le_bytes())?,
            3 => put(0x08, &v.to_le_bytes())?,
            6 => put(0x30, &u32_of(v, "vmpl")?.to_le_bytes())?,
            7 => put(0x34, &u32_of(v, "signature_algo")?.to_le_bytes())?,
            8 => put(0x38, &v.to_le_bytes())?,
            9 => put(0x40, &v.to_le_bytes())?,
            10 => put(0x48, &u32_of(v, "signer_info")?.to_le_bytes())?,
            18 => put(0x180, &v.to_le_bytes())?,
            20 => put(0x1e0, &v.to_le_bytes())?,
            21..=26 => {
                // build, minor, major of the current (0x1E8) and committed
                // (0x1EC) firmware versions, one byte each.
                let b = u8::try_from(v).map_err(|_| bad("firmware version part over 255"))?;
                let offset = match n {
                    21 => 0x1e8,
                    22 => 0x1e9,
                    23 => 0x1ea,
                    24 => 0x1ec,
                    25 => 0x1ed,
                    _ => 0x1ee,
                };
                put(offset, &[b])?;
            }
            27 => put(0x1f0, &v.to_le_bytes())?,
            29 => fms = Some(u32_of(v, "cpuid1eax_fms")?),
            30 => mit[0] = Some(v),
            31 => mit[1] = Some(v),
            other => return Err(bad(format!("unknown sevsnp.Report field {other}"))),
        }
    }
    let version = version.ok_or_else(|| bad("sevsnp.Report without a version"))?;
    if let Some(eax) = fms.filter(|_| version >= 3) {
        // CPUID_FAM_ID = base + extended family, CPUID_MOD_ID = extended
        // model ‖ base model, CPUID_STEP (CPUID Fn0000_0001 EAX layout).
        let field = |shift: u32, mask: u32| (eax.wrapping_shr(shift) & mask) as u8;
        let base_family = field(8, 0xf);
        let family = if base_family == 0xf {
            base_family.wrapping_add(field(20, 0xff))
        } else {
            base_family
        };
        let model = if base_family == 0xf || base_family == 0x6 {
            field(16, 0xf).wrapping_shl(4) | field(4, 0xf)
        } else {
            field(4, 0xf)
        };
        put(0x188, &[family, model, field(0, 0xf)])?;
    } else if fms.is_some_and(|f| f != 0) {
        return Err(bad("CPUID in a report version without CPUID fields"));
    }
    match (version >= 5, mit) {
        (true, [l, c]) => {
            put(0x1f8, &l.unwrap_or(0).to_le_bytes())?;
            put(0x200, &c.unwrap_or(0).to_le_bytes())?;
        }
        (false, [None | Some(0), None | Some(0)]) => {}
        (false, _) => return Err(bad("mitigation vectors in a report version before 5")),
    }
    Ok(out)
}

/// Collects the fields of a message: (number, field) in order.
fn fields(buf: &[u8]) -> Result<Vec<(u64, Field<'_>)>, ParseError> {
    let mut p = Proto::new(buf);
    let mut out = Vec::new();
    while let Some(f) = p.next()? {
        out.push(f);
    }
    Ok(out)
}

/// Writes the fields of a message at their layout positions: `layout` is
/// (field number, exact length) in the order of the C structure; varint
/// fields are written little-endian in `len` bytes; absent fields (proto3
/// leaves out zeros) are zeros. Fields neither in `layout` nor in
/// `also_allowed` (handled by the caller), repeated fields and wrongly sized
/// ones are refused.
fn flatten(
    what: &str,
    fs: &[(u64, Field<'_>)],
    layout: &[(u64, usize)],
    also_allowed: &[u64],
    out: &mut Vec<u8>,
) -> Result<(), ParseError> {
    for (n, _) in fs {
        if !layout.iter().any(|(k, _)| k == n) && !also_allowed.contains(n) {
            return Err(bad(format!("unknown {what} field {n}")));
        }
    }
    for (n, len) in layout {
        let mut found = fs.iter().filter(|(k, _)| k == n);
        let value = found.next();
        if found.next().is_some() {
            return Err(bad(format!("{what} field {n} repeated")));
        }
        match value {
            Some((_, Field::Bytes(b))) if b.len() == *len => out.extend_from_slice(b),
            Some((_, Field::Bytes(b))) => {
                return Err(bad(format!(
                    "{what} field {n} is {} bytes, not {len}",
                    b.len()
                )));
            }
            Some((_, Field::Varint(v))) => {
                let bytes = v.to_le_bytes();
                let (le, rest) = bytes.split_at((*len).min(8));
                if rest.iter().any(|b| *b != 0) {
                    return Err(bad(format!("{what} field {n} does not fit {len} bytes")));
                }
                out.extend_from_slice(le);
            }
            // proto3 leaves zero values out.
            None => out.extend(std::iter::repeat_n(0u8, *len)),
            Some(_) => return Err(bad(format!("{what} field {n} has the wrong wire type"))),
        }
    }
    Ok(())
}

/// The one length-delimited field `n` of a message (a sub-message).
fn sub<'a>(fs: &[(u64, Field<'a>)], n: u64, what: &str) -> Result<&'a [u8], ParseError> {
    let mut it = fs.iter().filter(|(k, _)| *k == n);
    let one = it.next();
    if it.next().is_some() {
        return Err(bad(format!("{what} repeated")));
    }
    match one {
        Some((_, Field::Bytes(b))) => Ok(b),
        None => Ok(&[]),
        Some(_) => Err(bad(format!("{what} is not length-delimited"))),
    }
}

fn varint_of(fs: &[(u64, Field<'_>)], n: u64) -> Result<u64, ParseError> {
    match fs.iter().find(|(k, _)| *k == n) {
        Some((_, Field::Varint(v))) => Ok(*v),
        None => Ok(0),
        Some(_) => Err(bad(format!("field {n} is not a varint"))),
    }
}

/// Rebuilds the DCAP quote v4 (Intel TDX DCAP Quoting Library API, "Quote
/// Format") from go-tdx-guest's `tdx.QuoteV4`: header, TD quote body, the
/// signature data (signature, attestation key, certification data type 6
/// holding the QE report, its signature, QE authentication data and the PCK
/// certificate chain), then any extra bytes.
fn tdx_quote(buf: &[u8]) -> Result<Vec<u8>, ParseError> {
    let q = fields(buf)?;
    for (n, _) in &q {
        if !(1..=5).contains(n) {
            return Err(bad(format!("unknown tdx.QuoteV4 field {n}")));
        }
    }
    let mut out = Vec::with_capacity(5000);
    flatten(
        "tdx.Header",
        &fields(sub(&q, 1, "header")?)?,
        &[(1, 2), (2, 2), (3, 4), (4, 2), (5, 2), (6, 16), (7, 20)],
        &[],
        &mut out,
    )?;
    // The body: RTMRs are a repeated field of four 48-byte values.
    let body = fields(sub(&q, 2, "td_quote_body")?)?;
    let rtmrs: Vec<&[u8]> = body
        .iter()
        .filter(|(n, _)| *n == 11)
        .map(|(_, f)| match f {
            Field::Bytes(b) if b.len() == 48 => Ok(*b),
            _ => Err(bad("an RTMR is not 48 bytes")),
        })
        .collect::<Result<_, _>>()?;
    if rtmrs.len() != 4 {
        return Err(bad(format!("{} RTMRs, expected 4", rtmrs.len())));
    }
    let mut fixed = Vec::new();
    flatten(
        "tdx.TDQuoteBody",
        &body,
        &[
            (1, 16),
            (2, 48),
            (3, 48),
            (4, 8),
            (5, 8),
            (6, 8),
            (7, 48),
            (8, 48),
            (9, 48),
            (10, 48),
            (12, 64),
        ],
        &[11],
        &mut fixed,
    )?;
    let (before_rtmr, report_data) = fixed.split_at(fixed.len().saturating_sub(64));
    out.extend_from_slice(before_rtmr);
    for r in rtmrs {
        out.extend_from_slice(r);
    }
    out.extend_from_slice(report_data);
    // Signature data.
    let signed = fields(sub(&q, 4, "signed_data")?)?;
    let mut sig = Vec::new();
    for (n, len, what) in [(1, 64, "signature"), (2, 64, "ecdsa_attestation_key")] {
        let b = sub(&signed, n, what)?;
        if b.len() != len {
            return Err(bad(format!("{what} is {} bytes, not {len}", b.len())));
        }
        sig.extend_from_slice(b);
    }
    let cert = fields(sub(&signed, 3, "certification_data")?)?;
    let cert_type = u16::try_from(varint_of(&cert, 1)?).map_err(|_| bad("certification type"))?;
    if cert_type != 6 {
        return Err(bad(format!(
            "certification data type {cert_type}, expected 6"
        )));
    }
    let qe = fields(sub(&cert, 3, "qe_report_certification_data")?)?;
    let mut qe_data = Vec::new();
    flatten(
        "tdx.EnclaveReport",
        &fields(sub(&qe, 1, "qe_report")?)?,
        &[
            (1, 16),
            (2, 4),
            (3, 28),
            (4, 16),
            (5, 32),
            (6, 32),
            (7, 32),
            (8, 96),
            (9, 2),
            (10, 2),
            (11, 60),
            (12, 64),
        ],
        &[],
        &mut qe_data,
    )?;
    let qe_sig = sub(&qe, 2, "qe_report_signature")?;
    if qe_sig.len() != 64 {
        return Err(bad("qe_report_signature is not 64 bytes"));
    }
    qe_data.extend_from_slice(qe_sig);
    let auth = fields(sub(&qe, 3, "qe_auth_data")?)?;
    let auth_data = sub(&auth, 2, "qe_auth_data.data")?;
    let auth_len = u16::try_from(auth_data.len()).map_err(|_| bad("QE auth data too long"))?;
    if varint_of(&auth, 1)? != u64::from(auth_len) {
        return Err(bad("QE auth data size does not match its data"));
    }
    qe_data.extend_from_slice(&auth_len.to_le_bytes());
    qe_data.extend_from_slice(auth_data);
    let pck = fields(sub(&qe, 4, "pck_certificate_chain_data")?)?;
    let pck_type = u16::try_from(varint_of(&pck, 1)?).map_err(|_| bad("PCK data type"))?;
    let chain = sub(&pck, 3, "pck_cert_chain")?;
    let chain_len = u32::try_from(chain.len()).map_err(|_| bad("PCK chain too long"))?;
    if varint_of(&pck, 2)? != u64::from(chain_len) {
        return Err(bad("PCK chain size does not match its data"));
    }
    qe_data.extend_from_slice(&pck_type.to_le_bytes());
    qe_data.extend_from_slice(&chain_len.to_le_bytes());
    qe_data.extend_from_slice(chain);
    let qe_len = u32::try_from(qe_data.len()).map_err(|_| bad("certification data too long"))?;
    if varint_of(&cert, 2)? != u64::from(qe_len) {
        return Err(bad("certification data size does not match its data"));
    }
    sig.extend_from_slice(&cert_type.to_le_bytes());
    sig.extend_from_slice(&qe_len.to_le_bytes());
    sig.extend_from_slice(&qe_data);
    let sig_len = u32::try_from(sig.len()).map_err(|_| bad("signature data too long"))?;
    if varint_of(&q, 3)? != u64::from(sig_len) {
        return Err(bad("signed_data_size does not match the signature data"));
    }
    out.extend_from_slice(&sig_len.to_le_bytes());
    out.extend_from_slice(&sig);
    out.extend_from_slice(sub(&q, 5, "extra_bytes")?);
    Ok(out)
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
            tee: None,
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
                8 => a.tee = Some(GceTee::Snp(sev_snp(bytes_of(f, "sev_snp_attestation")?)?)),
                9 => a.tee = Some(GceTee::Tdx(tdx_quote(bytes_of(f, "tdx_attestation")?)?)),
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
