//! The broker's state, behind one interface.
//!
//! Everything another replica would need lives here, never in process
//! memory: sessions (challenges and their single-use nonces), resources
//! (sealed under the key-encryption key), policies, reference values and the
//! token signing key. The embedded implementation is [`embedded::EmbeddedStore`]
//! (redb, transactional, under the data directory); a PostgreSQL
//! implementation of the same trait follows for scale-out.

pub mod embedded;

use async_trait::async_trait;

/// The tables of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    /// Whether the store can serve requests.
    async fn ready(&self) -> bool;
}
