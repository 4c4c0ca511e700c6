//! `veil endorsements fetch`: build an offline bundle from AMD KDS.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use veil_endorsements::bundle::{Bundle, Entry, EntryKind};
use veil_endorsements::kds::{KdsClient, KdsConfig, KeyFamily};
use veil_evidence::snp::{Product, parse_evidence};

use crate::EXIT_ERROR;
use crate::verify::parse_product;

#[derive(Debug, Subcommand)]
pub enum EndorsementsCommand {
    /// Fetch AMD certificates (VCEK for the evidence's chip and TCB, ASK/ASVK,
    /// ARK) and CRLs, and write them to an offline bundle.
    Fetch(FetchArgs),
}

#[derive(Debug, Args)]
pub struct FetchArgs {
    /// Evidence whose VCEK to fetch (raw report or CoCo JSON). Without it,
    /// only the product's chains and CRLs are fetched.
    #[arg(long)]
    pub evidence: Option<PathBuf>,
    /// The processor generation (default: from the evidence).
    #[arg(long, value_parser = parse_product)]
    pub product: Option<Product>,
    /// The bundle to write (merged into it if it exists).
    #[arg(long)]
    pub out: PathBuf,
    /// Skip CRLs.
    #[arg(long)]
    pub no_crl: bool,
    /// AMD KDS base URL.
    #[arg(long, env = "VEIL_KDS_URL", default_value = veil_endorsements::kds::DEFAULT_BASE_URL)]
    pub kds_url: String,
    /// Directory for cached endorsements.
    #[arg(long, env = "VEIL_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Least seconds between two KDS requests.
    #[arg(long, default_value_t = 2)]
    pub min_interval_secs: u64,
}

pub async fn run(cmd: EndorsementsCommand) -> ExitCode {
    let EndorsementsCommand::Fetch(a) = cmd;
    match fetch(a).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

async fn fetch(a: FetchArgs) -> Result<(), String> {
    let report = match &a.evidence {
        Some(p) => {
            let bytes = std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?;
            Some(parse_evidence(&bytes).map_err(|e| e.to_string())?.report)
        }
        None => None,
    };
    let product = a
        .product
        .or_else(|| report.as_ref().and_then(|r| r.product()))
        .ok_or("the product is unknown: pass --product (Milan, Genoa, Turin)")?;
    let kds = KdsClient::new(KdsConfig {
        base_url: a.kds_url.clone(),
        cache_dir: a.cache_dir.clone(),
        min_interval: std::time::Duration::from_secs(a.min_interval_secs),
        ..KdsConfig::default()
    })
    .map_err(|e| e.to_string())?;
    let mut bundle = if a.out.exists() {
        Bundle::read(&a.out).map_err(|e| e.to_string())?
    } else {
        Bundle::new()
    };
    let entry = |kind, hwid: Option<String>, tcb: Option<String>, source: String| Entry {
        kind,
        product: product.name().into(),
        hwid,
        tcb,
        source: Some(source),
        der: String::new(),
    };
    let mut count = 0;
    if let Some(r) = &report {
        let path = KdsClient::vcek_path(product, &r.chip_id, &r.reported_tcb);
        let (der, _) = kds
            .vcek(product, &r.chip_id, &r.reported_tcb)
            .await
            .map_err(|e| e.to_string())?;
        let hwid = hex::encode(r.chip_id.get(..product.hwid_len()).unwrap_or(&[]));
        bundle.push(
            entry(
                EntryKind::Vcek,
                Some(hwid),
                Some(r.reported_tcb.to_string()),
                kds.url(&path),
            ),
            &der,
        );
        count += 1;
    }
    for family in [KeyFamily::Vcek, KeyFamily::Vlek] {
        let fam = if family == KeyFamily::Vcek {
            "vcek"
        } else {
            "vlek"
        };
        let (certs, _) = kds
            .cert_chain(product, family)
            .await
            .map_err(|e| e.to_string())?;
        for (i, der) in certs.iter().enumerate() {
            // KDS serves the intermediate first, then the ARK.
            let kind = match (i, family) {
                (0, KeyFamily::Vcek) => EntryKind::Ask,
                (0, KeyFamily::Vlek) => EntryKind::Asvk,
                _ => EntryKind::Ark,
            };
            bundle.push(
                entry(
                    kind,
                    None,
                    None,
                    kds.url(&format!("/{fam}/v1/{}/cert_chain", product.name())),
                ),
                der,
            );
            count += 1;
        }
        if !a.no_crl {
            let (der, _) = kds.crl(product, family).await.map_err(|e| e.to_string())?;
            bundle.push(
                entry(
                    EntryKind::Crl,
                    None,
                    None,
                    kds.url(&format!("/{fam}/v1/{}/crl", product.name())),
                ),
                &der,
            );
            count += 1;
        }
    }
    bundle.write(&a.out).map_err(|e| e.to_string())?;
    eprintln!(
        "wrote {} ({count} items fetched, {} entries in the bundle)",
        a.out.display(),
        bundle.snp.len()
    );
    Ok(())
}
