//! The agent's broker session: the token and TEE key are kept and reused
//! until the token expires or the broker answers 401, so a pod attests once,
//! not once per secret or image layer. Transport failures are retried with
//! exponential backoff.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use tokio::sync::Mutex;
use veil_attester::{Attester, DeviceAttester};
use veil_protocol::client::{ClientError, KbsClient};
use veil_protocol::jwe::KeyAlgorithm;

use crate::initdata::InitDataDoc;

/// Broker connection settings.
#[derive(Debug, Clone)]
pub struct KbsConfig {
    pub url: String,
    pub key_algorithm: KeyAlgorithm,
    /// Extra trusted CA (PEM) for the broker's TLS.
    pub ca_pem: Option<Vec<u8>>,
    /// Attempts per operation for transport errors.
    pub attempts: u32,
    pub backoff: Duration,
}

struct Session {
    client: KbsClient,
    token: String,
    exp: i64,
}

/// The token cache.
pub struct TokenCache {
    cfg: KbsConfig,
    attester: Arc<dyn Attester>,
    devices: Vec<Arc<dyn DeviceAttester>>,
    init_data: Option<InitDataDoc>,
    http: reqwest::Client,
    session: Mutex<Option<Session>>,
    attestations: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("url", &self.cfg.url)
            .finish_non_exhaustive()
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn token_exp(token: &str) -> i64 {
    token
        .split('.')
        .nth(1)
        .and_then(|p| B64URL.decode(p).ok())
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|c| c["exp"].as_i64())
        .unwrap_or(0)
}

impl TokenCache {
    pub fn new(
        cfg: KbsConfig,
        attester: Arc<dyn Attester>,
        init_data: Option<InitDataDoc>,
    ) -> Result<Self, String> {
        let mut b = reqwest::Client::builder()
            .cookie_store(true)
            .timeout(Duration::from_secs(30));
        if let Some(pem) = &cfg.ca_pem {
            b = b.add_root_certificate(
                reqwest::Certificate::from_pem(pem).map_err(|e| format!("CA: {e}"))?,
            );
        }
        Ok(TokenCache {
            cfg,
            attester,
            devices: Vec::new(),
            init_data,
            http: b.build().map_err(|e| e.to_string())?,
            session: Mutex::new(None),
            attestations: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Adds device attesters (GPUs) whose evidence goes with every
    /// attestation as `additional_evidence`.
    pub fn with_devices(mut self, devices: Vec<Arc<dyn DeviceAttester>>) -> Self {
        self.devices = devices;
        self
    }

    /// How many attestations this agent has performed.
    pub fn attestations(&self) -> u64 {
        self.attestations.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The TEE name.
    pub fn tee(&self) -> &'static str {
        self.attester.tee()
    }

    /// The device (additional evidence) names, e.g. `["nvidia"]`.
    pub fn device_tees(&self) -> Vec<&'static str> {
        self.devices.iter().map(|d| d.tee()).collect()
    }

    /// The broker URL.
    pub fn url(&self) -> &str {
        &self.cfg.url
    }

    async fn attest(&self) -> Result<Session, ClientError> {
        let client =
            KbsClient::with_client(&self.cfg.url, self.cfg.key_algorithm, self.http.clone())?;
        let attester = self.attester.clone();
        let init = self.init_data.as_ref().map(InitDataDoc::wire);
        let token = client
            .attest_composite(
                attester.tee(),
                init.as_ref(),
                |_, device_digest| {
                    veil_attester::additional_evidence(&self.devices, device_digest)
                        .map_err(|e| e.to_string())
                },
                |_, digest| {
                    attester
                        .evidence(&veil_protocol::binding::expected_report_data(digest))
                        .map_err(|e| e.to_string())
                },
            )
            .await?;
        self.attestations
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(tee = attester.tee(), "attested to the broker");
        let exp = token_exp(&token);
        Ok(Session { client, token, exp })
    }

    async fn with_retries<T, F, Fut>(&self, mut f: F) -> Result<T, ClientError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, ClientError>>,
    {
        let mut delay = self.cfg.backoff;
        let mut attempt = 1;
        loop {
            match f().await {
                Err(ClientError::Transport { step, detail }) if attempt < self.cfg.attempts => {
                    tracing::warn!(step, detail, attempt, "broker unreachable; retrying");
                    tokio::time::sleep(delay).await;
                    delay = delay.saturating_mul(2);
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// The current token, attesting if there is none or it is about to expire.
    pub async fn token(&self) -> Result<(String, i64), ClientError> {
        let mut guard = self.session.lock().await;
        if let Some(s) = guard.as_ref()
            && s.exp > now() + 5
        {
            return Ok((s.token.clone(), s.exp));
        }
        let s = self.with_retries(|| self.attest()).await?;
        let out = (s.token.clone(), s.exp);
        *guard = Some(s);
        Ok(out)
    }

    /// A resource, decrypted; re-attests once if the broker answers 401.
    pub async fn resource(&self, path: &str) -> Result<Vec<u8>, ClientError> {
        for round in 0..2 {
            self.token().await?;
            let result = {
                let guard = self.session.lock().await;
                let Some(s) = guard.as_ref() else { continue };
                let token = s.token.clone();
                self.with_retries(|| s.client.resource(path, Some(&token)))
                    .await
            };
            match result {
                Err(ClientError::Status { status: 401, .. }) if round == 0 => {
                    tracing::info!("token refused; attesting again");
                    *self.session.lock().await = None;
                }
                other => return other,
            }
        }
        Err(ClientError::Protocol(
            "the broker refused a fresh token".into(),
        ))
    }

    /// Evidence for arbitrary runtime data (the `/aa/evidence` endpoint).
    pub fn evidence(&self, report_data: &[u8; 64]) -> Result<serde_json::Value, String> {
        self.attester
            .evidence(report_data)
            .map_err(|e| e.to_string())
    }
}
