//! PostgreSQL implementation of [`CloudStore`]. One connection; a mutex serialises
//! transactions, which also keeps `changes.cursor` commit-ordered (with concurrent
//! writers a BIGSERIAL cursor can commit out of order and a puller could skip a row;
//! revisit with a pool). Stream rows are indexed by (depot, ts_ms); time partitioning
//! and COPY bulk loading come with the sync endpoint's benchmark.

use tokio::sync::Mutex;
use tokio_postgres::{Client, NoTls};

use super::*;

pub struct PgStore {
    client: Mutex<Client>,
}

const SCHEMA: &str = "
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
        self.client.lock().await.batch_execute(SCHEMA).await?;
        Ok(())
    }

    async fn create_depot(&self, name: &str) -> Result<NewDepot, StoreError> {
        let (id, token) = (new_depot_id(), random_token());
        self.client
            .lock()
            .await
            .execute(
                "INSERT INTO depots (id, name, token_hash, created_ms) VALUES ($1, $2, $3, $4)",
                &[&id, &name, &hash_secret(&token), &now_ms()],
            )
            .await?;
        Ok(NewDepot {
            id,
            enrolment_token: token,
        })
    }

    async fn enroll(&self, token: &str) -> Result<DepotCredentials, StoreError> {
        let mut client = self.client.lock().await;
        let tx = client.transaction().await?;
        let row = tx
            .query_opt(
                "SELECT id FROM depots WHERE token_hash = $1 FOR UPDATE",
                &[&hash_secret(token)],
            )
            .await?;
        let Some(row) = row else {
            return Err(StoreError::BadToken);
        };
        let depot_id: String = row.get(0);
        let secret = random_token();
        tx.execute(
            "UPDATE depots SET token_hash = NULL, secret_hash = $1 WHERE id = $2",
            &[&hash_secret(&secret), &depot_id],
        )
        .await?;
        tx.commit().await?;
        Ok(DepotCredentials { depot_id, secret })
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
        let ins_change = tx
            .prepare(
                "INSERT INTO changes (depot, record_type, record_id, key, change, received_ms) VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (depot, key) DO NOTHING",
            )
            .await?;
        for ch in changes {
            out.new_changes += tx
                .execute(
                    &ins_change,
                    &[
                        &depot,
                        &ch.record_type,
                        &ch.record_id,
                        &change_key(&ch.change),
                        &ch.change,
                        &now,
                    ],
                )
                .await?;
        }
        let ins_row = tx
            .prepare("INSERT INTO stream_rows (depot, stream, seq, ts_ms, payload) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING")
            .await?;
        for r in rows {
            out.new_rows += tx
                .execute(&ins_row, &[&depot, &r.stream, &r.seq, &r.ts_ms, &r.payload])
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
        let ins = tx
            .prepare(
                "INSERT INTO changes (depot, record_type, record_id, key, change, received_ms) VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (depot, key) DO NOTHING",
            )
            .await?;
        let mut n = 0;
        for ch in changes {
            n += tx
                .execute(
                    &ins,
                    &[
                        &depot,
                        &ch.record_type,
                        &ch.record_id,
                        &change_key(&ch.change),
                        &ch.change,
                        &now_ms(),
                    ],
                )
                .await?;
        }
        tx.commit().await?;
        Ok(n)
    }

    async fn record_changes(
        &self,
        depot: &str,
        record_type: &str,
        record_id: &str,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let rows = self
            .client
            .lock()
            .await
            .query(
                "SELECT change FROM changes WHERE depot = $1 AND record_type = $2 AND record_id = $3 ORDER BY cursor",
                &[&depot, &record_type, &record_id],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn stream_len(&self, depot: &str, stream: &str) -> Result<i64, StoreError> {
        let row = self
            .client
            .lock()
            .await
            .query_one(
                "SELECT count(*) FROM stream_rows WHERE depot = $1 AND stream = $2",
                &[&depot, &stream],
            )
            .await?;
        Ok(row.get(0))
    }
}
