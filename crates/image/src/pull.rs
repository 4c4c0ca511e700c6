//! Pulling an image from a registry into a bundle, inside the TEE:
//!
//! 1. the manifest the reference names is fetched and hashed;
//! 2. the signature policy decides on it (cosign signatures fetched from
//!    the `sha256-<hex>.sig` tag when a requirement needs them) before
//!    anything else is fetched;
//! 3. an index is resolved to this platform's manifest (fetched by digest);
//! 4. the keys of every encrypted layer are unwrapped (one broker lookup per
//!    `kid`, through the caller's [`Unwrapper`]);
//! 5. every layer streams from the registry into the one-pass
//!    decrypt → decompress → untar of [`crate::oci::LayerJob::unpack`],
//!    several at a time, its digest checked as it streams; a layer
//!    directory appears only when the blob digest, the HMAC and the
//!    `diff_id` all checked out, and when any layer fails the layers of
//!    this pull are removed, so a refused image leaves no plaintext.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::oci::{LayerJob, MANIFEST_TYPES, Unwrapper, plan_layers, write_bundle_config};
use crate::policy::{KeySource, Policy};
use crate::reference::Reference;
use crate::registry::{FetchedManifest, Registry};
use crate::signature::{Candidate, MAX_PAYLOAD, signature_layers, signature_tag};
use crate::{ImageError, malformed};

const INDEX_TYPES: [&str; 2] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];
const MAX_CONFIG: usize = 16 * 1024 * 1024;

/// What a pull did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pulled {
    /// The digest the reference resolved to (what signatures cover).
    pub digest: String,
    /// The layer directories, bottom first.
    pub layers: Vec<PathBuf>,
    pub encrypted: usize,
    /// Blob bytes downloaded.
    pub bytes: u64,
    /// Why the policy accepted, one line per requirement.
    pub accepted_by: Vec<String>,
}

/// Counts downloaded bytes (a progress bar).
pub type Progress = Arc<dyn Fn(u64) + Send + Sync>;

/// How a pull runs.
#[derive(Clone, Default)]
pub struct PullOptions {
    /// Layers downloaded and unpacked at the same time (at least 1).
    pub parallel: usize,
    /// Told of every chunk downloaded.
    pub progress: Option<Progress>,
    /// Where GPG simple-signing signatures are kept (`file://` or
    /// `http(s)://`), for `signedBy` requirements.
    pub lookaside: Option<String>,
}

impl std::fmt::Debug for PullOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PullOptions")
            .field("parallel", &self.parallel)
            .field("progress", &self.progress.is_some())
            .field("lookaside", &self.lookaside)
            .finish()
    }
}

/// The GOARCH of this machine, for picking from an index.
fn this_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "s390x" => "s390x",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

async fn fetch_manifest(
    registry: &Registry,
    image: &Reference,
    reference: &str,
) -> Result<FetchedManifest, ImageError> {
    registry
        .manifest(image, reference)
        .await?
        .ok_or_else(|| ImageError::Registry(format!("{image}: manifest {reference} not found")))
}

/// The cosign signatures stored for `digest` (none if there is no
/// signature tag).
pub async fn registry_signatures(
    registry: &Registry,
    image: &Reference,
    digest: &str,
) -> Result<Vec<Candidate>, ImageError> {
    let Some(m) = registry.manifest(image, &signature_tag(digest)?).await? else {
        return Ok(Vec::new());
    };
    let manifest: Value =
        serde_json::from_slice(&m.bytes).map_err(|e| malformed("signature manifest", e))?;
    let mut out = Vec::new();
    for l in signature_layers(&manifest)? {
        out.push(Candidate {
            payload: registry
                .blob_bytes(image, &l.digest, l.size, MAX_PAYLOAD)
                .await?,
            signature_b64: l.signature_b64,
        });
    }
    Ok(out)
}

