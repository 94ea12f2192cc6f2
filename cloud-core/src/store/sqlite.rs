//! SQLite implementation of [`CloudStore`] (the embedded default). One connection behind
//! a mutex, used from the blocking pool; WAL so readers never wait for the writer.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection, OptionalExtension};

use super::*;

#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
}

const SCHEMA: &str = "
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
const SCHEMA_3: &str = "
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
const SCHEMA_4: &str = "
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

const SCHEMA_2: &str = "
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

impl SqliteStore {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut c = conn
                .lock()
                .map_err(|_| StoreError::Task("connection lock poisoned".into()))?;
            f(&mut c)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }
}

impl CloudStore for SqliteStore {
    async fn migrate(&self) -> Result<(), StoreError> {
        self.call(|c| {
            c.execute_batch(SCHEMA)?;
            c.execute_batch(SCHEMA_2)?;
            c.execute_batch(SCHEMA_3)?;
            Ok(c.execute_batch(SCHEMA_4)?)
        })
        .await
    }

    async fn create_depot(&self, name: &str) -> Result<NewDepot, StoreError> {
        let name = name.to_string();
        self.call(move |c| {
            let (id, token) = (new_depot_id(), random_token());
            c.execute(
                "INSERT INTO depots (id, name, token_hash, created_ms) VALUES (?1, ?2, ?3, ?4)",
                params![id, name, hash_secret(&token), now_ms()],
            )?;
            Ok(NewDepot {
                id,
                enrolment_token: token,
            })
        })
        .await
    }

    async fn enroll(&self, token: &str) -> Result<DepotCredentials, StoreError> {
        let th = hash_secret(token);
        self.call(move |c| {
            let tx = c.transaction()?;
            let id: Option<String> = tx
                .query_row(
                    "SELECT id FROM depots WHERE token_hash = ?1",
                    params![th],
                    |r| r.get(0),
                )
                .optional()?;
            let Some(depot_id) = id else {
                return Err(StoreError::BadToken);
            };
            let secret = random_token();
            tx.execute(
                "UPDATE depots SET token_hash = NULL, secret_hash = ?1 WHERE id = ?2",
                params![hash_secret(&secret), depot_id],
            )?;
            tx.commit()?;
            Ok(DepotCredentials { depot_id, secret })
        })
        .await
    }

