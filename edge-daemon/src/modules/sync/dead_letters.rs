//! Pulled changes this depot cannot apply: kept with the reason in `sync_dead_letters`,
//! counted, shown in the sync status, and passed over, so one bad change never stops the
//! pull (and with it all master data) for good.
//!
//! Each record's changes are applied inside a savepoint of the pull transaction; if the
//! owning module refuses them, the savepoint is rolled back and the changes are tried one
//! at a time, so only the ones that fail are set aside. A record with kept changes is
//! retried with them whenever a new change of it arrives: every later change of a record
//! depends on the earlier ones, so without that the record would stay frozen until the
//! next start. A failure of the database itself (disk full, I/O, busy) is not a refusal:
//! it fails the whole pull, which is tried again with the cursor where it was.

use rusqlite::{params, Connection, Transaction};

use super::service::{Applier, ApplyError};

/// Rows kept at most; past it the oldest go first, with an error in the log (a record
/// that lost a kept change cannot apply its later ones until it is synced anew).
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
    let kept = kept_of(tx, record_type, record_id)?;
    if !kept.is_empty() {
        let mut all: Vec<Vec<u8>> = kept.iter().map(|k| k.1.clone()).collect();
        all.extend_from_slice(changes);
        if attempt(tx, applier, record_id, &all)?.is_ok() {
            for (id, _) in &kept {
                tx.execute("DELETE FROM sync_dead_letters WHERE id = ?1", params![id])?;
            }
            tracing::info!(
                record_type,
                record_id,
                kept = kept.len(),
                "set-aside pulled changes apply now, with the record's newer changes"
            );
            return Ok(Applied {
                applied: all.len() as u64,
                dead: 0,
            });
        }
    }
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
                set_aside(
                    tx,
                    record_type,
                    record_id,
                    change,
                    &reason.to_string(),
                    cursor,
                )?;
                out.dead += 1;
            }
        }
    }
    Ok(out)
}

/// A record's kept changes, oldest first.
fn kept_of(
    tx: &Transaction<'_>,
    record_type: &str,
    record_id: &str,
) -> rusqlite::Result<Vec<(i64, Vec<u8>)>> {
    let mut st = tx.prepare_cached(
        "SELECT id, change FROM sync_dead_letters
         WHERE record_type = ?1 AND record_id = ?2 ORDER BY id",
    )?;
    let rows = st.query_map(params![record_type, record_id], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })?;
    rows.collect()
}

/// Whether a database error is the store's trouble rather than the change's: those fail
/// the pull (retried later), they never set a change aside.
fn store_failure(e: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode::*;
    matches!(
        e.sqlite_error_code(),
        Some(
            DiskFull
                | SystemIoFailure
                | DatabaseBusy
                | DatabaseLocked
                | OutOfMemory
                | ReadOnly
                | CannotOpen
                | DatabaseCorrupt
                | NotADatabase
        )
    )
}

