//! telemetry's configuration section: `[telemetry]` in the TOML file and the
//! `--telemetry-*` flags (`TelemetryFlags`, flattened into `config::Settings`), checked
//! with every problem reported at once through the node's collector.

use serde::Deserialize;

use crate::config::Collect;

#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    /// Longest time an accepted sample waits before its batch commits: the worst-case
    /// telemetry loss on power failure (plus the queue, see README "Durability").
    pub commit_interval_ms: u64,
    pub stale_after_secs: u64,
    pub offline_after_secs: u64,
    pub raw_retention_days: u64,
    pub rollup_retention_days: u64,
    /// Payloads above this are dead-lettered as oversized.
    pub max_payload_bytes: usize,
    /// How many dead letters to keep for inspection (oldest are trimmed).
    pub dead_letter_keep: u64,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            commit_interval_ms: 100,
            stale_after_secs: 30,
            offline_after_secs: 120,
            raw_retention_days: 7,
            rollup_retention_days: 400,
            max_payload_bytes: 16 * 1024,
            dead_letter_keep: 10_000,
        }
    }
}

/// telemetry's command-line flags and environment variables; `None` means "not given".
/// Kept as strings so every bad value is reported, not just the first.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct TelemetryFlags {
    /// Telemetry batch commit interval in ms [default: 100, max 250].
    #[arg(long, env = "GARASI_TELEMETRY_COMMIT_INTERVAL_MS")]
    pub telemetry_commit_interval_ms: Option<String>,
    /// A vehicle is "stale" after this many seconds without data [default: 30].
    #[arg(long, env = "GARASI_TELEMETRY_STALE_AFTER_SECS")]
    pub telemetry_stale_after_secs: Option<String>,
    /// A vehicle is "offline" after this many seconds without data [default: 120].
    #[arg(long, env = "GARASI_TELEMETRY_OFFLINE_AFTER_SECS")]
    pub telemetry_offline_after_secs: Option<String>,
    /// Days raw samples are kept [default: 7].
    #[arg(long, env = "GARASI_TELEMETRY_RAW_RETENTION_DAYS")]
    pub telemetry_raw_retention_days: Option<String>,
    /// Days per-minute rollups are kept [default: 400].
    #[arg(long, env = "GARASI_TELEMETRY_ROLLUP_RETENTION_DAYS")]
    pub telemetry_rollup_retention_days: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTelemetry {
    commit_interval_ms: Option<u64>,
    stale_after_secs: Option<u64>,
    offline_after_secs: Option<u64>,
    raw_retention_days: Option<u64>,
    rollup_retention_days: Option<u64>,
    max_payload_bytes: Option<usize>,
    dead_letter_keep: Option<u64>,
}

/// Resolves the section: flags over the file over defaults.
pub(crate) fn resolve(c: &mut Collect, s: &TelemetryFlags, f: &FileTelemetry) -> TelemetryConfig {
    let d = TelemetryConfig::default();
    let t = f;
    let telemetry = TelemetryConfig {
        commit_interval_ms: c.pick(
            "--telemetry-commit-interval-ms",
            &s.telemetry_commit_interval_ms,
            t.commit_interval_ms,
            d.commit_interval_ms,
        ),
        stale_after_secs: c.pick(
            "--telemetry-stale-after-secs",
            &s.telemetry_stale_after_secs,
            t.stale_after_secs,
            d.stale_after_secs,
        ),
        offline_after_secs: c.pick(
            "--telemetry-offline-after-secs",
            &s.telemetry_offline_after_secs,
            t.offline_after_secs,
            d.offline_after_secs,
        ),
        raw_retention_days: c.pick(
            "--telemetry-raw-retention-days",
            &s.telemetry_raw_retention_days,
            t.raw_retention_days,
            d.raw_retention_days,
        ),
        rollup_retention_days: c.pick(
            "--telemetry-rollup-retention-days",
            &s.telemetry_rollup_retention_days,
            t.rollup_retention_days,
            d.rollup_retention_days,
        ),
        max_payload_bytes: t.max_payload_bytes.unwrap_or(d.max_payload_bytes),
        dead_letter_keep: t.dead_letter_keep.unwrap_or(d.dead_letter_keep),
    };
    if !(1..=250).contains(&telemetry.commit_interval_ms) {
        c.0.push(format!(
            "telemetry commit interval {} ms is out of range: use 1 to 250",
            telemetry.commit_interval_ms
        ));
    }
    if telemetry.stale_after_secs >= telemetry.offline_after_secs {
        c.0.push(format!(
            "telemetry stale_after_secs ({}) must be below offline_after_secs ({})",
            telemetry.stale_after_secs, telemetry.offline_after_secs
        ));
    }
    if telemetry.rollup_retention_days < telemetry.raw_retention_days {
        c.0.push("telemetry rollup_retention_days must be at least raw_retention_days".into());
    }
    telemetry
}
