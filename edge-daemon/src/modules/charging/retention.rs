//! Keeps charging's local history bounded, every hour: charger meter samples older than
//! `keep_samples_days` (the cloud has them as a stream), alarms older than 90 days, panel
//! readings older than 400 days (the monthly summaries), all but the newest 10,000 panel
//! dead letters. Sessions stay (small, and the cloud's record).

use std::sync::Arc;
use std::time::Duration;

use rusqlite::params;

use super::service::ChargingApi;

const DAY_MS: i64 = 86_400_000;

pub(super) async fn run(api: Arc<ChargingApi>, cancel: tokio_util::sync::CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = crate::util::now_ms();
        let samples_before = now - api.cfg.keep_samples_days as i64 * DAY_MS;
        let alarms_before = now - 90 * DAY_MS;
        let r = api
            .store
            .write(move |c| {
                let n = c.execute(
                    "DELETE FROM charging_meter_samples WHERE ts_ms < ?1",
                    params![samples_before],
                )?;
                c.execute(
                    "DELETE FROM charging_alarms WHERE ts_ms < ?1",
                    params![alarms_before],
                )?;
                // Panel readings make the monthly summaries: kept 400 days. Dead letters: the
                // newest 10,000.
                c.execute(
                    "DELETE FROM charging_panel_readings WHERE ts_ms < ?1",
                    params![now - 400 * DAY_MS],
                )?;
                c.execute(
                    "DELETE FROM charging_panel_dead_letters
                     WHERE rowid <= (SELECT max(rowid) FROM charging_panel_dead_letters) - 10000",
                    [],
                )?;
                Ok(n)
            })
            .await;
        match r {
            Ok(n) if n > 0 => tracing::info!(deleted = n, "old charger meter samples deleted"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "charging retention failed"),
        }
    }
}
