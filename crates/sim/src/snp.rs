//! The simulated AMD SEV-SNP TEE.
//!
//! A PKI that mirrors AMD's — ARK (RSA-4096, self-signed, RSASSA-PSS/SHA-384,
//! salt 48) → ASK (RSA-4096) → VCEK (P-384) with AMD's extensions (product
//! name, bl/tee/snp/ucode/fmc SPLs, hwID = chip id, serial number 0) — and a
//! generator of real-format `ATTESTATION_REPORT`s (versions 2, 3, 5) with a
//! chosen measurement, report data, policy and TCB, signed by the simulated
//! VCEK.
//!
//! RSA-4096 key generation takes a second or two, so a PKI can be kept in a
//! state directory ([`SimSnp::load_or_create`]) and reused across runs.

use std::path::Path;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, KeyPair, RSA_PSS_SHA384, RsaKeyPair,
};
use veil_evidence::snp::{
    AttestationReport, Cpuid, FirmwareVersion, GuestPolicy, KeyInfo, PlatformInfo, Product,
    ReportBody, SIGNED_LEN, Signature, TcbVersion,
};

use crate::derw::{bits, explicit, ia5, name, null, octets, oid, seq, time, uint};
use crate::{SIMULATED_ORG, SimError, write_private};

const PSS_SHA384_PARAMS: [u8; 59] = [
    0x30, 0x39, 0xa0, 0x0f, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
    0x02, 0x05, 0x00, 0xa1, 0x1c, 0x30, 0x1a, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01,
    0x01, 0x08, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05,
    0x00, 0xa2, 0x03, 0x02, 0x01, 0x30, 0xa3, 0x03, 0x02, 0x01, 0x01,
];

/// Validity of the simulated ARK and ASK: 2020-01-01 .. 2049-12-31.
const CA_NOT_BEFORE: i64 = 1_577_836_800;
const CA_NOT_AFTER: i64 = 2_524_521_600;
/// Validity of simulated VCEKs: 2020-01-01 .. 2045-01-01.
const VCEK_NOT_BEFORE: i64 = 1_577_836_800;
const VCEK_NOT_AFTER: i64 = 2_366_841_600;

/// What to put in a simulated report.
#[derive(Debug, Clone)]
pub struct ReportParams {
    /// 2, 3 or 5.
    pub version: u32,
    pub measurement: [u8; 48],
    pub report_data: [u8; 64],
    pub host_data: [u8; 32],
    /// Guest policy; bit 17 must be set.
    pub policy: u64,
    /// The TCB reported (and used for the VCEK).
    pub tcb: TcbVersion,
    pub vmpl: u32,
    pub guest_svn: u32,
    pub id_key_digest: [u8; 48],
}

impl ReportParams {
    /// Sensible defaults for a product: version 3 (5 on Turin), SMT allowed,
    /// debug off, a plausible TCB.
    pub fn new(product: Product) -> Self {
        let tcb = match product {
            Product::Turin => TcbVersion {
                fmc: Some(1),
                bootloader: 1,
                tee: 1,
                snp: 3,
                microcode: 72,
            },
            _ => TcbVersion {
                fmc: None,
                bootloader: 9,
                tee: 0,
                snp: 23,
                microcode: 72,
            },
        };
        ReportParams {
            version: if product == Product::Turin { 5 } else { 3 },
            measurement: [0; 48],
            report_data: [0; 64],
            host_data: [0; 32],
            policy: 0x3_0000,
            tcb,
            vmpl: 0,
            guest_svn: 1,
            id_key_digest: [0; 48],
        }
    }
}

/// A simulated SNP platform: its PKI and chip.
#[derive(Debug)]
pub struct SimSnp {
    product: Product,
    ark_key: RsaKeyPair,
    ask_key: RsaKeyPair,
    vcek_key: EcdsaKeyPair,
    ark_der: Vec<u8>,
    ask_der: Vec<u8>,
    chip_id: [u8; 64],
}

fn crypto<T, E>(r: Result<T, E>, what: &'static str) -> Result<T, SimError> {
    r.map_err(|_| SimError::Crypto(what))
}

fn ca_name(product: Product, cn: &str) -> Vec<u8> {
    name(&[
        ("2.5.4.11", "Engineering"),
        ("2.5.4.6", "US"),
        ("2.5.4.10", SIMULATED_ORG),
        ("2.5.4.3", &format!("{cn}-{}", product.name())),
    ])
}

