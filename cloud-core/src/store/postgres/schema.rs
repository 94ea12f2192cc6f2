//! The PostgreSQL store's schema: idempotent statements run in order by `migrate`.

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS depots (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  token_hash TEXT UNIQUE,
  secret_hash TEXT,
  created_ms BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS batches (
  depot TEXT NOT NULL,
  batch_seq BIGINT NOT NULL,
  received_ms BIGINT NOT NULL,
  PRIMARY KEY (depot, batch_seq)
);
CREATE TABLE IF NOT EXISTS changes (
  cursor BIGSERIAL PRIMARY KEY,
  depot TEXT NOT NULL,
  record_type TEXT NOT NULL,
  record_id TEXT NOT NULL,
  key BYTEA NOT NULL,
  change BYTEA NOT NULL,
  received_ms BIGINT NOT NULL,
  UNIQUE (depot, key)
);
CREATE TABLE IF NOT EXISTS stream_rows (
  depot TEXT NOT NULL,
  stream TEXT NOT NULL,
  seq BIGINT NOT NULL,
  ts_ms BIGINT NOT NULL,
  payload BYTEA NOT NULL,
  PRIMARY KEY (depot, stream, seq)
);
CREATE INDEX IF NOT EXISTS stream_rows_time ON stream_rows (depot, ts_ms);
";

/// Added with the ops view and the materialiser (additive, idempotent statements).
/// Timetables and what each depot operates (issue 4).
pub(super) const SCHEMA_3: &str = "
CREATE TABLE IF NOT EXISTS timetables (
  id BIGSERIAL PRIMARY KEY,
  name TEXT NOT NULL,
  created_ms BIGINT NOT NULL,
  zip BYTEA NOT NULL,
  report TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS depot_plans (
  depot TEXT PRIMARY KEY REFERENCES depots(id),
  plan TEXT NOT NULL,
  updated_ms BIGINT NOT NULL
);
";

/// Records the materialiser could not fold (issue 9).
pub(super) const SCHEMA_4: &str = "
CREATE TABLE IF NOT EXISTS quarantine (
  depot TEXT NOT NULL,
  record_type TEXT NOT NULL,
  record_id TEXT NOT NULL,
  cursor BIGINT NOT NULL,
  reason TEXT NOT NULL,
  at_ms BIGINT NOT NULL,
  PRIMARY KEY (depot, record_type, record_id, cursor)
);
-- One record's changes (cloud edits and reads build on them): not the depot's history.
CREATE INDEX IF NOT EXISTS changes_by_record ON changes (depot, record_type, record_id, cursor);
";

pub(super) const SCHEMA_2: &str = "
CREATE TABLE IF NOT EXISTS depot_sync (
  depot TEXT PRIMARY KEY,
  last_sync_ms BIGINT NOT NULL,
  backlog_entries BIGINT,
  backlog_bytes BIGINT,
  oldest_change_ms BIGINT
);
CREATE TABLE IF NOT EXISTS records (
  rkey TEXT PRIMARY KEY,
  depot TEXT NOT NULL,
  record_type TEXT NOT NULL,
  record_id TEXT NOT NULL,
  doc BYTEA NOT NULL,
  fields TEXT NOT NULL,
  updated_ms BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS records_by_type ON records (depot, record_type, record_id);
CREATE TABLE IF NOT EXISTS materialiser (
  id INT PRIMARY KEY CHECK (id = 1),
  cursor BIGINT NOT NULL
);
";

/// Enrolment tokens expire (issue 11): the column, and tokens issued before it count
/// from their depot's creation ($1: the default lifetime in ms). Run with `execute`
/// (one statement per call): the column first, in its own call.
pub(super) const SCHEMA_5: &str = "
UPDATE depots SET token_expires_ms = created_ms + $1
WHERE token_hash IS NOT NULL AND token_expires_ms IS NULL
";

pub(super) const SCHEMA_5_COLUMN: &str =
    "ALTER TABLE depots ADD COLUMN IF NOT EXISTS token_expires_ms BIGINT";

/// Issue 14, a schema ready to be distributed by depot: change cursors per depot
/// (`depot_seq`, locked by each transaction that adds changes, replaces the global
/// BIGSERIAL), the materialiser's position per depot, and depot first in the keys of
/// `changes` and `records`. Existing cursors keep their values (they increase within
/// each depot, so edges' pull cursors stay valid); a depot's sequence continues from its
/// newest change. Run once, in one transaction, guarded by `schema_version`.
pub(super) const SCHEMA_6: &str = "
CREATE TABLE depot_seq (
  depot TEXT PRIMARY KEY,
  last BIGINT NOT NULL
);
INSERT INTO depot_seq (depot, last) SELECT depot, max(cursor) FROM changes GROUP BY depot;
CREATE TABLE materialiser_pos (
  depot TEXT PRIMARY KEY,
  cursor BIGINT NOT NULL
);
INSERT INTO materialiser_pos (depot, cursor)
  SELECT c.depot, max(c.cursor) FROM changes c JOIN materialiser m ON c.cursor <= m.cursor
  GROUP BY c.depot;
DROP TABLE materialiser;
ALTER TABLE changes ALTER COLUMN cursor DROP DEFAULT;
DROP SEQUENCE IF EXISTS changes_cursor_seq;
ALTER TABLE changes DROP CONSTRAINT changes_pkey;
ALTER TABLE changes ADD PRIMARY KEY (depot, cursor);
ALTER TABLE records DROP CONSTRAINT records_pkey;
ALTER TABLE records ADD PRIMARY KEY (depot, record_type, record_id);
DROP INDEX IF EXISTS records_by_type;
ALTER TABLE records DROP COLUMN rkey;
";

/// Versioned steps after the idempotent ones above (each runs once). A database that has
/// them skips the idempotent steps: they would bring back what the steps dropped.
pub(super) const VERSIONED: &[(i32, &str)] = &[(6, SCHEMA_6)];

/// Brings the schema up to date in one transaction, holding the version table's lock
/// (start-up only, never a hot path), so cloud processes starting at once neither run a
/// step twice nor run the idempotent steps 1-5 on a database past step 6 (they would
/// bring back what step 6 dropped). Two first start-ups racing to create the version
/// table itself: the loser tries again.
pub(super) async fn migrate(
    client: &mut tokio_postgres::Client,
) -> Result<(), crate::store::StoreError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match migrate_once(client).await {
            Err(crate::store::StoreError::Postgres(e))
                if attempt < 3
                    && e.code().is_some_and(|c| {
                        *c == tokio_postgres::error::SqlState::UNIQUE_VIOLATION
                            || *c == tokio_postgres::error::SqlState::DUPLICATE_TABLE
                    }) => {}
            done => return done,
        }
    }
}

async fn migrate_once(client: &mut tokio_postgres::Client) -> Result<(), crate::store::StoreError> {
    client
        .batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version INT PRIMARY KEY)")
        .await?;
    let tx = client.transaction().await?;
    tx.batch_execute("LOCK TABLE schema_version IN EXCLUSIVE MODE")
        .await?;
    let version: i32 = tx
        .query_one("SELECT coalesce(max(version), 0) FROM schema_version", &[])
        .await?
        .get(0);
    if version < 6 {
        for step in [SCHEMA, SCHEMA_2, SCHEMA_3, SCHEMA_4, SCHEMA_5_COLUMN] {
            tx.batch_execute(step).await?;
        }
        tx.execute(SCHEMA_5, &[&crate::store::DEFAULT_ENROLMENT_TTL_MS])
            .await?;
    }
    for (v, sql) in VERSIONED {
        if *v > version {
            tx.batch_execute(sql).await?;
            tx.execute("INSERT INTO schema_version (version) VALUES ($1)", &[v])
                .await?;
        }
    }
    // Step 7: stream rows partitioned by month (`partitions.rs`).
    if version < 7 {
        super::partitions::convert(&tx).await?;
        tx.execute("INSERT INTO schema_version (version) VALUES (7)", &[])
            .await?;
    }
    tx.commit().await?;
    Ok(())
}
