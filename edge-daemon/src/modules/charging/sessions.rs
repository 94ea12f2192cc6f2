//! Charging transactions and meter samples: what StartTransaction, StopTransaction and
//! MeterValues do to the store, written so that a replay (a charger back from an
//! outage, an answer lost to a restart) changes nothing twice, and so that energy is
//! only ever a difference of two registers the charger metered, never an estimate.

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde::Serialize;

/// One sampled value, normalised: energy in Wh, power in W.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub ts_ms: i64,
    /// Where it was measured (`Outlet`, `Inlet`, `EV`, ...; empty: not said, which OCPP
    /// reads as Outlet).
    pub location: String,
    pub measurand: String,
    pub phase: String,
    pub context: String,
    pub value: f64,
    pub unit: String,
}

#[cfg(test)]
use super::samples::placeholder;
pub use super::samples::{latest, latest_power, meter_values};

pub const ENERGY: &str = "Energy.Active.Import.Register";
pub const POWER: &str = "Power.Active.Import";

impl Sample {
    /// The energy register this reading is, if it is the one sessions count: the
    /// charger's output meter, all phases.
    pub(super) fn energy_wh(&self) -> Option<i64> {
        (self.measurand == ENERGY
            && self.phase.is_empty()
            && matches!(self.location.as_str(), "" | "Outlet"))
        .then_some(self.value.round() as i64)
    }
}

/// A transaction as the page, the API and the cloud see it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Session {
    pub transaction_id: i64,
    pub charger_id: String,
    pub connector_id: i64,
    /// `start` (the charger asked for an id), `stop_only` (a stop for a transaction the
    /// edge never saw start: energy from the registers the charger did report).
    pub origin: String,
    pub charger_tx_id: Option<i64>,
    pub id_tag: Option<String>,
    pub vehicle_id: Option<String>,
    pub start_ms: Option<i64>,
    pub meter_start_wh: Option<i64>,
    pub stop_ms: Option<i64>,
    pub meter_stop_wh: Option<i64>,
    pub stop_reason: Option<String>,
    pub last_wh: Option<i64>,
    pub last_ms: Option<i64>,
    /// Metered energy so far: the newest register minus the first one known. None when
    /// the charger reported no two registers of this transaction.
    pub energy_wh: Option<i64>,
    /// Who bound the bus to this transaction on the page (None: its card or id did).
    pub bound_by: Option<String>,
}

const COLUMNS: &str = "id, charger_id, connector_id, origin, charger_tx_id, id_tag, vehicle_id,
    start_ms, meter_start_wh, stop_ms, meter_stop_wh, stop_reason, last_wh, last_ms, first_wh,
    bound_by";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Session> {
    let meter_start: Option<i64> = r.get(8)?;
    let first: Option<i64> = r.get(14)?;
    let stop: Option<i64> = r.get(10)?;
    let last: Option<i64> = r.get(12)?;
    let from = meter_start.or(first);
    let to = stop.or(last);
    Ok(Session {
        transaction_id: r.get(0)?,
        charger_id: r.get(1)?,
        connector_id: r.get(2)?,
        origin: r.get(3)?,
        charger_tx_id: r.get(4)?,
        id_tag: r.get(5)?,
        vehicle_id: r.get(6)?,
        start_ms: r.get(7)?,
        meter_start_wh: meter_start,
        stop_ms: r.get(9)?,
        meter_stop_wh: stop,
        stop_reason: r.get(11)?,
        last_wh: last,
        last_ms: r.get(13)?,
        bound_by: r.get(15)?,
        // A register that went backwards (meter replaced, reset) gives no energy.
        energy_wh: match (from, to) {
            (Some(a), Some(b)) if b >= a => Some(b - a),
            _ => None,
        },
    })
}

pub fn session(c: &Connection, id: i64) -> rusqlite::Result<Option<Session>> {
    c.query_row(
        &format!("SELECT {COLUMNS} FROM charging_transactions WHERE id = ?1"),
        params![id],
        row,
    )
    .optional()
}

pub fn sessions(c: &Connection, since_ms: i64) -> rusqlite::Result<Vec<Session>> {
    let mut st = c.prepare_cached(&format!(
        "SELECT * FROM (SELECT {COLUMNS} FROM charging_transactions WHERE stop_ms IS NULL
           UNION ALL
         SELECT {COLUMNS} FROM charging_transactions WHERE stop_ms >= ?1)
         ORDER BY id DESC LIMIT 2000"
    ))?;
    let rows = st.query_map(params![since_ms], row)?;
    rows.collect()
}

