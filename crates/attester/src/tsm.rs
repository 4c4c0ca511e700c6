//! configfs-tsm (Linux ≥ 6.7, `Documentation/ABI/testing/configfs-tsm-report`):
//!
//! 1. `mkdir <root>/<name>`: the kernel populates the attributes;
//! 2. `provider` names the TEE driver (`sev_guest`, `tdx_guest`, `arm_cca_guest`);
//! 3. write the 64-byte `inblob` (optionally `privlevel` first);
//! 4. read `outblob` (the report or quote) and, for SNP, `auxblob` (the
//!    certificate table);
//! 5. read `generation`: it counts writes to the request, so a value other
//!    than the number of our own writes means another process raced us and
//!    the output may answer its request, not ours; the result is refused;
//! 6. `rmdir`.
//!
//! The root is configurable so that tests run this exact code against a
//! directory tree that imitates the kernel's.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::{AttestError, Attester};

/// The kernel's default location.
pub const DEFAULT_ROOT: &str = "/sys/kernel/config/tsm/report";

/// The output of one request.
#[derive(Debug, Clone)]
pub struct TsmOutput {
    pub outblob: Vec<u8>,
    pub auxblob: Option<Vec<u8>>,
}

/// A configfs-tsm report interface.
#[derive(Debug, Clone)]
pub struct Tsm {
    root: PathBuf,
    /// How long to wait for the (imitated) kernel to populate a directory.
    wait: Duration,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> AttestError + '_ {
    move |source| AttestError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Removes the request directory however the request ends.
struct RequestDir(PathBuf);

impl Drop for RequestDir {
    fn drop(&mut self) {
        // configfs removes the attributes with the directory; an imitation
        // tree needs them removed first.
        if std::fs::remove_dir(&self.0).is_err() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl Tsm {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Tsm {
            root: root.into(),
            wait: Duration::from_secs(2),
        }
    }

    /// Whether the interface exists.
    pub fn available(&self) -> bool {
        self.root.is_dir()
    }

    /// The provider a fresh request directory reports (for detection).
    pub fn provider(&self) -> Result<String, AttestError> {
        let dir = self.mkdir()?;
        self.read_provider(&dir.0)
    }

    fn mkdir(&self) -> Result<RequestDir, AttestError> {
        let mut rnd = [0u8; 8];
        aws_lc_rs::rand::fill(&mut rnd).map_err(|_| AttestError::Tsm("no randomness".into()))?;
        let dir = self.root.join(format!("veil-{}", hex::encode(rnd)));
        std::fs::create_dir(&dir).map_err(io(&dir))?;
        Ok(RequestDir(dir))
    }

    fn read_provider(&self, dir: &Path) -> Result<String, AttestError> {
        let path = dir.join("provider");
        let start = Instant::now();
        loop {
            match std::fs::read_to_string(&path) {
                Ok(p) if !p.is_empty() => return Ok(p.trim_end_matches('\n').to_string()),
                Ok(_) | Err(_) if start.elapsed() < self.wait => {
                    std::thread::sleep(Duration::from_millis(1))
                }
                Ok(_) => return Err(AttestError::Tsm("empty provider".into())),
                Err(e) => return Err(io(&path)(e)),
            }
        }
    }

    fn read_generation(dir: &Path) -> Result<u64, AttestError> {
        let path = dir.join("generation");
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        text.trim()
            .parse()
            .map_err(|_| AttestError::Tsm(format!("generation {text:?} is not a number")))
    }

    /// One report request for `provider` with `inblob`.
    pub fn request(
        &self,
        provider: &str,
        inblob: &[u8; 64],
        privlevel: Option<u8>,
    ) -> Result<TsmOutput, AttestError> {
        let dir = self.mkdir()?;
        let found = self.read_provider(&dir.0)?;
        if found != provider {
            return Err(AttestError::WrongProvider {
                found,
                expected: provider.to_string(),
            });
        }
        let start_gen = Self::read_generation(&dir.0)?;
        let mut writes = 0;
        if let Some(level) = privlevel {
            let p = dir.0.join("privlevel");
            std::fs::write(&p, level.to_string()).map_err(io(&p))?;
            writes += 1;
        }
        let p = dir.0.join("inblob");
        std::fs::write(&p, inblob).map_err(io(&p))?;
        writes += 1;
        let out_path = dir.0.join("outblob");
        let start = Instant::now();
        let outblob = loop {
            match std::fs::read(&out_path) {
                Ok(b) if !b.is_empty() => break b,
                _ if start.elapsed() < self.wait => std::thread::sleep(Duration::from_millis(1)),
                Ok(_) => return Err(AttestError::Tsm("empty outblob".into())),
                Err(e) => return Err(io(&out_path)(e)),
            }
        };
        let aux_path = dir.0.join("auxblob");
        let auxblob = std::fs::read(&aux_path).ok().filter(|b| !b.is_empty());
        let generation = Self::read_generation(&dir.0)?;
        let expected = start_gen + writes;
        if generation != expected {
            return Err(AttestError::ConcurrentWriter {
                found: generation,
                expected,
            });
        }
        Ok(TsmOutput { outblob, auxblob })
    }
}

/// The SNP certificate table (GUID-indexed) from `auxblob`, as CoCo
/// `cert_chain` entries: a table of `{guid[16], offset u32, length u32}`
/// ending with an all-zero entry, offsets relative to the table start.
pub fn snp_cert_table(aux: &[u8]) -> Result<Vec<Value>, AttestError> {
    const VCEK: &str = "63da758d-e664-4564-adc5-f4b93be8accd";
    const VLEK: &str = "a8074bc2-a25a-483e-aae6-39c045a0b8a1";
    const ASK: &str = "4ab7b379-bbac-4fe4-a02f-05aef327c782";
    const ARK: &str = "c0b406a4-a803-4952-9743-3fb6014cd0ae";
    const CRL: &str = "92f81bc3-5811-4d3d-97ff-d19f88dc67ea";
    let mut out = Vec::new();
    for entry in aux.chunks(24) {
        let [g @ .., o0, o1, o2, o3, l0, l1, l2, l3]: [u8; 24] = entry
            .try_into()
            .map_err(|_| AttestError::Evidence("truncated certificate table".into()))?;
        if g.iter().all(|b| *b == 0) {
            return Ok(out);
        }
        let guid = format!(
            "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{}-{}",
            g[3],
            g[2],
            g[1],
            g[0],
            g[5],
            g[4],
            g[7],
            g[6],
            hex::encode(&g[8..10]),
            hex::encode(&g[10..16])
        );
        let off = u32::from_le_bytes([o0, o1, o2, o3]) as usize;
        let len = u32::from_le_bytes([l0, l1, l2, l3]) as usize;
        let data = off
            .checked_add(len)
            .and_then(|end| aux.get(off..end))
            .ok_or_else(|| AttestError::Evidence("certificate table entry out of range".into()))?;
        let kind = match guid.as_str() {
            VCEK => json!("VCEK"),
            VLEK => json!("VLEK"),
            ASK => json!("ASK"),
            ARK => json!("ARK"),
            CRL => json!("CRL"),
            other => json!({"OTHER": other}),
        };
        out.push(json!({"cert_type": kind, "data": data}));
    }
    Err(AttestError::Evidence(
        "certificate table without terminator".into(),
    ))
}

/// SNP evidence in the CoCo JSON shape from a raw report and the host's
/// certificate table (when there is one).
pub fn snp_evidence_json(report: &[u8], cert_table: Option<&[u8]>) -> Result<Value, AttestError> {
    let report = veil_evidence::snp::AttestationReport::parse(report)
        .map_err(|e| AttestError::Evidence(e.to_string()))?;
    let certs = match cert_table {
        Some(t) => snp_cert_table(t)?,
        None => Vec::new(),
    };
    let ev = veil_evidence::snp::SnpEvidence {
        report,
        cert_chain: Vec::new(),
    };
    let mut v: Value = serde_json::from_str(
        &veil_evidence::snp::coco::to_json(&ev)
            .map_err(|e| AttestError::Evidence(e.to_string()))?,
    )
    .map_err(|e| AttestError::Evidence(e.to_string()))?;
    v["cert_chain"] = if certs.is_empty() {
        Value::Null
    } else {
        Value::Array(certs)
    };
    Ok(v)
}

/// An attester over configfs-tsm.
#[derive(Debug, Clone)]
pub struct TsmAttester {
    tsm: Tsm,
    tee: &'static str,
}

impl TsmAttester {
    /// Detects the TEE behind configfs-tsm.
    pub fn detect(root: impl Into<PathBuf>) -> Result<Self, AttestError> {
        let tsm = Tsm::new(root);
        if !tsm.available() {
            return Err(AttestError::NoTee(
                "no configfs-tsm report interface".into(),
            ));
        }
        let tee = match tsm.provider()?.as_str() {
            "sev_guest" => "snp",
            "tdx_guest" => "tdx",
            "arm_cca_guest" => "cca",
            other => {
                return Err(AttestError::NoTee(format!(
                    "unknown configfs-tsm provider {other:?}"
                )));
            }
        };
        Ok(TsmAttester { tsm, tee })
    }

