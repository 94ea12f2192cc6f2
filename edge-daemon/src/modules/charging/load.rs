//! The site's charging load over a day, for the Charging page's chart and
//! `GET /api/v1/charging/load`: what the chargers drew (their MeterValues power,
//! averaged per connector in each step and summed), what the current plan will draw
//! from now on, and the site cap. Read per connector along the samples' key, so a day
//! costs the same however many days of samples the edge keeps.

use rusqlite::{params, Connection};
use serde::Serialize;

use super::plan::Schedule;
use super::sessions::POWER;

/// Five-minute steps: 288 points a day.
pub const STEP_MS: i64 = 5 * 60_000;

#[derive(Debug, Serialize, PartialEq)]
pub struct LoadSeries {
    /// Start of each step, ms.
    pub t: Vec<i64>,
    /// Drawn, W (None: no reading in that step, or a step still ahead).
    pub actual_w: Vec<Option<i64>>,
    /// The plan's draw, W, for steps from now on (None before).
    pub planned_w: Vec<Option<i64>>,
    pub cap_w: Option<i64>,
}

/// Average drawn power per step of one connector in `[from, to)`: step index -> W.
fn connector_steps(
    c: &Connection,
    charger: &str,
    connector: i64,
    from: i64,
    to: i64,
) -> rusqlite::Result<Vec<(usize, f64)>> {
    let mut st = c.prepare_cached(
        "SELECT (ts_ms - ?4) / ?5, AVG(CASE unit WHEN 'kW' THEN value * 1000 ELSE value END)
           FROM charging_meter_samples
          WHERE charger_id = ?1 AND connector_id = ?2 AND ts_ms >= ?4 AND ts_ms < ?3
            AND measurand = ?6 AND phase = '' AND location IN ('', 'Outlet') AND unit IN ('W', 'kW')
          GROUP BY 1",
    )?;
    let rows = st.query_map(params![charger, connector, to, from, STEP_MS, POWER], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, f64>(1)?))
    })?;
    let mut out = Vec::new();
    for r in rows {
        let (i, w) = r?;
        if let Ok(i) = usize::try_from(i) {
            if w.is_finite() {
                out.push((i, w.max(0.0)));
            }
        }
    }
    Ok(out)
}

/// The series for `[from, to)`, with `connectors` read from the store and `plan` the
/// current plan.
pub fn day(
    c: &Connection,
    connectors: &[(String, i64)],
    plan: &[Schedule],
    from: i64,
    to: i64,
    now: i64,
    cap_w: Option<i64>,
) -> rusqlite::Result<LoadSeries> {
    let n = usize::try_from(((to - from) / STEP_MS).max(0)).unwrap_or(0);
    let t: Vec<i64> = (0..n).map(|i| from + i as i64 * STEP_MS).collect();
    let mut actual: Vec<Option<f64>> = vec![None; n];
    for (charger, connector) in connectors {
        for (i, w) in connector_steps(c, charger, *connector, from, to)? {
            if let Some(slot) = actual.get_mut(i) {
                *slot = Some(slot.unwrap_or(0.0) + w);
            }
        }
    }
    let planned_w = t
        .iter()
        .map(|&at| {
            // The step under way counts from now, so the line joins the readings.
            let at = if at < now && at + STEP_MS > now {
                now
            } else {
                at
            };
            (at >= now).then(|| plan.iter().map(|s| s.limit_at(at)).sum())
        })
        .collect();
    Ok(LoadSeries {
        t,
        actual_w: actual
            .into_iter()
            .map(|w| w.map(|w| w.round() as i64))
            .collect(),
        planned_w,
        cap_w,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(
            "CREATE TABLE charging_meter_samples (charger_id TEXT, connector_id INTEGER, ts_ms INTEGER,
               measurand TEXT, phase TEXT, context TEXT, location TEXT, value REAL, unit TEXT, transaction_id INTEGER)",
        )
        .unwrap();
        c
    }

    // One sample's every column, as the table has them.
    #[allow(clippy::too_many_arguments)]
    fn put(c: &Connection, ch: &str, k: i64, ts: i64, m: &str, loc: &str, v: f64, unit: &str) {
        c.execute(
            "INSERT INTO charging_meter_samples VALUES (?1, ?2, ?3, ?4, '', 'Sample.Periodic', ?5, ?6, ?7, 1)",
            params![ch, k, ts, m, loc, v, unit],
        )
        .unwrap();
    }

    #[test]
    fn sums_connectors_averages_within_a_step_and_adds_the_plan_ahead() {
        let c = db();
        let from = 1_000 * STEP_MS;
        // Connector 1: 100 and 50 kW in step 0 (average 75), 20 kW (in kW units) in step 1.
        put(&c, "A", 1, from + 10_000, POWER, "", 100_000.0, "W");
        put(&c, "A", 1, from + 20_000, POWER, "Outlet", 50_000.0, "W");
        put(&c, "A", 1, from + STEP_MS, POWER, "", 20.0, "kW");
        // Power at the bus (not the outlet), before the day, and energy: left out.
        put(&c, "A", 1, from + 10_000, POWER, "EV", 999_000.0, "W");
        put(&c, "A", 1, from - 1, POWER, "", 999_000.0, "W");
        put(
            &c,
            "A",
            1,
            from + 30_000,
            "Energy.Active.Import.Register",
            "",
            5.0,
            "Wh",
        );
        // Connector 2 of B: 30 kW in step 0.
        put(&c, "B", 2, from + 5_000, POWER, "", 30_000.0, "W");
        let plan = vec![Schedule {
            charger: "A".into(),
            connector: 1,
            vehicle: None,
            periods: vec![(from, 40_000), (from + 3 * STEP_MS, 10_000)],
            planned_wh: 0,
            need_wh: 0,
            deadline_ms: 0,
            ready_ms: None,
        }];
        let conns = vec![("A".to_string(), 1), ("B".to_string(), 2)];
        let now = from + STEP_MS + 60_000;
        let s = day(
            &c,
            &conns,
            &plan,
            from,
            from + 5 * STEP_MS,
            now,
            Some(400_000),
        )
        .unwrap();
        assert_eq!(s.t.len(), 5);
        assert_eq!(
            s.actual_w,
            vec![Some(105_000), Some(20_000), None, None, None]
        );
        assert_eq!(
            s.planned_w,
            vec![None, Some(40_000), Some(40_000), Some(10_000), Some(10_000)]
        );
        assert_eq!(s.cap_w, Some(400_000));
    }
}
