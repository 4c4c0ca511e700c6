//! The TPM attester: a quote over SHA-256 PCRs 0–23 with the KBS report
//! data as qualifying data, signed by an attestation key created in the
//! endorsement hierarchy (a restricted ECDSA P-256 signing key from a fixed
//! template, so the same TPM always yields the same AK and an operator can
//! register it), returned in the CoCo `tpm` evidence shape.
//!
//! It talks to the TPM through the kernel's resource manager
//! (`/dev/tpmrm0`) or, for a software TPM, a raw command socket
//! (`swtpm socket --server type=tcp`).
//!
//! Why hand-written: the TSS crates (tss-esapi) need the C tpm2-tss
//! libraries at build and run time; four commands (CreatePrimary, PCR_Read,
//! Quote, FlushContext) are a small encoder.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Mutex;

use base64::Engine;
use serde_json::{Value, json};
use veil_evidence::tpm::{Quote, TPM_ALG_SHA256};

use crate::{AttestError, Attester};

const TPM_ST_NO_SESSIONS: u16 = 0x8001;
const TPM_ST_SESSIONS: u16 = 0x8002;
const TPM_CC_CREATE_PRIMARY: u32 = 0x0000_0131;
const TPM_CC_FLUSH_CONTEXT: u32 = 0x0000_0165;
const TPM_CC_PCR_READ: u32 = 0x0000_017E;
const TPM_CC_QUOTE: u32 = 0x0000_0158;
const TPM_RH_ENDORSEMENT: u32 = 0x4000_000B;
const TPM_RS_PW: u32 = 0x4000_0009;
const MAX_RESPONSE: usize = 4096;

/// `fixedTPM | fixedParent | sensitiveDataOrigin | userWithAuth |
/// restricted | sign`.
const AK_ATTRIBUTES: u32 = 0x0005_0072;

/// Where the TPM is.
#[derive(Debug, Clone)]
pub enum TpmTransport {
    /// A character device (`/dev/tpmrm0`).
    Device(PathBuf),
    /// A raw TPM command socket (`host:port`, swtpm's `--server type=tcp`).
    Tcp(String),
}

impl TpmTransport {
    /// `tcp:HOST:PORT` or a device path.
    pub fn parse(s: &str) -> Self {
        match s.strip_prefix("tcp:") {
            Some(addr) => TpmTransport::Tcp(addr.to_string()),
            None => TpmTransport::Device(PathBuf::from(s)),
        }
    }

    fn io(&self, e: std::io::Error) -> AttestError {
        AttestError::Io {
            path: match self {
                TpmTransport::Device(p) => p.display().to_string(),
                TpmTransport::Tcp(a) => format!("tcp:{a}"),
            },
            source: e,
        }
    }

    /// Sends one command; the response (checked for success). The TPM's
    /// "try again" warnings (RETRY, YIELDED, TESTING) are retried, as a TSS
    /// does.
    fn execute(&self, command: &[u8]) -> Result<Vec<u8>, AttestError> {
        let mut last = None;
        for attempt in 0..10u64 {
            match self.execute_once(command) {
                Err(AttestError::Evidence(m)) if m.starts_with("TPM warning") => {
                    std::thread::sleep(std::time::Duration::from_millis(20 * (attempt + 1)));
                    last = Some(m);
                }
                other => return other,
            }
        }
        Err(AttestError::Evidence(last.unwrap_or_default()))
    }

