//! Sync's Prometheus metrics (`garasi_sync_*`), registered by the module at start in the
//! node's registry. Labels are kinds, steps and reasons, never record ids.

use crate::metrics::register as reg;
use prometheus::{IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry};

pub struct SyncMetrics {
    pub pushed_total: IntCounterVec,
    pub pulled_total: IntCounter,
    pub failures_total: IntCounterVec,
    pub backlog_entries: IntGaugeVec,
    pub stream_rows_dropped_total: IntCounterVec,
    pub unknown_record_changes_total: IntCounter,
    pub dead_letters_total: IntCounterVec,
}

impl SyncMetrics {
    pub fn register(r: &Registry) -> Result<Self, prometheus::Error> {
        Ok(SyncMetrics {
            pushed_total: reg(r, IntCounterVec::new(Opts::new("sync_pushed_total", "Entries the cloud acknowledged, by kind (change, stream_row)"), &["kind"])?)?,
            pulled_total: reg(r, IntCounter::new("sync_pulled_total", "Changes pulled from the cloud and applied")?)?,
            failures_total: reg(r, IntCounterVec::new(Opts::new("sync_failures_total", "Failed sync attempts, by step (push, pull)"), &["step"])?)?,
            backlog_entries: reg(r, IntGaugeVec::new(Opts::new("sync_backlog_entries", "Outbox entries waiting for upload, by kind"), &["kind"])?)?,
            stream_rows_dropped_total: reg(r, IntCounterVec::new(Opts::new("sync_stream_rows_dropped_total", "Stream rows removed from the outbox by the quota policy before upload (they stay in the local store), by reason (thinned, dropped)"), &["reason"])?)?,
            unknown_record_changes_total: reg(r, IntCounter::new("sync_unknown_record_changes_total", "Pulled changes of record types this build does not know (kept in sync_dead_letters)")?)?,
            dead_letters_total: reg(r, IntCounterVec::new(Opts::new("sync_dead_letters_total", "Pulled changes set aside in sync_dead_letters, by reason (refused, unknown_type)"), &["reason"])?)?,
        })
    }
}
