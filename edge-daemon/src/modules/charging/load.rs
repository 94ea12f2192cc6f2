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

/// A reading holds until the next one, but no longer than this (a gap is no data).
const HOLD_MS: i64 = 5 * 60_000;

/// One connector's total power readings in `[from - HOLD_MS, to)`, oldest first, W.
fn readings(
    c: &Connection,
    charger: &str,
    connector: i64,
    from: i64,
    to: i64,
) -> rusqlite::Result<Vec<(i64, f64)>> {
    let mut st = c.prepare_cached(
        "SELECT ts_ms, CASE unit WHEN 'kW' THEN value * 1000 ELSE value END
           FROM charging_meter_samples
          WHERE charger_id = ?1 AND connector_id = ?2 AND ts_ms >= ?3 AND ts_ms < ?4
            AND measurand = ?5 AND phase = '' AND location IN ('', 'Outlet') AND unit IN ('W', 'kW')
          ORDER BY ts_ms",
    )?;
    let rows = st.query_map(
        params![charger, connector, from - HOLD_MS, to, POWER],
        |r| Ok((r.get::<_, i64>(0)?, r.get::<_, f64>(1)?)),
    )?;
    let mut out = Vec::new();
    for r in rows {
        let (ts, w) = r?;
        if w.is_finite() {
            out.push((ts, w.max(0.0)));
        }
    }
    Ok(out)
}

/// Adds one connector's energy to each step (`wh_ms[i]`: W x ms) and marks the steps
/// it covers: each reading holds from its time to the next reading (at most
/// [`HOLD_MS`], never past `now`), so a session that stops mid-step counts only the time
/// it drew, not its average over the whole step.
fn add_connector(r: &[(i64, f64)], from: i64, now: i64, wh_ms: &mut [f64], covered: &mut [bool]) {
    for (k, (ts, w)) in r.iter().enumerate() {
        let until = r
            .get(k + 1)
            .map_or(ts + HOLD_MS, |n| n.0.min(ts + HOLD_MS))
            .min(now);
        let mut a = (*ts).max(from);
        while a < until {
            let Ok(i) = usize::try_from((a - from) / STEP_MS) else {
                break;
            };
            let Some(slot) = wh_ms.get_mut(i) else { break };
            let b = until.min(from + (i as i64 + 1) * STEP_MS);
            *slot += w * (b - a) as f64;
            covered[i] = true;
            a = b;
        }
    }
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
    let mut wh_ms = vec![0.0; n];
    let mut covered = vec![false; n];
    for (charger, connector) in connectors {
        let r = readings(c, charger, *connector, from, to)?;
        add_connector(&r, from, now, &mut wh_ms, &mut covered);
    }
    // The average over the step (the one under way: over its part gone by).
    let actual: Vec<Option<f64>> = (0..n)
        .map(|i| {
            let start = from + i as i64 * STEP_MS;
            let span = (start + STEP_MS).min(now) - start;
            (covered[i] && span > 0).then(|| wh_ms[i] / span as f64)
        })
        .collect();
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
    fn time_weighted_per_connector_summed_with_the_plan_ahead() {
        let c = db();
        let from = 1_000 * STEP_MS;
        // Connector A1: 100 kW from 0 to 150 s, then 50 kW to 300 s (one step: 75 kW
        // averaged over time), then 20 kW (stored as kW) from 300 s into step 1.
        put(&c, "A", 1, from, POWER, "", 100_000.0, "W");
        put(&c, "A", 1, from + 150_000, POWER, "Outlet", 50_000.0, "W");
        put(&c, "A", 1, from + STEP_MS, POWER, "", 20.0, "kW");
        // Power at the bus (not the outlet) and energy: left out. A reading from before
        // the window holds into it.
        put(&c, "A", 1, from + 10_000, POWER, "EV", 999_000.0, "W");
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
        put(&c, "B", 2, from - 60_000, POWER, "", 30_000.0, "W");
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
        // Step 0: A 75 kW + B 30 kW for the 240 s its reading still held = 24 kW.
        // Step 1 (60 s gone by): A's 20 kW.
        assert_eq!(
            s.actual_w,
            vec![Some(99_000), Some(20_000), None, None, None]
        );
        assert_eq!(
            s.planned_w,
            vec![None, Some(40_000), Some(40_000), Some(10_000), Some(10_000)]
        );
        assert_eq!(s.cap_w, Some(400_000));
    }

    #[test]
    fn a_session_stopping_mid_step_is_not_counted_for_the_whole_step() {
        // The reviewer's case: connector 1 draws 150 kW and stops at 150 s (a 0 W
        // reading), connector 2 starts then at 150 kW: never over 150 kW together.
        let c = db();
        let from = 1_000 * STEP_MS;
        put(&c, "A", 1, from, POWER, "", 150_000.0, "W");
        put(&c, "A", 1, from + 150_000, POWER, "", 0.0, "W");
        put(&c, "A", 2, from + 150_000, POWER, "", 150_000.0, "W");
        let conns = vec![("A".to_string(), 1), ("A".to_string(), 2)];
        let s = day(&c, &conns, &[], from, from + STEP_MS, from + STEP_MS, None).unwrap();
        assert_eq!(s.actual_w, vec![Some(150_000)]);
    }
}
