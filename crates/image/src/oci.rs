//! OCI image-layout directories (`oci-layout`, `index.json`,
//! `blobs/<alg>/<hex>`): encrypting and decrypting their layers on the build
//! side, as `skopeo copy --encryption-key` / `--decryption-key` do.
//!
//! Manifests and the index are edited as JSON values so that fields this
//! code does not know are kept. Every blob read is checked against its
//! descriptor's digest and size while it is read; outputs are written under
//! a temporary name and renamed, so an interrupted run leaves no blob under
//! a wrong name.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use aws_lc_rs::digest;
use serde_json::{Map, Value};

use crate::layer::{
    self, ANNOTATION_JWE, ANNOTATION_KEYS_PREFIX, ANNOTATION_PROVIDER_AA, ANNOTATION_PUBOPTS,
    FileStage, PrivateOptions, PublicOptions,
};
use crate::packet::AnnotationPacket;
use crate::{ImageError, malformed};

// Reading a `serde_json::Value` with `v["key"]` never panics (a missing
// key or another type gives `Null`), which is what the descriptor checks
// rely on; `indexing_slicing` is allowed for this module in lib.rs. Writes
// never index: they go through `set`, on objects only.

/// Sets `key` of a JSON object (an error for anything else).
fn set(v: &mut Value, key: &str, value: Value) -> Result<(), ImageError> {
    v.as_object_mut()
        .ok_or_else(|| malformed("descriptor", "not a JSON object"))?
        .insert(key.to_string(), value);
    Ok(())
}

const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn io(e: std::io::Error) -> ImageError {
    ImageError::Io(e.to_string())
}

/// Where a layout's blob lives, for a digest `sha256:<64 hex>`.
fn blob_path(dir: &Path, digest: &str) -> Result<PathBuf, ImageError> {
    let hex = digest
        .strip_prefix("sha256:")
        .filter(|h| {
            h.len() == 64
                && h.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
        .ok_or_else(|| {
            malformed(
                "descriptor",
                format!("digest {digest:?} is not sha256:<64 lowercase hex>"),
            )
        })?;
    Ok(dir.join("blobs").join("sha256").join(hex))
}

/// Reads a blob and fails at EOF unless its SHA-256 and size are the
/// descriptor's.
struct CheckedReader {
    inner: BufReader<File>,
    /// None: only the size is checked (an encrypted layer, whose
    /// ciphertext the HMAC authenticates).
    ctx: Option<digest::Context>,
    read: u64,
    digest: String,
    size: u64,
}

impl CheckedReader {
    /// A blob whose size is checked and whose digest is not: for encrypted
    /// layers, where the HMAC (whose value the manifest carries) covers
    /// every ciphertext byte.
    fn open_size_only(dir: &Path, desc: &Value) -> Result<Self, ImageError> {
        let mut r = Self::open(dir, desc)?;
        r.ctx = None;
        Ok(r)
    }

    fn open(dir: &Path, desc: &Value) -> Result<Self, ImageError> {
        let digest = desc["digest"]
            .as_str()
            .ok_or_else(|| malformed("descriptor", "no digest"))?
            .to_string();
        let size = desc["size"]
            .as_u64()
            .ok_or_else(|| malformed("descriptor", "no size"))?;
        let path = blob_path(dir, &digest)?;
        let f =
            File::open(&path).map_err(|e| ImageError::Io(format!("{}: {e}", path.display())))?;
        Ok(CheckedReader {
            inner: BufReader::with_capacity(256 * 1024, f),
            ctx: Some(digest::Context::new(&digest::SHA256)),
            read: 0,
            digest,
            size,
        })
    }
}

impl Read for CheckedReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 {
            let actual = match &self.ctx {
                Some(ctx) => format!("sha256:{}", hex::encode(ctx.clone().finish().as_ref())),
                None => self.digest.clone(),
            };
            if actual != self.digest || self.read != self.size {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "blob {} does not match its descriptor (digest {actual}, {} bytes; expected {} bytes)",
                        self.digest, self.read, self.size
                    ),
                ));
            }
            return Ok(0);
        }
        let chunk = buf.get(..n).unwrap_or_default();
        if let Some(ctx) = &mut self.ctx {
            ctx.update(chunk);
        }
        self.read = self.read.saturating_add(n as u64);
        Ok(n)
    }
}

fn read_blob(dir: &Path, desc: &Value) -> Result<Vec<u8>, ImageError> {
    let mut r = CheckedReader::open(dir, desc)?;
    let mut out = Vec::new();
    r.read_to_end(&mut out).map_err(io)?;
    Ok(out)
}

/// Writes `bytes` as a blob; its descriptor fields.
fn write_blob(dir: &Path, bytes: &[u8]) -> Result<(String, u64), ImageError> {
    let digest = crate::blob_digest(bytes);
    let path = blob_path(dir, &digest)?;
    if !path.exists() {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, bytes).map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)?;
    }
    Ok((digest, bytes.len() as u64))
}

fn copy_blob(from: &Path, to: &Path, desc: &Value) -> Result<(), ImageError> {
    let digest = desc["digest"].as_str().unwrap_or_default();
    let dst = blob_path(to, digest)?;
    if dst.exists() {
        return Ok(());
    }
    let tmp = dst.with_extension("tmp");
    let mut r = CheckedReader::open(from, desc)?;
    let mut w = File::create(&tmp).map_err(io)?;
    if let Err(e) = std::io::copy(&mut r, &mut w) {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(e));
    }
    std::fs::rename(&tmp, &dst).map_err(io)
}

