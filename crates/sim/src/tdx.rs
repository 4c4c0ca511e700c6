//! The simulated Intel TDX TEE.
//!
//! A PKI that mirrors Intel's DCAP hierarchy — a root CA, a PCK Platform
//! CA, a PCK certificate carrying the SGX extension (FMSPC, PCE-ID, TCB
//! component SVNs, PCESVN), a TCB Signing certificate, all ECDSA P-256 — a
//! quoting enclave (attestation key, QE report signed by the PCK key), TD
//! quotes v4 with chosen MRTD, RTMRs, MRCONFIGID and report data, and the
//! matching collateral (TCB info and QE identity signed as text, root and PCK
//! CRLs) in the JSON shape PCCS clients assemble.
//!
//! Every certificate names the organisation [`crate::SIMULATED_ORG`]; a
//! verifier trusts the simulated root only through a `dangerous` option.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair};
use serde_json::{Value, json};

use crate::derw::{bits, name, octets, oid, seq, time, tlv, uint};
use crate::pki::{P256, StateDir, basic_ca, crypto};
use crate::{SIMULATED_ORG, SimError, pem};

const CA_NOT_BEFORE: i64 = 1_577_836_800; // 2020-01-01
const CA_NOT_AFTER: i64 = 2_524_521_600; // 2049-12-31
const FMSPC: [u8; 6] = [0x00, 0x80, 0x6f, 0x05, 0x00, 0x00];
const PCE_ID: [u8; 2] = [0, 0];
const PCESVN: u16 = 13;
const SGX_SVNS: [u8; 16] = [2; 16];
const QE_MRSIGNER: [u8; 32] = [0x51; 32];
const QE_ISVSVN: u16 = 4;
const QE_ISVPRODID: u16 = 2;
const INTEL_QE_VENDOR_ID: [u8; 16] = [
    0x93, 0x9a, 0x72, 0x33, 0xf7, 0x9c, 0x4c, 0xa9, 0x94, 0x0a, 0x0d, 0xb3, 0x95, 0x7f, 0x06, 0x07,
];

/// What to put in a simulated TD quote.
#[derive(Debug, Clone)]
pub struct TdParams {
    pub mr_td: [u8; 48],
    pub mr_config_id: [u8; 48],
    pub rtmr: [[u8; 48]; 4],
    pub report_data: [u8; 64],
    /// TD_ATTRIBUTES (bit 0 debug, bit 28 SEPT_VE_DISABLE).
    pub td_attributes: u64,
}

impl Default for TdParams {
    fn default() -> Self {
        TdParams {
            mr_td: [0; 48],
            mr_config_id: [0; 48],
            rtmr: [[0; 48]; 4],
            report_data: [0; 64],
            td_attributes: 1 << 28,
        }
    }
}

/// A simulated TDX platform.
#[derive(Debug)]
pub struct SimTdx {
    root_key: EcdsaKeyPair,
    ca_key: EcdsaKeyPair,
    pck_key: EcdsaKeyPair,
    tcb_key: EcdsaKeyPair,
    att_key: EcdsaKeyPair,
    root_der: Vec<u8>,
    ca_der: Vec<u8>,
    pck_der: Vec<u8>,
    tcb_der: Vec<u8>,
}

fn ca_name(cn: &str) -> Vec<u8> {
    name(&[
        ("2.5.4.3", cn),
        ("2.5.4.10", SIMULATED_ORG),
        ("2.5.4.7", "Santa Clara"),
        ("2.5.4.8", "CA"),
        ("2.5.4.6", "US"),
    ])
}

fn p256() -> Result<EcdsaKeyPair, SimError> {
    P256.generate()
}

fn ecdsa_alg() -> Vec<u8> {
    P256.alg()
}

/// A DER signature by `key` (certificates, CRLs).
fn sign_der(key: &EcdsaKeyPair, msg: &[u8]) -> Result<Vec<u8>, SimError> {
    P256.sign_der(key, msg)
}

fn cert(
    serial: u8,
    issuer_cn: &str,
    subject_cn: &str,
    subject: &EcdsaKeyPair,
    issuer: &EcdsaKeyPair,
    extensions: &[Vec<u8>],
) -> Result<Vec<u8>, SimError> {
    P256.cert(
        serial,
        &ca_name(issuer_cn),
        &ca_name(subject_cn),
        subject,
        issuer,
        (CA_NOT_BEFORE, CA_NOT_AFTER),
        extensions,
    )
}

/// A raw `r ‖ s` signature by `key` (quote, QE report, collateral JSON).
fn sign_raw(key: &EcdsaKeyPair, msg: &[u8]) -> Result<Vec<u8>, SimError> {
    Ok(crypto(key.sign(&SystemRandom::new(), msg), "ECDSA sign")?
        .as_ref()
        .to_vec())
}

