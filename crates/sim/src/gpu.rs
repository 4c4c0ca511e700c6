//! The simulated NVIDIA GPU.
//!
//! A PKI that mirrors NVIDIA's device identity hierarchy — a root CA, a
//! device identity intermediate and a per-device signing certificate whose
//! 2.23.133.5.4.1 extension carries the firmware ID (FWID), all ECDSA P-384
//! — and SPDM 1.1 GET_MEASUREMENTS request/response pairs signed by the
//! device key, with NVIDIA's OpaqueData (driver and VBIOS versions, FWID),
//! in the CoCo `nvidia` evidence shape.
//!
//! Every certificate names the organisation [`crate::SIMULATED_ORG`]; a
//! verifier trusts the simulated root only through a `dangerous` option.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair};
use base64::Engine as _;
use veil_evidence::nvidia::{DeviceEvidence, MeasurementBlock, NvidiaEvidence, OpaqueItem};

use crate::derw::{name, octets, oid, seq, uint};
use crate::pki::{P384, StateDir, basic_ca, crypto};
use crate::{SIMULATED_ORG, SimError, pem};

const NOT_BEFORE: i64 = 1_577_836_800; // 2020-01-01
const NOT_AFTER: i64 = 2_524_521_600; // 2049-12-31
/// The driver version the simulated GPU reports.
pub const DRIVER_VERSION: &str = "550.90.07";
/// The VBIOS version the simulated GPU reports (as NVIDIA's verifier
/// prints it).
pub const VBIOS_VERSION: &str = "96.00.9f.00.01";
const VBIOS_BYTES: [u8; 8] = [0x00, 0x9f, 0x00, 0x96, 0x01, 0, 0, 0];
/// How many measurement blocks the simulated GPU reports.
pub const BLOCKS: u8 = 8;

/// The simulated device's measurement of block `index` (deterministic).
pub fn measurement(index: u8) -> [u8; 48] {
    let d = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA384,
        format!("veil simulated GPU measurement {index}").as_bytes(),
    );
    let mut out = [0u8; 48];
    out.copy_from_slice(d.as_ref());
    out
}

/// A simulated GPU and its PKI.
#[derive(Debug)]
pub struct SimGpu {
    root_key: EcdsaKeyPair,
    ica_key: EcdsaKeyPair,
    device_key: EcdsaKeyPair,
    root_der: Vec<u8>,
    ica_der: Vec<u8>,
    device_der: Vec<u8>,
    fwid: [u8; 48],
}

fn dn(cn: &str) -> Vec<u8> {
    name(&[
        ("2.5.4.3", cn),
        ("2.5.4.10", SIMULATED_ORG),
        ("2.5.4.6", "US"),
    ])
}

fn p384() -> Result<EcdsaKeyPair, SimError> {
    P384.generate()
}

fn cert(
    serial: u8,
    issuer_cn: &str,
    subject_cn: &str,
    subject: &EcdsaKeyPair,
    issuer: &EcdsaKeyPair,
    extensions: &[Vec<u8>],
) -> Result<Vec<u8>, SimError> {
    P384.cert(
        serial,
        &dn(issuer_cn),
        &dn(subject_cn),
        subject,
        issuer,
        (NOT_BEFORE, NOT_AFTER),
        extensions,
    )
}

/// The device extension in NVIDIA's layout: version, device key, FWID.
fn fwid_extension(device: &EcdsaKeyPair, fwid: &[u8; 48]) -> Vec<u8> {
    let value = seq(&[
        &uint(&[1]),
        &P384.spki(device),
        &seq(&[&oid("2.16.840.1.101.3.4.2.2"), &octets(fwid)]),
    ]);
    seq(&[&oid("2.23.133.5.4.1"), &octets(&value)])
}

impl SimGpu {
    /// A fresh simulated GPU with its own root.
    pub fn generate() -> Result<Self, SimError> {
        let (root_key, ica_key, device_key) = (p384()?, p384()?, p384()?);
        let fwid = measurement(0xff);
        Self::assemble(root_key, ica_key, device_key, fwid)
    }