fn json_of(bytes: &[u8], what: &'static str) -> Result<Value, ImageError> {
    serde_json::from_slice(bytes).map_err(|e| malformed(what, e))
}

/// Opens a layout: its `index.json`.
fn open_layout(dir: &Path) -> Result<Value, ImageError> {
    let layout = std::fs::read(dir.join("oci-layout"))
        .map_err(|e| ImageError::Io(format!("{}: not an OCI image layout ({e})", dir.display())))?;
    let layout = json_of(&layout, "oci-layout")?;
    if layout["imageLayoutVersion"] != "1.0.0" {
        return Err(ImageError::Unsupported {
            what: "image layout version",
            value: layout["imageLayoutVersion"].to_string(),
        });
    }
    let index = std::fs::read(dir.join("index.json")).map_err(io)?;
    json_of(&index, "index.json")
}

/// Creates the output layout directory (which must not exist or be empty).
fn create_layout(dir: &Path) -> Result<(), ImageError> {
    if dir.exists() && std::fs::read_dir(dir).map_err(io)?.next().is_some() {
        return Err(ImageError::Io(format!(
            "{} exists and is not empty",
            dir.display()
        )));
    }
    std::fs::create_dir_all(dir.join("blobs").join("sha256")).map_err(io)?;
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).map_err(io)
}

/// Writes a new OCI layout at `dir` holding one image: `layers` (media
/// type, blob) with the config's `rootfs.diff_ids`, tagged `reference`
/// when given. For build tools, benchmarks and tests.
pub fn write_image_layout(
    dir: &Path,
    reference: Option<&str>,
    layers: &[(&str, &[u8])],
    diff_ids: &[String],
) -> Result<(), ImageError> {
    create_layout(dir)?;
    let config = serde_json::json!({"architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids}});
    let (cd, cs) = write_blob(dir, config.to_string().as_bytes())?;
    let mut descs = Vec::new();
    for (media, blob) in layers {
        let (d, sz) = write_blob(dir, blob)?;
        descs.push(serde_json::json!({"mediaType": media, "digest": d, "size": sz}));
    }
    let manifest = serde_json::json!({"schemaVersion": 2, "mediaType": MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
        "layers": descs});
    let (md, ms) = write_blob(dir, manifest.to_string().as_bytes())?;
    let mut desc = serde_json::json!({"mediaType": MANIFEST, "digest": md, "size": ms});
    if let Some(r) = reference {
        set(
            &mut desc,
            "annotations",
            serde_json::json!({"org.opencontainers.image.ref.name": r}),
        )?;
    }
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [desc]});
    std::fs::write(dir.join("index.json"), index.to_string()).map_err(io)
}

/// Rewrites every manifest of the layout at `from` into `to`, layer by
/// layer through `edit` (which returns the new descriptor, having written
/// any new blob into `to`), copying everything else.
fn rewrite(
    from: &Path,
    to: &Path,
    mut edit: impl FnMut(&Path, &Path, &Value) -> Result<Option<Value>, ImageError>,
) -> Result<usize, ImageError> {
    let mut index = open_layout(from)?;
    create_layout(to)?;
    let mut changed = 0usize;
    let manifests = index
        .as_object_mut()
        .and_then(|o| o.get_mut("manifests"))
        .and_then(Value::as_array_mut)
        .ok_or_else(|| malformed("index.json", "no manifests"))?;
    for desc in manifests.iter_mut() {
        if desc["mediaType"] != MANIFEST {
            return Err(ImageError::Unsupported {
                what: "index entry (only OCI image manifests)",
                value: desc["mediaType"].to_string(),
            });
        }
        let mut manifest = json_of(&read_blob(from, desc)?, "manifest")?;
        copy_blob(from, to, &manifest["config"])?;
        let layers = manifest
            .as_object_mut()
            .and_then(|o| o.get_mut("layers"))
            .and_then(Value::as_array_mut)
            .ok_or_else(|| malformed("manifest", "no layers"))?;
        for layer in layers.iter_mut() {
            match edit(from, to, layer)? {
                Some(new) => {
                    *layer = new;
                    changed = changed.saturating_add(1);
                }
                None => copy_blob(from, to, layer)?,
            }
        }
        let bytes = serde_json::to_vec(&manifest).map_err(|e| malformed("manifest", e))?;
        let (digest, size) = write_blob(to, &bytes)?;
        set(desc, "digest", Value::String(digest))?;
        set(desc, "size", Value::from(size))?;
    }
    let bytes = serde_json::to_vec(&index).map_err(|e| malformed("index.json", e))?;
    let tmp = to.join("index.json.tmp");
    std::fs::write(&tmp, bytes).map_err(io)?;
    std::fs::rename(&tmp, to.join("index.json")).map_err(io)?;
    Ok(changed)
}

/// A recipient of the layer keys: the broker resource `kid` holds `kek`.
#[derive(Clone)]
pub struct ProviderRecipient {
    pub kid: String,
    pub kek: [u8; 32],
}

