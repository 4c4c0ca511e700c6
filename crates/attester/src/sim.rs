//! The simulated SNP TEE as an attester: reports from `veil_sim`, with the
//! simulated VCEK and ASK in the certificate table as a host would supply
//! them. Selected only by explicit configuration (`--tee sim-snp`); a broker
//! accepts its evidence only when told to trust the simulated root by name.

use serde_json::Value;
use veil_evidence::snp::coco::CocoJson;
use veil_evidence::snp::{CertTableEntry, CertType, SnpEvidence};
use veil_sim::snp::{ReportParams, SimSnp};

use crate::{AttestError, Attester};

/// A simulated SNP guest: a platform and its launch parameters.
#[derive(Debug)]
pub struct SimSnpAttester {
    sim: SimSnp,
    params: ReportParams,
    vcek: Vec<u8>,
}

impl SimSnpAttester {
    /// A guest launched with `params` (measurement, HOST_DATA, policy...).
    pub fn new(sim: SimSnp, params: ReportParams) -> Result<Self, AttestError> {
        let vcek = sim
            .vcek_der(&params.tcb)
            .map_err(|e| AttestError::Evidence(e.to_string()))?;
        Ok(SimSnpAttester { sim, params, vcek })
    }

    /// Evidence bound to `report_data`, as a CoCo guest sends it: the
    /// report and the certificate table (VCEK, ASK). [`CocoJson`]
    /// serialises it once, straight into a larger document (the `/attest`
    /// body), without a JSON tree.
    pub fn coco_evidence(&self, report_data: &[u8; 64]) -> Result<CocoJson, AttestError> {
        let mut p = self.params.clone();
        p.report_data = *report_data;
        let report = self
            .sim
            .report(&p)
            .map_err(|e| AttestError::Evidence(e.to_string()))?;
        Ok(CocoJson(SnpEvidence {
            report,
            cert_chain: vec![
                CertTableEntry {
                    cert_type: CertType::Vcek,
                    data: self.vcek.clone(),
                },
                CertTableEntry {
                    cert_type: CertType::Ask,
                    data: self.sim.ask_der().to_vec(),
                },
            ],
        }))
    }
}

impl Attester for SimSnpAttester {
    fn tee(&self) -> &'static str {
        "snp"
    }

    fn evidence(&self, report_data: &[u8; 64]) -> Result<Value, AttestError> {
        serde_json::to_value(self.coco_evidence(report_data)?)
            .map_err(|e| AttestError::Evidence(e.to_string()))
    }

    fn launch_init_data(&self) -> Result<Vec<u8>, AttestError> {
        Ok(self.params.host_data.to_vec())
    }
}

/// A simulated TDX guest: quotes v4 from `veil_sim::tdx`, in the CoCo TDX
/// evidence shape `{"cc_eventlog": null, "quote": "<base64>"}`.
#[derive(Debug)]
pub struct SimTdxAttester {
    sim: veil_sim::tdx::SimTdx,
    params: veil_sim::tdx::TdParams,
    event_log: Vec<u8>,
}

impl SimTdxAttester {
    /// A TD launched with `params` (MRTD, MRCONFIGID, attributes...); its
    /// RTMRs are those of the simulator's measured-boot event log, which is
    /// sent as `cc_eventlog`.
    pub fn new(sim: veil_sim::tdx::SimTdx, mut params: veil_sim::tdx::TdParams) -> Self {
        let (event_log, rtmr) = veil_sim::tdx::measured_boot_log();
        params.rtmr = rtmr;
        SimTdxAttester {
            sim,
            params,
            event_log,
        }
    }
}

impl Attester for SimTdxAttester {
    fn tee(&self) -> &'static str {
        "tdx"
    }

    fn evidence(&self, report_data: &[u8; 64]) -> Result<Value, AttestError> {
        use base64::Engine as _;
        let mut p = self.params.clone();
        p.report_data = *report_data;
        let quote = self
            .sim
            .quote(&p)
            .map_err(|e| AttestError::Evidence(e.to_string()))?;
        let b64 = &base64::engine::general_purpose::STANDARD;
        Ok(serde_json::json!({
            "cc_eventlog": b64.encode(&self.event_log),
            "quote": b64.encode(quote),
        }))
    }

    fn launch_init_data(&self) -> Result<Vec<u8>, AttestError> {
        Ok(self.params.mr_config_id.to_vec())
    }
}

/// A simulated NVIDIA H100 as a device attester: SPDM reports from
/// `veil_sim::gpu` whose request nonce is the first 32 bytes of the device
/// digest, as the CoCo NVIDIA attester does. Selected only by explicit
/// configuration; a broker accepts it only when told to trust the
/// simulated GPU root.
#[derive(Debug)]
pub struct SimGpuAttester {
    sim: veil_sim::gpu::SimGpu,
}

impl SimGpuAttester {
    pub fn new(sim: veil_sim::gpu::SimGpu) -> Self {
        SimGpuAttester { sim }
    }
}

impl crate::DeviceAttester for SimGpuAttester {
    fn tee(&self) -> &'static str {
        "nvidia"
    }

    fn evidence(&self, device_digest: &[u8; 48]) -> Result<serde_json::Value, AttestError> {
        let mut nonce = [0u8; 32];
        nonce.copy_from_slice(device_digest.get(..32).unwrap_or(&[0; 32]));
        let ev = self
            .sim
            .evidence(&nonce)
            .map_err(|e| AttestError::Evidence(e.to_string()))?;
        serde_json::to_value(ev).map_err(|e| AttestError::Evidence(e.to_string()))
    }
}
