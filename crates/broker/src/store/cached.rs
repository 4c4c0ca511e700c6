//! A read cache for what every handshake reads and operators rarely write:
//! policies and reference values. Without it an attestation reads them
//! from the store on every request (three of a handshake's eight store
//! round trips on PostgreSQL).
//!
//! Correctness rules:
//! * Writes through this broker invalidate at once.
//! * For a shared store (replicas on PostgreSQL), entries are used only
//!   while the store's change feed is connected; the database announces
//!   every change (a trigger, so imports and manual edits count too) and
//!   each replica drops its entries when it hears it. While the feed is
//!   down the cache is bypassed. Another replica's write is therefore seen
//!   within the notification delay (milliseconds), not instantly.
//! * A generation counter stops a read that raced an invalidation from
//!   putting the old value back.
//! * Entries also expire after [`MAX_AGE`], a backstop for a feed
//!   connection that died silently.
//! * Resources (secrets) and sessions are never cached.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{ChangeEvent, Namespace, Store, StoreError};

/// Longest time an entry is served without a re-read.
pub const MAX_AGE: Duration = Duration::from_secs(10);

fn cached(ns: Namespace) -> bool {
    matches!(ns, Namespace::Policies | Namespace::ReferenceValues)
}

#[derive(Debug, Clone)]
enum Entry {
    Get(Option<Vec<u8>>),
    Scan(Vec<(String, Vec<u8>)>),
}

/// (namespace, key or "" for a scan, is-a-scan).
type EntryKey = (Namespace, String, bool);

#[derive(Debug, Default)]
struct State {
    /// Whether entries may be used (always for an unshared store; for a
    /// shared one, only while the change feed is connected).
    live: AtomicBool,
    generation: AtomicU64,
    /// Entries and when they were read.
    entries: Mutex<HashMap<EntryKey, (Instant, Entry)>>,
}

impl State {
    fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut e) = self.entries.lock() {
            e.clear();
        }
    }

    fn lookup(&self, k: &EntryKey) -> Option<Entry> {
        if !self.live.load(Ordering::SeqCst) {
            return None;
        }
        let e = self.entries.lock().ok()?;
        let (at, v) = e.get(k)?;
        (at.elapsed() < MAX_AGE).then(|| v.clone())
    }

    fn insert(&self, k: EntryKey, generation: u64, v: Entry) {
        if !self.live.load(Ordering::SeqCst) {
            return;
        }
        if let Ok(mut e) = self.entries.lock()
            && self.generation.load(Ordering::SeqCst) == generation
        {
            e.insert(k, (Instant::now(), v));
        }
    }
}

/// Caches reads of policies and reference values of `S`.
#[derive(Debug)]
pub struct Cached {
    inner: Arc<dyn Store>,
    state: Arc<State>,
}

impl Cached {
    /// Wraps `inner`. For a shared store this starts following its change
    /// feed (a task that ends when the cache is dropped and the next event
    /// arrives).
    pub fn new(inner: Arc<dyn Store>) -> Self {
        let state = Arc::new(State::default());
        if inner.shared() {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            let feed = inner.clone();
            tokio::spawn(async move { feed.watch_changes(tx).await });
            let weak = Arc::downgrade(&state);
            tokio::spawn(async move {
                while let Some(ev) = rx.recv().await {
                    let Some(state) = weak.upgrade() else {
                        return;
                    };
                    match ev {
                        ChangeEvent::Connected => {
                            state.invalidate();
                            state.live.store(true, Ordering::SeqCst);
                        }
                        ChangeEvent::Changed => state.invalidate(),
                        ChangeEvent::Disconnected => {
                            state.live.store(false, Ordering::SeqCst);
                            state.invalidate();
                        }
                    }
                }
            });
        } else {
            state.live.store(true, Ordering::SeqCst);
        }
        Cached { inner, state }
    }

    /// Whether cached entries are being used (for tests and `/readyz`
    /// diagnostics).
    pub fn is_live(&self) -> bool {
        self.state.live.load(Ordering::SeqCst)
    }

    fn written(&self, ns: Namespace) {
        if cached(ns) {
            self.state.invalidate();
        }
    }
}

#[async_trait]
impl Store for Cached {
    async fn get(&self, ns: Namespace, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        if !cached(ns) {
            return self.inner.get(ns, key).await;
        }
        let k = (ns, key.to_string(), false);
        if let Some(Entry::Get(v)) = self.state.lookup(&k) {
            return Ok(v);
        }
        let generation = self.state.generation.load(Ordering::SeqCst);
        let v = self.inner.get(ns, key).await?;
        self.state.insert(k, generation, Entry::Get(v.clone()));
        Ok(v)
    }