    fn assemble(
        root_key: EcdsaKeyPair,
        ica_key: EcdsaKeyPair,
        device_key: EcdsaKeyPair,
        fwid: [u8; 48],
    ) -> Result<Self, SimError> {
        let root_der = cert(
            1,
            "NVIDIA Device Identity CA",
            "NVIDIA Device Identity CA",
            &root_key,
            &root_key,
            &[basic_ca()],
        )?;
        let ica_der = cert(
            2,
            "NVIDIA Device Identity CA",
            "GH100 Identity",
            &ica_key,
            &root_key,
            &[basic_ca()],
        )?;
        let device_der = cert(
            3,
            "GH100 Identity",
            "GH100 A01 FSP BROM",
            &device_key,
            &ica_key,
            &[fwid_extension(&device_key, &fwid)],
        )?;
        Ok(SimGpu {
            root_key,
            ica_key,
            device_key,
            root_der,
            ica_der,
            device_der,
            fwid,
        })
    }

    /// Loads the GPU kept in `dir/gpu` (keys as PKCS#8, mode 0600,
    /// certificates as DER), or
    /// creates one there, so that an agent and a broker told to trust the
    /// simulated root share one device.
    pub fn load_or_create(dir: &std::path::Path) -> Result<Self, SimError> {
        let state = StateDir::new(dir, "gpu");
        let names = ["root", "ica", "device"];
        if let Some((keys, certs)) = state.load(&P384, &names, &names)? {
            let [root_key, ica_key, device_key] = <[EcdsaKeyPair; 3]>::try_from(keys)
                .map_err(|_| SimError::Crypto("simulator state"))?;
            let [root_der, ica_der, device_der] =
                <[Vec<u8>; 3]>::try_from(certs).map_err(|_| SimError::Crypto("simulator state"))?;
            return Ok(SimGpu {
                root_key,
                ica_key,
                device_key,
                root_der,
                ica_der,
                device_der,
                fwid: measurement(0xff),
            });
        }
        let sim = Self::generate()?;
        state.save(
            &[
                ("root", &sim.root_key),
                ("ica", &sim.ica_key),
                ("device", &sim.device_key),
            ],
            &[
                ("root", &sim.root_der),
                ("ica", &sim.ica_der),
                ("device", &sim.device_der),
            ],
        )?;
        Ok(sim)
    }

    /// The simulated root (DER): what a verifier must be told to trust.
    pub fn root_der(&self) -> &[u8] {
        &self.root_der
    }

    /// The device certificate chain, leaf first, as PEM (the driver's
    /// layout).
    pub fn chain_pem(&self) -> String {
        [&self.device_der, &self.ica_der, &self.root_der]
            .iter()
            .map(|d| pem(d))
            .collect()
    }

    /// A signed report: the GET_MEASUREMENTS request with `nonce` and the
    /// MEASUREMENTS response with every block, signed by the device key.
    pub fn report(&self, nonce: &[u8; 32]) -> Result<Vec<u8>, SimError> {
        let blocks: Vec<MeasurementBlock> = (1..=BLOCKS)
            .map(|i| MeasurementBlock {
                index: i,
                value_type: 0x01,
                value: measurement(i).to_vec(),
            })
            .collect();
        let mut driver = DRIVER_VERSION.as_bytes().to_vec();
        driver.push(0);
        let opaque = vec![
            OpaqueItem {
                kind: veil_evidence::nvidia::OPAQUE_DRIVER_VERSION,
                data: driver,
            },
            OpaqueItem {
                kind: veil_evidence::nvidia::OPAQUE_VBIOS_VERSION,
                data: VBIOS_BYTES.to_vec(),
            },
            OpaqueItem {
                kind: veil_evidence::nvidia::OPAQUE_FWID,
                data: self.fwid.to_vec(),
            },
        ];
        let mut responder_nonce = [0u8; 32];
        crypto(aws_lc_rs::rand::fill(&mut responder_nonce), "random nonce")?;
        let mut report =
            veil_evidence::nvidia::encode_unsigned(nonce, &blocks, &responder_nonce, &opaque)?;
        let sig = crypto(
            self.device_key.sign(&SystemRandom::new(), &report),
            "ECDSA sign",
        )?;
        report.extend_from_slice(sig.as_ref());
        Ok(report)
    }

    /// CoCo `nvidia` evidence for one simulated H100 bound to `nonce`.
    pub fn evidence(&self, nonce: &[u8; 32]) -> Result<NvidiaEvidence, SimError> {
        let b64 = base64::engine::general_purpose::STANDARD;
        Ok(NvidiaEvidence {
            device_evidence_list: vec![DeviceEvidence {
                arch: "HOPPER".into(),
                uuid: format!("GPU-{}", hex::encode(&self.fwid[..8])),
                evidence: b64.encode(self.report(nonce)?),
                certificate: b64.encode(self.chain_pem()),
            }],
        })
    }
}

