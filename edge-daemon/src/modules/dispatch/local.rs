//! Blocks given locally (a depot without a cloud, the demo, tests and benchmarks),
//! stored as the cloud's master data would be.

use super::plan::Trip;
use super::service::BLOCK_RECORD;
use super::store::upsert;

/// A block given locally (a depot without a cloud, the demo, tests and benchmarks).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LocalBlock {
    pub id: String,
    pub service_date: String,
    pub block: String,
    pub routes: String,
    pub pull_out_ms: i64,
    pub pull_in_ms: i64,
    pub distance_km: f64,
    #[serde(default)]
    pub vehicle_type: Option<String>,
    #[serde(default)]
    pub trips: Vec<Trip>,
}

/// Stores blocks given locally, as the cloud's master data would (not synced: on an
/// enrolled depot the cloud's records replace them).
pub fn import_local_blocks(
    store: &crate::store::Store,
    blocks: &[LocalBlock],
) -> Result<usize, crate::store::StoreCallError> {
    let blocks = blocks.to_vec();
    store.write_blocking(move |c| {
        let tx = c.transaction()?;
        for b in &blocks {
            let first = b.trips.first().map(|t| t.start_ms).unwrap_or(b.pull_out_ms);
            let last = b.trips.last().map(|t| t.end_ms).unwrap_or(b.pull_in_ms);
            let f = serde_json::json!({
                "service_date": b.service_date,
                "block": b.block,
                "built": false,
                "routes": b.routes,
                "pull_out_ms": b.pull_out_ms,
                "pull_in_ms": b.pull_in_ms,
                "first_departure_ms": first,
                "last_arrival_ms": last,
                "distance_km": b.distance_km,
                "vehicle_type": b.vehicle_type,
                "trips": serde_json::to_string(&b.trips).unwrap_or_else(|_| "[]".into()),
            });
            upsert(&tx, BLOCK_RECORD, &b.id, None, &f)?;
        }
        tx.commit()?;
        Ok(blocks.len())
    })
}

/// Removes the local blocks whose id starts with `prefix`, except `keep` (a new demo day
/// replaces the last one's). Their assignments stay as records but no longer show: a
/// day is its blocks.
pub fn retire_local_blocks(
    store: &crate::store::Store,
    prefix: &str,
    keep: &[String],
) -> Result<usize, crate::store::StoreCallError> {
    let (prefix, keep) = (prefix.to_string(), keep.to_vec());
    store.write_blocking(move |c| {
        let tx = c.transaction()?;
        let ids: Vec<String> = {
            let mut st = tx.prepare(
                "SELECT record_id FROM dispatch_records
                  WHERE record_type = ?1 AND substr(record_id, 1, length(?2)) = ?2",
            )?;
            let rows = st.query_map(rusqlite::params![BLOCK_RECORD, prefix], |r| r.get(0))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        let mut n = 0;
        for id in ids.iter().filter(|i| !keep.contains(i)) {
            n += tx.execute(
                "DELETE FROM dispatch_records WHERE record_type = ?1 AND record_id = ?2",
                rusqlite::params![BLOCK_RECORD, id],
            )?;
        }
        tx.commit()?;
        Ok(n)
    })
}

impl super::service::Dispatch {
    /// Puts vehicles on blocks for an automatic source (the demo), which `by` names as
    /// the assignment's author; `pairs` are (block record id, vehicle).
    pub async fn assign_local(
        &self,
        date: &str,
        pairs: Vec<(String, String)>,
        by: &str,
    ) -> Result<usize, crate::store::StoreCallError> {
        use garasi_sync_protocol::record::FieldValue;
        let edits: Vec<(String, Vec<(&'static str, FieldValue)>)> = pairs
            .into_iter()
            .map(|(block, vehicle)| {
                // A fresh assignment: an earlier run's pull-out and pull-in are cleared.
                let values = vec![
                    ("vehicle", FieldValue::Text(vehicle)),
                    ("assigned_by", FieldValue::Text(by.to_string())),
                    ("pull_out_actual_ms", FieldValue::Null),
                    ("pull_in_actual_ms", FieldValue::Null),
                    ("late_min", FieldValue::Null),
                ];
                (block, values)
            })
            .collect();
        let (actor, date) = (self.actor.clone(), date.to_string());
        self.store
            .write(move |c| super::store::assign(c, &actor, &date, &edits))
            .await
    }

    /// Records a pull-out an automatic source saw (the demo's buses already out when it
    /// starts), as the depot geofence would have.
    pub async fn record_pull_out(&self, vehicle: &str, ts_ms: i64) {
        self.pull_event(vehicle, true, ts_ms).await;
    }
}
