//! The registry of evidence verifiers, built once at start. Each verifier
//! takes the CoCo evidence JSON of its TEE, the exact 64-byte report data the
//! protocol binding requires, and the init-data digest, and returns
//! normalised claims. `sample` is present only when the operator enabled it
//! by its dangerous name.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine as _;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use veil_endorsements::bundle::Bundle;
use veil_endorsements::kds::{KdsClient, KdsConfig};
use veil_endorsements::snp::SnpEndorsements;
use veil_verifier::UnixTime;
use veil_verifier::snp::{ChainRole, SnpError, SnpVerifier, TrustAnchors};

use crate::config::Config;

/// Why evidence was refused. `detail` is safe for clients (no evidence
/// bytes); `log` has everything.
#[derive(Debug, Clone)]
pub struct Rejection {
    pub detail: String,
    pub log: String,
}

impl Rejection {
    fn new(detail: impl Into<String>, log: impl Into<String>) -> Self {
        Rejection {
            detail: detail.into(),
            log: log.into(),
        }
    }
}

/// The evidence does not carry this session's report data.
fn unbound(log: impl Into<String>) -> Rejection {
    Rejection::new(
        "report data does not bind this session's nonce and TEE key",
        log,
    )
}

/// Refuses init-data for a TEE whose evidence has no field that binds it.
fn no_init_data(tee: &str, init_data: Option<&InitDataDigest>, why: &str) -> Result<(), Rejection> {
    match init_data {
        Some(_) => Err(Rejection::new(
            format!("init-data is not supported for {tee} evidence ({why})"),
            format!("init-data with {tee}"),
        )),
        None => Ok(()),
    }
}

/// The init-data binding requested by the guest.
#[derive(Debug, Clone)]
pub struct InitDataDigest {
    pub algorithm: String,
    pub digest: Vec<u8>,
}

/// One TEE's verifier.
#[async_trait]
pub trait TeeVerifier: Send + Sync + std::fmt::Debug {
    /// Verifies `evidence` and returns normalised claims (with `tee`).
    async fn verify(
        &self,
        evidence: &RawValue,
        report_data: &[u8; 64],
        init_data: Option<&InitDataDigest>,
        now: UnixTime,
    ) -> Result<Value, Rejection>;
}

/// Parses CoCo evidence JSON of `tee` with its wire-format parser; a clear
/// rejection when it does not parse.
fn parse_evidence<T>(
    evidence: &RawValue,
    tee: &str,
    parse: impl FnOnce(&[u8]) -> Result<T, veil_evidence::ParseError>,
) -> Result<T, Rejection> {
    // The evidence as received: no re-serialisation before parsing.
    parse(evidence.get().as_bytes())
        .map_err(|e| Rejection::new(format!("malformed {tee} evidence: {e}"), e.to_string()))
}

/// Evidence of `tee` as a JSON tree, for verifiers that read fields of it
/// rather than hand the bytes to a wire-format parser.
fn evidence_json(evidence: &RawValue, tee: &str) -> Result<Value, Rejection> {
    serde_json::from_str(evidence.get())
        .map_err(|e| Rejection::new(format!("malformed {tee} evidence"), e.to_string()))
}

/// The first certificate (DER) of a DER or PEM file.
fn first_cert_der(path: &std::path::Path) -> Result<Vec<u8>, String> {
    veil_endorsements::certs::read_certificates(std::slice::from_ref(&path.to_path_buf()))?
        .into_iter()
        .next()
        .ok_or_else(|| format!("{}: no certificate", path.display()))
}

/// Reads and parses each file of a configuration list; errors name the file.
fn parse_files<T, E: std::fmt::Display>(
    paths: &[std::path::PathBuf],
    parse: impl Fn(&std::path::Path, &[u8]) -> Result<T, E>,
) -> Result<Vec<T>, String> {
    paths
        .iter()
        .map(|p| {
            let bytes = std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?;
            parse(p, &bytes).map_err(|e| format!("{}: {e}", p.display()))
        })
        .collect()
}

/// The registry.
#[derive(Debug, Clone)]
pub struct Registry {
    verifiers: BTreeMap<&'static str, Arc<dyn TeeVerifier>>,
    devices: BTreeMap<&'static str, Arc<dyn DeviceVerifier>>,
}

