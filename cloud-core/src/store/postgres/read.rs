//! The PostgreSQL store's read model: the read-only queries (see `store::read`), as
//! inherent methods so holders of a concrete store need no trait import.

use super::PgStore;
use crate::store::{
    ChangePosition, DepotInfo, Quarantined, RecordKey, StoreError, StreamRowIn, TimetableInfo,
};

impl PgStore {
    pub async fn depots(&self) -> Result<Vec<DepotInfo>, StoreError> {
        // Prepared once per connection: one round trip, not two (with the cores
        // saturated each waits for one).
        let client = self.r().await?;
        let statement = client
            .prepare_cached(
                "SELECT d.id, d.name, d.secret_hash IS NOT NULL, s.last_sync_ms, s.backlog_entries, s.backlog_bytes, s.oldest_change_ms,
                   (SELECT count(*) FROM quarantine q WHERE q.depot = d.id)
                 FROM depots d LEFT JOIN depot_sync s ON s.depot = d.id ORDER BY d.name, d.id",
            )
            .await?;
        let rows = client.query(&statement, &[]).await?;
        Ok(rows
            .iter()
            .map(|r| DepotInfo {
                id: r.get(0),
                name: r.get(1),
                enrolled: r.get(2),
                last_sync_ms: r.get(3),
                backlog_entries: r.get(4),
                backlog_bytes: r.get(5),
                oldest_change_ms: r.get(6),
                quarantined: r.get(7),
            })
            .collect())
    }

    pub async fn depot_exists(&self, depot: &str) -> Result<bool, StoreError> {
        // PostgreSQL text cannot hold NUL: such an id from a path is no depot (404), not
        // a server error.
        if depot.contains('\0') {
            return Ok(false);
        }
        let client = self.r().await?;
        let statement = client
            .prepare_cached("SELECT 1 FROM depots WHERE id = $1")
            .await?;
        Ok(client.query_opt(&statement, &[&depot]).await?.is_some())
    }

    pub async fn change_positions(
        &self,
        depot: Option<&str>,
    ) -> Result<Vec<ChangePosition>, StoreError> {
        let client = self.r().await?;
        super::changes::positions(&client, depot).await
    }

    pub async fn quarantined(
        &self,
        depot: &str,
        limit: i64,
    ) -> Result<Vec<Quarantined>, StoreError> {
        let rows = self
            .r()
            .await?
            .query(
                "SELECT depot, record_type, record_id, cursor, reason, at_ms FROM quarantine
                 WHERE depot = $1 ORDER BY cursor DESC LIMIT $2",
                &[&depot, &limit],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| Quarantined {
                key: RecordKey {
                    depot: r.get(0),
                    record_type: r.get(1),
                    record_id: r.get(2),
                },
                cursor: r.get(3),
                reason: r.get(4),
                at_ms: r.get(5),
            })
            .collect())
    }

    pub async fn list_records(
        &self,
        depot: &str,
        record_type: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let rows = self
            .r()
            .await?
            .query(
                "SELECT record_id, fields FROM records WHERE depot = $1 AND record_type = $2 ORDER BY record_id",
                &[&depot, &record_type],
            )
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    pub async fn stream_rows(
        &self,
        depot: &str,
        stream: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<StreamRowIn>, StoreError> {
        let rows = self
            .r()
            .await?
            .query(
                "SELECT stream, seq, ts_ms, payload FROM stream_rows WHERE depot = $1 AND stream = $2 AND seq > $3 ORDER BY seq LIMIT $4",
                &[&depot, &stream, &after, &limit],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| StreamRowIn {
                stream: r.get(0),
                seq: r.get(1),
                ts_ms: r.get(2),
                payload: r.get(3),
            })
            .collect())
    }

    pub async fn stream_len(&self, depot: &str, stream: &str) -> Result<i64, StoreError> {
        let row = self
            .r()
            .await?
            .query_one(
                "SELECT count(*) FROM stream_rows WHERE depot = $1 AND stream = $2",
                &[&depot, &stream],
            )
            .await?;
        Ok(row.get(0))
    }

    pub async fn timetables(&self) -> Result<Vec<TimetableInfo>, StoreError> {
        let rows = self
            .r()
            .await?
            .query(
                "SELECT id, name, created_ms, octet_length(zip)::BIGINT, report FROM timetables ORDER BY id DESC",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| TimetableInfo {
                id: r.get(0),
                name: r.get(1),
                created_ms: r.get(2),
                bytes: r.get(3),
                report_json: r.get(4),
            })
            .collect())
    }
}

crate::store::read::forward_read_model!(PgStore);

/// [`ListSnapshot`](crate::store::ListSnapshot) in one statement: kind 0 the position,
/// 1 a materialised record (its document only if it has pending changes), 2 a pending
/// change with its cursor. $1 depot, $2 record type, $3 most pending changes. `IN`, not
/// a correlated `EXISTS`: without statistics SQLite ran that once per record.
pub(super) const LIST_SNAPSHOT: &str = "
WITH pos AS (
  SELECT coalesce(p.cursor, 0) AS m, s.last AS l FROM depot_seq s
  LEFT JOIN materialiser_pos p ON p.depot = s.depot WHERE s.depot = $1
), pending AS (
  SELECT cursor, record_id, change FROM changes
   WHERE depot = $1 AND record_type = $2 AND cursor > coalesce((SELECT m FROM pos), 0)
   ORDER BY cursor LIMIT $3
)
SELECT 0::int, NULL::text, NULL::text, NULL::bytea,
       coalesce((SELECT m FROM pos), 0)::bigint, coalesce((SELECT l FROM pos), 0)::bigint
UNION ALL
SELECT 1, r.record_id, r.fields,
       CASE WHEN r.record_id IN (SELECT record_id FROM pending) THEN r.doc END,
       NULL, NULL
  FROM records r WHERE r.depot = $1 AND r.record_type = $2
UNION ALL
SELECT 2, record_id, NULL, change, cursor, NULL FROM pending";
