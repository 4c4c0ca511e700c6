//! TPM 2.0 quotes: the attestation key's signature over `TPMS_ATTEST` as
//! received, the qualifying data (nonce binding), and the PCR values the
//! evidence supplies recomputed into the quoted `pcrDigest`.
//!
//! Whether the attestation key itself is trustworthy is a separate step:
//! an AK certificate chain ([`verify_ak_chain`]), an operator allow-list,
//! or a hardware report that binds the AK (Azure's HCL report, in
//! [`crate::azure`]). [`VerifiedQuote`] records which one vouched.

use std::collections::BTreeMap;

use veil_evidence::tpm::{
    self as ev, PublicKey as TpmPublic, Quote, Signature, TPM_ALG_SHA256, TPM_ALG_SHA384,
    TPM_ECC_NIST_P256, TPM_ECC_NIST_P384, digest_size,
};

use crate::UnixTime;
use crate::crypto::{CryptoBackend, RsaScheme};
use crate::x509::Cert;

/// Why a quote was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TpmError {
    #[error("malformed TPM structure: {0}")]
    Parse(#[from] veil_evidence::ParseError),
    #[error("the quote's signature does not verify with the attestation key")]
    BadSignature,
    #[error("unsupported attestation key or scheme: {0}")]
    Unsupported(String),
    #[error("nonce mismatch: the quote's qualifying data is {actual}, expected {expected}")]
    NonceMismatch { expected: String, actual: String },
    #[error("PCR {0}")]
    Pcr(String),
    #[error("the PCR values do not hash to the quoted pcrDigest")]
    PcrDigestMismatch,
    #[error("attestation key not trusted: {0}")]
    AkNotTrusted(String),
    #[error("TEE attestation: {0}")]
    Tee(String),
}

/// An attestation key's public part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AkPublic {
    /// RSA: big-endian modulus and exponent.
    Rsa {
        modulus: Vec<u8>,
        exponent: Vec<u8>,
    },
    /// ECDSA on P-256 or P-384: an uncompressed SEC1 point.
    EcP256(Vec<u8>),
    EcP384(Vec<u8>),
}

impl AkPublic {
    /// From a `TPMT_PUBLIC`.
    pub fn from_tpm(public: &ev::Public) -> Result<Self, TpmError> {
        match &public.key {
            TpmPublic::Rsa { modulus, exponent } => Ok(AkPublic::Rsa {
                modulus: modulus.clone(),
                // 0 means the default exponent 2^16 + 1.
                exponent: if *exponent == 0 {
                    vec![1, 0, 1]
                } else {
                    exponent
                        .to_be_bytes()
                        .iter()
                        .copied()
                        .skip_while(|b| *b == 0)
                        .collect()
                },
            }),
            TpmPublic::Ecc { curve, x, y } => {
                let size = match *curve {
                    TPM_ECC_NIST_P256 => 32,
                    TPM_ECC_NIST_P384 => 48,
                    other => return Err(TpmError::Unsupported(format!("ECC curve {other:#06x}"))),
                };
                let point = sec1(x, y, size)?;
                Ok(if size == 32 {
                    AkPublic::EcP256(point)
                } else {
                    AkPublic::EcP384(point)
                })
            }
        }
    }

    /// From a DER SubjectPublicKeyInfo (RSA, or EC P-256/P-384).
    pub fn from_spki(der: &[u8]) -> Result<Self, TpmError> {
        use der::Decode;
        let spki = x509_cert::spki::SubjectPublicKeyInfoRef::from_der(der)
            .map_err(|e| TpmError::Unsupported(format!("AK public key: {e}")))?;
        let bits = spki.subject_public_key.raw_bytes();
        match spki.algorithm.oid.to_string().as_str() {
            crate::x509::OID_RSA_ENCRYPTION => {
                // RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }
                use der::Reader;
                let parse = || -> Result<(Vec<u8>, Vec<u8>), der::Error> {
                    let mut r = der::SliceReader::new(bits)?;
                    let ne = r.sequence(|inner| {
                        let n = der::asn1::UintRef::decode(inner)?;
                        let e = der::asn1::UintRef::decode(inner)?;
                        Ok::<_, der::Error>((n.as_bytes().to_vec(), e.as_bytes().to_vec()))
                    })?;
                    r.finish()?;
                    Ok(ne)
                };
                let (modulus, exponent) =
                    parse().map_err(|e| TpmError::Unsupported(format!("AK RSA key: {e}")))?;
                Ok(AkPublic::Rsa { modulus, exponent })
            }
            crate::x509::OID_EC_PUBLIC_KEY => {
                let curve = spki
                    .algorithm
                    .parameters
                    .and_then(|p| p.decode_as::<der::asn1::ObjectIdentifier>().ok())
                    .map(|o| o.to_string())
                    .unwrap_or_default();
                match curve.as_str() {
                    crate::x509::OID_P256 => Ok(AkPublic::EcP256(bits.to_vec())),
                    crate::x509::OID_SECP384R1 => Ok(AkPublic::EcP384(bits.to_vec())),
                    other => Err(TpmError::Unsupported(format!("AK curve {other}"))),
                }
            }
            other => Err(TpmError::Unsupported(format!("AK algorithm {other}"))),
        }
    }