fn sgx_extension() -> Vec<u8> {
    let base = "1.2.840.113741.1.13.1";
    let mut tcb: Vec<Vec<u8>> = SGX_SVNS
        .iter()
        .enumerate()
        .map(|(i, svn)| seq(&[&oid(&format!("{base}.2.{}", i + 1)), &uint(&[*svn])]))
        .collect();
    tcb.push(seq(&[
        &oid(&format!("{base}.2.17")),
        &uint(&PCESVN.to_be_bytes()),
    ]));
    tcb.push(seq(&[&oid(&format!("{base}.2.18")), &octets(&SGX_SVNS)]));
    let tcb_refs: Vec<&[u8]> = tcb.iter().map(Vec::as_slice).collect();
    let value = seq(&[
        &seq(&[&oid(&format!("{base}.1")), &octets(&[0x77; 16])]),
        &seq(&[&oid(&format!("{base}.2")), &seq(&tcb_refs)]),
        &seq(&[&oid(&format!("{base}.3")), &octets(&PCE_ID)]),
        &seq(&[&oid(&format!("{base}.4")), &octets(&FMSPC)]),
        &seq(&[&oid(&format!("{base}.5")), &tlv(0x0a, &[0])]),
    ]);
    seq(&[&oid(base), &octets(&value)])
}

