//! Confidential container images: encrypted layers, signatures, the
//! signature policy, and (feature `registry`) pulling from registries.
//!
//! * [`layer`]: ocicrypt's `AES_256_CTR_HMAC_SHA256` layer cipher, byte for
//!   byte compatible with Go `containers/ocicrypt` and `ocicrypt-rs`
//!   (public and private options JSON, annotations, media types), with a
//!   streaming decryptor that never releases plaintext before the HMAC
//!   over the whole ciphertext and the digest of the plaintext have been
//!   checked ([`layer::decrypt_to`] with a [`layer::Stage`]).
//! * [`packet`]: the CoCo key-provider annotation packet
//!   (`org.opencontainers.image.enc.keys.provider.attestation-agent`):
//!   the private options wrapped with AES-256-GCM under a key-encryption key
//!   that a broker holds as a resource (`kid = kbs:///default/key/1`).
//! * [`unpack`]: decrypt → decompress (gzip, zstd) → untar in one pass,
//!   hashing for the `diff_id`, into a staging directory renamed into place
//!   only when every check passed.
//! * [`jwe`]: ocicrypt's JWE recipients (`…enc.keys.jwe`), as Go
//!   ocicrypt writes them.
//! * [`keyprovider`]: the ocicrypt key-provider protocol messages (the
//!   `cmd` transport's JSON), accepting `optsdata` both as a JSON byte array
//!   (ocicrypt-rs) and as a base64 string (Go).
//!
//! * [`reference`]: image references, parsed and normalised as docker's.
//! * [`signature`]: cosign-style signatures with keys (the simple-signing
//!   payload, the `sha256-<hex>.sig` signature image).
//! * [`policy`]: containers-policy.json for the docker transport
//!   (`insecureAcceptAnything`, `reject`, `sigstoreSigned`, every
//!   `signedIdentity` rule).
//! * `registry` and `pull` (feature `registry`): the OCI distribution API
//!   (token auth, digests checked while streaming, push) and a pull that
//!   applies the policy, then streams every layer into the one-pass
//!   decrypt-and-unpack.
//!
//! Why hand-written: no maintained Rust crate implements ocicrypt's layer
//! format without pulling in a whole image client; the cryptography itself
//! is aws-lc-rs (AES-CTR, HMAC-SHA256, AES-GCM, SHA-256).
#![forbid(unsafe_code)]
#![deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

pub mod jwe;
pub mod keyprovider;
pub mod layer;
// JSON reads by `v["key"]` (never panicking on serde_json values); see oci.rs.
#[allow(clippy::indexing_slicing)]
pub mod oci;
pub mod packet;
pub mod policy;
// JSON reads by `v["key"]`, as in oci.rs.
#[cfg(feature = "registry")]
#[allow(clippy::indexing_slicing)]
pub mod pull;
pub mod reference;
#[cfg(feature = "registry")]
pub mod registry;
pub mod signature;
pub mod simple_signing;
pub mod unpack;

/// Everything that can go wrong with an image layer or its keys. Messages
/// never contain key material.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ImageError {
    /// Malformed options, packet or message.
    #[error("malformed {what}: {detail}")]
    Malformed { what: &'static str, detail: String },
    /// A cipher, wrap type or version this implementation does not know.
    #[error("unsupported {what}: {value}")]
    Unsupported { what: &'static str, value: String },
    /// The layer's HMAC does not match its ciphertext.
    #[error("layer authentication failed: the HMAC over the ciphertext does not match")]
    Hmac,
    /// The decrypted layer's digest differs from the one in the private
    /// options.
    #[error("layer digest mismatch: expected {expected}, got {actual}")]
    Digest { expected: String, actual: String },
    /// The wrapped key does not open under the key-encryption key.
    #[error("the wrapped layer key does not open under this key-encryption key")]
    Unwrap,
    /// Reading or writing.
    #[error("I/O: {0}")]
    Io(String),
    /// A signature did not verify or does not cover this image.
    #[error("signature: {0}")]
    Signature(String),
    /// The signature policy refused the image.
    #[error("refused by the signature policy: {0}")]
    Policy(String),
    /// The registry answered with an error or broke the protocol.
    #[error("registry: {0}")]
    Registry(String),
    /// The crypto library failed.
    #[error("cryptographic failure")]
    Crypto,
}

/// `sha256:<hex>` of `bytes`: the digest of an OCI blob.
pub fn blob_digest(bytes: &[u8]) -> String {
    format!(
        "sha256:{}",
        hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes).as_ref())
    )
}

pub(crate) fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

pub(crate) fn malformed(what: &'static str, detail: impl std::fmt::Display) -> ImageError {
    ImageError::Malformed {
        what,
        detail: detail.to_string(),
    }
}
