//! `veil sim snp`: evidence from the simulated TEE, for tests and demos.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use veil_evidence::snp::{CertTableEntry, CertType, Product, SnpEvidence};
use veil_sim::snp::{ReportParams, SimSnp};

use crate::EXIT_ERROR;
use crate::verify::parse_product;

#[derive(Debug, Subcommand)]
pub enum SimCommand {
    /// Write a simulated SNP report and its simulated certificate chain.
    Snp(SnpArgs),
    /// Write a simulated TDX quote, its collateral and the simulated root.
    Tdx(TdxArgs),
    /// Write simulated NVIDIA GPU evidence (CoCo `nvidia` JSON) and the
    /// simulated GPU root.
    Gpu(GpuArgs),
}

#[derive(Debug, Args)]
pub struct GpuArgs {
    /// Where the simulated PKI is kept.
    #[arg(long, env = "VEIL_STATE_DIR", default_value = ".veil/sim")]
    pub state_dir: PathBuf,
    /// Evidence output file (CoCo `nvidia` evidence JSON).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The simulated GPU root (PEM) output file.
    #[arg(long)]
    pub root_out: Option<PathBuf>,
    /// The SPDM request nonce, hex (32 bytes).
    #[arg(long)]
    pub nonce: Option<String>,
}

#[derive(Debug, Args)]
pub struct TdxArgs {
    /// Where the simulated PKI is kept.
    #[arg(long, env = "VEIL_STATE_DIR", default_value = ".veil/sim")]
    pub state_dir: PathBuf,
    /// Quote output file (CoCo TDX evidence JSON).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Collateral output file (valid 30 days from now).
    #[arg(long)]
    pub collateral_out: Option<PathBuf>,
    /// The simulated Intel root (PEM) output file.
    #[arg(long)]
    pub root_out: Option<PathBuf>,
    /// MRTD, hex (48 bytes).
    #[arg(long)]
    pub mr_td: Option<String>,
    /// Report data, hex (up to 64 bytes).
    #[arg(long)]
    pub report_data: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EvidenceFormat {
    /// The raw 1184-byte report.
    Raw,
    /// CoCo evidence JSON with the VCEK and ASK in `cert_chain`.
    Coco,
}

#[derive(Debug, Args)]
pub struct SnpArgs {
    /// Where the simulated PKI is kept.
    #[arg(long, env = "VEIL_STATE_DIR", default_value = ".veil/sim")]
    pub state_dir: PathBuf,
    #[arg(long, value_parser = parse_product, default_value = "Milan")]
    pub product: Product,
    /// Report version (2, 3 or 5).
    #[arg(long)]
    pub report_version: Option<u32>,
    /// Launch measurement, hex (48 bytes).
    #[arg(long)]
    pub measurement: Option<String>,
    /// Report data, hex (up to 64 bytes, zero-filled).
    #[arg(long)]
    pub report_data: Option<String>,
    /// Host data, hex (32 bytes).
    #[arg(long)]
    pub host_data: Option<String>,
    /// Set the DEBUG policy bit.
    #[arg(long)]
    pub debug: bool,
    /// Evidence output file.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, value_enum, default_value = "coco")]
    pub format: EvidenceFormat,
    /// Write the simulated VCEK, ASK and ARK (PEM) into this directory.
    #[arg(long)]
    pub certs_dir: Option<PathBuf>,
}

fn hex_exact<const N: usize>(what: &str, s: &str, allow_short: bool) -> Result<[u8; N], String> {
    let v = hex::decode(s.trim()).map_err(|e| format!("--{what}: {e}"))?;
    if v.len() > N || (!allow_short && v.len() != N) {
        return Err(format!("--{what}: expected {N} bytes, got {}", v.len()));
    }
    let mut out = [0u8; N];
    out.get_mut(..v.len()).ok_or("length")?.copy_from_slice(&v);
    Ok(out)
}

pub fn run(cmd: SimCommand) -> ExitCode {
    let result = match cmd {
        SimCommand::Snp(a) => snp(a),
        SimCommand::Tdx(a) => tdx(a),
        SimCommand::Gpu(a) => gpu(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

fn snp(a: SnpArgs) -> Result<(), String> {
    let sim = SimSnp::load_or_create(&a.state_dir, a.product).map_err(|e| e.to_string())?;
    let mut p = ReportParams::new(a.product);
    if let Some(v) = a.report_version {
        p.version = v;
    }
    if let Some(m) = &a.measurement {
        p.measurement = hex_exact("measurement", m, false)?;
    }
    if let Some(r) = &a.report_data {
        p.report_data = hex_exact("report-data", r, true)?;
    }
    if let Some(h) = &a.host_data {
        p.host_data = hex_exact("host-data", h, false)?;
    }
    if a.debug {
        p.policy |= 1 << 19;
    }
    let report = sim.report(&p).map_err(|e| e.to_string())?;
    let vcek = sim.vcek_der(&p.tcb).map_err(|e| e.to_string())?;
    let bytes = match a.format {
        EvidenceFormat::Raw => report.as_bytes().to_vec(),
        EvidenceFormat::Coco => {
            let ev = SnpEvidence {
                report,
                cert_chain: vec![
                    CertTableEntry {
                        cert_type: CertType::Vcek,
                        data: vcek.clone(),
                    },
                    CertTableEntry {
                        cert_type: CertType::Ask,
                        data: sim.ask_der().to_vec(),
                    },
                ],
            };
            veil_evidence::snp::coco::to_json(&ev)
                .map_err(|e| e.to_string())?
                .into_bytes()
        }
    };
    std::fs::write(&a.out, bytes).map_err(|e| format!("{}: {e}", a.out.display()))?;
    if let Some(dir) = &a.certs_dir {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        for (name, der) in [
            ("vcek.pem", vcek.as_slice()),
            ("ask.pem", sim.ask_der()),
            ("ark.pem", sim.ark_der()),
        ] {
            let pem = veil_endorsements::certs::to_pem("CERTIFICATE", der);
            std::fs::write(dir.join(name), pem).map_err(|e| e.to_string())?;
        }
    }
    eprintln!(
        "wrote SIMULATED {} report v{} to {} (not evidence of real hardware)",
        a.product,
        p.version,
        a.out.display()
    );
    Ok(())
}

/// Writes a simulated root certificate as PEM.
fn write_root(out: &std::path::Path, der: &[u8]) -> Result<(), String> {
    std::fs::write(out, veil_endorsements::certs::to_pem("CERTIFICATE", der))
        .map_err(|e| format!("{}: {e}", out.display()))
}

fn gpu(a: GpuArgs) -> Result<(), String> {
    let sim = veil_sim::gpu::SimGpu::load_or_create(&a.state_dir).map_err(|e| e.to_string())?;
    if let Some(out) = &a.out {
        let nonce: [u8; 32] = match &a.nonce {
            Some(n) => hex_exact("nonce", n, false)?,
            None => [0; 32],
        };
        let ev = sim.evidence(&nonce).map_err(|e| e.to_string())?;
        let text = serde_json::to_string(&ev).map_err(|e| e.to_string())?;
        std::fs::write(out, text).map_err(|e| format!("{}: {e}", out.display()))?;
    }
    if let Some(out) = &a.root_out {
        write_root(out, sim.root_der())?;
    }
    eprintln!(
        "SIMULATED NVIDIA GPU in {} (not evidence of real hardware)",
        a.state_dir.display()
    );
    Ok(())
}

fn tdx(a: TdxArgs) -> Result<(), String> {
    use base64::Engine as _;
    let sim = veil_sim::tdx::SimTdx::load_or_create(&a.state_dir).map_err(|e| e.to_string())?;
    let mut p = veil_sim::tdx::TdParams::default();
    if let Some(m) = &a.mr_td {
        p.mr_td = hex_exact("mr-td", m, false)?;
    }
    if let Some(r) = &a.report_data {
        p.report_data = hex_exact("report-data", r, true)?;
    }
    if let Some(out) = &a.out {
        let quote = sim.quote(&p).map_err(|e| e.to_string())?;
        let ev = serde_json::json!({"cc_eventlog": null, "quote": base64::engine::general_purpose::STANDARD.encode(quote)});
        std::fs::write(out, ev.to_string()).map_err(|e| format!("{}: {e}", out.display()))?;
    }
    if let Some(out) = &a.collateral_out {
        let c = sim
            .collateral(veil_verifier::UnixTime::now().0)
            .map_err(|e| e.to_string())?;
        std::fs::write(out, c.to_string()).map_err(|e| format!("{}: {e}", out.display()))?;
    }
    if let Some(out) = &a.root_out {
        write_root(out, sim.root_der())?;
    }
    eprintln!(
        "SIMULATED TDX platform in {} (not evidence of real hardware)",
        a.state_dir.display()
    );
    Ok(())
}