fn rfc3339(t: i64) -> String {
    ::time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| {
            d.format(&::time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

impl SimTdx {
    /// A fresh simulated platform.
    pub fn generate() -> Result<Self, SimError> {
        let (root_key, ca_key, pck_key, tcb_key, att_key) =
            (p256()?, p256()?, p256()?, p256()?, p256()?);
        let root_der = cert(
            1,
            "Intel SGX Root CA",
            "Intel SGX Root CA",
            &root_key,
            &root_key,
            &[basic_ca()],
        )?;
        let ca_der = cert(
            2,
            "Intel SGX Root CA",
            "Intel SGX PCK Platform CA",
            &ca_key,
            &root_key,
            &[basic_ca()],
        )?;
        let pck_der = cert(
            3,
            "Intel SGX PCK Platform CA",
            "Intel SGX PCK Certificate",
            &pck_key,
            &ca_key,
            &[sgx_extension()],
        )?;
        let tcb_der = cert(
            4,
            "Intel SGX Root CA",
            "Intel SGX TCB Signing",
            &tcb_key,
            &root_key,
            &[],
        )?;
        Ok(SimTdx {
            root_key,
            ca_key,
            pck_key,
            tcb_key,
            att_key,
            root_der,
            ca_der,
            pck_der,
            tcb_der,
        })
    }

    /// Loads the platform kept in `dir` (keys as PKCS#8, certificates as
    /// DER, mode 0600), or creates one there, so that separate processes
    /// (an agent, a broker told to trust the root) share one platform.
    pub fn load_or_create(dir: &std::path::Path) -> Result<Self, SimError> {
        let state = StateDir::new(dir, "tdx");
        let key_names = ["root", "ca", "pck", "tcb", "att"];
        let cert_names = ["root", "ca", "pck", "tcb"];
        if let Some((keys, certs)) = state.load(&P256, &key_names, &cert_names)? {
            let [root_key, ca_key, pck_key, tcb_key, att_key] = <[EcdsaKeyPair; 5]>::try_from(keys)
                .map_err(|_| SimError::Crypto("simulator state"))?;
            let [root_der, ca_der, pck_der, tcb_der] =
                <[Vec<u8>; 4]>::try_from(certs).map_err(|_| SimError::Crypto("simulator state"))?;
            return Ok(SimTdx {
                root_key,
                ca_key,
                pck_key,
                tcb_key,
                att_key,
                root_der,
                ca_der,
                pck_der,
                tcb_der,
            });
        }
        let sim = Self::generate()?;
        state.save(
            &[
                ("root", &sim.root_key),
                ("ca", &sim.ca_key),
                ("pck", &sim.pck_key),
                ("tcb", &sim.tcb_key),
                ("att", &sim.att_key),
            ],
            &[
                ("root", &sim.root_der),
                ("ca", &sim.ca_der),
                ("pck", &sim.pck_der),
                ("tcb", &sim.tcb_der),
            ],
        )?;
        Ok(sim)
    }

    /// The simulated root (DER): what a verifier must be told to trust.
    pub fn root_der(&self) -> &[u8] {
        &self.root_der
    }

    /// A TD quote v4 with these parameters.
    pub fn quote(&self, p: &TdParams) -> Result<Vec<u8>, SimError> {
        let mut q = Vec::with_capacity(5000);
        // Header.
        q.extend_from_slice(&4u16.to_le_bytes());
        q.extend_from_slice(&2u16.to_le_bytes());
        q.extend_from_slice(&0x81u32.to_le_bytes());
        q.extend_from_slice(&[0u8; 4]);
        q.extend_from_slice(&INTEL_QE_VENDOR_ID);
        q.extend_from_slice(&[0u8; 20]);
        // TD report body (TDX 1.0).
        q.extend_from_slice(&[0u8; 16]); // tee_tcb_svn
        q.extend_from_slice(&[0x11; 48]); // mr_seam
        q.extend_from_slice(&[0u8; 48]); // mr_signer_seam
        q.extend_from_slice(&[0u8; 8]); // seam_attributes
        q.extend_from_slice(&p.td_attributes.to_le_bytes());
        q.extend_from_slice(&0x0000_0000_0006_02e7u64.to_le_bytes()); // xfam
        q.extend_from_slice(&p.mr_td);
        q.extend_from_slice(&p.mr_config_id);
        q.extend_from_slice(&[0u8; 48]); // mr_owner
        q.extend_from_slice(&[0u8; 48]); // mr_owner_config
        for r in &p.rtmr {
            q.extend_from_slice(r);
        }
        q.extend_from_slice(&p.report_data);
        let signature = sign_raw(&self.att_key, &q)?;
        let att_pub = self
            .att_key
            .public_key()
            .as_ref()
            .get(1..)
            .unwrap_or(&[])
            .to_vec();
        // QE report: an SGX report whose report data binds the attestation key.
        let auth = [0x5au8; 32];
        let mut bound = att_pub.clone();
        bound.extend_from_slice(&auth);
        let mut rd = [0u8; 64];
        rd[..32].copy_from_slice(
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &bound).as_ref(),
        );
        let mut qe = Vec::with_capacity(384);
        qe.extend_from_slice(&[0u8; 16]); // cpu_svn
        qe.extend_from_slice(&0u32.to_le_bytes()); // misc_select
        qe.extend_from_slice(&[0u8; 28]);
        let mut attributes = [0u8; 16];
        attributes[0] = 0x11;
        qe.extend_from_slice(&attributes);
        qe.extend_from_slice(&[0x33; 32]); // mr_enclave
        qe.extend_from_slice(&[0u8; 32]);
        qe.extend_from_slice(&QE_MRSIGNER);
        qe.extend_from_slice(&[0u8; 96]);
        qe.extend_from_slice(&QE_ISVPRODID.to_le_bytes());
        qe.extend_from_slice(&QE_ISVSVN.to_le_bytes());
        qe.extend_from_slice(&[0u8; 60]);
        qe.extend_from_slice(&rd);
        let qe_sig = sign_raw(&self.pck_key, &qe)?;
        let chain = format!(
            "{}{}{}",
            pem(&self.pck_der),
            pem(&self.ca_der),
            pem(&self.root_der)
        );
        let mut cert6 = qe;
        cert6.extend_from_slice(&qe_sig);
        cert6.extend_from_slice(&(auth.len() as u16).to_le_bytes());
        cert6.extend_from_slice(&auth);
        cert6.extend_from_slice(&5u16.to_le_bytes());
        cert6.extend_from_slice(&(chain.len() as u32).to_le_bytes());
        cert6.extend_from_slice(chain.as_bytes());
        let mut sig_data = signature;
        sig_data.extend_from_slice(&att_pub);
        sig_data.extend_from_slice(&6u16.to_le_bytes());
        sig_data.extend_from_slice(&(cert6.len() as u32).to_le_bytes());
        sig_data.extend_from_slice(&cert6);
        q.extend_from_slice(&(sig_data.len() as u32).to_le_bytes());
        q.extend_from_slice(&sig_data);
        Ok(q)
    }

    fn crl(
        &self,
        issuer_cn: &str,
        key: &EcdsaKeyPair,
        now: i64,
        revoked: &[u8],
    ) -> Result<Vec<u8>, SimError> {
        let entries: Vec<Vec<u8>> = revoked
            .iter()
            .map(|serial| seq(&[&uint(&[*serial]), &time(now - 3600)]))
            .collect();
        let entry_refs: Vec<&[u8]> = entries.iter().map(Vec::as_slice).collect();
        let mut parts = vec![
            uint(&[1]),
            ecdsa_alg(),
            ca_name(issuer_cn),
            time(now - 86_400),
            time(now + 30 * 86_400),
        ];
        if !entries.is_empty() {
            parts.push(seq(&entry_refs));
        }
        let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        let tbs = seq(&refs);
        let sig = sign_der(key, &tbs)?;
        Ok(seq(&[&tbs, &ecdsa_alg(), &bits(&sig)]))
    }

    /// The serial number of the simulated PCK certificate.
    pub const PCK_SERIAL: u8 = 3;

    /// Collateral whose PCK CRL revokes this platform's PCK certificate.
    pub fn collateral_revoking_pck(&self, now: i64) -> Result<Value, SimError> {
        let mut c = self.collateral(now)?;
        c["pck_crl"] = json!(hex::encode(self.crl(
            "Intel SGX PCK Platform CA",
            &self.ca_key,
            now,
            &[Self::PCK_SERIAL]
        )?));
        Ok(c)
    }

    /// Collateral valid from a day before `now` to 30 days after, in the
    /// PCCS JSON shape (CRLs and signatures as hex).
    pub fn collateral(&self, now: i64) -> Result<Value, SimError> {
        let (issue, next) = (rfc3339(now - 86_400), rfc3339(now + 30 * 86_400));
        let comps = |svn: u8| -> Vec<Value> { (0..16).map(|_| json!({"svn": svn})).collect() };
        let tcb_info = json!({
            "id": "TDX", "version": 3, "issueDate": issue, "nextUpdate": next,
            "fmspc": hex::encode(FMSPC), "pceId": hex::encode(PCE_ID), "tcbType": 0,
            "tcbEvaluationDataNumber": 17,
            "tdxModule": {"mrsigner": hex::encode([0u8; 48]), "attributes": "0000000000000000", "attributesMask": "FFFFFFFFFFFFFFFF"},
            "tdxModuleIdentities": [],
            "tcbLevels": [{
                "tcb": {"sgxtcbcomponents": comps(SGX_SVNS[0]), "pcesvn": PCESVN, "tdxtcbcomponents": comps(0)},
                "tcbDate": "2024-03-13T00:00:00Z", "tcbStatus": "UpToDate"
            }]
        })
        .to_string();
        let qe_identity = json!({
            "id": "TD_QE", "version": 2, "issueDate": issue, "nextUpdate": next,
            "tcbEvaluationDataNumber": 17, "miscselect": "00000000", "miscselectMask": "FFFFFFFF",
            "attributes": "11000000000000000000000000000000", "attributesMask": "FBFFFFFFFFFFFFFF0000000000000000",
            "mrsigner": hex::encode(QE_MRSIGNER).to_uppercase(), "isvprodid": QE_ISVPRODID,
            "tcbLevels": [{"tcb": {"isvsvn": QE_ISVSVN}, "tcbDate": "2024-03-13T00:00:00Z", "tcbStatus": "UpToDate"}]
        })
        .to_string();
        let tcb_chain = format!("{}{}", pem(&self.tcb_der), pem(&self.root_der));
        Ok(json!({
            "pck_crl_issuer_chain": format!("{}{}", pem(&self.ca_der), pem(&self.root_der)),
            "root_ca_crl": hex::encode(self.crl("Intel SGX Root CA", &self.root_key, now, &[])?),
            "pck_crl": hex::encode(self.crl("Intel SGX PCK Platform CA", &self.ca_key, now, &[])?),
            "tcb_info_issuer_chain": tcb_chain,
            "tcb_info_signature": hex::encode(sign_raw(&self.tcb_key, tcb_info.as_bytes())?),
            "tcb_info": tcb_info,
            "qe_identity_issuer_chain": tcb_chain,
            "qe_identity_signature": hex::encode(sign_raw(&self.tcb_key, qe_identity.as_bytes())?),
            "qe_identity": qe_identity,
        }))
    }
}

/// A small measured-boot event log (firmware, kernel, command line into
/// RTMR0–2, and an application event into RTMR3) and the RTMR values that
/// replaying it produces.
pub fn measured_boot_log() -> (Vec<u8>, [[u8; 48]; 4]) {
    let events: Vec<(u32, u32, [u8; 48], Vec<u8>)> = [
        (1u32, 0x8000_0001u32, b"firmware volume".to_vec()),
        (2, 0x8000_0003, b"vmlinuz".to_vec()),
        (3, 0x0000_000d, b"console=hvc0 root=/dev/vda1".to_vec()),
        (4, 0x0000_0006, b"veil simulated application event".to_vec()),
    ]
    .into_iter()
    .map(|(i, t, data)| {
        let mut d = [0u8; 48];
        d.copy_from_slice(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA384, &data).as_ref());
        (i, t, d, data)
    })
    .collect();
    let mut rtmr = [[0u8; 48]; 4];
    for (i, _, d, _) in &events {
        if let Some(slot) = rtmr.get_mut((*i as usize).saturating_sub(1)) {
            let mut buf = slot.to_vec();
            buf.extend_from_slice(d);
            slot.copy_from_slice(
                aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA384, &buf).as_ref(),
            );
        }
    }
    (veil_evidence::eventlog::encode_sha384(&events), rtmr)
}