impl std::fmt::Debug for ProviderRecipient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderRecipient")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// Encrypts every not yet encrypted layer of the layout `from` into the
/// new layout `to`, for `recipient` under the provider annotation
/// `org.opencontainers.image.enc.keys.provider.<provider>`. Returns the
/// number of layers encrypted.
pub fn encrypt_layout(
    from: &Path,
    to: &Path,
    provider: &str,
    recipient: &ProviderRecipient,
) -> Result<usize, ImageError> {
    if provider.is_empty()
        || !provider
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(malformed("provider name", provider));
    }
    let annotation = format!("{ANNOTATION_KEYS_PREFIX}provider.{provider}");
    encrypt_with(from, to, |private| {
        let packet = AnnotationPacket::wrap(&recipient.kid, &recipient.kek, private)?;
        Ok((annotation.clone(), packet.to_annotation()?))
    })
}

/// Encrypts every not yet encrypted layer of `from` into `to` for JWE
/// recipients (`org.opencontainers.image.enc.keys.jwe`), as
/// `skopeo copy --encryption-key jwe:PUBLIC.pem` does.
pub fn encrypt_layout_jwe(
    from: &Path,
    to: &Path,
    recipients: &[crate::jwe::RecipientKey],
) -> Result<usize, ImageError> {
    use base64::Engine;
    encrypt_with(from, to, |private| {
        let jwe = crate::jwe::encrypt(recipients, &private.to_json()?)?;
        Ok((ANNOTATION_JWE.to_string(), crate::b64().encode(jwe)))
    })
}

/// Encrypts each layer and adds the key annotation `wrap` makes from its
/// private options.
fn encrypt_with(
    from: &Path,
    to: &Path,
    wrap: impl Fn(&PrivateOptions) -> Result<(String, String), ImageError>,
) -> Result<usize, ImageError> {
    rewrite(from, to, |from, to, layer| {
        let media = layer["mediaType"].as_str().unwrap_or_default();
        if media.ends_with("+encrypted") {
            return Ok(None);
        }
        let encrypted_media = layer::encrypted_media_type(media)?;
        let input = CheckedReader::open(from, layer)?;
        let tmp = to.join("blobs").join("sha256").join("encrypting.tmp");
        let out = File::create(&tmp).map_err(io)?;
        let enc = match layer::encrypt_to(input, std::io::BufWriter::new(out)) {
            Ok(e) => e,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
        };
        std::fs::rename(&tmp, blob_path(to, &enc.digest)?).map_err(io)?;
        let (key_annotation, key_value) = wrap(&enc.private)?;
        let mut new = layer.clone();
        set(&mut new, "mediaType", Value::String(encrypted_media))?;
        set(&mut new, "digest", Value::String(enc.digest))?;
        set(&mut new, "size", Value::from(enc.size))?;
        let annotations = new
            .as_object_mut()
            .ok_or_else(|| malformed("descriptor", "not an object"))?
            .entry("annotations")
            .or_insert_with(|| Value::Object(Map::new()));
        let a = annotations
            .as_object_mut()
            .ok_or_else(|| malformed("descriptor", "annotations is not an object"))?;
        a.insert(
            ANNOTATION_PUBOPTS.into(),
            Value::String(enc.public.to_annotation()?),
        );
        a.insert(key_annotation, Value::String(key_value));
        Ok(Some(new))
    })
}

/// Something that turns a provider packet into the layer's private options
/// (a KEK file, or the agent after attestation). One key lookup per
/// distinct `kid` is the caller's business (see [`KeyCache`]).
pub trait Unwrapper {
    fn unwrap(&mut self, packet: &AnnotationPacket) -> Result<PrivateOptions, ImageError>;
    /// Opens a JWE recipient annotation's JWE (JSON); by default this
    /// unwrapper has no private keys.
    fn unwrap_jwe(&mut self, _jwe: &[u8]) -> Result<PrivateOptions, ImageError> {
        Err(ImageError::Unsupported {
            what: "layer key scheme for these keys",
            value: "jwe (give a private key)".into(),
        })
    }
    /// How many keys were fetched from outside (0 for local keys).
    fn fetched(&self) -> usize {
        0
    }
}

/// Private keys for JWE recipients (`--decryption-key PRIVATE.pem`).
#[derive(Debug)]
pub struct JweKeys(pub Vec<crate::jwe::PrivateJweKey>);

impl Unwrapper for JweKeys {
    fn unwrap(&mut self, _packet: &AnnotationPacket) -> Result<PrivateOptions, ImageError> {
        Err(ImageError::Unsupported {
            what: "layer key scheme for these keys",
            value: "key-provider packet (use provider:NAME)".into(),
        })
    }
    fn unwrap_jwe(&mut self, jwe: &[u8]) -> Result<PrivateOptions, ImageError> {
        PrivateOptions::from_json(&crate::jwe::decrypt(jwe, &self.0)?)
    }
}

/// Unwraps with KEKs fetched once per `kid` by `fetch`.
pub struct KeyCache<F> {
    fetch: F,
    keys: BTreeMap<String, Vec<u8>>,
}

