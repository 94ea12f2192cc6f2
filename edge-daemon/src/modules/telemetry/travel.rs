//! How far a vehicle went in a window, for other modules (fleet's `TravelLog`): its
//! odometer and charge at the first and last reading, from the raw samples or, where
//! those are gone, the minute rollups. Four indexed look-ups per vehicle, whatever the
//! window's length.

use rusqlite::{params, Connection, OptionalExtension};

use crate::modules::fleet::service::{Travel, TravelLog};
use crate::store::Store;

pub struct TravelReader {
    pub store: Store,
}

type Reading = (i64, f64, Option<f64>);

/// The (time, odometer, charge) of the first (or last) raw sample with an odometer, and
/// of the first (or last) minute rollup with one.
fn edge_readings(
    c: &Connection,
    vehicle: &str,
    from: i64,
    to: i64,
    last: bool,
) -> rusqlite::Result<(Option<Reading>, Option<Reading>)> {
    let order = if last { "DESC" } else { "ASC" };
    let raw = c
        .query_row(
            &format!(
                "SELECT ts_ms, odometer_km, soc_pct FROM telemetry_samples
                  WHERE vehicle_id = ?1 AND ts_ms >= ?2 AND ts_ms < ?3 AND odometer_km IS NOT NULL
                  ORDER BY ts_ms {order} LIMIT 1"
            ),
            params![vehicle, from, to],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let rolled = c
        .query_row(
            &format!(
                "SELECT bucket_ms, odometer_max FROM telemetry_rollup_1m
                  WHERE vehicle_id = ?1 AND bucket_ms >= ?2 AND bucket_ms < ?3 AND odometer_max IS NOT NULL
                  ORDER BY bucket_ms {order} LIMIT 1"
            ),
            params![vehicle, from, to],
            |r| Ok((r.get(0)?, r.get(1)?, None)),
        )
        .optional()?;
    Ok((raw, rolled))
}

/// The raw sample (it has the charge) unless the rollups reach a whole minute further
/// (raw samples are kept fewer days than rollups).
fn pick(raw: Option<Reading>, rolled: Option<Reading>, last: bool) -> Option<Reading> {
    match (raw, rolled) {
        (Some(r), Some(m)) => {
            let further = if last {
                m.0 >= r.0 + 60_000
            } else {
                m.0 + 60_000 <= r.0
            };
            Some(if further { m } else { r })
        }
        (r, m) => r.or(m),
    }
}

/// The travel of `vehicle` in `[from, to)` (None without two odometer readings).
pub fn travel(
    c: &Connection,
    vehicle: &str,
    from: i64,
    to: i64,
) -> rusqlite::Result<Option<Travel>> {
    let (r, m) = edge_readings(c, vehicle, from, to, false)?;
    let first = pick(r, m, false);
    let (r, m) = edge_readings(c, vehicle, from, to, true)?;
    let (Some(a), Some(b)) = (first, pick(r, m, true)) else {
        return Ok(None);
    };
    Ok(Some(Travel {
        first_km: a.1,
        last_km: b.1,
        first_soc_pct: a.2,
        last_soc_pct: b.2,
    }))
}

impl TravelLog for TravelReader {
    fn travel(&self, vehicle_id: &str, from_ms: i64, to_ms: i64) -> Option<Travel> {
        self.store
            .read_blocking(|c| travel(c, vehicle_id, from_ms, to_ms))
            .map_err(|e| tracing::warn!(error = %e, "reading a vehicle's travel failed"))
            .ok()
            .flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_and_last_odometer_from_samples_or_rollups() {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(super::super::store::MIGRATIONS[0].sql)
            .unwrap();
        let sample = |ts: i64, km: f64, soc: f64| {
            c.execute(
                "INSERT INTO telemetry_samples (vehicle_id, ts_ms, received_ms, odometer_km, soc_pct) VALUES ('b1', ?1, ?1, ?2, ?3)",
                params![ts, km, soc],
            )
            .unwrap();
        };
        let rollup = |bucket: i64, km: f64| {
            c.execute(
                "INSERT INTO telemetry_rollup_1m (vehicle_id, bucket_ms, samples, odometer_max) VALUES ('b1', ?1, 60, ?2)",
                params![bucket, km],
            )
            .unwrap();
        };
        // An old day only in the rollups (raw samples gone), recent minutes in both.
        rollup(0, 20_000.0);
        rollup(600_000, 20_100.0);
        sample(610_000, 20_100.0, 80.0);
        sample(700_000, 20_250.5, 40.0);
        rollup(660_000, 20_250.5);
        let t = travel(&c, "b1", 0, 800_000).unwrap().unwrap();
        assert_eq!((t.first_km, t.last_km), (20_000.0, 20_250.5));
        // The last minute's rollup is not a minute past the raw sample: the raw one, with
        // its charge, is used.
        assert_eq!((t.first_soc_pct, t.last_soc_pct), (None, Some(40.0)));
        // Both ends in the raw samples' time: the raw ones, with their charge, though the
        // first minute's rollup starts 10 s before the first sample.
        let recent = travel(&c, "b1", 600_000, 800_000).unwrap().unwrap();
        assert_eq!(
            (recent.first_km, recent.first_soc_pct),
            (20_100.0, Some(80.0))
        );
        assert!(travel(&c, "b1", 800_000, 900_000).unwrap().is_none());
        assert!(travel(&c, "nobody", 0, 900_000).unwrap().is_none());
    }
}
