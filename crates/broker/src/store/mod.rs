//! The broker's state, behind one interface.
//!
//! Everything another replica would need lives here, never in process
//! memory: sessions (challenges and their single-use nonces), resources
//! (sealed under the key-encryption key), policies, reference values and the
//! token signing key. Two implementations: [`embedded::EmbeddedStore`]
//! (redb, transactional, under the data directory; the default) and
//! [`postgres::PgStore`] (PostgreSQL through a sqlx pool, for several
//! replicas behind a plain load balancer). [`instrumented::Instrumented`]
//! wraps either with latency metrics; [`transfer`] moves records between
//! them (`veil broker export` / `import`).

pub mod cached;
pub mod embedded;
pub mod instrumented;
pub mod postgres;
pub mod transfer;

use async_trait::async_trait;

/// The tables of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Namespace {
    Sessions,
    Resources,
    Policies,
    ReferenceValues,
    Meta,
}

impl Namespace {
    pub fn name(self) -> &'static str {
        match self {
            Namespace::Sessions => "sessions",
            Namespace::Resources => "resources",
            Namespace::Policies => "policies",
            Namespace::ReferenceValues => "reference_values",
            Namespace::Meta => "meta",
        }
    }
}

/// The store key of a session: its expiry (Unix seconds, 16 lowercase hex
/// digits), a dot, and its nonce. Sessions are then stored in the order
/// they end: the inserts of a busy minute share the table's last leaves
/// instead of landing on random ones, and the expired sessions are the
/// first keys of the table, so a store can find them by key order without
/// an index (the embedded store does; [`Store::sweep_expired`]).
pub fn session_key(expires_at: i64, nonce: &str) -> String {
    format!("{expires_at:016x}.{nonce}")
}

/// The expiry a session key names, when it has the form of
/// [`session_key`] (keys of earlier versions were bare nonces: `None`).
pub fn session_key_expiry(key: &str) -> Option<i64> {
    let (hex, _) = key.split_at_checked(16)?;
    if key.as_bytes().get(16) != Some(&b'.')
        || !hex.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
    {
        return None;
    }
    i64::from_str_radix(hex, 16).ok()
}

/// A session key that names an expiry must be written with that expiry
/// (and only as an expiring record): stores may sweep it by its name.
fn check_session_key(ns: Namespace, key: &str, expires_at: Option<i64>) -> Result<(), StoreError> {
    match (ns, session_key_expiry(key)) {
        (Namespace::Sessions, Some(named)) if Some(named) != expires_at => Err(StoreError(
            format!("session key {key:?} names an expiry other than the record's"),
        )),
        _ => Ok(()),
    }
}

/// A store failure. The message is for the log, never for clients.
#[derive(Debug, thiserror::Error)]
#[error("store: {0}")]
pub struct StoreError(pub String);

/// Key-value operations with the atomicity the protocol needs.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    async fn get(&self, ns: Namespace, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    async fn put(&self, ns: Namespace, key: &str, value: Vec<u8>) -> Result<(), StoreError>;
    /// Removes a key; true if it existed.
    async fn delete(&self, ns: Namespace, key: &str) -> Result<bool, StoreError>;
    /// Keys of a namespace, sorted.
    async fn list(&self, ns: Namespace) -> Result<Vec<String>, StoreError>;
    /// Every record of a namespace, sorted by key, in one read.
    async fn scan(&self, ns: Namespace) -> Result<Vec<(String, Vec<u8>)>, StoreError>;
    /// Stores a record that [`Store::sweep_expired`] deletes once
    /// `expires_at` (Unix seconds) has passed. Used for sessions. A session
    /// key made by [`session_key`] must name `expires_at` (and may not be
    /// written by [`Store::put`]): an error otherwise.
    async fn put_expiring(
        &self,
        ns: Namespace,
        key: &str,
        value: Vec<u8>,
        expires_at: i64,
    ) -> Result<(), StoreError>;
    /// Deletes records of `ns` whose expiry is before `now`, without
    /// blocking requests that are using other records; the number deleted.
    async fn sweep_expired(&self, ns: Namespace, now: i64) -> Result<u64, StoreError>;
    /// Stores `value` unless the key exists; returns what is stored after
    /// the call (race-free creation of shared keys).
    async fn put_if_absent(
        &self,
        ns: Namespace,
        key: &str,
        value: Vec<u8>,
    ) -> Result<Vec<u8>, StoreError>;
    /// Atomically replaces `expected` with `new`: true when the stored value
    /// was `expected` (single-use transitions such as consuming a nonce).
    async fn compare_and_swap(
        &self,
        ns: Namespace,
        key: &str,
        expected: &[u8],
        new: Vec<u8>,
    ) -> Result<bool, StoreError>;
    /// Stores an expiring record unless the key exists; true when this
    /// call created it. The database's unique key decides between
    /// concurrent callers (replicas included): exactly one gets `true`.
    /// This is how a challenge is used once.
    async fn insert_expiring(
        &self,
        ns: Namespace,
        key: &str,
        value: Vec<u8>,
        expires_at: i64,
    ) -> Result<bool, StoreError>;
    /// Whether the store can serve requests.
    async fn ready(&self) -> bool;
    /// `embedded` or `postgres` (logs and metrics).
    fn kind(&self) -> &'static str;
    /// Whether other processes write this store too (replicas on one
    /// database). The embedded store is never shared: redb locks its file
    /// to one process.
    fn shared(&self) -> bool {
        false
    }
    /// For shared stores: reports changes to policies and reference values
    /// made by anyone, and the state of the feed, until `tx` is closed.
    /// Returns at once for stores that are not shared.
    async fn watch_changes(&self, tx: tokio::sync::mpsc::UnboundedSender<ChangeEvent>) {
        drop(tx);
    }
    /// Extra Prometheus collectors (e.g. connection-pool gauges).
    fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        Vec::new()
    }
}