/// The row a charger means by `tx`: the id the edge gave it, or the id it used for a
/// transaction the edge never saw start.
pub(super) fn find(
    c: &Connection,
    charger: &str,
    tx: i64,
    at_ms: i64,
) -> rusqlite::Result<Option<i64>> {
    // Only a transaction still running (or closed for want of its stop) that started
    // before the readings (five minutes of clock skew allowed): chargers reuse the ids
    // they invent offline.
    c.query_row(
        "SELECT id FROM charging_transactions WHERE charger_id = ?1
           AND ((id = ?2 AND origin = 'start') OR (origin = 'stop_only' AND charger_tx_id = ?2))
           AND (stop_ms IS NULL OR stop_reason = 'NoStopReceived')
           AND (start_ms IS NULL OR start_ms <= ?3 + 300000)
         ORDER BY stop_ms IS NULL DESC, origin = 'start' DESC, id DESC LIMIT 1",
        params![charger, tx, at_ms],
        |r| r.get(0),
    )
    .optional()
}

/// The transaction a StopTransaction ends: the one with that id that it fits (open and
/// started before it at a lower register, or already ended by this very stop: a
/// replay). Chargers reuse the ids they invent offline (0, -1, a counter reset at
/// boot), so a closed transaction with that id and another stop is not it.
fn find_for_stop(c: &Connection, s: &Stop<'_>) -> rusqlite::Result<Option<i64>> {
    let mut st = c.prepare_cached(
        "SELECT id, stop_ms, meter_stop_wh, stop_reason, start_ms, meter_start_wh
         FROM charging_transactions WHERE charger_id = ?1
           AND ((id = ?2 AND origin = 'start') OR (origin = 'stop_only' AND charger_tx_id = ?2))
         ORDER BY origin = 'start' DESC, id DESC",
    )?;
    let rows = st.query_map(params![s.charger, s.charger_tx_id], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, Option<i64>>(1)?,
            r.get::<_, Option<i64>>(2)?,
            r.get::<_, Option<String>>(3)?,
            r.get::<_, Option<i64>>(4)?,
            r.get::<_, Option<i64>>(5)?,
        ))
    })?;
    for row in rows {
        let (id, stop_ms, stop_wh, reason, start_ms, start_wh) = row?;
        let replay = stop_ms == Some(s.ts_ms) && stop_wh == Some(s.meter_stop_wh);
        let open = stop_ms.is_none() || reason.as_deref() == Some("NoStopReceived");
        let fits =
            start_ms.is_none_or(|t| t <= s.ts_ms) && start_wh.is_none_or(|w| w <= s.meter_stop_wh);
        if replay || (open && fits) {
            return Ok(Some(id));
        }
    }
    Ok(None)
}

pub struct Start<'a> {
    pub charger: &'a str,
    pub connector: i64,
    pub id_tag: &'a str,
    pub vehicle: Option<&'a str>,
    pub meter_start_wh: i64,
    pub ts_ms: i64,
}

/// The transaction id for a StartTransaction: the same one again for a replay of the
/// same start (same connector, time and register), so a charger whose answer was lost
/// never gets two sessions for one charge. Also returns the transactions this start
/// closed (their stop never came). A bus on two running transactions (a stop that never
/// came on another charger) keeps both records; the planner counts the newer one.
pub fn start(c: &Connection, s: &Start<'_>) -> rusqlite::Result<(i64, Vec<i64>)> {
    let same: Option<i64> = c
        .query_row(
            "SELECT id FROM charging_transactions WHERE charger_id = ?1 AND connector_id = ?2
               AND start_ms = ?3 AND meter_start_wh = ?4",
            params![s.charger, s.connector, s.ts_ms, s.meter_start_wh],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(id) = same {
        return Ok((id, Vec::new()));
    }
    // An older transaction still open on this connector lost its stop (the charger
    // rebooted): it ends at the last register it reported, nothing added.
    let closed: Vec<i64> = c
        .prepare_cached(
            "UPDATE charging_transactions SET stop_ms = last_ms, meter_stop_wh = last_wh,
               stop_reason = 'NoStopReceived'
             WHERE charger_id = ?1 AND connector_id = ?2 AND stop_ms IS NULL AND start_ms < ?3
             RETURNING id",
        )?
        .query_map(params![s.charger, s.connector, s.ts_ms], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    c.execute(
        "INSERT INTO charging_transactions (charger_id, connector_id, origin, id_tag, vehicle_id,
           start_ms, meter_start_wh, last_wh, last_ms)
         VALUES (?1, ?2, 'start', ?3, ?4, ?5, ?6, ?6, ?5)",
        params![
            s.charger,
            s.connector,
            s.id_tag,
            s.vehicle,
            s.ts_ms,
            s.meter_start_wh
        ],
    )?;
    let id = c.last_insert_rowid();
    Ok((id, closed))
}

/// Ends every transaction still open on `charger` at the last register it reported
/// (`NoStopReceived`, nothing added): the charger is known to be gone (the demo's
/// simulated chargers of an earlier run). Returns them, for the cloud.
pub fn close_open(c: &Connection, charger: &str) -> rusqlite::Result<Vec<i64>> {
    c.prepare_cached(
        "UPDATE charging_transactions SET stop_ms = last_ms, meter_stop_wh = last_wh,
           stop_reason = 'NoStopReceived'
         WHERE charger_id = ?1 AND stop_ms IS NULL
         RETURNING id",
    )?
    .query_map(params![charger], |r| r.get(0))?
    .collect()
}

pub struct Stop<'a> {
    pub charger: &'a str,
    pub charger_tx_id: i64,
    pub meter_stop_wh: i64,
    pub ts_ms: i64,
    pub reason: &'a str,
    pub id_tag: Option<&'a str>,
    pub vehicle: Option<&'a str>,
}

