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
        self.call(|c| Ok(c.execute_batch(SCHEMA)?)).await
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
                    out.new_changes += ins.execute(params![depot, ch.record_type, ch.record_id, change_key(&ch.change), ch.change, now])? as u64;
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
                    n += ins.execute(params![depot, ch.record_type, ch.record_id, change_key(&ch.change), ch.change, now_ms()])? as u64;
                }
            }
            tx.commit()?;
            Ok(n)
        })
        .await
    }

    async fn record_changes(
        &self,
        depot: &str,
        record_type: &str,
        record_id: &str,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let (d, t, i) = (
            depot.to_string(),
            record_type.to_string(),
            record_id.to_string(),
        );
        self.call(move |c| {
            let mut st = c.prepare_cached("SELECT change FROM changes WHERE depot = ?1 AND record_type = ?2 AND record_id = ?3 ORDER BY cursor")?;
            let rows = st.query_map(params![d, t, i], |r| r.get(0))?;
            Ok(rows.collect::<Result<Vec<Vec<u8>>, _>>()?)
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
}
