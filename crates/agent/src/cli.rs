//! The agent's command line, shared by `veil agent …` and the `veil-agent`
//! executable: `run` (attest and serve the workload API) and `tpm-ak`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use crate::Agent;
use crate::initdata::InitDataDoc;
use crate::kbs::{KbsConfig, TokenCache};
use crate::sealed::{TrustedKeys, jwk_point};
use clap::{Args, Subcommand, ValueEnum};
use veil_attester::Attester;
use veil_attester::sim::SimSnpAttester;
use veil_attester::tsm::TsmAttester;
use veil_evidence::snp::Product;
use veil_protocol::jwe::KeyAlgorithm;
use veil_sim::snp::{ReportParams, SimSnp};

/// Exit status for unusable input or a failure, of both executables.
pub const EXIT_ERROR: u8 = 2;

/// Prints `error: …` and returns [`EXIT_ERROR`].
pub fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(EXIT_ERROR)
}

/// Logs to stderr: human-readable by default, one JSON object per line with
/// `VEIL_LOG_FORMAT=json`; the level from `VEIL_LOG` (default `warn`).
/// Both executables start with it.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("VEIL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    if std::env::var("VEIL_LOG_FORMAT").is_ok_and(|v| v == "json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Resolves on SIGTERM or ctrl-c.
async fn stop_signal() {
    let interrupted = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = interrupted => {},
                    _ = term.recv() => {},
                }
            }
            Err(_) => {
                let _ = interrupted.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupted.await;
    }
    tracing::info!("agent shutting down");
}

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Attest to a broker and serve the workload API.
    Run(Box<RunArgs>),
    /// Print the TPM's attestation key (PEM), to register with a broker.
    TpmAk(TpmAkArgs),
}

