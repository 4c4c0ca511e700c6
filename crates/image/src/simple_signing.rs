//! containers/image "simple signing": a GPG-signed OpenPGP message whose
//! literal data is a JSON payload of the same shape cosign signs, with
//! `critical.type = "atomic container signature"`, the manifest digest and
//! the docker reference, checked against a GPG keyring for the policy's
//! `signedBy` requirement. Signatures live in a "lookaside" store:
//! `<base>/<repository path>@<algorithm>=<hex>/signature-<n>`, n = 1, 2, …
//!
//! OpenPGP is parsed by rPGP (`pgp`); the keyring's self-signatures are
//! checked before a key is used, and a message must be a signed message
//! whose signature verifies with a keyring key over its literal data.

use std::io::Read as _;

use pgp::composed::{Message, PublicOrSecret, SignedPublicKey};

use crate::reference::Reference;
use crate::signature::{MAX_PAYLOAD, Payload, SIMPLE_SIGNING_TYPE};
use crate::{ImageError, malformed};

/// The keys of a `signedBy` requirement.
#[derive(Debug, Clone)]
pub struct GpgKeyring {
    keys: Vec<SignedPublicKey>,
}

impl GpgKeyring {
    /// Parses one or more public keys, ASCII-armored or binary (a
    /// `gpg --export` keyring). Keys whose self-signatures do not verify are
    /// refused.
    pub fn parse(bytes: &[u8]) -> Result<Self, ImageError> {
        let armored = bytes
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|b| *b == b'-');
        let iter = if armored {
            PublicOrSecret::from_armor_many(bytes).map(|(i, _)| i)
        } else {
            PublicOrSecret::from_reader_many(bytes).map(|(i, _)| i)
        }
        .map_err(|e| malformed("GPG keyring", e))?;
        let mut keys = Vec::new();
        for k in iter {
            match k.map_err(|e| malformed("GPG keyring", e))? {
                PublicOrSecret::Public(k) => {
                    k.verify_bindings()
                        .map_err(|e| malformed("GPG key self-signature", e))?;
                    keys.push(k);
                }
                PublicOrSecret::Secret(_) => {
                    return Err(malformed(
                        "GPG keyring",
                        "a secret key where public keys were expected",
                    ));
                }
            }
        }
        if keys.is_empty() {
            return Err(malformed("GPG keyring", "no public key"));
        }
        Ok(GpgKeyring { keys })
    }

    /// Appends the keys of another keyring.
    pub fn extend(&mut self, other: GpgKeyring) {
        self.keys.extend(other.keys);
    }
}

/// Verifies a simple-signing signature with `keyring` and returns its
/// payload, which must name `manifest_digest`.
pub fn verify(
    signature: &[u8],
    keyring: &GpgKeyring,
    manifest_digest: &str,
) -> Result<Payload, ImageError> {
    let bad = |e: &dyn std::fmt::Display| ImageError::Signature(format!("simple signing: {e}"));
    let mut msg = Message::from_bytes(signature).map_err(|e| bad(&e))?;
    if msg.is_compressed() {
        msg = msg.decompress().map_err(|e| bad(&e))?;
    }
    if !msg.is_signed() && !msg.is_one_pass_signed() {
        return Err(bad(&"not a signed OpenPGP message"));
    }
    // The payload is small: read at most MAX_PAYLOAD + 1 bytes.
    let mut content = Vec::new();
    (&mut msg)
        .take(
            u64::try_from(MAX_PAYLOAD)
                .unwrap_or(u64::MAX)
                .saturating_add(1),
        )
        .read_to_end(&mut content)
        .map_err(|e| bad(&e))?;
    if content.len() > MAX_PAYLOAD {
        return Err(bad(&"payload too large"));
    }
    let verified = keyring.keys.iter().any(|k| {
        msg.verify(k).is_ok()
            || k.public_subkeys
                .iter()
                .any(|s| s.verify_bindings(&k.primary_key).is_ok() && msg.verify(s).is_ok())
    });
    if !verified {
        return Err(ImageError::Signature(
            "simple signing: not signed by a key of the policy's keyring".into(),
        ));
    }
    let payload = Payload::parse_typed(&content, SIMPLE_SIGNING_TYPE)?;
    if payload.manifest_digest != manifest_digest {
        return Err(ImageError::Signature(format!(
            "simple signing: the signature is for {}, not {manifest_digest}",
            payload.manifest_digest
        )));
    }
    Ok(payload)
}

/// The lookaside location of signature `n` (1-based) of `image` at
/// `manifest_digest`, under `base` (a `file://` or `http(s)://` URL).
pub fn lookaside_url(
    base: &str,
    image: &Reference,
    manifest_digest: &str,
    n: usize,
) -> Result<String, ImageError> {
    let (alg, hex) = manifest_digest
        .split_once(':')
        .ok_or_else(|| malformed("manifest digest", manifest_digest))?;
    Ok(format!(
        "{}/{}@{alg}={hex}/signature-{n}",
        base.trim_end_matches('/'),
        image.path()
    ))
}
