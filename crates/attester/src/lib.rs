//! Attesters: the guest side of evidence. One interface ([`Attester`]),
//! implementations chosen by detection or forced by configuration:
//!
//! * the Linux configfs-tsm report interface
//!   (`/sys/kernel/config/tsm/report`), for SNP (`sev_guest`), TDX
//!   (`tdx_guest`) and CCA (`arm_cca_guest`) guests ([`tsm::TsmAttester`]);
//! * `/dev/sev-guest` (`SNP_GET_EXT_REPORT`, [`dev::SevGuestAttester`])
//!   for kernels without configfs-tsm — the only `unsafe` code in Veil, in
//!   that one module, each block with its `// SAFETY:` argument;
//! * a TPM 2.0 (`/dev/tpmrm0`, or swtpm's command socket): a quote over
//!   the SHA-256 PCRs in the CoCo `tpm` shape ([`tpm::TpmAttester`]);
//! * Veil's simulated SNP TEE ([`sim::SimSnpAttester`]), only when
//!   configured explicitly.
//!
//! Evidence is returned in the exact CoCo JSON shape of each TEE, so it can
//! go to any KBS-protocol broker unchanged.
#![deny(unsafe_code)]

#[cfg(target_os = "linux")]
pub mod dev;
pub mod sim;
pub mod tpm;
pub mod tsm;

use serde_json::Value;

/// Why evidence could not be collected.
#[derive(Debug, thiserror::Error)]
pub enum AttestError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("configfs-tsm provider is {found:?}, expected {expected:?}")]
    WrongProvider { found: String, expected: String },
    #[error(
        "configfs-tsm: another writer changed the request (generation {found}, expected {expected}); retry"
    )]
    ConcurrentWriter { found: u64, expected: u64 },
    #[error("configfs-tsm: {0}")]
    Tsm(String),
    #[error("evidence: {0}")]
    Evidence(String),
    #[error("no TEE found: {0}")]
    NoTee(String),
}

/// A source of evidence.
pub trait Attester: Send + Sync + std::fmt::Debug {
    /// The KBS tee name (`snp`, `tdx`, ...).
    fn tee(&self) -> &'static str;
    /// Evidence whose report data is `report_data`, in the CoCo JSON shape.
    fn evidence(&self, report_data: &[u8; 64]) -> Result<Value, AttestError>;
    /// The init-data field the hardware measured at launch (SNP HOST_DATA,
    /// TDX MRCONFIGID), to check an init-data document against.
    fn launch_init_data(&self) -> Result<Vec<u8>, AttestError>;
}

/// A source of device (additional) evidence, such as a GPU.
pub trait DeviceAttester: Send + Sync + std::fmt::Debug {
    /// The KBS device name (`nvidia`).
    fn tee(&self) -> &'static str;
    /// Evidence bound to the device digest
    /// (`SHA-384(JCS({"nonce", "tee-pubkey"}))`), in the CoCo JSON shape.
    fn evidence(&self, device_digest: &[u8; 48]) -> Result<Value, AttestError>;
}

/// The CoCo `additional_evidence` string for `devices`: a JSON object of
/// their evidence by name, or `""` when there are none.
pub fn additional_evidence(
    devices: &[std::sync::Arc<dyn DeviceAttester>],
    device_digest: &[u8; 48],
) -> Result<String, AttestError> {
    if devices.is_empty() {
        return Ok(String::new());
    }
    let mut map = serde_json::Map::new();
    for d in devices {
        map.insert(d.tee().to_string(), d.evidence(device_digest)?);
    }
    serde_json::to_string(&map).map_err(|e| AttestError::Evidence(e.to_string()))
}