impl Registry {
    /// Builds every verifier the configuration enables.
    pub fn build(cfg: &Config) -> Result<Self, String> {
        let mut verifiers: BTreeMap<&'static str, Arc<dyn TeeVerifier>> = BTreeMap::new();
        let mut anchors = TrustAnchors::amd();
        if let Some(path) = &cfg.dangerous_trust_simulated_tee {
            let der = first_cert_der(path)?;
            let cert = veil_verifier::x509::Cert::parse(&der).map_err(|e| e.to_string())?;
            let product = cert
                .subject_cn()
                .and_then(|cn| {
                    cn.strip_prefix("ARK-")
                        .and_then(veil_evidence::snp::Product::from_name)
                })
                .ok_or("dangerous_trust_simulated_tee: the ARK's name does not say its product")?;
            tracing::warn!(path = %path.display(), %product, "DANGEROUS: trusting Veil's simulated SNP root; evidence accepted under it proves nothing about hardware");
            anchors = anchors
                .dangerous_trust_simulated_root(product, &der)
                .map_err(|e| e.to_string())?;
        }
        let mut bundles = Vec::new();
        for b in &cfg.endorsements.bundles {
            bundles.push(Bundle::read(b).map_err(|e| format!("{}: {e}", b.display()))?);
        }
        let kds = KdsClient::new(KdsConfig {
            base_url: cfg.endorsements.kds_url.clone(),
            cache_dir: cfg.endorsements.cache_dir.clone(),
            offline: cfg.endorsements.offline,
            ..KdsConfig::default()
        })
        .map_err(|e| e.to_string())?;
        let snp = Arc::new(SnpTee {
            verifier: SnpVerifier::new(anchors),
            bundles,
            kds,
        });
        verifiers.insert("snp", snp.clone());
        verifiers.insert("az-snp-vtpm", Arc::new(AzSnpTee { snp: snp.clone() }));
        let tpm_ak_policy = tpm_policy(&cfg.endorsements)?;
        let collateral = parse_files(&cfg.endorsements.dcap_collateral, |_, b| {
            veil_endorsements::dcap::Collateral::parse(b)
        })?;
        let dcap = match &cfg.dangerous_trust_simulated_tdx {
            Some(path) => {
                let der = first_cert_der(path)?;
                tracing::warn!(path = %path.display(), "DANGEROUS: trusting Veil's simulated Intel root for TDX; evidence accepted under it proves nothing about hardware");
                veil_verifier::dcap::DcapVerifier::dangerous_trust_simulated_root(&der)
                    .map_err(|e| e.to_string())?
            }
            None => veil_verifier::dcap::DcapVerifier::intel().map_err(|e| e.to_string())?,
        };
        let pcs = match &cfg.endorsements.pcs_url {
            Some(url) => Some(Arc::new(
                veil_endorsements::pcs::PcsClient::new(veil_endorsements::pcs::PcsConfig {
                    base_url: url.clone(),
                    cache_dir: cfg.endorsements.cache_dir.clone(),
                    offline: cfg.endorsements.offline,
                    ..veil_endorsements::pcs::PcsConfig::default()
                })
                .map_err(|e| e.to_string())?,
            )),
            None => None,
        };
        let dcap = Arc::new(dcap);
        let collateral = Arc::new(collateral);
        for (name, kind) in [
            ("tdx", veil_evidence::dcap::TeeType::Tdx),
            ("sgx", veil_evidence::dcap::TeeType::Sgx),
        ] {
            let tee = Arc::new(DcapTee {
                kind,
                verifier: dcap.clone(),
                collateral: collateral.clone(),
                pcs: pcs.clone(),
            });
            if kind == veil_evidence::dcap::TeeType::Tdx {
                verifiers.insert("az-tdx-vtpm", Arc::new(AzTdxTee { tdx: tee.clone() }));
                verifiers.insert(
                    "tpm",
                    Arc::new(TpmTee {
                        policy: tpm_ak_policy.clone(),
                        snp: snp.clone(),
                        tdx: tee.clone(),
                    }),
                );
            }
            verifiers.insert(name, tee);
        }
        verifiers.insert(
            "nitro",
            Arc::new(NitroTee {
                roots: veil_verifier::nitro::default_roots().map_err(|e| e.to_string())?,
            }),
        );
        let cpaks: Vec<_> = parse_files(&cfg.endorsements.cca_cpaks, |_, b| {
            veil_verifier::cca::cpaks_from_json(b)
        })?
        .into_iter()
        .flatten()
        .collect();
        verifiers.insert("cca", Arc::new(CcaTee { cpaks }));
        let mut gpu_roots = veil_verifier::nvidia::default_roots().map_err(|e| e.to_string())?;
        if let Some(path) = &cfg.dangerous_trust_simulated_gpu {
            let der = first_cert_der(path)?;
            tracing::warn!(path = %path.display(), "DANGEROUS: trusting Veil's simulated NVIDIA GPU root; GPU evidence accepted under it proves nothing about hardware");
            gpu_roots.push(veil_verifier::x509::Cert::parse(&der).map_err(|e| e.to_string())?);
        }
        let mut devices: BTreeMap<&'static str, Arc<dyn DeviceVerifier>> = BTreeMap::new();
        let ocsp = match &cfg.endorsements.nvidia_ocsp_url {
            Some(url) => Some(
                veil_endorsements::ocsp::OcspClient::new(url, std::time::Duration::from_secs(5))
                    .map_err(|e| e.to_string())?,
            ),
            None => None,
        };
        let rims = parse_files(&cfg.endorsements.nvidia_rims, |_, b| {
            veil_endorsements::rim::Rim::parse("manifest", b)
        })?;
        devices.insert(
            "nvidia",
            Arc::new(NvidiaDevices {
                roots: gpu_roots,
                ocsp,
                rims,
            }),
        );
        if cfg.dangerous_accept_sample_evidence {
            tracing::warn!(
                "DANGEROUS: accepting unsigned `sample` evidence (dangerous_accept_sample_evidence)"
            );
            verifiers.insert("sample", Arc::new(SampleTee));
        }
        Ok(Registry { verifiers, devices })
    }

    /// The verifier of a TEE name.
    pub fn get(&self, tee: &str) -> Option<Arc<dyn TeeVerifier>> {
        self.verifiers.get(tee).cloned()
    }

    /// The verifier of a device (additional evidence) name.
    pub fn device(&self, tee: &str) -> Option<Arc<dyn DeviceVerifier>> {
        self.devices.get(tee).cloned()
    }

    /// Names of the enabled TEEs.
    pub fn tees(&self) -> Vec<&'static str> {
        self.verifiers.keys().copied().collect()
    }
}

#[derive(Debug)]
struct SnpTee {
    verifier: SnpVerifier,
    bundles: Vec<Bundle>,
    kds: KdsClient,
}

impl SnpTee {
    /// Verifies a report with `endorsements` plus the configured bundles,
    /// fetching the VCEK from AMD KDS when none is at hand.
    async fn verify_report(
        &self,
        report: &veil_evidence::snp::AttestationReport,
        mut endorsements: SnpEndorsements,
        now: UnixTime,
    ) -> Result<veil_verifier::snp::VerifiedSnpReport, Rejection> {
        for b in &self.bundles {
            endorsements.extend(b.snp_endorsements(report.product(), &report.chip_id));
        }
        let mut result = self.verifier.verify(report, &endorsements, now);
        if let Err(SnpError::MissingEndorsementKey {
            role: ChainRole::Vcek,
            ..
        }) = &result
            && let Some(product) = report.product()
        {
            match self
                .kds
                .vcek(product, &report.chip_id, &report.reported_tcb)
                .await
            {
                Ok((der, _)) => {
                    endorsements.certs.push(der);
                    result = self.verifier.verify(report, &endorsements, now);
                }
                Err(e) => tracing::warn!(error = %e, "could not obtain a VCEK"),
            }
        }
        result.map_err(|e| snp_rejection(&e))
    }
}

