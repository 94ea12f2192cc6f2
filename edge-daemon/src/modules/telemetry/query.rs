//! Telemetry history queries (raw or bucketed) and the housekeeping that keeps storage
//! bounded: per-minute rollups, raw and rollup retention, dead-letter trimming.

use rusqlite::{params, Connection};
use serde::Serialize;

pub const MINUTE_MS: i64 = 60_000;
pub const DAY_MS: i64 = 86_400_000;
/// Rollups recompute this far back each run, so late samples still land in their minute.
const ROLLUP_REDO_MS: i64 = 10 * MINUTE_MS;
pub const MAX_RAW_ROWS: usize = 10_000;

/// Parses a bucket name: `raw` or `1m`, `5m`, `15m`, `1h`, `6h`, `1d`.
pub fn bucket_ms(name: &str) -> Option<Option<i64>> {
    Some(match name {
        "raw" => None,
        "1m" => Some(MINUTE_MS),
        "5m" => Some(5 * MINUTE_MS),
        "15m" => Some(15 * MINUTE_MS),
        "1h" => Some(60 * MINUTE_MS),
        "6h" => Some(360 * MINUTE_MS),
        "1d" => Some(DAY_MS),
        _ => return None,
    })
}

#[derive(Debug, Serialize)]
pub struct RawRow {
    pub ts_ms: i64,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    pub heading: Option<f64>,
    pub speed_kmh: Option<f64>,
    pub soc_pct: Option<f64>,
    pub odometer_km: Option<f64>,
    pub battery_temp_c: Option<f64>,
    pub power_w: Option<f64>,
    pub charging: Option<bool>,
    pub extra: Option<serde_json::Value>,
}

#[derive(Debug, Serialize)]
pub struct BucketRow {
    pub bucket_ms: i64,
    pub samples: i64,
    pub speed_avg: Option<f64>,
    pub speed_max: Option<f64>,
    pub soc_min: Option<f64>,
    pub soc_max: Option<f64>,
    pub odometer_max: Option<f64>,
    pub battery_temp_max: Option<f64>,
    pub power_avg: Option<f64>,
}

/// Raw samples in [from, to), oldest first, at most `MAX_RAW_ROWS` (+1 to detect more).
pub fn raw(c: &Connection, vehicle: &str, from: i64, to: i64) -> rusqlite::Result<Vec<RawRow>> {
    let mut st = c.prepare_cached(
        "SELECT ts_ms, lat, lon, heading, speed_kmh, soc_pct, odometer_km, battery_temp_c, power_w, charging, extra
         FROM telemetry_samples WHERE vehicle_id = ?1 AND ts_ms >= ?2 AND ts_ms < ?3 ORDER BY ts_ms LIMIT ?4",
    )?;
    let rows = st.query_map(params![vehicle, from, to, (MAX_RAW_ROWS + 1) as i64], |r| {
        let extra: Option<String> = r.get(10)?;
        Ok(RawRow {
            ts_ms: r.get(0)?,
            lat: r.get(1)?,
            lon: r.get(2)?,
            heading: r.get(3)?,
            speed_kmh: r.get(4)?,
            soc_pct: r.get(5)?,
            odometer_km: r.get(6)?,
            battery_temp_c: r.get(7)?,
            power_w: r.get(8)?,
            charging: r.get(9)?,
            extra: extra.and_then(|e| serde_json::from_str(&e).ok()),
        })
    })?;
    rows.collect()
}

