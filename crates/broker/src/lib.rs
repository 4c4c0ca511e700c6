//! `veil broker`: the relying party of the RATS architecture.
//!
//! It speaks the Confidential Containers KBS protocol 0.4.0 (`/kbs/v0/auth`,
//! `/attest`, `/resource/...`), verifies evidence through a registry of
//! verifiers built once at start, appraises the claims with a Rego policy
//! into an EAR trustworthiness vector, signs an EAR token, and releases
//! resources encrypted to the TEE key bound by the evidence when the resource
//! policy allows. All state lives in the [`store`]; nothing another replica
//! would need is kept in memory.
//!
//! The library exposes [`serve`] so tests bind `127.0.0.1:0` and stop the
//! server cleanly; `main` stays thin.
#![forbid(unsafe_code)]

pub mod admin_auth;
pub mod config;
pub mod error;
pub mod metrics;
pub mod policy;
mod routes;
pub mod secrets;
mod session;
pub mod store;
pub mod token;
pub mod verifiers;

use std::future::Future;
use std::sync::Arc;

use crate::admin_auth::AdminKey;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::policy::Policy;
use crate::secrets::Kek;
use crate::store::Store;
use crate::token::TokenKeys;
use crate::verifiers::Registry;

/// Everything a request handler needs.
#[derive(Debug)]
pub struct Broker {
    pub(crate) cfg: Config,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) kek: Kek,
    pub(crate) tokens: TokenKeys,
    pub(crate) registry: Registry,
    pub(crate) metrics: Metrics,
    pub(crate) admin_keys: Vec<AdminKey>,
    pub(crate) tls: bool,
    /// Prepared policies (parsed and analysed once per text, rule and
    /// data document).
    pub(crate) policy_cache: policy::PolicyCache,
}

impl Broker {
    /// Builds the broker: validates the configuration, opens the store,
    /// loads the KEK and the token key, builds the verifier registry.
    pub async fn build(cfg: Config) -> Result<Arc<Self>, String> {
        cfg.validate()
            .map_err(|e| format!("invalid configuration:\n  {e}"))?;
        let store = open_store(&cfg).await?;
        Self::with_store(cfg, store).await
    }

    /// Builds the broker over a given store.
    pub async fn with_store(cfg: Config, store: Arc<dyn Store>) -> Result<Arc<Self>, String> {
        // Policies and reference values are read on every handshake and
        // written rarely: cached, with invalidation across replicas.
        let store: Arc<dyn Store> = Arc::new(store::cached::Cached::new(store));
        let kek = Kek::load(cfg.kek_file.as_deref(), &cfg.data_dir)?;
        let tokens = TokenKeys::load_or_create(store.as_ref(), &kek).await?;
        let registry = Registry::build(&cfg)?;
        let metrics = Metrics::new().map_err(|e| e.to_string())?;
        for c in store.collectors() {
            metrics.register(c).map_err(|e| e.to_string())?;
        }
        let mut admin_keys = Vec::new();
        for p in &cfg.admin.keys {
            let pem = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
            admin_keys.push(AdminKey::from_pem(&pem).map_err(|e| format!("{}: {e}", p.display()))?);
        }
        if cfg.dangerous_allow_unauthenticated_admin {
            tracing::warn!(
                "DANGEROUS: the admin API accepts requests without authentication (dangerous_allow_unauthenticated_admin)"
            );
        }
        Policy::compile("default_cpu", policy::DEFAULT_ATTESTATION_POLICY)?;
        Policy::compile("resource-policy", policy::DEFAULT_RESOURCE_POLICY)?;
        let tls = cfg.tls_cert.is_some();
        Ok(Arc::new(Broker {
            cfg,
            store,
            kek,
            tokens,
            registry,
            metrics,
            admin_keys,
            tls,
            policy_cache: policy::PolicyCache::default(),
        }))
    }

    /// The public JWKS of token keys.
    pub fn jwks(&self) -> serde_json::Value {
        self.tokens.jwks()
    }
}

/// Opens the configured store: PostgreSQL when `database_url` is set
/// (waiting up to `database.startup_wait_secs` for it, then migrating or
/// checking the schema), else the embedded store under `data_dir`. Either
/// is wrapped with latency metrics.
pub async fn open_store(cfg: &Config) -> Result<Arc<dyn Store>, String> {
    use store::instrumented::Instrumented;
    let m = |e: prometheus::Error| e.to_string();
    if cfg.database_url.is_empty() {
        let cache = usize::try_from(cfg.embedded_cache_mb.saturating_mul(1 << 20))
            .map_err(|_| "embedded_cache_mb is too large for this machine".to_string())?;
        let s = store::embedded::EmbeddedStore::open_with_cache(&cfg.data_dir, cache)
            .map_err(|e| e.to_string())?;
        return Ok(Arc::new(Instrumented::new(s).map_err(m)?));
    }
    let pg = open_postgres(cfg).await?;
    if cfg.database.migrate {
        pg.migrate().await.map_err(|e| e.to_string())?;
    } else {
        pg.check_schema().await.map_err(|e| e.to_string())?;
    }
    tracing::info!(
        database = %config::redact_url(&cfg.database_url),
        "using the PostgreSQL store"
    );
    Ok(Arc::new(Instrumented::new(pg).map_err(m)?))
}

/// Connects to the configured PostgreSQL database (for `veil broker
/// migrate` and the store), waiting for it to answer.
pub async fn open_postgres(cfg: &Config) -> Result<store::postgres::PgStore, String> {
    let pg = store::postgres::PgStore::connect_lazy(&cfg.database_url, &cfg.pg_settings())
        .map_err(|e| e.to_string())?;
    pg.wait_ready(std::time::Duration::from_secs(
        cfg.database.startup_wait_secs,
    ))
    .await
    .map_err(|e| {
        format!(
            "database {} is not reachable: {e}",
            config::redact_url(&cfg.database_url)
        )
    })?;
    Ok(pg)
}

/// Serves until `shutdown` resolves, then drains in-flight requests.
pub async fn serve(
    listener: std::net::TcpListener,
    broker: Arc<Broker>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let app = routes::router(broker.clone());
    tokio::spawn(routes::sweep_sessions(broker.clone()));
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    if let (Some(cert), Some(key)) = (&broker.cfg.tls_cert, &broker.cfg.tls_key) {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        let handle = axum_server::Handle::new();
        let h = handle.clone();
        tokio::spawn(async move {
            shutdown.await;
            h.graceful_shutdown(Some(std::time::Duration::from_secs(10)));
        });
        axum_server::from_tcp_rustls(listener, tls)
            .map_err(|e| e.to_string())?
            .handle(handle)
            .serve(app.into_make_service())
            .await
            .map_err(|e| e.to_string())
    } else {
        tracing::warn!(
            "serving PLAIN HTTP (insecure_http = true): use only behind a TLS terminator; secrets are still JWE-encrypted to the TEE, but nothing authenticates this broker to guests"
        );
        let listener = tokio::net::TcpListener::from_std(listener).map_err(|e| e.to_string())?;
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(|e| e.to_string())
    }
}

/// Resolves on SIGTERM or ctrl-c.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}
