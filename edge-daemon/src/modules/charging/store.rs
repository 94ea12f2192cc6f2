//! charging's tables and the queries on chargers, connectors and id tags. Transactions
//! and meter samples are in `sessions.rs`. Only this module reads these tables.

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use crate::store::migrate::Migration;

/// Never edit a migration that shipped: add version N+1.
pub(super) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "chargers_transactions_samples",
        sql: "CREATE TABLE charging_chargers (
            id TEXT PRIMARY KEY,
            connectors INTEGER NOT NULL,
            max_power_w INTEGER NOT NULL,
            added_ms INTEGER NOT NULL,
            vendor TEXT, model TEXT, serial TEXT, firmware TEXT,
            firmware_status TEXT, diagnostics_status TEXT,
            boot_ms INTEGER, seen_ms INTEGER
          );
          CREATE TABLE charging_connectors (
            charger_id TEXT NOT NULL,
            connector_id INTEGER NOT NULL,
            status TEXT NOT NULL,
            error_code TEXT NOT NULL,
            info TEXT,
            status_ms INTEGER NOT NULL,
            PRIMARY KEY (charger_id, connector_id)
          ) WITHOUT ROWID;
          CREATE TABLE charging_id_tags (
            id_tag TEXT PRIMARY KEY,
            vehicle_id TEXT NOT NULL,
            set_by TEXT NOT NULL,
            set_ms INTEGER NOT NULL
          );
          CREATE TABLE charging_transactions (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            charger_id TEXT NOT NULL,
            connector_id INTEGER NOT NULL,
            origin TEXT NOT NULL,
            charger_tx_id INTEGER,
            id_tag TEXT,
            vehicle_id TEXT,
            bound_by TEXT,
            start_ms INTEGER,
            meter_start_wh INTEGER,
            stop_ms INTEGER,
            meter_stop_wh INTEGER,
            stop_reason TEXT,
            last_wh INTEGER,
            last_ms INTEGER,
            first_wh INTEGER,
            UNIQUE (charger_id, connector_id, start_ms, meter_start_wh)
          );
          CREATE INDEX charging_transactions_open
            ON charging_transactions (charger_id, connector_id) WHERE stop_ms IS NULL;
          CREATE INDEX charging_transactions_charger_id
            ON charging_transactions (charger_id, charger_tx_id) WHERE charger_tx_id IS NOT NULL;
          CREATE INDEX charging_transactions_stopped ON charging_transactions (stop_ms);
          CREATE TABLE charging_meter_samples (
            charger_id TEXT NOT NULL,
            connector_id INTEGER NOT NULL,
            ts_ms INTEGER NOT NULL,
            measurand TEXT NOT NULL,
            phase TEXT NOT NULL,
            context TEXT NOT NULL,
            location TEXT NOT NULL,
            value REAL NOT NULL,
            unit TEXT NOT NULL,
            transaction_id INTEGER,
            PRIMARY KEY (charger_id, connector_id, ts_ms, measurand, phase, context, location)
          ) WITHOUT ROWID;
          CREATE INDEX charging_meter_samples_tx
            ON charging_meter_samples (charger_id, transaction_id, ts_ms);",
    },
    super::records::MIGRATION,
    Migration {
        version: 3,
        name: "alarms",
        sql: "CREATE TABLE charging_alarms (
                charger_id TEXT NOT NULL,
                connector_id INTEGER NOT NULL,
                ts_ms INTEGER NOT NULL,
                kind TEXT NOT NULL,
                limit_w INTEGER,
                drawn_w INTEGER,
                transaction_id INTEGER,
                PRIMARY KEY (charger_id, connector_id, ts_ms, kind)
              ) WITHOUT ROWID;",
    },
    super::meters::MIGRATION,
    super::requests::MIGRATION,
    super::master::MIGRATION,
    super::site_cap::MIGRATION,
];

/// A charger doing what it should not: drawing more than the profile it accepted.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alarm {
    pub charger_id: String,
    pub connector_id: i64,
    pub ts_ms: i64,
    pub kind: String,
    pub limit_w: Option<i64>,
    pub drawn_w: Option<i64>,
    pub transaction_id: Option<i64>,
}