fn snp_rejection(e: &SnpError) -> Rejection {
    Rejection::new(
        format!("SNP evidence rejected at step {} ({})", e.step(), e.code()),
        e.to_string(),
    )
}

#[async_trait]
impl TeeVerifier for SnpTee {
    async fn verify(
        &self,
        evidence: &RawValue,
        report_data: &[u8; 64],
        init_data: Option<&InitDataDigest>,
        now: UnixTime,
    ) -> Result<Value, Rejection> {
        let ev = parse_evidence(evidence, "SNP", veil_evidence::snp::coco::parse_json)?;
        let report = &ev.report;
        let mut endorsements = SnpEndorsements::default();
        endorsements
            .add_cert_table(&ev.cert_chain)
            .map_err(|e| Rejection::new("unusable certificate in cert_chain", e.to_string()))?;
        let verified = self.verify_report(report, endorsements, now).await?;
        let claims = verified.claims();
        // The binding: the whole 64-byte field, compared exactly.
        if report.report_data != *report_data {
            return Err(unbound(format!(
                "report_data {} expected {}",
                hex::encode(report.report_data),
                hex::encode(report_data)
            )));
        }
        if let Some(init) = init_data {
            if init.digest.len() != report.host_data.len() {
                return Err(Rejection::new(
                    format!(
                        "init-data digest ({}, {} bytes) does not fit SNP HOST_DATA (32 bytes); use sha256",
                        init.algorithm,
                        init.digest.len()
                    ),
                    "init-data length mismatch",
                ));
            }
            if init.digest != report.host_data {
                return Err(Rejection::new(
                    "init-data digest does not match SNP HOST_DATA",
                    format!(
                        "host_data {} init-data {}",
                        hex::encode(report.host_data),
                        hex::encode(&init.digest)
                    ),
                ));
            }
        }
        let mut v =
            serde_json::to_value(claims).map_err(|e| Rejection::new("internal", e.to_string()))?;
        v["simulated"] = json!(verified.is_simulated());
        Ok(v)
    }
}

/// The AK policy of the `tpm` verifier, from the configured files.
fn tpm_policy(
    cfg: &crate::config::EndorsementsConfig,
) -> Result<veil_verifier::tpm::AkPolicy, String> {
    use veil_endorsements::certs::read_files;
    veil_verifier::tpm::AkPolicy::from_files(
        &read_files(&cfg.tpm_ak_certs)?,
        &read_files(&cfg.tpm_trusted_aks)?,
    )
}

fn tpm_rejection(e: &veil_verifier::tpm::TpmError) -> Rejection {
    use veil_verifier::tpm::TpmError;
    let detail = match e {
        TpmError::NonceMismatch { .. } => {
            "the TPM quote does not bind this session's nonce and TEE key".to_string()
        }
        TpmError::AkNotTrusted(_) => "the TPM attestation key is not trusted".to_string(),
        TpmError::Parse(_) => "malformed TPM evidence".to_string(),
        TpmError::Tee(m) => format!("the VM's TEE attestation was refused: {m}"),
        _ => "TPM quote rejected".to_string(),
    };
    Rejection::new(detail, e.to_string())
}

/// Parses Azure vTPM evidence; init-data is refused (the paravisor owns the
/// hardware's launch-configuration field).
fn az_evidence(
    evidence: &RawValue,
    tee: &str,
    init_data: Option<&InitDataDigest>,
) -> Result<veil_evidence::azure::AzEvidence, Rejection> {
    no_init_data(
        tee,
        init_data,
        "the paravisor owns the launch configuration",
    )?;
    parse_evidence(evidence, tee, veil_evidence::azure::AzEvidence::parse_json)
}

/// Azure SEV-SNP CVMs: the SNP chain (same anchors, bundles and KDS as
/// `snp`), the runtime-claims binding, and the vTPM quote whose qualifying
/// data must be the protocol's 48-byte report-data digest exactly.
#[derive(Debug)]
struct AzSnpTee {
    snp: Arc<SnpTee>,
}

#[async_trait]
impl TeeVerifier for AzSnpTee {
    async fn verify(
        &self,
        evidence: &RawValue,
        report_data: &[u8; 64],
        init_data: Option<&InitDataDigest>,
        now: UnixTime,
    ) -> Result<Value, Rejection> {
        let ev = az_evidence(evidence, "az-snp-vtpm", init_data)?;
        let mut endorsements = SnpEndorsements::default();
        for c in &ev.certs {
            endorsements.add_blobs(
                veil_endorsements::certs::decode_blobs("vcek", c)
                    .map_err(|e| Rejection::new("unusable vcek in evidence", e.to_string()))?,
            );
        }
        let rejected = |e: veil_verifier::azure::AzureError| {
            Rejection::new(
                format!("az-snp-vtpm evidence rejected ({})", e.code()),
                e.to_string(),
            )
        };
        let parts = veil_verifier::azure::parse_az_snp(&ev).map_err(rejected)?;
        for b in &self.snp.bundles {
            endorsements.extend(b.snp_endorsements(parts.report.product(), &parts.report.chip_id));
        }
        // The KBS binding is the 48-byte SHA-384 digest; the Azure attester
        // puts it in the quote as is.
        let nonce = report_data.get(..48).unwrap_or_default();
        let v = veil_verifier::azure::verify_az_snp_parsed(
            &ev,
            &parts,
            &self.snp.verifier,
            &endorsements,
            Some(nonce),
            now,
            &veil_verifier::crypto::AWS_LC,
        )
        .map_err(rejected)?;
        let mut claims = serde_json::to_value(v.snp.claims())
            .map_err(|e| Rejection::new("internal", e.to_string()))?;
        claims["tee"] = json!("az-snp-vtpm");
        claims["simulated"] = json!(v.snp.is_simulated());
        claims["tpm"] = v.quote.claims();
        claims["runtime_claims"] = v.runtime_claims;
        Ok(claims)
    }
}

