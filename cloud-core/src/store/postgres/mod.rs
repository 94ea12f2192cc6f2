//! PostgreSQL implementation of [`CloudStore`]. Two pools of connections: one for sync
//! and the materialiser (pushes of different depots run in parallel; each depot's
//! changes are numbered by its own locked sequence, `changes.rs`), one for the read
//! model, so admin and dashboard reads never queue behind a reconnect storm's pushes.
//! Batches are written with one statement per table (arrays unnested server-side).
//! Stream rows are indexed by (depot, ts_ms). The read-only queries are in `read.rs`,
//! the schema in `schema.rs`, depot credentials in `depots.rs`. Every key of depot data
//! starts with the depot, and no transaction spans depots (ARCHITECTURE.md, "Scaling the
//! cloud").

mod changes;
mod depots;
#[cfg(test)]
mod distribution_tests;
mod partitions;
mod read;
mod schema;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

use super::*;

/// How many connections each pool opens at most.
#[derive(Debug, Clone, Copy)]
pub struct PoolSizes {
    /// Sync (pushes, pulls, authentication) and the materialiser.
    pub write: usize,
    /// The read model (ops view, record views, streams).
    pub read: usize,
}

impl Default for PoolSizes {
    fn default() -> Self {
        // More writers than cores: a push spends much of its time waiting on the WAL
        // flush and the network, and depots' pushes do not block each other.
        PoolSizes { write: 16, read: 4 }
    }
}

pub struct PgStore {
    write: Pool,
    read: Pool,
    /// Stream row partitions known to exist (`partitions.rs`).
    months: parking_lot::Mutex<std::collections::HashSet<String>>,
}

impl PgStore {
    /// Connects with a libpq-style string (`host=127.0.0.1 user=postgres dbname=garasi`)
    /// or URL. With `schema`, everything lives in that schema (created if missing).
    pub async fn connect(conn: &str, schema: Option<&str>) -> Result<Self, StoreError> {
        Self::connect_with(conn, schema, PoolSizes::default()).await
    }

    pub async fn connect_with(
        conn: &str,
        schema: Option<&str>,
        sizes: PoolSizes,
    ) -> Result<Self, StoreError> {
        let mut config: tokio_postgres::Config = conn.parse()?;
        if let Some(s) = schema {
            let ident = schema_ident(s);
            let (client, connection) = config.connect(NoTls).await?;
            let task = tokio::spawn(connection);
            client
                .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS \"{ident}\""))
                .await?;
            drop(client);
            let _ = task.await;
            add_option(&mut config, &format!("-c search_path={ident}"));
        }
        // The idempotent schema steps' "already exists, skipping" notices are not news
        // (they were logged at every start, and on a command's output).
        add_option(&mut config, "-c client_min_messages=warning");
        let pool = |size: usize| {
            let manager = Manager::from_config(
                config.clone(),
                NoTls,
                ManagerConfig {
                    recycling_method: RecyclingMethod::Fast,
                },
            );
            Pool::builder(manager)
                .max_size(size.max(1))
                // A pool that stays full for this long is an error to report, not a
                // wait without end.
                .wait_timeout(Some(std::time::Duration::from_secs(30)))
                .runtime(Runtime::Tokio1)
                .build()
                .map_err(|e| StoreError::Pool(e.to_string()))
        };
        let store = PgStore {
            write: pool(sizes.write)?,
            read: pool(sizes.read)?,
            months: Default::default(),
        };
        // Fail now, with PostgreSQL's own words, if the database cannot be reached.
        drop(store.w().await?);
        Ok(store)
    }

    /// A connection of the sync and materialiser pool.
    async fn w(&self) -> Result<Object, StoreError> {
        self.write.get().await.map_err(pool_error)
    }

    /// A connection of the read model's pool.
    async fn r(&self) -> Result<Object, StoreError> {
        super::waiting("PostgreSQL read connection", self.read.get())
            .await
            .map_err(pool_error)
    }

    /// Drops a schema (test clean-up).
    pub async fn drop_schema(&self, schema: &str) -> Result<(), StoreError> {
        let ident = schema_ident(schema);
        self.w()
            .await?
            .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{ident}\" CASCADE"))
            .await?;
        Ok(())
    }

    /// Drops the stream rows of every month that ends at or before `before_ms`, a whole
    /// partition at a time (retention); returns the partitions dropped.
    pub async fn drop_stream_months_before(
        &self,
        before_ms: i64,
    ) -> Result<Vec<String>, StoreError> {
        let client = self.w().await?;
        let dropped = partitions::drop_before(&client, before_ms).await?;
        self.months.lock().retain(|m| !dropped.contains(m));
        Ok(dropped)
    }

    /// One push as one transaction. `fresh_rows`: the batch is new, so its stream rows
    /// are expected to be new too and go in by binary COPY (no conflict check, the
    /// fastest load PostgreSQL has); a row stored before makes the COPY fail with a unique
    /// violation, and the push runs again the careful way (see `push`).
    async fn push_once(
        &self,
        depot: &str,
        batch_seq: i64,
        changes: &[ChangeIn],
        rows: &[StreamRowIn],
        fresh_rows: bool,
    ) -> Result<PushOutcome, StoreError> {
        let mut client = self.w().await?;
        partitions::ensure(&client, &self.months, rows.iter().map(|r| r.ts_ms)).await?;
        let tx = client.transaction().await?;
        let now = now_ms();
        let fresh = tx
            .execute(
                "INSERT INTO batches (depot, batch_seq, received_ms) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                &[&depot, &batch_seq, &now],
            )
            .await?;
        let mut out = PushOutcome {
            replayed: fresh == 0,
            ..Default::default()
        };
        out.new_changes = changes::insert(&tx, depot, changes, now).await?;
        if !rows.is_empty() && fresh_rows && !out.replayed {
            out.new_rows = changes::copy_rows(&tx, depot, rows).await?;
        } else if !rows.is_empty() {
            // One statement per batch (arrays, unnested server-side): a round trip per row
            // would cap the drain at a few thousand rows/s.
            let streams: Vec<&str> = rows.iter().map(|r| r.stream.as_str()).collect();
            let seqs: Vec<i64> = rows.iter().map(|r| r.seq).collect();
            let ts: Vec<i64> = rows.iter().map(|r| r.ts_ms).collect();
            let payloads: Vec<&[u8]> = rows.iter().map(|r| r.payload.as_slice()).collect();
            out.new_rows = tx
                .execute(
                    "INSERT INTO stream_rows (depot, stream, seq, ts_ms, payload)
                     SELECT $1, * FROM unnest($2::text[], $3::bigint[], $4::bigint[], $5::bytea[])
                     ON CONFLICT DO NOTHING",
                    &[&depot, &streams, &seqs, &ts, &payloads],
                )
                .await?;
        }
        tx.commit().await?;
        Ok(out)
    }
}