/// Records an alarm once (a replayed reading does not raise it twice); true if new.
pub(super) fn raise(c: &Connection, a: &Alarm) -> rusqlite::Result<bool> {
    let n = c.execute(
        "INSERT OR IGNORE INTO charging_alarms
           (charger_id, connector_id, ts_ms, kind, limit_w, drawn_w, transaction_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            a.charger_id,
            a.connector_id,
            a.ts_ms,
            a.kind,
            a.limit_w,
            a.drawn_w,
            a.transaction_id
        ],
    )?;
    Ok(n == 1)
}

/// Records an alarm unless the same kind was raised for the same connector and
/// transaction in the last hour (a charger refusing every profile is retried each
/// round, and alarmed once an hour).
pub(super) fn raise_hourly(c: &Connection, a: &Alarm) -> rusqlite::Result<bool> {
    let recent: bool = c.query_row(
        "SELECT EXISTS (SELECT 1 FROM charging_alarms WHERE charger_id = ?1 AND connector_id = ?2
           AND kind = ?3 AND transaction_id IS ?4 AND ts_ms > ?5)",
        params![
            a.charger_id,
            a.connector_id,
            a.kind,
            a.transaction_id,
            a.ts_ms - 3_600_000
        ],
        |r| r.get(0),
    )?;
    if recent {
        return Ok(false);
    }
    raise(c, a)
}

pub(super) fn alarms(c: &Connection, since_ms: i64) -> rusqlite::Result<Vec<Alarm>> {
    let mut st = c.prepare_cached(
        "SELECT charger_id, connector_id, ts_ms, kind, limit_w, drawn_w, transaction_id
         FROM charging_alarms WHERE ts_ms >= ?1 ORDER BY ts_ms DESC LIMIT 500",
    )?;
    let rows = st.query_map(params![since_ms], |r| {
        Ok(Alarm {
            charger_id: r.get(0)?,
            connector_id: r.get(1)?,
            ts_ms: r.get(2)?,
            kind: r.get(3)?,
            limit_w: r.get(4)?,
            drawn_w: r.get(5)?,
            transaction_id: r.get(6)?,
        })
    })?;
    rows.collect()
}

/// A charger as the registry and the page see it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Charger {
    pub id: String,
    pub connectors: i64,
    pub max_power_w: i64,
    pub vendor: Option<String>,
    pub model: Option<String>,
    pub firmware: Option<String>,
    pub firmware_status: Option<String>,
    pub diagnostics_status: Option<String>,
    pub boot_ms: Option<i64>,
    pub seen_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConnectorStatus {
    pub charger_id: String,
    pub connector_id: i64,
    pub status: String,
    pub error_code: String,
    pub info: Option<String>,
    pub status_ms: i64,
}

pub(super) fn add_charger(
    c: &Connection,
    id: &str,
    connectors: i64,
    max_power_w: i64,
) -> rusqlite::Result<bool> {
    let n = c.execute(
        "INSERT INTO charging_chargers (id, connectors, max_power_w, added_ms)
         VALUES (?1, ?2, ?3, ?4) ON CONFLICT(id) DO NOTHING",
        params![id, connectors, max_power_w, crate::util::now_ms()],
    )?;
    Ok(n == 1)
}

pub(super) fn charger(c: &Connection, id: &str) -> rusqlite::Result<Option<Charger>> {
    c.query_row(
        "SELECT id, connectors, max_power_w, vendor, model, firmware, firmware_status,
                diagnostics_status, boot_ms, seen_ms
         FROM charging_chargers WHERE id = ?1",
        params![id],
        charger_row,
    )
    .optional()
}

pub(super) fn chargers(c: &Connection) -> rusqlite::Result<Vec<Charger>> {
    let mut st = c.prepare_cached(
        "SELECT id, connectors, max_power_w, vendor, model, firmware, firmware_status,
                diagnostics_status, boot_ms, seen_ms
         FROM charging_chargers ORDER BY id LIMIT 5000",
    )?;
    let rows = st.query_map([], charger_row)?;
    rows.collect()
}

fn charger_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Charger> {
    Ok(Charger {
        id: r.get(0)?,
        connectors: r.get(1)?,
        max_power_w: r.get(2)?,
        vendor: r.get(3)?,
        model: r.get(4)?,
        firmware: r.get(5)?,
        firmware_status: r.get(6)?,
        diagnostics_status: r.get(7)?,
        boot_ms: r.get(8)?,
        seen_ms: r.get(9)?,
    })
}