/// Runs the applier in a savepoint; on refusal the savepoint is rolled back. A failure
/// of the store itself is returned as an error (the whole pull fails).
fn attempt(
    tx: &Transaction<'_>,
    applier: &Applier,
    record_id: &str,
    changes: &[Vec<u8>],
) -> rusqlite::Result<Result<(), ApplyError>> {
    tx.execute_batch("SAVEPOINT pulled_record")?;
    match applier(tx, record_id, changes) {
        Ok(()) => {
            tx.execute_batch("RELEASE pulled_record")?;
            Ok(Ok(()))
        }
        Err(ApplyError::Sql(e)) if store_failure(&e) => {
            let _ = tx.execute_batch("ROLLBACK TO pulled_record; RELEASE pulled_record");
            Err(e)
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
    let trimmed = tx.execute(
        "DELETE FROM sync_dead_letters WHERE id <= (SELECT max(id) FROM sync_dead_letters) - ?1",
        params![MAX_DEAD_LETTERS],
    )?;
    if trimmed > 0 {
        tracing::error!(
            trimmed,
            max = MAX_DEAD_LETTERS,
            "too many set-aside pulled changes: the oldest were dropped, and later cloud \
             changes of their records may be set aside too (see the sync status)"
        );
    }
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

/// Tries every kept change again, oldest first, through today's appliers (after an
/// upgrade a record type may have an owner, after a repair a dependency may have come);
/// what applies now is removed from the table. Returns how many applied.
pub fn retry(
    tx: &Transaction<'_>,
    applier_of: &dyn Fn(&str) -> Option<Applier>,
) -> rusqlite::Result<u64> {
    let rows: Vec<(i64, String, String, Vec<u8>)> = {
        let mut st = tx.prepare(
            "SELECT id, record_type, record_id, change FROM sync_dead_letters ORDER BY id",
        )?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    // Per record, oldest first: a refused change and a later one depending on it may
    // only apply together.
    let mut order: Vec<(String, String)> = Vec::new();
    type Kept = Vec<(i64, Vec<u8>)>;
    let mut groups: std::collections::HashMap<(String, String), Kept> = Default::default();
    for (id, record_type, record_id, change) in rows {
        groups
            .entry((record_type, record_id))
            .or_insert_with_key(|k| {
                order.push(k.clone());
                Vec::new()
            })
            .push((id, change));
    }
    let mut applied = 0;
    for key in order {
        let (Some(f), Some(kept)) = (applier_of(&key.0), groups.remove(&key)) else {
            continue;
        };
        let changes: Vec<Vec<u8>> = kept.iter().map(|k| k.1.clone()).collect();
        let done: Vec<i64> = if attempt(tx, &f, &key.1, &changes)?.is_ok() {
            kept.iter().map(|k| k.0).collect()
        } else {
            let mut done = Vec::new();
            for (id, change) in &kept {
                if attempt(tx, &f, &key.1, std::slice::from_ref(change))?.is_ok() {
                    done.push(*id);
                }
            }
            done
        };
        for id in &done {
            tx.execute("DELETE FROM sync_dead_letters WHERE id = ?1", params![id])?;
        }
        if !done.is_empty() {
            tracing::info!(record_type = %key.0, record_id = %key.1, changes = done.len(),
                "set-aside pulled changes apply now");
        }
        applied += done.len() as u64;
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::Arc;

    use super::*;

    fn count(c: &Connection) -> i64 {
        c.query_row("SELECT count(*) FROM sync_dead_letters", [], |r| r.get(0))
            .unwrap()
    }

    /// What a module refuses is set aside (one change at a time, the rest applied), and
    /// a later retry with an applier that now takes it applies and removes it.
    #[test]
    fn refused_changes_are_set_aside_then_retried() {
        let mut c = Connection::open_in_memory().unwrap();
        crate::modules::sync::service::test_schema(&mut c);
        c.execute_batch("CREATE TABLE applied (change BLOB)")
            .unwrap();
        let picky: Applier = Arc::new(|tx, _id, changes| {
            if changes.iter().any(|ch| ch == b"bad") {
                return Err("refused".into());
            }
            for ch in changes {
                tx.execute("INSERT INTO applied VALUES (?1)", params![ch])
                    .map_err(|e| e.to_string())?;
            }
            Ok(())
        });
        let tx = c.transaction().unwrap();
        let changes = vec![b"ok1".to_vec(), b"bad".to_vec(), b"ok2".to_vec()];
        let out = apply_or_set_aside(&tx, &picky, "vehicle_status", "bus-1", &changes, 7).unwrap();
        assert_eq!(
            out,
            Applied {
                applied: 2,
                dead: 1
            }
        );
        tx.commit().unwrap();
        assert_eq!(count(&c), 1);
        let applied: i64 = c
            .query_row("SELECT count(*) FROM applied", [], |r| r.get(0))
            .unwrap();
        assert_eq!(
            applied, 2,
            "the refused change's savepoint was rolled back alone"
        );
        let (kept, newest) = summary(&c, 5).unwrap();
        assert_eq!((kept, newest[0]["reason"].as_str()), (1, Some("refused")));
        // Still refused: stays. Taken now: applied and removed.
        let tx = c.transaction().unwrap();
        assert_eq!(retry(&tx, &|_| Some(picky.clone())).unwrap(), 0);
        let lenient: Applier = Arc::new(|_, _, _| Ok(()));
        assert_eq!(retry(&tx, &|_| Some(lenient.clone())).unwrap(), 1);
        tx.commit().unwrap();
        assert_eq!(count(&c), 0);
    }

    /// A record whose change was set aside is not frozen until the next start: its next
    /// pulled change brings the kept one along, and both apply.
    #[test]
    fn a_records_next_change_brings_its_kept_changes_along() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let mut c = Connection::open_in_memory().unwrap();
        crate::modules::sync::service::test_schema(&mut c);
        c.execute_batch("CREATE TABLE applied (change BLOB)")
            .unwrap();
        let root_ok = Arc::new(AtomicBool::new(false));
        let r = root_ok.clone();
        // "child" depends on "root" (like an automerge change on its predecessor).
        let dependent: Applier = Arc::new(move |tx, _id, changes| {
            let has_root: i64 = tx
                .query_row(
                    "SELECT count(*) FROM applied WHERE change = X'726f6f74'",
                    [],
                    |r| r.get(0),
                )
                .map_err(|e| e.to_string())?;
            let mut root = has_root > 0;
            for ch in changes {
                match ch.as_slice() {
                    b"root" if !r.load(Ordering::SeqCst) => return Err("refused".into()),
                    b"root" => root = true,
                    _ if !root => return Err("waits for changes it depends on".into()),
                    _ => {}
                }
                tx.execute("INSERT INTO applied VALUES (?1)", params![ch])
                    .map_err(|e| e.to_string())?;
            }
            Ok(())
        });
        let tx = c.transaction().unwrap();
        let out = apply_or_set_aside(&tx, &dependent, "t", "r1", &[b"root".to_vec()], 1).unwrap();
        assert_eq!(out.dead, 1);
        root_ok.store(true, Ordering::SeqCst);
        let out = apply_or_set_aside(&tx, &dependent, "t", "r1", &[b"child".to_vec()], 2).unwrap();
        assert_eq!(
            out,
            Applied {
                applied: 2,
                dead: 0
            }
        );
        tx.commit().unwrap();
        assert_eq!(count(&c), 0, "the kept change applied and was removed");
    }

    /// A full disk is the store's trouble, not the change's: the pull fails (and is
    /// tried again from the same cursor), nothing is set aside.
    #[test]
    fn a_store_failure_fails_the_pull_instead_of_setting_aside() {
        let mut c = Connection::open_in_memory().unwrap();
        crate::modules::sync::service::test_schema(&mut c);
        let full: Applier = Arc::new(|_, _, _| {
            Err(ApplyError::Sql(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
                None,
            )))
        });
        let tx = c.transaction().unwrap();
        assert!(apply_or_set_aside(&tx, &full, "t", "r1", &[b"x".to_vec()], 1).is_err());
        tx.commit().unwrap();
        assert_eq!(count(&c), 0);
    }
}
