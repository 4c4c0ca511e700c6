//! ocicrypt's layer cipher `AES_256_CTR_HMAC_SHA256`.
//!
//! The stored layer blob (still compressed) is encrypted with AES-256 in
//! CTR mode, the 16-byte nonce being the initial 128-bit big-endian counter
//! block (Go `cipher.NewCTR`); `hmac = HMAC-SHA256(symkey, ciphertext)`.
//! The public options (`org.opencontainers.image.enc.pubopts`) carry the
//! cipher name and the HMAC; the private options carry the key, the nonce
//! and the digest of the plaintext blob, and are what key wrapping
//! protects.
//!
//! Peers stream plaintext out before the HMAC is checked and expect the
//! consumer to throw it away on a late error. Here plaintext goes only to a
//! [`Stage`], which is committed after the HMAC over the whole ciphertext
//! and the plaintext digest have both been checked, and aborted otherwise.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use aws_lc_rs::cipher::{
    AES_256, DecryptionContext, EncryptionContext, StreamingDecryptingKey, StreamingEncryptingKey,
    UnboundCipherKey,
};
use aws_lc_rs::digest;
use aws_lc_rs::hmac;
use aws_lc_rs::iv::FixedLength;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::{ImageError, b64, malformed};

/// The only layer cipher ocicrypt defines.
pub const CIPHER: &str = "AES_256_CTR_HMAC_SHA256";
/// Annotation holding base64(public options JSON).
pub const ANNOTATION_PUBOPTS: &str = "org.opencontainers.image.enc.pubopts";
/// Prefix of the annotations holding wrapped private options, one scheme
/// per annotation (`jwe`, `pkcs7`, `pgp`, `provider.<name>`).
pub const ANNOTATION_KEYS_PREFIX: &str = "org.opencontainers.image.enc.keys.";
/// The Confidential Containers key provider's annotation.
pub const ANNOTATION_PROVIDER_AA: &str =
    "org.opencontainers.image.enc.keys.provider.attestation-agent";
/// The JWE recipients' annotation.
pub const ANNOTATION_JWE: &str = "org.opencontainers.image.enc.keys.jwe";

/// Layer media types that can be encrypted (OCI and their
/// non-distributable variants; gzip, zstd and uncompressed).
const LAYER_TYPES: [&str; 7] = [
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    // Docker schema 2 (ocicrypt encrypts these too).
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
];

/// The encrypted media type of a layer media type.
pub fn encrypted_media_type(plain: &str) -> Result<String, ImageError> {
    if LAYER_TYPES.contains(&plain) {
        Ok(format!("{plain}+encrypted"))
    } else {
        Err(ImageError::Unsupported {
            what: "layer media type",
            value: plain.to_string(),
        })
    }
}

/// The plaintext media type of an encrypted layer media type.
pub fn decrypted_media_type(encrypted: &str) -> Result<String, ImageError> {
    encrypted
        .strip_suffix("+encrypted")
        .filter(|p| LAYER_TYPES.contains(p))
        .map(str::to_string)
        .ok_or_else(|| ImageError::Unsupported {
            what: "encrypted layer media type",
            value: encrypted.to_string(),
        })
}

/// `PublicLayerBlockCipherOptions` as ocicrypt serialises it (byte fields
/// in standard base64).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublicOptions {
    pub cipher: String,
    pub hmac: String,
    #[serde(default)]
    pub cipheroptions: BTreeMap<String, String>,
}

/// `PrivateLayerBlockCipherOptions`: what key wrapping protects.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivateOptions {
    pub symkey: String,
    pub digest: String,
    #[serde(default)]
    pub cipheroptions: BTreeMap<String, String>,
}

impl std::fmt::Debug for PrivateOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivateOptions")
            .field("symkey", &"<redacted>")
            .field("digest", &self.digest)
            .finish_non_exhaustive()
    }
}

impl PublicOptions {
    /// Parses `org.opencontainers.image.enc.pubopts` (base64 of JSON).
    pub fn from_annotation(value: &str) -> Result<Self, ImageError> {
        let json = b64()
            .decode(value.trim())
            .map_err(|_| malformed("public options", "not base64"))?;
        serde_json::from_slice(&json).map_err(|e| malformed("public options", e))
    }