/// Azure TDX CVMs: the TD quote through the `tdx` verifier's DCAP
/// collateral, bound to the HCL report's TDREPORT, and the vTPM quote bound
/// to the 48-byte report-data digest.
#[derive(Debug)]
struct AzTdxTee {
    tdx: Arc<DcapTee>,
}

#[async_trait]
impl TeeVerifier for AzTdxTee {
    async fn verify(
        &self,
        evidence: &RawValue,
        report_data: &[u8; 64],
        init_data: Option<&InitDataDigest>,
        now: UnixTime,
    ) -> Result<Value, Rejection> {
        let ev = az_evidence(evidence, "az-tdx-vtpm", init_data)?;
        let rejected = |e: veil_verifier::azure::AzureError| {
            Rejection::new(
                format!("az-tdx-vtpm evidence rejected ({})", e.code()),
                e.to_string(),
            )
        };
        let quote = veil_verifier::azure::td_quote(&ev).map_err(rejected)?;
        let td = self.tdx.verify_quote(&quote, now).await?;
        let v = veil_verifier::azure::verify_az_tdx_quoted(
            &ev,
            td,
            Some(report_data.get(..48).unwrap_or_default()),
            &veil_verifier::crypto::AWS_LC,
        )
        .map_err(rejected)?;
        let mut claims = serde_json::to_value(v.td.claims())
            .map_err(|e| Rejection::new("internal", e.to_string()))?;
        claims["tee"] = json!("az-tdx-vtpm");
        claims["tpm"] = v.quote.claims();
        claims["runtime_claims"] = v.runtime_claims;
        Ok(claims)
    }
}

/// Plain TPM 2.0 quotes (CoCo `tpm` JSON, or go-tpm-tools protobuf as
/// base64 under `attestation`): the AK vouched for by the configured AK
/// CAs or allow-list; the qualifying data must be the 64-byte report data.
#[derive(Debug)]
struct TpmTee {
    policy: veil_verifier::tpm::AkPolicy,
    /// For the SEV-SNP report or TD quote a confidential GCE VM attaches.
    snp: Arc<SnpTee>,
    tdx: Arc<DcapTee>,
}

#[async_trait]
impl TeeVerifier for TpmTee {
    async fn verify(
        &self,
        evidence: &RawValue,
        report_data: &[u8; 64],
        init_data: Option<&InitDataDigest>,
        now: UnixTime,
    ) -> Result<Value, Rejection> {
        no_init_data(
            "tpm",
            init_data,
            "a TPM quote has no launch configuration field",
        )?;
        let backend = &veil_verifier::crypto::AWS_LC;
        let mut tee_claims = None;
        let doc = evidence_json(evidence, "tpm")?;
        let verified = match doc.get("attestation").and_then(Value::as_str) {
            Some(b64) => {
                let pb = base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map_err(|_| Rejection::new("attestation is not base64", "bad base64"))?;
                let att = veil_evidence::gce::GceAttestation::parse(&pb).map_err(|e| {
                    Rejection::new(format!("malformed TPM attestation: {e}"), e.to_string())
                })?;
                // A confidential VM's SNP report or TD quote: verified, and
                // bound to the same report data as the quote.
                use veil_verifier::tpm::{GceTeeParts, check_gce_report_data, gce_tee_parts};
                match gce_tee_parts(&att).map_err(|e| tpm_rejection(&e))? {
                    Some(GceTeeParts::Snp(report, endorsements)) => {
                        let v = self.snp.verify_report(&report, endorsements, now).await?;
                        check_gce_report_data(&report.report_data, report_data)
                            .map_err(|e| tpm_rejection(&e))?;
                        tee_claims =
                            Some(("snp", serde_json::to_value(v.claims()).unwrap_or_default()));
                    }
                    Some(GceTeeParts::Tdx(quote)) => {
                        let v = self.tdx.verify_quote(&quote, now).await?;
                        check_gce_report_data(quote.report_data(), report_data)
                            .map_err(|e| tpm_rejection(&e))?;
                        tee_claims =
                            Some(("tdx", serde_json::to_value(v.claims()).unwrap_or_default()));
                    }
                    None => {}
                }
                veil_verifier::tpm::verify_gce(&att, &self.policy, Some(report_data), now, backend)
            }
            None => {
                let ev =
                    parse_evidence(evidence, "tpm", veil_evidence::tpm::TpmEvidence::parse_json)?;
                veil_verifier::tpm::verify_tpm_evidence(
                    &ev,
                    &self.policy,
                    Some(report_data),
                    now,
                    backend,
                )
            }
        }
        .map_err(|e| tpm_rejection(&e))?;
        let mut claims = json!({"tee": "tpm", "tpm": verified.claims()});
        if let Some((name, c)) = tee_claims {
            claims[name] = c;
        }
        Ok(claims)
    }
}

/// AWS Nitro Enclaves: the attestation document (base64 in JSON), chained
/// to the pinned AWS root; its `nonce` must be the 64-byte report data.
#[derive(Debug)]
struct NitroTee {
    roots: Vec<veil_verifier::x509::Cert>,
}

#[async_trait]
impl TeeVerifier for NitroTee {
    async fn verify(
        &self,
        evidence: &RawValue,
        report_data: &[u8; 64],
        init_data: Option<&InitDataDigest>,
        now: UnixTime,
    ) -> Result<Value, Rejection> {
        no_init_data(
            "nitro",
            init_data,
            "the document has no field that binds it",
        )?;
        let doc = parse_evidence(evidence, "nitro", veil_evidence::nitro::parse_json)?;
        let verified = veil_verifier::nitro::verify_doc(
            &doc,
            &self.roots,
            now,
            &veil_verifier::crypto::AWS_LC,
        )
        .map_err(|e| {
            Rejection::new(
                format!("nitro evidence rejected ({})", e.code()),
                e.to_string(),
            )
        })?;
        verified
            .check_nonce(report_data)
            .map_err(|e| unbound(e.to_string()))?;
        Ok(verified.claims())
    }
}

