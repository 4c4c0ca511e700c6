//! Intel PCS v4 / PCCS client for DCAP collateral.
//!
//! * `GET {base}/{sgx|tdx}/certification/v4/tcb?fmspc=…` → `{"tcbInfo": …,
//!   "signature": "<hex>"}`, issuer chain in the `TCB-Info-Issuer-Chain`
//!   header (URL-encoded PEM);
//! * `GET {base}/{sgx|tdx}/certification/v4/qe/identity` →
//!   `{"enclaveIdentity": …, "signature": …}`, chain in
//!   `SGX-Enclave-Identity-Issuer-Chain`;
//! * `GET {base}/sgx/certification/v4/pckcrl?ca={platform|processor}&encoding=der`
//!   → the PCK CRL (DER), chain in `SGX-PCK-CRL-Issuer-Chain`;
//! * the root CA CRL from a configurable URL (a PCCS serves it at
//!   `/sgx/certification/v4/rootcacrl`).
//!
//! The signed JSON objects are kept as the exact text received (the
//! signature covers those bytes), and the pieces are assembled into a
//! [`Collateral`]. Answers are cached on disk by URL; with `offline` set the
//! network is never used.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::EndorsementError;
use crate::dcap::Collateral;

/// The public Intel PCS.
pub const DEFAULT_BASE_URL: &str = "https://api.trustedservices.intel.com";

/// Client settings.
#[derive(Debug, Clone)]
pub struct PcsConfig {
    pub base_url: String,
    /// Where the root CA CRL is fetched (default: the PCCS path on `base_url`).
    pub root_ca_crl_url: Option<String>,
    pub cache_dir: Option<PathBuf>,
    pub offline: bool,
    pub timeout: Duration,
    /// Cached answers older than this are fetched again (collateral is
    /// refreshed well before its `nextUpdate`, typically 30 days); if the
    /// refresh fails, the cached answer is used.
    pub max_age: Duration,
}

impl Default for PcsConfig {
    fn default() -> Self {
        PcsConfig {
            base_url: DEFAULT_BASE_URL.into(),
            root_ca_crl_url: None,
            cache_dir: None,
            offline: false,
            timeout: Duration::from_secs(30),
            max_age: Duration::from_secs(24 * 3600),
        }
    }
}

/// Which TEE's collateral.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DcapTee {
    Sgx,
    Tdx,
}

impl DcapTee {
    fn path(self) -> &'static str {
        match self {
            DcapTee::Sgx => "sgx",
            DcapTee::Tdx => "tdx",
        }
    }
}

/// The PCS client.
#[derive(Debug)]
pub struct PcsClient {
    cfg: PcsConfig,
    http: reqwest::Client,
}

#[derive(Deserialize)]
struct SignedTcbInfo<'a> {
    #[serde(borrow, rename = "tcbInfo")]
    tcb_info: &'a RawValue,
    signature: String,
}

#[derive(Deserialize)]
struct SignedIdentity<'a> {
    #[serde(borrow, rename = "enclaveIdentity")]
    identity: &'a RawValue,
    signature: String,
}

