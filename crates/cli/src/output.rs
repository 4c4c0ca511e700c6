//! Output conventions shared by the subcommands: JSON for machines (the
//! default), a readable summary for people (`--format text`).

use std::fmt::Write as _;

use clap::ValueEnum;
use serde::Serialize;
use veil_verifier::UnixTime;
use veil_verifier::snp::{SnpClaims, SnpError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Json,
    Text,
}

#[derive(Debug, Serialize)]
pub struct Accepted<'a> {
    pub verdict: &'static str,
    pub tee: &'static str,
    pub verified_at: String,
    pub claims: &'a SnpClaims,
}

#[derive(Debug, Serialize)]
pub struct Rejected {
    pub verdict: &'static str,
    pub tee: &'static str,
    pub verified_at: String,
    pub step: u8,
    pub code: &'static str,
    pub error: String,
}

pub fn accepted(format: Format, claims: &SnpClaims, at: UnixTime) -> String {
    match format {
        Format::Json => serde_json::to_string_pretty(&Accepted {
            verdict: "VALID",
            tee: "snp",
            verified_at: at.to_string(),
            claims,
        })
        .unwrap_or_default(),
        Format::Text => snp_text(claims, at),
    }
}

pub fn rejected(format: Format, err: &SnpError, at: UnixTime) -> String {
    match format {
        Format::Json => serde_json::to_string_pretty(&Rejected {
            verdict: "REJECT",
            tee: "snp",
            verified_at: at.to_string(),
            step: err.step(),
            code: err.code(),
            error: err.to_string(),
        })
        .unwrap_or_default(),
        Format::Text => format!("REJECTED at {at}\n  {err}\n  code: {}", err.code()),
    }
}

pub fn snp_text(c: &SnpClaims, at: UnixTime) -> String {
    let mut s = String::new();
    let e = &c.endorsement;
    let _ = writeln!(
        s,
        "VALID  AMD SEV-SNP report v{} ({}, signed by {:?}{}) at {at}",
        c.report_version,
        c.product,
        e.kind,
        if e.simulated { ", SIMULATED ROOT" } else { "" }
    );
    let _ = writeln!(s, "  measurement     {}", c.measurement);
    let _ = writeln!(s, "  report_data     {}", c.report_data);
    let _ = writeln!(s, "  host_data       {}", c.host_data);
    let _ = writeln!(s, "  id_key_digest   {}", c.id_key_digest);
    let _ = writeln!(
        s,
        "  policy          {:#x} (debug {}, SMT {}, migrate_ma {}, ABI {}.{})",
        c.policy.raw,
        c.policy.debug,
        c.policy.smt_allowed,
        c.policy.migrate_ma,
        c.policy.abi_major,
        c.policy.abi_minor
    );
    let _ = writeln!(
        s,
        "  vmpl            {}   guest_svn {}",
        c.vmpl, c.guest_svn
    );
    let _ = writeln!(s, "  reported_tcb    {}", c.reported_tcb);
    let _ = writeln!(s, "  committed_tcb   {}", c.committed_tcb);
    let _ = writeln!(s, "  launch_tcb      {}", c.launch_tcb);
    let _ = writeln!(s, "  firmware        {}", c.current_version);
    let _ = writeln!(s, "  chip_id         {}", c.chip_id);
    let _ = writeln!(
        s,
        "  key             {} (valid until {})",
        e.subject, e.not_after
    );
    if let Some(csp) = &e.csp_id {
        let _ = writeln!(s, "  csp_id          {csp}");
    }
    let _ = write!(
        s,
        "  revocation      {}",
        if e.crl_checked {
            "CRL checked"
        } else {
            "not checked (no CRL supplied)"
        }
    );
    s
}
