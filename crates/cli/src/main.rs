//! `veil`: the command-line entry point. Thin: parsing arguments, reading
//! files, printing; the work is in the library crates.
#![forbid(unsafe_code)]

mod admin;
mod agent;
mod bench;
mod bench_floor;
mod bench_image;
mod broker;
mod demo;
mod endorsements;
mod image;
mod keyprovider;
mod keyprovider_grpc;
mod output;
mod seal;
mod sim;
mod verify;
mod verify_device;
mod verify_tpm;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Veil: remote attestation for confidential computing.
#[derive(Debug, Parser)]
#[command(name = "veil", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the main job on an embedded default: a simulated SNP TEE produces
    /// a report, the verifier checks it and prints the appraisal.
    Demo(demo::DemoArgs),
    /// Verify a piece of evidence offline-capable and print its claims.
    Verify(verify::VerifyArgs),
    /// Fetch and bundle endorsements (AMD certificates and CRLs).
    #[command(subcommand)]
    Endorsements(endorsements::EndorsementsCommand),
    /// The key broker (KBS protocol 0.4.0).
    #[command(subcommand)]
    Broker(broker::BrokerCommand),
    /// Admin keys, tokens, and a client for the broker's admin API.
    #[command(subcommand)]
    Admin(admin::AdminCommand),
    /// The guest agent: attests and serves secrets to the workload.
    #[command(subcommand)]
    Agent(agent::AgentCommand),
    /// Sealed secrets (Confidential Containers format).
    #[command(subcommand)]
    Seal(seal::SealCommand),
    /// Benchmarks against a running broker.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Produce evidence from Veil's simulated TEE (for tests and demos only).
    #[command(subcommand)]
    Sim(sim::SimCommand),
    /// Encrypted images on OCI layout directories: `encrypt`, `decrypt`.
    #[command(subcommand)]
    Image(image::ImageCommand),
    /// An ocicrypt key provider (cmd transport: JSON on stdin/stdout) for
    /// encrypted images: wraps layer keys under a KEK file, and unwraps them
    /// with the KEK the Veil agent gets from the broker after attestation.
    Keyprovider(keyprovider::KeyProviderArgs),
}

/// Exit codes: 0 success, 1 evidence rejected, 2 unusable input or error
/// (the last, and `fail`, shared with the `veil-agent` executable).
pub const EXIT_REJECTED: u8 = 1;
pub use veil_agent::cli::EXIT_ERROR;
pub(crate) use veil_agent::cli::fail;

fn main() -> ExitCode {
    // Logs go to stderr: human-readable by default, one JSON object per
    // line with VEIL_LOG_FORMAT=json (for log collectors); the same set-up
    // as the `veil-agent` executable's.
    veil_agent::cli::init_logging();
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    rt.block_on(async {
        match cli.command {
            Command::Demo(a) => demo::run(a).await,
            Command::Verify(a) => verify::run(a).await,
            Command::Endorsements(c) => endorsements::run(c).await,
            Command::Sim(c) => sim::run(c),
            Command::Broker(c) => broker::run(c).await,
            Command::Admin(c) => admin::run(c).await,
            Command::Bench(c) => bench::run(c).await,
            Command::Agent(c) => agent::run(c).await,
            Command::Seal(c) => seal::run(c),
            Command::Keyprovider(a) => keyprovider::run(a).await,
            Command::Image(c) => image::run(c).await,
        }
    })
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