/// Buckets over raw samples (recent ranges) or over the minute rollups (older ranges).
pub fn bucketed(
    c: &Connection,
    vehicle: &str,
    from: i64,
    to: i64,
    bucket: i64,
    from_raw: bool,
) -> rusqlite::Result<Vec<BucketRow>> {
    let sql = if from_raw {
        "SELECT (ts_ms / ?4) * ?4 AS b, count(*), avg(speed_kmh), max(speed_kmh), min(soc_pct), max(soc_pct),
                max(odometer_km), max(battery_temp_c), avg(power_w)
         FROM telemetry_samples WHERE vehicle_id = ?1 AND ts_ms >= ?2 AND ts_ms < ?3 GROUP BY b ORDER BY b"
    } else {
        "SELECT (bucket_ms / ?4) * ?4 AS b, sum(samples), sum(speed_sum) / nullif(sum(speed_n), 0), max(speed_max),
                min(soc_min), max(soc_max), max(odometer_max), max(battery_temp_max),
                sum(power_sum) / nullif(sum(power_n), 0)
         FROM telemetry_rollup_1m WHERE vehicle_id = ?1 AND bucket_ms >= ?2 AND bucket_ms < ?3 GROUP BY b ORDER BY b"
    };
    let mut st = c.prepare_cached(sql)?;
    let rows = st.query_map(params![vehicle, from, to, bucket], |r| {
        Ok(BucketRow {
            bucket_ms: r.get(0)?,
            samples: r.get(1)?,
            speed_avg: r.get(2)?,
            speed_max: r.get(3)?,
            soc_min: r.get(4)?,
            soc_max: r.get(5)?,
            odometer_max: r.get(6)?,
            battery_temp_max: r.get(7)?,
            power_avg: r.get(8)?,
        })
    })?;
    rows.collect()
}

/// One piece of housekeeping, small enough to hold the write lock only briefly: an
/// hour of one bus's samples rolled up (on whole minutes, so a minute's bucket is never
/// split), CHUNK_ROWS of one bus's old rows deleted, or the dead letters trimmed.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Roll {
        vehicle: String,
        from: i64,
        to: i64,
    },
    Delete {
        raw: bool,
        vehicle: String,
        cut: i64,
    },
    DeadLetters {
        keep: i64,
    },
}

/// Housekeeping's transactions: this much time of samples rolled up, or this many rows
/// deleted, at a time.
const CHUNK_MS: i64 = 60 * MINUTE_MS;
const CHUNK_ROWS: usize = 5_000;

/// What one housekeeping pass will do.
pub fn housekeeping_steps(
    c: &Connection,
    now_ms: i64,
    raw_days: u64,
    rollup_days: u64,
    dead_keep: u64,
) -> rusqlite::Result<Vec<Step>> {
    let vehicles: Vec<(String, Option<i64>)> = {
        let mut st = c.prepare(
            "SELECT l.vehicle_id, r.rolled_until_ms FROM telemetry_latest l
             LEFT JOIN telemetry_rollup_state r ON r.vehicle_id = l.vehicle_id",
        )?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let until = (now_ms / MINUTE_MS) * MINUTE_MS; // only complete minutes
    let raw_cut = now_ms - raw_days as i64 * DAY_MS;
    let rollup_cut = now_ms - rollup_days as i64 * DAY_MS;
    let mut steps = Vec::new();
    for (vehicle, done) in vehicles {
        let mut from = done
            .map(|d| d - ROLLUP_REDO_MS)
            .unwrap_or(raw_cut)
            .max(raw_cut);
        loop {
            let to = (((from + CHUNK_MS) / MINUTE_MS) * MINUTE_MS).min(until);
            steps.push(Step::Roll {
                vehicle: vehicle.clone(),
                from,
                to,
            });
            if to >= until {
                break;
            }
            from = to;
        }
        steps.push(Step::Delete {
            raw: true,
            vehicle: vehicle.clone(),
            cut: raw_cut,
        });
        steps.push(Step::Delete {
            raw: false,
            vehicle,
            cut: rollup_cut,
        });
    }
    steps.push(Step::DeadLetters {
        keep: dead_keep as i64,
    });
    Ok(steps)
}

/// Does one step in one transaction; the rows it rolled up or deleted.
pub fn housekeeping_step(c: &mut Connection, s: &Step) -> rusqlite::Result<usize> {
    match s {
        Step::Roll { vehicle, from, to } => {
            let tx = c.transaction()?;
            let n = if to > from {
                tx.execute(
                    "INSERT OR REPLACE INTO telemetry_rollup_1m (vehicle_id, bucket_ms, samples, speed_sum, speed_n, speed_max,
                       soc_min, soc_max, odometer_max, battery_temp_max, power_sum, power_n)
                     SELECT vehicle_id, (ts_ms / 60000) * 60000, count(*), total(speed_kmh), count(speed_kmh), max(speed_kmh),
                       min(soc_pct), max(soc_pct), max(odometer_km), max(battery_temp_c), total(power_w), count(power_w)
                     FROM telemetry_samples WHERE vehicle_id = ?1 AND ts_ms >= ?2 AND ts_ms < ?3
                     GROUP BY (ts_ms / 60000)",
                    params![vehicle, from, to],
                )?
            } else {
                0
            };
            tx.execute(
                "INSERT INTO telemetry_rollup_state (vehicle_id, rolled_until_ms) VALUES (?1, ?2)
                 ON CONFLICT(vehicle_id) DO UPDATE SET rolled_until_ms = excluded.rolled_until_ms",
                params![vehicle, to],
            )?;
            tx.commit()?;
            Ok(n)
        }
        Step::Delete { raw, vehicle, cut } => {
            let (table, column) = if *raw {
                ("telemetry_samples", "ts_ms")
            } else {
                ("telemetry_rollup_1m", "bucket_ms")
            };
            c.execute(
                &format!(
                    "DELETE FROM {table} WHERE vehicle_id = ?1 AND {column} IN (SELECT {column} FROM {table}
                       WHERE vehicle_id = ?1 AND {column} < ?2 ORDER BY {column} LIMIT ?3)"
                ),
                params![vehicle, cut, CHUNK_ROWS as i64],
            )
        }
        Step::DeadLetters { keep } => c.execute(
            "DELETE FROM telemetry_dead_letters WHERE id <= (SELECT max(id) FROM telemetry_dead_letters) - ?1",
            params![keep],
        ),
    }
}