/// What a BootNotification tells about the charger.
pub(super) struct Boot<'a> {
    pub vendor: &'a str,
    pub model: &'a str,
    pub serial: Option<&'a str>,
    pub firmware: Option<&'a str>,
}

pub(super) fn booted(c: &Connection, id: &str, b: &Boot<'_>, now: i64) -> rusqlite::Result<()> {
    c.execute(
        "UPDATE charging_chargers SET vendor = ?2, model = ?3, serial = ?4, firmware = ?5,
           boot_ms = ?6, seen_ms = ?6 WHERE id = ?1",
        params![id, b.vendor, b.model, b.serial, b.firmware, now],
    )?;
    Ok(())
}

pub(super) fn seen(c: &Connection, id: &str, now: i64) -> rusqlite::Result<()> {
    c.execute(
        "UPDATE charging_chargers SET seen_ms = ?2 WHERE id = ?1",
        params![id, now],
    )?;
    Ok(())
}

/// `column` is one of the two status columns (never input).
pub(super) fn set_charger_status(
    c: &Connection,
    id: &str,
    column: &'static str,
    status: &str,
) -> rusqlite::Result<()> {
    debug_assert!(matches!(column, "firmware_status" | "diagnostics_status"));
    c.execute(
        &format!("UPDATE charging_chargers SET {column} = ?2 WHERE id = ?1"),
        params![id, status],
    )?;
    Ok(())
}

/// Keeps the newer status of a connector (a replayed older notification changes nothing).
pub(super) fn set_connector(c: &Connection, s: &ConnectorStatus) -> rusqlite::Result<()> {
    c.execute(
        "INSERT INTO charging_connectors (charger_id, connector_id, status, error_code, info, status_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT(charger_id, connector_id) DO UPDATE SET status = excluded.status,
           error_code = excluded.error_code, info = excluded.info, status_ms = excluded.status_ms
         WHERE excluded.status_ms >= charging_connectors.status_ms",
        params![s.charger_id, s.connector_id, s.status, s.error_code, s.info, s.status_ms],
    )?;
    Ok(())
}

pub(super) fn connectors(c: &Connection) -> rusqlite::Result<Vec<ConnectorStatus>> {
    let mut st = c.prepare_cached(
        "SELECT charger_id, connector_id, status, error_code, info, status_ms
         FROM charging_connectors ORDER BY charger_id, connector_id LIMIT 20000",
    )?;
    let rows = st.query_map([], |r| {
        Ok(ConnectorStatus {
            charger_id: r.get(0)?,
            connector_id: r.get(1)?,
            status: r.get(2)?,
            error_code: r.get(3)?,
            info: r.get(4)?,
            status_ms: r.get(5)?,
        })
    })?;
    rows.collect()
}

/// The vehicle a card is bound to (the service also takes a bus's own id as its tag).
pub(super) fn vehicle_of_tag(c: &Connection, tag: &str) -> rusqlite::Result<Option<String>> {
    c.query_row(
        "SELECT vehicle_id FROM charging_id_tags WHERE id_tag = ?1",
        params![tag],
        |r| r.get(0),
    )
    .optional()
}

pub(super) fn bind_tag(c: &Connection, tag: &str, vehicle: &str, by: &str) -> rusqlite::Result<()> {
    c.execute(
        "INSERT INTO charging_id_tags (id_tag, vehicle_id, set_by, set_ms) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT(id_tag) DO UPDATE SET vehicle_id = excluded.vehicle_id,
           set_by = excluded.set_by, set_ms = excluded.set_ms",
        params![tag, vehicle, by, crate::util::now_ms()],
    )?;
    Ok(())
}

/// An in-memory store with charging's tables and the sync outbox, for unit tests.
#[cfg(test)]
pub(crate) fn test_db() -> rusqlite::Connection {
    let mut c = rusqlite::Connection::open_in_memory().expect("an in-memory database");
    crate::modules::sync::service::test_schema(&mut c);
    crate::store::migrate::run(&mut c, "charging", MIGRATIONS).expect("charging's migrations");
    c
}
