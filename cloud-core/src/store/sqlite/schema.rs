//! The SQLite store's schema: idempotent statements run in order by `migrate` (a
//! versioned migration table comes with the first ALTER).

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS depots (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  token_hash TEXT UNIQUE,
  secret_hash TEXT,
  created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS batches (
  depot TEXT NOT NULL,
  batch_seq INTEGER NOT NULL,
  received_ms INTEGER NOT NULL,
  PRIMARY KEY (depot, batch_seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS changes (
  cursor INTEGER PRIMARY KEY AUTOINCREMENT,
  depot TEXT NOT NULL,
  record_type TEXT NOT NULL,
  record_id TEXT NOT NULL,
  key BLOB NOT NULL,
  change BLOB NOT NULL,
  received_ms INTEGER NOT NULL,
  UNIQUE (depot, key)
);
CREATE TABLE IF NOT EXISTS stream_rows (
  depot TEXT NOT NULL,
  stream TEXT NOT NULL,
  seq INTEGER NOT NULL,
  ts_ms INTEGER NOT NULL,
  payload BLOB NOT NULL,
  PRIMARY KEY (depot, stream, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS stream_rows_time ON stream_rows (depot, ts_ms);
";

/// Added with the ops view and the materialiser (additive: the schema is a list of
/// idempotent statements; a versioned migration table comes with the first ALTER).
/// Timetables and what each depot operates (issue 4).
pub(super) const SCHEMA_3: &str = "
CREATE TABLE IF NOT EXISTS timetables (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  name TEXT NOT NULL,
  created_ms INTEGER NOT NULL,
  zip BLOB NOT NULL,
  report TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS depot_plans (
  depot TEXT PRIMARY KEY REFERENCES depots(id),
  plan TEXT NOT NULL,
  updated_ms INTEGER NOT NULL
);
";

/// Records the materialiser could not fold (issue 9).
pub(super) const SCHEMA_4: &str = "
CREATE TABLE IF NOT EXISTS quarantine (
  depot TEXT NOT NULL,
  record_type TEXT NOT NULL,
  record_id TEXT NOT NULL,
  cursor INTEGER NOT NULL,
  reason TEXT NOT NULL,
  at_ms INTEGER NOT NULL,
  PRIMARY KEY (depot, record_type, record_id, cursor)
) WITHOUT ROWID;
-- One record's changes (cloud edits and reads build on them): not the depot's history.
CREATE INDEX IF NOT EXISTS changes_by_record ON changes (depot, record_type, record_id, cursor);
";

pub(super) const SCHEMA_2: &str = "
CREATE TABLE IF NOT EXISTS depot_sync (
  depot TEXT PRIMARY KEY,
  last_sync_ms INTEGER NOT NULL,
  backlog_entries INTEGER,
  backlog_bytes INTEGER,
  oldest_change_ms INTEGER
);
CREATE TABLE IF NOT EXISTS records (
  rkey TEXT PRIMARY KEY,
  depot TEXT NOT NULL,
  record_type TEXT NOT NULL,
  record_id TEXT NOT NULL,
  doc BLOB NOT NULL,
  fields TEXT NOT NULL,
  updated_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS records_by_type ON records (depot, record_type, record_id);
CREATE TABLE IF NOT EXISTS materialiser (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  cursor INTEGER NOT NULL
);
";

/// Enrolment tokens expire (issue 11): the column, added once, and tokens issued before
/// it count from their depot's creation.
pub(super) fn token_expiry(c: &rusqlite::Connection) -> Result<(), super::StoreError> {
    let has = c
        .prepare("SELECT 1 FROM pragma_table_info('depots') WHERE name = 'token_expires_ms'")?
        .exists([])?;
    if !has {
        c.execute_batch("ALTER TABLE depots ADD COLUMN token_expires_ms INTEGER")?;
    }
    c.execute(
        "UPDATE depots SET token_expires_ms = created_ms + ?1 WHERE token_hash IS NOT NULL AND token_expires_ms IS NULL",
        [super::DEFAULT_ENROLMENT_TTL_MS],
    )?;
    Ok(())
}

/// Issue 14: per-depot change positions. The global cursor stays (one writer commits in
/// order), `depot_seq` keeps each depot's newest and `materialiser_pos` the
/// materialiser's position per depot, converted once from the old single `materialiser`
/// row (a depot is folded up to its newest change at or below that cursor).
pub(super) fn depot_cursors(c: &rusqlite::Connection) -> Result<(), super::StoreError> {
    c.execute_batch(
        "CREATE TABLE IF NOT EXISTS depot_seq (depot TEXT PRIMARY KEY, last INTEGER NOT NULL) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS materialiser_pos (depot TEXT PRIMARY KEY, cursor INTEGER NOT NULL) WITHOUT ROWID;
         CREATE INDEX IF NOT EXISTS changes_by_depot ON changes (depot, cursor);",
    )?;
    // `SCHEMA_2` (landed, so unchanged) creates the old table again at every start: only
    // a row in it (a database from before) has anything to convert.
    let old = c
        .prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'materialiser'")?
        .exists([])?
        && c.prepare("SELECT 1 FROM materialiser")?.exists([])?;
    // Every depot with changes has its newest in `depot_seq` from here on (each write
    // keeps it); a database from before has none yet, whether or not it was folded.
    let unnumbered = !c.prepare("SELECT 1 FROM depot_seq")?.exists([])?
        && c.prepare("SELECT 1 FROM changes")?.exists([])?;
    if unnumbered {
        c.execute_batch(
            "INSERT OR IGNORE INTO depot_seq (depot, last) SELECT depot, max(cursor) FROM changes GROUP BY depot",
        )?;
    }
    if !old {
        c.execute_batch("DROP TABLE IF EXISTS materialiser")?;
    } else {
        c.execute_batch(
            "BEGIN;
             INSERT OR IGNORE INTO materialiser_pos (depot, cursor)
               SELECT c.depot, max(c.cursor) FROM changes c JOIN materialiser m ON c.cursor <= m.cursor
               GROUP BY c.depot;
             DROP TABLE materialiser;
             COMMIT;",
        )?;
    }
    Ok(())
}
