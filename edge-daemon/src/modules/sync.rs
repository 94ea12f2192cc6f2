//! sync module: the outbox every replicated write goes through, and the sync status.
//!
//! Invariant: a local write and its outbox entry commit in the same SQLite transaction.
//! Owning modules call [`append_change`] with *their* open transaction, so either both
//! the record and its outbox entry are committed, or neither is. The outbox is the only
//! table another module writes, and only through this function.
//!
//! Not built yet (issue 3): the worker that uploads the outbox and pulls from the cloud,
//! cursors, quota, enrolment. Until then the backlog only grows (it is small: one entry
//! per record change).

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use rusqlite::{params, Connection, Transaction};

use super::{Module, ModuleContext, ModuleError, Started};
use crate::http::ApiError;
use crate::store::migrate::Migration;
use crate::store::Store;

const MIGRATIONS: &[Migration] = &[Migration {
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
}];

/// Appends one automerge change of a replicated record, inside the caller's transaction.
pub fn append_change(
    tx: &Transaction<'_>,
    record_type: &str,
    record_id: &str,
    change: &[u8],
) -> rusqlite::Result<i64> {
    tx.execute(
        "INSERT INTO sync_outbox (record_type, record_id, change, created_ms) VALUES (?1, ?2, ?3, ?4)",
        params![record_type, record_id, change, crate::util::now_ms()],
    )?;
    Ok(tx.last_insert_rowid())
}

/// Entries and bytes waiting for upload.
pub fn backlog(c: &Connection) -> rusqlite::Result<(i64, i64)> {
    c.query_row(
        "SELECT count(*), coalesce(sum(length(change)), 0) FROM sync_outbox",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
}

async fn status(State(store): State<Store>) -> Result<Json<serde_json::Value>, ApiError> {
    let (entries, bytes) = store.read(backlog).await.map_err(ApiError::internal)?;
    Ok(Json(serde_json::json!({
        "link": "not_enrolled",
        "backlog": { "entries": entries, "bytes": bytes },
    })))
}

pub struct SyncModule;

impl Module for SyncModule {
    fn name(&self) -> &'static str {
        "sync"
    }
    fn migrations(&self) -> &'static [Migration] {
        MIGRATIONS
    }
    fn start(&self, ctx: &ModuleContext) -> Result<Started, ModuleError> {
        let routes = Router::new()
            .route("/api/v1/sync/status", get(status))
            .with_state(ctx.store.clone());
        Ok(Started {
            routes: Some(routes),
        })
    }
}

#[cfg(test)]
pub(crate) fn test_schema(c: &mut Connection) {
    crate::store::migrate::run(c, "sync", MIGRATIONS).unwrap();
}