impl<F> std::fmt::Debug for KeyCache<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyCache")
            .field("kids", &self.keys.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl<F: FnMut(&str) -> Result<Vec<u8>, ImageError>> KeyCache<F> {
    pub fn new(fetch: F) -> Self {
        KeyCache {
            fetch,
            keys: BTreeMap::new(),
        }
    }
}

impl<F: FnMut(&str) -> Result<Vec<u8>, ImageError>> Unwrapper for KeyCache<F> {
    fn fetched(&self) -> usize {
        self.keys.len()
    }

    fn unwrap(&mut self, packet: &AnnotationPacket) -> Result<PrivateOptions, ImageError> {
        if !self.keys.contains_key(&packet.kid) {
            let kek = (self.fetch)(&packet.kid)?;
            self.keys.insert(packet.kid.clone(), kek);
        }
        let kek = self.keys.get(&packet.kid).ok_or(ImageError::Unwrap)?;
        packet.unwrap(kek)
    }
}

/// Decrypts every encrypted layer of `from` into the new layout `to`. The
/// key packet is read from any `…enc.keys.provider.*` annotation (as
/// ocicrypt does); each decrypted blob must match the HMAC and the digest
/// in its private options before it is written under that digest.
pub fn decrypt_layout(
    from: &Path,
    to: &Path,
    unwrapper: &mut dyn Unwrapper,
) -> Result<usize, ImageError> {
    rewrite(from, to, |from, to, layer| {
        let media = layer["mediaType"].as_str().unwrap_or_default();
        if !media.ends_with("+encrypted") {
            return Ok(None);
        }
        let plain_media = layer::decrypted_media_type(media)?;
        let (public, private) = layer_keys(layer, unwrapper)?;

        let path = blob_path(to, &private.digest)?;
        let input = CheckedReader::open_size_only(from, layer)?;
        let size = if path.exists() {
            // Same content already written (a layer shared by manifests):
            // still authenticate this copy.
            let mut sink = Vec::new();
            layer::decrypt_to(input, &public, &private, layer::VecStage::new(&mut sink))?
        } else {
            layer::decrypt_to(
                input,
                &public,
                &private,
                FileStage::create(&path).map_err(io)?,
            )?
        };
        let mut new = layer.clone();
        set(&mut new, "mediaType", Value::String(plain_media))?;
        set(&mut new, "digest", Value::String(private.digest.clone()))?;
        set(&mut new, "size", Value::from(size))?;
        if let Some(o) = new.as_object_mut() {
            let empty = match o.get_mut("annotations").and_then(Value::as_object_mut) {
                Some(a) => {
                    a.retain(|k, _| !k.starts_with("org.opencontainers.image.enc."));
                    a.is_empty()
                }
                None => false,
            };
            if empty {
                o.remove("annotations");
            }
        }
        Ok(Some(new))
    })
}

const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Whether a layout ref name is a cosign signature tag (`sha256-<hex>.sig`).
fn is_signature_tag(name: &str) -> bool {
    name.strip_suffix(".sig")
        .and_then(|d| d.strip_prefix("sha256-"))
        .is_some_and(|h| crate::reference::valid_digest(&format!("sha256:{h}")))
}

/// An image manifest of a layout.
#[derive(Debug, Clone)]
pub struct LayoutImage {
    /// Its descriptor in `index.json`.
    pub desc: Value,
    /// `sha256:` of the manifest bytes.
    pub digest: String,
    pub bytes: Vec<u8>,
    pub manifest: Value,
}

/// The image of a layout: the one manifest whose ref name is `reference`,
/// or the only image manifest (signature manifests aside).
pub fn layout_image(dir: &Path, reference: Option<&str>) -> Result<LayoutImage, ImageError> {
    let index = open_layout(dir)?;
    let manifests = index["manifests"]
        .as_array()
        .ok_or_else(|| malformed("index.json", "no manifests"))?;
    let chosen: Vec<&Value> = manifests
        .iter()
        .filter(|m| match reference {
            Some(r) => m["annotations"][REF_NAME] == r,
            None => !m["annotations"][REF_NAME]
                .as_str()
                .is_some_and(is_signature_tag),
        })
        .collect();
    let [desc] = chosen.as_slice() else {
        return Err(malformed(
            "index.json",
            format!(
                "{} manifests match; name one with its org.opencontainers.image.ref.name",
                chosen.len()
            ),
        ));
    };
    if !MANIFEST_TYPES.iter().any(|t| desc["mediaType"] == *t) {
        return Err(ImageError::Unsupported {
            what: "manifest media type",
            value: desc["mediaType"].to_string(),
        });
    }
    let bytes = read_blob(dir, desc)?;
    Ok(LayoutImage {
        desc: (*desc).clone(),
        digest: desc["digest"].as_str().unwrap_or_default().to_string(),
        manifest: json_of(&bytes, "manifest")?,
        bytes,
    })
}

/// Where a layout keeps the blob `digest`.
pub fn layout_blob_path(dir: &Path, digest: &str) -> Result<PathBuf, ImageError> {
    blob_path(dir, digest)
}

/// Reads a layout blob, checked against its descriptor.
pub fn read_layout_blob(dir: &Path, desc: &Value) -> Result<Vec<u8>, ImageError> {
    read_blob(dir, desc)
}

/// Signs the image of a layout cosign-style for `identity`: a signature
/// manifest tagged `sha256-<hex>.sig` in the same layout (signatures
/// already there are kept). Returns that tag.
pub fn sign_layout(
    dir: &Path,
    reference: Option<&str>,
    identity: &crate::reference::Reference,
    key: &crate::signature::SigningKey,
) -> Result<String, ImageError> {
    use crate::signature::{Payload, signature_image, signature_tag};
    let image = layout_image(dir, reference)?;
    let tag = signature_tag(&image.digest)?;
    let previous = match layout_image(dir, Some(&tag)) {
        Ok(p) => Some(p.manifest),
        Err(_) => None,
    };
    let payload = Payload::encode(identity, &image.digest)?;
    let signature = key.sign(&payload)?;
    let (config, manifest) = signature_image(previous.as_ref(), &payload, &signature)?;
    write_blob(dir, &payload)?;
    write_blob(dir, &config)?;
    let (md, ms) = write_blob(dir, &manifest)?;
    let mut index = open_layout(dir)?;
    let manifests = index
        .as_object_mut()
        .and_then(|o| o.get_mut("manifests"))
        .and_then(Value::as_array_mut)
        .ok_or_else(|| malformed("index.json", "no manifests"))?;
    manifests.retain(|m| m["annotations"][REF_NAME] != tag.as_str());
    manifests.push(
        serde_json::json!({"mediaType": MANIFEST, "digest": md, "size": ms,
        "annotations": {REF_NAME: tag}}),
    );
    let bytes = serde_json::to_vec(&index).map_err(|e| malformed("index.json", e))?;
    let tmp = dir.join("index.json.tmp");
    std::fs::write(&tmp, bytes).map_err(io)?;
    std::fs::rename(&tmp, dir.join("index.json")).map_err(io)?;
    Ok(tag)
}

/// The cosign signatures a layout holds for the manifest `digest` (none
/// when it has no signature manifest for it).
pub fn layout_signatures(
    dir: &Path,
    digest: &str,
) -> Result<Vec<crate::signature::Candidate>, ImageError> {
    use crate::signature::{Candidate, signature_layers, signature_tag};
    let tag = signature_tag(digest)?;
    let sig = match layout_image(dir, Some(&tag)) {
        Ok(s) => s,
        Err(ImageError::Malformed { .. }) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    signature_layers(&sig.manifest)?
        .into_iter()
        .map(|l| {
            let desc = serde_json::json!({"digest": l.digest, "size": l.size});
            Ok(Candidate {
                payload: read_blob(dir, &desc)?,
                signature_b64: l.signature_b64,
            })
        })
        .collect()
}

/// What [`unpack_layout`] produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unpacked {
    /// The layer directories, bottom first (an overlay's lowerdirs in
    /// reverse), each named `<index>-<diff_id hex>` under `bundle/layers`.
    pub layers: Vec<PathBuf>,
    /// How many layers were encrypted.
    pub encrypted: usize,
}

/// One layer to unpack: its descriptor, its `diff_id`, where it goes, and
/// its keys when it is encrypted (unwrapped before any layer starts).
#[derive(Debug)]
pub struct LayerJob {
    layer: Value,
    diff_id: String,
    dest: PathBuf,
    keys: Option<(PublicOptions, PrivateOptions)>,
}

impl LayerJob {
    /// The blob's digest (`sha256:…`).
    pub fn digest(&self) -> &str {
        self.layer["digest"].as_str().unwrap_or_default()
    }

    /// The blob's size from the descriptor.
    pub fn size(&self) -> u64 {
        self.layer["size"].as_u64().unwrap_or_default()
    }

    pub fn is_encrypted(&self) -> bool {
        self.keys.is_some()
    }

    /// Where the layer is unpacked.
    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// Unpacks the blob read from `input` (whose digest and size the
    /// caller checks, or whose HMAC authenticates it) in one pass; the
    /// directory appears only when every check passed.
    pub fn unpack(&self, input: impl Read) -> Result<(), ImageError> {
        let media = self.layer["mediaType"].as_str().unwrap_or_default();
        let compression = crate::unpack::Compression::from_media_type(media)?;
        match &self.keys {
            Some((public, private)) => crate::unpack::decrypt_and_unpack(
                input,
                public,
                private,
                compression,
                &self.diff_id,
                &self.dest,
            ),
            None => crate::unpack::unpack_layer(input, compression, &self.diff_id, &self.dest),
        }
    }
}

/// Media types of single-image manifests (OCI, Docker schema 2).
pub const MANIFEST_TYPES: [&str; 2] = [MANIFEST, DOCKER_MANIFEST];
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// The layers of `manifest` with the `diff_ids` of `config`, as jobs
/// unpacking into `bundle/layers/<n>-<diff_id hex>`; the keys of encrypted
/// layers are unwrapped here, before anything is unpacked (one lookup per
/// `kid` with a [`KeyCache`]).
pub fn plan_layers(
    manifest: &Value,
    config: &Value,
    bundle: &Path,
    unwrapper: &mut dyn Unwrapper,
) -> Result<Vec<LayerJob>, ImageError> {
    let layers = manifest["layers"]
        .as_array()
        .ok_or_else(|| malformed("manifest", "no layers"))?;
    let diff_ids = config["rootfs"]["diff_ids"]
        .as_array()
        .ok_or_else(|| malformed("image config", "no rootfs.diff_ids"))?;
    if diff_ids.len() != layers.len() {
        return Err(malformed(
            "image",
            format!("{} layers but {} diff_ids", layers.len(), diff_ids.len()),
        ));
    }
    let dir = bundle.join("layers");
    let mut jobs = Vec::new();
    for (i, (layer, diff_id)) in layers.iter().zip(diff_ids).enumerate() {
        let diff_id = diff_id
            .as_str()
            .ok_or_else(|| malformed("image config", "a diff_id is not a string"))?
            .to_string();
        let hex = blob_path(Path::new(""), &diff_id)?
            .file_name()
            .map(|f| f.to_string_lossy().to_string())
            .unwrap_or_default();
        // Checked up front: a digest the blob store could not name.
        blob_path(Path::new(""), layer["digest"].as_str().unwrap_or_default())?;
        if layer["size"].as_u64().is_none() {
            return Err(malformed("manifest", "a layer has no size"));
        }
        let media = layer["mediaType"].as_str().unwrap_or_default();
        crate::unpack::Compression::from_media_type(media)?;
        let keys = if media.ends_with("+encrypted") {
            Some(layer_keys(layer, unwrapper)?)
        } else {
            None
        };
        jobs.push(LayerJob {
            layer: layer.clone(),
            diff_id,
            dest: dir.join(format!("{i}-{hex}")),
            keys,
        });
    }
    std::fs::create_dir_all(&dir).map_err(io)?;
    Ok(jobs)
}

/// Writes the image config as `bundle/config.json` (after the layers).
pub fn write_bundle_config(bundle: &Path, config_bytes: &[u8]) -> Result<(), ImageError> {
    let tmp = bundle.join("config.json.tmp");
    std::fs::write(&tmp, config_bytes).map_err(io)?;
    std::fs::rename(&tmp, bundle.join("config.json")).map_err(io)
}

/// Unpacks the image of `from` (an OCI layout; its only manifest, or the
/// one whose `org.opencontainers.image.ref.name` is `reference`) into
/// `bundle`: the image config as `bundle/config.json` and every layer,
/// decrypted when encrypted (keys through `unwrapper`, one lookup per
/// `kid`), decompressed and untarred in one pass with its `diff_id`
/// checked, `parallel` layers at a time. A layer directory appears only
/// after all its checks passed.
pub fn unpack_layout(
    from: &Path,
    reference: Option<&str>,
    bundle: &Path,
    unwrapper: &mut dyn Unwrapper,
    parallel: usize,
) -> Result<Unpacked, ImageError> {
    let image = layout_image(from, reference)?;
    let manifest = image.manifest;
    let config_bytes = read_blob(from, &manifest["config"])?;
    let config = json_of(&config_bytes, "image config")?;
    let jobs = plan_layers(&manifest, &config, bundle, unwrapper)?;
    let encrypted = jobs.iter().filter(|j| j.is_encrypted()).count();
    let parallel = parallel.max(1);
    let mut results: Vec<Result<(), ImageError>> = Vec::new();
    for batch in jobs.chunks(parallel) {
        let batch_results: Vec<Result<(), ImageError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = batch
                .iter()
                .map(|job| {
                    scope.spawn(move || -> Result<(), ImageError> {
                        let input = if job.is_encrypted() {
                            CheckedReader::open_size_only(from, &job.layer)?
                        } else {
                            CheckedReader::open(from, &job.layer)?
                        };
                        job.unpack(input)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(ImageError::Io("a layer thread failed".into())))
                })
                .collect()
        });
        results.extend(batch_results);
    }
    for r in results {
        r?;
    }
    write_bundle_config(bundle, &config_bytes)?;
    Ok(Unpacked {
        layers: jobs.into_iter().map(|j| j.dest).collect(),
        encrypted,
    })
}

