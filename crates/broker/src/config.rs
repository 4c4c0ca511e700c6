//! Broker configuration: defaults → TOML file → `VEIL_*` environment
//! (nested keys with `__`, e.g. `VEIL_ADMIN__AUDIENCE`) → command-line flags.
//! Validated at start; every problem is reported with the key at fault.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Directory of the embedded store (and the default key-encryption key).
    pub data_dir: PathBuf,
    /// Empty: the embedded store under `data_dir`. `postgres://…`: the
    /// PostgreSQL store shared by every replica (see [`DatabaseConfig`]).
    pub database_url: String,
    /// PostgreSQL pool and migration settings.
    pub database: DatabaseConfig,
    /// Memory the embedded store may use to cache its file's pages, in
    /// MiB (default 256). Under steady handshake load the cache fills with
    /// sessions; the pages read again are the newest sessions and the
    /// policies.
    pub embedded_cache_mb: u64,
    /// File holding the 32-byte key-encryption key (hex). When empty, the
    /// `VEIL_KEK` environment variable (hex) is used, else a key file
    /// `kek.hex` is created in `data_dir` (mode 0600) on first start.
    pub kek_file: Option<PathBuf>,
    /// TLS certificate chain (PEM).
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// Serve plain HTTP (no TLS). For development behind a TLS terminator only.
    pub insecure_http: bool,
    /// Largest accepted request body, in bytes (larger: 413).
    pub body_limit_bytes: usize,
    /// How long a challenge (session) stays valid, in seconds.
    pub session_ttl_secs: u64,
    /// Lifetime of attestation tokens, in seconds.
    pub token_ttl_secs: u64,
    /// Also emit the older dotted EAR claim names (`ear.status`, …) for CoCo
    /// clients that read them.
    pub token_dotted_claims: bool,
    /// DANGEROUS: accept CoCo `sample` evidence (no signature at all). Its
    /// claims are marked `sample` and the default resource policy denies them.
    pub dangerous_accept_sample_evidence: bool,
    /// DANGEROUS: trust Veil's simulated SNP root from this ARK file.
    pub dangerous_trust_simulated_tee: Option<PathBuf>,
    /// DANGEROUS: trust Veil's simulated Intel root from this file (TDX).
    pub dangerous_trust_simulated_tdx: Option<PathBuf>,
    /// DANGEROUS: trust Veil's simulated NVIDIA GPU root (DER or PEM) next
    /// to NVIDIA's.
    pub dangerous_trust_simulated_gpu: Option<PathBuf>,
    /// DANGEROUS: serve the admin API without authentication.
    pub dangerous_allow_unauthenticated_admin: bool,
    /// Endorsements (AMD KDS) settings.
    pub endorsements: EndorsementsConfig,
    /// Admin API authentication.
    pub admin: AdminConfig,
}

/// PostgreSQL settings (used when `database_url` is set).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// Most connections this replica opens.
    pub max_connections: u32,
    /// Upper bound of every database operation, including waiting for a
    /// pooled connection, in milliseconds. While the database is down,
    /// requests fail after this long with 503.
    pub timeout_ms: u64,
    /// How long to wait at start for the database to answer, in seconds.
    pub startup_wait_secs: u64,
    /// Apply the embedded schema migrations at start (safe with several
    /// replicas: they take an advisory lock). `false`: run
    /// `veil broker migrate` separately; the broker then only checks the
    /// schema version.
    pub migrate: bool,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            max_connections: 16,
            timeout_ms: 5000,
            startup_wait_secs: 30,
            migrate: true,
        }
    }
}

/// Where the verifiers get certificates that evidence does not carry.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EndorsementsConfig {
    pub kds_url: String,
    pub cache_dir: Option<PathBuf>,
    /// Never contact AMD KDS.
    pub offline: bool,
    /// Offline bundles to load at start.
    pub bundles: Vec<PathBuf>,
    /// Intel DCAP collateral files (PCCS JSON shape) for TDX/SGX quotes.
    pub dcap_collateral: Vec<PathBuf>,
    /// Intel PCS or PCCS base URL: collateral that no file provides is
    /// fetched from it (cached under `cache_dir`). Unset: files only.
    pub pcs_url: Option<String>,
    /// TPM attestation-key certificate roots and intermediates (DER or
    /// PEM files; self-signed ones are roots), e.g. Google's EK/AK CAs.
    pub tpm_ak_certs: Vec<PathBuf>,
    /// TPM attestation keys trusted without a certificate (SPKI, DER or
    /// PEM files). With neither, `tpm` evidence is refused.
    pub tpm_trusted_aks: Vec<PathBuf>,
    /// Arm CCA platform attestation keys (CPAKs): EC P-384 JWK files, or
    /// trust-anchor stores (a JSON array of `{"pkey": JWK,
    /// "implementation-id": hex, "instance-id": hex}`). With none, `cca`
    /// evidence is refused.
    pub cca_cpaks: Vec<PathBuf>,
    /// NVIDIA's OCSP responder (e.g. `https://ocsp.ndis.nvidia.com/`):
    /// when set, every GPU certificate is checked; a revoked one rejects
    /// the GPU, an unreachable responder is reported in the claims
    /// (`ocsp.status = "unavailable"`) for policy to decide.
    pub nvidia_ocsp_url: Option<String>,
    /// NVIDIA reference integrity manifests (SWID XML, e.g. the driver's and
    /// the VBIOS's from NVIDIA's RIM service): GPU measurements are
    /// compared with them (`rim` claim; the default policy requires a
    /// match when any are configured).
    pub nvidia_rims: Vec<PathBuf>,
}

