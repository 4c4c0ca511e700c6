//! Prometheus metrics.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};

/// The broker's metrics.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub latency: HistogramVec,
    pub attestations: IntCounterVec,
    pub policy_decisions: IntCounterVec,
    pub resource_reads: IntCounterVec,
    pub resource_writes: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "veil_http_requests_total",
                "HTTP requests by route and status",
            ),
            &["route", "status"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new("veil_http_request_duration_seconds", "HTTP request latency")
                .buckets(vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0,
                ]),
            &["route"],
        )?;
        let attestations = IntCounterVec::new(
            Opts::new("veil_attestations_total", "Attestations by TEE and outcome"),
            &["tee", "outcome"],
        )?;
        let policy_decisions = IntCounterVec::new(
            Opts::new("veil_policy_decisions_total", "Policy decisions"),
            &["policy", "decision"],
        )?;
        let resource_reads = IntCounterVec::new(
            Opts::new("veil_resource_reads_total", "Resource reads by outcome"),
            &["outcome"],
        )?;
        let resource_writes = IntCounterVec::new(
            Opts::new("veil_resource_writes_total", "Resource writes and deletes"),
            &["op"],
        )?;
        for c in [
            &requests,
            &attestations,
            &policy_decisions,
            &resource_reads,
            &resource_writes,
        ] {
            registry.register(Box::new(c.clone()))?;
        }
        registry.register(Box::new(latency.clone()))?;
        Ok(Metrics {
            registry,
            requests,
            latency,
            attestations,
            policy_decisions,
            resource_reads,
            resource_writes,
        })
    }

    /// Adds a collector (e.g. the store's pool gauges).
    pub fn register(
        &self,
        c: Box<dyn prometheus::core::Collector>,
    ) -> Result<(), prometheus::Error> {
        self.registry.register(c)
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}
