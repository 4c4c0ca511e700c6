//! The PostgreSQL store: the shared state of several broker replicas.
//!
//! Every replica connects to the same database through a sqlx pool; nothing
//! a later handshake step needs is kept in process memory, so `/auth`,
//! `/attest` and `/resource` may each land on a different replica.
//!
//! * Records (resources, policies, reference values, the sealed token key)
//!   live in `veil_records`, written with PostgreSQL's default synchronous
//!   commit: a write that returned is on disk.
//! * Sessions live in the UNLOGGED table `veil_sessions` (see the
//!   migration for why that is safe).
//! * Single use of a nonce is enforced by the database: the swap is one
//!   `UPDATE … WHERE value = $expected`, and PostgreSQL re-checks the
//!   condition after a concurrent update commits, so of two replicas that
//!   receive the same nonce at the same moment exactly one sees a row
//!   updated.
//! * `put_if_absent` is `INSERT … ON CONFLICT DO NOTHING` followed by a
//!   read, so replicas that start together agree on one token key.
//! * The sweep deletes expired sessions in small batches with
//!   `FOR UPDATE SKIP LOCKED`, so it never waits for (or blocks) a request
//!   that holds a session row.
//! * Every operation is bounded by `timeout`: while the database is down,
//!   requests fail fast with a store error (503 to clients) instead of
//!   hanging, and the pool reconnects by itself when it is back.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntGauge, Opts};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Row};

use super::{ChangeEvent, Namespace, Store, StoreError, check_session_key};
use crate::config::redact_url;

/// Embedded migrations (`crates/broker/migrations`). sqlx takes a
/// PostgreSQL advisory lock while it applies them, so replicas that start
/// at the same moment migrate once.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The channel on which the database announces changes to policies and
/// reference values (a trigger, migration 0002).
pub const CHANGE_CHANNEL: &str = "veil_records_changed";

/// Connection settings.
#[derive(Debug, Clone)]
pub struct PgSettings {
    /// Largest number of connections this replica opens.
    pub max_connections: u32,
    /// Upper bound of every store operation, including waiting for a
    /// connection.
    pub timeout: Duration,
}

impl Default for PgSettings {
    fn default() -> Self {
        PgSettings {
            max_connections: 16,
            timeout: Duration::from_secs(5),
        }
    }
}

/// PostgreSQL-backed [`Store`].
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    timeout: Duration,
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError(format!("postgres: {e}"))
}

impl PgStore {
    /// A pool for `url` (`postgres://…`). Connections are opened lazily:
    /// this succeeds while the database is down; [`PgStore::wait_ready`]
    /// waits for it.
    pub fn connect_lazy(url: &str, settings: &PgSettings) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError(format!("database_url {}: {e}", redact_url(url))))?
            .application_name("veil-broker")
            // Latency goes to veil_store_operation_seconds; statements carry
            // sealed secrets as parameters and are never logged.
            .disable_statement_logging();
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections.max(1))
            .min_connections(0)
            .acquire_timeout(settings.timeout)
            // No ping before every use (it would double the round trips of
            // a handshake); a connection broken by a database restart fails
            // its next statement, is discarded, and reads are retried once.
            .test_before_acquire(false)
            .idle_timeout(Duration::from_secs(300))
            .connect_lazy_with(options);
        Ok(PgStore {
            pool,
            timeout: settings.timeout,
        })
    }

    /// Waits up to `within` for the database to answer.
    pub async fn wait_ready(&self, within: Duration) -> Result<(), StoreError> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match self.ping().await {
                Ok(()) => return Ok(()),
                Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
                Err(e) => {
                    tracing::warn!(error = %e, "database not reachable yet; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.bounded(sqlx::query("SELECT 1").execute(&self.pool))
            .await
            .map(|_| ())
    }

    /// Applies the embedded migrations.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR
            .run(&self.pool)
            .await
            .map_err(|e| StoreError(format!("migrations: {e}")))
    }

    /// Fails unless every embedded migration has been applied (for
    /// replicas started with `database.migrate = false`).
    pub async fn check_schema(&self) -> Result<(), StoreError> {
        let want = MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
        let have: Option<i64> = self
            .bounded(
                sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations WHERE success")
                    .fetch_one(&self.pool),
            )
            .await
            .map_err(|e| {
                StoreError(format!(
                    "schema check ({e}); run `veil broker migrate` or set database.migrate = true"
                ))
            })?;
        if have.unwrap_or(0) < want {
            return Err(StoreError(format!(
                "the database schema is at version {} but this broker needs {want}; run `veil broker migrate`",
                have.unwrap_or(0)
            )));
        }
        Ok(())
    }

    /// The pool, for tests and tools.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn bounded<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.timeout, f).await {
            Ok(r) => r.map_err(err),
            Err(_) => Err(StoreError(format!(
                "postgres: no answer within {} ms",
                self.timeout.as_millis()
            ))),
        }
    }

    /// A read, retried once: the first attempt may land on a pooled
    /// connection that a database restart has broken.
    async fn read<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, sqlx::Error>>,
    {
        match self.bounded(f()).await {
            Ok(v) => Ok(v),
            Err(first) => {
                tracing::debug!(error = %first, "store read failed; retrying once");
                self.bounded(f()).await
            }
        }
    }
}

