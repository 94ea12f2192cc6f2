//! Telemetry's Prometheus metrics (`garasi_telemetry_*`, `garasi_vehicles`), registered
//! by the module at start in the node's registry. Labels are kinds, reasons and statuses,
//! never vehicle ids.

use crate::metrics::register as reg;
use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

pub struct TelemetryMetrics {
    pub messages_total: IntCounterVec,
    pub rows_committed_total: IntCounter,
    pub duplicates_total: IntCounter,
    pub dead_letters_total: IntCounterVec,
    pub commit_seconds: Histogram,
    pub queue_depth: IntGauge,
    pub vehicles_by_status: IntGaugeVec,
}

impl TelemetryMetrics {
    pub fn register(r: &Registry) -> Result<Self, prometheus::Error> {
        Ok(TelemetryMetrics {
            messages_total: reg(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "telemetry_messages_total",
                        "MQTT messages received by ingest, by topic kind",
                    ),
                    &["kind"],
                )?,
            )?,
            rows_committed_total: reg(
                r,
                IntCounter::new(
                    "telemetry_rows_committed_total",
                    "Telemetry samples committed to the store",
                )?,
            )?,
            duplicates_total: reg(
                r,
                IntCounter::new(
                    "telemetry_duplicates_total",
                    "Samples ignored because (vehicle, ts) was already stored",
                )?,
            )?,
            dead_letters_total: reg(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "telemetry_dead_letters_total",
                        "Rejected messages, by reason",
                    ),
                    &["reason"],
                )?,
            )?,
            commit_seconds: reg(
                r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "telemetry_commit_seconds",
                        "Time to commit one telemetry batch",
                    )
                    .buckets(vec![
                        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                    ]),
                )?,
            )?,
            queue_depth: reg(
                r,
                IntGauge::new(
                    "telemetry_queue_depth",
                    "Parsed messages waiting for the writer",
                )?,
            )?,
            vehicles_by_status: reg(
                r,
                IntGaugeVec::new(
                    Opts::new("vehicles", "Registered vehicles by connection status"),
                    &["status"],
                )?,
            )?,
        })
    }
}