    /// The annotation value.
    pub fn to_annotation(&self) -> Result<String, ImageError> {
        Ok(b64().encode(serde_json::to_vec(self).map_err(|e| malformed("public options", e))?))
    }

    fn hmac(&self) -> Result<[u8; 32], ImageError> {
        if self.cipher != CIPHER {
            return Err(ImageError::Unsupported {
                what: "layer cipher",
                value: self.cipher.clone(),
            });
        }
        if let Some(k) = self.cipheroptions.keys().next() {
            return Err(malformed(
                "public options",
                format!("unknown cipher option {k:?}"),
            ));
        }
        fixed::<32>(&self.hmac, "public options", "hmac")
    }
}

impl PrivateOptions {
    /// Parses the private options JSON (as unwrapped from a key provider).
    pub fn from_json(json: &[u8]) -> Result<Self, ImageError> {
        serde_json::from_slice(json).map_err(|_| {
            // serde's message could quote the key material.
            malformed("private options", "not the private options JSON")
        })
    }

    /// The JSON that key wrapping protects.
    pub fn to_json(&self) -> Result<Vec<u8>, ImageError> {
        serde_json::to_vec(self).map_err(|e| malformed("private options", e))
    }

    fn parts(&self) -> Result<([u8; 32], [u8; 16], Digest), ImageError> {
        let key = fixed::<32>(&self.symkey, "private options", "symkey")?;
        let mut nonce = None;
        for (k, v) in &self.cipheroptions {
            match k.as_str() {
                "nonce" => nonce = Some(fixed::<16>(v, "private options", "nonce")?),
                other => {
                    return Err(malformed(
                        "private options",
                        format!("unknown cipher option {other:?}"),
                    ));
                }
            }
        }
        let nonce = nonce.ok_or_else(|| malformed("private options", "no nonce"))?;
        Ok((key, nonce, Digest::parse(&self.digest)?))
    }
}

fn fixed<const N: usize>(v: &str, what: &'static str, field: &str) -> Result<[u8; N], ImageError> {
    let bytes = b64()
        .decode(v)
        .map_err(|_| malformed(what, format!("{field} is not base64")))?;
    let n = bytes.len();
    bytes
        .try_into()
        .map_err(|_| malformed(what, format!("{field} is {n} bytes, expected {N}")))
}

/// An OCI digest this module can compute.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Digest {
    alg: &'static digest::Algorithm,
    text: String,
}

impl Digest {
    fn parse(s: &str) -> Result<Self, ImageError> {
        let (alg, hex_len, value) = if let Some(h) = s.strip_prefix("sha256:") {
            (&digest::SHA256, 64, h)
        } else if let Some(h) = s.strip_prefix("sha512:") {
            (&digest::SHA512, 128, h)
        } else {
            return Err(ImageError::Unsupported {
                what: "digest algorithm",
                value: s.split(':').next().unwrap_or("").to_string(),
            });
        };
        if value.len() != hex_len
            || !value
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(malformed(
                "digest",
                "expected lowercase hex of the algorithm's length",
            ));
        }
        Ok(Digest {
            alg,
            text: s.to_string(),
        })
    }
}

fn sha256_text(d: digest::Digest) -> String {
    format!("sha256:{}", hex::encode(d.as_ref()))
}

const CHUNK: usize = 64 * 1024;

fn io(e: std::io::Error) -> ImageError {
    ImageError::Io(e.to_string())
}

/// The result of encrypting a layer.
#[derive(Debug, Clone)]
pub struct Encrypted {
    /// For `org.opencontainers.image.enc.pubopts`.
    pub public: PublicOptions,
    /// To be wrapped for each recipient.
    pub private: PrivateOptions,
    /// The new descriptor's digest (of the ciphertext).
    pub digest: String,
    /// The new descriptor's size.
    pub size: u64,
}

