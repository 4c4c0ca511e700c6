//! `veil image …`: the build side of encrypted and signed images on OCI
//! image-layout directories (encrypt, decrypt, sign, verify, push; skopeo's
//! key syntax), and the guest side (unpack a layout, pull from a registry
//! under a signature policy, keys from the broker through the agent).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Subcommand};
use veil_image::ImageError;
use veil_image::keyprovider::WrapSpec;
use veil_image::oci::{
    JweKeys, KeyCache, ProviderRecipient, Unwrapper, decrypt_layout, encrypt_layout,
};
use veil_image::policy::{KeySource, Policy};
use veil_image::reference::Reference;
use veil_image::registry::{Registry, RegistryOptions};

use crate::EXIT_ERROR;
use crate::keyprovider::{read_kek, resource_from_agent};

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Encrypt every layer of an OCI layout (IN) into a new layout (OUT).
    Encrypt(EncryptArgs),
    /// Decrypt every encrypted layer of an OCI layout (IN) into OUT.
    Decrypt(DecryptArgs),
    /// Unpack an image of an OCI layout into a bundle directory: each
    /// layer decrypted (keys through the attested agent), decompressed and
    /// untarred in one pass, its diff_id checked, several at a time.
    Unpack(UnpackArgs),
    /// Pull an image from a registry into a bundle inside the TEE: the
    /// signature policy first, then every layer streamed, decrypted (keys
    /// from the broker through the agent), checked and unpacked.
    Pull(PullArgs),
    /// Push an image of an OCI layout (and its cosign signatures) to a
    /// registry.
    Push(PushArgs),
    /// Sign the image of an OCI layout cosign-style (a `sha256-<hex>.sig`
    /// signature manifest in the same layout).
    Sign(SignArgs),
    /// Check the signatures of an OCI layout's image against a key or a
    /// policy.
    Verify(VerifyArgs),
    /// Generate a signing key pair: PREFIX.key (cosign's encrypted format,
    /// password from COSIGN_PASSWORD or --passphrase-file, empty if
    /// neither) and PREFIX.pub.
    Keygen(KeygenArgs),
}

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Writes PREFIX.key and PREFIX.pub (neither may exist).
    #[arg(long, default_value = "cosign")]
    pub out: PathBuf,
    #[arg(long)]
    pub passphrase_file: Option<PathBuf>,
}

/// How to reach a registry.
#[derive(Debug, Args)]
pub struct RegistryArgs {
    /// Talk plain HTTP to the registry (a registry on loopback; digests
    /// and signatures are still checked).
    #[arg(long)]
    pub plain_http: bool,
    /// Extra CA certificates (PEM) trusted for the registry's TLS.
    #[arg(long)]
    pub registry_ca: Option<PathBuf>,
    /// `USER:PASSWORD` for the registry.
    #[arg(long, env = "VEIL_REGISTRY_CREDS", hide_env_values = true)]
    pub creds: Option<String>,
}

