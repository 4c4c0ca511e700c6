//! A [`Store`] decorator that times every operation
//! (`veil_store_operation_seconds{store, op, outcome}`): the database
//! latency a dashboard needs, the same way for both stores.

use std::time::Instant;

use async_trait::async_trait;
use prometheus::{HistogramOpts, HistogramVec};

use super::{Namespace, Store, StoreError};

/// Times the operations of `S`.
#[derive(Debug)]
pub struct Instrumented<S> {
    inner: S,
    latency: HistogramVec,
}

impl<S: Store> Instrumented<S> {
    pub fn new(inner: S) -> Result<Self, prometheus::Error> {
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "veil_store_operation_seconds",
                "Latency of store operations",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0, 5.0,
            ]),
            &["store", "op", "outcome"],
        )?;
        Ok(Instrumented { inner, latency })
    }

    fn observe<T>(&self, op: &str, start: Instant, r: &Result<T, StoreError>) {
        self.latency
            .with_label_values(&[
                self.inner.kind(),
                op,
                if r.is_ok() { "ok" } else { "error" },
            ])
            .observe(start.elapsed().as_secs_f64());
    }
}

#[async_trait]
impl<S: Store> Store for Instrumented<S> {
    async fn get(&self, ns: Namespace, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let t = Instant::now();
        let r = self.inner.get(ns, key).await;
        self.observe("get", t, &r);
        r
    }

    async fn put(&self, ns: Namespace, key: &str, value: Vec<u8>) -> Result<(), StoreError> {
        let t = Instant::now();
        let r = self.inner.put(ns, key, value).await;
        self.observe("put", t, &r);
        r
    }

    async fn delete(&self, ns: Namespace, key: &str) -> Result<bool, StoreError> {
        let t = Instant::now();
        let r = self.inner.delete(ns, key).await;
        self.observe("delete", t, &r);
        r
    }

    async fn list(&self, ns: Namespace) -> Result<Vec<String>, StoreError> {
        let t = Instant::now();
        let r = self.inner.list(ns).await;
        self.observe("list", t, &r);
        r
    }

    async fn scan(&self, ns: Namespace) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let t = Instant::now();
        let r = self.inner.scan(ns).await;
        self.observe("scan", t, &r);
        r
    }

    async fn put_expiring(
        &self,
        ns: Namespace,
        key: &str,
        value: Vec<u8>,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        let t = Instant::now();
        let r = self.inner.put_expiring(ns, key, value, expires_at).await;
        self.observe("put", t, &r);
        r
    }

    async fn sweep_expired(&self, ns: Namespace, now: i64) -> Result<u64, StoreError> {
        let t = Instant::now();
        let r = self.inner.sweep_expired(ns, now).await;
        self.observe("sweep", t, &r);
        r
    }

    async fn put_if_absent(
        &self,
        ns: Namespace,
        key: &str,
        value: Vec<u8>,
    ) -> Result<Vec<u8>, StoreError> {
        let t = Instant::now();
        let r = self.inner.put_if_absent(ns, key, value).await;
        self.observe("put_if_absent", t, &r);
        r
    }

    async fn compare_and_swap(
        &self,
        ns: Namespace,
        key: &str,
        expected: &[u8],
        new: Vec<u8>,
    ) -> Result<bool, StoreError> {
        let t = Instant::now();
        let r = self.inner.compare_and_swap(ns, key, expected, new).await;
        self.observe("compare_and_swap", t, &r);
        r
    }

    async fn insert_expiring(
        &self,
        ns: Namespace,
        key: &str,
        value: Vec<u8>,
        expires_at: i64,
    ) -> Result<bool, StoreError> {
        let t = Instant::now();
        let r = self.inner.insert_expiring(ns, key, value, expires_at).await;
        self.observe("insert", t, &r);
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

    async fn watch_changes(&self, tx: tokio::sync::mpsc::UnboundedSender<super::ChangeEvent>) {
        self.inner.watch_changes(tx).await;
    }

    fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        let mut c = self.inner.collectors();
        c.push(Box::new(self.latency.clone()));
        c
    }
}
