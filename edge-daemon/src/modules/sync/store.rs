//! sync's tables (outbox, stream outbox, state, master documents, dead letters) and
//! its small key-value state.

use rusqlite::{params, Connection, OptionalExtension};

use crate::store::migrate::Migration;

pub(super) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "outbox",
        sql: "CREATE TABLE sync_outbox (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            record_type TEXT NOT NULL,
            record_id TEXT NOT NULL,
            change BLOB NOT NULL,
            created_ms INTEGER NOT NULL
          );
          CREATE TABLE sync_state (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL
          );",
    },
    Migration {
        version: 2,
        name: "stream outbox",
        // AUTOINCREMENT: a row's seq is its identity at the cloud ((depot, stream, seq)),
        // so a seq must never be reused, even after every row was acknowledged and deleted.
        sql: "CREATE TABLE sync_stream_outbox (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            stream TEXT NOT NULL,
            ts_ms INTEGER NOT NULL,
            payload BLOB NOT NULL
          );",
    },
    Migration {
        version: 3,
        name: "master data documents",
        sql: "CREATE TABLE sync_master_docs (
            record_type TEXT NOT NULL,
            record_id TEXT NOT NULL,
            doc BLOB NOT NULL,
            PRIMARY KEY (record_type, record_id)
          );",
    },
    Migration {
        version: 4,
        name: "dead letters of pulled changes",
        sql: "CREATE TABLE sync_dead_letters (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            record_type TEXT NOT NULL,
            record_id TEXT NOT NULL,
            change BLOB NOT NULL,
            reason TEXT NOT NULL,
            pull_cursor INTEGER NOT NULL,
            at_ms INTEGER NOT NULL
          );",
    },
    Migration {
        version: 5,
        name: "dead letters by record",
        // Every pulled change of a record first looks for that record's kept changes
        // (they may apply together now), so this lookup must not scan the table.
        sql: "CREATE INDEX sync_dead_letters_record
            ON sync_dead_letters (record_type, record_id, id);",
    },
];

pub(super) fn state_get(c: &Connection, key: &str) -> rusqlite::Result<Option<String>> {
    c.query_row(
        "SELECT value FROM sync_state WHERE key = ?1",
        params![key],
        |r| r.get(0),
    )
    .optional()
}

pub(super) fn state_set(c: &Connection, key: &str, value: &str) -> rusqlite::Result<()> {
    c.execute(
        "INSERT INTO sync_state (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        params![key, value],
    )?;
    Ok(())
}