    async fn authenticate(&self, depot_id: &str, secret: &str) -> Result<bool, StoreError> {
        let (id, sh) = (depot_id.to_string(), hash_secret(secret));
        self.call(move |c| {
            let stored: Option<Option<String>> = c
                .query_row(
                    "SELECT secret_hash FROM depots WHERE id = ?1",
                    params![id],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(stored.flatten().is_some_and(|s| s == sh))
        })
        .await
    }

    async fn push(
        &self,
        depot: &str,
        batch_seq: i64,
        changes: &[ChangeIn],
        rows: &[StreamRowIn],
    ) -> Result<PushOutcome, StoreError> {
        let (depot, changes, rows) = (depot.to_string(), changes.to_vec(), rows.to_vec());
        self.call(move |c| {
            let tx = c.transaction()?;
            let now = now_ms();
            let fresh = tx.execute("INSERT OR IGNORE INTO batches (depot, batch_seq, received_ms) VALUES (?1, ?2, ?3)", params![depot, batch_seq, now])?;
            let mut out = PushOutcome { replayed: fresh == 0, ..Default::default() };
            {
                let mut ins = tx.prepare_cached(
                    "INSERT OR IGNORE INTO changes (depot, record_type, record_id, key, change, received_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?;
                for ch in &changes {
                    out.new_changes += ins.execute(params![depot, ch.record_type, ch.record_id, change_key(ch), ch.change, now])? as u64;
                }
                let mut ins = tx.prepare_cached("INSERT OR IGNORE INTO stream_rows (depot, stream, seq, ts_ms, payload) VALUES (?1, ?2, ?3, ?4, ?5)")?;
                for r in &rows {
                    out.new_rows += ins.execute(params![depot, r.stream, r.seq, r.ts_ms, r.payload])? as u64;
                }
            }
            tx.commit()?;
            Ok(out)
        })
        .await
    }

    async fn pull(
        &self,
        depot: &str,
        cursor: i64,
        limit: i64,
    ) -> Result<Vec<ChangeOut>, StoreError> {
        let depot = depot.to_string();
        self.call(move |c| {
            let mut st = c.prepare_cached(
                "SELECT cursor, record_type, record_id, change FROM changes WHERE depot = ?1 AND cursor > ?2 ORDER BY cursor LIMIT ?3",
            )?;
            let rows = st.query_map(params![depot, cursor, limit], |r| {
                Ok(ChangeOut { cursor: r.get(0)?, record_type: r.get(1)?, record_id: r.get(2)?, change: r.get(3)? })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn add_changes(&self, depot: &str, changes: &[ChangeIn]) -> Result<u64, StoreError> {
        let (depot, changes) = (depot.to_string(), changes.to_vec());
        self.call(move |c| {
            let tx = c.transaction()?;
            let mut n = 0;
            {
                let mut ins = tx.prepare_cached(
                    "INSERT OR IGNORE INTO changes (depot, record_type, record_id, key, change, received_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?;
                for ch in &changes {
                    n += ins.execute(params![depot, ch.record_type, ch.record_id, change_key(ch), ch.change, now_ms()])? as u64;
                }
            }
            tx.commit()?;
            Ok(n)
        })
        .await
    }

    async fn stream_len(&self, depot: &str, stream: &str) -> Result<i64, StoreError> {
        let (depot, stream) = (depot.to_string(), stream.to_string());
        self.call(move |c| {
            Ok(c.query_row(
                "SELECT count(*) FROM stream_rows WHERE depot = ?1 AND stream = ?2",
                params![depot, stream],
                |r| r.get(0),
            )?)
        })
        .await
    }

    async fn save_timetable(
        &self,
        name: &str,
        zip: &[u8],
        report_json: &str,
    ) -> Result<i64, StoreError> {
        let (n, z, r) = (name.to_string(), zip.to_vec(), report_json.to_string());
        self.call(move |c| {
            c.execute(
                "INSERT INTO timetables (name, created_ms, zip, report) VALUES (?1, ?2, ?3, ?4)",
                params![n, now_ms(), z, r],
            )?;
            Ok(c.last_insert_rowid())
        })
        .await
    }

    async fn timetables(&self) -> Result<Vec<TimetableInfo>, StoreError> {
        self.call(|c| {
            let mut st = c.prepare_cached(
                "SELECT id, name, created_ms, length(zip), report FROM timetables ORDER BY id DESC",
            )?;
            let rows = st.query_map([], |r| {
                Ok(TimetableInfo {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    created_ms: r.get(2)?,
                    bytes: r.get(3)?,
                    report_json: r.get(4)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn timetable_zip(&self, id: i64) -> Result<Option<Vec<u8>>, StoreError> {
        self.call(move |c| {
            Ok(c.query_row(
                "SELECT zip FROM timetables WHERE id = ?1",
                params![id],
                |r| r.get(0),
            )
            .optional()?)
        })
        .await
    }

    async fn set_depot_plan(&self, depot: &str, plan_json: &str) -> Result<(), StoreError> {
        let (d, p) = (depot.to_string(), plan_json.to_string());
        self.call(move |c| {
            c.execute(
                "INSERT INTO depot_plans (depot, plan, updated_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT(depot) DO UPDATE SET plan = excluded.plan, updated_ms = excluded.updated_ms",
                params![d, p, now_ms()],
            )?;
            Ok(())
        })
        .await
    }

    async fn depot_plans(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.call(|c| {
            let mut st = c.prepare_cached("SELECT depot, plan FROM depot_plans ORDER BY depot")?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn record_sync(&self, depot: &str, report: Option<SyncReport>) -> Result<(), StoreError> {
        let depot = depot.to_string();
        self.call(move |c| {
            let r = report.unwrap_or_default();
            c.execute(
                "INSERT INTO depot_sync (depot, last_sync_ms, backlog_entries, backlog_bytes, oldest_change_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(depot) DO UPDATE SET last_sync_ms = excluded.last_sync_ms,
                   backlog_entries = coalesce(excluded.backlog_entries, depot_sync.backlog_entries),
                   backlog_bytes = coalesce(excluded.backlog_bytes, depot_sync.backlog_bytes),
                   oldest_change_ms = CASE WHEN ?6 THEN excluded.oldest_change_ms ELSE depot_sync.oldest_change_ms END",
                params![
                    depot,
                    now_ms(),
                    report.map(|_| r.backlog_entries),
                    report.map(|_| r.backlog_bytes),
                    r.oldest_change_ms,
                    report.is_some()
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn depots(&self) -> Result<Vec<DepotInfo>, StoreError> {
        self.call(|c| {
            let mut st = c.prepare_cached(
                "SELECT d.id, d.name, d.secret_hash IS NOT NULL, s.last_sync_ms, s.backlog_entries, s.backlog_bytes, s.oldest_change_ms,
                   (SELECT count(*) FROM quarantine q WHERE q.depot = d.id)
                 FROM depots d LEFT JOIN depot_sync s ON s.depot = d.id ORDER BY d.name, d.id",
            )?;
            let rows = st.query_map([], |r| {
                Ok(DepotInfo {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    enrolled: r.get(2)?,
                    last_sync_ms: r.get(3)?,
                    backlog_entries: r.get(4)?,
                    backlog_bytes: r.get(5)?,
                    oldest_change_ms: r.get(6)?,
                    quarantined: r.get(7)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn changes_after(
        &self,
        cursor: i64,
        limit: i64,
    ) -> Result<Vec<StoredChange>, StoreError> {
        self.call(move |c| {
            let mut st = c.prepare_cached(
                "SELECT cursor, depot, record_type, record_id, change FROM changes WHERE cursor > ?1 ORDER BY cursor LIMIT ?2",
            )?;
            let rows = st.query_map(params![cursor, limit], |r| {
                Ok(StoredChange {
                    cursor: r.get(0)?,
                    depot: r.get(1)?,
                    record_type: r.get(2)?,
                    record_id: r.get(3)?,
                    change: r.get(4)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn materialised_cursor(&self) -> Result<i64, StoreError> {
        self.call(|c| {
            Ok(
                c.query_row("SELECT cursor FROM materialiser WHERE id = 1", [], |r| {
                    r.get(0)
                })
                .optional()?
                .unwrap_or(0),
            )
        })
        .await
    }

    async fn load_records(&self, keys: &[RecordKey]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let keys = keys.to_vec();
        self.call(move |c| {
            let mut st = c.prepare_cached("SELECT doc FROM records WHERE rkey = ?1")?;
            let mut out = Vec::with_capacity(keys.len());
            for k in &keys {
                out.push(st.query_row(params![k.joined()], |r| r.get(0)).optional()?);
            }
            Ok(out)
        })
        .await
    }

    async fn save_records(
        &self,
        records: &[MaterialRecord],
        quarantined: &[Quarantined],
        cursor: i64,
    ) -> Result<(), StoreError> {
        let (records, quarantined) = (records.to_vec(), quarantined.to_vec());
        self.call(move |c| {
            let tx = c.transaction()?;
            {
                let mut q = tx.prepare_cached(
                    "INSERT OR IGNORE INTO quarantine (depot, record_type, record_id, cursor, reason, at_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?;
                for r in &quarantined {
                    q.execute(params![r.key.depot, r.key.record_type, r.key.record_id, r.cursor, r.reason, r.at_ms])?;
                }
                let mut up = tx.prepare_cached(
                    "INSERT INTO records (rkey, depot, record_type, record_id, doc, fields, updated_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                     ON CONFLICT(rkey) DO UPDATE SET doc = excluded.doc, fields = excluded.fields,
                       updated_ms = excluded.updated_ms",
                )?;
                for r in &records {
                    up.execute(params![
                        r.key.joined(),
                        r.key.depot,
                        r.key.record_type,
                        r.key.record_id,
                        r.doc,
                        r.fields_json,
                        r.updated_ms
                    ])?;
                }
            }
            tx.execute(
                "INSERT INTO materialiser (id, cursor) VALUES (1, ?1)
                 ON CONFLICT(id) DO UPDATE SET cursor = excluded.cursor",
                params![cursor],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn quarantined(&self, depot: &str, limit: i64) -> Result<Vec<Quarantined>, StoreError> {
        let depot = depot.to_string();
        self.call(move |c| {
            let mut st = c.prepare_cached(
                "SELECT depot, record_type, record_id, cursor, reason, at_ms FROM quarantine
                 WHERE depot = ?1 ORDER BY cursor DESC LIMIT ?2",
            )?;
            let rows = st.query_map(params![depot, limit], |r| {
                Ok(Quarantined {
                    key: RecordKey {
                        depot: r.get(0)?,
                        record_type: r.get(1)?,
                        record_id: r.get(2)?,
                    },
                    cursor: r.get(3)?,
                    reason: r.get(4)?,
                    at_ms: r.get(5)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn record_changes_after(
        &self,
        key: &RecordKey,
        cursor: i64,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let key = key.clone();
        self.call(move |c| {
            let mut st = c.prepare_cached(
                "SELECT change FROM changes WHERE cursor > ?1 AND depot = ?2 AND record_type = ?3 AND record_id = ?4 ORDER BY cursor",
            )?;
            let rows = st.query_map(params![cursor, key.depot, key.record_type, key.record_id], |r| r.get(0))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn last_cursor(&self) -> Result<i64, StoreError> {
        self.call(|c| {
            Ok(
                c.query_row("SELECT coalesce(max(cursor), 0) FROM changes", [], |r| {
                    r.get(0)
                })?,
            )
        })
        .await
    }

    async fn list_records(
        &self,
        depot: &str,
        record_type: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let (d, t) = (depot.to_string(), record_type.to_string());
        self.call(move |c| {
            let mut st = c.prepare_cached(
                "SELECT record_id, fields FROM records WHERE depot = ?1 AND record_type = ?2 ORDER BY record_id",
            )?;
            let rows = st.query_map(params![d, t], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn stream_rows(
        &self,
        depot: &str,
        stream: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<StreamRowIn>, StoreError> {
        let (d, st) = (depot.to_string(), stream.to_string());
        self.call(move |c| {
            let mut q = c.prepare_cached(
                "SELECT stream, seq, ts_ms, payload FROM stream_rows WHERE depot = ?1 AND stream = ?2 AND seq > ?3 ORDER BY seq LIMIT ?4",
            )?;
            let rows = q.query_map(params![d, st, after, limit], |r| {
                Ok(StreamRowIn { stream: r.get(0)?, seq: r.get(1)?, ts_ms: r.get(2)?, payload: r.get(3)? })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }
}
