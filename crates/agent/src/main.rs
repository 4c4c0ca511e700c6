//! `veil-agent`: the guest agent as an executable of its own, for guest
//! images. The same commands as `veil agent …` (`run`, `tpm-ak`) without the
//! verifier, broker and image tooling that the `veil` executable carries, so
//! there is less to load at start and less to keep resident beside the
//! workload.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use veil_agent::cli::{AgentCommand, EXIT_ERROR, init_logging, run};

/// Veil's guest agent: attests to a KBS-protocol broker and serves secrets
/// to the workload.
#[derive(Debug, Parser)]
#[command(name = "veil-agent", version, about)]
struct Cli {
    #[command(subcommand)]
    command: AgentCommand,
}

fn main() -> ExitCode {
    init_logging();
    let cli = Cli::parse();
    // One thread: the agent serves one workload over loopback and attests
    // now and then; a thread per core would only add stacks and wake-ups.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    rt.block_on(run(cli.command))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