/// Runs the steps through `exec` (each in its own transaction; a deletion again until
/// it finds fewer than CHUNK_ROWS). Returns (minutes rolled up, raw rows deleted).
pub fn run_housekeeping<E>(
    steps: &[Step],
    mut exec: impl FnMut(&Step) -> Result<usize, E>,
) -> Result<(usize, usize), E> {
    let (mut rolled, mut deleted) = (0, 0);
    for s in steps {
        loop {
            let n = exec(s)?;
            match s {
                Step::Roll { .. } => rolled += n,
                Step::Delete { raw: true, .. } => deleted += n,
                _ => {}
            }
            if !matches!(s, Step::Delete { .. }) || n < CHUNK_ROWS {
                break;
            }
        }
    }
    Ok((rolled, deleted))
}

/// One housekeeping pass on one connection. Returns (minutes rolled up, raw rows
/// deleted). The node runs it through its shared writer instead (`telemetry::mod`), one
/// step at a time, so the sync push queues between steps.
pub fn housekeeping(
    c: &mut Connection,
    now_ms: i64,
    raw_days: u64,
    rollup_days: u64,
    dead_keep: u64,
) -> rusqlite::Result<(usize, usize)> {
    let steps = housekeeping_steps(c, now_ms, raw_days, rollup_days, dead_keep)?;
    run_housekeeping(&steps, |s| housekeeping_step(c, s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        let mut c = Connection::open_in_memory().unwrap();
        crate::store::migrate::run(&mut c, "telemetry", super::super::store::MIGRATIONS).unwrap();
        c
    }

    #[test]
    fn rollups_retention_and_buckets_agree() {
        let mut c = db();
        let now = 100 * DAY_MS;
        let t0 = now - 10 * DAY_MS; // older than raw retention (7 d)
        let t1 = now - DAY_MS;
        c.execute("INSERT INTO telemetry_latest (vehicle_id) VALUES ('b')", [])
            .unwrap();
        for (i, base) in [t0, t1].iter().enumerate() {
            for s in 0..120 {
                c.execute(
                    "INSERT INTO telemetry_samples (vehicle_id, ts_ms, received_ms, speed_kmh, soc_pct) VALUES ('b', ?1, ?1, ?2, ?3)",
                    params![base + s * 1000, 10.0 * (i as f64 + 1.0), 90.0 - s as f64 / 10.0],
                )
                .unwrap();
            }
        }
        // First pass: the old samples are past raw retention, so only the recent ones roll up
        // (rollups start at the raw cut) and the old raw rows are deleted.
        let (rolled, deleted) = housekeeping(&mut c, now, 7, 400, 100).unwrap();
        assert_eq!(deleted, 120);
        assert_eq!(rolled, 2, "two complete minutes of recent data");
        let from_rollup = bucketed(&c, "b", t1, t1 + 2 * MINUTE_MS, 2 * MINUTE_MS, false).unwrap();
        let from_raw = bucketed(&c, "b", t1, t1 + 2 * MINUTE_MS, 2 * MINUTE_MS, true).unwrap();
        assert_eq!(from_rollup.len(), 1);
        assert_eq!(from_rollup[0].samples, 120);
        assert_eq!(from_rollup[0].samples, from_raw[0].samples);
        assert_eq!(from_rollup[0].speed_avg, from_raw[0].speed_avg);
        assert_eq!(from_rollup[0].soc_min, from_raw[0].soc_min);
        // Idempotent.
        housekeeping(&mut c, now, 7, 400, 100).unwrap();
        let again = bucketed(&c, "b", t1, t1 + 2 * MINUTE_MS, 2 * MINUTE_MS, false).unwrap();
        assert_eq!(again[0].samples, 120);
    }

    #[test]
    fn bucket_names() {
        assert_eq!(bucket_ms("raw"), Some(None));
        assert_eq!(bucket_ms("1h"), Some(Some(3_600_000)));
        assert_eq!(bucket_ms("7m"), None);
    }

    /// Issue 14: a restarted depot's first push failed with "database is locked" while
    /// housekeeping worked through a backlog on a connection of its own. Run as the node
    /// runs it (step by step through the shared writer), another write (the sync push
    /// uses the same writer) waits for one step at most, never for the whole backlog.
    #[test]
    fn housekeeping_of_a_big_backlog_keeps_other_writes_waiting_briefly() {
        use crate::store::{DataDir, Store};
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        use std::time::{Duration, Instant};
        let tmp = tempfile::tempdir().unwrap();
        let dd = DataDir::new(&tmp.path().join("data"), None);
        dd.init().unwrap();
        let store = Store::open(&dd).unwrap();
        let now = 100 * DAY_MS;
        store
            .write_blocking(|c| {
                crate::store::migrate::run(c, "telemetry", super::super::store::MIGRATIONS)
                    .unwrap();
                c.execute_batch("CREATE TABLE other (x INTEGER)")?;
                c.execute("INSERT INTO telemetry_latest (vehicle_id) VALUES ('b')", [])?;
                // Eight days of a sample every 2 s for one bus, never rolled up: a day
                // of it past raw retention (7 d).
                let t = c.transaction()?;
                {
                    let mut st = t.prepare(
                        "INSERT INTO telemetry_samples (vehicle_id, ts_ms, received_ms, speed_kmh, soc_pct) VALUES ('b', ?1, ?1, 30.0, 70.0)",
                    )?;
                    let mut ts = now - 8 * DAY_MS;
                    while ts < now {
                        st.execute(params![ts])?;
                        ts += 2_000;
                    }
                }
                t.commit()
            })
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (stop2, store2) = (stop.clone(), store.clone());
        let other = std::thread::spawn(move || {
            let (mut n, mut worst) = (0, Duration::ZERO);
            while !stop2.load(Ordering::SeqCst) {
                let t0 = Instant::now();
                store2
                    .write_blocking(|c| c.execute("INSERT INTO other (x) VALUES (1)", []))
                    .unwrap();
                worst = worst.max(t0.elapsed());
                n += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
            (n, worst)
        });
        std::thread::sleep(Duration::from_millis(20));
        let t0 = Instant::now();
        let steps = store
            .read_blocking(|c| housekeeping_steps(c, now, 7, 400, 100))
            .unwrap();
        let (rolled, deleted) = run_housekeeping(&steps, |s| {
            store.write_blocking(|c| housekeeping_step(c, s))
        })
        .unwrap();
        let took = t0.elapsed();
        stop.store(true, Ordering::SeqCst);
        let (n, worst) = other.join().unwrap();
        assert_eq!(deleted, 43_200, "a day of 2 s samples past retention");
        assert_eq!(rolled, 7 * 24 * 60, "seven days of whole minutes");
        assert!(n > 10, "{n} other writes in {took:?}");
        // One step (an hour of samples, 5,000 rows) at most: far below the push's 5 s
        // busy timeout, and a small part of the whole pass.
        assert!(
            worst < Duration::from_millis(200) && worst * 3 < took,
            "another write waited {worst:?} while housekeeping took {took:?}"
        );
    }
}
