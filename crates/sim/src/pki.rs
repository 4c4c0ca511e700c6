//! What the simulated ECDSA PKIs (Intel-like P-256, NVIDIA-like P-384)
//! share: key generation, SubjectPublicKeyInfo, DER signatures and the
//! X.509 v3 certificate layout.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P256_SHA256_FIXED_SIGNING,
    ECDSA_P384_SHA384_ASN1_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair,
    EcdsaSigningAlgorithm, KeyPair,
};

use crate::SimError;
use crate::derw::{bits, explicit, octets, oid, seq, time, uint};

/// An ECDSA curve with its hash, as the simulated PKIs use them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Curve {
    /// ecdsa-with-SHA256 or ecdsa-with-SHA384.
    sig_oid: &'static str,
    /// prime256v1 or secp384r1.
    curve_oid: &'static str,
    fixed: &'static EcdsaSigningAlgorithm,
    asn1: &'static EcdsaSigningAlgorithm,
}

pub(crate) const P256: Curve = Curve {
    sig_oid: "1.2.840.10045.4.3.2",
    curve_oid: "1.2.840.10045.3.1.7",
    fixed: &ECDSA_P256_SHA256_FIXED_SIGNING,
    asn1: &ECDSA_P256_SHA256_ASN1_SIGNING,
};

pub(crate) const P384: Curve = Curve {
    sig_oid: "1.2.840.10045.4.3.3",
    curve_oid: "1.3.132.0.34",
    fixed: &ECDSA_P384_SHA384_FIXED_SIGNING,
    asn1: &ECDSA_P384_SHA384_ASN1_SIGNING,
};

pub(crate) fn crypto<T, E>(r: Result<T, E>, what: &'static str) -> Result<T, SimError> {
    r.map_err(|_| SimError::Crypto(what))
}

impl Curve {
    /// A fresh key (signing raw `r ‖ s`).
    pub(crate) fn generate(&self) -> Result<EcdsaKeyPair, SimError> {
        crypto(EcdsaKeyPair::generate(self.fixed), "ECDSA keygen")
    }

    /// A key from PKCS#8.
    pub(crate) fn load_pkcs8(&self, der: &[u8]) -> Result<EcdsaKeyPair, SimError> {
        crypto(EcdsaKeyPair::from_pkcs8(self.fixed, der), "key import")
    }

    /// The signature AlgorithmIdentifier.
    pub(crate) fn alg(&self) -> Vec<u8> {
        seq(&[&oid(self.sig_oid)])
    }

    /// The SubjectPublicKeyInfo of `key`.
    pub(crate) fn spki(&self, key: &EcdsaKeyPair) -> Vec<u8> {
        seq(&[
            &seq(&[&oid("1.2.840.10045.2.1"), &oid(self.curve_oid)]),
            &bits(key.public_key().as_ref()),
        ])
    }

    /// A DER signature by `key` (certificates, CRLs, OCSP answers).
    pub(crate) fn sign_der(&self, key: &EcdsaKeyPair, msg: &[u8]) -> Result<Vec<u8>, SimError> {
        let pkcs8 = crypto(key.to_pkcs8v1(), "key export")?;
        let asn1 = crypto(
            EcdsaKeyPair::from_pkcs8(self.asn1, pkcs8.as_ref()),
            "key import",
        )?;
        Ok(crypto(asn1.sign(&SystemRandom::new(), msg), "ECDSA sign")?
            .as_ref()
            .to_vec())
    }

    /// An X.509 v3 certificate for `subject_key` named `subject`, signed by
    /// `issuer_key` named `issuer` (names as DER), valid `validity`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn cert(
        &self,
        serial: u8,
        issuer: &[u8],
        subject: &[u8],
        subject_key: &EcdsaKeyPair,
        issuer_key: &EcdsaKeyPair,
        validity: (i64, i64),
        extensions: &[Vec<u8>],
    ) -> Result<Vec<u8>, SimError> {
        let mut fields: Vec<Vec<u8>> = vec![
            explicit(0, &uint(&[2])),
            uint(&[serial]),
            self.alg(),
            issuer.to_vec(),
            seq(&[&time(validity.0), &time(validity.1)]),
            subject.to_vec(),
            self.spki(subject_key),
        ];
        if !extensions.is_empty() {
            let refs: Vec<&[u8]> = extensions.iter().map(Vec::as_slice).collect();
            fields.push(explicit(3, &seq(&refs)));
        }
        let refs: Vec<&[u8]> = fields.iter().map(Vec::as_slice).collect();
        let tbs = seq(&refs);
        let sig = self.sign_der(issuer_key, &tbs)?;
        Ok(seq(&[&tbs, &self.alg(), &bits(&sig)]))
    }
}

/// basicConstraints: CA, critical.
pub(crate) fn basic_ca() -> Vec<u8> {
    seq(&[
        &oid("2.5.29.19"),
        &[0x01, 0x01, 0xff],
        &octets(&seq(&[&[0x01, 0x01, 0xff]])),
    ])
}

/// Keys and certificates read back from a state directory, in the order
/// asked for.
pub(crate) type Loaded = (Vec<EcdsaKeyPair>, Vec<Vec<u8>>);

/// A simulator's state directory (`<dir>/<name>`): keys as PKCS#8 (mode
/// 0600) and certificates as DER, so that separate processes (an agent, a
/// broker told to trust the root) share one simulated platform.
#[derive(Debug)]
pub(crate) struct StateDir {
    base: std::path::PathBuf,
}

impl StateDir {
    pub(crate) fn new(dir: &std::path::Path, name: &str) -> Self {
        StateDir {
            base: dir.join(name),
        }
    }

    fn err(&self, e: impl std::fmt::Display) -> SimError {
        SimError::State {
            path: self.base.display().to_string(),
            reason: e.to_string(),
        }
    }

    fn key_file(&self, name: &str) -> std::path::PathBuf {
        self.base.join(format!("{name}.pk8"))
    }

    fn cert_file(&self, name: &str) -> std::path::PathBuf {
        self.base.join(format!("{name}.der"))
    }

    /// The named keys and certificates, or `None` when any file is
    /// missing (a new platform is then made).
    pub(crate) fn load(
        &self,
        curve: &Curve,
        keys: &[&str],
        certs: &[&str],
    ) -> Result<Option<Loaded>, SimError> {
        let all_exist = keys.iter().all(|k| self.key_file(k).exists())
            && certs.iter().all(|c| self.cert_file(c).exists());
        if !all_exist {
            return Ok(None);
        }
        let read = |p: std::path::PathBuf| std::fs::read(&p).map_err(|e| self.err(e));
        let keys = keys
            .iter()
            .map(|k| curve.load_pkcs8(&read(self.key_file(k))?))
            .collect::<Result<Vec<_>, _>>()?;
        let certs = certs
            .iter()
            .map(|c| read(self.cert_file(c)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some((keys, certs)))
    }

    /// Writes the named keys and certificates.
    pub(crate) fn save(
        &self,
        keys: &[(&str, &EcdsaKeyPair)],
        certs: &[(&str, &[u8])],
    ) -> Result<(), SimError> {
        std::fs::create_dir_all(&self.base).map_err(|e| self.err(e))?;
        for (name, key) in keys {
            let der = crypto(key.to_pkcs8v1(), "key export")?;
            crate::write_private(&self.key_file(name), der.as_ref()).map_err(|e| self.err(e))?;
        }
        for (name, der) in certs {
            std::fs::write(self.cert_file(name), der).map_err(|e| self.err(e))?;
        }
        Ok(())
    }
}
