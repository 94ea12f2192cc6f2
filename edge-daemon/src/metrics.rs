//! Prometheus metrics an operator watches. Labels are low-cardinality by rule: reasons and
//! kinds, never vehicle or device ids.

use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

pub struct Metrics {
    pub registry: Registry,
    pub mqtt_connections: IntGauge,
    pub mqtt_connects_total: IntCounterVec,
    pub mqtt_acl_denied_total: IntCounter,
    pub mqtt_protocol_errors_total: IntCounterVec,
    pub broker_cursor_jumps_total: IntCounter,
    pub telemetry_messages_total: IntCounterVec,
    pub telemetry_rows_committed_total: IntCounter,
    pub telemetry_duplicates_total: IntCounter,
    pub telemetry_dead_letters_total: IntCounterVec,
    pub telemetry_commit_seconds: Histogram,
    pub telemetry_queue_depth: IntGauge,
    pub vehicles_by_status: IntGaugeVec,
    pub module_start_seconds: prometheus::GaugeVec,
    pub sync_pushed_total: IntCounterVec,
    pub sync_pulled_total: IntCounter,
    pub sync_failures_total: IntCounterVec,
    pub sync_backlog_entries: IntGaugeVec,
    pub sync_stream_rows_dropped_total: IntCounterVec,
    pub sync_unknown_record_changes_total: IntCounter,
    pub sync_dead_letters_total: IntCounterVec,
    pub auth_refusals_total: IntCounterVec,
}

fn reg<T: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: T) -> T {
    // Names are static and unique, so registration cannot collide; if it ever did, the
    // metric would still count, just not be exported.
    let _ = r.register(Box::new(c.clone()));
    c
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let r = Registry::new_custom(Some("garasi".into()), None)?;
        Ok(Metrics {
            mqtt_connections: reg(&r, IntGauge::new("mqtt_connections", "Device connections open through the gate")?),
            mqtt_connects_total: reg(&r, IntCounterVec::new(Opts::new("mqtt_connects_total", "Device CONNECT attempts by result"), &["result"])?),
            mqtt_acl_denied_total: reg(&r, IntCounter::new("mqtt_acl_denied_total", "Publishes or subscriptions outside the device's own namespace (connection closed)")?),
            mqtt_protocol_errors_total: reg(&r, IntCounterVec::new(Opts::new("mqtt_protocol_errors_total", "Connections closed for malformed or oversized MQTT packets"), &["reason"])?),
            broker_cursor_jumps_total: reg(&r, IntCounter::new("broker_cursor_jumps_total", "Messages the router dropped because ingest fell behind its log")?),
            telemetry_messages_total: reg(&r, IntCounterVec::new(Opts::new("telemetry_messages_total", "MQTT messages received by ingest, by topic kind"), &["kind"])?),
            telemetry_rows_committed_total: reg(&r, IntCounter::new("telemetry_rows_committed_total", "Telemetry samples committed to the store")?),
            telemetry_duplicates_total: reg(&r, IntCounter::new("telemetry_duplicates_total", "Samples ignored because (vehicle, ts) was already stored")?),
            telemetry_dead_letters_total: reg(&r, IntCounterVec::new(Opts::new("telemetry_dead_letters_total", "Rejected messages, by reason"), &["reason"])?),
            telemetry_commit_seconds: reg(&r, Histogram::with_opts(HistogramOpts::new("telemetry_commit_seconds", "Time to commit one telemetry batch").buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0]))?),
            telemetry_queue_depth: reg(&r, IntGauge::new("telemetry_queue_depth", "Parsed messages waiting for the writer")?),
            vehicles_by_status: reg(&r, IntGaugeVec::new(Opts::new("vehicles", "Registered vehicles by connection status"), &["status"])?),
            module_start_seconds: reg(&r, prometheus::GaugeVec::new(Opts::new("module_start_seconds", "How long each module took to start"), &["module"])?),
            sync_pushed_total: reg(&r, IntCounterVec::new(Opts::new("sync_pushed_total", "Entries the cloud acknowledged, by kind (change, stream_row)"), &["kind"])?),
            sync_pulled_total: reg(&r, IntCounter::new("sync_pulled_total", "Changes pulled from the cloud and applied")?),
            sync_failures_total: reg(&r, IntCounterVec::new(Opts::new("sync_failures_total", "Failed sync attempts, by step (push, pull)"), &["step"])?),
            sync_backlog_entries: reg(&r, IntGaugeVec::new(Opts::new("sync_backlog_entries", "Outbox entries waiting for upload, by kind"), &["kind"])?),
            sync_stream_rows_dropped_total: reg(&r, IntCounterVec::new(Opts::new("sync_stream_rows_dropped_total", "Stream rows removed from the outbox by the quota policy before upload (they stay in the local store), by reason (thinned, dropped)"), &["reason"])?),
            sync_unknown_record_changes_total: reg(&r, IntCounter::new("sync_unknown_record_changes_total", "Pulled changes of record types this build does not know (kept in sync_dead_letters)")?),
            sync_dead_letters_total: reg(&r, IntCounterVec::new(Opts::new("sync_dead_letters_total", "Pulled changes set aside in sync_dead_letters, by reason (refused, unknown_type)"), &["reason"])?),
            auth_refusals_total: reg(&r, IntCounterVec::new(Opts::new("auth_refusals_total", "Refused logins and sign-ons, by method (password, pin, badge) and reason"), &["method", "reason"])?),
            registry: r,
        })
    }

    /// Text exposition format for `/metrics`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let enc = prometheus::TextEncoder::new();
        if let Err(e) = enc.encode_utf8(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "metrics encoding failed");
        }
        out
    }
}
