//! Energy and money per charger: each connector's energy register (the MeterValues
//! `Energy.Active.Import.Register` at the outlet) costed by the tariff exactly as a panel
//! meter's is (`energy::totals`: each interval by its midpoint's band, a register that
//! went down adds nothing), summed over the charger's connectors.

use rusqlite::{params, Connection};

use super::energy::{totals, Tariff, Totals};
use super::sessions::ENERGY;

/// (time, register Wh) of one connector: the last reading before `from`, the first of
/// each minute in `[from, to)`, the first at or after `to` (at most 1,442 a day).
fn readings(
    c: &Connection,
    charger: &str,
    connector: i64,
    from: i64,
    to: i64,
) -> rusqlite::Result<Vec<(i64, i64)>> {
    let mut st = c.prepare_cached(
        "WITH r AS (SELECT ts_ms, CAST(round(CASE unit WHEN 'kWh' THEN value * 1000 ELSE value END) AS INTEGER) AS wh
                      FROM charging_meter_samples
                     WHERE charger_id = ?1 AND connector_id = ?2 AND measurand = ?5 AND phase = ''
                       AND location IN ('', 'Outlet') AND unit IN ('Wh', 'kWh'))
         SELECT * FROM (SELECT ts_ms, wh FROM r WHERE ts_ms < ?3 ORDER BY ts_ms DESC LIMIT 1)
         UNION ALL
         SELECT min(ts_ms), wh FROM r WHERE ts_ms >= ?3 AND ts_ms < ?4 GROUP BY ts_ms / 60000
         UNION ALL
         SELECT * FROM (SELECT ts_ms, wh FROM r WHERE ts_ms >= ?4 ORDER BY ts_ms LIMIT 1)
         ORDER BY 1",
    )?;
    let rows = st.query_map(params![charger, connector, from, to, ENERGY], |r| {
        Ok((r.get(0)?, r.get(1)?))
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
    for (id, connectors) in chargers {
        let mut sum = Totals::default();
        for k in 1..=*connectors {
            let t = totals(&readings(c, id, k, from, to)?, from, to, tariff, tz);
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
    fn a_chargers_connectors_are_costed_by_band_and_summed() {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(
            "CREATE TABLE charging_meter_samples (charger_id TEXT, connector_id INTEGER, ts_ms INTEGER,
               measurand TEXT, phase TEXT, context TEXT, location TEXT, value REAL, unit TEXT, transaction_id INTEGER)",
        )
        .unwrap();
        let put = |k: i64, ts: i64, v: f64, unit: &str| {
            c.execute(
                "INSERT INTO charging_meter_samples VALUES ('CP-1', ?1, ?2, ?3, '', 'Sample.Periodic', '', ?4, ?5, 1)",
                params![k, ts, ENERGY, v, unit],
            )
            .unwrap();
        };
        let tz = jiff::tz::TimeZone::get("Asia/Jakarta").unwrap();
        let at = |h: i8| {
            jiff::civil::date(2026, 11, 30)
                .at(h, 0, 0, 0)
                .to_zoned(tz.clone())
                .unwrap()
                .timestamp()
                .as_millisecond()
        };
        // Connector 1: 10 kWh from 12:00 to 14:00 (off-peak), in kWh units.
        put(1, at(12), 100.0, "kWh");
        put(1, at(14), 110.0, "kWh");
        // Connector 2: 5 kWh from 18:00 to 19:00 (peak, 17-22), in Wh.
        put(2, at(18), 2_000_000.0, "Wh");
        put(2, at(19), 2_005_000.0, "Wh");
        let (from, to) = (at(0), at(0) + 86_400_000);
        let t = Tariff::default();
        let day = day(&c, &[("CP-1".to_string(), 2)], from, to, &t, &tz).unwrap();
        let (_, sum) = &day[0];
        assert_eq!(sum.wh, 15_000);
        // 10 kWh x 103,578 sen + 5 kWh x 155,367 sen = 1,035,780 + 776,835.
        assert_eq!(sum.cost_sen, 1_035_780 + 776_835);
        assert_eq!(sum.bands.len(), 2);
    }
}
