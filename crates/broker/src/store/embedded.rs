//! The embedded store: redb (pure Rust, ACID, single file) under the data
//! directory. Each operation is one transaction. Writes of resources,
//! policies, reference values and keys are durable when they return (redb
//! commits with fsync), which is what lets state survive a SIGKILL.
//!
//! Session writes skip the fsync (`Durability::None`): redb persists them
//! with the next durable commit, in order, so after a crash the sessions are
//! a consistent prefix of their history. Losing a session only makes a guest
//! attest again; a nonce can never be accepted twice in a running broker
//! because single use is enforced by the transaction, not by the disk.
//! Session sweeps (every minute) commit durably: redb reuses pages that a
//! non-durable commit freed only after a durable one (with non-durable
//! sweeps the file settled at twice the size under session churn; see
//! `session_churn_reuses_pages`), and a crash loses at most the sessions
//! since the last sweep. A commit with fsync per second in the session
//! writer was tried and dropped: every fsync held up the inserts queued
//! behind it and tripled the p99 of the handshake benchmark.
//!
//! The one write of every handshake (the session's `insert_expiring`) goes
//! through a group commit: one writer thread takes every insert waiting at
//! that moment into one transaction, in arrival order, and answers each
//! after the commit. redb has one writer at a time anyway; a commit costs
//! several times an insert, so under load the commit is shared (BENCHMARKS.md)
//! and alone an insert costs what it did.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction,
};

use super::{
    ALL_NAMESPACES as ALL, Namespace, Store, StoreError, check_session_key, session_key_expiry,
};

fn table(ns: Namespace) -> TableDefinition<'static, &'static str, &'static [u8]> {
    TableDefinition::new(ns.name())
}

/// Expiry times (Unix seconds) of expiring records, keyed `<ns>/<key>`;
/// not for sessions whose key names its expiry
/// ([`super::session_key`]): those are found by key order, so a
/// handshake's insert writes one table, and a sweep reads only the
/// sessions it deletes (with the index it read every live session's
/// entry, hundreds of thousands at steady state, once a minute).
const EXPIRY: TableDefinition<'static, &'static str, i64> = TableDefinition::new("expiry");

fn expiry_key(ns: Namespace, key: &str) -> String {
    format!("{}/{key}", ns.name())
}

/// Whether an expiring record of `ns` under `key` has an entry in
/// [`EXPIRY`]: all but sessions whose key names its expiry.
fn indexed(ns: Namespace, key: &str) -> bool {
    ns != Namespace::Sessions || session_key_expiry(key).is_none()
}

/// Most expired records deleted per write transaction, so that a sweep
/// never holds redb's single writer for long.
const SWEEP_BATCH: usize = 512;

/// The page cache's default size, in MiB (`embedded_cache_mb`). redb's
/// own default is 1 GiB, which a busy broker fills with sessions within
/// minutes (≈ 3.1 KB each, 300 s each); the pages it reads again are the
/// newest sessions and the policies. With 64 MiB the broker's memory after
/// 30 s at 64 guests was 129 MB instead of 242–285 MB, at the same
/// handshake rate (BENCHMARKS.md).
pub const DEFAULT_CACHE_MB: u64 = 256;

/// Most session inserts committed in one transaction.
const GROUP_COMMIT_MAX: usize = 256;

/// redb-backed [`Store`].
#[derive(Debug, Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
    sessions: SessionWriter,
}

/// A session insert waiting for the group commit.
struct PendingInsert {
    key: String,
    value: Vec<u8>,
    expires_at: i64,
    done: tokio::sync::oneshot::Sender<Result<bool, StoreError>>,
}

/// The group-commit writer of session inserts (its thread ends when the
/// last handle is dropped).
#[derive(Debug, Clone)]
struct SessionWriter {
    queue: std::sync::mpsc::Sender<PendingInsert>,
}

