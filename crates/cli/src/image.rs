//! `veil image encrypt|decrypt`: the build side of encrypted images, on OCI
//! image-layout directories, with skopeo's key syntax.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use veil_image::ImageError;
use veil_image::keyprovider::WrapSpec;
use veil_image::oci::{
    JweKeys, KeyCache, ProviderRecipient, Unwrapper, decrypt_layout, encrypt_layout,
};

use crate::EXIT_ERROR;
use crate::keyprovider::{kek_from_agent, read_kek};

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
    /// For encrypted layers: `provider:NAME` (keys through the agent),
    /// `provider:NAME:keypath=KEK_FILE`, or `PRIVATE.pem` (repeatable).
    #[arg(long, default_values_t = vec!["provider:attestation-agent".to_string()])]
    pub decryption_key: Vec<String>,
    /// The Veil agent's workload API.
    #[arg(long, env = "VEIL_AGENT_URL", default_value = "http://127.0.0.1:8006")]
    pub agent: String,
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
fn unwrapper(keys: &[String], agent: &str) -> Result<Box<dyn Unwrapper>, String> {
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
    Ok(Box::new(KeyCache::new(key_source(key, agent)?)))
}

/// Fetches the KEK of a `kid`.
type KeySource = Box<dyn FnMut(&str) -> Result<Vec<u8>, ImageError> + Send>;

/// Where KEKs come from: a file (offline) or the agent (after attestation).
fn key_source(key: &str, agent: &str) -> Result<KeySource, String> {
    let (_, params) = provider_key(key)?;
    if let Some(p) = params {
        let path = p
            .strip_prefix("keypath=")
            .ok_or("expected provider:NAME:keypath=KEK_FILE")?;
        let kek = read_kek(Path::new(path))?;
        return Ok(Box::new(move |_kid: &str| Ok(kek.to_vec())));
    }
    let agent = agent.trim_end_matches('/').to_string();
    let handle = tokio::runtime::Handle::current();
    Ok(Box::new(move |kid: &str| {
        handle
            .block_on(kek_from_agent(&agent, kid))
            .map_err(ImageError::Io)
    }))
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
    let mut keys = unwrapper(&a.decryption_key, &a.agent)?;
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

pub async fn run(cmd: ImageCommand) -> ExitCode {
    let r = match cmd {
        ImageCommand::Encrypt(a) => encrypt(&a),
        ImageCommand::Decrypt(a) => decrypt(&a),
        ImageCommand::Unpack(a) => unpack(&a),
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
