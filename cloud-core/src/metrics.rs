//! The cloud's Prometheus metrics: what sync refused (by reason) and what the
//! materialiser quarantined. Labels are low-cardinality (no depot or record ids).

use prometheus::{Encoder, IntCounter, IntCounterVec, Opts, Registry, TextEncoder};

pub struct CloudMetrics {
    registry: Registry,
    /// Sync batches refused, by reason (wire, record_type, record_id, change, stream_row).
    pub sync_refused: IntCounterVec,
    quarantined: IntCounter,
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
        registry.register(Box::new(sync_refused.clone()))?;
        registry.register(Box::new(quarantined.clone()))?;
        Ok(CloudMetrics {
            registry,
            sync_refused,
            quarantined,
        })
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