    fn execute_once(&self, command: &[u8]) -> Result<Vec<u8>, AttestError> {
        let response = match self {
            TpmTransport::Device(path) => {
                let mut f = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(path)
                    .map_err(|e| self.io(e))?;
                f.write_all(command).map_err(|e| self.io(e))?;
                let mut buf = vec![0u8; MAX_RESPONSE];
                let n = f.read(&mut buf).map_err(|e| self.io(e))?;
                buf.truncate(n);
                buf
            }
            TpmTransport::Tcp(addr) => {
                let mut s = std::net::TcpStream::connect(addr).map_err(|e| self.io(e))?;
                s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
                    .map_err(|e| self.io(e))?;
                s.write_all(command).map_err(|e| self.io(e))?;
                let mut head = [0u8; 10];
                s.read_exact(&mut head).map_err(|e| self.io(e))?;
                let size = head
                    .get(2..6)
                    .and_then(|b| <[u8; 4]>::try_from(b).ok())
                    .map_or(0, |b| u32::from_be_bytes(b) as usize);
                if !(10..=MAX_RESPONSE).contains(&size) {
                    return Err(AttestError::Evidence(format!("TPM response size {size}")));
                }
                let mut rest = vec![0u8; size.saturating_sub(10)];
                s.read_exact(&mut rest).map_err(|e| self.io(e))?;
                let mut all = head.to_vec();
                all.extend(rest);
                all
            }
        };
        let mut r = Resp::new(&response);
        let _tag = r.u16()?;
        let size = r.u32()? as usize;
        if size != response.len() {
            return Err(AttestError::Evidence(format!(
                "TPM response says {size} bytes, got {}",
                response.len()
            )));
        }
        let rc = r.u32()?;
        if matches!(rc, 0x908 | 0x90A | 0x922) {
            return Err(AttestError::Evidence(format!("TPM warning {rc:#x}")));
        }
        if rc != 0 {
            return Err(AttestError::Evidence(format!("TPM error {rc:#x}")));
        }
        Ok(response)
    }
}

/// A command under construction.
struct Cmd(Vec<u8>);

impl Cmd {
    fn new(tag: u16, code: u32) -> Self {
        let mut v = Vec::new();
        v.extend(tag.to_be_bytes());
        v.extend([0u8; 4]);
        v.extend(code.to_be_bytes());
        Cmd(v)
    }
    fn u8(mut self, x: u8) -> Self {
        self.0.push(x);
        self
    }
    fn u16(mut self, x: u16) -> Self {
        self.0.extend(x.to_be_bytes());
        self
    }
    fn u32(mut self, x: u32) -> Self {
        self.0.extend(x.to_be_bytes());
        self
    }
    fn tpm2b(self, data: &[u8]) -> Result<Self, AttestError> {
        let n = u16::try_from(data.len())
            .map_err(|_| AttestError::Evidence("TPM2B too long".into()))?;
        let mut s = self.u16(n);
        s.0.extend_from_slice(data);
        Ok(s)
    }
    /// The password session with an empty password.
    fn password_auth(self) -> Self {
        self.u32(9).u32(TPM_RS_PW).u16(0).u8(0).u16(0)
    }
    /// SHA-256 PCRs `pcrs` as a TPML_PCR_SELECTION.
    fn pcr_selection(self, pcrs: &[u8]) -> Self {
        let mut bits = [0u8; 3];
        for &p in pcrs {
            if let Some(b) = bits.get_mut(usize::from(p / 8)) {
                *b |= 1 << (p % 8);
            }
        }
        let [a, b, c] = bits;
        self.u32(1).u16(TPM_ALG_SHA256).u8(3).u8(a).u8(b).u8(c)
    }
    fn finish(mut self) -> Vec<u8> {
        let n = u32::try_from(self.0.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes();
        if let Some(size) = self.0.get_mut(2..6) {
            size.copy_from_slice(&n);
        }
        self.0
    }
}

/// A response reader (errors, never panics).
struct Resp<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Resp<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Resp { buf, pos: 0 }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], AttestError> {
        let end = self.pos.saturating_add(n);
        let s = self
            .buf
            .get(self.pos..end)
            .ok_or_else(|| AttestError::Evidence("truncated TPM response".into()))?;
        self.pos = end;
        Ok(s)
    }
    fn u16(&mut self) -> Result<u16, AttestError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes(b.try_into().unwrap_or_default()))
    }
    fn u32(&mut self) -> Result<u32, AttestError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes(b.try_into().unwrap_or_default()))
    }
    fn tpm2b(&mut self) -> Result<&'a [u8], AttestError> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }
}

