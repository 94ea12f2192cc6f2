//! SQLite implementation of [`CloudStore`] (the embedded default). One writing
//! connection behind a mutex, used from the blocking pool (pushes from the bulk threads,
//! `crate::bulk`), and a few read-only connections for the read model and depot
//! authentication: WAL lets them read while the writer commits, so the ops view, record
//! views and a depot's sign-in never queue behind pushes. With one writer, the global
//! AUTOINCREMENT cursor commits in order, so it also serves as each depot's cursor
//! (increasing within the depot); `depot_seq` keeps each depot's newest. The read-only
//! queries are in `read.rs`, the schema in `schema.rs`, depot credentials in
//! `depots.rs`.

mod depots;
#[cfg(test)]
mod migrate_tests;
mod read;
#[cfg(test)]
mod readers_tests;
mod schema;

use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;
use rusqlite::{params, Connection, OptionalExtension};

use super::*;
use schema::{SCHEMA, SCHEMA_2, SCHEMA_3, SCHEMA_4};

/// Read-only connections beside the writer, shared first come, first served by the
/// read model, depots' sign-ins and the materialiser's loads (four: a storm's admin
/// brings three reads at once, besides the sign-ins).
const READERS: usize = 4;

#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    readers: Arc<Vec<Mutex<Connection>>>,
    /// One permit per reader, handed out first come, first served: a read waits for
    /// whichever reader frees first (not one picked in turn, which could be in a long
    /// query while another was free).
    free_readers: Arc<tokio::sync::Semaphore>,
}

impl SqliteStore {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if path.as_os_str() == ":memory:" || path.as_os_str().is_empty() {
            // Each reader would open a database of its own.
            return Err(StoreError::Task(
                "the SQLite store needs a file (sqlite://PATH): an in-memory database cannot be shared with its readers".into(),
            ));
        }
        let conn = Connection::open(path)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            let r = Connection::open_with_flags(
                path,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                    | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?;
            r.busy_timeout(std::time::Duration::from_secs(5))?;
            readers.push(Mutex::new(r));
        }
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
            readers: Arc::new(readers),
            free_readers: Arc::new(tokio::sync::Semaphore::new(READERS)),
        })
    }

    /// Runs a read-only query on a free reader connection, from the blocking pool,
    /// once one is free.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let permit = super::waiting("SQLite reader", self.free_readers.clone().acquire_owned())
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?;
        let readers = self.readers.clone();
        tokio::task::spawn_blocking(move || {
            // A permit means a reader is free (each holder locks at most one); the lock
            // below is only reached if that ever stops being so.
            let c = readers
                .iter()
                .find_map(|r| r.try_lock())
                .unwrap_or_else(|| readers[0].lock());
            let out = f(&c);
            drop(c);
            drop(permit);
            out
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }

    async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.call_on(false, f).await
    }

    /// [`Self::call`] on a bulk thread (`crate::bulk`): pushes, so that storing a
    /// reconnect storm's batches leaves the cores to the readers first. (An admin write
    /// waiting for the writer meanwhile waits for a push at that priority.)
    async fn call_bulk<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.call_on(true, f).await
    }

    async fn call_on<T: Send + 'static>(
        &self,
        bulk: bool,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = self.conn.clone();
        let job = move || {
            // parking_lot: a panic in an earlier call cannot poison the connection lock
            // (rusqlite rolls back an unfinished transaction when it is dropped).
            let mut c = conn.lock();
            f(&mut c)
        };
        let task = if bulk {
            crate::bulk::spawn_blocking(job)
        } else {
            tokio::task::spawn_blocking(job)
        };
        task.await.map_err(|e| StoreError::Task(e.to_string()))?
    }
}

impl CloudStore for SqliteStore {
    async fn migrate(&self) -> Result<(), StoreError> {
        self.call(|c| {
            c.execute_batch(SCHEMA)?;
            c.execute_batch(SCHEMA_2)?;
            c.execute_batch(SCHEMA_3)?;
            c.execute_batch(SCHEMA_4)?;
            schema::token_expiry(c)?;
            schema::depot_cursors(c)
        })
        .await
    }

    async fn create_depot_until(
        &self,
        name: &str,
        expires_ms: i64,
    ) -> Result<NewDepot, StoreError> {
        let name = name.to_string();
        self.call(move |c| depots::create(c, &name, expires_ms))
            .await
    }

    async fn enroll(&self, token: &str) -> Result<DepotCredentials, StoreError> {
        let th = hash_secret(token);
        self.call(move |c| depots::enroll(c, &th)).await
    }

