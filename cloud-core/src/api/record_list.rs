//! A depot's records of one type up to every stored change, read without waiting: the
//! materialised records, with the changes the materialiser has not folded yet applied
//! in memory on top (read connections only). During a reconnect storm a list used to
//! fold the depot's backlog first, through the writers every push was queueing on, and
//! so waited for them; now it never does, and it still shows every stored change.

use std::collections::{BTreeMap, HashMap};

use garasi_sync_protocol::actor::{new_actor, Side};
use garasi_sync_protocol::record::Record;

use super::{ApiError, AppState};
use crate::materialise::Freshness;
use crate::store::{CloudStore, RecordKey};

/// Unfolded changes applied in memory per list, at most. Past this (a depot far
/// behind), the list shows a prefix of them and says it is not up to date.
const PENDING_LIMIT: i64 = 5_000;
/// Lists applying unfolded changes at once (each may hold a page of changes and their
/// documents). A list finding none free does not wait: it answers with the
/// materialised fields and says it is not up to date.
pub(super) const CONCURRENT_OVERLAYS: usize = 4;

/// A listed type: visible fields by record id, in id order.
pub(super) struct RecordList {
    pub records: BTreeMap<String, serde_json::Value>,
    /// The materialiser's position for the depot (what the stored fields include).
    pub freshness: Freshness,
    /// False when more unfolded changes were stored than one list applies.
    pub up_to_date: bool,
}

pub(super) async fn list_up_to_date<S: CloudStore>(
    s: &AppState<S>,
    depot: &str,
    record_type: &str,
) -> Result<RecordList, ApiError> {
    list_applying_at_most(s, depot, record_type, PENDING_LIMIT).await
}

async fn list_applying_at_most<S: CloudStore>(
    s: &AppState<S>,
    depot: &str,
    record_type: &str,
    limit: i64,
) -> Result<RecordList, ApiError> {
    // Cursor first: records saved after it only make some changes apply twice (a no-op).
    let freshness = s.materialiser.freshness(Some(depot)).await?;
    let mut records = BTreeMap::new();
    for (id, fields) in s.store.list_records(depot, record_type).await? {
        let fields = serde_json::from_str(&fields)
            .map_err(|e| ApiError::internal(format!("stored fields: {e}")))?;
        records.insert(id, fields);
    }
    if freshness.changes_behind <= 0 {
        return Ok(RecordList {
            records,
            freshness,
            up_to_date: freshness.changes_behind == 0,
        });
    }
    s.materialiser.wake.notify_one();
    let Ok(_permit) = s.overlays.clone().try_acquire_owned() else {
        return Ok(RecordList {
            records,
            freshness,
            up_to_date: false,
        });
    };
    let mut pending = s
        .store
        .type_changes_after(depot, record_type, freshness.materialised_cursor, limit + 1)
        .await?;
    let up_to_date = pending.len() as i64 <= limit;
    pending.truncate(usize::try_from(limit).unwrap_or(0));
    let mut order: Vec<RecordKey> = Vec::new();
    let mut by_id: HashMap<String, Vec<Vec<u8>>> = HashMap::new();
    for (id, change) in pending {
        by_id
            .entry(id.clone())
            .or_insert_with(|| {
                order.push(RecordKey {
                    depot: depot.into(),
                    record_type: record_type.into(),
                    record_id: id,
                });
                Vec::new()
            })
            .push(change);
    }
    let docs = s.store.load_records(&order).await?;
    // Automerge work off the async threads.
    let shown = tokio::task::spawn_blocking(move || {
        let mut shown = Vec::with_capacity(order.len());
        for (key, doc) in order.into_iter().zip(docs) {
            let changes = by_id.remove(&key.record_id).unwrap_or_default();
            if let Some(fields) = apply(doc.as_deref(), &changes) {
                shown.push((key.record_id, fields));
            }
        }
        shown
    })
    .await
    .map_err(|e| ApiError::internal(format!("applying unfolded changes: {e}")))?;
    for (id, fields) in shown {
        records.insert(id, fields);
    }
    Ok(RecordList {
        records,
        freshness,
        up_to_date,
    })
}

/// A record's visible fields with `changes` applied to its stored document: what the
/// materialiser will save (the same steps as its fold). All at once, and one by one
/// only if that fails, leaving out a change that does not apply as the fold does (and
/// quarantines it). `None` where the fold saves nothing: a stored document that no
/// longer loads keeps its stored fields.
fn apply(doc: Option<&[u8]>, changes: &[Vec<u8>]) -> Option<serde_json::Value> {
    let load = || match doc {
        Some(bytes) => Record::load(bytes, new_actor(Side::Cloud)).ok(),
        None => Some(Record::new(new_actor(Side::Cloud))),
    };
    let mut record = load()?;
    if record.apply(changes).is_err() {
        record = load()?;
        for change in changes {
            let _ = record.apply(std::slice::from_ref(change));
        }
    }
    serde_json::to_value(record.visible().ok()?).ok()
}

#[cfg(test)]
#[path = "record_list_tests.rs"]
mod tests;