    /// From the public key of a certificate.
    pub fn from_cert(cert: &Cert) -> Result<Self, TpmError> {
        use der::Encode;
        let spki = cert
            .parsed
            .tbs_certificate()
            .subject_public_key_info()
            .to_der()
            .map_err(|e| TpmError::Unsupported(e.to_string()))?;
        Self::from_spki(&spki)
    }
}

/// `04 ‖ x ‖ y` with each coordinate left-padded to the curve size (a TPM
/// may drop leading zero bytes of a coordinate; the integer is the same).
fn sec1(x: &[u8], y: &[u8], size: usize) -> Result<Vec<u8>, TpmError> {
    let mut out = vec![4u8];
    for c in [x, y] {
        if c.len() > size {
            return Err(TpmError::Unsupported("ECC coordinate too long".into()));
        }
        out.extend(std::iter::repeat_n(0u8, size.saturating_sub(c.len())));
        out.extend_from_slice(c);
    }
    Ok(out)
}

/// PCR values the evidence supplies, by (bank algorithm, index).
pub type PcrValues = BTreeMap<(u16, u8), Vec<u8>>;

/// Who vouched for the attestation key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AkTrust {
    /// A certificate chain to a configured root; the leaf's subject.
    Certificate(String),
    /// An operator allow-list entry.
    AllowList,
    /// A hardware report bound the key (Azure's HCL report).
    HardwareReport,
    /// Nothing: only the signature was checked.
    None,
}

/// A quote whose signature, nonce and PCR digest checked out; the PCR
/// values in it are the quoted ones. Only this crate constructs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedQuote {
    pub quote: Quote,
    /// The quoted PCRs, by bank and index.
    pub pcrs: PcrValues,
    pub ak_trust: AkTrust,
    /// Claims from an event log that replayed to the quoted PCRs.
    pub event_log: Option<serde_json::Value>,
}

impl VerifiedQuote {
    /// A quoted PCR value.
    pub fn pcr(&self, bank: u16, index: u8) -> Option<&[u8]> {
        self.pcrs.get(&(bank, index)).map(Vec::as_slice)
    }

    /// Marks the attestation key as vouched for.
    pub fn with_trust(mut self, trust: AkTrust) -> Self {
        self.ak_trust = trust;
        self
    }
}

/// The quote's hash (the signing scheme's; SHA-1 quotes are refused).
fn hash(backend: &dyn CryptoBackend, alg: u16, data: &[u8]) -> Result<Vec<u8>, TpmError> {
    Ok(match alg {
        TPM_ALG_SHA256 => backend.sha256(data).to_vec(),
        TPM_ALG_SHA384 => backend.sha384(data).to_vec(),
        other => return Err(TpmError::Unsupported(format!("quote hash {other:#06x}"))),
    })
}

/// Verifies the AK's signature over `message` (the `TPMS_ATTEST` bytes as
/// received).
fn verify_signature(
    ak: &AkPublic,
    message: &[u8],
    signature: &Signature,
    backend: &dyn CryptoBackend,
) -> Result<(), TpmError> {
    let bad = |_| TpmError::BadSignature;
    match (ak, signature) {
        (AkPublic::Rsa { modulus, exponent }, Signature::RsaSsa { hash, sig })
        | (AkPublic::Rsa { modulus, exponent }, Signature::RsaPss { hash, sig }) => {
            let pss = matches!(signature, Signature::RsaPss { .. });
            let scheme = match (*hash, pss) {
                (TPM_ALG_SHA256, false) => RsaScheme::Pkcs1Sha256,
                (TPM_ALG_SHA384, false) => RsaScheme::Pkcs1Sha384,
                (TPM_ALG_SHA256, true) => RsaScheme::PssSha256,
                (TPM_ALG_SHA384, true) => RsaScheme::PssSha384,
                (h, _) => return Err(TpmError::Unsupported(format!("RSA with hash {h:#06x}"))),
            };
            backend
                .verify_rsa_components(modulus, exponent, scheme, message, sig)
                .map_err(bad)
        }
        (AkPublic::EcP256(point), Signature::Ecdsa { hash, r, s }) if *hash == TPM_ALG_SHA256 => {
            let fixed = sec1(r, s, 32)?;
            backend
                .verify_p256_sha256(point, message, fixed.get(1..).unwrap_or_default(), true)
                .map_err(bad)
        }
        (AkPublic::EcP384(point), Signature::Ecdsa { hash, r, s }) if *hash == TPM_ALG_SHA384 => {
            let fixed = sec1(r, s, 48)?;
            backend
                .verify_p384_sha384(point, message, fixed.get(1..).unwrap_or_default(), true)
                .map_err(bad)
        }
        _ => Err(TpmError::Unsupported(
            "the signature scheme does not match the attestation key".into(),
        )),
    }
}

