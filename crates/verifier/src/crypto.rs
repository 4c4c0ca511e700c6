//! The crypto backend, behind a trait (as rustls does): verification code
//! never names a crypto library. The one implementation is aws-lc-rs, which
//! measured fastest here for P-384 (see BENCHMARKS.md).

use std::fmt::Debug;

use aws_lc_rs::digest;
use aws_lc_rs::signature::{self, ParsedPublicKey, UnparsedPublicKey};

/// A signature did not verify, or a key could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CryptoError(pub &'static str);

/// A parsed ECDSA P-384 public key, ready for repeated verification.
pub trait P384Key: Send + Sync + Debug {
    /// Verifies an ECDSA P-384/SHA-384 signature given as big-endian `r ‖ s`.
    fn verify_fixed(&self, msg: &[u8], sig: &[u8; 96]) -> Result<(), CryptoError>;
    /// Verifies an ECDSA P-384/SHA-384 signature in ASN.1 DER form.
    fn verify_der(&self, msg: &[u8], sig: &[u8]) -> Result<(), CryptoError>;
}

/// A parsed ECDSA P-256 public key, ready for repeated verification.
pub trait P256Key: Send + Sync + Debug {
    /// Verifies an ECDSA P-256/SHA-256 signature given as big-endian `r ‖ s`.
    fn verify_fixed(&self, msg: &[u8], sig: &[u8]) -> Result<(), CryptoError>;
}

/// RSA signature schemes (TPM attestation keys, RSA certificate chains).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RsaScheme {
    Pkcs1Sha256,
    Pkcs1Sha384,
    PssSha256,
    PssSha384,
}

/// The primitives the verifiers need.
pub trait CryptoBackend: Send + Sync + Debug {
    fn sha256(&self, data: &[u8]) -> [u8; 32];
    /// SHA-256 over the concatenation of `parts`.
    fn sha256_parts(&self, parts: &[&[u8]]) -> [u8; 32];
    fn sha384(&self, data: &[u8]) -> [u8; 48];
    fn sha512(&self, data: &[u8]) -> [u8; 64];
    /// SHA-1, only to replay the SHA-1 PCR bank of TPM event logs (never
    /// for signatures).
    fn sha1_for_pcr_replay(&self, data: &[u8]) -> [u8; 20];
    /// Parses an uncompressed SEC1 P-256 point.
    fn p256_key(&self, sec1: &[u8]) -> Result<Box<dyn P256Key>, CryptoError>;
    /// Parses an uncompressed SEC1 P-384 point.
    fn p384_key(&self, sec1: &[u8]) -> Result<Box<dyn P384Key>, CryptoError>;
    /// ECDSA P-256/SHA-256 with an uncompressed SEC1 point; `fixed` selects
    /// raw `r ‖ s` (64 bytes) instead of ASN.1 DER.
    fn verify_p256_sha256(
        &self,
        sec1: &[u8],
        msg: &[u8],
        sig: &[u8],
        fixed: bool,
    ) -> Result<(), CryptoError>;
    /// An RSA signature with a PKCS#1 `RSAPublicKey` (2048 to 8192 bits;
    /// PSS with MGF1 of the same hash and a salt of the hash's length, as
    /// AMD's and TPMs' signatures use).
    fn verify_rsa(
        &self,
        pkcs1_public_key: &[u8],
        scheme: RsaScheme,
        msg: &[u8],
        sig: &[u8],
    ) -> Result<(), CryptoError>;
    /// The same with the key as big-endian modulus and exponent.
    fn verify_rsa_components(
        &self,
        modulus: &[u8],
        exponent: &[u8],
        scheme: RsaScheme,
        msg: &[u8],
        sig: &[u8],
    ) -> Result<(), CryptoError>;
    /// ECDSA P-384/SHA-384 with an uncompressed SEC1 point, `r ‖ s` or DER.
    fn verify_p384_sha384(
        &self,
        sec1: &[u8],
        msg: &[u8],
        sig: &[u8],
        fixed: bool,
    ) -> Result<(), CryptoError>;
}

/// aws-lc-rs.
#[derive(Debug, Clone, Copy, Default)]
pub struct AwsLc;

/// The default backend.
pub static AWS_LC: AwsLc = AwsLc;

#[derive(Debug)]
struct AwsLcP384 {
    fixed: ParsedPublicKey,
    der: ParsedPublicKey,
}

impl P384Key for AwsLcP384 {
    fn verify_fixed(&self, msg: &[u8], sig: &[u8; 96]) -> Result<(), CryptoError> {
        self.fixed
            .verify_sig(msg, sig)
            .map_err(|_| CryptoError("ECDSA P-384 signature does not verify"))
    }
    fn verify_der(&self, msg: &[u8], sig: &[u8]) -> Result<(), CryptoError> {
        self.der
            .verify_sig(msg, sig)
            .map_err(|_| CryptoError("ECDSA P-384 signature does not verify"))
    }
}

#[derive(Debug)]
struct AwsLcP256(ParsedPublicKey);

