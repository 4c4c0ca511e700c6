//! `veil seal`: sealed secrets in the Confidential Containers format.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use crate::EXIT_ERROR;

#[derive(Debug, Subcommand)]
pub enum SealCommand {
    /// Create a P-256 signing key: `<kid>-private.json` and `<kid>-public.json` (JWK).
    Keygen {
        #[arg(long)]
        kid: String,
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
    /// Seal a pointer to a broker resource (`type: vault`, `provider: kbs`).
    Vault {
        /// kbs:///repo/type/tag
        #[arg(long)]
        resource: String,
        /// The private JWK from `veil seal keygen`.
        #[arg(long)]
        signing_key: PathBuf,
        /// Print a Kubernetes Secret manifest with this name instead.
        #[arg(long)]
        kubernetes_secret: Option<String>,
        /// The key inside the Kubernetes Secret.
        #[arg(long, default_value = "secret")]
        secret_key: String,
    },
    /// Encrypt a file under a 32-byte data key that the broker holds as a
    /// resource (`type: envelope`, `provider: kbs`); the agent fetches the
    /// key after attestation and decrypts.
    Envelope {
        /// The data key's broker resource, kbs:///repo/type/tag.
        #[arg(long)]
        key_id: String,
        /// The data key (32 raw bytes), as stored at the broker.
        #[arg(long)]
        key_file: PathBuf,
        /// The file to seal.
        #[arg(long)]
        file: PathBuf,
        /// The private JWK from `veil seal keygen`.
        #[arg(long)]
        signing_key: PathBuf,
    },
}

pub fn run(cmd: SealCommand) -> ExitCode {
    match seal(cmd) {
        Ok(out) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

fn seal(cmd: SealCommand) -> Result<String, String> {
    match cmd {
        SealCommand::Keygen { kid, out } => {
            let (private, public) = veil_agent::sealed::keygen(&kid)?;
            std::fs::create_dir_all(&out).map_err(|e| e.to_string())?;
            let priv_path = out.join(format!("{kid}-private.json"));
            let pub_path = out.join(format!("{kid}-public.json"));
            std::fs::write(&priv_path, private.to_string())
                .map_err(|e| format!("{}: {e}", priv_path.display()))?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&priv_path, std::fs::Permissions::from_mode(0o600))
                    .map_err(|e| e.to_string())?;
            }
            std::fs::write(&pub_path, public.to_string())
                .map_err(|e| format!("{}: {e}", pub_path.display()))?;
            Ok(format!("{}\n{}", priv_path.display(), pub_path.display()))
        }
        SealCommand::Envelope {
            key_id,
            key_file,
            file,
            signing_key,
        } => {
            let jwk: serde_json::Value = std::fs::read(&signing_key)
                .map_err(|e| format!("{}: {e}", signing_key.display()))
                .and_then(|b| {
                    serde_json::from_slice(&b)
                        .map_err(|e| format!("{}: {e}", signing_key.display()))
                })?;
            let dek =
                std::fs::read(&key_file).map_err(|e| format!("{}: {e}", key_file.display()))?;
            let data = std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            veil_agent::sealed::seal_envelope(&key_id, &dek, &data, &jwk)
        }
        SealCommand::Vault {
            resource,
            signing_key,
            kubernetes_secret,
            secret_key,
        } => {
            let jwk: serde_json::Value = std::fs::read(&signing_key)
                .map_err(|e| format!("{}: {e}", signing_key.display()))
                .and_then(|b| {
                    serde_json::from_slice(&b)
                        .map_err(|e| format!("{}: {e}", signing_key.display()))
                })?;
            let sealed = veil_agent::sealed::seal_vault(&resource, &jwk)?;
            Ok(match kubernetes_secret {
                None => sealed,
                Some(name) => format!(
                    "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\ntype: Opaque\nstringData:\n  {secret_key}: {sealed}\n"
                ),
            })
        }
    }
}