impl SessionWriter {
    /// Starts the writer. It holds the database weakly, so that dropping
    /// the store closes the database at once (and its file lock with it).
    fn start(db: std::sync::Weak<Database>) -> Result<Self, StoreError> {
        let (queue, pending) = std::sync::mpsc::channel::<PendingInsert>();
        std::thread::Builder::new()
            .name("veil-sessions".into())
            .spawn(move || {
                while let Ok(first) = pending.recv() {
                    let mut batch = vec![first];
                    while batch.len() < GROUP_COMMIT_MAX {
                        match pending.try_recv() {
                            Ok(p) => batch.push(p),
                            Err(_) => break,
                        }
                    }
                    let outcome = match db.upgrade() {
                        Some(db) => insert_batch(&db, &batch),
                        None => Err(StoreError("the store is closed".into())),
                    };
                    match outcome {
                        Ok(created) => {
                            for (p, c) in batch.into_iter().zip(created) {
                                let _ = p.done.send(Ok(c));
                            }
                        }
                        Err(e) => {
                            for p in batch {
                                let _ = p.done.send(Err(StoreError(e.0.clone())));
                            }
                        }
                    }
                }
            })
            .map_err(|e| StoreError(format!("session writer thread: {e}")))?;
        Ok(SessionWriter { queue })
    }