/// The AK template (TPMT_PUBLIC): ECC P-256, ECDSA-SHA256, restricted.
fn ak_template() -> Vec<u8> {
    let mut t = Vec::new();
    t.extend(0x0023u16.to_be_bytes()); // TPM_ALG_ECC
    t.extend(TPM_ALG_SHA256.to_be_bytes()); // nameAlg
    t.extend(AK_ATTRIBUTES.to_be_bytes());
    t.extend(0u16.to_be_bytes()); // authPolicy: empty
    t.extend(0x0010u16.to_be_bytes()); // symmetric: NULL
    t.extend(0x0018u16.to_be_bytes()); // scheme: ECDSA
    t.extend(TPM_ALG_SHA256.to_be_bytes());
    t.extend(0x0003u16.to_be_bytes()); // curve: NIST P-256
    t.extend(0x0010u16.to_be_bytes()); // kdf: NULL
    t.extend(0u16.to_be_bytes()); // unique.x: empty
    t.extend(0u16.to_be_bytes()); // unique.y: empty
    t
}

/// DER SubjectPublicKeyInfo of a P-256 point.
fn p256_spki(x: &[u8], y: &[u8]) -> Result<Vec<u8>, AttestError> {
    if x.len() > 32 || y.len() > 32 {
        return Err(AttestError::Evidence("AK point too long".into()));
    }
    let mut out = hex::decode("3059301306072a8648ce3d020106082a8648ce3d030107034200")
        .map_err(|e| AttestError::Evidence(e.to_string()))?;
    out.push(4);
    for c in [x, y] {
        out.extend(std::iter::repeat_n(0u8, 32usize.saturating_sub(c.len())));
        out.extend_from_slice(c);
    }
    Ok(out)
}

/// Evidence from a TPM.
#[derive(Debug)]
pub struct TpmAttester {
    transport: TpmTransport,
    /// One quote at a time (the AK handle is transient).
    lock: Mutex<()>,
}

impl TpmAttester {
    pub fn new(transport: TpmTransport) -> Self {
        TpmAttester {
            transport,
            lock: Mutex::new(()),
        }
    }

    /// Creates the AK; (handle, DER SPKI).
    fn create_ak(&self) -> Result<(u32, Vec<u8>), AttestError> {
        let template = ak_template();
        let cmd = Cmd::new(TPM_ST_SESSIONS, TPM_CC_CREATE_PRIMARY)
            .u32(TPM_RH_ENDORSEMENT)
            .password_auth()
            .tpm2b(&[0, 0, 0, 0])? // inSensitive: empty userAuth and data
            .tpm2b(&template)?
            .tpm2b(&[])? // outsideInfo
            .u32(0) // creationPCR: none
            .finish();
        let resp = self.transport.execute(&cmd)?;
        let mut r = Resp::new(&resp);
        r.take(10)?;
        let handle = r.u32()?;
        let _param_size = r.u32()?;
        let public = r.tpm2b()?;
        let parsed = veil_evidence::tpm::Public::parse(public)
            .map_err(|e| AttestError::Evidence(format!("AK public: {e}")))?;
        let veil_evidence::tpm::PublicKey::Ecc { x, y, .. } = parsed.key else {
            return Err(AttestError::Evidence(
                "the TPM returned a non-ECC AK".into(),
            ));
        };
        Ok((handle, p256_spki(&x, &y)?))
    }

    fn flush(&self, handle: u32) {
        let cmd = Cmd::new(TPM_ST_NO_SESSIONS, TPM_CC_FLUSH_CONTEXT)
            .u32(handle)
            .finish();
        let _ = self.transport.execute(&cmd);
    }