/// Encrypts a layer blob with a fresh key and nonce, streaming.
pub fn encrypt_to(mut input: impl Read, mut out: impl Write) -> Result<Encrypted, ImageError> {
    let rng = SystemRandom::new();
    let mut key = [0u8; 32];
    let mut nonce = [0u8; 16];
    rng.fill(&mut key).map_err(|_| ImageError::Crypto)?;
    rng.fill(&mut nonce).map_err(|_| ImageError::Crypto)?;
    let unbound = UnboundCipherKey::new(&AES_256, &key).map_err(|_| ImageError::Crypto)?;
    let mut cipher = StreamingEncryptingKey::less_safe_ctr(
        unbound,
        EncryptionContext::Iv128(FixedLength::from(nonce)),
    )
    .map_err(|_| ImageError::Crypto)?;
    let mut mac = hmac::Context::with_key(&hmac::Key::new(hmac::HMAC_SHA256, &key));
    let mut plain_digest = digest::Context::new(&digest::SHA256);
    let mut ct_digest = digest::Context::new(&digest::SHA256);
    let mut buf = vec![0u8; CHUNK];
    let mut ct = vec![0u8; CHUNK.saturating_add(16)];
    let mut size = 0u64;
    loop {
        let n = input.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        let chunk = buf.get(..n).ok_or(ImageError::Crypto)?;
        plain_digest.update(chunk);
        let update = cipher
            .update(chunk, &mut ct)
            .map_err(|_| ImageError::Crypto)?;
        let written = update.written();
        mac.update(written);
        ct_digest.update(written);
        out.write_all(written).map_err(io)?;
        size = size.saturating_add(written.len() as u64);
    }
    let (_, last) = cipher.finish(&mut ct).map_err(|_| ImageError::Crypto)?;
    let last = last.written();
    mac.update(last);
    ct_digest.update(last);
    out.write_all(last).map_err(io)?;
    size = size.saturating_add(last.len() as u64);
    out.flush().map_err(io)?;
    let tag = mac.sign();
    Ok(Encrypted {
        public: PublicOptions {
            cipher: CIPHER.into(),
            hmac: b64().encode(tag.as_ref()),
            cipheroptions: BTreeMap::new(),
        },
        private: PrivateOptions {
            symkey: b64().encode(key),
            digest: sha256_text(plain_digest.finish()),
            cipheroptions: BTreeMap::from([("nonce".to_string(), b64().encode(nonce))]),
        },
        digest: sha256_text(ct_digest.finish()),
        size,
    })
}

/// Where decrypted plaintext goes until it is known to be genuine.
pub trait Stage {
    /// Takes plaintext that is not authenticated yet.
    fn write(&mut self, plain: &[u8]) -> std::io::Result<()>;
    /// The layer was authenticated: make the output visible.
    fn commit(self) -> std::io::Result<()>;
    /// The layer was not authenticated: discard everything written.
    fn abort(self);
}

/// Decrypts a layer into `stage`, committing it only when the HMAC over
/// the whole ciphertext (compared in constant time) and the plaintext
/// digest are right; returns the plaintext length.
pub fn decrypt_to<S: Stage>(
    input: impl Read,
    public: &PublicOptions,
    private: &PrivateOptions,
    stage: S,
) -> Result<u64, ImageError> {
    decrypt_checked(input, public, private, stage, true)
}

/// [`decrypt_to`] for callers that authenticate the plaintext further
/// down (unpacking checks the `diff_id` of the decompressed tar): the HMAC
/// over the ciphertext is checked, the digest of the compressed plaintext
/// is not computed (one SHA-256 pass less per byte).
pub fn decrypt_to_hmac_only<S: Stage>(
    input: impl Read,
    public: &PublicOptions,
    private: &PrivateOptions,
    stage: S,
) -> Result<u64, ImageError> {
    decrypt_checked(input, public, private, stage, false)
}

fn decrypt_checked<S: Stage>(
    input: impl Read,
    public: &PublicOptions,
    private: &PrivateOptions,
    mut stage: S,
    check_digest: bool,
) -> Result<u64, ImageError> {
    match decrypt_inner(input, public, private, &mut stage, check_digest) {
        Ok(n) => {
            stage.commit().map_err(io)?;
            Ok(n)
        }
        Err(e) => {
            stage.abort();
            Err(e)
        }
    }
}