impl P256Key for AwsLcP256 {
    fn verify_fixed(&self, msg: &[u8], sig: &[u8]) -> Result<(), CryptoError> {
        self.0
            .verify_sig(msg, sig)
            .map_err(|_| CryptoError("ECDSA P-256 signature does not verify"))
    }
}

/// One ECDSA verification with an uncompressed SEC1 point.
fn ecdsa(
    alg: &'static signature::EcdsaVerificationAlgorithm,
    sec1: &[u8],
    msg: &[u8],
    sig: &[u8],
    failure: &'static str,
) -> Result<(), CryptoError> {
    UnparsedPublicKey::new(alg, sec1)
        .verify(msg, sig)
        .map_err(|_| CryptoError(failure))
}

/// A digest as an array of its length (`N` matches the algorithm's output
/// length at every call site; a mismatch leaves zeros rather than panic).
fn fixed_digest<const N: usize>(alg: &'static digest::Algorithm, data: &[u8]) -> [u8; N] {
    let d = digest::digest(alg, data);
    let mut out = [0u8; N];
    for (o, b) in out.iter_mut().zip(d.as_ref()) {
        *o = *b;
    }
    out
}

fn rsa_params(scheme: RsaScheme) -> &'static signature::RsaParameters {
    match scheme {
        RsaScheme::Pkcs1Sha256 => &signature::RSA_PKCS1_2048_8192_SHA256,
        RsaScheme::Pkcs1Sha384 => &signature::RSA_PKCS1_2048_8192_SHA384,
        RsaScheme::PssSha256 => &signature::RSA_PSS_2048_8192_SHA256,
        RsaScheme::PssSha384 => &signature::RSA_PSS_2048_8192_SHA384,
    }
}

impl CryptoBackend for AwsLc {
    fn verify_rsa(
        &self,
        pkcs1_public_key: &[u8],
        scheme: RsaScheme,
        msg: &[u8],
        sig: &[u8],
    ) -> Result<(), CryptoError> {
        UnparsedPublicKey::new(rsa_params(scheme), pkcs1_public_key)
            .verify(msg, sig)
            .map_err(|_| CryptoError("RSA signature does not verify"))
    }

    fn verify_rsa_components(
        &self,
        modulus: &[u8],
        exponent: &[u8],
        scheme: RsaScheme,
        msg: &[u8],
        sig: &[u8],
    ) -> Result<(), CryptoError> {
        signature::RsaPublicKeyComponents {
            n: modulus,
            e: exponent,
        }
        .verify(rsa_params(scheme), msg, sig)
        .map_err(|_| CryptoError("RSA signature does not verify"))
    }

    fn verify_p384_sha384(
        &self,
        sec1: &[u8],
        msg: &[u8],
        sig: &[u8],
        fixed: bool,
    ) -> Result<(), CryptoError> {
        let alg = if fixed {
            &signature::ECDSA_P384_SHA384_FIXED
        } else {
            &signature::ECDSA_P384_SHA384_ASN1
        };
        ecdsa(alg, sec1, msg, sig, "ECDSA P-384 signature does not verify")
    }

    fn p256_key(&self, sec1: &[u8]) -> Result<Box<dyn P256Key>, CryptoError> {
        Ok(Box::new(AwsLcP256(
            ParsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, sec1)
                .map_err(|_| CryptoError("not a valid P-256 public key"))?,
        )))
    }

    fn sha256(&self, data: &[u8]) -> [u8; 32] {
        fixed_digest(&digest::SHA256, data)
    }

    fn sha256_parts(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut ctx = digest::Context::new(&digest::SHA256);
        for p in parts {
            ctx.update(p);
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        out
    }

    fn sha1_for_pcr_replay(&self, data: &[u8]) -> [u8; 20] {
        fixed_digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, data)
    }

    fn sha384(&self, data: &[u8]) -> [u8; 48] {
        fixed_digest(&digest::SHA384, data)
    }

    fn sha512(&self, data: &[u8]) -> [u8; 64] {
        fixed_digest(&digest::SHA512, data)
    }

    fn p384_key(&self, sec1: &[u8]) -> Result<Box<dyn P384Key>, CryptoError> {
        let bad = |_| CryptoError("not a valid P-384 public key");
        Ok(Box::new(AwsLcP384 {
            fixed: ParsedPublicKey::new(&signature::ECDSA_P384_SHA384_FIXED, sec1).map_err(bad)?,
            der: ParsedPublicKey::new(&signature::ECDSA_P384_SHA384_ASN1, sec1).map_err(bad)?,
        }))
    }

    fn verify_p256_sha256(
        &self,
        sec1: &[u8],
        msg: &[u8],
        sig: &[u8],
        fixed: bool,
    ) -> Result<(), CryptoError> {
        let alg = if fixed {
            &signature::ECDSA_P256_SHA256_FIXED
        } else {
            &signature::ECDSA_P256_SHA256_ASN1
        };
        ecdsa(alg, sec1, msg, sig, "ECDSA P-256 signature does not verify")
    }
}