/// The GPG simple-signing signatures of `image` at `digest` in a lookaside
/// store: `signature-1`, `signature-2`, … until the first that does not
/// exist (at most 32, each at most 64 KiB).
pub async fn lookaside_signatures(
    base: &str,
    image: &Reference,
    digest: &str,
) -> Result<Vec<Vec<u8>>, ImageError> {
    const MAX_SIGNATURES: usize = 32;
    let limit = crate::signature::MAX_PAYLOAD;
    let mut out = Vec::new();
    let http = reqwest::Client::new();
    for n in 1..=MAX_SIGNATURES {
        let url = crate::simple_signing::lookaside_url(base, image, digest, n)?;
        let body = if let Some(path) = url.strip_prefix("file://") {
            match tokio::fs::read(path).await {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                Err(e) => return Err(ImageError::Io(format!("{path}: {e}"))),
            }
        } else if url.starts_with("https://") || url.starts_with("http://") {
            let resp = http
                .get(&url)
                .send()
                .await
                .map_err(|e| ImageError::Registry(format!("lookaside {url}: {e}")))?;
            if resp.status() == reqwest::StatusCode::NOT_FOUND {
                break;
            }
            if !resp.status().is_success() {
                return Err(ImageError::Registry(format!(
                    "lookaside {url}: HTTP {}",
                    resp.status()
                )));
            }
            resp.bytes()
                .await
                .map_err(|e| ImageError::Registry(format!("lookaside {url}: {e}")))?
                .to_vec()
        } else {
            return Err(malformed(
                "lookaside URL",
                "expected file://, http:// or https://",
            ));
        };
        if body.len() > limit {
            return Err(ImageError::Signature(format!(
                "{url}: larger than {limit} bytes"
            )));
        }
        out.push(body);
    }
    Ok(out)
}

/// A blocking reader over a download: chunks from the async side, EOF only
/// once the download reported the blob checked out.
struct ChannelReader {
    rx: mpsc::Receiver<Result<Option<Bytes>, String>>,
    current: Bytes,
    done: bool,
}

impl std::io::Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            if self.done {
                return Ok(0);
            }
            match self.rx.blocking_recv() {
                Some(Ok(Some(b))) => self.current = b,
                Some(Ok(None)) => self.done = true,
                Some(Err(e)) => return Err(std::io::Error::other(e)),
                None => return Err(std::io::Error::other("the download stopped")),
            }
        }
        let n = self.current.len().min(out.len());
        let chunk = self.current.split_to(n);
        out.get_mut(..n).unwrap_or_default().copy_from_slice(&chunk);
        Ok(n)
    }
}

/// Downloads one layer into its unpacker.
async fn pull_layer(
    registry: Arc<Registry>,
    image: Reference,
    job: Arc<LayerJob>,
    progress: Option<Progress>,
) -> Result<u64, ImageError> {
    let (tx, rx) = mpsc::channel::<Result<Option<Bytes>, String>>(32);
    let unpack_job = job.clone();
    let unpacker = tokio::task::spawn_blocking(move || {
        unpack_job.unpack(ChannelReader {
            rx,
            current: Bytes::new(),
            done: false,
        })
    });
    let download = async {
        let mut blob = registry.blob(&image, job.digest(), job.size()).await?;
        let mut n = 0u64;
        loop {
            match blob.next().await? {
                Some(chunk) => {
                    n = n.saturating_add(chunk.len() as u64);
                    if let Some(p) = &progress {
                        p(chunk.len() as u64);
                    }
                    if tx.send(Ok(Some(chunk))).await.is_err() {
                        // The unpacker stopped; its error tells why.
                        return Ok(n);
                    }
                }
                None => {
                    let _ = tx.send(Ok(None)).await;
                    return Ok(n);
                }
            }
        }
    };
    let downloaded: Result<u64, ImageError> = download.await;
    if let Err(e) = &downloaded {
        let _ = tx.send(Err(e.to_string())).await;
    }
    drop(tx);
    let unpacked = unpacker
        .await
        .map_err(|_| ImageError::Io("a layer task failed".into()))?;
    // The download's verdict first: a tampered blob is reported as such.
    let n = downloaded?;
    unpacked?;
    Ok(n)
}