fn rsa_spki(key: &RsaKeyPair) -> Vec<u8> {
    seq(&[
        &seq(&[&oid("1.2.840.113549.1.1.1"), &null()]),
        &bits(key.public_key().as_ref()),
    ])
}

fn pss_alg() -> Vec<u8> {
    seq(&[&oid("1.2.840.113549.1.1.10"), &PSS_SHA384_PARAMS])
}

fn sign_cert(tbs: &[u8], issuer: &RsaKeyPair) -> Result<Vec<u8>, SimError> {
    let rng = SystemRandom::new();
    let mut sig = vec![0u8; issuer.public_modulus_len()];
    crypto(
        issuer.sign(&RSA_PSS_SHA384, &rng, tbs, &mut sig),
        "RSA-PSS sign",
    )?;
    Ok(seq(&[tbs, &pss_alg(), &bits(&sig)]))
}

fn ca_cert(
    product: Product,
    subject_cn: &str,
    serial: u8,
    subject_key: &RsaKeyPair,
    issuer_cn: &str,
    issuer_key: &RsaKeyPair,
) -> Result<Vec<u8>, SimError> {
    // basicConstraints CA:TRUE, keyUsage keyCertSign|cRLSign.
    let bc = seq(&[
        &oid("2.5.29.19"),
        &[0x01, 0x01, 0xff],
        &octets(&seq(&[&[0x01, 0x01, 0xff]])),
    ]);
    let ku = seq(&[
        &oid("2.5.29.15"),
        &[0x01, 0x01, 0xff],
        &octets(&[0x03, 0x02, 0x01, 0x06]),
    ]);
    let tbs = seq(&[
        &explicit(0, &uint(&[2])),
        &uint(&[serial]),
        &pss_alg(),
        &ca_name(product, issuer_cn),
        &seq(&[&time(CA_NOT_BEFORE), &time(CA_NOT_AFTER)]),
        &ca_name(product, subject_cn),
        &rsa_spki(subject_key),
        &explicit(3, &seq(&[&bc, &ku])),
    ]);
    sign_cert(&tbs, issuer_key)
}

impl SimSnp {
    /// Creates a fresh PKI and chip for `product`.
    pub fn generate(product: Product) -> Result<Self, SimError> {
        let ark_key = crypto(RsaKeyPair::generate(KeySize::Rsa4096), "RSA keygen")?;
        let ask_key = crypto(RsaKeyPair::generate(KeySize::Rsa4096), "RSA keygen")?;
        let vcek_key = crypto(
            EcdsaKeyPair::generate(&ECDSA_P384_SHA384_FIXED_SIGNING),
            "EC keygen",
        )?;
        let mut chip_id = [0u8; 64];
        crypto(aws_lc_rs::rand::fill(&mut chip_id), "random")?;
        if product == Product::Turin {
            // Turin chip ids are 8 bytes; the rest of the field is zero.
            chip_id.iter_mut().skip(8).for_each(|b| *b = 0);
        }
        Self::assemble(product, ark_key, ask_key, vcek_key, chip_id)
    }

    fn assemble(
        product: Product,
        ark_key: RsaKeyPair,
        ask_key: RsaKeyPair,
        vcek_key: EcdsaKeyPair,
        chip_id: [u8; 64],
    ) -> Result<Self, SimError> {
        let ark_der = ca_cert(product, "ARK", 1, &ark_key, "ARK", &ark_key)?;
        let ask_der = ca_cert(product, "SEV", 2, &ask_key, "ARK", &ark_key)?;
        Ok(SimSnp {
            product,
            ark_key,
            ask_key,
            vcek_key,
            ark_der,
            ask_der,
            chip_id,
        })
    }