/// Verifies a quote: the signature (a parsed `TPMT_SIGNATURE`, or a raw
/// signature with its scheme) over `message` as received, the
/// qualifying data against `nonce` (exactly; `None` skips the check, for
/// offline inspection only), and `pcrs` (which must hold every selected
/// PCR of every selected bank, each of the bank's digest size) hashed in
/// selection order into the quoted `pcrDigest`.
pub fn verify_quote(
    ak: &AkPublic,
    message: &[u8],
    sig: &Signature,
    pcrs: &PcrValues,
    nonce: Option<&[u8]>,
    backend: &dyn CryptoBackend,
) -> Result<VerifiedQuote, TpmError> {
    let quote = Quote::parse(message)?;
    verify_signature(ak, message, sig, backend)?;
    if let Some(n) = nonce
        && quote.extra_data != n
    {
        return Err(TpmError::NonceMismatch {
            expected: hex::encode(n),
            actual: hex::encode(&quote.extra_data),
        });
    }
    let mut concat = Vec::new();
    let mut quoted = PcrValues::new();
    for sel in &quote.pcr_select {
        let size = digest_size(sel.hash).unwrap_or_default();
        for &i in &sel.pcrs {
            let v = pcrs.get(&(sel.hash, i)).ok_or_else(|| {
                TpmError::Pcr(format!(
                    "{i} of bank {:#06x} is quoted but not supplied",
                    sel.hash
                ))
            })?;
            if v.len() != size {
                return Err(TpmError::Pcr(format!(
                    "{i} of bank {:#06x} is {} bytes, expected {size}",
                    sel.hash,
                    v.len()
                )));
            }
            concat.extend_from_slice(v);
            quoted.insert((sel.hash, i), v.clone());
        }
    }
    // The TPM hashes the selection with the signing scheme's hash.
    if hash(backend, sig.hash(), &concat)? != quote.pcr_digest {
        return Err(TpmError::PcrDigestMismatch);
    }
    Ok(VerifiedQuote {
        quote,
        pcrs: quoted,
        ak_trust: AkTrust::None,
        event_log: None,
    })
}

/// Checks an AK certificate chain: `chain[0]` is the AK certificate, each
/// certificate is signed by the next or by one of `roots`, all valid at
/// `at`, ending at a root. Returns the AK's public key and its subject.
pub fn verify_ak_chain(
    chain: &[Cert],
    roots: &[Cert],
    at: UnixTime,
    backend: &dyn CryptoBackend,
) -> Result<(AkPublic, String), TpmError> {
    let leaf = crate::x509::verify_chain(chain, roots, at, backend).map_err(|e| match e {
        crate::x509::CertError::Chain(m) => TpmError::AkNotTrusted(m),
        other => TpmError::AkNotTrusted(other.to_string()),
    })?;
    let subject = if leaf.subject.is_empty() {
        "(empty subject)".to_string()
    } else {
        leaf.subject.clone()
    };
    Ok((AkPublic::from_cert(leaf)?, subject))
}

/// What vouches for attestation keys when the evidence is a plain TPM
/// quote.
#[derive(Debug, Clone, Default)]
pub struct AkPolicy {
    /// Roots an AK certificate must chain to (with `intermediates`).
    pub roots: Vec<Cert>,
    pub intermediates: Vec<Cert>,
    /// Operator allow-list: AK public keys (DER SubjectPublicKeyInfo).
    pub trusted_keys: Vec<Vec<u8>>,
}

impl AkPolicy {
    /// From file contents (as `(name, bytes)`): certificate files (DER or
    /// PEM, several per PEM file; self-signed ones become roots, the others
    /// intermediates) and attestation-key files (DER or PEM
    /// SubjectPublicKeyInfo, each checked to be a usable key).
    pub fn from_files(
        cert_files: &[(String, Vec<u8>)],
        ak_files: &[(String, Vec<u8>)],
    ) -> Result<Self, String> {
        let mut p = AkPolicy::default();
        for (name, bytes) in cert_files {
            for blob in
                veil_endorsements::certs::decode_blobs(name, bytes).map_err(|e| e.to_string())?
            {
                if let veil_endorsements::certs::Blob::Certificate(der) = blob {
                    let c = Cert::parse(&der).map_err(|e| format!("{name}: {e}"))?;
                    if c.is_self_issued() {
                        p.roots.push(c);
                    } else {
                        p.intermediates.push(c);
                    }
                }
            }
        }
        for (name, bytes) in ak_files {
            let der = match std::str::from_utf8(bytes) {
                Ok(t) if t.trim_start().starts_with("-----") => {
                    der::pem::decode_vec(t.trim().as_bytes())
                        .map_err(|e| format!("{name}: {e}"))?
                        .1
                }
                _ => bytes.clone(),
            };
            AkPublic::from_spki(&der).map_err(|e| format!("{name}: {e}"))?;
            p.trusted_keys.push(der);
        }
        Ok(p)
    }
}

