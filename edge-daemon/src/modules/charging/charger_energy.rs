//! Energy and money per charger: each charging session's registers (its start, the
//! MeterValues `Energy.Active.Import.Register` at the outlet while it ran, its stop)
//! costed by the tariff exactly as a panel meter's are (`energy::totals`: each interval
//! by its midpoint's band), session by session, so a charger whose register starts
//! again at 0 for each transaction counts every one, and a session reported only by its
//! start and stop counts too. Summed over the charger's sessions.

use rusqlite::{params, Connection};

use super::energy::{totals, Tariff, Totals};
use super::sessions::ENERGY;

/// A session as costed: (id, connector, start ms, start Wh, stop ms, stop Wh).
type Run = (i64, i64, Option<i64>, Option<i64>, Option<i64>, Option<i64>);

/// One session's (time, register Wh): its start, the first sample of each minute while
/// it ran (within `[from, to)`, and the last before `from`), its stop.
fn session_readings(
    c: &Connection,
    charger: &str,
    s: &Run,
    from: i64,
    to: i64,
) -> rusqlite::Result<Vec<(i64, i64)>> {
    let (tx, connector, start, start_wh, stop, stop_wh) = *s;
    let mut out = Vec::new();
    if let (Some(t), Some(wh)) = (start, start_wh) {
        out.push((t, wh));
    }
    let mut st = c.prepare_cached(
        "SELECT min(ts_ms), CAST(round(CASE unit WHEN 'kWh' THEN value * 1000 ELSE value END) AS INTEGER)
           FROM charging_meter_samples
          WHERE charger_id = ?1 AND connector_id = ?2 AND ts_ms >= ?3 AND ts_ms < ?4 AND transaction_id = ?5
            AND measurand = ?6 AND phase = '' AND location IN ('', 'Outlet') AND unit IN ('Wh', 'kWh')
          GROUP BY ts_ms / 60000",
    )?;
    let lo = start.unwrap_or(from - 86_400_000).max(from - 86_400_000);
    let hi = stop.map_or(to, |s| s + 1).min(to + 86_400_000);
    let rows = st.query_map(params![charger, connector, lo, hi, tx, ENERGY], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })?;
    for r in rows {
        out.push(r?);
    }
    if let (Some(t), Some(wh)) = (stop, stop_wh) {
        out.push((t, wh));
    }
    out.sort_by_key(|p| p.0);
    Ok(out)
}

/// The sessions of a charger that ran at some time in `[from, to)`.
fn sessions(c: &Connection, charger: &str, from: i64, to: i64) -> rusqlite::Result<Vec<Run>> {
    let mut st = c.prepare_cached(
        "SELECT id, connector_id, start_ms, meter_start_wh, stop_ms, meter_stop_wh FROM charging_transactions
          WHERE charger_id = ?1 AND coalesce(start_ms, last_ms, stop_ms) < ?3
            AND (stop_ms IS NULL OR stop_ms >= ?2)
          LIMIT 5000",
    )?;
    let rows = st.query_map(params![charger, from, to], |r| {
        Ok((
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
        ))
    })?;
    rows.collect()
}

/// Each charger's energy and cost over `[from, to)`: `chargers` are (id, connectors).
pub fn day(
    c: &Connection,
    chargers: &[(String, i64)],
    from: i64,
    to: i64,
    tariff: &Tariff,
    tz: &jiff::tz::TimeZone,
) -> rusqlite::Result<Vec<(String, Totals)>> {
    let mut out = Vec::with_capacity(chargers.len());
    for (id, _connectors) in chargers {
        let mut sum = Totals::default();
        for s in sessions(c, id, from, to)? {
            let t = totals(
                &session_readings(c, id, &s, from, to)?,
                from,
                to,
                tariff,
                tz,
            );
            sum.wh += t.wh;
            sum.cost_sen += t.cost_sen;
            for b in t.bands {
                match sum.bands.iter_mut().find(|x| x.band == b.band) {
                    Some(x) => {
                        x.wh += b.wh;
                        x.cost_sen += b.cost_sen;
                    }
                    None => sum.bands.push(b),
                }
            }
        }
        out.push((id.clone(), sum));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_session_of_a_charger_is_costed_by_band_and_summed() {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(super::super::store::MIGRATIONS[0].sql)
            .unwrap();
        let tz = jiff::tz::TimeZone::get("Asia/Jakarta").unwrap();
        let at = |h: i8| {
            jiff::civil::date(2026, 11, 30)
                .at(h, 0, 0, 0)
                .to_zoned(tz.clone())
                .unwrap()
                .timestamp()
                .as_millisecond()
        };
        let session = |id: i64, k: i64, start: i64, swh: i64, stop: Option<(i64, i64)>| {
            c.execute(
                "INSERT INTO charging_transactions (id, charger_id, connector_id, origin, start_ms, meter_start_wh, stop_ms, meter_stop_wh)
                 VALUES (?1, 'CP-1', ?2, 'start', ?3, ?4, ?5, ?6)",
                params![id, k, start, swh, stop.map(|s| s.0), stop.map(|s| s.1)],
            )
            .unwrap();
        };
        let sample = |tx: i64, k: i64, ts: i64, v: f64, unit: &str| {
            c.execute(
                "INSERT INTO charging_meter_samples (charger_id, connector_id, ts_ms, measurand, phase, context, location, value, unit, transaction_id)
                 VALUES ('CP-1', ?1, ?2, ?3, '', 'Sample.Periodic', '', ?4, ?5, ?6)",
                params![k, ts, ENERGY, v, unit, tx],
            )
            .unwrap();
        };
        // Session 1, connector 1: 10 kWh from 12:00 to 14:00 (off-peak), a sample in kWh.
        session(1, 1, at(12), 100_000, Some((at(14), 110_000)));
        sample(1, 1, at(13), 105.0, "kWh");
        // Session 2, connector 2: only start and stop registers, 5 kWh 18:00-19:00 (peak).
        session(2, 2, at(18), 2_000_000, Some((at(19), 2_005_000)));
        // Session 3, connector 1: the register starts again at 0, 3 kWh, still open.
        session(3, 1, at(20), 0, None);
        sample(3, 1, at(20) + 1_800_000, 3_000.0, "Wh");
        // Yesterday's session: nothing today.
        session(4, 1, at(0) - 7_200_000, 0, Some((at(0) - 3_600_000, 9_000)));
        let (from, to) = (at(0), at(0) + 86_400_000);
        let t = Tariff::default();
        let day = day(&c, &[("CP-1".to_string(), 2)], from, to, &t, &tz).unwrap();
        let (_, sum) = &day[0];
        assert_eq!(sum.wh, 18_000);
        // 10 kWh x 103,578 sen + (5 + 3) kWh x 155,367 sen (17-22 peak).
        assert_eq!(sum.cost_sen, 1_035_780 + 8 * 155_367);
        assert_eq!(sum.bands.len(), 2);
    }
}