    /// Loads the PKI kept in `dir`, or creates one there. Keys are stored as
    /// PKCS#8 files (mode 0600); the certificates are re-issued on load.
    pub fn load_or_create(dir: &Path, product: Product) -> Result<Self, SimError> {
        let state = |reason: String| SimError::State {
            path: dir.display().to_string(),
            reason,
        };
        let base = dir.join(format!("snp-{}", product.name().to_lowercase()));
        let files = ["ark.pk8", "ask.pk8", "vcek.pk8", "chip_id"].map(|f| base.join(f));
        if files.iter().all(|f| f.exists()) {
            let read = |p: &Path| std::fs::read(p).map_err(|e| state(e.to_string()));
            let ark_key = crypto(RsaKeyPair::from_pkcs8(&read(&files[0])?), "ARK key")?;
            let ask_key = crypto(RsaKeyPair::from_pkcs8(&read(&files[1])?), "ASK key")?;
            let vcek_key = crypto(
                EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &read(&files[2])?),
                "VCEK key",
            )?;
            let chip = hex::decode(read(&files[3])?.trim_ascii())
                .map_err(|e| state(format!("chip_id: {e}")))?;
            let chip_id: [u8; 64] = chip
                .try_into()
                .map_err(|_| state("chip_id must be 64 bytes".into()))?;
            return Self::assemble(product, ark_key, ask_key, vcek_key, chip_id);
        }
        let sim = Self::generate(product)?;
        std::fs::create_dir_all(&base).map_err(|e| state(e.to_string()))?;
        let ark = crypto(sim.ark_key.as_der(), "ARK export")?;
        let ask = crypto(sim.ask_key.as_der(), "ASK export")?;
        let vcek = crypto(sim.vcek_key.to_pkcs8v1(), "VCEK export")?;
        let chip_hex = hex::encode(sim.chip_id);
        let contents: [&[u8]; 4] = [
            ark.as_ref(),
            ask.as_ref(),
            vcek.as_ref(),
            chip_hex.as_bytes(),
        ];
        for (path, data) in files.iter().zip(contents) {
            write_private(path, data).map_err(|e| state(e.to_string()))?;
        }
        Ok(sim)
    }

    /// The product simulated.
    pub fn product(&self) -> Product {
        self.product
    }

    /// The simulated chip id.
    pub fn chip_id(&self) -> [u8; 64] {
        self.chip_id
    }

    /// The simulated ARK (DER): the root a verifier must be told to trust.
    pub fn ark_der(&self) -> &[u8] {
        &self.ark_der
    }

    /// The simulated ASK (DER).
    pub fn ask_der(&self) -> &[u8] {
        &self.ask_der
    }

    /// Issues a VCEK certificate (DER) for a TCB, as AMD KDS would.
    pub fn vcek_der(&self, tcb: &TcbVersion) -> Result<Vec<u8>, SimError> {
        let amd = |arc: &str, value: Vec<u8>| {
            seq(&[&oid(&format!("1.3.6.1.4.1.3704.1.{arc}")), &octets(&value)])
        };
        let int = |v: u8| uint(&[v]);
        let mut exts = vec![
            amd("1", int(1)),
            amd("2", ia5(&format!("{}-B0", self.product.name()))),
            amd("3.1", int(tcb.bootloader)),
            amd("3.2", int(tcb.tee)),
            amd("3.4", int(0)),
            amd("3.5", int(0)),
            amd("3.6", int(0)),
            amd("3.7", int(0)),
            amd("3.3", int(tcb.snp)),
            amd("3.8", int(tcb.microcode)),
        ];
        if let Some(fmc) = tcb.fmc {
            exts.push(amd("3.9", int(fmc)));
        }
        let hwid = self.chip_id.get(..self.product.hwid_len()).unwrap_or(&[]);
        exts.push(amd("4", hwid.to_vec()));
        let ext_refs: Vec<&[u8]> = exts.iter().map(Vec::as_slice).collect();
        let spki = seq(&[
            &seq(&[&oid("1.2.840.10045.2.1"), &oid("1.3.132.0.34")]),
            &bits(self.vcek_key.public_key().as_ref()),
        ]);
        let subject = name(&[
            ("2.5.4.11", "Engineering"),
            ("2.5.4.6", "US"),
            ("2.5.4.10", SIMULATED_ORG),
            ("2.5.4.3", "SEV-VCEK"),
        ]);
        let tbs = seq(&[
            &explicit(0, &uint(&[2])),
            &uint(&[0]),
            &pss_alg(),
            &ca_name(self.product, "SEV"),
            &seq(&[&time(VCEK_NOT_BEFORE), &time(VCEK_NOT_AFTER)]),
            &subject,
            &spki,
            &explicit(3, &seq(&ext_refs)),
        ]);
        sign_cert(&tbs, &self.ask_key)
    }

    /// The serial number of the simulated ASK (for revocation tests).
    pub const ASK_SERIAL: u8 = 2;

    /// A CRL signed by the simulated ARK, as AMD KDS serves at
    /// `/vcek/v1/{product}/crl`, revoking the given serial numbers.
    pub fn crl_der(
        &self,
        revoked: &[u8],
        this_update: i64,
        next_update: i64,
    ) -> Result<Vec<u8>, SimError> {
        let entries: Vec<Vec<u8>> = revoked
            .iter()
            .map(|serial| seq(&[&uint(&[*serial]), &time(this_update)]))
            .collect();
        let entry_refs: Vec<&[u8]> = entries.iter().map(Vec::as_slice).collect();
        let mut parts: Vec<Vec<u8>> = vec![
            uint(&[1]),
            pss_alg(),
            ca_name(self.product, "ARK"),
            time(this_update),
            time(next_update),
        ];
        if !entries.is_empty() {
            parts.push(seq(&entry_refs));
        }
        let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        sign_cert(&seq(&refs), &self.ark_key)
    }

    /// The unsigned body of a report with these parameters.
    pub fn report_body(&self, p: &ReportParams) -> Result<ReportBody, SimError> {
        let cpuid = (p.version >= 3).then_some(match self.product {
            Product::Milan => Cpuid {
                family: 0x19,
                model: 0x01,
                stepping: 1,
            },
            Product::Genoa => Cpuid {
                family: 0x19,
                model: 0x11,
                stepping: 1,
            },
            Product::Turin => Cpuid {
                family: 0x1a,
                model: 0x02,
                stepping: 1,
            },
        });
        let fw = FirmwareVersion {
            major: 1,
            minor: 55,
            build: 21,
        };
        let mit = (p.version >= 5).then_some(0);
        let mut report_id = [0u8; 32];
        crypto(aws_lc_rs::rand::fill(&mut report_id), "random")?;
        Ok(ReportBody {
            version: p.version,
            guest_svn: p.guest_svn,
            policy: GuestPolicy::decode(p.policy)?,
            family_id: [0; 16],
            image_id: [0; 16],
            vmpl: p.vmpl,
            sig_algo: 1,
            current_tcb: p.tcb,
            platform_info: PlatformInfo::decode(0x25)?,
            key_info: KeyInfo::decode(0)?,
            report_data: p.report_data,
            measurement: p.measurement,
            host_data: p.host_data,
            id_key_digest: p.id_key_digest,
            author_key_digest: [0; 48],
            report_id,
            report_id_ma: [0xff; 32],
            reported_tcb: p.tcb,
            cpuid,
            chip_id: self.chip_id,
            committed_tcb: p.tcb,
            current_version: fw,
            committed_version: fw,
            launch_tcb: p.tcb,
            launch_mit_vector: mit,
            current_mit_vector: mit,
            signature: Signature {
                r: [0; 72],
                s: [0; 72],
            },
        })
    }

    /// Signs a body with the simulated VCEK, returning the parsed report.
    pub fn sign(&self, mut body: ReportBody) -> Result<AttestationReport, SimError> {
        let unsigned = body.encode()?;
        let rng = SystemRandom::new();
        let sig = crypto(
            self.vcek_key
                .sign(&rng, unsigned.get(..SIGNED_LEN).unwrap_or(&[])),
            "ECDSA sign",
        )?;
        let (r_be, s_be) = sig.as_ref().split_at(48);
        for (dst, src) in [(&mut body.signature.r, r_be), (&mut body.signature.s, s_be)] {
            dst.fill(0);
            for (d, s) in dst.iter_mut().zip(src.iter().rev()) {
                *d = *s;
            }
        }
        Ok(AttestationReport::parse(&body.encode()?)?)
    }

    /// A signed report with these parameters.
    pub fn report(&self, p: &ReportParams) -> Result<AttestationReport, SimError> {
        self.sign(self.report_body(p)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_dir_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let a = SimSnp::load_or_create(dir.path(), Product::Milan).unwrap();
        let b = SimSnp::load_or_create(dir.path(), Product::Milan).unwrap();
        assert_eq!(a.chip_id(), b.chip_id());
        assert_eq!(
            a.vcek_key.public_key().as_ref(),
            b.vcek_key.public_key().as_ref()
        );
        let r = b.report(&ReportParams::new(Product::Milan)).unwrap();
        assert_eq!(r.chip_id, a.chip_id());
        assert_eq!(r.version, 3);
    }
}
