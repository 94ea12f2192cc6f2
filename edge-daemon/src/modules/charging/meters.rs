//! Energy panel meters: their readings arrive on the topic map's topics (default the
//! seed's `DATA/PM/<panel>`; the MQTT gate lets each meter device publish only its own),
//! are checked against `schemas/mqtt/panel_meter.schema.json`, and are stored once per
//! (panel, time); a reading that fails is a dead letter with its reason, counted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonschema::Validator;
use rumqttd::local::{LinkError, LinkRx};
use rumqttd::Notification;
use rusqlite::params;
use serde_json::Value;

use super::service::ChargingApi;
use crate::store::migrate::Migration;

pub const SCHEMA: &str = include_str!("../../../../schemas/mqtt/panel_meter.schema.json");
/// Payload bytes kept of a dead letter.
const DEAD_KEEP: usize = 512;

pub(super) const MIGRATION: Migration = Migration {
    version: 4,
    name: "panel meters",
    sql: "CREATE TABLE charging_panel_readings (
            panel TEXT NOT NULL,
            ts_ms INTEGER NOT NULL,
            energy_wh INTEGER NOT NULL,
            power_w INTEGER,
            voltage REAL, current REAL, pf REAL, frequency REAL, status TEXT,
            received_ms INTEGER NOT NULL,
            PRIMARY KEY (panel, ts_ms)
          ) WITHOUT ROWID;
          CREATE TABLE charging_panels (
            panel TEXT PRIMARY KEY,
            last_ms INTEGER NOT NULL,
            power_w INTEGER
          );
          CREATE TABLE charging_panel_dead_letters (
            received_ms INTEGER NOT NULL,
            topic TEXT NOT NULL,
            reason TEXT NOT NULL,
            detail TEXT NOT NULL,
            payload BLOB NOT NULL
          );",
};

/// One reading, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub panel: String,
    pub ts_ms: i64,
    pub energy_wh: i64,
    pub power_w: Option<i64>,
    pub voltage: Option<f64>,
    pub current: Option<f64>,
    pub pf: Option<f64>,
    pub frequency: Option<f64>,
    pub status: Option<String>,
}

/// Why a message is not a reading: (reason label, what is wrong).
pub type Dead = (&'static str, String);

/// The panel a topic names under the topic map (`{id}` in `template`).
pub fn panel_of(template: &str, topic: &str) -> Option<String> {
    let (before, after) = template.split_once("{id}")?;
    let id = topic.strip_prefix(before)?.strip_suffix(after)?;
    crate::modules::auth::service::valid_id(id).then(|| id.to_string())
}

/// Reads one message: topic map, JSON, schema, time.
pub fn classify(
    template: &str,
    topic: &str,
    payload: &[u8],
    schema: &Validator,
    now_ms: i64,
) -> Result<Reading, Dead> {
    let panel = panel_of(template, topic)
        .ok_or(("topic", "not a meter topic of the topic map".to_string()))?;
    if payload.len() > 4096 {
        return Err((
            "too_large",
            format!("{} bytes; a reading is under 4 KiB", payload.len()),
        ));
    }
    let v: Value = serde_json::from_slice(payload).map_err(|e| ("json", e.to_string()))?;
    if let Some(e) = schema.iter_errors(&v).next() {
        let mut d = format!("{}: {e}", e.instance_path);
        d.truncate(200);
        return Err(("schema", d));
    }
    let ts_ms = match &v["ts"] {
        Value::Number(n) => {
            // An integer, possibly written with a fraction (1764565200.0).
            let t = n
                .as_i64()
                .or_else(|| n.as_f64().map(|f| f as i64))
                .unwrap_or(0);
            // Seconds until the year 5138; milliseconds after.
            if t < 100_000_000_000 {
                t.saturating_mul(1000)
            } else {
                t
            }
        }
        Value::String(s) => s
            .parse::<jiff::Timestamp>()
            .map_err(|e| ("schema", format!("ts: {e}")))?
            .as_millisecond(),
        _ => return Err(("schema", "ts".into())),
    };
    // Not before 2000, not more than ten minutes ahead of the edge's clock.
    if ts_ms < 946_684_800_000 || ts_ms > now_ms + 10 * 60_000 {
        return Err((
            "time",
            format!("ts {ts_ms} ms is before 2000 or in the future"),
        ));
    }
    let num = |k: &str| v[k].as_f64();
    Ok(Reading {
        panel,
        ts_ms,
        energy_wh: (num("energy_kwh").unwrap_or(0.0) * 1000.0).round() as i64,
        power_w: num("power_kw").map(|kw| (kw * 1000.0).round() as i64),
        voltage: num("voltage"),
        current: num("current"),
        pf: num("pf"),
        frequency: num("frequency"),
        status: v["status"].as_str().map(String::from),
    })
}

static STORE_FAILED: crate::lograte::LogRate =
    crate::lograte::LogRate::warn("charging.meter_store_failed", 10);

/// Stores one classified message: the reading (once per panel and time) and the
/// panel's newest state, or the dead letter.
fn store_one(
    c: &mut rusqlite::Connection,
    r: Result<Reading, Dead>,
    topic: &str,
    payload: &[u8],
    now: i64,
) -> rusqlite::Result<()> {
    let x = match r {
        Ok(x) => x,
        Err((reason, detail)) => {
            c.execute(
                "INSERT INTO charging_panel_dead_letters (received_ms, topic, reason, detail, payload)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![now, topic, reason, detail, payload],
            )?;
            return Ok(());
        }
    };
    let tx = c.transaction()?;
    let new = tx.execute(
        "INSERT OR IGNORE INTO charging_panel_readings (panel, ts_ms, energy_wh, power_w,
           voltage, current, pf, frequency, status, received_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            x.panel,
            x.ts_ms,
            x.energy_wh,
            x.power_w,
            x.voltage,
            x.current,
            x.pf,
            x.frequency,
            x.status,
            now
        ],
    )?;
    tx.execute(
        "INSERT INTO charging_panels (panel, last_ms, power_w) VALUES (?1, ?2, ?3)
         ON CONFLICT(panel) DO UPDATE SET last_ms = excluded.last_ms, power_w = excluded.power_w
         WHERE excluded.last_ms >= charging_panels.last_ms",
        params![x.panel, x.ts_ms, x.power_w],
    )?;
    // What the live site cap reads: a new reading stamped within 10 minutes of now is
    // the panel's load as received (a meter's queue replayed after an outage is not).
    if new == 1 && (x.ts_ms - now).abs() <= 600_000 {
        tx.execute(
            "UPDATE charging_panels SET received_ms = ?2, received_power_w = ?3 WHERE panel = ?1",
            params![x.panel, now, x.power_w],
        )?;
    }
    tx.commit()
}