/// Adds a server option to whatever options the connection string gave.
fn add_option(config: &mut tokio_postgres::Config, option: &str) {
    let options = match config.get_options() {
        Some(o) if !o.is_empty() => format!("{o} {option}"),
        _ => option.to_string(),
    };
    config.options(options);
}

/// A schema name as the store uses it everywhere: lower case letters, digits and `_`
/// (names come from our own code and config, never from requests; one spelling keeps
/// create, `search_path` and drop on the same schema).
fn schema_ident(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect::<String>()
        .to_ascii_lowercase()
}

fn pool_error(e: deadpool_postgres::PoolError) -> StoreError {
    match e {
        deadpool_postgres::PoolError::Backend(pe) => StoreError::Postgres(pe),
        other => StoreError::Pool(other.to_string()),
    }
}

/// Transactions that lost a serialization conflict or a deadlock are run again (a few
/// times): the other transaction went through, so this one will.
const ATTEMPTS: usize = 4;

impl CloudStore for PgStore {
    async fn migrate(&self) -> Result<(), StoreError> {
        let mut client = self.w().await?;
        schema::migrate(&mut client).await
    }

    async fn create_depot_until(
        &self,
        name: &str,
        expires_ms: i64,
    ) -> Result<NewDepot, StoreError> {
        depots::create(&*self.w().await?, name, expires_ms).await
    }

    async fn enroll(&self, token: &str) -> Result<DepotCredentials, StoreError> {
        depots::enroll(&mut *self.w().await?, token).await
    }

    async fn authenticate(&self, depot_id: &str, secret: &str) -> Result<bool, StoreError> {
        let row = self
            .w()
            .await?
            .query_opt("SELECT secret_hash FROM depots WHERE id = $1", &[&depot_id])
            .await?;
        Ok(row
            .and_then(|r| r.get::<_, Option<String>>(0))
            .is_some_and(|s| s == hash_secret(secret)))
    }

    async fn issue_enrolment_token(
        &self,
        depot: &str,
        expires_ms: i64,
    ) -> Result<String, StoreError> {
        depots::issue_token(&*self.w().await?, depot, expires_ms).await
    }

    async fn revoke_depot(&self, depot: &str) -> Result<(), StoreError> {
        depots::revoke(&*self.w().await?, depot).await
    }

