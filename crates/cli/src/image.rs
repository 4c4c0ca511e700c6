//! `veil image encrypt|decrypt`: the build side of encrypted images, on OCI
//! image-layout directories, with skopeo's key syntax.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use veil_image::ImageError;
use veil_image::keyprovider::WrapSpec;
use veil_image::oci::{KeyCache, ProviderRecipient, decrypt_layout, encrypt_layout};

use crate::EXIT_ERROR;

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Encrypt every layer of an OCI layout (IN) into a new layout (OUT).
    Encrypt(EncryptArgs),
    /// Decrypt every encrypted layer of an OCI layout (IN) into OUT.
    Decrypt(DecryptArgs),
}

#[derive(Debug, Args)]
pub struct EncryptArgs {
    /// `provider:NAME:keypath=KEK_FILE::keyid=kbs:///REPO/TYPE/TAG`: the
    /// layer keys are wrapped under the 32-byte KEK that the broker holds
    /// as the resource `keyid`.
    #[arg(long)]
    pub encryption_key: String,
    pub input: PathBuf,
    pub output: PathBuf,
}

#[derive(Debug, Args)]
pub struct DecryptArgs {
    /// `provider:NAME` (the KEKs come from the Veil agent, after
    /// attestation) or `provider:NAME:keypath=KEK_FILE` (offline).
    #[arg(long)]
    pub decryption_key: String,
    /// The Veil agent's workload API.
    #[arg(long, env = "VEIL_AGENT_URL", default_value = "http://127.0.0.1:8006")]
    pub agent: String,
    pub input: PathBuf,
    pub output: PathBuf,
}

/// `provider:NAME[:PARAMS]` → (NAME, PARAMS).
fn provider_key(s: &str) -> Result<(&str, Option<&str>), String> {
    let rest = s.strip_prefix("provider:").ok_or_else(|| {
        format!("{s:?}: only key-provider keys (provider:NAME:…) are supported so far; JWE, PKCS7 and PGP recipients are not")
    })?;
    Ok(match rest.split_once(':') {
        Some((name, params)) => (name, Some(params)),
        None => (rest, None),
    })
}

fn read_kek(path: &Path) -> Result<Vec<u8>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if bytes.len() == 32 {
        return Ok(bytes);
    }
    std::str::from_utf8(&bytes)
        .ok()
        .and_then(|t| hex::decode(t.trim()).ok())
        .filter(|k| k.len() == 32)
        .ok_or_else(|| {
            format!(
                "{}: not a 32-byte key (raw, or 64 hex digits)",
                path.display()
            )
        })
}

fn encrypt(a: &EncryptArgs) -> Result<String, String> {
    let (name, params) = provider_key(&a.encryption_key)?;
    let spec = WrapSpec::parse(params.ok_or("provider key without keypath=…::keyid=…")?)
        .map_err(|e| e.to_string())?;
    let kek: [u8; 32] = read_kek(Path::new(&spec.keypath))?
        .try_into()
        .map_err(|_| "KEK must be 32 bytes".to_string())?;
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

fn decrypt(a: &DecryptArgs) -> Result<String, String> {
    let (_, params) = provider_key(&a.decryption_key)?;
    let n = match params {
        Some(p) => {
            let path = p
                .strip_prefix("keypath=")
                .ok_or("expected provider:NAME:keypath=KEK_FILE")?;
            let kek = read_kek(Path::new(path))?;
            let mut keys = KeyCache::new(move |_kid: &str| Ok(kek.clone()));
            decrypt_layout(&a.input, &a.output, &mut keys).map_err(|e| e.to_string())?
        }
        None => {
            let agent = a.agent.trim_end_matches('/').to_string();
            let handle = tokio::runtime::Handle::current();
            let mut keys = KeyCache::new(move |kid: &str| {
                let path = veil_image::packet::resource_path(kid)?;
                let url = format!("{agent}/cdh/resource/{path}");
                handle.block_on(async {
                    let r = reqwest::get(&url)
                        .await
                        .map_err(|e| ImageError::Io(format!("agent at {agent}: {e}")))?;
                    let status = r.status();
                    let body = r
                        .bytes()
                        .await
                        .map_err(|e| ImageError::Io(format!("agent: {e}")))?;
                    if !status.is_success() {
                        return Err(ImageError::Io(format!(
                            "the agent could not get the key {kid}: {status}"
                        )));
                    }
                    Ok(body.to_vec())
                })
            });
            tokio::task::block_in_place(|| decrypt_layout(&a.input, &a.output, &mut keys))
                .map_err(|e| e.to_string())?
        }
    };
    Ok(format!(
        "decrypted {n} layer(s) into {}",
        a.output.display()
    ))
}

pub async fn run(cmd: ImageCommand) -> ExitCode {
    let r = match cmd {
        ImageCommand::Encrypt(a) => encrypt(&a),
        ImageCommand::Decrypt(a) => decrypt(&a),
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