/// Decides whether `ak` is vouched for: by its certificate (which must
/// certify this very key, chaining through `extra_intermediates` and the
/// policy's intermediates to a root) or by the allow-list.
pub fn trust_ak(
    ak: &AkPublic,
    ak_cert: Option<&[u8]>,
    extra_intermediates: &[Vec<u8>],
    policy: &AkPolicy,
    at: UnixTime,
    backend: &dyn CryptoBackend,
) -> Result<AkTrust, TpmError> {
    if let Some(der) = ak_cert {
        let parse = |d: &[u8]| {
            Cert::parse(d).map_err(|e| TpmError::AkNotTrusted(format!("AK certificate: {e}")))
        };
        let mut chain = vec![parse(der)?];
        for d in extra_intermediates {
            chain.push(parse(d)?);
        }
        chain.extend(policy.intermediates.iter().cloned());
        let (certified, subject) = verify_ak_chain(&chain, &policy.roots, at, backend)?;
        if &certified != ak {
            return Err(TpmError::AkNotTrusted(
                "the AK certificate certifies another key".into(),
            ));
        }
        return Ok(AkTrust::Certificate(subject));
    }
    for k in &policy.trusted_keys {
        if AkPublic::from_spki(k).is_ok_and(|t| &t == ak) {
            return Ok(AkTrust::AllowList);
        }
    }
    Err(TpmError::AkNotTrusted(
        "no AK certificate and the key is not on the allow-list".into(),
    ))
}

/// Verifies CoCo `tpm` evidence: the AK vouched for by `policy`, the quote
/// (SHA-256 PCRs 0–23) against `nonce`, and the event log when present.
pub fn verify_tpm_evidence(
    ev: &veil_evidence::tpm::TpmEvidence,
    policy: &AkPolicy,
    nonce: Option<&[u8]>,
    at: UnixTime,
    backend: &dyn CryptoBackend,
) -> Result<VerifiedQuote, TpmError> {
    let ak = AkPublic::from_spki(&ev.ak_public)?;
    let trust = trust_ak(&ak, ev.ak_cert.as_deref(), &[], policy, at, backend)?;
    let pcrs: PcrValues = ev
        .pcrs
        .iter()
        .zip(0u8..)
        .map(|(v, i)| ((TPM_ALG_SHA256, i), v.clone()))
        .collect();
    let q = verify_quote(
        &ak,
        &ev.message,
        &Signature::parse(&ev.signature)?,
        &pcrs,
        nonce,
        backend,
    )?
    .with_trust(trust);
    let mut q = q;
    if let Some(log) = &ev.event_log {
        let log = veil_evidence::eventlog::parse(log)?;
        check_event_log(&q, &log, TPM_ALG_SHA256, backend)?;
        q.event_log = Some(event_claims(&log));
    }
    Ok(q)
}

/// Verifies a go-tpm-tools `Attestation` (GCE vTPM): the AK a restricted
/// signing key, certified to `policy`'s roots (or allow-listed), every
/// quote (one per PCR bank) with its PCRs and the nonce, and the event log
/// replayed against every quoted bank it has digests for (SHA-1, SHA-256,
/// SHA-384; SHA-1 only as a replay hash, never for signatures).
/// The result holds the PCRs of all banks.
pub fn verify_gce(
    att: &veil_evidence::gce::GceAttestation,
    policy: &AkPolicy,
    nonce: Option<&[u8]>,
    at: UnixTime,
    backend: &dyn CryptoBackend,
) -> Result<VerifiedQuote, TpmError> {
    let public = ev::Public::parse(&att.ak_pub)?;
    let need = ev::TPMA_OBJECT_SIGN | ev::TPMA_OBJECT_RESTRICTED | ev::TPMA_OBJECT_FIXED_TPM;
    if public.object_attributes & need != need {
        return Err(TpmError::AkNotTrusted(
            "the AK is not a restricted, fixedTPM signing key (it could sign forged quotes)".into(),
        ));
    }
    let ak = AkPublic::from_tpm(&public)?;
    let trust = trust_ak(
        &ak,
        att.ak_cert.as_deref(),
        &att.intermediate_certs,
        policy,
        at,
        backend,
    )?;
    let mut merged: Option<VerifiedQuote> = None;
    for q in &att.quotes {
        let mut pcrs = PcrValues::new();
        for (i, v) in &q.pcrs {
            let i = u8::try_from(*i).map_err(|_| TpmError::Pcr(format!("index {i}")))?;
            pcrs.insert((q.hash, i), v.clone());
        }
        let v = verify_quote(
            &ak,
            &q.quote,
            &Signature::parse(&q.raw_sig)?,
            &pcrs,
            nonce,
            backend,
        )?;
        // Every quoted bank must be the one the PCR list names.
        if v.quote.pcr_select.iter().any(|s| s.hash != q.hash) {
            return Err(TpmError::Pcr(
                "a quote selects another bank than its PCR list".into(),
            ));
        }
        match &mut merged {
            None => merged = Some(v),
            Some(m) => {
                if m.quote.extra_data != v.quote.extra_data {
                    return Err(TpmError::NonceMismatch {
                        expected: hex::encode(&m.quote.extra_data),
                        actual: hex::encode(&v.quote.extra_data),
                    });
                }
                m.pcrs.extend(v.pcrs);
            }
        }
    }
    let mut merged = merged
        .ok_or_else(|| TpmError::Pcr("no quote".into()))?
        .with_trust(trust);
    if !att.event_log.is_empty() {
        let log = veil_evidence::eventlog::parse(&att.event_log)?;
        let mut replayed = false;
        for (alg, _) in &log.algorithms {
            if merged.pcrs.keys().any(|(b, _)| b == alg) && hash_supported(*alg) {
                check_event_log(&merged, &log, *alg, backend)?;
                replayed = true;
            }
        }
        if !replayed {
            return Err(TpmError::Pcr(
                "the event log has no bank that was quoted".into(),
            ));
        }
        merged.event_log = Some(event_claims(&log));
    }
    Ok(merged)
}

