//! Who asked a charger to do what: every request a person sends to a charger through
//! the API is recorded with the person, the action and how it ended (the charger's
//! status or why there was none), so a remote stop or a reset is attributed, not only
//! logged. The newest 10,000 are kept.

use rusqlite::{params, Connection};
use serde::Serialize;

use crate::store::migrate::Migration;

pub(super) const MIGRATION: Migration = Migration {
    version: 5,
    name: "requests to chargers",
    sql: "CREATE TABLE charging_requests (
            ts_ms INTEGER NOT NULL,
            person TEXT NOT NULL,
            charger_id TEXT NOT NULL,
            action TEXT NOT NULL,
            outcome TEXT NOT NULL
          );
          CREATE INDEX charging_requests_ts ON charging_requests (ts_ms);",
};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Request {
    pub ts_ms: i64,
    pub person: String,
    pub charger_id: String,
    pub action: String,
    /// The charger's `status` (Accepted, Rejected, ...), `answered`, or the failure.
    pub outcome: String,
}

pub(super) fn record(c: &Connection, r: &Request) -> rusqlite::Result<()> {
    c.execute(
        "INSERT INTO charging_requests (ts_ms, person, charger_id, action, outcome)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![r.ts_ms, r.person, r.charger_id, r.action, r.outcome],
    )?;
    c.execute(
        "DELETE FROM charging_requests
         WHERE rowid <= (SELECT max(rowid) FROM charging_requests) - 10000",
        [],
    )?;
    Ok(())
}

pub(super) fn newest(c: &Connection, limit: i64) -> rusqlite::Result<Vec<Request>> {
    let mut st = c.prepare_cached(
        "SELECT ts_ms, person, charger_id, action, outcome FROM charging_requests
         ORDER BY rowid DESC LIMIT ?1",
    )?;
    let rows = st.query_map(params![limit], |r| {
        Ok(Request {
            ts_ms: r.get(0)?,
            person: r.get(1)?,
            charger_id: r.get(2)?,
            action: r.get(3)?,
            outcome: r.get(4)?,
        })
    })?;
    rows.collect()
}