/// Arm CCA: the token (CoCo `{"token": [...]}`), platform signed by a
/// configured CPAK; the realm challenge must be the 64-byte report data,
/// and init-data (SHA-512) must equal the realm personalization value.
#[derive(Debug)]
struct CcaTee {
    cpaks: Vec<veil_verifier::cca::Cpak>,
}

#[async_trait]
impl TeeVerifier for CcaTee {
    async fn verify(
        &self,
        evidence: &RawValue,
        report_data: &[u8; 64],
        init_data: Option<&InitDataDigest>,
        _now: UnixTime,
    ) -> Result<Value, Rejection> {
        let token = parse_evidence(evidence, "cca", veil_evidence::cca::parse_json)?;
        let verified =
            veil_verifier::cca::verify_token(&token, &self.cpaks, &veil_verifier::crypto::AWS_LC)
                .map_err(|e| match e {
                    veil_verifier::cca::CcaError::NoTrustAnchor => Rejection::new(
                        "cca evidence is not accepted: no CPAK trust anchor is configured (endorsements.cca_cpaks)",
                        e.to_string(),
                    ),
                    other => Rejection::new(format!("cca evidence rejected: {other}"), other.to_string()),
                })?;
        verified
            .check_challenge(report_data)
            .map_err(|e| unbound(e.to_string()))?;
        let rpv = &token.realm_claims.personalization_value;
        if let Some(init) = init_data
            && init.digest != *rpv
        {
            return Err(Rejection::new(
                "init-data digest does not match the realm personalization value (64 bytes: use sha512)",
                format!(
                    "rpv {} init-data {} ({})",
                    hex::encode(rpv),
                    hex::encode(&init.digest),
                    init.algorithm
                ),
            ));
        }
        let mut claims = verified.claims();
        claims["measurement"] = claims["rim"].clone();
        Ok(claims)
    }
}

/// One kind of device (additional) evidence: verifies the CoCo evidence of
/// its devices against the device runtime digest and returns one claims
/// object per device (`gpu0`, `gpu1`, … in the token).
#[async_trait]
pub trait DeviceVerifier: Send + Sync + std::fmt::Debug {
    /// The submod name prefix (`gpu`).
    fn class(&self) -> &'static str;
    /// Verifies every device; a device that fails yields `Err` in its slot.
    async fn verify(
        &self,
        evidence: &RawValue,
        device_digest: &[u8; 48],
        now: UnixTime,
    ) -> Result<Vec<Result<Value, Rejection>>, Rejection>;
}

/// NVIDIA GPUs (Hopper, verified locally): each device's SPDM report with
/// its chain to the pinned NVIDIA root (or, dangerously, a simulated one);
/// the request nonce must be the first 32 bytes of the device digest, as
/// the CoCo attester sends it.
#[derive(Debug)]
struct NvidiaDevices {
    roots: Vec<veil_verifier::x509::Cert>,
    /// NVIDIA's OCSP responder and a client for it, when configured.
    ocsp: Option<veil_endorsements::ocsp::OcspClient>,
    /// Reference integrity manifests to compare measurements with.
    rims: Vec<veil_endorsements::rim::Rim>,
}

/// Asks the OCSP responder about every certificate of a verified
/// GPU chain (each against its issuer; the last against the root it chains
/// to), each request with a fresh nonce. Returns the `ocsp` claim: `status`
/// `good` when every answer is good, `unavailable` (with the reason) when
/// the responder cannot be reached or an answer is unusable — reported, for
/// policy to decide — and `Err` when a certificate is revoked.
pub async fn check_gpu_ocsp(
    client: &veil_endorsements::ocsp::OcspClient,
    chain: &[veil_verifier::x509::Cert],
    roots: &[veil_verifier::x509::Cert],
    at: UnixTime,
) -> Result<Value, String> {
    use veil_verifier::ocsp::{Revocation, cert_id, check_response};
    let backend = &veil_verifier::crypto::AWS_LC;
    let mut pairs: Vec<(&veil_verifier::x509::Cert, &veil_verifier::x509::Cert)> =
        chain.iter().zip(chain.iter().skip(1)).collect();
    if let Some(last) = chain.last()
        && !last.is_self_issued()
        && let Some(root) = roots.iter().find(|r| r.subject == last.issuer)
    {
        pairs.push((last, root));
    }
    let mut answers = Vec::new();
    let mut unavailable = None;
    for (cert, issuer) in pairs {
        if cert.is_self_issued() {
            continue;
        }
        let mut nonce = [0u8; 32];
        aws_lc_rs::rand::fill(&mut nonce).map_err(|_| "no randomness".to_string())?;
        let outcome = async {
            let id = cert_id(cert, issuer, backend).map_err(|e| e.to_string())?;
            let req = veil_endorsements::ocsp::encode_request(&[id], Some(&nonce))
                .map_err(|e| e.to_string())?;
            let resp = client.fetch(req).await.map_err(|e| e.to_string())?;
            check_response(&resp, cert, issuer, Some(&nonce), at, backend)
                .map_err(|e| e.to_string())
        }
        .await;
        match outcome {
            Ok(Revocation::Revoked { at }) => {
                return Err(format!("{} was revoked at {at} (OCSP)", cert.subject));
            }
            Ok(r) => {
                if r != Revocation::Good && unavailable.is_none() {
                    unavailable = Some(format!("{}: {}", cert.subject, r.name()));
                }
                answers.push(json!({"certificate": cert.subject, "status": r.name()}));
            }
            Err(e) => {
                if unavailable.is_none() {
                    unavailable = Some(format!("{}: {e}", cert.subject));
                }
                answers.push(json!({"certificate": cert.subject, "status": "unavailable"}));
            }
        }
    }
    Ok(match unavailable {
        None => json!({"status": "good", "certificates": answers}),
        Some(reason) => {
            json!({"status": "unavailable", "reason": reason, "certificates": answers})
        }
    })
}