fn only_sessions_expire(ns: Namespace) -> Result<(), StoreError> {
    if ns == Namespace::Sessions {
        Ok(())
    } else {
        Err(StoreError(format!(
            "records of {} do not expire in this store",
            ns.name()
        )))
    }
}

#[async_trait]
impl Store for PgStore {
    async fn get(&self, ns: Namespace, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(|| async {
            if ns == Namespace::Sessions {
                sqlx::query_scalar::<_, Vec<u8>>("SELECT value FROM veil_sessions WHERE id = $1")
                    .bind(key)
                    .fetch_optional(&self.pool)
                    .await
            } else {
                sqlx::query_scalar::<_, Vec<u8>>(
                    "SELECT value FROM veil_records WHERE ns = $1 AND key = $2",
                )
                .bind(ns.name())
                .bind(key)
                .fetch_optional(&self.pool)
                .await
            }
        })
        .await
    }

    async fn put(&self, ns: Namespace, key: &str, value: Vec<u8>) -> Result<(), StoreError> {
        check_session_key(ns, key, None)?;
        let q = if ns == Namespace::Sessions {
            sqlx::query(
                "INSERT INTO veil_sessions (id, value, expires_at) VALUES ($1, $2, NULL) \
                 ON CONFLICT (id) DO UPDATE SET value = EXCLUDED.value, expires_at = NULL",
            )
            .bind(key)
            .bind(value)
        } else {
            sqlx::query(
                "INSERT INTO veil_records (ns, key, value) VALUES ($1, $2, $3) \
                 ON CONFLICT (ns, key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()",
            )
            .bind(ns.name())
            .bind(key)
            .bind(value)
        };
        self.bounded(q.execute(&self.pool)).await.map(|_| ())
    }

    async fn put_expiring(
        &self,
        ns: Namespace,
        key: &str,
        value: Vec<u8>,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        only_sessions_expire(ns)?;
        check_session_key(ns, key, Some(expires_at))?;
        let q = sqlx::query(
            "INSERT INTO veil_sessions (id, value, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (id) DO UPDATE SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at",
        )
        .bind(key)
        .bind(value)
        .bind(expires_at);
        self.bounded(q.execute(&self.pool)).await.map(|_| ())
    }

    async fn sweep_expired(&self, ns: Namespace, now: i64) -> Result<u64, StoreError> {
        only_sessions_expire(ns)?;
        let mut total = 0u64;
        loop {
            let q = sqlx::query(
                "DELETE FROM veil_sessions WHERE id IN (\
                   SELECT id FROM veil_sessions WHERE expires_at < $1 \
                   LIMIT 500 FOR UPDATE SKIP LOCKED)",
            )
            .bind(now);
            let n = self.bounded(q.execute(&self.pool)).await?.rows_affected();
            total = total.saturating_add(n);
            if n < 500 {
                return Ok(total);
            }
        }
    }

    async fn delete(&self, ns: Namespace, key: &str) -> Result<bool, StoreError> {
        let q = if ns == Namespace::Sessions {
            sqlx::query("DELETE FROM veil_sessions WHERE id = $1").bind(key)
        } else {
            sqlx::query("DELETE FROM veil_records WHERE ns = $1 AND key = $2")
                .bind(ns.name())
                .bind(key)
        };
        Ok(self.bounded(q.execute(&self.pool)).await?.rows_affected() > 0)
    }