impl Default for EndorsementsConfig {
    fn default() -> Self {
        EndorsementsConfig {
            kds_url: veil_endorsements::kds::DEFAULT_BASE_URL.into(),
            cache_dir: None,
            offline: false,
            bundles: Vec::new(),
            dcap_collateral: Vec::new(),
            pcs_url: None,
            tpm_ak_certs: Vec::new(),
            tpm_trusted_aks: Vec::new(),
            cca_cpaks: Vec::new(),
            nvidia_ocsp_url: None,
            nvidia_rims: Vec::new(),
        }
    }
}

/// Admin API: Bearer JWTs signed by one of `keys` (EdDSA or ES256 public
/// keys, PEM), with `iss` = `issuer`, `aud` containing `audience`, a valid
/// `exp`, and a `role` that `roles` maps to allowed endpoint groups
/// (`resource`, `resource-policy`, `attestation-policy`, `reference-value`,
/// `list`, or `*`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    pub keys: Vec<PathBuf>,
    pub issuer: String,
    pub audience: String,
    pub roles: BTreeMap<String, Vec<String>>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        let mut roles = BTreeMap::new();
        roles.insert("admin".to_string(), vec!["*".to_string()]);
        AdminConfig {
            keys: Vec::new(),
            issuer: "veil-admin".into(),
            audience: "veil-broker".into(),
            roles,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("/var/lib/veil"),
            database_url: String::new(),
            database: DatabaseConfig::default(),
            embedded_cache_mb: crate::store::embedded::DEFAULT_CACHE_MB,
            kek_file: None,
            tls_cert: None,
            tls_key: None,
            insecure_http: false,
            body_limit_bytes: 4 * 1024 * 1024,
            session_ttl_secs: 300,
            token_ttl_secs: 300,
            token_dotted_claims: false,
            dangerous_accept_sample_evidence: false,
            dangerous_trust_simulated_tee: None,
            dangerous_trust_simulated_tdx: None,
            dangerous_trust_simulated_gpu: None,
            dangerous_allow_unauthenticated_admin: false,
            endorsements: EndorsementsConfig::default(),
            admin: AdminConfig::default(),
        }
    }
}

/// Endpoint groups the admin ACL speaks of.
pub const ADMIN_GROUPS: [&str; 5] = [
    "resource",
    "resource-policy",
    "attestation-policy",
    "reference-value",
    "list",
];