/// What the simulated OCSP responder says about a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimOcspStatus {
    Good,
    Revoked,
    Unknown,
}

impl SimGpu {
    /// The simulated NVIDIA OCSP responder: answers `request` (DER) for
    /// this device's certificates, signed by the issuer of the certificate
    /// asked about (the device identity CA for the device certificate, the
    /// root for the CA), valid from a minute before `now` for an hour, the
    /// request's nonce echoed. `status` decides the answer for the device
    /// certificate; its CA is always good.
    pub fn ocsp_response(
        &self,
        request: &[u8],
        status: SimOcspStatus,
        now: i64,
    ) -> Result<Vec<u8>, SimError> {
        use der::asn1::{GeneralizedTime, Null, OctetString};
        use der::{Decode, Encode};
        use veil_endorsements::ocsp::{
            BasicOcspResponse, CertStatus, OcspRequest, OcspResponse, ResponseBytes, ResponseData,
            ResponseStatus, RevokedInfo, SingleResponse,
        };
        let bad = |e: der::Error| SimError::State {
            path: "OCSP".into(),
            reason: e.to_string(),
        };
        let req = OcspRequest::from_der(request).map_err(bad)?;
        let [single] = req.tbs_request.request_list.as_slice() else {
            return Err(SimError::Crypto("one certificate per OCSP request"));
        };
        let id = &single.req_cert;
        let key_hash = |k: &EcdsaKeyPair| {
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA384, k.public_key().as_ref())
                .as_ref()
                .to_vec()
        };
        // Signed by the issuer of the certificate asked about.
        let (signer, about_device) = if id.issuer_key_hash.as_bytes() == key_hash(&self.ica_key) {
            (&self.ica_key, true)
        } else if id.issuer_key_hash.as_bytes() == key_hash(&self.root_key) {
            (&self.root_key, false)
        } else {
            return Err(SimError::Crypto("OCSP request for another issuer"));
        };
        let time = |t: i64| {
            GeneralizedTime::from_unix_duration(std::time::Duration::from_secs(
                u64::try_from(t).unwrap_or(0),
            ))
            .map_err(bad)
        };
        let cert_status = match (about_device, status) {
            (true, SimOcspStatus::Revoked) => CertStatus::Revoked(RevokedInfo {
                revocation_time: time(now.saturating_sub(3600))?,
                revocation_reason: None,
            }),
            (true, SimOcspStatus::Unknown) => CertStatus::Unknown(Null),
            _ => CertStatus::Good(Null),
        };
        let data = ResponseData {
            version: None,
            // ResponderID byKey [2] EXPLICIT KeyHash (SHA-1 in the RFC; the
            // simulator's value is not checked by anyone).
            responder_id: der::asn1::Any::from_der(&crate::derw::tlv(
                0xa2,
                &octets(&key_hash(signer)),
            ))
            .map_err(bad)?,
            produced_at: time(now)?,
            responses: vec![SingleResponse {
                cert_id: id.clone(),
                cert_status,
                this_update: time(now.saturating_sub(60))?,
                next_update: Some(time(now.saturating_add(3600))?),
                single_extensions: None,
            }],
            response_extensions: req.tbs_request.request_extensions.clone(),
        };
        let tbs = data.to_der().map_err(bad)?;
        let sig = P384.sign_der(signer, &tbs)?;
        let basic = BasicOcspResponse {
            tbs_response_data: data,
            signature_algorithm: x509_cert::spki::AlgorithmIdentifierOwned {
                oid: der::asn1::ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3"),
                parameters: None,
            },
            signature: der::asn1::BitString::from_bytes(&sig).map_err(bad)?,
            certs: None,
        };
        OcspResponse {
            response_status: ResponseStatus::Successful,
            response_bytes: Some(ResponseBytes {
                response_type: der::asn1::ObjectIdentifier::new_unwrap(
                    veil_endorsements::ocsp::OID_OCSP_BASIC,
                ),
                response: OctetString::new(basic.to_der().map_err(bad)?).map_err(bad)?,
            }),
        }
        .to_der()
        .map_err(bad)
    }
}