/// The hardware evidence a confidential GCE VM attaches to its attestation,
/// rebuilt by the parser from go-sev-guest's / go-tdx-guest's messages.
#[derive(Debug, Clone)]
pub enum GceTeeParts {
    /// The SNP report and the VCEK/VLEK and ASK/ARK it came with.
    Snp(
        Box<veil_evidence::snp::AttestationReport>,
        veil_endorsements::snp::SnpEndorsements,
    ),
    /// The TD quote (v4).
    Tdx(Box<veil_evidence::dcap::Quote>),
}

/// Parses the attached TEE evidence; `Ok(None)` when there is none.
pub fn gce_tee_parts(
    att: &veil_evidence::gce::GceAttestation,
) -> Result<Option<GceTeeParts>, TpmError> {
    Ok(match &att.tee {
        None => None,
        Some(veil_evidence::gce::GceTee::Snp(g)) => {
            let report = veil_evidence::snp::AttestationReport::parse(&g.report)?;
            let mut e = veil_endorsements::snp::SnpEndorsements::default();
            for der in [&g.vcek, &g.vlek, &g.ask, &g.ark].into_iter().flatten() {
                e.certs.push(der.clone());
            }
            Some(GceTeeParts::Snp(Box::new(report), e))
        }
        Some(veil_evidence::gce::GceTee::Tdx(q)) => Some(GceTeeParts::Tdx(Box::new(
            veil_evidence::dcap::Quote::parse(q)?,
        ))),
    })
}

/// The binding of attached TEE evidence to the TPM nonce: go-tpm-tools'
/// attester puts the nonce into the report data followed by zeros up to 64
/// bytes, so that exact value is required.
pub fn check_gce_report_data(report_data: &[u8], nonce: &[u8]) -> Result<(), TpmError> {
    let mut expected = [0u8; 64];
    expected
        .get_mut(..nonce.len())
        .ok_or_else(|| {
            TpmError::Tee("a nonce longer than 64 bytes cannot be in the report data".into())
        })?
        .copy_from_slice(nonce);
    if report_data != expected {
        return Err(TpmError::NonceMismatch {
            expected: hex::encode(expected),
            actual: hex::encode(report_data),
        });
    }
    Ok(())
}

/// What verified the attached TEE evidence.
#[derive(Debug, Clone)]
pub enum VerifiedGceTee {
    Snp(Box<crate::snp::VerifiedSnpReport>),
    Tdx(Box<crate::dcap::VerifiedQuote>),
}

impl VerifiedGceTee {
    /// Claims under `snp` or `tdx`.
    pub fn claims(&self) -> (&'static str, serde_json::Value) {
        match self {
            VerifiedGceTee::Snp(v) => ("snp", serde_json::to_value(v.claims()).unwrap_or_default()),
            VerifiedGceTee::Tdx(v) => ("tdx", serde_json::to_value(v.claims()).unwrap_or_default()),
        }
    }
}