#[async_trait]
impl DeviceVerifier for NvidiaDevices {
    fn class(&self) -> &'static str {
        "gpu"
    }

    async fn verify(
        &self,
        evidence: &RawValue,
        device_digest: &[u8; 48],
        now: UnixTime,
    ) -> Result<Vec<Result<Value, Rejection>>, Rejection> {
        let ev = parse_evidence(evidence, "nvidia", veil_evidence::nvidia::parse_json)?;
        let nonce = device_digest.get(..32).unwrap_or_default();
        let mut out = Vec::new();
        for d in &ev.device_evidence_list {
            let bad = |e: veil_verifier::nvidia::GpuError| {
                Rejection::new(
                    format!("GPU {} evidence rejected ({}): {e}", d.uuid, e.code()),
                    e.to_string(),
                )
            };
            let verified = (|| {
                let report = d.report_bytes().map_err(|e| bad(e.into()))?;
                let chain = veil_verifier::nvidia::parse_chain(
                    &d.certificate_bytes().map_err(|e| bad(e.into()))?,
                )
                .map_err(bad)?;
                let v = veil_verifier::nvidia::verify_report(
                    &d.arch,
                    &d.uuid,
                    &report,
                    &chain,
                    &self.roots,
                    now,
                    &veil_verifier::crypto::AWS_LC,
                )
                .map_err(bad)?;
                v.check_nonce(nonce).map_err(bad)?;
                let mut claims = v.claims().map_err(bad)?;
                if !self.rims.is_empty() {
                    claims["rim"] = veil_verifier::nvidia::compare_rims(&v, &self.rims);
                }
                Ok((claims, chain))
            })();
            let result = match verified {
                Ok((mut claims, chain)) => match &self.ocsp {
                    Some(client) => match check_gpu_ocsp(client, &chain, &self.roots, now).await {
                        Ok(ocsp) => {
                            claims["ocsp"] = ocsp;
                            Ok(claims)
                        }
                        Err(e) => Err(Rejection::new(
                            format!("GPU {} evidence rejected (revoked): {e}", d.uuid),
                            e,
                        )),
                    },
                    None => Ok(claims),
                },
                Err(r) => Err(r),
            };
            out.push(result);
        }
        Ok(out)
    }
}

/// CoCo `sample` evidence: `{"svn": "1", "report_data": "<base64 digest>"}`,
/// no signature at all. Registered only with
/// `dangerous_accept_sample_evidence`; its claims say `sample`.
#[derive(Debug)]
struct SampleTee;

#[async_trait]
impl TeeVerifier for SampleTee {
    async fn verify(
        &self,
        evidence: &RawValue,
        report_data: &[u8; 64],
        _init_data: Option<&InitDataDigest>,
        _now: UnixTime,
    ) -> Result<Value, Rejection> {
        let evidence = evidence_json(evidence, "sample")?;
        let rd = evidence
            .get("report_data")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                Rejection::new("sample evidence needs report_data", "missing report_data")
            })?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(rd)
            .map_err(|_| Rejection::new("sample report_data is not base64", "bad base64"))?;
        // The sample attester sends the bare 48-byte digest: compare exactly.
        if bytes.as_slice() != report_data.get(..48).unwrap_or(&[]) {
            return Err(unbound("sample report_data mismatch"));
        }
        Ok(json!({
            "tee": "sample",
            "sample": true,
            "svn": evidence.get("svn").cloned().unwrap_or(Value::Null),
            "report_data": hex::encode(&bytes),
        }))
    }
}

/// TDX and SGX quotes (DCAP), with collateral from files configured at
/// start and, when a PCS/PCCS is configured, fetched by FMSPC on demand.
#[derive(Debug)]
struct DcapTee {
    kind: veil_evidence::dcap::TeeType,
    verifier: Arc<veil_verifier::dcap::DcapVerifier>,
    collateral: Arc<Vec<veil_endorsements::dcap::Collateral>>,
    pcs: Option<Arc<veil_endorsements::pcs::PcsClient>>,
}