impl Config {
    /// Loads defaults, then the file (if any), then `VEIL_*` variables.
    pub fn load(file: Option<&std::path::Path>) -> Result<Self, String> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(f) = file {
            if !f.is_file() {
                return Err(format!("config file {} not found", f.display()));
            }
            fig = fig.merge(Toml::file(f));
        }
        // Variables that belong to other commands (or to the process, such
        // as logging) are not configuration keys of the broker.
        fig = fig.merge(Env::prefixed("VEIL_").split("__").ignore(&[
            "log",
            "log_format",
            "admin_key",
            "broker_url",
            "pcs_url",
            "kek",
            "state_dir",
            "kds_url",
            "cache_dir",
            "vectors",
            "bench_secs",
            "fuzz_secs",
        ]));
        fig.extract::<Config>().map_err(|e| {
            e.into_iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        })
    }

    /// Checks the configuration as a whole.
    pub fn validate(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        if !self.database_url.is_empty() {
            if !(self.database_url.starts_with("postgres://")
                || self.database_url.starts_with("postgresql://"))
            {
                problems.push(format!(
                    "database_url: {:?} is not a PostgreSQL URL (postgres://user@host:port/database); leave it empty for the embedded store",
                    redact_url(&self.database_url)
                ));
            }
            if self.kek_file.is_none() && std::env::var_os("VEIL_KEK").is_none() {
                problems.push("database_url is set but no shared key-encryption key is configured: every replica must use the same KEK (kek_file or VEIL_KEK), or secrets sealed by one replica will not open on another".into());
            }
            if self.database.max_connections == 0 {
                problems.push("database.max_connections must be at least 1".into());
            }
            if self.database.timeout_ms == 0 {
                problems.push("database.timeout_ms must be at least 1".into());
            }
        }
        match (&self.tls_cert, &self.tls_key, self.insecure_http) {
            (Some(_), Some(_), false) => {}
            (None, None, true) => {}
            (Some(_), Some(_), true) => {
                problems.push("insecure_http = true and a TLS certificate are both set: choose one".into())
            }
            (None, None, false) => problems.push(
                "no TLS certificate (tls_cert, tls_key) and insecure_http is false: configure TLS, or set insecure_http = true for plain HTTP behind a TLS terminator".into(),
            ),
            _ => problems.push("tls_cert and tls_key must be set together".into()),
        }
        for (key, path) in [
            ("tls_cert", &self.tls_cert),
            ("tls_key", &self.tls_key),
            ("kek_file", &self.kek_file),
            (
                "dangerous_trust_simulated_tee",
                &self.dangerous_trust_simulated_tee,
            ),
            (
                "dangerous_trust_simulated_tdx",
                &self.dangerous_trust_simulated_tdx,
            ),
            (
                "dangerous_trust_simulated_gpu",
                &self.dangerous_trust_simulated_gpu,
            ),
        ] {
            if let Some(p) = path
                && !p.is_file()
            {
                problems.push(format!("{key}: {} is not a readable file", p.display()));
            }
        }
        if self.admin.keys.is_empty() && !self.dangerous_allow_unauthenticated_admin {
            problems.push("admin.keys is empty: the admin API would have no authentication. Configure admin.keys (public keys of admin token signers), or set dangerous_allow_unauthenticated_admin = true".into());
        }
        for p in &self.admin.keys {
            if !p.is_file() {
                problems.push(format!(
                    "admin.keys: {} is not a readable file",
                    p.display()
                ));
            }
        }
        for (role, groups) in &self.admin.roles {
            for g in groups {
                if g != "*" && !ADMIN_GROUPS.contains(&g.as_str()) {
                    problems.push(format!(
                        "admin.roles.{role}: unknown endpoint group {g:?} (known: *, {})",
                        ADMIN_GROUPS.join(", ")
                    ));
                }
            }
        }
        if self.session_ttl_secs == 0 || self.session_ttl_secs > 3600 {
            problems.push("session_ttl_secs must be between 1 and 3600".into());
        }
        if self.token_ttl_secs == 0 || self.token_ttl_secs > 86_400 {
            problems.push("token_ttl_secs must be between 1 and 86400".into());
        }
        if self.embedded_cache_mb == 0 || self.embedded_cache_mb > 1 << 20 {
            problems.push("embedded_cache_mb must be between 1 and 1048576 (MiB)".into());
        }
        if self.body_limit_bytes < 1024 {
            problems.push("body_limit_bytes must be at least 1024".into());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("\n  "))
        }
    }
}

/// A URL with its credentials replaced, for messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!(
            "{}://***@{}",
            url.get(..s).unwrap_or(""),
            url.get(at.saturating_add(1)..).unwrap_or("")
        ),
        _ => url.to_string(),
    }
}

impl Config {
    /// The PostgreSQL settings as the store takes them.
    pub fn pg_settings(&self) -> crate::store::postgres::PgSettings {
        crate::store::postgres::PgSettings {
            max_connections: self.database.max_connections,
            timeout: std::time::Duration::from_millis(self.database.timeout_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_refuse_to_start_open() {
        let c = Config::default();
        let err = c.validate().unwrap_err();
        assert!(err.contains("TLS"), "{err}");
        assert!(err.contains("admin.keys"), "{err}");
    }

    #[test]
    fn file_and_env_layers() {
        let dir = std::env::temp_dir().join(format!("veil-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("broker.toml");
        std::fs::write(
            &f,
            "listen = \"127.0.0.1:9999\"\ninsecure_http = true\n[admin]\naudience = \"x\"\n",
        )
        .unwrap();
        let c = Config::load(Some(&f)).unwrap();
        assert_eq!(c.listen.port(), 9999);
        assert!(c.insecure_http);
        assert_eq!(c.admin.audience, "x");
        std::fs::write(&f, "lisen = 1\n").unwrap();
        assert!(Config::load(Some(&f)).unwrap_err().contains("lisen"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn embedded_cache_is_bounded() {
        let base = Config {
            insecure_http: true,
            dangerous_allow_unauthenticated_admin: true,
            ..Config::default()
        };
        assert_eq!(base.embedded_cache_mb, 256);
        assert!(base.validate().is_ok());
        for bad in [0, (1 << 20) + 1] {
            let c = Config {
                embedded_cache_mb: bad,
                ..base.clone()
            };
            let err = c.validate().unwrap_err();
            assert!(err.contains("embedded_cache_mb"), "{bad}: {err}");
        }
        let small = Config {
            embedded_cache_mb: 16,
            ..base
        };
        assert!(small.validate().is_ok());
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact_url("postgres://u:secret@h/db"),
            "postgres://***@h/db"
        );
    }
}
