//! Meter samples of charging transactions: stored once each (a replay changes
//! nothing), attached to the transaction the charger means (or kept under a
//! placeholder until its stop arrives), queued for the cloud, and the newest value of a
//! measurand (the bus's state of charge).

use rusqlite::{params, Connection, OptionalExtension, Transaction};

use super::sessions::{find, Sample};

/// The newest value of `measurand` in a transaction since `since_ms`.
pub fn latest(
    c: &Connection,
    charger: &str,
    tx: i64,
    measurand: &str,
    since_ms: i64,
) -> rusqlite::Result<Option<f64>> {
    c.query_row(
        "SELECT value FROM charging_meter_samples WHERE charger_id = ?1 AND transaction_id = ?2
           AND measurand = ?3 AND ts_ms >= ?4 ORDER BY ts_ms DESC LIMIT 1",
        params![charger, tx, measurand, since_ms],
        |r| r.get(0),
    )
    .optional()
}

/// The newest total power at the outlet a transaction reported since `since_ms`, W: the
/// same readings the load chart and the over-profile check use (not one phase's, not
/// the bus's side).
pub fn latest_power(
    c: &Connection,
    charger: &str,
    tx: i64,
    since_ms: i64,
) -> rusqlite::Result<Option<f64>> {
    c.query_row(
        "SELECT CASE unit WHEN 'kW' THEN value * 1000 ELSE value END FROM charging_meter_samples
          WHERE charger_id = ?1 AND transaction_id = ?2 AND measurand = ?3 AND ts_ms >= ?4
            AND phase = '' AND location IN ('', 'Outlet') AND unit IN ('W', 'kW')
          ORDER BY ts_ms DESC LIMIT 1",
        params![charger, tx, super::sessions::POWER, since_ms],
        |r| r.get(0),
    )
    .optional()
}

/// Stores MeterValues samples (a replayed sample is stored once). `charger_tx` is the
/// transaction id the charger sent: samples of a transaction the edge does not know
/// are kept under a [`placeholder`] until its stop arrives. Returns the edge's
/// transaction (if it knows it) and how many samples were new.
pub fn meter_values(
    c: &Transaction<'_>,
    charger: &str,
    connector: i64,
    charger_tx: Option<i64>,
    samples: &[Sample],
) -> rusqlite::Result<(Option<i64>, usize)> {
    let tx = match charger_tx {
        None => None,
        Some(t) => {
            let at = samples
                .iter()
                .map(|s| s.ts_ms)
                .min()
                .unwrap_or(i64::MAX - 300_000);
            Some(find(c, charger, t, at)?.unwrap_or(placeholder(t)))
        }
    };
    let n = record_samples(c, charger, Some(connector), tx, samples)?;
    Ok((tx.filter(|t| *t > 0), n))
}

/// Where samples of a transaction id the edge never gave wait: below every id the edge
/// gives (positive) and distinct for every 32-bit id a charger may use, negative ones too.
pub(super) fn placeholder(charger_tx: i64) -> i64 {
    charger_tx - (1 << 40)
}

/// Stores the samples not stored before and queues those for the cloud; returns how
/// many were new. Without a connector, the transaction's.
pub(super) fn record_samples(
    c: &Transaction<'_>,
    charger: &str,
    connector: Option<i64>,
    tx: Option<i64>,
    samples: &[Sample],
) -> rusqlite::Result<usize> {
    let connector = match (connector, tx) {
        (Some(k), _) => k,
        (None, Some(t)) => c
            .query_row(
                "SELECT connector_id FROM charging_transactions WHERE id = ?1",
                params![t],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(0),
        (None, None) => 0,
    };
    let mut ins = c.prepare_cached(
        "INSERT OR IGNORE INTO charging_meter_samples
           (charger_id, connector_id, ts_ms, measurand, phase, context, value, unit, transaction_id,
            location)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?;
    let mut new = Vec::new();
    for s in samples {
        let n = ins.execute(params![
            charger,
            connector,
            s.ts_ms,
            s.measurand,
            s.phase,
            s.context,
            s.value,
            s.unit,
            tx,
            s.location
        ])?;
        if n == 0 {
            continue;
        }
        new.push(s);
        if let (Some(t), Some(wh)) = (tx.filter(|t| *t > 0), s.energy_wh()) {
            c.execute(
                "UPDATE charging_transactions SET last_wh = ?2, last_ms = ?3
                 WHERE id = ?1 AND charger_id = ?4 AND (last_ms IS NULL OR last_ms <= ?3)",
                params![t, wh, s.ts_ms, charger],
            )?;
        }
    }
    super::records::stream(c, charger, connector, tx, &new)?;
    Ok(new.len())
}