fn decrypt_inner<S: Stage>(
    mut input: impl Read,
    public: &PublicOptions,
    private: &PrivateOptions,
    stage: &mut S,
    check_digest: bool,
) -> Result<u64, ImageError> {
    let expected_mac = public.hmac()?;
    let (key, nonce, expected_digest) = private.parts()?;
    let unbound = UnboundCipherKey::new(&AES_256, &key).map_err(|_| ImageError::Crypto)?;
    let mut cipher =
        StreamingDecryptingKey::ctr(unbound, DecryptionContext::Iv128(FixedLength::from(nonce)))
            .map_err(|_| ImageError::Crypto)?;
    let mac_key = hmac::Key::new(hmac::HMAC_SHA256, &key);
    let mut mac = hmac::Context::with_key(&mac_key);
    let mut plain_digest = digest::Context::new(expected_digest.alg);
    let mut buf = vec![0u8; CHUNK];
    let mut pt = vec![0u8; CHUNK.saturating_add(16)];
    let mut size = 0u64;
    loop {
        let n = input.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        let chunk = buf.get(..n).ok_or(ImageError::Crypto)?;
        mac.update(chunk);
        let update = cipher
            .update(chunk, &mut pt)
            .map_err(|_| ImageError::Crypto)?;
        let written = update.written();
        if check_digest {
            plain_digest.update(written);
        }
        stage.write(written).map_err(io)?;
        size = size.saturating_add(written.len() as u64);
    }
    let last = cipher.finish(&mut pt).map_err(|_| ImageError::Crypto)?;
    let last = last.written();
    plain_digest.update(last);
    stage.write(last).map_err(io)?;
    size = size.saturating_add(last.len() as u64);
    let tag = mac.sign();
    // The tag is compared in constant time.
    if aws_lc_rs::constant_time::verify_slices_are_equal(tag.as_ref(), &expected_mac).is_err() {
        return Err(ImageError::Hmac);
    }
    if !check_digest {
        return Ok(size);
    }
    let actual = format!(
        "{}:{}",
        expected_digest.text.split(':').next().unwrap_or("sha256"),
        hex::encode(plain_digest.finish().as_ref())
    );
    if actual != expected_digest.text {
        return Err(ImageError::Digest {
            expected: expected_digest.text,
            actual,
        });
    }
    Ok(size)
}

/// A [`Stage`] in memory: the plaintext is moved to `out` on commit.
#[derive(Debug)]
pub struct VecStage<'a> {
    buf: Vec<u8>,
    out: &'a mut Vec<u8>,
}

impl<'a> VecStage<'a> {
    pub fn new(out: &'a mut Vec<u8>) -> Self {
        VecStage {
            buf: Vec::new(),
            out,
        }
    }
}

impl Stage for VecStage<'_> {
    fn write(&mut self, plain: &[u8]) -> std::io::Result<()> {
        self.buf.extend_from_slice(plain);
        Ok(())
    }
    fn commit(self) -> std::io::Result<()> {
        *self.out = self.buf;
        Ok(())
    }
    fn abort(self) {}
}

/// A [`Stage`] on disk: plaintext goes to `<path>.partial`, which is
/// synced and renamed to `path` on commit and removed on abort; `path`
/// never holds unauthenticated bytes.
#[derive(Debug)]
pub struct FileStage {
    file: std::io::BufWriter<std::fs::File>,
    partial: PathBuf,
    path: PathBuf,
}

impl FileStage {
    /// Refuses to start when `path` or its partial file exists.
    pub fn create(path: &Path) -> std::io::Result<Self> {
        if path.exists() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                format!("{} exists", path.display()),
            ));
        }
        let mut partial = path.as_os_str().to_owned();
        partial.push(".partial");
        let partial = PathBuf::from(partial);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&partial)?;
        Ok(FileStage {
            file: std::io::BufWriter::new(file),
            partial,
            path: path.to_path_buf(),
        })
    }
}