    async fn push(
        &self,
        depot: &str,
        batch_seq: i64,
        changes: &[ChangeIn],
        rows: &[StreamRowIn],
    ) -> Result<PushOutcome, StoreError> {
        let (mut attempt, mut fresh_rows, mut remade) = (1, true, false);
        loop {
            match self
                .push_once(depot, batch_seq, changes, rows, fresh_rows)
                .await
            {
                // A month this process thought made was dropped meanwhile: make it again.
                Err(e) if !remade && partitions::missing(&e) => {
                    self.months.lock().clear();
                    remade = true
                }
                // A new batch holding a row stored before (an edge whose store was
                // restored from a backup numbers batches again): store what is new.
                Err(e) if fresh_rows && changes::duplicate(&e) => fresh_rows = false,
                Err(e) if attempt < ATTEMPTS && changes::retryable(&e) => {
                    changes::back_off(attempt).await;
                    attempt += 1
                }
                done => return done,
            }
        }
    }

    async fn pull(
        &self,
        depot: &str,
        cursor: i64,
        limit: i64,
    ) -> Result<Vec<ChangeOut>, StoreError> {
        let client = self.w().await?;
        changes::after(&client, depot, cursor, i64::MAX, limit).await
    }

    async fn add_changes(&self, depot: &str, changes: &[ChangeIn]) -> Result<u64, StoreError> {
        let mut attempt = 1;
        loop {
            let mut client = self.w().await?;
            let tx = client.transaction().await?;
            let done = match changes::insert(&tx, depot, changes, now_ms()).await {
                Ok(n) => tx.commit().await.map(|_| n).map_err(StoreError::from),
                Err(e) => Err(e),
            };
            match done {
                Err(e) if attempt < ATTEMPTS && changes::retryable(&e) => {
                    changes::back_off(attempt).await;
                    attempt += 1
                }
                done => return done,
            }
        }
    }

    async fn save_timetable(
        &self,
        name: &str,
        zip: &[u8],
        report_json: &str,
    ) -> Result<i64, StoreError> {
        let row = self
            .w()
            .await?
            .query_one(
                "INSERT INTO timetables (name, created_ms, zip, report) VALUES ($1, $2, $3, $4) RETURNING id",
                &[&name, &now_ms(), &zip, &report_json],
            )
            .await?;
        Ok(row.get(0))
    }