impl RegistryArgs {
    fn client(&self) -> Result<Arc<Registry>, String> {
        let ca_pem = match &self.registry_ca {
            Some(p) => Some(std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?),
            None => None,
        };
        Registry::new(RegistryOptions {
            plain_http: self.plain_http,
            ca_pem,
            credentials: self.creds.clone(),
        })
        .map(Arc::new)
        .map_err(|e| e.to_string())
    }
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// The image (`registry.example/team/app:1.0` or `…@sha256:…`).
    pub image: String,
    /// Where the layers (`layers/<n>-<diff_id>`) and `config.json` go.
    #[arg(long)]
    pub bundle: PathBuf,
    /// The signature policy (containers-policy.json): a file, or a broker
    /// resource `kbs:///REPO/TYPE/TAG` fetched through the agent.
    #[arg(long, default_value = "/etc/containers/policy.json")]
    pub policy: String,
    #[command(flatten)]
    pub keys: GuestKeys,
    /// Layers pulled at the same time.
    #[arg(long, default_value_t = 4)]
    pub parallel: usize,
    /// Where GPG simple-signing signatures are kept, for `signedBy`
    /// requirements (`file:///var/lib/containers/sigstore` or an
    /// `https://` lookaside server), as containers' registries.d says.
    #[arg(long)]
    pub lookaside: Option<String>,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// The OCI layout.
    pub layout: PathBuf,
    /// Where to (`registry.example/team/app:1.0`).
    pub image: String,
    /// The manifest's `org.opencontainers.image.ref.name` (needed when the
    /// layout holds several images).
    #[arg(long = "ref")]
    pub reference: Option<String>,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

#[derive(Debug, Args)]
pub struct SignArgs {
    /// The OCI layout (the signature is added to it; push it afterwards).
    pub layout: PathBuf,
    /// The signing key: cosign's encrypted private key (password from
    /// COSIGN_PASSWORD or --passphrase-file), or an unencrypted ECDSA
    /// P-256/P-384 PEM private key.
    #[arg(long)]
    pub key: PathBuf,
    #[arg(long)]
    pub passphrase_file: Option<PathBuf>,
    /// The identity signed: the reference the image will be pulled as
    /// (`registry.example/team/app:1.0`).
    #[arg(long)]
    pub identity: String,
    /// The manifest's `org.opencontainers.image.ref.name`.
    #[arg(long = "ref")]
    pub reference: Option<String>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The OCI layout.
    pub layout: PathBuf,
    /// The reference the image is pulled as (the identity checked).
    #[arg(long)]
    pub identity: String,
    /// A public key (PEM): accept when a signature by it names the image
    /// (matchRepoDigestOrExact).
    #[arg(long, conflicts_with = "policy", required_unless_present = "policy")]
    pub key: Option<PathBuf>,
    /// Or a containers-policy.json file.
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// The manifest's `org.opencontainers.image.ref.name`.
    #[arg(long = "ref")]
    pub reference: Option<String>,
    /// Where GPG simple-signing signatures are kept, for `signedBy`
    /// requirements (`file://…` or `https://…`).
    #[arg(long)]
    pub lookaside: Option<String>,
}

/// Where a guest gets layer keys (and broker resources) from.
#[derive(Debug, Args)]
pub struct GuestKeys {
    /// For encrypted layers: `provider:NAME` (keys through the agent),
    /// `provider:NAME:keypath=KEK_FILE`, or `PRIVATE.pem` (repeatable).
    #[arg(long, default_values_t = vec!["provider:attestation-agent".to_string()])]
    pub decryption_key: Vec<String>,
    /// The Veil agent's workload API.
    #[arg(long, env = "VEIL_AGENT_URL", default_value = "http://127.0.0.1:8006")]
    pub agent: String,
}

#[derive(Debug, Args)]
pub struct UnpackArgs {
    /// The OCI layout.
    pub layout: PathBuf,
    /// Where the layers (`layers/<n>-<diff_id>`) and `config.json` go.
    #[arg(long)]
    pub bundle: PathBuf,
    /// The manifest's `org.opencontainers.image.ref.name` (needed when the
    /// layout holds several).
    #[arg(long = "ref")]
    pub reference: Option<String>,
    #[command(flatten)]
    pub keys: GuestKeys,
    /// Layers unpacked at the same time.
    #[arg(long, default_value_t = 4)]
    pub parallel: usize,
}

#[derive(Debug, Args)]
pub struct EncryptArgs {
    /// `provider:NAME:keypath=KEK_FILE::keyid=kbs:///REPO/TYPE/TAG` (the
    /// layer keys wrapped under the 32-byte KEK that the broker holds as
    /// the resource `keyid`), or `jwe:PUBLIC.pem` (repeatable: one JWE for
    /// all such recipients, readable by skopeo/ocicrypt).
    #[arg(long, required = true)]
    pub encryption_key: Vec<String>,
    pub input: PathBuf,
    pub output: PathBuf,
}

#[derive(Debug, Args)]
pub struct DecryptArgs {
    /// `provider:NAME` (the KEKs come from the Veil agent, after
    /// attestation), `provider:NAME:keypath=KEK_FILE` (offline), or
    /// `PRIVATE.pem` (a JWE recipient's key; repeatable).
    #[arg(long, required = true)]
    pub decryption_key: Vec<String>,
    /// The Veil agent's workload API.
    #[arg(long, env = "VEIL_AGENT_URL", default_value = "http://127.0.0.1:8006")]
    pub agent: String,
    pub input: PathBuf,
    pub output: PathBuf,
}

/// `provider:NAME[:PARAMS]` → (NAME, PARAMS).
fn provider_key(s: &str) -> Result<(&str, Option<&str>), String> {
    let rest = s.strip_prefix("provider:").ok_or_else(|| {
        format!("{s:?}: expected provider:NAME:… here (PKCS7 and PGP recipients are not supported)")
    })?;
    Ok(match rest.split_once(':') {
        Some((name, params)) => (name, Some(params)),
        None => (rest, None),
    })
}

fn encrypt(a: &EncryptArgs) -> Result<String, String> {
    if a.encryption_key.iter().all(|k| k.starts_with("jwe:")) {
        let keys = a
            .encryption_key
            .iter()
            .map(|k| {
                let path = k.trim_start_matches("jwe:");
                let pem = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
                veil_image::jwe::RecipientKey::from_pem(&pem).map_err(|e| format!("{path}: {e}"))
            })
            .collect::<Result<Vec<_>, String>>()?;
        let n = veil_image::oci::encrypt_layout_jwe(&a.input, &a.output, &keys)
            .map_err(|e| e.to_string())?;
        return Ok(format!(
            "encrypted {n} layer(s) for {} JWE recipient(s) into {}",
            keys.len(),
            a.output.display()
        ));
    }
    let [key] = a.encryption_key.as_slice() else {
        return Err("one provider key per run (or only jwe: keys)".into());
    };
    let (name, params) = provider_key(key)?;
    let spec = WrapSpec::parse(params.ok_or("provider key without keypath=…::keyid=…")?)
        .map_err(|e| e.to_string())?;
    let kek = read_kek(Path::new(&spec.keypath))?;
    let n = encrypt_layout(
        &a.input,
        &a.output,
        name,
        &ProviderRecipient {
            kid: spec.keyid.clone(),
            kek,
        },
    )
    .map_err(|e| e.to_string())?;
    Ok(format!(
        "encrypted {n} layer(s) for {} into {}",
        spec.keyid,
        a.output.display()
    ))
}

/// The unwrapper for `--decryption-key` values: private key files (JWE),
/// or one provider key.
fn unwrapper(keys: &[String], agent: &str) -> Result<Box<dyn Unwrapper + Send>, String> {
    if keys.iter().all(|k| !k.starts_with("provider:")) {
        let keys = keys
            .iter()
            .map(|path| {
                let pem = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
                veil_image::jwe::PrivateJweKey::from_pem(&pem).map_err(|e| format!("{path}: {e}"))
            })
            .collect::<Result<Vec<_>, String>>()?;
        return Ok(Box::new(JweKeys(keys)));
    }
    let [key] = keys else {
        return Err("one provider key per run (or only private key files)".into());
    };
    Ok(Box::new(KeyCache::new(kek_fetch(key, agent)?)))
}

/// Fetches the KEK of a `kid`.
type KekFetch = Box<dyn FnMut(&str) -> Result<Vec<u8>, ImageError> + Send>;

/// Where KEKs come from: a file (offline) or the agent (after attestation).
fn kek_fetch(key: &str, agent: &str) -> Result<KekFetch, String> {
    let (_, params) = provider_key(key)?;
    if let Some(p) = params {
        let path = p
            .strip_prefix("keypath=")
            .ok_or("expected provider:NAME:keypath=KEK_FILE")?;
        let kek = read_kek(Path::new(path))?;
        return Ok(Box::new(move |_kid: &str| Ok(kek.to_vec())));
    }
    let agent = agent.to_string();
    Ok(Box::new(move |kid: &str| agent_resource(&agent, kid)))
}

fn decrypt(a: &DecryptArgs) -> Result<String, String> {
    let mut keys = unwrapper(&a.decryption_key, &a.agent)?;
    let n = tokio::task::block_in_place(|| decrypt_layout(&a.input, &a.output, keys.as_mut()))
        .map_err(|e| e.to_string())?;
    Ok(format!(
        "decrypted {n} layer(s) into {}",
        a.output.display()
    ))
}

fn unpack(a: &UnpackArgs) -> Result<String, String> {
    let mut keys = unwrapper(&a.keys.decryption_key, &a.keys.agent)?;
    let start = std::time::Instant::now();
    let u = tokio::task::block_in_place(|| {
        veil_image::oci::unpack_layout(
            &a.layout,
            a.reference.as_deref(),
            &a.bundle,
            keys.as_mut(),
            a.parallel,
        )
    })
    .map_err(|e| e.to_string())?;
    Ok(format!(
        "unpacked {} layer(s) ({} encrypted, {} key lookup(s)) into {} in {:.2} s",
        u.layers.len(),
        u.encrypted,
        keys.fetched(),
        a.bundle.display(),
        start.elapsed().as_secs_f64()
    ))
}

/// A broker resource through the agent, from blocking code on a runtime
/// thread (the image work runs in `block_in_place`).
fn agent_resource(agent: &str, uri: &str) -> Result<Vec<u8>, ImageError> {
    let handle = tokio::runtime::Handle::current();
    tokio::task::block_in_place(|| handle.block_on(resource_from_agent(agent, uri)))
        .map_err(ImageError::Io)
}

/// Reads a policy key: a file, inline data, or a broker resource.
fn load_key(agent: &str, source: &KeySource) -> Result<Vec<u8>, ImageError> {
    match source {
        KeySource::Path(p) => std::fs::read(p).map_err(|e| ImageError::Io(format!("{p}: {e}"))),
        KeySource::Data(d) => Ok(d.clone()),
        KeySource::Kbs(uri) => agent_resource(agent, uri),
    }
}

fn read_policy(spec: &str, agent: &str) -> Result<Policy, String> {
    let bytes = if spec.starts_with("kbs://") {
        agent_resource(agent, spec).map_err(|e| format!("policy {spec}: {e}"))?
    } else {
        std::fs::read(spec).map_err(|e| {
            format!("signature policy {spec}: {e} (no policy: refusing to pull; give --policy)")
        })?
    };
    Policy::parse(&bytes).map_err(|e| format!("{spec}: {e}"))
}

/// A progress bar on a terminal; nothing otherwise.
fn progress_bar(total: Option<u64>, what: &str) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = match total {
        Some(n) => indicatif::ProgressBar::new(n),
        None => indicatif::ProgressBar::no_length(),
    };
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_string());
    Some(bar)
}

