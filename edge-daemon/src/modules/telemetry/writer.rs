//! The telemetry writer: one thread, one connection, batched transactions. A batch closes
//! after `commit_interval` (<= 250 ms) or `MAX_BATCH` items, whichever comes first; after
//! the commit the in-memory live view is updated and events go out on the bus. Samples
//! are keyed by (vehicle, ts), so a replayed message is stored once; each stored sample
//! is also appended to the sync stream outbox in the same transaction.

use std::collections::HashMap;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use garasi_sync_protocol::streams;
use rusqlite::{params, Connection};

use super::ingest::{Fault, Item, Sample};
use super::live::Live;
use super::metrics::TelemetryMetrics;
use crate::bus::{Bus, Event, TelemetryUpdate};

pub const MAX_BATCH: usize = 20_000;
/// Dead letters keep at most this much of the payload for inspection.
const DEAD_PAYLOAD_KEEP: usize = 4096;

pub struct Writer {
    pub conn: Connection,
    pub live: Arc<Live>,
    pub bus: Bus,
    pub metrics: Arc<TelemetryMetrics>,
    pub interval: Duration,
}

fn stream_payload(s: &Sample) -> Vec<u8> {
    streams::TelemetrySampleV1 {
        vehicle_id: s.vehicle_id.clone(),
        ts_ms: s.ts_ms,
        lat: s.lat,
        lon: s.lon,
        heading: s.heading,
        speed_kmh: s.speed_kmh,
        soc_pct: s.soc_pct,
        odometer_km: s.odometer_km,
        battery_temp_c: s.battery_temp_c,
        power_w: s.power_w,
        charging: s.charging,
        extra: s.extra.clone(),
    }
    .encode()
}

/// What one committed batch changed, for the live view and the bus.
#[derive(Default)]
struct Committed {
    updates: Vec<TelemetryUpdate>,
    duplicates: u64,
    statuses: Vec<(String, bool, i64, Option<String>)>,
    faults: Vec<(String, Vec<Fault>)>,
}

impl Writer {
    /// Runs until every sender is gone, then commits what is left and returns.
    pub fn run(mut self, rx: Receiver<Item>) {
        let mut batch: Vec<Item> = Vec::with_capacity(1024);
        loop {
            match rx.recv_timeout(Duration::from_millis(500)) {
                Ok(item) => batch.push(item),
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => break,
            }
            let deadline = Instant::now() + self.interval;
            let mut closed = false;
            while batch.len() < MAX_BATCH {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                match rx.recv_timeout(left) {
                    Ok(item) => batch.push(item),
                    Err(RecvTimeoutError::Timeout) => break,
                    Err(RecvTimeoutError::Disconnected) => {
                        closed = true;
                        break;
                    }
                }
            }
            self.commit_with_retry(&mut batch);
            if closed {
                break;
            }
        }
        self.commit_with_retry(&mut batch);
        tracing::info!("telemetry writer drained and stopped");
    }