    /// SHA-256 PCRs 0–23 (a TPM returns at most 8 per read).
    fn read_pcrs(&self) -> Result<Vec<Vec<u8>>, AttestError> {
        let mut out = Vec::new();
        for chunk in (0u8..24).collect::<Vec<_>>().chunks(8) {
            let cmd = Cmd::new(TPM_ST_NO_SESSIONS, TPM_CC_PCR_READ)
                .pcr_selection(chunk)
                .finish();
            let resp = self.transport.execute(&cmd)?;
            let mut r = Resp::new(&resp);
            r.take(10)?;
            let _update_counter = r.u32()?;
            // pcrSelectionOut: count, then per bank hash, size, bits.
            let banks = r.u32()?;
            for _ in 0..banks {
                r.u16()?;
                let n = r.take(1)?.first().copied().unwrap_or(0);
                r.take(usize::from(n))?;
            }
            let n = r.u32()?;
            if n as usize != chunk.len() {
                return Err(AttestError::Evidence(format!(
                    "PCR_Read returned {n} values for {} PCRs",
                    chunk.len()
                )));
            }
            for _ in 0..n {
                out.push(r.tpm2b()?.to_vec());
            }
        }
        Ok(out)
    }

    fn quote(&self, handle: u32, qualifying: &[u8]) -> Result<(Vec<u8>, Vec<u8>), AttestError> {
        let all: Vec<u8> = (0..24).collect();
        let cmd = Cmd::new(TPM_ST_SESSIONS, TPM_CC_QUOTE)
            .u32(handle)
            .password_auth()
            .tpm2b(qualifying)?
            .u16(0x0010) // inScheme: NULL (the key's ECDSA-SHA256)
            .pcr_selection(&all)
            .finish();
        let resp = self.transport.execute(&cmd)?;
        let mut r = Resp::new(&resp);
        r.take(10)?;
        let _param_size = r.u32()?;
        let attest = r.tpm2b()?.to_vec();
        // TPMT_SIGNATURE: ECDSA, hash, r, s.
        let start = r.pos;
        let alg = r.u16()?;
        if alg != veil_evidence::tpm::TPM_ALG_ECDSA {
            return Err(AttestError::Evidence(format!("quote signed with {alg:#x}")));
        }
        r.u16()?;
        r.tpm2b()?;
        r.tpm2b()?;
        let sig = resp
            .get(start..r.pos)
            .ok_or_else(|| AttestError::Evidence("truncated signature".into()))?
            .to_vec();
        Ok((attest, sig))
    }
}

impl Attester for TpmAttester {
    fn tee(&self) -> &'static str {
        "tpm"
    }

    fn evidence(&self, report_data: &[u8; 64]) -> Result<Value, AttestError> {
        let _one = self
            .lock
            .lock()
            .map_err(|_| AttestError::Evidence("lock".into()))?;
        let (handle, spki) = self.create_ak()?;
        let result = (|| {
            // PCRs may change between the read and the quote: retry until
            // the values hash to the quoted digest.
            for _ in 0..3 {
                let pcrs = self.read_pcrs()?;
                let (message, signature) = self.quote(handle, report_data)?;
                let q = Quote::parse(&message)
                    .map_err(|e| AttestError::Evidence(format!("quote: {e}")))?;
                let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &pcrs.concat());
                if digest.as_ref() == q.pcr_digest.as_slice() {
                    let b64 = base64::engine::general_purpose::STANDARD;
                    return Ok(json!({
                        "ak_public": b64.encode(&spki),
                        "tpm_quote": {
                            "message": b64.encode(&message),
                            "signature": b64.encode(&signature),
                            "pcrs": pcrs.iter().map(hex::encode).collect::<Vec<_>>(),
                        }
                    }));
                }
            }
            Err(AttestError::Evidence(
                "PCRs kept changing while quoting".into(),
            ))
        })();
        self.flush(handle);
        result
    }

    fn launch_init_data(&self) -> Result<Vec<u8>, AttestError> {
        Err(AttestError::Evidence(
            "a TPM has no launch init-data field".into(),
        ))
    }
}

impl TpmAttester {
    /// The AK's DER SubjectPublicKeyInfo (to register it with a broker).
    pub fn ak_public(&self) -> Result<Vec<u8>, AttestError> {
        let _one = self
            .lock
            .lock()
            .map_err(|_| AttestError::Evidence("lock".into()))?;
        let (handle, spki) = self.create_ak()?;
        self.flush(handle);
        Ok(spki)
    }
}