async fn pull(a: &PullArgs) -> Result<String, String> {
    let image = Reference::parse(&a.image)
        .map_err(|e| e.to_string())?
        .with_default_tag();
    let policy = read_policy(&a.policy, &a.keys.agent)?;
    let registry = a.registry.client()?;
    let mut keys = unwrapper(&a.keys.decryption_key, &a.keys.agent)?;
    let bar = progress_bar(None, "pulling");
    let progress: Option<veil_image::pull::Progress> = bar
        .clone()
        .map(|b| Arc::new(move |n: u64| b.inc(n)) as veil_image::pull::Progress);
    let start = std::time::Instant::now();
    let agent = a.keys.agent.clone();
    let mut loader = move |s: &KeySource| load_key(&agent, s);
    let pulled = veil_image::pull::pull(
        registry,
        &image,
        &a.bundle,
        &policy,
        &mut loader,
        keys.as_mut(),
        veil_image::pull::PullOptions {
            parallel: a.parallel,
            progress,
            lookaside: a.lookaside.clone(),
        },
    )
    .await
    .map_err(|e| e.to_string())?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let secs = start.elapsed().as_secs_f64();
    Ok(format!(
        "pulled {image} ({}): {} layer(s), {} encrypted, {} key lookup(s), {:.1} MiB in {secs:.2} s ({:.0} MiB/s) into {}; accepted by {}",
        pulled.digest,
        pulled.layers.len(),
        pulled.encrypted,
        keys.fetched(),
        pulled.bytes as f64 / 1048576.0,
        pulled.bytes as f64 / 1048576.0 / secs.max(1e-9),
        a.bundle.display(),
        pulled.accepted_by.join(", ")
    ))
}

