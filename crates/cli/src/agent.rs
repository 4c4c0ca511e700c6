//! `veil agent …`: the guest agent's command line, shared with the
//! `veil-agent` executable (`veil_agent::cli`).

pub use veil_agent::cli::{AgentCommand, run};
