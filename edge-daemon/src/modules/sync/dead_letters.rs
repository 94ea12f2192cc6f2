//! Pulled changes this depot cannot apply: kept with the reason in `sync_dead_letters`,
//! counted, shown in the sync status, and passed over, so one bad change never stops the
//! pull (and with it all master data) for good.
//!
//! Each record's changes are applied inside a savepoint of the pull transaction; if the
//! owning module refuses them, the savepoint is rolled back and the changes are tried one
//! at a time, so only the ones that fail are set aside.

use rusqlite::{params, Connection, Transaction};

use super::Applier;

/// Rows kept at most; the oldest go first (they are for inspection, the cloud keeps
/// every change).
pub const MAX_DEAD_LETTERS: i64 = 10_000;
/// Longest reason kept.
const MAX_REASON: usize = 500;

/// What applying one record's pulled changes did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    pub applied: u64,
    pub dead: u64,
}

/// Applies one record's changes through its module's applier, setting aside what fails.
pub fn apply_or_set_aside(
    tx: &Transaction<'_>,
    applier: &Applier,
    record_type: &str,
    record_id: &str,
    changes: &[Vec<u8>],
    cursor: i64,
) -> rusqlite::Result<Applied> {
    if attempt(tx, applier, record_id, changes)?.is_ok() {
        return Ok(Applied {
            applied: changes.len() as u64,
            dead: 0,
        });
    }
    let mut out = Applied::default();
    for change in changes {
        match attempt(tx, applier, record_id, std::slice::from_ref(change))? {
            Ok(()) => out.applied += 1,
            Err(reason) => {
                set_aside(tx, record_type, record_id, change, &reason, cursor)?;
                out.dead += 1;
            }
        }
    }
    Ok(out)
}

/// Runs the applier in a savepoint; on refusal the savepoint is rolled back.
fn attempt(
    tx: &Transaction<'_>,
    applier: &Applier,
    record_id: &str,
    changes: &[Vec<u8>],
) -> rusqlite::Result<Result<(), String>> {
    tx.execute_batch("SAVEPOINT pulled_record")?;
    match applier(tx, record_id, changes) {
        Ok(()) => {
            tx.execute_batch("RELEASE pulled_record")?;
            Ok(Ok(()))
        }
        Err(reason) => {
            tx.execute_batch("ROLLBACK TO pulled_record; RELEASE pulled_record")?;
            Ok(Err(reason))
        }
    }
}

/// Keeps one change with its reason (also used for record types this build lacks).
pub fn set_aside(
    tx: &Transaction<'_>,
    record_type: &str,
    record_id: &str,
    change: &[u8],
    reason: &str,
    cursor: i64,
) -> rusqlite::Result<()> {
    let reason: String = reason.chars().take(MAX_REASON).collect();
    tracing::warn!(record_type, record_id, cursor, reason = %reason,
        "pulled change could not be applied; kept in sync_dead_letters and passed over");
    tx.execute(
        "INSERT INTO sync_dead_letters (record_type, record_id, change, reason, pull_cursor, at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            record_type,
            record_id,
            change,
            reason,
            cursor,
            crate::util::now_ms()
        ],
    )?;
    tx.execute(
        "DELETE FROM sync_dead_letters WHERE id <= (SELECT max(id) FROM sync_dead_letters) - ?1",
        params![MAX_DEAD_LETTERS],
    )?;
    Ok(())
}

/// How many are kept, and the newest few, for the sync status.
pub fn summary(c: &Connection, newest: i64) -> rusqlite::Result<(i64, Vec<serde_json::Value>)> {
    let count = c.query_row("SELECT count(*) FROM sync_dead_letters", [], |r| r.get(0))?;
    let mut st = c.prepare_cached(
        "SELECT record_type, record_id, reason, pull_cursor, at_ms FROM sync_dead_letters ORDER BY id DESC LIMIT ?1",
    )?;
    let rows = st
        .query_map(params![newest], |r| {
            Ok(serde_json::json!({
                "record_type": r.get::<_, String>(0)?,
                "record_id": r.get::<_, String>(1)?,
                "reason": r.get::<_, String>(2)?,
                "pull_cursor": r.get::<_, i64>(3)?,
                "at": crate::util::rfc3339(r.get::<_, i64>(4)?),
            }))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok((count, rows))
}