/// One answer: body and the issuer-chain header (decoded).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Answer {
    body: Vec<u8>,
    chain: String,
    /// Unix seconds when it was fetched.
    #[serde(default)]
    fetched: u64,
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'%'
            && let Some(h) = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
            && let Ok(v) = u8::from_str_radix(h, 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(c);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl PcsClient {
    pub fn new(cfg: PcsConfig) -> Result<Self, EndorsementError> {
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .user_agent(concat!("veil/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| EndorsementError::Kds {
                url: cfg.base_url.clone(),
                reason: e.to_string(),
            })?;
        Ok(PcsClient { cfg, http })
    }

    /// Cache entries are named by path and query, not host: collateral is
    /// signed, so any PCS or PCCS serving it serves the same bytes.
    fn cache_file(&self, url: &str) -> Option<PathBuf> {
        let dir = self.cfg.cache_dir.as_ref()?;
        let path = url.splitn(4, '/').nth(3).unwrap_or(url);
        let name: String = path
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        Some(dir.join("intel-pcs").join(name))
    }

    async fn get(&self, url: &str, chain_header: Option<&str>) -> Result<Answer, EndorsementError> {
        let cache = self.cache_file(url);
        let cached = cache
            .as_ref()
            .and_then(|f| std::fs::read(f).ok())
            .and_then(|b| serde_json::from_slice::<Answer>(&b).ok());
        if let Some(a) = &cached
            && (self.cfg.offline
                || unix_now().saturating_sub(a.fetched) <= self.cfg.max_age.as_secs())
        {
            return Ok(a.clone());
        }
        if self.cfg.offline {
            return Err(EndorsementError::NotAvailableOffline(url.to_string()));
        }
        match self.fetch(url, chain_header, cache.as_ref()).await {
            Ok(a) => Ok(a),
            Err(e) => match cached {
                Some(a) => {
                    tracing::warn!(%url, error = %e, "PCS refresh failed; using the cached answer");
                    Ok(a)
                }
                None => Err(e),
            },
        }
    }

    async fn fetch(
        &self,
        url: &str,
        chain_header: Option<&str>,
        cache: Option<&PathBuf>,
    ) -> Result<Answer, EndorsementError> {
        let err = |reason: String| EndorsementError::Kds {
            url: url.to_string(),
            reason,
        };
        let resp = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| err(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(err(format!("HTTP {}", resp.status())));
        }
        let chain = match chain_header {
            Some(h) => percent_decode(
                resp.headers()
                    .get(h)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| err(format!("no {h} header")))?,
            ),
            None => String::new(),
        };
        let body = resp.bytes().await.map_err(|e| err(e.to_string()))?.to_vec();
        let answer = Answer {
            body,
            chain,
            fetched: unix_now(),
        };
        if let Some(f) = cache {
            if let Some(parent) = f.parent() {
                let _ = std::fs::create_dir_all(parent);
            }
            if let Ok(json) = serde_json::to_vec(&answer) {
                let tmp = f.with_extension("tmp");
                if std::fs::write(&tmp, json).is_ok() {
                    let _ = std::fs::rename(&tmp, f);
                }
            }
        }
        Ok(answer)
    }

    /// Fetches and assembles the collateral for a platform.
    pub async fn collateral(
        &self,
        tee: DcapTee,
        fmspc: &[u8],
        processor_ca: bool,
    ) -> Result<Collateral, EndorsementError> {
        let base = self.cfg.base_url.trim_end_matches('/');
        let bad = |what: &str, e: String| EndorsementError::Bundle(format!("PCS {what}: {e}"));
        let tcb = self
            .get(
                &format!(
                    "{base}/{}/certification/v4/tcb?fmspc={}",
                    tee.path(),
                    hex::encode(fmspc)
                ),
                Some("TCB-Info-Issuer-Chain"),
            )
            .await?;
        let t: SignedTcbInfo<'_> =
            serde_json::from_slice(&tcb.body).map_err(|e| bad("TCB info", e.to_string()))?;
        let qe = self
            .get(
                &format!("{base}/{}/certification/v4/qe/identity", tee.path()),
                Some("SGX-Enclave-Identity-Issuer-Chain"),
            )
            .await?;
        let q: SignedIdentity<'_> =
            serde_json::from_slice(&qe.body).map_err(|e| bad("QE identity", e.to_string()))?;
        let ca = if processor_ca {
            "processor"
        } else {
            "platform"
        };
        let crl = self
            .get(
                &format!("{base}/sgx/certification/v4/pckcrl?ca={ca}&encoding=der"),
                Some("SGX-PCK-CRL-Issuer-Chain"),
            )
            .await?;
        let root_url = self
            .cfg
            .root_ca_crl_url
            .clone()
            .unwrap_or_else(|| format!("{base}/sgx/certification/v4/rootcacrl"));
        let root = self.get(&root_url, None).await?;
        // A PCCS answers the root CRL as hex text; Intel's distribution point as DER.
        let root_hex = match std::str::from_utf8(&root.body) {
            Ok(t) if t.trim().bytes().all(|b| b.is_ascii_hexdigit()) => t.trim().to_string(),
            _ => hex::encode(&root.body),
        };
        Ok(Collateral {
            pck_crl_issuer_chain: crl.chain,
            root_ca_crl: root_hex,
            pck_crl: hex::encode(&crl.body),
            tcb_info_issuer_chain: tcb.chain,
            tcb_info: t.tcb_info.get().to_string(),
            tcb_info_signature: t.signature,
            qe_identity_issuer_chain: qe.chain,
            qe_identity: q.identity.get().to_string(),
            qe_identity_signature: q.signature,
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn percent_decoding() {
        assert_eq!(
            super::percent_decode("-----BEGIN%20CERTIFICATE-----%0Aab%2Fc"),
            "-----BEGIN CERTIFICATE-----\nab/c"
        );
        assert_eq!(super::percent_decode("100%"), "100%");
    }
}
