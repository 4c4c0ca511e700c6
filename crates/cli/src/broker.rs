//! `veil broker serve`: the key broker.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use veil_broker::config::Config;

use crate::EXIT_ERROR;

#[derive(Debug, Subcommand)]
pub enum BrokerCommand {
    /// Serve the KBS protocol (and the admin API) until SIGTERM or ctrl-c.
    Serve(Box<ServeArgs>),
    /// Apply the PostgreSQL schema migrations (for operators who run them
    /// separately and start replicas with database.migrate = false).
    Migrate(StoreArgs),
    /// Write every durable record (resources still sealed, policies,
    /// reference values, the sealed token key) as JSON lines.
    Export(ExportArgs),
    /// Read an export into this broker's store. Checks everything (format,
    /// every sealed record opens under this KEK, conflicts) before writing.
    Import(ImportArgs),
}

/// Which store: the configuration file, then these flags.
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// TOML configuration file (as for `serve`).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Directory of the embedded store.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// PostgreSQL URL (empty: the embedded store).
    #[arg(long)]
    pub database_url: Option<String>,
    /// File holding the key-encryption key (hex).
    #[arg(long)]
    pub kek_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Output file (`-`: standard output).
    #[arg(long, default_value = "-")]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Input file (`-`: standard input).
    #[arg(long = "in", default_value = "-")]
    pub input: PathBuf,
    /// Replace records that exist with other values.
    #[arg(long)]
    pub overwrite: bool,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML configuration file; every key can also be set as VEIL_<KEY>
    /// (nested keys with `__`, e.g. VEIL_ADMIN__AUDIENCE).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Address to listen on (port 0 picks a free port; the bound address is printed).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Directory of the embedded store.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Database URL (empty: the embedded store).
    #[arg(long)]
    pub database_url: Option<String>,
    /// File holding the key-encryption key (hex); replicas sharing a
    /// database must share it.
    #[arg(long)]
    pub kek_file: Option<PathBuf>,
    /// TLS certificate chain (PEM).
    #[arg(long)]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long)]
    pub tls_key: Option<PathBuf>,
    /// Serve plain HTTP (development, or behind a TLS terminator).
    #[arg(long)]
    pub insecure_http: bool,
    /// Public key (PEM, Ed25519 or P-256) trusted to sign admin tokens; repeatable.
    #[arg(long = "admin-key")]
    pub admin_keys: Vec<PathBuf>,
    /// DANGEROUS: accept unsigned CoCo `sample` evidence.
    #[arg(long)]
    pub dangerous_accept_sample_evidence: bool,
    /// DANGEROUS: trust Veil's simulated SNP root (the ARK file from `veil sim snp`).
    #[arg(long, value_name = "ARK_FILE")]
    pub dangerous_trust_simulated_tee: Option<PathBuf>,
    /// DANGEROUS: trust Veil's simulated Intel root (the root file from `veil sim tdx`).
    #[arg(long, value_name = "ROOT_FILE")]
    pub dangerous_trust_simulated_tdx: Option<PathBuf>,
    /// DANGEROUS: trust Veil's simulated NVIDIA GPU root (the root file from `veil sim gpu`).
    #[arg(long, value_name = "ROOT_FILE")]
    pub dangerous_trust_simulated_gpu: Option<PathBuf>,
    /// Arm CCA platform attestation keys (JWK or trust-anchor store files); repeatable.
    #[arg(long = "cca-cpak")]
    pub cca_cpaks: Vec<PathBuf>,
    /// NVIDIA's OCSP responder URL: check every GPU certificate.
    #[arg(long)]
    pub nvidia_ocsp_url: Option<String>,
    /// NVIDIA reference integrity manifest (SWID XML); repeatable.
    #[arg(long = "nvidia-rim")]
    pub nvidia_rims: Vec<PathBuf>,
    /// DANGEROUS: serve the admin API without authentication.
    #[arg(long)]
    pub dangerous_allow_unauthenticated_admin: bool,
    /// Intel DCAP collateral (PCCS JSON) for TDX/SGX quotes; repeatable.
    #[arg(long = "dcap-collateral")]
    pub dcap_collateral: Vec<PathBuf>,
    /// Intel PCS or PCCS base URL for DCAP collateral that no file provides.
    #[arg(long)]
    pub pcs_url: Option<String>,
    /// Directory for cached endorsements (AMD KDS, Intel PCS).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
}