/// The meters' broker link: every message classified and stored (or dead-lettered),
/// and counted for the gate's backpressure like ingest's.
pub(super) fn run(
    mut link: LinkRx,
    api: Arc<ChargingApi>,
    template: String,
    backpressure: Arc<crate::broker::Backpressure>,
    stop: tokio_util::sync::CancellationToken,
) {
    let schema = serde_json::from_str::<Value>(SCHEMA)
        .ok()
        .and_then(|s| jsonschema::draft7::new(&s).ok());
    let Some(schema) = schema else {
        tracing::error!("the panel meter schema does not compile; meter readings are not taken");
        return;
    };
    while !stop.is_cancelled() {
        match link.recv_deadline(Instant::now() + Duration::from_millis(200)) {
            Ok(Some(Notification::Forward(fwd))) => {
                let topic = String::from_utf8_lossy(&fwd.publish.topic).to_string();
                let now = crate::util::now_ms();
                let r = classify(&template, &topic, &fwd.publish.payload, &schema, now);
                let label = match &r {
                    Ok(_) => "reading",
                    Err((reason, _)) => reason,
                };
                api.metrics.panel_messages.with_label_values(&[label]).inc();
                let payload =
                    fwd.publish.payload[..fwd.publish.payload.len().min(DEAD_KEEP)].to_vec();
                let stored = api
                    .store
                    .write_blocking(move |c| store_one(c, r, &topic, &payload, now));
                if let Err(e) = stored {
                    if STORE_FAILED.allow() {
                        tracing::error!(error = %e, "panel meter reading not stored");
                    }
                }
                backpressure.ingested(1);
            }
            Ok(Some(Notification::Unschedule)) => {
                if link.ready().is_err() {
                    return;
                }
            }
            Ok(Some(_)) | Ok(None) | Err(LinkError::RecvTimeout(_)) => {}
            Err(e) => {
                tracing::error!(error = %e, "panel meter link closed");
                return;
            }
        }
    }
}

/// (time, register Wh) of a panel from the last reading before `from_ms` to the first
/// after `to_ms` (an interval across the edge of the period counts by its midpoint),
/// the first reading of each minute in between, in time order: at most 1,442 a day,
/// whatever the meter's rate.
pub fn readings(
    c: &rusqlite::Connection,
    panel: &str,
    from_ms: i64,
    to_ms: i64,
) -> rusqlite::Result<Vec<(i64, i64)>> {
    let mut st = c.prepare_cached(
        "SELECT * FROM (SELECT ts_ms, energy_wh FROM charging_panel_readings
                        WHERE panel = ?1 AND ts_ms < ?2 ORDER BY ts_ms DESC LIMIT 1)
         UNION ALL
         SELECT min(ts_ms), energy_wh FROM charging_panel_readings
           WHERE panel = ?1 AND ts_ms >= ?2 AND ts_ms < ?3 GROUP BY ts_ms / 60000
         UNION ALL
         SELECT * FROM (SELECT ts_ms, energy_wh FROM charging_panel_readings
                        WHERE panel = ?1 AND ts_ms >= ?3 ORDER BY ts_ms LIMIT 1)
         ORDER BY 1",
    )?;
    let rows = st.query_map(params![panel, from_ms, to_ms], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })?;
    rows.collect()
}

/// Every panel that ever reported: (panel, newest reading time, its power in W).
pub fn panels(c: &rusqlite::Connection) -> rusqlite::Result<Vec<(String, i64, Option<i64>)>> {
    let mut st = c.prepare_cached(
        "SELECT panel, last_ms, power_w FROM charging_panels ORDER BY panel LIMIT 1000",
    )?;
    let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    rows.collect()
}

#[cfg(test)]
#[path = "meters_tests.rs"]
mod tests;
