//! `veil admin`: keys and tokens for the broker's admin API, and a client
//! for it.

use std::path::PathBuf;
use std::process::ExitCode;

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;

use crate::EXIT_ERROR;

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create an Ed25519 admin key pair: `admin.key` (private, PKCS#8 PEM,
    /// mode 0600) and `admin.pub` (give this one to the broker: --admin-key).
    Keygen {
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
    /// Print a signed admin token (JWT).
    Token(TokenArgs),
    /// Store a secret resource.
    SetResource {
        #[command(flatten)]
        conn: Conn,
        /// repo/type/tag
        path: String,
        /// Read the value from this file.
        #[arg(long, conflicts_with = "value")]
        file: Option<PathBuf>,
        /// The value as a string.
        #[arg(long)]
        value: Option<String>,
    },
    /// Delete a resource.
    DeleteResource {
        #[command(flatten)]
        conn: Conn,
        path: String,
    },
    /// Set the resource policy or an attestation policy (Rego file).
    SetPolicy {
        #[command(flatten)]
        conn: Conn,
        #[arg(long, value_enum)]
        kind: PolicyKind,
        /// Attestation policy id.
        #[arg(long, default_value = "default_cpu")]
        id: String,
        file: PathBuf,
    },
    /// Register a reference value.
    SetReferenceValue {
        #[command(flatten)]
        conn: Conn,
        #[arg(long)]
        name: String,
        /// string, hex, integer or tcb (values as JSON objects)
        #[arg(long = "type", default_value = "string")]
        kind: String,
        /// A value; repeatable. For integer and tcb, JSON.
        #[arg(long = "value", required = true)]
        values: Vec<String>,
        /// Expiry (Unix seconds).
        #[arg(long)]
        expires: Option<i64>,
    },
    /// List resources (paths only), reference values, or policies.
    List {
        #[command(flatten)]
        conn: Conn,
        #[arg(value_enum)]
        what: ListKind,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PolicyKind {
    Resource,
    Attestation,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ListKind {
    Resources,
    ReferenceValues,
    AttestationPolicies,
    ResourcePolicy,
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The private key from `veil admin keygen`.
    #[arg(long, env = "VEIL_ADMIN_KEY")]
    pub key: PathBuf,
    #[arg(long, default_value = "admin")]
    pub role: String,
    #[arg(long, default_value = "veil-admin")]
    pub issuer: String,
    #[arg(long, default_value = "veil-broker")]
    pub audience: String,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 300, allow_negative_numbers = true)]
    pub ttl: i64,
}

#[derive(Debug, Args)]
pub struct Conn {
    /// The broker's base URL.
    #[arg(long, env = "VEIL_BROKER_URL")]
    pub url: String,
    /// The admin private key (tokens are minted per call).
    #[arg(long, env = "VEIL_ADMIN_KEY")]
    pub key: Option<PathBuf>,
    /// Extra trusted CA certificate (PEM) for the broker's TLS.
    #[arg(long)]
    pub ca: Option<PathBuf>,
}

/// Mints a JWT signed with an Ed25519 PKCS#8 PEM key.
pub fn mint(a: &TokenArgs) -> Result<String, String> {
    let pem = std::fs::read(&a.key).map_err(|e| format!("{}: {e}", a.key.display()))?;
    let (_, der) = der::pem::decode_vec(&pem).map_err(|e| format!("{}: {e}", a.key.display()))?;
    let key =
        Ed25519KeyPair::from_pkcs8(&der).map_err(|_| "not an Ed25519 PKCS#8 key".to_string())?;
    let now = veil_verifier::UnixTime::now().0;
    let header = json!({"alg":"EdDSA","typ":"JWT"});
    let claims = json!({"iss": a.issuer, "aud": [a.audience], "role": a.role, "iat": now, "exp": now + a.ttl});
    let input = format!(
        "{}.{}",
        B64URL.encode(header.to_string()),
        B64URL.encode(claims.to_string())
    );
    let sig = key.sign(input.as_bytes());
    Ok(format!("{input}.{}", B64URL.encode(sig.as_ref())))
}

pub fn keygen(out: &PathBuf) -> Result<(), String> {
    let kp = Ed25519KeyPair::generate().map_err(|_| "key generation failed".to_string())?;
    let pkcs8 = kp.to_pkcs8().map_err(|_| "key export failed".to_string())?;
    let mut spki = hex::decode("302a300506032b6570032100").map_err(|e| e.to_string())?;
    spki.extend_from_slice(kp.public_key().as_ref());
    std::fs::create_dir_all(out).map_err(|e| e.to_string())?;
    let key_path = out.join("admin.key");
    let pub_path = out.join("admin.pub");
    write_private(
        &key_path,
        veil_endorsements::certs::to_pem("PRIVATE KEY", pkcs8.as_ref()).as_bytes(),
    )
    .map_err(|e| format!("{}: {e}", key_path.display()))?;
    std::fs::write(
        &pub_path,
        veil_endorsements::certs::to_pem("PUBLIC KEY", &spki),
    )
    .map_err(|e| format!("{}: {e}", pub_path.display()))?;
    eprintln!(
        "wrote {} (private, keep it safe) and {} (for the broker's --admin-key)",
        key_path.display(),
        pub_path.display()
    );
    Ok(())
}

fn write_private(path: &std::path::Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    opts.mode(0o600);
    opts.open(path)?.write_all(data)
}

struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    fn new(c: &Conn) -> Result<Self, String> {
        let mut b = reqwest::Client::builder();
        if let Some(ca) = &c.ca {
            let pem = std::fs::read(ca).map_err(|e| format!("{}: {e}", ca.display()))?;
            let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| e.to_string())?;
            b = b.add_root_certificate(cert);
        }
        let token = match &c.key {
            Some(k) => Some(mint(&TokenArgs {
                key: k.clone(),
                role: "admin".into(),
                issuer: "veil-admin".into(),
                audience: "veil-broker".into(),
                ttl: 120,
            })?),
            None => None,
        };
        Ok(Client {
            http: b.build().map_err(|e| e.to_string())?,
            base: c.url.trim_end_matches('/').to_string(),
            token,
        })
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<reqwest::Body>,
        json_body: bool,
    ) -> Result<String, String> {
        let mut req = self
            .http
            .request(method, format!("{}/kbs/v0/{path}", self.base));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.body(b);
            req = req.header(
                reqwest::header::CONTENT_TYPE,
                if json_body {
                    "application/json"
                } else {
                    "application/octet-stream"
                },
            );
        }
        let resp = req.send().await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| e.to_string())?;
        if status.is_success() {
            Ok(text)
        } else {
            Err(format!("HTTP {status}: {text}"))
        }
    }
}

