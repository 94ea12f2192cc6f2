//! PostgreSQL implementation of [`CloudStore`]. One connection; a mutex serialises
//! transactions, which also keeps `changes.cursor` commit-ordered (with concurrent
//! writers a BIGSERIAL cursor can commit out of order and a puller could skip a row;
//! revisit with a pool). Batches are written with one statement per table (arrays
//! unnested server-side). Stream rows are indexed by (depot, ts_ms). The read-only
//! queries are in `read.rs`, the schema in `schema.rs`, depot credentials in
//! `depots.rs`.

mod depots;
mod read;
mod schema;

use tokio::sync::Mutex;
use tokio_postgres::{Client, NoTls};

use super::*;
use schema::{SCHEMA, SCHEMA_2, SCHEMA_3, SCHEMA_4, SCHEMA_5, SCHEMA_5_COLUMN};

pub struct PgStore {
    client: Mutex<Client>,
}

impl PgStore {
    /// Connects with a libpq-style string (`host=127.0.0.1 user=postgres dbname=garasi`)
    /// or URL. With `schema`, everything lives in that schema (created if missing).
    pub async fn connect(conn: &str, schema: Option<&str>) -> Result<Self, StoreError> {
        let (client, connection) = tokio_postgres::connect(conn, NoTls).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                eprintln!("garasi-cloud: PostgreSQL connection ended: {e}");
            }
        });
        if let Some(s) = schema {
            // Schema names come from our own code (tests, config), never from requests.
            let ident = s.replace('"', "");
            client
                .batch_execute(&format!(
                    "CREATE SCHEMA IF NOT EXISTS \"{ident}\"; SET search_path TO \"{ident}\";"
                ))
                .await?;
        }
        Ok(PgStore {
            client: Mutex::new(client),
        })
    }

    /// Drops a schema (test clean-up).
    pub async fn drop_schema(&self, schema: &str) -> Result<(), StoreError> {
        let ident = schema.replace('"', "");
        self.client
            .lock()
            .await
            .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{ident}\" CASCADE"))
            .await?;
        Ok(())
    }
}

impl CloudStore for PgStore {
    async fn migrate(&self) -> Result<(), StoreError> {
        let client = self.client.lock().await;
        client.batch_execute(SCHEMA).await?;
        client.batch_execute(SCHEMA_2).await?;
        client.batch_execute(SCHEMA_3).await?;
        client.batch_execute(SCHEMA_4).await?;
        client.batch_execute(SCHEMA_5_COLUMN).await?;
        client
            .execute(SCHEMA_5, &[&DEFAULT_ENROLMENT_TTL_MS])
            .await?;
        Ok(())
    }

    async fn create_depot_until(
        &self,
        name: &str,
        expires_ms: i64,
    ) -> Result<NewDepot, StoreError> {
        depots::create(&*self.client.lock().await, name, expires_ms).await
    }

    async fn enroll(&self, token: &str) -> Result<DepotCredentials, StoreError> {
        depots::enroll(&mut *self.client.lock().await, token).await
    }

    async fn authenticate(&self, depot_id: &str, secret: &str) -> Result<bool, StoreError> {
        let row = self
            .client
            .lock()
            .await
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
        depots::issue_token(&*self.client.lock().await, depot, expires_ms).await
    }

    async fn revoke_depot(&self, depot: &str) -> Result<(), StoreError> {
        depots::revoke(&*self.client.lock().await, depot).await
    }