#[derive(Debug, Args)]
pub struct TpmAkArgs {
    /// A TPM device (`/dev/tpmrm0`) or `tcp:HOST:PORT`.
    #[arg(long, default_value = "/dev/tpmrm0")]
    pub tpm: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TeeChoice {
    /// Detect through configfs-tsm.
    Auto,
    /// configfs-tsm, requiring an SNP guest.
    Snp,
    /// Veil's simulated SNP TEE (the broker must trust it by name).
    SimSnp,
    /// Veil's simulated TDX TEE (the broker must trust it by name).
    SimTdx,
    /// A TPM 2.0 (`--tpm`): quotes over the SHA-256 PCRs; the broker must
    /// trust its attestation key (`veil agent tpm-ak` prints it).
    Tpm,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KeyChoice {
    EcP256,
    EcP521,
    Rsa,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The broker's base URL.
    #[arg(long, env = "VEIL_BROKER_URL")]
    pub broker: String,
    #[arg(long, value_enum, default_value = "auto")]
    pub tee: TeeChoice,
    /// Workload API address (loopback peers only).
    #[arg(long, default_value = "127.0.0.1:8006")]
    pub listen: SocketAddr,
    /// Init-data TOML; its digest must equal what the TEE measured at launch.
    #[arg(long)]
    pub init_data: Option<PathBuf>,
    /// TEE key for the broker's JWE.
    #[arg(long, value_enum, default_value = "ec-p256")]
    pub key: KeyChoice,
    /// Extra CA (PEM) for the broker's TLS.
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// configfs-tsm report root.
    #[arg(long, default_value = veil_attester::tsm::DEFAULT_ROOT)]
    pub tsm_root: PathBuf,
    /// The TPM for `--tee tpm`: a device (`/dev/tpmrm0`) or
    /// `tcp:HOST:PORT` (a software TPM's command socket).
    #[arg(long, default_value = "/dev/tpmrm0")]
    pub tpm: String,
    /// The SNP guest device, used when configfs-tsm is absent.
    #[arg(long, default_value = veil_attester::dev::DEFAULT_DEVICE)]
    pub sev_guest_device: PathBuf,
    /// Trusted sealed-secret signing key: KID=PUBLIC_JWK_FILE; repeatable.
    #[arg(long = "sealing-key")]
    pub sealing_keys: Vec<String>,
    /// Simulated TEE: the PKI state directory.
    #[arg(long, env = "VEIL_STATE_DIR", default_value = ".veil/sim")]
    pub sim_state: PathBuf,
    /// Simulated TEE: the launch measurement (hex, 48 bytes).
    #[arg(long)]
    pub sim_measurement: Option<String>,
    /// Simulated TEE: launch with the DEBUG policy bit.
    #[arg(long)]
    pub sim_debug: bool,
    /// Add Veil's simulated NVIDIA H100 (kept in --sim-state) as a device:
    /// its evidence goes to the broker as additional evidence (`gpu0`).
    #[arg(long)]
    pub sim_gpu: bool,
}

/// `veil agent tpm-ak`: the TPM attestation key (PEM SubjectPublicKeyInfo)
/// to register with a broker (`endorsements.tpm_trusted_aks`).
fn tpm_ak(a: &TpmAkArgs) -> ExitCode {
    let attester =
        veil_attester::tpm::TpmAttester::new(veil_attester::tpm::TpmTransport::parse(&a.tpm));
    match attester.ak_public() {
        Ok(der) => match der::pem::encode_string("PUBLIC KEY", der::pem::LineEnding::LF, &der) {
            Ok(pem) => {
                print!("{pem}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
        Err(e) => fail(e),
    }
}

pub async fn run(cmd: AgentCommand) -> ExitCode {
    let a = match cmd {
        AgentCommand::Run(a) => *a,
        AgentCommand::TpmAk(a) => return tpm_ak(&a),
    };
    let init = match &a.init_data {
        Some(p) => match std::fs::read_to_string(p)
            .map_err(|e| format!("{}: {e}", p.display()))
            .and_then(|t| InitDataDoc::parse(&t))
        {
            Ok(d) => Some(d),
            Err(e) => return fail(e),
        },
        None => None,
    };
    let attester: Arc<dyn Attester> = match a.tee {
        TeeChoice::SimSnp => {
            eprintln!(
                "WARNING: using Veil's SIMULATED SNP TEE: its evidence proves nothing about hardware"
            );
            let sim = match SimSnp::load_or_create(&a.sim_state, Product::Milan) {
                Ok(s) => s,
                Err(e) => return fail(e),
            };
            let mut p = ReportParams::new(Product::Milan);
            if let Some(m) = &a.sim_measurement {
                match hex::decode(m)
                    .ok()
                    .and_then(|v| <[u8; 48]>::try_from(v).ok())
                {
                    Some(m) => p.measurement = m,
                    None => return fail("--sim-measurement must be 48 bytes of hex"),
                }
            }
            if a.sim_debug {
                p.policy |= 1 << 19;
            }
            if let Some(d) = &init {
                // The simulated launch measures the init-data into HOST_DATA.
                match <[u8; 32]>::try_from(d.digest.as_slice()) {
                    Ok(h) => p.host_data = h,
                    Err(_) => {
                        return fail(
                            "SNP HOST_DATA holds 32 bytes: use algorithm = \"sha256\" in the init-data",
                        );
                    }
                }
            }
            match SimSnpAttester::new(sim, p) {
                Ok(s) => Arc::new(s),
                Err(e) => return fail(e),
            }
        }
        TeeChoice::SimTdx => {
            eprintln!(
                "WARNING: using Veil's SIMULATED TDX TEE: its evidence proves nothing about hardware"
            );
            let sim = match veil_sim::tdx::SimTdx::load_or_create(&a.sim_state) {
                Ok(s) => s,
                Err(e) => return fail(e),
            };
            let mut p = veil_sim::tdx::TdParams::default();
            if let Some(m) = &a.sim_measurement {
                match hex::decode(m)
                    .ok()
                    .and_then(|v| <[u8; 48]>::try_from(v).ok())
                {
                    Some(m) => p.mr_td = m,
                    None => return fail("--sim-measurement must be 48 bytes of hex"),
                }
            }
            if a.sim_debug {
                p.td_attributes |= 1;
            }
            if let Some(d) = &init {
                // The simulated launch measures the init-data into MRCONFIGID.
                match <[u8; 48]>::try_from(d.digest.as_slice()) {
                    Ok(h) => p.mr_config_id = h,
                    Err(_) => {
                        return fail(
                            "TDX MRCONFIGID holds 48 bytes: use algorithm = \"sha384\" in the init-data",
                        );
                    }
                }
            }
            Arc::new(veil_attester::sim::SimTdxAttester::new(sim, p))
        }
        TeeChoice::Tpm => Arc::new(veil_attester::tpm::TpmAttester::new(
            veil_attester::tpm::TpmTransport::parse(&a.tpm),
        )),
        TeeChoice::Auto | TeeChoice::Snp => match TsmAttester::detect(&a.tsm_root) {
            Ok(t) if a.tee == TeeChoice::Snp && t.tee() != "snp" => {
                return fail(format!("configfs-tsm reports a {} guest, not SNP", t.tee()));
            }
            Ok(t) => Arc::new(t),
            // Kernels without configfs-tsm: the SNP guest device.
            Err(tsm_err) => {
                match veil_attester::dev::SevGuestAttester::detect(&a.sev_guest_device) {
                    Ok(s) => Arc::new(s),
                    Err(dev_err) => {
                        return fail(format!(
                            "{tsm_err}; {dev_err} (no hardware TEE found; the simulated one is used only with --tee sim-snp)"
                        ));
                    }
                }
            }
        },
    };
    if let Some(d) = &init {
        match attester.launch_init_data() {
            Ok(measured) => {
                if let Err(e) = d.check(&measured) {
                    return fail(e);
                }
            }
            Err(e) => return fail(e),
        }
    }
    let mut keys = TrustedKeys::default();
    for spec in &a.sealing_keys {
        let Some((kid, file)) = spec.split_once('=') else {
            return fail(format!("--sealing-key {spec:?}: expected KID=FILE"));
        };
        let point = std::fs::read(file)
            .map_err(|e| format!("{file}: {e}"))
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| format!("{file}: {e}")))
            .and_then(|v: serde_json::Value| jwk_point(&v));
        match point {
            Ok(p) => {
                keys.0.insert(kid.to_string(), p);
            }
            Err(e) => return fail(e),
        }
    }
    let ca_pem = match &a.ca {
        Some(p) => match std::fs::read(p) {
            Ok(b) => Some(b),
            Err(e) => return fail(format!("{}: {e}", p.display())),
        },
        None => None,
    };
    let cfg = KbsConfig {
        url: a.broker.clone(),
        key_algorithm: match a.key {
            KeyChoice::EcP256 => KeyAlgorithm::EcdhEsP256,
            KeyChoice::EcP521 => KeyAlgorithm::EcdhEsP521,
            KeyChoice::Rsa => KeyAlgorithm::RsaOaep256,
        },
        ca_pem,
        attempts: 5,
        backoff: Duration::from_millis(200),
    };
    let mut devices: Vec<Arc<dyn veil_attester::DeviceAttester>> = Vec::new();
    if a.sim_gpu {
        eprintln!(
            "WARNING: using Veil's SIMULATED NVIDIA GPU: its evidence proves nothing about hardware"
        );
        match veil_sim::gpu::SimGpu::load_or_create(&a.sim_state) {
            Ok(g) => devices.push(Arc::new(veil_attester::sim::SimGpuAttester::new(g))),
            Err(e) => return fail(e),
        }
    }
    let kbs = match TokenCache::new(cfg, attester, init) {
        Ok(k) => k.with_devices(devices),
        Err(e) => return fail(e),
    };
    let agent = Arc::new(Agent {
        kbs,
        sealing_keys: tokio::sync::RwLock::new(keys),
    });
    let listener = match std::net::TcpListener::bind(a.listen) {
        Ok(l) => l,
        Err(e) => return fail(format!("cannot listen on {}: {e}", a.listen)),
    };
    match listener.local_addr() {
        Ok(addr) => println!("veil agent listening on {addr}"),
        Err(e) => eprintln!("warning: {e}"),
    }
    match crate::serve(listener, agent, stop_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}