/// Ends a transaction (a replayed stop changes nothing). A stop for a transaction the
/// edge never saw start becomes a `stop_only` session whose start is the first register
/// of that transaction the charger reported (its `transactionData` or MeterValues), or
/// unknown: its energy is then unknown, never guessed.
pub fn stop(c: &Transaction<'_>, s: &Stop<'_>, data: &[Sample]) -> rusqlite::Result<i64> {
    let id = match find_for_stop(c, s)? {
        Some(id) => id,
        None => {
            c.execute(
                "INSERT INTO charging_transactions (charger_id, connector_id, origin,
                   charger_tx_id, id_tag, vehicle_id)
                 VALUES (?1, 0, 'stop_only', ?2, ?3, ?4)",
                params![s.charger, s.charger_tx_id, s.id_tag, s.vehicle],
            )?;
            let id = c.last_insert_rowid();
            // Samples that arrived under the charger's id before its stop.
            c.execute(
                "UPDATE charging_meter_samples SET transaction_id = ?3
                 WHERE charger_id = ?1 AND transaction_id = ?2",
                params![s.charger, super::samples::placeholder(s.charger_tx_id), id],
            )?;
            let first = first_register(c, s.charger, id)?;
            c.execute(
                "UPDATE charging_transactions SET first_wh = ?2, start_ms = ?3,
                   connector_id = COALESCE((SELECT connector_id FROM charging_meter_samples
                     WHERE charger_id = ?4 AND transaction_id = ?1 LIMIT 1), 0)
                 WHERE id = ?1",
                params![id, first.map(|f| f.1), first.map(|f| f.0), s.charger],
            )?;
            id
        }
    };
    super::samples::record_samples(c, s.charger, None, Some(id), data)?;
    c.execute(
        "UPDATE charging_transactions SET stop_ms = ?2, meter_stop_wh = ?3, stop_reason = ?4,
           id_tag = COALESCE(id_tag, ?5),
           vehicle_id = CASE WHEN bound_by IS NULL THEN COALESCE(vehicle_id, ?6) ELSE vehicle_id END
         WHERE id = ?1 AND (stop_ms IS NULL OR stop_reason = 'NoStopReceived')",
        params![id, s.ts_ms, s.meter_stop_wh, s.reason, s.id_tag, s.vehicle],
    )?;
    if let Some(f) = first_register(c, s.charger, id)? {
        c.execute(
            "UPDATE charging_transactions SET first_wh = ?2, start_ms = COALESCE(start_ms, ?3)
             WHERE id = ?1 AND origin = 'stop_only'",
            params![id, f.1, f.0],
        )?;
    }
    Ok(id)
}

fn first_register(c: &Connection, charger: &str, tx: i64) -> rusqlite::Result<Option<(i64, i64)>> {
    c.query_row(
        "SELECT ts_ms, CAST(ROUND(value) AS INTEGER) FROM charging_meter_samples
         WHERE charger_id = ?1 AND transaction_id = ?2 AND measurand = ?3 AND phase = ''
           AND location IN ('', 'Outlet')
         ORDER BY ts_ms LIMIT 1",
        params![charger, tx, ENERGY],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()
}

#[cfg(test)]
#[path = "sessions_tests.rs"]
mod tests;