/// What a change feed reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeEvent {
    /// The feed is listening: changes from now on will be reported.
    Connected,
    /// Policies or reference values changed.
    Changed,
    /// The feed is down: changes may go unreported until `Connected`.
    Disconnected,
}

/// Namespaces in a fixed order (export, migrations, tests).
pub const ALL_NAMESPACES: [Namespace; 5] = [
    Namespace::Sessions,
    Namespace::Resources,
    Namespace::Policies,
    Namespace::ReferenceValues,
    Namespace::Meta,
];

impl Namespace {
    /// The namespace named `s`.
    pub fn from_name(s: &str) -> Option<Self> {
        ALL_NAMESPACES.into_iter().find(|n| n.name() == s)
    }
}

/// One behavioural suite that every store implementation must pass.
#[cfg(test)]
pub(crate) mod conformance {
    use super::{Namespace, Store};

    pub(crate) use veil_testkit::pg::database_url;

    pub(crate) async fn fresh_database(url: &str, prefix: &str) -> Result<String, String> {
        veil_testkit::pg::fresh_database(url, prefix)
            .await
            .map_err(|e| e.to_string())
    }

    /// Operations, atomicity and expiry.
    pub(crate) async fn run(s: &dyn Store) {
        assert!(s.ready().await);
        s.put(Namespace::Resources, "a/b/c", b"v1".to_vec())
            .await
            .unwrap();
        s.put(Namespace::Resources, "a/b/c", b"v2".to_vec())
            .await
            .unwrap();
        s.put(Namespace::Resources, "a/b/a", b"v0".to_vec())
            .await
            .unwrap();
        assert_eq!(
            s.get(Namespace::Resources, "a/b/c").await.unwrap(),
            Some(b"v2".to_vec())
        );
        assert_eq!(s.get(Namespace::Policies, "a/b/c").await.unwrap(), None);
        assert_eq!(
            s.list(Namespace::Resources).await.unwrap(),
            vec!["a/b/a", "a/b/c"]
        );
        assert_eq!(
            s.scan(Namespace::Resources).await.unwrap(),
            vec![
                ("a/b/a".to_string(), b"v0".to_vec()),
                ("a/b/c".to_string(), b"v2".to_vec())
            ]
        );
        assert_eq!(
            s.put_if_absent(Namespace::Meta, "k", b"first".to_vec())
                .await
                .unwrap(),
            b"first"
        );
        assert_eq!(
            s.put_if_absent(Namespace::Meta, "k", b"second".to_vec())
                .await
                .unwrap(),
            b"first"
        );
        // Single use: one swap wins, among many at once.
        s.put_expiring(Namespace::Sessions, "s", b"authed".to_vec(), 100)
            .await
            .unwrap();
        let attempts = (0..16)
            .map(|_| s.compare_and_swap(Namespace::Sessions, "s", b"authed", b"used".to_vec()));
        let wins: Vec<bool> = futures_util::future::join_all(attempts)
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(wins.iter().filter(|w| **w).count(), 1);
        assert_eq!(
            s.get(Namespace::Sessions, "s").await.unwrap(),
            Some(b"used".to_vec())
        );
        // Insert-once: of many at once, exactly one creates the record.
        let created: Vec<bool> = futures_util::future::join_all(
            (0..16).map(|i| s.insert_expiring(Namespace::Sessions, "w", vec![i], 100)),
        )
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
        assert_eq!(created.iter().filter(|c| **c).count(), 1);
        let winner = created.iter().position(|c| *c).unwrap();
        assert_eq!(
            s.get(Namespace::Sessions, "w").await.unwrap(),
            Some(vec![u8::try_from(winner).unwrap()])
        );
        // Expiry: only records whose time has passed are swept, and the
        // swap kept the expiry of the record.
        s.put_expiring(Namespace::Sessions, "later", b"x".to_vec(), 300)
            .await
            .unwrap();
        s.put(Namespace::Sessions, "forever", b"y".to_vec())
            .await
            .unwrap();
        assert_eq!(s.sweep_expired(Namespace::Sessions, 50).await.unwrap(), 0);
        assert_eq!(s.sweep_expired(Namespace::Sessions, 200).await.unwrap(), 2);
        assert_eq!(s.get(Namespace::Sessions, "s").await.unwrap(), None);
        assert_eq!(s.get(Namespace::Sessions, "w").await.unwrap(), None);
        assert_eq!(
            s.list(Namespace::Sessions).await.unwrap(),
            vec!["forever", "later"]
        );
        // Many expired records: swept in batches, all of them.
        for i in 0..1200 {
            s.put_expiring(Namespace::Sessions, &format!("e{i:04}"), vec![1], 10)
                .await
                .unwrap();
        }
        assert_eq!(
            s.sweep_expired(Namespace::Sessions, 200).await.unwrap(),
            1200
        );
        // Keys that name their expiry (`session_key`): swept at that time
        // and not before, in batches, beside bare keys; a key naming
        // another expiry, or written as a lasting record, is refused.
        let named = |at: i64, i: usize| super::session_key(at, &format!("n{i}"));
        assert!(
            s.insert_expiring(Namespace::Sessions, &named(150, 0), vec![1], 149)
                .await
                .is_err()
        );
        assert!(
            s.put_expiring(Namespace::Sessions, &named(150, 0), vec![1], 151)
                .await
                .is_err()
        );
        assert!(
            s.put(Namespace::Sessions, &named(150, 0), vec![1])
                .await
                .is_err()
        );
        for i in 0..1100 {
            let at = if i % 2 == 0 { 150 } else { 250 };
            assert!(
                s.insert_expiring(Namespace::Sessions, &named(at, i), vec![2], at)
                    .await
                    .unwrap()
            );
        }
        assert!(
            !s.insert_expiring(Namespace::Sessions, &named(150, 0), vec![9], 150)
                .await
                .unwrap()
        );
        // A bare key that sorts before every named one ('+' < '0').
        s.put_expiring(Namespace::Sessions, "+bare", vec![3], 240)
            .await
            .unwrap();
        assert_eq!(s.sweep_expired(Namespace::Sessions, 150).await.unwrap(), 0);
        assert_eq!(
            s.sweep_expired(Namespace::Sessions, 151).await.unwrap(),
            550
        );
        assert_eq!(
            s.get(Namespace::Sessions, &named(150, 0)).await.unwrap(),
            None
        );
        assert_eq!(
            s.get(Namespace::Sessions, &named(250, 1)).await.unwrap(),
            Some(vec![2])
        );
        assert_eq!(
            s.get(Namespace::Sessions, "+bare").await.unwrap(),
            Some(vec![3])
        );
        assert_eq!(
            s.sweep_expired(Namespace::Sessions, 251).await.unwrap(),
            551
        );
        assert_eq!(
            s.list(Namespace::Sessions).await.unwrap(),
            vec!["forever", "later"]
        );
        assert!(s.delete(Namespace::Resources, "a/b/c").await.unwrap());
        assert!(!s.delete(Namespace::Resources, "a/b/c").await.unwrap());
        s.put(Namespace::Policies, "p", b"rego".to_vec())
            .await
            .unwrap();
        // A CAS on a durable namespace.
        assert!(
            s.compare_and_swap(Namespace::Policies, "p", b"rego", b"rego2".to_vec())
                .await
                .unwrap()
        );
        assert!(
            !s.compare_and_swap(Namespace::Policies, "p", b"rego", b"rego3".to_vec())
                .await
                .unwrap()
        );
    }