/// Pulls `image` into `bundle` (see the module documentation). `load_key`
/// gives the PEM of a policy key (files, or broker resources through the
/// agent); `unwrapper` the layer keys. Both may block (they run where
/// blocking is allowed).
pub async fn pull(
    registry: Arc<Registry>,
    image: &Reference,
    bundle: &Path,
    policy: &Policy,
    load_key: &mut (dyn FnMut(&KeySource) -> Result<Vec<u8>, ImageError> + Send),
    unwrapper: &mut (dyn Unwrapper + Send),
    options: PullOptions,
) -> Result<Pulled, ImageError> {
    let PullOptions {
        parallel,
        progress,
        lookaside,
    } = options;
    if image.tag().is_some() && image.digest().is_some() {
        return Err(malformed(
            "image reference",
            "give a tag or a digest, not both",
        ));
    }
    let top = fetch_manifest(&registry, image, image.manifest_reference()).await?;
    let signatures = if policy.needs_signatures(image) {
        registry_signatures(&registry, image, &top.digest).await?
    } else {
        Vec::new()
    };
    let simple = if policy.needs_simple_signatures(image) {
        match &lookaside {
            Some(base) => lookaside_signatures(base, image, &top.digest).await?,
            None => Vec::new(),
        }
    } else {
        Vec::new()
    };
    let accepted_by = tokio::task::block_in_place(|| {
        policy.evaluate(image, &top.digest, &signatures, &simple, load_key)
    })?;

    let manifest = if INDEX_TYPES.contains(&top.media_type.as_str()) {
        let index: Value =
            serde_json::from_slice(&top.bytes).map_err(|e| malformed("image index", e))?;
        let chosen = index["manifests"]
            .as_array()
            .and_then(|ms| {
                ms.iter().find(|m| {
                    m["platform"]["os"] == "linux" && m["platform"]["architecture"] == this_arch()
                })
            })
            .and_then(|m| m["digest"].as_str())
            .ok_or_else(|| ImageError::Unsupported {
                what: "image platforms",
                value: format!("no linux/{} manifest in the index", this_arch()),
            })?
            .to_string();
        fetch_manifest(&registry, image, &chosen).await?
    } else {
        top.clone()
    };
    if !MANIFEST_TYPES.contains(&manifest.media_type.as_str()) {
        return Err(ImageError::Unsupported {
            what: "manifest media type",
            value: manifest.media_type,
        });
    }
    let manifest: Value =
        serde_json::from_slice(&manifest.bytes).map_err(|e| malformed("manifest", e))?;
    let config_desc = &manifest["config"];
    let config_bytes = registry
        .blob_bytes(
            image,
            config_desc["digest"].as_str().unwrap_or_default(),
            config_desc["size"].as_u64().unwrap_or_default(),
            MAX_CONFIG,
        )
        .await?;
    let config: Value =
        serde_json::from_slice(&config_bytes).map_err(|e| malformed("image config", e))?;
    let jobs = tokio::task::block_in_place(|| plan_layers(&manifest, &config, bundle, unwrapper))?;
    let jobs: Vec<Arc<LayerJob>> = jobs.into_iter().map(Arc::new).collect();
    let encrypted = jobs.iter().filter(|j| j.is_encrypted()).count();

    let limit = Arc::new(tokio::sync::Semaphore::new(parallel.max(1)));
    let mut set = tokio::task::JoinSet::new();
    for (i, job) in jobs.iter().enumerate() {
        let (registry, image, job, progress, limit) = (
            registry.clone(),
            image.clone(),
            job.clone(),
            progress.clone(),
            limit.clone(),
        );
        set.spawn(async move {
            let r = match limit.acquire_owned().await {
                Ok(_permit) => pull_layer(registry, image, job, progress).await,
                Err(_) => Err(ImageError::Io("pull cancelled".into())),
            };
            (i, r)
        });
    }
    // Every layer runs to its end (none is left half-renamed); then, if any
    // failed, the layers this pull created are removed.
    let mut bytes = 0u64;
    let mut done = Vec::new();
    let mut failure = None;
    while let Some(r) = set.join_next().await {
        match r {
            Ok((i, Ok(n))) => {
                bytes = bytes.saturating_add(n);
                done.push(i);
            }
            Ok((_, Err(e))) => {
                failure.get_or_insert(e);
            }
            Err(_) => {
                failure.get_or_insert(ImageError::Io("a layer task failed".into()));
            }
        }
    }
    if let Some(e) = failure {
        for i in done {
            if let Some(j) = jobs.get(i) {
                let _ = std::fs::remove_dir_all(j.dest());
            }
        }
        return Err(e);
    }
    write_bundle_config(bundle, &config_bytes)?;
    Ok(Pulled {
        digest: top.digest,
        layers: jobs.iter().map(|j| j.dest().to_path_buf()).collect(),
        encrypted,
        bytes,
        accepted_by,
    })
}