/// The public options and (unwrapped) private options of an encrypted
/// layer descriptor.
fn layer_keys(
    layer: &Value,
    unwrapper: &mut dyn Unwrapper,
) -> Result<(PublicOptions, PrivateOptions), ImageError> {
    let annotations = layer["annotations"]
        .as_object()
        .ok_or_else(|| malformed("encrypted layer", "no annotations"))?;
    let public = PublicOptions::from_annotation(
        annotations
            .get(ANNOTATION_PUBOPTS)
            .and_then(Value::as_str)
            .ok_or_else(|| malformed("encrypted layer", "no pubopts annotation"))?,
    )?;
    if let Some(jwe) = annotations.get(ANNOTATION_JWE).and_then(Value::as_str) {
        use base64::Engine;
        let mut last = ImageError::Unwrap;
        for one in jwe.split(',') {
            let bytes = crate::b64()
                .decode(one.trim())
                .map_err(|_| malformed("JWE annotation", "not base64"))?;
            match unwrapper.unwrap_jwe(&bytes) {
                Ok(p) => return Ok((public, p)),
                Err(e) => last = e,
            }
        }
        let has_provider = annotations
            .keys()
            .any(|k| k.starts_with(&format!("{ANNOTATION_KEYS_PREFIX}provider.")));
        if !has_provider {
            return Err(last);
        }
    }
    let packet_value = annotations
        .get(ANNOTATION_PROVIDER_AA)
        .or_else(|| {
            annotations
                .iter()
                .find(|(k, _)| k.starts_with(&format!("{ANNOTATION_KEYS_PREFIX}provider.")))
                .map(|(_, v)| v)
        })
        .and_then(Value::as_str)
        .ok_or_else(|| ImageError::Unsupported {
            what: "layer key scheme (only key-provider packets so far)",
            value: annotations
                .keys()
                .filter(|k| k.starts_with(ANNOTATION_KEYS_PREFIX))
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
        })?;
    // A comma-separated list, one packet per recipient: the first that
    // unwraps is used.
    let mut last = ImageError::Unwrap;
    for one in packet_value.split(',') {
        match AnnotationPacket::from_annotation(one).and_then(|p| unwrapper.unwrap(&p)) {
            Ok(p) => return Ok((public, p)),
            Err(e) => last = e,
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small layout: one manifest, a config, two layers.
    fn layout(dir: &Path) -> Vec<Vec<u8>> {
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        let config =
            br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
        let (cd, cs) = write_blob(dir, config).unwrap();
        let layers: Vec<Vec<u8>> = vec![
            (0..70_000u32).map(|i| (i % 7) as u8).collect(),
            b"second layer".to_vec(),
        ];
        let descs: Vec<Value> = layers
            .iter()
            .map(|l| {
                let (d, s) = write_blob(dir, l).unwrap();
                serde_json::json!({"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":d,"size":s})
            })
            .collect();
        let manifest = serde_json::json!({"schemaVersion":2,"mediaType":MANIFEST,
            "config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":cd,"size":cs},
            "layers":descs, "annotations":{"org.example.kept":"yes"}});
        let (md, ms) = write_blob(dir, &serde_json::to_vec(&manifest).unwrap()).unwrap();
        let index = serde_json::json!({"schemaVersion":2,"manifests":[{"mediaType":MANIFEST,"digest":md,"size":ms,
            "annotations":{"org.opencontainers.image.ref.name":"latest"}}]});
        std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
        layers
    }

    fn manifest(dir: &Path) -> Value {
        let index: Value =
            serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
        serde_json::from_slice(&read_blob(dir, &index["manifests"][0]).unwrap()).unwrap()
    }

    #[test]
    fn encrypt_then_decrypt_a_layout() {
        let t = tempfile::tempdir().unwrap();
        let (plain, enc, dec) = (t.path().join("p"), t.path().join("e"), t.path().join("d"));
        let layers = layout(&plain);
        let r = ProviderRecipient {
            kid: "kbs:///default/key/1".into(),
            kek: [5; 32],
        };
        assert_eq!(
            encrypt_layout(&plain, &enc, "attestation-agent", &r).unwrap(),
            2
        );
        let m = manifest(&enc);
        assert_eq!(m["annotations"]["org.example.kept"], "yes");
        for l in m["layers"].as_array().unwrap() {
            assert_eq!(
                l["mediaType"],
                "application/vnd.oci.image.layer.v1.tar+gzip+encrypted"
            );
            assert!(l["annotations"][ANNOTATION_PUBOPTS].is_string());
            assert!(l["annotations"][ANNOTATION_PROVIDER_AA].is_string());
        }
        // Encrypting again leaves encrypted layers alone.
        assert_eq!(
            encrypt_layout(&enc, &t.path().join("e2"), "attestation-agent", &r).unwrap(),
            0
        );

        let mut cache = KeyCache::new(|kid: &str| {
            assert_eq!(kid, "kbs:///default/key/1");
            Ok(vec![5u8; 32])
        });
        assert_eq!(decrypt_layout(&enc, &dec, &mut cache).unwrap(), 2);
        assert_eq!(cache.fetched(), 1, "one key fetch per kid");
        let m = manifest(&dec);
        for (l, want) in m["layers"].as_array().unwrap().iter().zip(&layers) {
            assert_eq!(
                l["mediaType"],
                "application/vnd.oci.image.layer.v1.tar+gzip"
            );
            assert!(l.get("annotations").is_none());
            assert_eq!(read_blob(&dec, l).unwrap(), *want);
        }
        assert_eq!(
            manifest(&plain)["layers"],
            m["layers"],
            "back to the original descriptors"
        );
    }

    #[test]
    fn tampering_and_wrong_keys_are_refused() {
        let t = tempfile::tempdir().unwrap();
        let (plain, enc) = (t.path().join("p"), t.path().join("e"));
        layout(&plain);
        let r = ProviderRecipient {
            kid: "kbs:///default/key/1".into(),
            kek: [5; 32],
        };
        encrypt_layout(&plain, &enc, "veil", &r).unwrap();
        // A wrong KEK.
        let mut wrong = KeyCache::new(|_: &str| Ok(vec![6u8; 32]));
        assert_eq!(
            decrypt_layout(&enc, &t.path().join("d1"), &mut wrong),
            Err(ImageError::Unwrap)
        );
        // A flipped byte in an encrypted blob: refused before anything is
        // committed.
        let layer = manifest(&enc)["layers"][1].clone();
        let path = blob_path(&enc, layer["digest"].as_str().unwrap()).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[0] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let mut right = KeyCache::new(|_: &str| Ok(vec![5u8; 32]));
        let out = t.path().join("d2");
        let e = decrypt_layout(&enc, &out, &mut right).unwrap_err();
        assert_eq!(e, ImageError::Hmac, "the HMAC covers every ciphertext byte");
        let leftovers: Vec<_> = std::fs::read_dir(out.join("blobs/sha256"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .filter(|n| n.ends_with(".partial") || n.ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        // The output must be new.
        assert!(encrypt_layout(&plain, &enc, "veil", &r).is_err());
        assert!(encrypt_layout(&plain, &t.path().join("x"), "bad name", &r).is_err());
    }

    #[test]
    fn hostile_layouts_give_errors_not_panics() {
        let t = tempfile::tempdir().unwrap();
        let r = ProviderRecipient {
            kid: "kbs:///default/key/1".into(),
            kek: [5; 32],
        };
        let cases: [(&[u8], &[u8]); 5] = [
            (br#"{"imageLayoutVersion":"2.0.0"}"#, br#"{"manifests":[]}"#),
            (br#"{"imageLayoutVersion":"1.0.0"}"#, b"[]"),
            (br#"{"imageLayoutVersion":"1.0.0"}"#, br#"{"manifests":[1]}"#),
            (br#"{"imageLayoutVersion":"1.0.0"}"#, br#"{"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:../../x","size":1}]}"#),
            (br#"{"imageLayoutVersion":"1.0.0"}"#, br#"{"manifests":{"a":1}}"#),
        ];
        for (i, (layout, index)) in cases.iter().enumerate() {
            let dir = t.path().join(format!("in{i}"));
            std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
            std::fs::write(dir.join("oci-layout"), layout).unwrap();
            std::fs::write(dir.join("index.json"), index).unwrap();
            assert!(
                encrypt_layout(&dir, &t.path().join(format!("out{i}")), "veil", &r).is_err(),
                "case {i}"
            );
        }
        // A manifest blob that is a JSON array.
        let dir = t.path().join("arr");
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        let (d, sz) = write_blob(&dir, b"[1,2]").unwrap();
        std::fs::write(
            dir.join("index.json"),
            serde_json::json!({"manifests":[{"mediaType":MANIFEST,"digest":d,"size":sz}]})
                .to_string(),
        )
        .unwrap();
        assert!(encrypt_layout(&dir, &t.path().join("arr-out"), "veil", &r).is_err());
    }

    /// A layout whose layers are real gzip tars, with matching diff_ids.
    fn image_layout(dir: &Path, diff_ids_override: Option<Vec<String>>) {
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        let tars = [
            crate::unpack::tar_of(&[("etc/os-release", b"ID=veil\n")]).unwrap(),
            crate::unpack::tar_of(&[("app/run", b"#!/bin/sh\n"), ("app/data", &[7u8; 5000])])
                .unwrap(),
        ];
        let diff_ids: Vec<String> = diff_ids_override.unwrap_or_else(|| {
            tars.iter()
                .map(|t| {
                    format!(
                        "sha256:{}",
                        hex::encode(digest::digest(&digest::SHA256, t).as_ref())
                    )
                })
                .collect()
        });
        let config = serde_json::json!({"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":diff_ids}});
        let (cd, cs) = write_blob(dir, config.to_string().as_bytes()).unwrap();
        let layers: Vec<Value> = tars
            .iter()
            .map(|t| {
                let (d, s) = write_blob(dir, &crate::unpack::gzip(t).unwrap()).unwrap();
                serde_json::json!({"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":d,"size":s})
            })
            .collect();
        let manifest = serde_json::json!({"schemaVersion":2,"mediaType":MANIFEST,
            "config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":cd,"size":cs},"layers":layers});
        let (md, ms) = write_blob(dir, manifest.to_string().as_bytes()).unwrap();
        let index = serde_json::json!({"schemaVersion":2,"manifests":[{"mediaType":MANIFEST,"digest":md,"size":ms,
            "annotations":{"org.opencontainers.image.ref.name":"v1"}}]});
        std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
    }

    #[test]
    fn unpack_an_encrypted_image() {
        let t = tempfile::tempdir().unwrap();
        let (plain, enc) = (t.path().join("p"), t.path().join("e"));
        image_layout(&plain, None);
        let r = ProviderRecipient {
            kid: "kbs:///default/key/1".into(),
            kek: [5; 32],
        };
        encrypt_layout(&plain, &enc, "attestation-agent", &r).unwrap();
        let mut keys = KeyCache::new(|_: &str| Ok(vec![5u8; 32]));
        let bundle = t.path().join("bundle");
        let u = unpack_layout(&enc, Some("v1"), &bundle, &mut keys, 4).unwrap();
        assert_eq!(u.encrypted, 2);
        assert_eq!(keys.fetched(), 1);
        assert_eq!(
            std::fs::read(u.layers[0].join("etc/os-release")).unwrap(),
            b"ID=veil\n"
        );
        assert_eq!(
            std::fs::read(u.layers[1].join("app/data")).unwrap(),
            vec![7u8; 5000]
        );
        assert!(bundle.join("config.json").is_file());
        // Unencrypted images unpack the same way.
        let u = unpack_layout(&plain, None, &t.path().join("b2"), &mut keys, 1).unwrap();
        assert_eq!(u.encrypted, 0);
        // An unknown reference, and a wrong KEK.
        assert!(unpack_layout(&enc, Some("v2"), &t.path().join("b3"), &mut keys, 1).is_err());
        let mut wrong = KeyCache::new(|_: &str| Ok(vec![6u8; 32]));
        assert_eq!(
            unpack_layout(&enc, None, &t.path().join("b4"), &mut wrong, 2),
            Err(ImageError::Unwrap)
        );
    }

    #[test]
    fn a_wrong_diff_id_leaves_no_layer() {
        let t = tempfile::tempdir().unwrap();
        let (plain, enc) = (t.path().join("p"), t.path().join("e"));
        image_layout(
            &plain,
            Some(vec![
                format!("sha256:{}", "ab".repeat(32)),
                format!("sha256:{}", "cd".repeat(32)),
            ]),
        );
        let r = ProviderRecipient {
            kid: "kbs:///default/key/1".into(),
            kek: [5; 32],
        };
        encrypt_layout(&plain, &enc, "veil", &r).unwrap();
        let mut keys = KeyCache::new(|_: &str| Ok(vec![5u8; 32]));
        let bundle = t.path().join("bundle");
        let e = unpack_layout(&enc, None, &bundle, &mut keys, 2).unwrap_err();
        assert!(matches!(e, ImageError::Digest { .. }), "{e}");
        assert_eq!(std::fs::read_dir(bundle.join("layers")).unwrap().count(), 0);
        assert!(!bundle.join("config.json").exists());
        // A diff_id that is not a digest never becomes a path.
        let odd = t.path().join("odd");
        image_layout(
            &odd,
            Some(vec!["sha256:../../x".into(), "sha256:00".into()]),
        );
        assert!(unpack_layout(&odd, None, &t.path().join("b5"), &mut keys, 1).is_err());
    }
}