    /// What [`run`] wrote, seen through a second handle (a restart or a
    /// second replica).
    pub(crate) async fn persisted(s: &dyn Store) {
        assert_eq!(
            s.get(Namespace::Policies, "p").await.unwrap(),
            Some(b"rego2".to_vec())
        );
        assert_eq!(
            s.get(Namespace::Meta, "k").await.unwrap(),
            Some(b"first".to_vec())
        );
        assert_eq!(
            s.get(Namespace::Resources, "a/b/a").await.unwrap(),
            Some(b"v0".to_vec())
        );
    }
}

#[cfg(test)]
mod tests {
    use super::{session_key, session_key_expiry};

    #[test]
    fn session_keys_name_their_expiry_and_sort_by_it() {
        let k = session_key(1_764_000_000, "bm9uY2U=");
        assert_eq!(k, "0000000069248100.bm9uY2U=");
        assert_eq!(session_key_expiry(&k), Some(1_764_000_000));
        assert!(session_key(9, "z") < session_key(10, "a"));
        assert!(session_key(255, "+") < session_key(256, "+"));
        // Bare nonces (earlier versions) and near misses name no expiry.
        for k in [
            "bm9uY2U=",
            "",
            "00000000692481",
            "00000000692481000bm9uY2U=",
            "0000000069248100",
            "00000000692481A0.n",
            "+0000000692481000.n",
            "ffffffffffffffff.n",
            "0000000069248100é.n",
        ] {
            assert_eq!(session_key_expiry(k), None, "{k:?}");
        }
    }
}
