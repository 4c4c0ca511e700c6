//! AMD Key Distribution Service (KDS) client.
//!
//! Endpoints (base URL configurable, default `https://kdsintf.amd.com`):
//! * `/vcek/v1/{product}/{hwid}?blSPL=..&teeSPL=..&snpSPL=..&ucodeSPL=..[&fmcSPL=..]`
//!   → the VCEK (DER) for a chip at a TCB; hwID is 64 bytes of hex, 8 on Turin;
//! * `/vcek/v1/{product}/cert_chain`, `/vlek/v1/{product}/cert_chain` → ASK/ASVK
//!   and ARK (PEM);
//! * `/vcek/v1/{product}/crl`, `/vlek/v1/{product}/crl` → the ARK-signed CRL (DER).
//!
//! KDS rate-limits hard (about one certificate per 10 s per address), so the
//! client caches every answer on disk (a VCEK for a chip and TCB never
//! changes; chains and CRLs are refreshed after `crl_max_age`), spaces its
//! requests by `min_interval`, and on 429/503 waits for `Retry-After` (or an
//! exponential backoff) a bounded number of times instead of hammering.
//! With `offline` set it never touches the network.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::Mutex;
use veil_evidence::snp::{Product, TcbVersion};

use crate::EndorsementError;
use crate::certs::{Blob, decode_blobs};

/// The public AMD KDS.
pub const DEFAULT_BASE_URL: &str = "https://kdsintf.amd.com";

/// Which key family a chain or CRL is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFamily {
    Vcek,
    Vlek,
}

impl KeyFamily {
    fn path(self) -> &'static str {
        match self {
            KeyFamily::Vcek => "vcek",
            KeyFamily::Vlek => "vlek",
        }
    }
}

/// Client settings.
#[derive(Debug, Clone)]
pub struct KdsConfig {
    pub base_url: String,
    /// On-disk cache; `None` disables it.
    pub cache_dir: Option<PathBuf>,
    /// Never use the network: answer from the cache or fail.
    pub offline: bool,
    /// Least time between two requests to KDS.
    pub min_interval: Duration,
    /// First backoff after a 429/503 without `Retry-After`; doubles each time.
    pub backoff: Duration,
    /// The longest single wait honoured (a larger `Retry-After` gives up).
    pub max_wait: Duration,
    /// Attempts per request, including the first.
    pub max_attempts: u32,
    /// How long cached chains and CRLs are used before refetching.
    pub crl_max_age: Duration,
    /// Timeout of one HTTP request.
    pub timeout: Duration,
}

impl Default for KdsConfig {
    fn default() -> Self {
        KdsConfig {
            base_url: DEFAULT_BASE_URL.into(),
            cache_dir: None,
            offline: false,
            min_interval: Duration::from_secs(2),
            backoff: Duration::from_secs(10),
            max_wait: Duration::from_secs(120),
            max_attempts: 4,
            crl_max_age: Duration::from_secs(24 * 3600),
            timeout: Duration::from_secs(30),
        }
    }
}

/// The KDS client.
#[derive(Debug)]
pub struct KdsClient {
    cfg: KdsConfig,
    http: reqwest::Client,
    last_request: Mutex<Option<Instant>>,
}

/// Where an answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Cache,
    Network,
}

impl KdsClient {
    /// Builds a client.
    pub fn new(cfg: KdsConfig) -> Result<Self, EndorsementError> {
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .user_agent(concat!("veil/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| EndorsementError::Kds {
                url: cfg.base_url.clone(),
                reason: e.to_string(),
            })?;
        Ok(KdsClient {
            cfg,
            http,
            last_request: Mutex::new(None),
        })
    }

    /// The path and query of a VCEK request.
    pub fn vcek_path(product: Product, chip_id: &[u8; 64], tcb: &TcbVersion) -> String {
        let hwid = hex::encode(chip_id.get(..product.hwid_len()).unwrap_or(&[]));
        let mut q = format!(
            "/vcek/v1/{}/{hwid}?blSPL={}&teeSPL={}&snpSPL={}&ucodeSPL={}",
            product.name(),
            tcb.bootloader,
            tcb.tee,
            tcb.snp,
            tcb.microcode
        );
        if let Some(fmc) = tcb.fmc {
            q.push_str(&format!("&fmcSPL={fmc}"));
        }
        q
    }

    /// The VCEK (DER) of a chip at a TCB.
    pub async fn vcek(
        &self,
        product: Product,
        chip_id: &[u8; 64],
        tcb: &TcbVersion,
    ) -> Result<(Vec<u8>, Source), EndorsementError> {
        let path = Self::vcek_path(product, chip_id, tcb);
        let (bytes, src) = self.get(&path, None).await?;
        match decode_blobs(&path, &bytes)?.into_iter().next() {
            Some(Blob::Certificate(der)) => Ok((der, src)),
            _ => Err(EndorsementError::Decode {
                what: path,
                reason: "expected a certificate".into(),
            }),
        }
    }