fn apply(a: &ServeArgs, cfg: &mut Config) {
    if let Some(v) = a.listen {
        cfg.listen = v;
    }
    if let Some(v) = &a.data_dir {
        cfg.data_dir = v.clone();
    }
    if let Some(v) = &a.database_url {
        cfg.database_url = v.clone();
    }
    if a.kek_file.is_some() {
        cfg.kek_file = a.kek_file.clone();
    }
    if a.tls_cert.is_some() {
        cfg.tls_cert = a.tls_cert.clone();
    }
    if a.tls_key.is_some() {
        cfg.tls_key = a.tls_key.clone();
    }
    cfg.insecure_http |= a.insecure_http;
    cfg.admin.keys.extend(a.admin_keys.iter().cloned());
    cfg.dangerous_accept_sample_evidence |= a.dangerous_accept_sample_evidence;
    if a.dangerous_trust_simulated_tee.is_some() {
        cfg.dangerous_trust_simulated_tee = a.dangerous_trust_simulated_tee.clone();
    }
    cfg.dangerous_allow_unauthenticated_admin |= a.dangerous_allow_unauthenticated_admin;
    if a.dangerous_trust_simulated_tdx.is_some() {
        cfg.dangerous_trust_simulated_tdx = a.dangerous_trust_simulated_tdx.clone();
    }
    if a.dangerous_trust_simulated_gpu.is_some() {
        cfg.dangerous_trust_simulated_gpu = a.dangerous_trust_simulated_gpu.clone();
    }
    cfg.endorsements
        .cca_cpaks
        .extend(a.cca_cpaks.iter().cloned());
    if a.nvidia_ocsp_url.is_some() {
        cfg.endorsements.nvidia_ocsp_url = a.nvidia_ocsp_url.clone();
    }
    cfg.endorsements
        .nvidia_rims
        .extend(a.nvidia_rims.iter().cloned());
    cfg.endorsements
        .dcap_collateral
        .extend(a.dcap_collateral.iter().cloned());
    if a.pcs_url.is_some() {
        cfg.endorsements.pcs_url = a.pcs_url.clone();
    }
    if a.cache_dir.is_some() {
        cfg.endorsements.cache_dir = a.cache_dir.clone();
    }
}

fn store_config(a: &StoreArgs) -> Result<Config, String> {
    let mut cfg = Config::load(a.config.as_deref()).map_err(|e| format!("configuration: {e}"))?;
    if let Some(v) = &a.data_dir {
        cfg.data_dir = v.clone();
    }
    if let Some(v) = &a.database_url {
        cfg.database_url = v.clone();
    }
    if a.kek_file.is_some() {
        cfg.kek_file = a.kek_file.clone();
    }
    Ok(cfg)
}

async fn migrate(a: &StoreArgs) -> Result<(), String> {
    let cfg = store_config(a)?;
    if cfg.database_url.is_empty() {
        return Err("migrate needs --database-url (or database_url in the configuration): the embedded store needs no migrations".into());
    }
    let pg = veil_broker::open_postgres(&cfg).await?;
    pg.migrate().await.map_err(|e| e.to_string())?;
    eprintln!(
        "migrations applied to {}",
        veil_broker::config::redact_url(&cfg.database_url)
    );
    Ok(())
}

async fn export(a: &ExportArgs) -> Result<(), String> {
    let cfg = store_config(&a.store)?;
    let store = veil_broker::open_store(&cfg).await?;
    let stats = if a.out.as_os_str() == "-" {
        let mut out = std::io::stdout().lock();
        veil_broker::store::transfer::export(store.as_ref(), &mut out).await?
    } else {
        // Written beside the target and renamed: a failed export never
        // leaves a truncated file under the requested name.
        let tmp = a.out.with_extension("partial");
        let mut f = std::io::BufWriter::new(
            std::fs::File::create(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?,
        );
        let s = veil_broker::store::transfer::export(store.as_ref(), &mut f).await?;
        drop(f);
        std::fs::rename(&tmp, &a.out).map_err(|e| format!("{}: {e}", a.out.display()))?;
        s
    };
    eprintln!("exported {} record(s)", stats.written);
    Ok(())
}

async fn import(a: &ImportArgs) -> Result<(), String> {
    let cfg = store_config(&a.store)?;
    let kek = veil_broker::secrets::Kek::load_existing(cfg.kek_file.as_deref(), &cfg.data_dir)?;
    let store = veil_broker::open_store(&cfg).await?;
    let stats = if a.input.as_os_str() == "-" {
        let mut input = std::io::stdin().lock();
        veil_broker::store::transfer::import(store.as_ref(), &kek, &mut input, a.overwrite).await?
    } else {
        let f = std::fs::File::open(&a.input).map_err(|e| format!("{}: {e}", a.input.display()))?;
        let mut input = std::io::BufReader::new(f);
        veil_broker::store::transfer::import(store.as_ref(), &kek, &mut input, a.overwrite).await?
    };
    eprintln!(
        "imported {} record(s), {} already present",
        stats.written, stats.unchanged
    );
    Ok(())
}

pub async fn run(cmd: BrokerCommand) -> ExitCode {
    let r = match cmd {
        BrokerCommand::Serve(a) => return serve(*a).await,
        BrokerCommand::Migrate(a) => migrate(&a).await,
        BrokerCommand::Export(a) => export(&a).await,
        BrokerCommand::Import(a) => import(&a).await,
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

async fn serve(a: ServeArgs) -> ExitCode {
    let mut cfg = match Config::load(a.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: configuration: {e}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    apply(&a, &mut cfg);
    let listen = cfg.listen;
    let broker = match veil_broker::Broker::build(cfg).await {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    let listener = match std::net::TcpListener::bind(listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot listen on {listen}: {e}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    match listener.local_addr() {
        Ok(addr) => println!("veil broker listening on {addr}"),
        Err(e) => eprintln!("warning: {e}"),
    }
    match veil_broker::serve(listener, broker, veil_broker::shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}