pub async fn run(cmd: AdminCommand) -> ExitCode {
    match admin(cmd).await {
        Ok(out) => {
            if !out.is_empty() {
                println!("{out}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

async fn admin(cmd: AdminCommand) -> Result<String, String> {
    use reqwest::Method;
    match cmd {
        AdminCommand::Keygen { out } => {
            keygen(&out)?;
            eprintln!(
                "wrote {} (private, keep it safe) and {} (for the broker's --admin-key)",
                out.join("admin.key").display(),
                out.join("admin.pub").display()
            );
            Ok(String::new())
        }
        AdminCommand::Token(a) => mint(&a),
        AdminCommand::SetResource {
            conn,
            path,
            file,
            value,
        } => {
            let bytes = match (file, value) {
                (Some(f), None) => {
                    std::fs::read(&f).map_err(|e| format!("{}: {e}", f.display()))?
                }
                (None, Some(v)) => v.into_bytes(),
                _ => return Err("give --file or --value".into()),
            };
            Client::new(&conn)?
                .send(
                    Method::POST,
                    &format!("resource/{path}"),
                    Some(bytes.into()),
                    false,
                )
                .await
        }
        AdminCommand::DeleteResource { conn, path } => {
            Client::new(&conn)?
                .send(Method::DELETE, &format!("resource/{path}"), None, false)
                .await
        }
        AdminCommand::SetPolicy {
            conn,
            kind,
            id,
            file,
        } => {
            let text = std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            let policy = B64URL.encode(text);
            let (path, body) = match kind {
                PolicyKind::Resource => ("resource-policy", json!({"policy": policy})),
                PolicyKind::Attestation => (
                    "attestation-policy",
                    json!({"type":"rego","policy_id": id, "policy": policy}),
                ),
            };
            Client::new(&conn)?
                .send(Method::POST, path, Some(body.to_string().into()), true)
                .await
        }
        AdminCommand::SetReferenceValue {
            conn,
            name,
            kind,
            values,
            expires,
        } => {
            let values: Vec<serde_json::Value> = values
                .iter()
                .map(|v| match kind.as_str() {
                    "integer" | "tcb" => serde_json::from_str(v).map_err(|e| format!("{v}: {e}")),
                    _ => Ok(serde_json::Value::String(v.clone())),
                })
                .collect::<Result<_, _>>()?;
            let mut body = json!({"name": name, "type": kind, "values": values});
            if let Some(e) = expires {
                body["expires"] = json!(e);
            }
            Client::new(&conn)?
                .send(
                    Method::POST,
                    "reference-value",
                    Some(body.to_string().into()),
                    true,
                )
                .await
        }
        AdminCommand::List { conn, what } => {
            let path = match what {
                ListKind::Resources => "admin/resources",
                ListKind::ReferenceValues => "reference-value",
                ListKind::AttestationPolicies => "attestation-policy",
                ListKind::ResourcePolicy => "resource-policy",
            };
            Client::new(&conn)?
                .send(Method::GET, path, None, false)
                .await
        }
    }
}