    /// The ASK/ASVK and ARK (DER) of a product.
    pub async fn cert_chain(
        &self,
        product: Product,
        family: KeyFamily,
    ) -> Result<(Vec<Vec<u8>>, Source), EndorsementError> {
        let path = format!("/{}/v1/{}/cert_chain", family.path(), product.name());
        let (bytes, src) = self.get(&path, Some(self.cfg.crl_max_age)).await?;
        let certs = decode_blobs(&path, &bytes)?
            .into_iter()
            .filter_map(|b| match b {
                Blob::Certificate(d) => Some(d),
                Blob::Crl(_) => None,
            })
            .collect();
        Ok((certs, src))
    }

    /// The ARK-signed CRL (DER) of a product.
    pub async fn crl(
        &self,
        product: Product,
        family: KeyFamily,
    ) -> Result<(Vec<u8>, Source), EndorsementError> {
        let path = format!("/{}/v1/{}/crl", family.path(), product.name());
        let (bytes, src) = self.get(&path, Some(self.cfg.crl_max_age)).await?;
        match decode_blobs(&path, &bytes)?.into_iter().next() {
            Some(Blob::Crl(der)) => Ok((der, src)),
            _ => Err(EndorsementError::Decode {
                what: path,
                reason: "expected a CRL".into(),
            }),
        }
    }

    /// The full URL of a path.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.cfg.base_url.trim_end_matches('/'))
    }

    fn cache_file(&self, path: &str) -> Option<PathBuf> {
        let dir = self.cfg.cache_dir.as_ref()?;
        let name: String = path
            .trim_start_matches('/')
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        Some(dir.join("amd-kds").join(name))
    }

    async fn get(
        &self,
        path: &str,
        max_age: Option<Duration>,
    ) -> Result<(Vec<u8>, Source), EndorsementError> {
        let cache = self.cache_file(path);
        if let Some(file) = &cache
            && let Ok(meta) = std::fs::metadata(file)
        {
            let fresh = match max_age {
                None => true,
                Some(age) => meta
                    .modified()
                    .ok()
                    .and_then(|m| SystemTime::now().duration_since(m).ok())
                    .is_some_and(|d| d <= age || self.cfg.offline),
            };
            if fresh && let Ok(bytes) = std::fs::read(file) {
                return Ok((bytes, Source::Cache));
            }
        }
        if self.cfg.offline {
            return Err(EndorsementError::NotAvailableOffline(self.url(path)));
        }
        let bytes = self.fetch(path).await?;
        if let Some(file) = &cache {
            if let Some(parent) = file.parent() {
                let _ = std::fs::create_dir_all(parent);
            }
            // Write then rename, so a reader never sees half a file.
            let tmp = file.with_extension("tmp");
            if std::fs::write(&tmp, &bytes).is_ok() {
                let _ = std::fs::rename(&tmp, file);
            }
        }
        Ok((bytes, Source::Network))
    }

    async fn fetch(&self, path: &str) -> Result<Vec<u8>, EndorsementError> {
        let url = self.url(path);
        let mut wait = self.cfg.backoff;
        for attempt in 1..=self.cfg.max_attempts {
            {
                let mut last = self.last_request.lock().await;
                if let Some(t) = *last {
                    let since = t.elapsed();
                    if since < self.cfg.min_interval {
                        tokio::time::sleep(self.cfg.min_interval - since).await;
                    }
                }
                *last = Some(Instant::now());
            }
            let kds_err = |reason: String| EndorsementError::Kds {
                url: url.clone(),
                reason,
            };
            let resp = self
                .http
                .get(&url)
                .send()
                .await
                .map_err(|e| kds_err(e.to_string()))?;
            let status = resp.status();
            if status.is_success() {
                let body = resp.bytes().await.map_err(|e| kds_err(e.to_string()))?;
                return Ok(body.to_vec());
            }
            if status.as_u16() == 429 || status.as_u16() == 503 {
                let retry_after = resp
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                let delay = retry_after.unwrap_or(wait);
                if delay > self.cfg.max_wait || attempt == self.cfg.max_attempts {
                    break;
                }
                tracing::warn!(%url, status = status.as_u16(), ?delay, "AMD KDS asked us to slow down; waiting");
                tokio::time::sleep(delay).await;
                wait = wait.saturating_mul(2);
                continue;
            }
            return Err(kds_err(format!("HTTP {status}")));
        }
        Err(EndorsementError::RateLimited {
            url,
            attempts: self.cfg.max_attempts,
        })
    }
}