    /// A failed commit (disk full, I/O error) is retried: accepted data is never dropped
    /// here. Meanwhile ingest blocks on the full queue and the broker log absorbs the
    /// backlog, then drops (counted as cursor jumps).
    fn commit_with_retry(&mut self, batch: &mut Vec<Item>) {
        if batch.is_empty() {
            return;
        }
        let mut delay = Duration::from_millis(100);
        loop {
            let t0 = Instant::now();
            match self.commit(batch) {
                Ok(c) => {
                    self.metrics
                        .commit_seconds
                        .observe(t0.elapsed().as_secs_f64());
                    self.metrics.queue_depth.sub(batch.len() as i64);
                    batch.clear();
                    self.after_commit(c);
                    return;
                }
                Err(e) => {
                    tracing::error!(error = %e, items = batch.len(), "telemetry commit failed; retrying");
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    fn commit(&mut self, batch: &[Item]) -> rusqlite::Result<Committed> {
        let mut c = Committed::default();
        let tx = self.conn.transaction()?;
        {
            let mut ins = tx.prepare_cached(
                "INSERT OR IGNORE INTO telemetry_samples (vehicle_id, ts_ms, received_ms, lat, lon, heading, speed_kmh,
                   soc_pct, odometer_km, battery_temp_c, power_w, charging, extra)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            )?;
            let mut dead = tx.prepare_cached(
                "INSERT INTO telemetry_dead_letters (received_ms, topic, reason, detail, payload, payload_len)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            let mut newest: HashMap<&str, &Sample> = HashMap::new();
            for item in batch {
                match item {
                    Item::Sample(s) => {
                        let n = ins.execute(params![
                            s.vehicle_id,
                            s.ts_ms,
                            s.received_ms,
                            s.lat,
                            s.lon,
                            s.heading,
                            s.speed_kmh,
                            s.soc_pct,
                            s.odometer_km,
                            s.battery_temp_c,
                            s.power_w,
                            s.charging,
                            s.extra
                        ])?;
                        if n == 0 {
                            c.duplicates += 1;
                            continue;
                        }
                        // The sample also becomes a stream row for the cloud, in the same
                        // transaction: stored once locally means uploaded once.
                        crate::modules::sync::service::append_stream_row(
                            &tx,
                            streams::TELEMETRY_V1,
                            s.ts_ms,
                            &stream_payload(s),
                        )?;
                        // The live view and the bus do not carry the extra signals (stored and
                        // synced above), so memory per vehicle stays what it was.
                        c.updates.push(TelemetryUpdate {
                            extra: None,
                            ..s.clone()
                        });
                        let e = newest.entry(&s.vehicle_id).or_insert(s);
                        if s.ts_ms >= e.ts_ms {
                            *e = s;
                        }
                    }
                    Item::Dead {
                        topic,
                        reason,
                        detail,
                        payload,
                        received_ms,
                    } => {
                        let keep = &payload[..payload.len().min(DEAD_PAYLOAD_KEEP)];
                        dead.execute(params![
                            received_ms,
                            topic,
                            reason.as_str(),
                            detail,
                            keep,
                            payload.len() as i64
                        ])?;
                    }
                    Item::Status {
                        vehicle_id,
                        online,
                        ts_ms,
                        firmware,
                    } => {
                        tx.execute(
                            "INSERT INTO telemetry_latest (vehicle_id, online, status_ms, firmware) VALUES (?1, ?2, ?3, ?4)
                             ON CONFLICT(vehicle_id) DO UPDATE SET online = excluded.online, status_ms = excluded.status_ms,
                               firmware = coalesce(excluded.firmware, telemetry_latest.firmware)",
                            params![vehicle_id, online, ts_ms, firmware],
                        )?;
                        c.statuses
                            .push((vehicle_id.clone(), *online, *ts_ms, firmware.clone()));
                    }
                    Item::Faults {
                        vehicle_id,
                        ts_ms,
                        faults,
                    } => {
                        // A report lists the currently active faults (J1939 DM1): anything not
                        // listed is no longer active.
                        tx.execute(
                            "UPDATE telemetry_faults SET active = 0 WHERE vehicle_id = ?1",
                            params![vehicle_id],
                        )?;
                        for f in faults {
                            tx.execute(
                                "INSERT INTO telemetry_faults (vehicle_id, spn, fmi, active, severity, occurrences, description, first_seen_ms, last_seen_ms)
                                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)
                                 ON CONFLICT(vehicle_id, spn, fmi) DO UPDATE SET active = excluded.active, severity = excluded.severity,
                                   occurrences = excluded.occurrences, description = excluded.description, last_seen_ms = excluded.last_seen_ms",
                                params![vehicle_id, f.spn, f.fmi, f.active, f.severity, f.occurrences, f.description, ts_ms],
                            )?;
                        }
                        c.faults.push((vehicle_id.clone(), faults.clone()));
                    }
                }
            }
            let mut latest = tx.prepare_cached(
                "INSERT INTO telemetry_latest (vehicle_id, ts_ms, received_ms, lat, lon, heading, speed_kmh, soc_pct,
                   odometer_km, battery_temp_c, power_w, charging)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
                 ON CONFLICT(vehicle_id) DO UPDATE SET ts_ms = excluded.ts_ms, received_ms = excluded.received_ms,
                   lat = excluded.lat, lon = excluded.lon, heading = excluded.heading, speed_kmh = excluded.speed_kmh,
                   soc_pct = excluded.soc_pct, odometer_km = excluded.odometer_km, battery_temp_c = excluded.battery_temp_c,
                   power_w = excluded.power_w, charging = excluded.charging
                 WHERE telemetry_latest.ts_ms IS NULL OR excluded.ts_ms >= telemetry_latest.ts_ms",
            )?;
            for s in newest.values() {
                latest.execute(params![
                    s.vehicle_id,
                    s.ts_ms,
                    s.received_ms,
                    s.lat,
                    s.lon,
                    s.heading,
                    s.speed_kmh,
                    s.soc_pct,
                    s.odometer_km,
                    s.battery_temp_c,
                    s.power_w,
                    s.charging
                ])?;
            }
        }
        tx.commit()?;
        Ok(c)
    }

    fn after_commit(&self, c: Committed) {
        self.metrics
            .rows_committed_total
            .inc_by(c.updates.len() as u64);
        self.metrics.duplicates_total.inc_by(c.duplicates);
        for u in &c.updates {
            self.live.apply_sample(u);
        }
        if !c.updates.is_empty() {
            self.bus
                .publish(Event::TelemetryCommitted(Arc::new(c.updates)));
        }
        for (vehicle_id, online, ts_ms, firmware) in c.statuses {
            self.live.apply_status(&vehicle_id, online, ts_ms, firmware);
            self.bus.publish(Event::VehicleConnection {
                vehicle_id,
                online,
                ts_ms,
            });
        }
        for (vehicle_id, faults) in c.faults {
            let (active, critical) = self.live.apply_faults(&vehicle_id, &faults);
            self.bus.publish(Event::FaultsChanged {
                vehicle_id,
                active,
                critical,
            });
        }
    }
}