    fn provider(&self) -> &'static str {
        match self.tee {
            "snp" => "sev_guest",
            "tdx" => "tdx_guest",
            _ => "arm_cca_guest",
        }
    }
}

impl Attester for TsmAttester {
    fn tee(&self) -> &'static str {
        self.tee
    }

    fn evidence(&self, report_data: &[u8; 64]) -> Result<Value, AttestError> {
        let out = self.tsm.request(self.provider(), report_data, None)?;
        match self.tee {
            "snp" => snp_evidence_json(&out.outblob, out.auxblob.as_deref()),
            "tdx" => Ok(json!({"cc_eventlog": null, "quote": STANDARD.encode(&out.outblob)})),
            _ => Ok(json!({"token": out.outblob})),
        }
    }

    fn launch_init_data(&self) -> Result<Vec<u8>, AttestError> {
        let out = self.tsm.request(self.provider(), &[0u8; 64], None)?;
        match self.tee {
            "snp" => veil_evidence::snp::AttestationReport::parse(&out.outblob)
                .map(|r| r.host_data.to_vec())
                .map_err(|e| AttestError::Evidence(e.to_string())),
            "tdx" => {
                let quote = veil_evidence::dcap::Quote::parse(&out.outblob)
                    .map_err(|e| AttestError::Evidence(e.to_string()))?;
                match quote.body {
                    veil_evidence::dcap::Body::Td10(r) | veil_evidence::dcap::Body::Td15(r) => {
                        Ok(r.mr_config_id.to_vec())
                    }
                    veil_evidence::dcap::Body::Sgx(_) => Err(AttestError::Evidence(
                        "configfs-tsm returned an SGX quote".into(),
                    )),
                }
            }
            other => Err(AttestError::Evidence(format!(
                "no init-data field is known for {other}"
            ))),
        }
    }
}