/// Verifies the attached TEE evidence, if any: an SNP report with `snp`
/// (the attached certificates plus `endorsements`), a TD quote with `dcap`
/// and `collateral` (refused without collateral), and, with a nonce, its
/// binding ([`check_gce_report_data`]).
pub fn verify_gce_tee(
    att: &veil_evidence::gce::GceAttestation,
    snp: &crate::snp::SnpVerifier,
    endorsements: &veil_endorsements::snp::SnpEndorsements,
    dcap: Option<(
        &crate::dcap::DcapVerifier,
        &veil_endorsements::dcap::Collateral,
    )>,
    nonce: Option<&[u8]>,
    at: UnixTime,
) -> Result<Option<VerifiedGceTee>, TpmError> {
    let tee = |m: String| TpmError::Tee(m);
    let verified = match gce_tee_parts(att)? {
        None => return Ok(None),
        Some(GceTeeParts::Snp(report, mut e)) => {
            e.extend(endorsements.clone());
            let v = snp
                .verify(&report, &e, at)
                .map_err(|err| tee(format!("SEV-SNP report: {err}")))?;
            if let Some(n) = nonce {
                check_gce_report_data(&report.report_data, n)?;
            }
            VerifiedGceTee::Snp(Box::new(v))
        }
        Some(GceTeeParts::Tdx(quote)) => {
            let (dcap, collateral) =
                dcap.ok_or_else(|| tee("a TD quote needs DCAP collateral".into()))?;
            let v = dcap
                .verify(&quote, collateral, at)
                .map_err(|err| tee(format!("TD quote: {err}")))?;
            if let Some(n) = nonce {
                check_gce_report_data(quote.report_data(), n)?;
            }
            VerifiedGceTee::Tdx(Box::new(v))
        }
    };
    Ok(Some(verified))
}

fn hash_supported(alg: u16) -> bool {
    alg == TPM_ALG_SHA256 || alg == TPM_ALG_SHA384 || alg == veil_evidence::tpm::TPM_ALG_SHA1
}

/// The PCR values a TCG2 event log extends to, per bank, for PCRs the log
/// touches (the PC Client initial values: zero, 0xFF… for PCRs 17–22, and
/// PCR 0 starting at the StartupLocality).
pub fn replay_event_log(
    log: &veil_evidence::eventlog::EventLog,
    bank: u16,
    backend: &dyn CryptoBackend,
) -> Result<BTreeMap<u8, Vec<u8>>, TpmError> {
    let size =
        digest_size(bank).ok_or_else(|| TpmError::Unsupported(format!("bank {bank:#06x}")))?;
    let mut out: BTreeMap<u8, Vec<u8>> = BTreeMap::new();
    let initial = |i: u8| {
        if (17..=22).contains(&i) {
            vec![0xffu8; size]
        } else {
            vec![0u8; size]
        }
    };
    let mut locality = 0u8;
    for e in &log.events {
        // EV_NO_ACTION: not extended; StartupLocality sets PCR 0's start.
        if e.event_type == 3 {
            if let Some(rest) = e.data.strip_prefix(b"StartupLocality\0") {
                locality = rest.first().copied().unwrap_or(0);
            }
            continue;
        }
        let index = u8::try_from(e.index)
            .ok()
            .filter(|i| usize::from(*i) < ev::PCR_COUNT)
            .ok_or_else(|| TpmError::Pcr(format!("event for PCR {}", e.index)))?;
        let digest = e
            .digests
            .iter()
            .find(|(a, _)| *a == bank)
            .map(|(_, d)| d)
            .ok_or_else(|| {
                TpmError::Pcr(format!(
                    "an event for PCR {index} has no digest for bank {bank:#06x}"
                ))
            })?;
        let current = out.entry(index).or_insert_with(|| {
            let mut v = initial(index);
            if index == 0
                && let Some(last) = v.last_mut()
            {
                *last = locality;
            }
            v
        });
        let mut data = current.clone();
        data.extend_from_slice(digest);
        *current = if bank == veil_evidence::tpm::TPM_ALG_SHA1 {
            backend.sha1_for_pcr_replay(&data).to_vec()
        } else {
            hash(backend, bank, &data)?
        };
    }
    Ok(out)
}

/// Checks that `log` replays to the quoted PCRs of `bank` (every PCR the
/// log touches must be quoted and equal).
pub fn check_event_log(
    quote: &VerifiedQuote,
    log: &veil_evidence::eventlog::EventLog,
    bank: u16,
    backend: &dyn CryptoBackend,
) -> Result<usize, TpmError> {
    let replayed = replay_event_log(log, bank, backend)?;
    for (i, v) in &replayed {
        match quote.pcr(bank, *i) {
            Some(q) if q == v.as_slice() => {}
            Some(q) => {
                return Err(TpmError::Pcr(format!(
                    "{i}: the event log replays to {}, the quote says {}",
                    hex::encode(v),
                    hex::encode(q)
                )));
            }
            None => {
                return Err(TpmError::Pcr(format!(
                    "{i} is in the event log but not quoted"
                )));
            }
        }
    }
    Ok(replayed.len())
}