impl DcapTee {
    /// Verifies a quote with the configured collateral (then, if a PCS is
    /// configured, with fetched collateral); NotSupported and Revoked TCB
    /// statuses are refused.
    async fn verify_quote(
        &self,
        quote: &veil_evidence::dcap::Quote,
        now: UnixTime,
    ) -> Result<veil_verifier::dcap::VerifiedQuote, Rejection> {
        use veil_verifier::dcap::TcbStatus;
        let mut first_err = None;
        let mut verified = None;
        for c in self.collateral.iter() {
            match self.verifier.verify(quote, c, now) {
                Ok(v) => {
                    verified = Some(v);
                    break;
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        if verified.is_none() && self.pcs.is_some() {
            match self.fetch(quote).await {
                Ok(c) => match self.verifier.verify(quote, &c, now) {
                    Ok(v) => verified = Some(v),
                    Err(e) => first_err = Some(e),
                },
                Err(e) => {
                    tracing::warn!(error = %e, "could not fetch DCAP collateral");
                    if first_err.is_none() {
                        return Err(Rejection::new("DCAP collateral is unavailable", e));
                    }
                }
            }
        }
        if verified.is_none() && first_err.is_none() {
            return Err(Rejection::new(
                "no DCAP collateral is configured (endorsements.dcap_collateral or endorsements.pcs_url)",
                "no collateral",
            ));
        }
        let verified = match (verified, first_err) {
            (Some(v), _) => v,
            (None, Some(e)) => {
                return Err(Rejection::new(
                    format!("TDX evidence rejected at step {} ({})", e.step(), e.code()),
                    e.to_string(),
                ));
            }
            (None, None) => return Err(Rejection::new("TDX evidence rejected", "no collateral")),
        };
        let claims = verified.claims();
        if matches!(
            claims.tcb_status,
            TcbStatus::NotSupported | TcbStatus::Revoked
        ) {
            return Err(Rejection::new(
                format!("{:?} platform TCB status {}", self.kind, claims.tcb_status),
                "tcb status",
            ));
        }
        Ok(verified)
    }

    async fn fetch(
        &self,
        quote: &veil_evidence::dcap::Quote,
    ) -> Result<veil_endorsements::dcap::Collateral, String> {
        let pcs = self.pcs.as_ref().ok_or("no PCS/PCCS is configured")?;
        let chain =
            veil_endorsements::certs::decode_blobs("PCK chain", &quote.certification.pck_chain_pem)
                .map_err(|e| e.to_string())?;
        let Some(veil_endorsements::certs::Blob::Certificate(der)) = chain.into_iter().next()
        else {
            return Err("no PCK certificate".into());
        };
        let pck = veil_verifier::x509::Cert::parse(&der).map_err(|e| e.to_string())?;
        let ext = veil_verifier::dcap::pck_extensions(&pck)?;
        let tee = if self.kind == veil_evidence::dcap::TeeType::Tdx {
            veil_endorsements::pcs::DcapTee::Tdx
        } else {
            veil_endorsements::pcs::DcapTee::Sgx
        };
        pcs.collateral(tee, &ext.fmspc, pck.issuer.contains("Processor"))
            .await
            .map_err(|e| e.to_string())
    }
}

#[async_trait]
impl TeeVerifier for DcapTee {
    async fn verify(
        &self,
        evidence: &RawValue,
        report_data: &[u8; 64],
        init_data: Option<&InitDataDigest>,
        now: UnixTime,
    ) -> Result<Value, Rejection> {
        let (quote, eventlog) =
            parse_evidence(evidence, "TDX", veil_evidence::dcap::parse_evidence)?;
        if quote.header.tee_type != self.kind {
            return Err(Rejection::new(
                format!("not a {:?} quote", self.kind),
                "tee type",
            ));
        }
        let verified = self.verify_quote(&quote, now).await?;
        let claims = verified.claims();
        if claims.report_data.0.as_slice() != report_data.as_slice() {
            return Err(unbound("tdx report_data mismatch"));
        }
        if let Some(init) = init_data {
            let Some(mr_config_id) = &claims.mr_config_id else {
                return Err(Rejection::new(
                    "no MRCONFIGID in the quote",
                    "no mrconfigid",
                ));
            };
            if init.digest != mr_config_id.0 {
                return Err(Rejection::new(
                    format!(
                        "init-data digest ({}) does not match TDX MRCONFIGID (48 bytes: use sha384)",
                        init.algorithm
                    ),
                    "init-data mismatch",
                ));
            }
        }
        let mut v =
            serde_json::to_value(claims).map_err(|e| Rejection::new("internal", e.to_string()))?;
        if let Some(log) = eventlog {
            let events = veil_verifier::dcap::check_event_log(claims, &log).map_err(|e| {
                Rejection::new("the event log does not replay to the quote's RTMRs", e)
            })?;
            v["event_log"] = events;
        }
        Ok(v)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn raw(v: &Value) -> Box<RawValue> {
        serde_json::value::to_raw_value(v).unwrap()
    }

    fn registry(cfg: &Config) -> Registry {
        Registry::build(cfg).unwrap()
    }

    /// Azure evidence through the broker's verifier: the 48-byte binding
    /// digest must be the quote's qualifying data.
    #[tokio::test]
    async fn az_snp_vtpm_binds_the_report_data_digest() {
        let Some(dir) = veil_testkit::vectors() else {
            return;
        };
        let mut cfg = Config::default();
        cfg.endorsements.offline = true;
        cfg.endorsements.bundles.clear();
        let r = registry(&cfg);
        let v = r.get("az-snp-vtpm").unwrap();
        let ev: Value = serde_json::from_slice(&veil_testkit::read(
            &dir,
            "azure-cvm/trustee-az-snp-vtpm/evidence-genoa.json",
        ))
        .unwrap();
        let mut rd = [0u8; 64];
        rd[..48].copy_from_slice(
            &hex::decode("0218488bae25d2509232bf676f1a66a30d7372add909109b36016ef136f2938ca05475f8b46094de6b64270ea35d950f").unwrap(),
        );
        // The Genoa ASK/ARK are AMD's pinned roots; the VCEK comes with
        // the evidence.
        let claims = v
            .verify(&raw(&ev), &rd, None, UnixTime::now())
            .await
            .unwrap();
        assert_eq!(claims["tee"], "az-snp-vtpm");
        assert_eq!(
            claims["tpm"]["pcrs"]["sha256"]["0"],
            "afd689d0bb1c5f36f023fbaf574135f555a28a10c1f6b938d2a25e70c7783338"
        );
        rd[0] ^= 1;
        let e = v
            .verify(&raw(&ev), &rd, None, UnixTime::now())
            .await
            .unwrap_err();
        assert!(e.detail.contains("nonce_mismatch"), "{}", e.detail);
    }

    /// Azure TDX evidence through the broker: the TD quote with the
    /// configured collateral at its capture time, the vTPM nonce.
    #[tokio::test]
    async fn az_tdx_vtpm_uses_the_tdx_collateral() {
        let Some(dir) = veil_testkit::vectors() else {
            return;
        };
        let mut cfg = Config::default();
        cfg.endorsements.dcap_collateral =
            vec![dir.join(
                "azure-cvm/trustee-az-tdx-vtpm/ASSEMBLED_collateral_00806f050000_2025-10.json",
            )];
        let r = registry(&cfg);
        let v = r.get("az-tdx-vtpm").unwrap();
        let ev: Value = serde_json::from_slice(&veil_testkit::read(
            &dir,
            "azure-cvm/trustee-az-tdx-vtpm/evidence-v1.json",
        ))
        .unwrap();
        // This evidence's vTPM nonce is "challenge": not a KBS digest, so
        // the broker refuses it for any session...
        let at = UnixTime(1_761_920_231);
        let e = v.verify(&raw(&ev), &[0u8; 64], None, at).await.unwrap_err();
        assert!(e.detail.contains("nonce_mismatch"), "{}", e.detail);
        // ... after the TD quote and its binding checked out (a TD quote
        // outside its collateral's validity fails earlier).
        let e = v
            .verify(&raw(&ev), &[0u8; 64], None, UnixTime::now())
            .await
            .unwrap_err();
        assert!(!e.detail.contains("nonce_mismatch"), "{}", e.detail);
    }

    /// Nitro documents through the broker: chain and signature at the
    /// document's time, then the nonce must be the report data; expired
    /// leaves and init-data are refused.
    #[tokio::test]
    async fn nitro_binds_the_report_data() {
        let Some(dir) = veil_testkit::vectors() else {
            return;
        };
        let r = registry(&Config::default());
        let v = r.get("nitro").unwrap();
        let b64 = String::from_utf8(veil_testkit::read(
            &dir,
            "nitro/evervault/valid-attestation-doc-base64",
        ))
        .unwrap();
        let ev = json!({"attestation_document": b64.trim()});
        let at = UnixTime::parse("2023-09-18T15:03:31Z").unwrap();
        let e = v.verify(&raw(&ev), &[0u8; 64], None, at).await.unwrap_err();
        assert!(
            e.detail.contains("report data does not bind"),
            "{}",
            e.detail
        );
        let e = v
            .verify(&raw(&ev), &[0u8; 64], None, UnixTime::now())
            .await
            .unwrap_err();
        assert!(e.detail.contains("(chain)"), "{}", e.detail);
        let init = InitDataDigest {
            algorithm: "sha384".into(),
            digest: vec![0; 48],
        };
        let e = v
            .verify(&raw(&ev), &[0u8; 64], Some(&init), at)
            .await
            .unwrap_err();
        assert!(e.detail.contains("init-data"), "{}", e.detail);
    }

    /// CCA tokens through the broker: refused without a CPAK; with one,
    /// the realm challenge must be the report data and init-data the
    /// personalization value.
    #[tokio::test]
    async fn cca_needs_a_cpak_and_binds_the_challenge() {
        let Some(dir) = veil_testkit::vectors() else {
            return;
        };
        let token = veil_testkit::read(&dir, "cca/trustee/cca-example-token.cbor");
        let ev = json!({ "token": token });
        let parsed = veil_evidence::cca::CcaToken::parse(&token).unwrap();
        let mut rd = [0u8; 64];
        rd.copy_from_slice(&parsed.realm_claims.challenge);
        let none = registry(&Config::default());
        let e = none
            .get("cca")
            .unwrap()
            .verify(&raw(&ev), &rd, None, UnixTime::now())
            .await
            .unwrap_err();
        assert!(e.detail.contains("cca_cpaks"), "{}", e.detail);
        let mut cfg = Config::default();
        cfg.endorsements.cca_cpaks = vec![dir.join("cca/trustee/tastore.json")];
        let r = registry(&cfg);
        let v = r.get("cca").unwrap();
        let claims = v
            .verify(&raw(&ev), &rd, None, UnixTime::now())
            .await
            .unwrap();
        assert_eq!(claims["tee"], "cca");
        assert_eq!(claims["measurement"], claims["rim"]);
        let rpv = InitDataDigest {
            algorithm: "sha512".into(),
            digest: parsed.realm_claims.personalization_value.clone(),
        };
        v.verify(&raw(&ev), &rd, Some(&rpv), UnixTime::now())
            .await
            .unwrap();
        let other = InitDataDigest {
            algorithm: "sha512".into(),
            digest: vec![1; 64],
        };
        let e = v
            .verify(&raw(&ev), &rd, Some(&other), UnixTime::now())
            .await
            .unwrap_err();
        assert!(e.detail.contains("personalization"), "{}", e.detail);
        rd[0] ^= 1;
        let e = v
            .verify(&raw(&ev), &rd, None, UnixTime::now())
            .await
            .unwrap_err();
        assert!(
            e.detail.contains("report data does not bind"),
            "{}",
            e.detail
        );
        // GPUs are device evidence only, never a primary TEE.
        assert!(r.get("nvidia").is_none());
        assert!(r.device("nvidia").is_some());
    }

    /// A plain TPM quote: refused until its AK is allow-listed, and then
    /// only with its qualifying data as the report data.
    #[tokio::test]
    async fn tpm_needs_a_trusted_ak() {
        let Some(dir) = veil_testkit::vectors() else {
            return;
        };
        let ev: Value =
            serde_json::from_slice(&veil_testkit::read(&dir, "tpm/trustee/tpm_evidence.json"))
                .unwrap();
        let msg = base64::engine::general_purpose::STANDARD
            .decode(ev["tpm_quote"]["message"].as_str().unwrap())
            .unwrap();
        let q = veil_evidence::tpm::Quote::parse(&msg).unwrap();
        let rd: [u8; 64] = q.extra_data.as_slice().try_into().unwrap();
        let cfg = Config::default();
        let e = registry(&cfg)
            .get("tpm")
            .unwrap()
            .verify(&raw(&ev), &rd, None, UnixTime::now())
            .await
            .unwrap_err();
        assert!(e.detail.contains("not trusted"), "{}", e.detail);
        let tmp = tempfile::tempdir().unwrap();
        let ak = tmp.path().join("ak.der");
        std::fs::write(
            &ak,
            base64::engine::general_purpose::STANDARD
                .decode(ev["ak_public"].as_str().unwrap())
                .unwrap(),
        )
        .unwrap();
        let mut cfg = Config::default();
        cfg.endorsements.tpm_trusted_aks = vec![ak];
        let r = registry(&cfg);
        let v = r.get("tpm").unwrap();
        let claims = v
            .verify(&raw(&ev), &rd, None, UnixTime::now())
            .await
            .unwrap();
        assert_eq!(claims["tpm"]["ak_trust"], "allow-list");
        let mut other = rd;
        other[63] ^= 1;
        let e = v
            .verify(&raw(&ev), &other, None, UnixTime::now())
            .await
            .unwrap_err();
        assert!(e.detail.contains("nonce"), "{}", e.detail);
    }
}
