//! The node's own Prometheus metrics (gate, broker, module start) and the registry every
//! module registers its metrics in (`modules/NAME/metrics.rs`). Labels are
//! low-cardinality by rule: reasons and kinds, never vehicle or device ids.

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

pub struct Metrics {
    pub registry: Registry,
    pub mqtt_connections: IntGauge,
    pub mqtt_connects_total: IntCounterVec,
    pub mqtt_acl_denied_total: IntCounter,
    pub mqtt_protocol_errors_total: IntCounterVec,
    pub broker_cursor_jumps_total: IntCounter,
    pub module_start_seconds: prometheus::GaugeVec,
}

fn reg<T: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: T) -> T {
    // Names are static and unique, so registration cannot collide; if it ever did, the
    // metric would still count, just not be exported.
    let _ = r.register(Box::new(c.clone()));
    c
}

/// Registers a module's metric in the node's registry (`modules/NAME/metrics.rs`); a name
/// registered twice is an error the module's start reports.
pub fn register<T: prometheus::core::Collector + Clone + 'static>(
    r: &Registry,
    c: T,
) -> Result<T, prometheus::Error> {
    r.register(Box::new(c.clone()))?;
    Ok(c)
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let r = Registry::new_custom(Some("garasi".into()), None)?;
        Ok(Metrics {
            mqtt_connections: reg(&r, IntGauge::new("mqtt_connections", "Device connections open through the gate")?),
            mqtt_connects_total: reg(&r, IntCounterVec::new(Opts::new("mqtt_connects_total", "Device CONNECT attempts by result"), &["result"])?),
            mqtt_acl_denied_total: reg(&r, IntCounter::new("mqtt_acl_denied_total", "Publishes or subscriptions outside the device's own namespace (refused: a SUBACK failure code, PUBACK 0x87 on MQTT 5, a closed connection for a PUBLISH on 3.1.1)")?),
            mqtt_protocol_errors_total: reg(&r, IntCounterVec::new(Opts::new("mqtt_protocol_errors_total", "Connections closed for malformed or oversized MQTT packets"), &["reason"])?),
            broker_cursor_jumps_total: reg(&r, IntCounter::new("broker_cursor_jumps_total", "Messages the router dropped because ingest fell behind its log")?),
            module_start_seconds: reg(&r, prometheus::GaugeVec::new(Opts::new("module_start_seconds", "How long each module took to start"), &["module"])?),
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