/// TCG PC Client event types, by name.
fn event_type_name(t: u32) -> String {
    match t {
        0x0000_0001 => "EV_POST_CODE".into(),
        0x0000_0003 => "EV_NO_ACTION".into(),
        0x0000_0004 => "EV_SEPARATOR".into(),
        0x0000_0005 => "EV_ACTION".into(),
        0x0000_0006 => "EV_EVENT_TAG".into(),
        0x0000_0007 => "EV_S_CRTM_CONTENTS".into(),
        0x0000_0008 => "EV_S_CRTM_VERSION".into(),
        0x0000_000D => "EV_IPL".into(),
        0x0000_000E => "EV_IPL_PARTITION_DATA".into(),
        0x0000_0012 => "EV_NONHOST_INFO".into(),
        0x8000_0001 => "EV_EFI_VARIABLE_DRIVER_CONFIG".into(),
        0x8000_0002 => "EV_EFI_VARIABLE_BOOT".into(),
        0x8000_0003 => "EV_EFI_BOOT_SERVICES_APPLICATION".into(),
        0x8000_0004 => "EV_EFI_BOOT_SERVICES_DRIVER".into(),
        0x8000_0005 => "EV_EFI_RUNTIME_SERVICES_DRIVER".into(),
        0x8000_0006 => "EV_EFI_GPT_EVENT".into(),
        0x8000_0007 => "EV_EFI_ACTION".into(),
        0x8000_0008 => "EV_EFI_PLATFORM_FIRMWARE_BLOB".into(),
        0x8000_0009 => "EV_EFI_HANDOFF_TABLES".into(),
        0x8000_000A => "EV_EFI_PLATFORM_FIRMWARE_BLOB2".into(),
        0x8000_000B => "EV_EFI_HANDOFF_TABLES2".into(),
        0x8000_0010 => "EV_EFI_HCRTM_EVENT".into(),
        0x8000_00E0 => "EV_EFI_VARIABLE_AUTHORITY".into(),
        other => format!("{other:#010x}"),
    }
}

/// A `UEFI_VARIABLE_DATA`: (vendor GUID, name, data).
fn uefi_variable(data: &[u8]) -> Option<(String, String, &[u8])> {
    let guid = data.get(..16)?;
    let name_len = usize::try_from(u64::from_le_bytes(data.get(16..24)?.try_into().ok()?)).ok()?;
    let data_len = usize::try_from(u64::from_le_bytes(data.get(24..32)?.try_into().ok()?)).ok()?;
    let name_end = 32usize.checked_add(name_len.checked_mul(2)?)?;
    let units: Vec<u16> = data
        .get(32..name_end)?
        .chunks_exact(2)
        .map(|c| {
            u16::from_le_bytes([
                c.first().copied().unwrap_or(0),
                c.get(1).copied().unwrap_or(0),
            ])
        })
        .collect();
    let name = String::from_utf16(&units).ok()?;
    let value = data.get(name_end..name_end.checked_add(data_len)?)?;
    // The GUID's text form: the first three fields little-endian.
    let g = |r: std::ops::Range<usize>| guid.get(r).unwrap_or_default().to_vec();
    let rev = |mut v: Vec<u8>| {
        v.reverse();
        hex::encode(v)
    };
    let guid = format!(
        "{}-{}-{}-{}-{}",
        rev(g(0..4)),
        rev(g(4..6)),
        rev(g(6..8)),
        hex::encode(g(8..10)),
        hex::encode(g(10..16))
    );
    Some((guid, name, value))
}

/// Claims from a replayed event log: every measured event (PCR, type,
/// SHA-256 digest when present, and what the data says for UEFI variables
/// and text events), and summaries for policy: `secure_boot` (the
/// SecureBoot variable measured into PCR 7) and the texts measured by the
/// boot loader (`ipl`, e.g. grub's commands and the kernel command line).
pub fn event_claims(log: &veil_evidence::eventlog::EventLog) -> serde_json::Value {
    let mut events = Vec::new();
    let mut secure_boot = serde_json::Value::Null;
    let mut ipl = Vec::new();
    for e in log.events.iter().filter(|e| e.event_type != 3) {
        let mut v = serde_json::json!({
            "pcr": e.index,
            "type": event_type_name(e.event_type),
        });
        if let Some((_, d)) = e.digests.iter().find(|(a, _)| *a == TPM_ALG_SHA256) {
            v["sha256"] = hex::encode(d).into();
        }
        match e.event_type {
            0x8000_0001 | 0x8000_0002 | 0x8000_00E0 => {
                if let Some((guid, name, value)) = uefi_variable(&e.data) {
                    if e.event_type == 0x8000_0001 && name == "SecureBoot" {
                        secure_boot =
                            serde_json::Value::Bool(value.first().is_some_and(|b| *b == 1));
                    }
                    v["variable"] = serde_json::json!({"guid": guid, "name": name,
                        "data": hex::encode(value.get(..value.len().min(64)).unwrap_or_default())});
                }
            }
            0x0000_000D | 0x8000_0007 | 0x0000_0005 => {
                let text = String::from_utf8_lossy(&e.data)
                    .trim_end_matches('\0')
                    .to_string();
                if e.event_type == 0x0000_000D && e.data.is_ascii() {
                    ipl.push(text.clone());
                }
                if e.data.is_ascii() {
                    v["text"] = text.into();
                }
            }
            _ => {}
        }
        events.push(v);
    }
    serde_json::json!({"events": events, "secure_boot": secure_boot, "ipl": ipl})
}