    async fn authenticate(&self, depot_id: &str, secret: &str) -> Result<bool, StoreError> {
        let (id, sh) = (depot_id.to_string(), hash_secret(secret));
        // On a reader: every push and pull asks, and the writer may be held by a push
        // at the bulk priority. A revocation is committed before it is answered, so a
        // reader started after it sees it.
        self.read(move |c| {
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

    async fn issue_enrolment_token(
        &self,
        depot: &str,
        expires_ms: i64,
    ) -> Result<String, StoreError> {
        let depot = depot.to_string();
        self.call(move |c| depots::issue_token(c, &depot, expires_ms))
            .await
    }

    async fn revoke_depot(&self, depot: &str) -> Result<(), StoreError> {
        let depot = depot.to_string();
        self.call(move |c| depots::revoke(c, &depot)).await
    }

    async fn push(
        &self,
        depot: &str,
        batch_seq: i64,
        changes: &[ChangeIn],
        rows: &[StreamRowIn],
    ) -> Result<PushOutcome, StoreError> {
        let (depot, changes, rows) = (depot.to_string(), changes.to_vec(), rows.to_vec());
        self.call_bulk(move |c| {
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
                if out.new_changes > 0 {
                    bump_depot_seq(&tx, &depot)?;
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
                if n > 0 {
                    bump_depot_seq(&tx, &depot)?;
                }
            }
            tx.commit()?;
            Ok(n)
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

    async fn changes_after(
        &self,
        depot: &str,
        after: i64,
        upto: i64,
        limit: i64,
    ) -> Result<Vec<ChangeOut>, StoreError> {
        let depot = depot.to_string();
        self.call(move |c| {
            let mut st = c.prepare_cached(
                "SELECT cursor, record_type, record_id, change FROM changes
                 WHERE depot = ?1 AND cursor > ?2 AND cursor <= ?3 ORDER BY cursor LIMIT ?4",
            )?;
            let rows = st.query_map(params![depot, after, upto, limit], |r| {
                Ok(ChangeOut {
                    cursor: r.get(0)?,
                    record_type: r.get(1)?,
                    record_id: r.get(2)?,
                    change: r.get(3)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn load_records(&self, keys: &[RecordKey]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let keys = keys.to_vec();
        // A reader: record views load documents while the writer commits pushes.
        self.read(move |c| {
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
        positions: &[(String, i64)],
    ) -> Result<(), StoreError> {
        let (records, quarantined, positions) =
            (records.to_vec(), quarantined.to_vec(), positions.to_vec());
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
            for (depot, cursor) in &positions {
                tx.execute(
                    "INSERT INTO materialiser_pos (depot, cursor) VALUES (?1, ?2)
                     ON CONFLICT(depot) DO UPDATE SET cursor = max(cursor, excluded.cursor)",
                    params![depot, cursor],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn record_changes_after(
        &self,
        key: &RecordKey,
        cursor: i64,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let key = key.clone();
        self.read(move |c| {
            let mut st = c.prepare_cached(
                "SELECT change FROM changes WHERE cursor > ?1 AND depot = ?2 AND record_type = ?3 AND record_id = ?4 ORDER BY cursor",
            )?;
            let rows = st.query_map(params![cursor, key.depot, key.record_type, key.record_id], |r| r.get(0))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn list_snapshot(
        &self,
        depot: &str,
        record_type: &str,
        limit: i64,
    ) -> Result<ListSnapshot, StoreError> {
        let (depot, record_type) = (depot.to_string(), record_type.to_string());
        self.read(move |c| {
            let mut st = c.prepare_cached(read::LIST_SNAPSHOT)?;
            let rows = st.query_map(params![depot, record_type, limit], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, Option<String>>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, Option<Vec<u8>>>(3)?,
                    r.get::<_, Option<i64>>(4)?,
                    r.get::<_, Option<i64>>(5)?,
                ))
            })?;
            let rows = rows.collect::<Result<Vec<_>, _>>()?;
            Ok(super::snapshot_of(rows))
        })
        .await
    }
}

/// Records the depot's newest change (the row just inserted) after a write that stored
/// changes.
fn bump_depot_seq(tx: &rusqlite::Transaction<'_>, depot: &str) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO depot_seq (depot, last) SELECT ?1, max(cursor) FROM changes WHERE depot = ?1
         ON CONFLICT(depot) DO UPDATE SET last = excluded.last",
        params![depot],
    )?;
    Ok(())
}