    async fn push(
        &self,
        depot: &str,
        batch_seq: i64,
        changes: &[ChangeIn],
        rows: &[StreamRowIn],
    ) -> Result<PushOutcome, StoreError> {
        let mut client = self.client.lock().await;
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
        out.new_changes = insert_changes(&tx, depot, changes, now).await?;
        if !rows.is_empty() {
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

    async fn pull(
        &self,
        depot: &str,
        cursor: i64,
        limit: i64,
    ) -> Result<Vec<ChangeOut>, StoreError> {
        let rows = self
            .client
            .lock()
            .await
            .query(
                "SELECT cursor, record_type, record_id, change FROM changes WHERE depot = $1 AND cursor > $2 ORDER BY cursor LIMIT $3",
                &[&depot, &cursor, &limit],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| ChangeOut {
                cursor: r.get(0),
                record_type: r.get(1),
                record_id: r.get(2),
                change: r.get(3),
            })
            .collect())
    }

    async fn add_changes(&self, depot: &str, changes: &[ChangeIn]) -> Result<u64, StoreError> {
        let mut client = self.client.lock().await;
        let tx = client.transaction().await?;
        let n = insert_changes(&tx, depot, changes, now_ms()).await?;
        tx.commit().await?;
        Ok(n)
    }

    async fn save_timetable(
        &self,
        name: &str,
        zip: &[u8],
        report_json: &str,
    ) -> Result<i64, StoreError> {
        let row = self
            .client
            .lock()
            .await
            .query_one(
                "INSERT INTO timetables (name, created_ms, zip, report) VALUES ($1, $2, $3, $4) RETURNING id",
                &[&name, &now_ms(), &zip, &report_json],
            )
            .await?;
        Ok(row.get(0))
    }

    async fn timetable_zip(&self, id: i64) -> Result<Option<Vec<u8>>, StoreError> {
        let row = self
            .client
            .lock()
            .await
            .query_opt("SELECT zip FROM timetables WHERE id = $1", &[&id])
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn set_depot_plan(&self, depot: &str, plan_json: &str) -> Result<(), StoreError> {
        self.client
            .lock()
            .await
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
            .client
            .lock()
            .await
            .query("SELECT depot, plan FROM depot_plans ORDER BY depot", &[])
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    async fn record_sync(&self, depot: &str, report: Option<SyncReport>) -> Result<(), StoreError> {
        let r = report.unwrap_or_default();
        self.client
            .lock()
            .await
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
        cursor: i64,
        limit: i64,
    ) -> Result<Vec<StoredChange>, StoreError> {
        let rows = self
            .client
            .lock()
            .await
            .query(
                "SELECT cursor, depot, record_type, record_id, change FROM changes WHERE cursor > $1 ORDER BY cursor LIMIT $2",
                &[&cursor, &limit],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| StoredChange {
                cursor: r.get(0),
                depot: r.get(1),
                record_type: r.get(2),
                record_id: r.get(3),
                change: r.get(4),
            })
            .collect())
    }

    async fn load_records(&self, keys: &[RecordKey]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let joined: Vec<String> = keys.iter().map(RecordKey::joined).collect();
        let rows = self
            .client
            .lock()
            .await
            .query(
                "SELECT rkey, doc FROM records WHERE rkey = ANY($1)",
                &[&joined],
            )
            .await?;
        let mut found: std::collections::HashMap<String, Vec<u8>> =
            rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        Ok(joined.iter().map(|k| found.remove(k)).collect())
    }

    async fn save_records(
        &self,
        records: &[MaterialRecord],
        quarantined: &[Quarantined],
        cursor: i64,
    ) -> Result<(), StoreError> {
        let mut client = self.client.lock().await;
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
            let rkeys: Vec<String> = records.iter().map(|r| r.key.joined()).collect();
            let depots: Vec<&str> = records.iter().map(|r| r.key.depot.as_str()).collect();
            let types: Vec<&str> = records.iter().map(|r| r.key.record_type.as_str()).collect();
            let ids: Vec<&str> = records.iter().map(|r| r.key.record_id.as_str()).collect();
            let docs: Vec<&[u8]> = records.iter().map(|r| r.doc.as_slice()).collect();
            let fields: Vec<&str> = records.iter().map(|r| r.fields_json.as_str()).collect();
            let updated: Vec<i64> = records.iter().map(|r| r.updated_ms).collect();
            tx.execute(
                "INSERT INTO records (rkey, depot, record_type, record_id, doc, fields, updated_ms)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bytea[], $6::text[], $7::bigint[])
                 ON CONFLICT (rkey) DO UPDATE SET doc = excluded.doc, fields = excluded.fields,
                   updated_ms = excluded.updated_ms",
                &[&rkeys, &depots, &types, &ids, &docs, &fields, &updated],
            )
            .await?;
        }
        tx.execute(
            "INSERT INTO materialiser (id, cursor) VALUES (1, $1)
             ON CONFLICT (id) DO UPDATE SET cursor = excluded.cursor",
            &[&cursor],
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
            .client
            .lock()
            .await
            .query(
                "SELECT change FROM changes WHERE cursor > $1 AND depot = $2 AND record_type = $3 AND record_id = $4 ORDER BY cursor",
                &[&cursor, &key.depot, &key.record_type, &key.record_id],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }
}

/// Inserts changes (idempotent by record and content hash per depot) with one statement.
async fn insert_changes(
    tx: &tokio_postgres::Transaction<'_>,
    depot: &str,
    changes: &[ChangeIn],
    now: i64,
) -> Result<u64, StoreError> {
    if changes.is_empty() {
        return Ok(0);
    }
    let types: Vec<&str> = changes.iter().map(|c| c.record_type.as_str()).collect();
    let ids: Vec<&str> = changes.iter().map(|c| c.record_id.as_str()).collect();
    let keys: Vec<Vec<u8>> = changes.iter().map(change_key).collect();
    let bodies: Vec<&[u8]> = changes.iter().map(|c| c.change.as_slice()).collect();
    // WITH ORDINALITY keeps the batch's order in the cursor sequence: a record's changes
    // are pulled in the order they were pushed.
    Ok(tx
        .execute(
            "INSERT INTO changes (depot, record_type, record_id, key, change, received_ms)
             SELECT $1, t, i, k, c, $6 FROM unnest($2::text[], $3::text[], $4::bytea[], $5::bytea[])
               WITH ORDINALITY AS u(t, i, k, c, n) ORDER BY n
             ON CONFLICT (depot, key) DO NOTHING",
            &[&depot, &types, &ids, &keys, &bodies, &now],
        )
        .await?)
}