    async fn list(&self, ns: Namespace) -> Result<Vec<String>, StoreError> {
        self.read(|| async {
            if ns == Namespace::Sessions {
                sqlx::query_scalar::<_, String>("SELECT id FROM veil_sessions ORDER BY id")
                    .fetch_all(&self.pool)
                    .await
            } else {
                sqlx::query_scalar::<_, String>(
                    "SELECT key FROM veil_records WHERE ns = $1 ORDER BY key",
                )
                .bind(ns.name())
                .fetch_all(&self.pool)
                .await
            }
        })
        .await
    }

    async fn scan(&self, ns: Namespace) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let rows = self
            .read(|| async {
                if ns == Namespace::Sessions {
                    sqlx::query("SELECT id AS key, value FROM veil_sessions ORDER BY id")
                        .fetch_all(&self.pool)
                        .await
                } else {
                    sqlx::query("SELECT key, value FROM veil_records WHERE ns = $1 ORDER BY key")
                        .bind(ns.name())
                        .fetch_all(&self.pool)
                        .await
                }
            })
            .await?;
        rows.into_iter()
            .map(|r| {
                Ok((
                    r.try_get("key").map_err(err)?,
                    r.try_get("value").map_err(err)?,
                ))
            })
            .collect()
    }

    async fn put_if_absent(
        &self,
        ns: Namespace,
        key: &str,
        value: Vec<u8>,
    ) -> Result<Vec<u8>, StoreError> {
        // Insert, or read the record that won; repeat if that record was
        // deleted in between (bounded: a delete racing every attempt is an
        // operator error worth reporting).
        for _ in 0..3 {
            let insert = if ns == Namespace::Sessions {
                sqlx::query(
                    "INSERT INTO veil_sessions (id, value) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                )
                .bind(key)
                .bind(&value)
            } else {
                sqlx::query(
                    "INSERT INTO veil_records (ns, key, value) VALUES ($1, $2, $3) \
                     ON CONFLICT DO NOTHING",
                )
                .bind(ns.name())
                .bind(key)
                .bind(&value)
            };
            if self
                .bounded(insert.execute(&self.pool))
                .await?
                .rows_affected()
                == 1
            {
                return Ok(value);
            }
            if let Some(existing) = self.get(ns, key).await? {
                return Ok(existing);
            }
        }
        Err(StoreError(format!(
            "put_if_absent {}/{key}: the record keeps disappearing",
            ns.name()
        )))
    }

    async fn compare_and_swap(
        &self,
        ns: Namespace,
        key: &str,
        expected: &[u8],
        new: Vec<u8>,
    ) -> Result<bool, StoreError> {
        let q = if ns == Namespace::Sessions {
            sqlx::query("UPDATE veil_sessions SET value = $3 WHERE id = $1 AND value = $2")
                .bind(key)
                .bind(expected)
                .bind(new)
        } else {
            sqlx::query(
                "UPDATE veil_records SET value = $4, updated_at = now() \
                 WHERE ns = $1 AND key = $2 AND value = $3",
            )
            .bind(ns.name())
            .bind(key)
            .bind(expected)
            .bind(new)
        };
        Ok(self.bounded(q.execute(&self.pool)).await?.rows_affected() == 1)
    }

    async fn insert_expiring(
        &self,
        ns: Namespace,
        key: &str,
        value: Vec<u8>,
        expires_at: i64,
    ) -> Result<bool, StoreError> {
        only_sessions_expire(ns)?;
        check_session_key(ns, key, Some(expires_at))?;
        // The primary key decides: of concurrent inserts (on any replica)
        // one creates the row, the others do nothing.
        let q = sqlx::query(
            "INSERT INTO veil_sessions (id, value, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(key)
        .bind(value)
        .bind(expires_at);
        Ok(self.bounded(q.execute(&self.pool)).await?.rows_affected() == 1)
    }

    async fn ready(&self) -> bool {
        self.ping().await.is_ok()
    }

    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn shared(&self) -> bool {
        true
    }

    async fn watch_changes(&self, tx: tokio::sync::mpsc::UnboundedSender<ChangeEvent>) {
        use sqlx::postgres::PgListener;
        while !tx.is_closed() {
            let mut listener = match PgListener::connect_with(&self.pool).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::debug!(error = %e, "change feed: cannot connect; retrying");
                    if tx.send(ChangeEvent::Disconnected).is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            // A lost connection is reported (Ok(None)) before reconnecting,
            // so the cache can stop trusting itself in between.
            listener.eager_reconnect(false);
            if let Err(e) = listener.listen(CHANGE_CHANNEL).await {
                tracing::debug!(error = %e, "change feed: LISTEN failed; retrying");
                let _ = tx.send(ChangeEvent::Disconnected);
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            if tx.send(ChangeEvent::Connected).is_err() {
                return;
            }
            loop {
                match listener.try_recv().await {
                    Ok(Some(_)) => {
                        if tx.send(ChangeEvent::Changed).is_err() {
                            return;
                        }
                    }
                    Ok(None) | Err(_) => {
                        tracing::warn!(
                            "change feed: connection to the database lost; caches bypassed until it is back"
                        );
                        if tx.send(ChangeEvent::Disconnected).is_err() {
                            return;
                        }
                        break;
                    }
                }
            }
        }
    }

    fn collectors(&self) -> Vec<Box<dyn Collector>> {
        match PoolCollector::new(self.pool.clone()) {
            Ok(c) => vec![Box::new(c)],
            Err(e) => {
                tracing::error!(error = %e, "pool metrics unavailable");
                Vec::new()
            }
        }
    }
}

/// Pool gauges, read at scrape time.
struct PoolCollector {
    pool: PgPool,
    size: IntGauge,
    idle: IntGauge,
    max: IntGauge,
}

impl PoolCollector {
    fn new(pool: PgPool) -> Result<Self, prometheus::Error> {
        Ok(PoolCollector {
            size: IntGauge::with_opts(Opts::new(
                "veil_db_pool_connections",
                "Open connections in the database pool",
            ))?,
            idle: IntGauge::with_opts(Opts::new(
                "veil_db_pool_idle_connections",
                "Idle connections in the database pool",
            ))?,
            max: IntGauge::with_opts(Opts::new(
                "veil_db_pool_max_connections",
                "Configured maximum of the database pool",
            ))?,
            pool,
        })
    }
}

impl Collector for PoolCollector {
    fn desc(&self) -> Vec<&Desc> {
        [&self.size, &self.idle, &self.max]
            .into_iter()
            .flat_map(|g| g.desc())
            .collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.size.set(i64::from(self.pool.size()));
        self.idle
            .set(i64::try_from(self.pool.num_idle()).unwrap_or(i64::MAX));
        self.max
            .set(i64::from(self.pool.options().get_max_connections()));
        [&self.size, &self.idle, &self.max]
            .into_iter()
            .flat_map(|g| g.collect())
            .collect()
    }
}

impl std::fmt::Debug for PoolCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolCollector").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn conformance() {
        let Some(url) = super::super::conformance::database_url() else {
            return;
        };
        let db = super::super::conformance::fresh_database(&url, "unit")
            .await
            .unwrap();
        let s = PgStore::connect_lazy(&db, &PgSettings::default()).unwrap();
        s.wait_ready(Duration::from_secs(5)).await.unwrap();
        s.migrate().await.unwrap();
        // Migrating twice (a second replica starting) is a no-op.
        s.migrate().await.unwrap();
        s.check_schema().await.unwrap();
        super::super::conformance::run(&s).await;
        let again = PgStore::connect_lazy(&db, &PgSettings::default()).unwrap();
        super::super::conformance::persisted(&again).await;
    }

    #[tokio::test]
    async fn unreachable_database_fails_fast() {
        let settings = PgSettings {
            max_connections: 2,
            timeout: Duration::from_millis(300),
        };
        // A port nothing listens on.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let s = PgStore::connect_lazy(&format!("postgres://veil@127.0.0.1:{port}/x"), &settings)
            .unwrap();
        let t = std::time::Instant::now();
        assert!(!s.ready().await);
        assert!(s.get(Namespace::Resources, "a").await.is_err());
        assert!(t.elapsed() < Duration::from_secs(3));
        assert!(
            s.wait_ready(Duration::from_millis(200)).await.is_err(),
            "wait_ready gives up"
        );
    }
}