    async fn scan(&self, ns: Namespace) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        if !cached(ns) {
            return self.inner.scan(ns).await;
        }
        let k = (ns, String::new(), true);
        if let Some(Entry::Scan(v)) = self.state.lookup(&k) {
            return Ok(v);
        }
        let generation = self.state.generation.load(Ordering::SeqCst);
        let v = self.inner.scan(ns).await?;
        self.state.insert(k, generation, Entry::Scan(v.clone()));
        Ok(v)
    }

    async fn put(&self, ns: Namespace, key: &str, value: Vec<u8>) -> Result<(), StoreError> {
        let r = self.inner.put(ns, key, value).await;
        self.written(ns);
        r
    }

    async fn delete(&self, ns: Namespace, key: &str) -> Result<bool, StoreError> {
        let r = self.inner.delete(ns, key).await;
        self.written(ns);
        r
    }

    async fn list(&self, ns: Namespace) -> Result<Vec<String>, StoreError> {
        self.inner.list(ns).await
    }

    async fn put_expiring(
        &self,
        ns: Namespace,
        key: &str,
        value: Vec<u8>,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        let r = self.inner.put_expiring(ns, key, value, expires_at).await;
        self.written(ns);
        r
    }

    async fn sweep_expired(&self, ns: Namespace, now: i64) -> Result<u64, StoreError> {
        let r = self.inner.sweep_expired(ns, now).await;
        self.written(ns);
        r
    }

    async fn put_if_absent(
        &self,
        ns: Namespace,
        key: &str,
        value: Vec<u8>,
    ) -> Result<Vec<u8>, StoreError> {
        let r = self.inner.put_if_absent(ns, key, value).await;
        self.written(ns);
        r
    }

    async fn compare_and_swap(
        &self,
        ns: Namespace,
        key: &str,
        expected: &[u8],
        new: Vec<u8>,
    ) -> Result<bool, StoreError> {
        let r = self.inner.compare_and_swap(ns, key, expected, new).await;
        self.written(ns);
        r
    }

    async fn insert_expiring(
        &self,
        ns: Namespace,
        key: &str,
        value: Vec<u8>,
        expires_at: i64,
    ) -> Result<bool, StoreError> {
        let r = self.inner.insert_expiring(ns, key, value, expires_at).await;
        self.written(ns);
        r
    }

    async fn ready(&self) -> bool {
        self.inner.ready().await
    }

    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn shared(&self) -> bool {
        self.inner.shared()
    }

    async fn watch_changes(&self, tx: tokio::sync::mpsc::UnboundedSender<ChangeEvent>) {
        self.inner.watch_changes(tx).await;
    }

    fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        self.inner.collectors()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::embedded::EmbeddedStore;
    use crate::store::postgres::{PgSettings, PgStore};

    #[tokio::test]
    async fn embedded_writes_invalidate() {
        let dir = tempfile::tempdir().unwrap();
        let s = Cached::new(Arc::new(EmbeddedStore::open(dir.path()).unwrap()));
        assert!(s.is_live());
        assert_eq!(s.get(Namespace::Policies, "p").await.unwrap(), None);
        s.put(Namespace::Policies, "p", b"1".to_vec())
            .await
            .unwrap();
        assert_eq!(
            s.get(Namespace::Policies, "p").await.unwrap(),
            Some(b"1".to_vec())
        );
        s.put(Namespace::ReferenceValues, "r", b"a".to_vec())
            .await
            .unwrap();
        assert_eq!(s.scan(Namespace::ReferenceValues).await.unwrap().len(), 1);
        assert!(s.delete(Namespace::ReferenceValues, "r").await.unwrap());
        assert!(s.scan(Namespace::ReferenceValues).await.unwrap().is_empty());
    }

    /// Two replicas on one database: a write through one is seen by the
    /// other's cache after the notification, and a write behind both
    /// (plain SQL) too.
    #[tokio::test]
    async fn replicas_hear_each_others_writes() {
        let Some(url) = veil_testkit::pg::database_url() else {
            return;
        };
        let db = veil_testkit::pg::fresh_database(&url, "unit")
            .await
            .unwrap();
        let pg = PgStore::connect_lazy(&db, &PgSettings::default()).unwrap();
        pg.migrate().await.unwrap();
        let a = Cached::new(Arc::new(pg.clone()));
        let b = Cached::new(Arc::new(
            PgStore::connect_lazy(&db, &PgSettings::default()).unwrap(),
        ));
        let until = |c: &Cached| {
            let live = c.state.clone();
            async move {
                let t = Instant::now();
                while !live.live.load(Ordering::SeqCst) {
                    assert!(t.elapsed() < Duration::from_secs(5), "feed never connected");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        };
        until(&a).await;
        until(&b).await;
        assert_eq!(b.get(Namespace::Policies, "p").await.unwrap(), None);
        a.put(Namespace::Policies, "p", b"v1".to_vec())
            .await
            .unwrap();
        let eventually = |want: Option<&'static [u8]>| {
            let b = &b;
            async move {
                let t = Instant::now();
                loop {
                    if b.get(Namespace::Policies, "p").await.unwrap().as_deref() == want {
                        return;
                    }
                    assert!(t.elapsed() < Duration::from_secs(5), "stale cache");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        };
        eventually(Some(b"v1")).await;
        sqlx::query("UPDATE veil_records SET value = 'v2' WHERE ns = 'policies' AND key = 'p'")
            .execute(pg.pool())
            .await
            .unwrap();
        eventually(Some(b"v2")).await;
        a.delete(Namespace::Policies, "p").await.unwrap();
        eventually(None).await;
    }
}