/// Pushes the image of a layout, its blobs first, then its signature
/// manifest if the layout holds one.
async fn push(a: &PushArgs) -> Result<String, String> {
    use veil_image::oci::{layout_blob_path, layout_image};
    let target = Reference::parse(&a.image)
        .map_err(|e| e.to_string())?
        .with_default_tag();
    let tag = target
        .tag()
        .ok_or("push to a tag (REGISTRY/REPO:TAG), not a digest")?
        .to_string();
    let registry = a.registry.client()?;
    let image = layout_image(&a.layout, a.reference.as_deref()).map_err(|e| e.to_string())?;
    let sig_tag = veil_image::signature::signature_tag(&image.digest).map_err(|e| e.to_string())?;
    let signature = layout_image(&a.layout, Some(&sig_tag)).ok();
    let mut sent = 0u64;
    for (one, manifest_tag) in std::iter::once((&image, tag.as_str()))
        .chain(signature.as_ref().map(|s| (s, sig_tag.as_str())))
    {
        let m = &one.manifest;
        let blobs = std::iter::once(&m["config"]).chain(
            m["layers"]
                .as_array()
                .map(|l| l.iter())
                .into_iter()
                .flatten(),
        );
        for desc in blobs {
            let digest = desc["digest"].as_str().unwrap_or_default();
            let path = layout_blob_path(&a.layout, digest).map_err(|e| e.to_string())?;
            let size = desc["size"].as_u64().unwrap_or_default();
            let bar = progress_bar(Some(size), &digest[..digest.len().min(19)]);
            let file_path = path.clone();
            registry
                .push_blob(&target, digest, || {
                    let reader = std::fs::File::open(&file_path).map(tokio::fs::File::from_std);
                    match reader {
                        Ok(f) => reqwest::Body::from(f),
                        Err(_) => reqwest::Body::from(Vec::new()),
                    }
                })
                .await
                .map_err(|e| e.to_string())?;
            if let Some(b) = bar {
                b.finish_and_clear();
            }
            sent = sent.saturating_add(size);
        }
        let media = one.desc["mediaType"]
            .as_str()
            .unwrap_or("application/vnd.oci.image.manifest.v1+json");
        registry
            .push_manifest(&target, manifest_tag, media, &one.bytes)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(format!(
        "pushed {target} ({}){}; {:.1} MiB of blobs",
        image.digest,
        if signature.is_some() {
            format!(" and its signatures ({sig_tag})")
        } else {
            String::new()
        },
        sent as f64 / 1048576.0
    ))
}

/// The password of a cosign key: the file's first line, or
/// `COSIGN_PASSWORD`, or empty.
fn passphrase(file: Option<&Path>) -> Result<Vec<u8>, String> {
    match file {
        Some(f) => {
            let text = std::fs::read(f).map_err(|e| format!("{}: {e}", f.display()))?;
            Ok(text
                .split(|b| *b == b'\n')
                .next()
                .unwrap_or_default()
                .to_vec())
        }
        None => Ok(std::env::var("COSIGN_PASSWORD")
            .unwrap_or_default()
            .into_bytes()),
    }
}

fn keygen(a: &KeygenArgs) -> Result<String, String> {
    use veil_image::signature::SigningKey;
    let key_path = a.out.with_extension("key");
    let pub_path = a.out.with_extension("pub");
    for p in [&key_path, &pub_path] {
        if p.exists() {
            return Err(format!("{} exists; not overwriting", p.display()));
        }
    }
    let key = SigningKey::generate().map_err(|e| e.to_string())?;
    let password = passphrase(a.passphrase_file.as_deref())?;
    let pem = key.to_cosign_pem(&password).map_err(|e| e.to_string())?;
    write_private(&key_path, pem.as_bytes())?;
    std::fs::write(&pub_path, key.public_key_pem().map_err(|e| e.to_string())?)
        .map_err(|e| format!("{}: {e}", pub_path.display()))?;
    Ok(format!(
        "wrote {} (cosign format) and {}",
        key_path.display(),
        pub_path.display()
    ))
}

/// Creates a file readable by its owner only.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(bytes))
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn sign(a: &SignArgs) -> Result<String, String> {
    use veil_image::signature::SigningKey;
    let pem = std::fs::read(&a.key).map_err(|e| format!("{}: {e}", a.key.display()))?;
    let key = if String::from_utf8_lossy(&pem).contains("-----BEGIN ENCRYPTED ") {
        SigningKey::from_cosign_pem(&pem, &passphrase(a.passphrase_file.as_deref())?)
    } else {
        SigningKey::from_pem(&pem)
    }
    .map_err(|e| format!("{}: {e}", a.key.display()))?;
    let identity = Reference::parse(&a.identity).map_err(|e| e.to_string())?;
    let tag = veil_image::oci::sign_layout(&a.layout, a.reference.as_deref(), &identity, &key)
        .map_err(|e| e.to_string())?;
    Ok(format!(
        "signed {} as {identity}: signature manifest {tag}",
        a.layout.display()
    ))
}

async fn verify(a: &VerifyArgs) -> Result<String, String> {
    use base64::Engine;
    let identity = Reference::parse(&a.identity).map_err(|e| e.to_string())?;
    let policy = match (&a.key, &a.policy) {
        (Some(k), _) => {
            let pem = std::fs::read(k).map_err(|e| format!("{}: {e}", k.display()))?;
            let data = base64::engine::general_purpose::STANDARD.encode(pem);
            Policy::parse(
                format!(r#"{{"default":[{{"type":"sigstoreSigned","keyData":"{data}"}}]}}"#)
                    .as_bytes(),
            )
        }
        (None, Some(p)) => {
            let bytes = std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?;
            Policy::parse(&bytes)
        }
        (None, None) => return Err("give --key or --policy".into()),
    }
    .map_err(|e| e.to_string())?;
    let image = veil_image::oci::layout_image(&a.layout, a.reference.as_deref())
        .map_err(|e| e.to_string())?;
    let signatures =
        veil_image::oci::layout_signatures(&a.layout, &image.digest).map_err(|e| e.to_string())?;
    let mut no_kbs = |s: &KeySource| match s {
        KeySource::Kbs(u) => Err(ImageError::Io(format!(
            "{u}: broker keys are for pulls inside the TEE; give the key file"
        ))),
        other => load_key("", other),
    };
    let simple = match &a.lookaside {
        Some(base) if policy.needs_simple_signatures(&identity) => {
            veil_image::pull::lookaside_signatures(base, &identity, &image.digest)
                .await
                .map_err(|e| e.to_string())?
        }
        _ => Vec::new(),
    };
    let why = policy
        .evaluate(&identity, &image.digest, &signatures, &simple, &mut no_kbs)
        .map_err(|e| e.to_string())?;
    Ok(format!(
        "verified {} ({}) as {identity}: {}",
        a.layout.display(),
        image.digest,
        why.join(", ")
    ))
}

pub async fn run(cmd: ImageCommand) -> ExitCode {
    let r = match cmd {
        ImageCommand::Encrypt(a) => encrypt(&a),
        ImageCommand::Decrypt(a) => decrypt(&a),
        ImageCommand::Unpack(a) => unpack(&a),
        ImageCommand::Pull(a) => pull(&a).await,
        ImageCommand::Push(a) => push(&a).await,
        ImageCommand::Sign(a) => sign(&a),
        ImageCommand::Verify(a) => verify(&a).await,
        ImageCommand::Keygen(a) => keygen(&a),
    };
    match r {
        Ok(msg) => {
            eprintln!("{msg}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}