impl VerifiedQuote {
    /// The claims for policy and output: PCRs by bank, clock, firmware.
    pub fn claims(&self) -> serde_json::Value {
        let mut banks = serde_json::Map::new();
        for ((bank, i), v) in &self.pcrs {
            let name = match *bank {
                veil_evidence::tpm::TPM_ALG_SHA1 => "sha1",
                TPM_ALG_SHA256 => "sha256",
                TPM_ALG_SHA384 => "sha384",
                _ => "sha512",
            };
            if let Some(o) = banks
                .entry(name)
                .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()))
                .as_object_mut()
            {
                o.insert(i.to_string(), hex::encode(v).into());
            }
        }
        let q = &self.quote;
        serde_json::json!({
            "pcrs": banks,
            "extra_data": hex::encode(&q.extra_data),
            "clock": q.clock_info.clock,
            "reset_count": q.clock_info.reset_count,
            "restart_count": q.clock_info.restart_count,
            "safe": q.clock_info.safe,
            "firmware_version": format!("{:#018x}", q.firmware_version),
            "ak_trust": match &self.ak_trust {
                AkTrust::Certificate(s) => format!("certificate: {s}"),
                AkTrust::AllowList => "allow-list".into(),
                AkTrust::HardwareReport => "hardware report".into(),
                AkTrust::None => "none".into(),
            },
            "event_log": self.event_log.clone().unwrap_or(serde_json::Value::Null),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::crypto::AWS_LC;
    use base64::Engine;

    /// The AK, the quote, its TPMT_SIGNATURE, the PCRs and the nonce.
    type Vector = (AkPublic, Vec<u8>, Vec<u8>, PcrValues, Vec<u8>);

    fn trustee() -> Option<Vector> {
        let dir = veil_testkit::vectors()?;
        let v: serde_json::Value =
            serde_json::from_slice(&veil_testkit::read(&dir, "tpm/trustee/tpm_evidence.json"))
                .unwrap();
        let b64 = base64::engine::general_purpose::STANDARD;
        let ak =
            AkPublic::from_spki(&b64.decode(v["ak_public"].as_str().unwrap()).unwrap()).unwrap();
        let q = &v["tpm_quote"];
        let pcrs: PcrValues = q["pcrs"]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
            .map(|(i, h)| {
                (
                    (TPM_ALG_SHA256, i as u8),
                    hex::decode(h.as_str().unwrap()).unwrap(),
                )
            })
            .collect();
        let msg = b64.decode(q["message"].as_str().unwrap()).unwrap();
        let sig = b64.decode(q["signature"].as_str().unwrap()).unwrap();
        // The MANIFEST: a 48-byte nonce a04182b5… followed by 16 zero bytes.
        let nonce = Quote::parse(&msg).unwrap().extra_data;
        assert!(nonce[48..].iter().all(|b| *b == 0));
        Some((ak, msg, sig, pcrs, nonce))
    }

    #[test]
    fn swtpm_quote_verifies_and_every_signed_byte_matters() {
        let Some((ak, msg, sig, pcrs, nonce)) = trustee() else {
            return;
        };
        assert!(nonce.starts_with(&hex::decode("a04182b5").unwrap()));
        let verify = |m: &[u8], s: &[u8], p: &PcrValues, n: &[u8]| {
            verify_quote(&ak, m, &Signature::parse(s)?, p, Some(n), &AWS_LC)
        };
        let v = verify(&msg, &sig, &pcrs, &nonce).unwrap();
        assert_eq!(v.pcr(TPM_ALG_SHA256, 0), Some(&[0u8; 32][..]));
        assert_eq!(v.ak_trust, AkTrust::None);
        // Wrong nonce (the 48-byte value alone is not the 64 bytes quoted).
        assert!(matches!(
            verify(&msg, &sig, &pcrs, &nonce[..48]),
            Err(TpmError::NonceMismatch { .. })
        ));
        // A changed PCR value.
        let mut other = pcrs.clone();
        other.get_mut(&(TPM_ALG_SHA256, 7)).unwrap()[0] ^= 1;
        assert_eq!(
            verify(&msg, &sig, &other, &nonce),
            Err(TpmError::PcrDigestMismatch)
        );
        // A missing PCR.
        let mut missing = pcrs.clone();
        missing.remove(&(TPM_ALG_SHA256, 23));
        assert!(matches!(
            verify(&msg, &sig, &missing, &nonce),
            Err(TpmError::Pcr(_))
        ));
        // Every byte of TPMS_ATTEST and of the signature is covered.
        for i in 0..msg.len() {
            let mut m = msg.clone();
            m[i] ^= 1;
            assert!(verify(&m, &sig, &pcrs, &nonce).is_err(), "message byte {i}");
        }
        for i in 0..sig.len() {
            let mut s = sig.clone();
            s[i] ^= 1;
            assert!(
                verify(&msg, &s, &pcrs, &nonce).is_err(),
                "signature byte {i}"
            );
        }
    }
}