    async fn timetable_zip(&self, id: i64) -> Result<Option<Vec<u8>>, StoreError> {
        let row = self
            .w()
            .await?
            .query_opt("SELECT zip FROM timetables WHERE id = $1", &[&id])
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn set_depot_plan(&self, depot: &str, plan_json: &str) -> Result<(), StoreError> {
        self.w()
            .await?
            .execute(
                "INSERT INTO depot_plans (depot, plan, updated_ms) VALUES ($1, $2, $3)
                 ON CONFLICT (depot) DO UPDATE SET plan = excluded.plan, updated_ms = excluded.updated_ms",
                &[&depot, &plan_json, &now_ms()],
            )
            .await?;
        Ok(())
    }

    async fn depot_plans(&self) -> Result<Vec<(String, String)>, StoreError> {
        let rows = self
            .w()
            .await?
            .query("SELECT depot, plan FROM depot_plans ORDER BY depot", &[])
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    async fn record_sync(&self, depot: &str, report: Option<SyncReport>) -> Result<(), StoreError> {
        let r = report.unwrap_or_default();
        self.w()
            .await?
            .execute(
                "INSERT INTO depot_sync (depot, last_sync_ms, backlog_entries, backlog_bytes, oldest_change_ms)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (depot) DO UPDATE SET last_sync_ms = excluded.last_sync_ms,
                   backlog_entries = coalesce(excluded.backlog_entries, depot_sync.backlog_entries),
                   backlog_bytes = coalesce(excluded.backlog_bytes, depot_sync.backlog_bytes),
                   oldest_change_ms = CASE WHEN $6 THEN excluded.oldest_change_ms ELSE depot_sync.oldest_change_ms END",
                &[
                    &depot,
                    &now_ms(),
                    &report.map(|_| r.backlog_entries),
                    &report.map(|_| r.backlog_bytes),
                    &r.oldest_change_ms,
                    &report.is_some(),
                ],
            )
            .await?;
        Ok(())
    }

    async fn changes_after(
        &self,
        depot: &str,
        after: i64,
        upto: i64,
        limit: i64,
    ) -> Result<Vec<ChangeOut>, StoreError> {
        let client = self.w().await?;
        changes::after(&client, depot, after, upto, limit).await
    }

    async fn load_records(&self, keys: &[RecordKey]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let depots: Vec<&str> = keys.iter().map(|k| k.depot.as_str()).collect();
        let types: Vec<&str> = keys.iter().map(|k| k.record_type.as_str()).collect();
        let ids: Vec<&str> = keys.iter().map(|k| k.record_id.as_str()).collect();
        // The read pool: record views load documents while the writers are busy.
        let rows = self
            .r()
            .await?
            .query(
                "SELECT r.depot, r.record_type, r.record_id, r.doc
                 FROM unnest($1::text[], $2::text[], $3::text[]) AS k(d, t, i)
                 JOIN records r ON r.depot = k.d AND r.record_type = k.t AND r.record_id = k.i",
                &[&depots, &types, &ids],
            )
            .await?;
        let mut found: std::collections::HashMap<RecordKey, Vec<u8>> = rows
            .iter()
            .map(|r| {
                let key = RecordKey {
                    depot: r.get(0),
                    record_type: r.get(1),
                    record_id: r.get(2),
                };
                (key, r.get(3))
            })
            .collect();
        Ok(keys.iter().map(|k| found.remove(k)).collect())
    }

    async fn save_records(
        &self,
        records: &[MaterialRecord],
        quarantined: &[Quarantined],
        positions: &[(String, i64)],
    ) -> Result<(), StoreError> {
        let mut client = self.w().await?;
        let tx = client.transaction().await?;
        for q in quarantined {
            tx.execute(
                "INSERT INTO quarantine (depot, record_type, record_id, cursor, reason, at_ms)
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                &[
                    &q.key.depot,
                    &q.key.record_type,
                    &q.key.record_id,
                    &q.cursor,
                    &q.reason,
                    &q.at_ms,
                ],
            )
            .await?;
        }
        if !records.is_empty() {
            let depots: Vec<&str> = records.iter().map(|r| r.key.depot.as_str()).collect();
            let types: Vec<&str> = records.iter().map(|r| r.key.record_type.as_str()).collect();
            let ids: Vec<&str> = records.iter().map(|r| r.key.record_id.as_str()).collect();
            let docs: Vec<&[u8]> = records.iter().map(|r| r.doc.as_slice()).collect();
            let fields: Vec<&str> = records.iter().map(|r| r.fields_json.as_str()).collect();
            let updated: Vec<i64> = records.iter().map(|r| r.updated_ms).collect();
            tx.execute(
                "INSERT INTO records (depot, record_type, record_id, doc, fields, updated_ms)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[], $5::text[], $6::bigint[])
                 ON CONFLICT (depot, record_type, record_id) DO UPDATE SET doc = excluded.doc,
                   fields = excluded.fields, updated_ms = excluded.updated_ms",
                &[&depots, &types, &ids, &docs, &fields, &updated],
            )
            .await?;
        }
        let pos_depots: Vec<&str> = positions.iter().map(|p| p.0.as_str()).collect();
        let pos_cursors: Vec<i64> = positions.iter().map(|p| p.1).collect();
        tx.execute(
            "INSERT INTO materialiser_pos (depot, cursor) SELECT * FROM unnest($1::text[], $2::bigint[])
             ON CONFLICT (depot) DO UPDATE SET cursor = GREATEST(materialiser_pos.cursor, excluded.cursor)",
            &[&pos_depots, &pos_cursors],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn record_changes_after(
        &self,
        key: &RecordKey,
        cursor: i64,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let rows = self
            .r()
            .await?
            .query(
                "SELECT change FROM changes WHERE cursor > $1 AND depot = $2 AND record_type = $3 AND record_id = $4 ORDER BY cursor",
                &[&cursor, &key.depot, &key.record_type, &key.record_id],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn list_snapshot(
        &self,
        depot: &str,
        record_type: &str,
        limit: i64,
    ) -> Result<ListSnapshot, StoreError> {
        // The read pool, one statement: one snapshot, and one round trip once the
        // connection has it prepared.
        let client = self.r().await?;
        let statement = client.prepare_cached(read::LIST_SNAPSHOT).await?;
        let rows = client
            .query(&statement, &[&depot, &record_type, &limit])
            .await?;
        Ok(crate::store::snapshot_of(
            rows.iter()
                .map(|r| {
                    (
                        i64::from(r.get::<_, i32>(0)),
                        r.get(1),
                        r.get(2),
                        r.get(3),
                        r.get(4),
                        r.get(5),
                    )
                })
                .collect(),
        ))
    }
}