    async fn insert(&self, p: PendingInsert) -> Result<bool, StoreError> {
        let (done, answer) = tokio::sync::oneshot::channel();
        self.queue
            .send(PendingInsert { done, ..p })
            .map_err(|_| StoreError("session writer stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError("session writer stopped".into()))?
    }
}

/// Inserts each absent session key, in order, in one transaction; the
/// outcome of each (created or already present).
fn insert_batch(db: &Database, batch: &[PendingInsert]) -> Result<Vec<bool>, StoreError> {
    let ns = Namespace::Sessions;
    let txn = begin_write(db, ns)?;
    let mut created = Vec::with_capacity(batch.len());
    {
        let mut t = txn.open_table(table(ns)).map_err(err)?;
        // Opened only for a key that needs an index entry: opening a table
        // in a write transaction makes the commit rewrite its root (session
        // keys name their expiry and have none).
        let mut e = None;
        for p in batch {
            if t.get(p.key.as_str()).map_err(err)?.is_some() {
                created.push(false);
            } else {
                t.insert(p.key.as_str(), p.value.as_slice()).map_err(err)?;
                if indexed(ns, &p.key) {
                    let e = match &mut e {
                        Some(e) => e,
                        None => e.insert(txn.open_table(EXPIRY).map_err(err)?),
                    };
                    e.insert(expiry_key(ns, &p.key).as_str(), p.expires_at)
                        .map_err(err)?;
                }
                created.push(true);
            }
        }
    }
    txn.commit().map_err(err)?;
    Ok(created)
}

/// Deletes up to [`SWEEP_BATCH`] sessions whose key names an expiry before
/// `now`: the first keys of the table. Keys of earlier versions (bare
/// nonces) that sort among them are passed over; the index sweeps them.
/// Durable, as every sweep: lets redb reuse the pages that the
/// non-durable session commits freed.
fn sweep_named(db: &Database, now: i64) -> Result<usize, StoreError> {
    let txn = db.begin_write().map_err(err)?;
    let n = {
        let mut t = txn.open_table(table(Namespace::Sessions)).map_err(err)?;
        // Every key below the bare expiry names an earlier one (or none).
        let bound = format!("{now:016x}");
        let mut doomed = Vec::new();
        for item in t.range(..bound.as_str()).map_err(err)? {
            let (k, _) = item.map_err(err)?;
            if session_key_expiry(k.value()).is_some_and(|at| at < now) {
                doomed.push(k.value().to_string());
                if doomed.len() == SWEEP_BATCH {
                    break;
                }
            }
        }
        for key in &doomed {
            t.remove(key.as_str()).map_err(err)?;
        }
        doomed.len()
    };
    if n == 0 {
        // Nothing to delete: no commit, no fsync (the index sweep that
        // follows commits durably in any case).
        txn.abort().map_err(err)?;
    } else {
        txn.commit().map_err(err)?;
    }
    Ok(n)
}

/// Deletes up to [`SWEEP_BATCH`] records of `ns` whose indexed expiry
/// (the [`EXPIRY`] table) is before `now`.
fn sweep_indexed(db: &Database, ns: Namespace, now: i64) -> Result<usize, StoreError> {
    let prefix = expiry_key(ns, "");
    // Durable: lets redb reuse the pages that earlier non-durable session
    // commits freed.
    let txn = db.begin_write().map_err(err)?;
    let n = {
        let mut e = txn.open_table(EXPIRY).map_err(err)?;
        let mut t = txn.open_table(table(ns)).map_err(err)?;
        let mut doomed = Vec::new();
        for item in e.range(prefix.as_str()..).map_err(err)? {
            let (k, at) = item.map_err(err)?;
            let Some(key) = k.value().strip_prefix(prefix.as_str()) else {
                break;
            };
            if at.value() < now {
                doomed.push((k.value().to_string(), key.to_string()));
                if doomed.len() == SWEEP_BATCH {
                    break;
                }
            }
        }
        for (ek, key) in &doomed {
            e.remove(ek.as_str()).map_err(err)?;
            t.remove(key.as_str()).map_err(err)?;
        }
        doomed.len()
    };
    txn.commit().map_err(err)?;
    Ok(n)
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError(e.to_string())
}

/// A write transaction, without fsync for the (ephemeral) sessions.
fn begin_write(db: &Database, ns: Namespace) -> Result<WriteTransaction, StoreError> {
    let mut txn = db.begin_write().map_err(err)?;
    if ns == Namespace::Sessions {
        txn.set_durability(Durability::None).map_err(err)?;
    }
    Ok(txn)
}

impl EmbeddedStore {
    /// Opens (or creates) `dir/veil.redb` with the default page cache
    /// ([`DEFAULT_CACHE_MB`]).
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Self::open_with_cache(dir, (DEFAULT_CACHE_MB as usize) << 20)
    }

    /// Opens (or creates) `dir/veil.redb`, caching at most `cache_bytes`
    /// of its pages in memory.
    pub fn open_with_cache(dir: &Path, cache_bytes: usize) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError(format!("{}: {e}", dir.display())))?;
        let db = Database::builder()
            .set_cache_size(cache_bytes)
            .create(dir.join("veil.redb"))
            .map_err(err)?;
        let txn = db.begin_write().map_err(err)?;
        for ns in ALL {
            txn.open_table(table(ns)).map_err(err)?;
        }
        txn.open_table(EXPIRY).map_err(err)?;
        txn.commit().map_err(err)?;
        let db = Arc::new(db);
        let sessions = SessionWriter::start(Arc::downgrade(&db))?;
        Ok(EmbeddedStore { db, sessions })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|e| StoreError(format!("store task: {e}")))?
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn get(&self, ns: Namespace, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        // A point read runs on the calling task: it takes no lock a writer
        // holds (redb readers see the last commit), and its pages come from
        // redb's page cache or, at worst, a few 4 KiB reads from the OS
        // page cache. Handing it to the blocking pool cost more than the
        // read (about 4 % of a handshake's CPU in the benchmark, and two
        // thread hand-offs of latency). Writes and scans stay on the pool.
        let txn = self.db.begin_read().map_err(err)?;
        let t = txn.open_table(table(ns)).map_err(err)?;
        Ok(t.get(key).map_err(err)?.map(|v| v.value().to_vec()))
    }

    async fn put(&self, ns: Namespace, key: &str, value: Vec<u8>) -> Result<(), StoreError> {
        check_session_key(ns, key, None)?;
        let key = key.to_string();
        self.blocking(move |db| {
            let txn = begin_write(db, ns)?;
            {
                let mut t = txn.open_table(table(ns)).map_err(err)?;
                t.insert(key.as_str(), value.as_slice()).map_err(err)?;
                let mut e = txn.open_table(EXPIRY).map_err(err)?;
                e.remove(expiry_key(ns, &key).as_str()).map_err(err)?;
            }
            txn.commit().map_err(err)
        })
        .await
    }

    async fn put_expiring(
        &self,
        ns: Namespace,
        key: &str,
        value: Vec<u8>,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        check_session_key(ns, key, Some(expires_at))?;
        let key = key.to_string();
        self.blocking(move |db| {
            let txn = begin_write(db, ns)?;
            {
                let mut t = txn.open_table(table(ns)).map_err(err)?;
                t.insert(key.as_str(), value.as_slice()).map_err(err)?;
                if indexed(ns, &key) {
                    let mut e = txn.open_table(EXPIRY).map_err(err)?;
                    e.insert(expiry_key(ns, &key).as_str(), expires_at)
                        .map_err(err)?;
                }
            }
            txn.commit().map_err(err)
        })
        .await
    }

    async fn sweep_expired(&self, ns: Namespace, now: i64) -> Result<u64, StoreError> {
        let mut total = 0u64;
        if ns == Namespace::Sessions {
            loop {
                let deleted = self.blocking(move |db| sweep_named(db, now)).await?;
                total = total.saturating_add(deleted as u64);
                if deleted < SWEEP_BATCH {
                    break;
                }
            }
        }
        loop {
            let deleted = self.blocking(move |db| sweep_indexed(db, ns, now)).await?;
            total = total.saturating_add(deleted as u64);
            if deleted < SWEEP_BATCH {
                return Ok(total);
            }
        }
    }

    async fn delete(&self, ns: Namespace, key: &str) -> Result<bool, StoreError> {
        let key = key.to_string();
        self.blocking(move |db| {
            let txn = begin_write(db, ns)?;
            let existed = {
                let mut t = txn.open_table(table(ns)).map_err(err)?;
                let mut e = txn.open_table(EXPIRY).map_err(err)?;
                e.remove(expiry_key(ns, &key).as_str()).map_err(err)?;
                t.remove(key.as_str()).map_err(err)?.is_some()
            };
            txn.commit().map_err(err)?;
            Ok(existed)
        })
        .await
    }

    async fn list(&self, ns: Namespace) -> Result<Vec<String>, StoreError> {
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(err)?;
            let t = txn.open_table(table(ns)).map_err(err)?;
            let mut out = Vec::new();
            for item in t.iter().map_err(err)? {
                let (k, _) = item.map_err(err)?;
                out.push(k.value().to_string());
            }
            Ok(out)
        })
        .await
    }

    async fn scan(&self, ns: Namespace) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(err)?;
            let t = txn.open_table(table(ns)).map_err(err)?;
            let mut out = Vec::new();
            for item in t.iter().map_err(err)? {
                let (k, v) = item.map_err(err)?;
                out.push((k.value().to_string(), v.value().to_vec()));
            }
            Ok(out)
        })
        .await
    }

    async fn put_if_absent(
        &self,
        ns: Namespace,
        key: &str,
        value: Vec<u8>,
    ) -> Result<Vec<u8>, StoreError> {
        let key = key.to_string();
        self.blocking(move |db| {
            let txn = begin_write(db, ns)?;
            let stored = {
                let mut t = txn.open_table(table(ns)).map_err(err)?;
                let existing = t
                    .get(key.as_str())
                    .map_err(err)?
                    .map(|v| v.value().to_vec());
                match existing {
                    Some(v) => v,
                    None => {
                        t.insert(key.as_str(), value.as_slice()).map_err(err)?;
                        value
                    }
                }
            };
            txn.commit().map_err(err)?;
            Ok(stored)
        })
        .await
    }

    async fn compare_and_swap(
        &self,
        ns: Namespace,
        key: &str,
        expected: &[u8],
        new: Vec<u8>,
    ) -> Result<bool, StoreError> {
        let key = key.to_string();
        let expected = expected.to_vec();
        self.blocking(move |db| {
            let txn = begin_write(db, ns)?;
            let swapped = {
                let mut t = txn.open_table(table(ns)).map_err(err)?;
                let current = t
                    .get(key.as_str())
                    .map_err(err)?
                    .map(|v| v.value().to_vec());
                if current.as_deref() == Some(expected.as_slice()) {
                    t.insert(key.as_str(), new.as_slice()).map_err(err)?;
                    true
                } else {
                    false
                }
            };
            txn.commit().map_err(err)?;
            Ok(swapped)
        })
        .await
    }

    async fn insert_expiring(
        &self,
        ns: Namespace,
        key: &str,
        value: Vec<u8>,
        expires_at: i64,
    ) -> Result<bool, StoreError> {
        check_session_key(ns, key, Some(expires_at))?;
        let key = key.to_string();
        if ns == Namespace::Sessions {
            let (done, _) = tokio::sync::oneshot::channel();
            return self
                .sessions
                .insert(PendingInsert {
                    key,
                    value,
                    expires_at,
                    done,
                })
                .await;
        }
        self.blocking(move |db| {
            let txn = begin_write(db, ns)?;
            let created = {
                let mut t = txn.open_table(table(ns)).map_err(err)?;
                if t.get(key.as_str()).map_err(err)?.is_some() {
                    false
                } else {
                    t.insert(key.as_str(), value.as_slice()).map_err(err)?;
                    let mut e = txn.open_table(EXPIRY).map_err(err)?;
                    e.insert(expiry_key(ns, &key).as_str(), expires_at)
                        .map_err(err)?;
                    true
                }
            };
            txn.commit().map_err(err)?;
            Ok(created)
        })
        .await
    }

    async fn ready(&self) -> bool {
        self.blocking(|db| db.begin_read().map(|_| ()).map_err(err))
            .await
            .is_ok()
    }

    fn kind(&self) -> &'static str {
        "embedded"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn conformance_and_persistence() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = EmbeddedStore::open(dir.path()).unwrap();
            super::super::conformance::run(&s).await;
        }
        let s = EmbeddedStore::open(dir.path()).unwrap();
        super::super::conformance::persisted(&s).await;
    }

    /// Sessions come and go (inserted without fsync, swept when expired):
    /// the pages of swept sessions are reused, so the file keeps its size.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn session_churn_reuses_pages() {
        let dir = tempfile::tempdir().unwrap();
        let s = EmbeddedStore::open(dir.path()).unwrap();
        let file = dir.path().join("veil.redb");
        let value = vec![7u8; 3000];
        let mut sizes = Vec::new();
        for round in 0..12 {
            let inserts = (0..400).map(|i| {
                let s = s.clone();
                let value = value.clone();
                async move {
                    // Already expired: the next sweep deletes them. Half
                    // the keys name their expiry, half are bare (indexed).
                    let key = format!("r{round}-{i}");
                    let key = if i % 2 == 0 {
                        crate::store::session_key(0, &key)
                    } else {
                        key
                    };
                    s.insert_expiring(Namespace::Sessions, &key, value, 0).await
                }
            });
            for r in futures_util::future::join_all(inserts).await {
                assert!(r.unwrap());
            }
            assert_eq!(s.sweep_expired(Namespace::Sessions, 1).await.unwrap(), 400);
            sizes.push(std::fs::metadata(&file).unwrap().len());
        }
        // 12 rounds of 1.2 MB each: the file keeps the size of the first
        // (with non-durable sweeps it doubled after the first round).
        assert!(
            sizes.iter().all(|s| *s <= sizes[0]),
            "file grows with churn: {sizes:?}"
        );
    }
}
