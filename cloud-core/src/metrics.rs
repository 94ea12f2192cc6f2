//! The cloud's Prometheus metrics: what sync refused (by reason), what the materialiser
//! quarantined, what the server's limits refused (by reason), its open connections and
//! how long each route takes to answer.
//! Labels are low-cardinality (no depot or record ids, no addresses).

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

pub struct CloudMetrics {
    registry: Registry,
    /// Sync batches refused, by reason (wire, record_type, record_id, change, stream_row).
    pub sync_refused: IntCounterVec,
    quarantined: IntCounter,
    /// Requests refused, and connections refused or closed, by a limit or for their
    /// credentials, by reason (unauthenticated, body_too_large, body_timeout, busy,
    /// connection_cap and client_connection_cap (the oldest idle connection closed to
    /// make room, or the new one refused), header_timeout, idle_timeout,
    /// tls_handshake_timeout, gtfs_* (a feed past an import limit)).
    refusals: IntCounterVec,
    /// Connections open now.
    pub connections: IntGauge,
    /// Time to a response's head, by method and route template (`api::timing`).
    pub requests: HistogramVec,
}

impl CloudMetrics {
    pub fn new() -> prometheus::Result<Self> {
        let registry = Registry::new();
        let sync_refused = IntCounterVec::new(
            Opts::new(
                "garasi_cloud_sync_refused_total",
                "Sync batches refused, by reason",
            ),
            &["reason"],
        )?;
        let quarantined = IntCounter::new(
            "garasi_cloud_records_quarantined_total",
            "Records (changes) the materialiser could not fold since start",
        )?;
        let refusals = IntCounterVec::new(
            Opts::new(
                "garasi_cloud_refusals_total",
                "Requests and connections refused by a limit or for their credentials, by reason",
            ),
            &["reason"],
        )?;
        let connections = IntGauge::new("garasi_cloud_connections", "Connections open now")?;
        let requests = HistogramVec::new(
            HistogramOpts::new(
                "garasi_cloud_http_request_seconds",
                "Time from a request's arrival at the router to its response head, by route",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["method", "route"],
        )?;
        registry.register(Box::new(sync_refused.clone()))?;
        registry.register(Box::new(quarantined.clone()))?;
        registry.register(Box::new(refusals.clone()))?;
        registry.register(Box::new(connections.clone()))?;
        registry.register(Box::new(requests.clone()))?;
        Ok(CloudMetrics {
            registry,
            sync_refused,
            quarantined,
            refusals,
            connections,
            requests,
        })
    }

    /// Counts one refusal (`reason` must be one of a fixed few: it is a label).
    pub fn refused(&self, reason: &'static str) {
        self.refusals.with_label_values(&[reason]).inc();
    }

    /// The text exposition, with the materialiser's running quarantine count.
    pub fn render(&self, quarantined_total: u64) -> String {
        let now = self.quarantined.get();
        if quarantined_total > now {
            self.quarantined.inc_by(quarantined_total - now);
        }
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}