impl Stage for FileStage {
    fn write(&mut self, plain: &[u8]) -> std::io::Result<()> {
        self.file.write_all(plain)
    }
    fn commit(self) -> std::io::Result<()> {
        let file = self.file.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&self.partial, &self.path)
    }
    fn abort(self) {
        drop(self.file);
        let _ = std::fs::remove_file(&self.partial);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip(plain: &[u8]) -> (Vec<u8>, Encrypted) {
        let mut ct = Vec::new();
        let e = encrypt_to(plain, &mut ct).unwrap();
        assert_eq!(ct.len(), plain.len(), "CTR keeps the length");
        assert_eq!(e.size, ct.len() as u64);
        assert_eq!(e.digest, sha256_text(digest::digest(&digest::SHA256, &ct)));
        let mut out = Vec::new();
        decrypt_to(
            ct.as_slice(),
            &e.public,
            &e.private,
            VecStage::new(&mut out),
        )
        .unwrap();
        assert_eq!(out, plain);
        (ct, e)
    }

    #[test]
    fn known_answer_aes_ctr_big_endian_counter() {
        // NIST SP 800-38A F.5.5 (CTR-AES256.Encrypt), whose counter block
        // f0f1…feff carries into the low bytes: the same 128-bit big-endian
        // counter as Go's cipher.NewCTR.
        let key = hex::decode("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4")
            .unwrap();
        let iv: [u8; 16] = hex::decode("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff")
            .unwrap()
            .try_into()
            .unwrap();
        let pt = hex::decode("6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51")
            .unwrap();
        let symkey = b64().encode(&key);
        let mac = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, &key),
            &hex::decode("601ec313775789a5b7a7f504bbf3d228f443e3ca4d62b59aca84e990cacaf5c5")
                .unwrap(),
        );
        let public = PublicOptions {
            cipher: CIPHER.into(),
            hmac: b64().encode(mac.as_ref()),
            cipheroptions: BTreeMap::new(),
        };
        let private = PrivateOptions {
            symkey,
            digest: sha256_text(digest::digest(&digest::SHA256, &pt)),
            cipheroptions: BTreeMap::from([("nonce".into(), b64().encode(iv))]),
        };
        let ct = hex::decode("601ec313775789a5b7a7f504bbf3d228f443e3ca4d62b59aca84e990cacaf5c5")
            .unwrap();
        let mut out = Vec::new();
        decrypt_to(ct.as_slice(), &public, &private, VecStage::new(&mut out)).unwrap();
        assert_eq!(out, pt);
    }

    #[test]
    fn sizes_across_chunk_boundaries() {
        for n in [
            0usize,
            1,
            15,
            16,
            17,
            CHUNK - 1,
            CHUNK,
            CHUNK + 1,
            3 * CHUNK + 7,
        ] {
            let plain: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
            round_trip(&plain);
        }
    }

    #[test]
    fn every_flipped_ciphertext_byte_is_refused_and_nothing_is_released() {
        let plain: Vec<u8> = (0..300u32).map(|i| (i * 7) as u8).collect();
        let (ct, e) = round_trip(&plain);
        for i in 0..ct.len() {
            let mut bad = ct.clone();
            bad[i] ^= 0x01;
            let mut out = vec![0xEE];
            let r = decrypt_to(
                bad.as_slice(),
                &e.public,
                &e.private,
                VecStage::new(&mut out),
            );
            assert_eq!(r, Err(ImageError::Hmac), "byte {i}");
            assert_eq!(out, vec![0xEE], "no plaintext released for byte {i}");
        }
        // Truncated and extended ciphertexts.
        for bad in [&ct[..ct.len() - 1], &[ct.as_slice(), &[0]].concat()[..]] {
            let mut out = Vec::new();
            assert_eq!(
                decrypt_to(bad, &e.public, &e.private, VecStage::new(&mut out)),
                Err(ImageError::Hmac)
            );
        }
    }

    #[test]
    fn wrong_hmac_digest_key_or_options_are_refused() {
        let (ct, e) = round_trip(b"layer bytes");
        let dec = |p: &PublicOptions, q: &PrivateOptions| {
            let mut out = Vec::new();
            decrypt_to(ct.as_slice(), p, q, VecStage::new(&mut out))
        };
        let mut p = e.public.clone();
        p.hmac = b64().encode([0u8; 32]);
        assert_eq!(dec(&p, &e.private), Err(ImageError::Hmac));
        let mut q = e.private.clone();
        q.digest = format!("sha256:{}", "0".repeat(64));
        assert!(matches!(dec(&e.public, &q), Err(ImageError::Digest { .. })));
        let mut q = e.private.clone();
        q.symkey = b64().encode([1u8; 32]);
        assert_eq!(dec(&e.public, &q), Err(ImageError::Hmac));
        // Strictness: lengths, cipher names, unknown options, digests.
        let mut q = e.private.clone();
        q.symkey = b64().encode([1u8; 31]);
        assert!(matches!(
            dec(&e.public, &q),
            Err(ImageError::Malformed { .. })
        ));
        let mut q = e.private.clone();
        q.cipheroptions
            .insert("nonce".into(), b64().encode([0u8; 12]));
        assert!(matches!(
            dec(&e.public, &q),
            Err(ImageError::Malformed { .. })
        ));
        let mut q = e.private.clone();
        q.cipheroptions.insert("extra".into(), String::new());
        assert!(matches!(
            dec(&e.public, &q),
            Err(ImageError::Malformed { .. })
        ));
        let mut q = e.private.clone();
        q.digest = q.digest.to_uppercase().replace("SHA256", "sha256");
        assert!(matches!(
            dec(&e.public, &q),
            Err(ImageError::Malformed { .. })
        ));
        let mut q = e.private.clone();
        q.digest = "md5:00".into();
        assert!(matches!(
            dec(&e.public, &q),
            Err(ImageError::Unsupported { .. })
        ));
        let mut p = e.public.clone();
        p.cipher = "AES_256_GCM".into();
        assert!(matches!(
            dec(&p, &e.private),
            Err(ImageError::Unsupported { .. })
        ));
        // The private options never print the key.
        assert!(!format!("{:?}", e.private).contains(&e.private.symkey));
    }

    #[test]
    fn options_json_and_annotations() {
        let (_, e) = round_trip(b"x");
        let a = e.public.to_annotation().unwrap();
        assert_eq!(PublicOptions::from_annotation(&a).unwrap(), e.public);
        let json = String::from_utf8(e.private.to_json().unwrap()).unwrap();
        assert!(json.starts_with("{\"symkey\":\""), "{json}");
        assert!(json.contains("\"cipheroptions\":{\"nonce\":\""), "{json}");
        assert_eq!(
            PrivateOptions::from_json(json.as_bytes()).unwrap(),
            e.private
        );
        let pubjson = String::from_utf8(b64().decode(a).unwrap()).unwrap();
        assert!(pubjson.starts_with("{\"cipher\":\"AES_256_CTR_HMAC_SHA256\",\"hmac\":\""));
        assert!(PublicOptions::from_annotation("!!").is_err());
        assert!(PrivateOptions::from_json(b"{\"symkey\":1}").is_err());
    }

    #[test]
    fn media_types() {
        assert_eq!(
            encrypted_media_type("application/vnd.oci.image.layer.v1.tar+gzip").unwrap(),
            "application/vnd.oci.image.layer.v1.tar+gzip+encrypted"
        );
        assert_eq!(
            decrypted_media_type("application/vnd.oci.image.layer.v1.tar+zstd+encrypted").unwrap(),
            "application/vnd.oci.image.layer.v1.tar+zstd"
        );
        assert!(encrypted_media_type("application/vnd.oci.image.config.v1+json").is_err());
        assert!(decrypted_media_type("application/vnd.oci.image.layer.v1.tar+gzip").is_err());
    }

    #[test]
    fn file_stage_commits_only_authenticated_output() {
        let dir = tempfile::tempdir().unwrap();
        let (ct, e) = round_trip(b"on disk");
        let path = dir.path().join("layer.tar");
        decrypt_to(
            ct.as_slice(),
            &e.public,
            &e.private,
            FileStage::create(&path).unwrap(),
        )
        .unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"on disk");
        let path2 = dir.path().join("bad.tar");
        let mut bad = ct.clone();
        bad[0] ^= 1;
        assert!(
            decrypt_to(
                bad.as_slice(),
                &e.public,
                &e.private,
                FileStage::create(&path2).unwrap()
            )
            .is_err()
        );
        assert!(!path2.exists());
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no partial file left"
        );
        assert!(FileStage::create(&path).is_err(), "never overwrites");
    }

    proptest! {
        #[test]
        fn any_blob_round_trips(plain in proptest::collection::vec(any::<u8>(), 0..4096)) {
            round_trip(&plain);
        }

        #[test]
        fn options_parsers_never_panic(s in ".{0,200}") {
            let _ = PublicOptions::from_annotation(&s);
            let _ = PrivateOptions::from_json(s.as_bytes());
        }
    }
}
