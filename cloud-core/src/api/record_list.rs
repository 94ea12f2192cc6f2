//! A depot's records of one type up to every stored change, read without waiting: the
//! materialised records, with the changes the materialiser has not folded yet applied
//! in memory on top, all read in one statement on a read connection (one snapshot, and
//! one round trip: with the cores saturated each round trip waits for one). During a
//! reconnect storm a list used to fold the depot's backlog first, through the writers
//! every push was queueing on; now it never waits for them and still shows every
//! stored change.

use std::collections::{BTreeMap, HashMap};

use garasi_sync_protocol::actor::{new_actor, Side};
use garasi_sync_protocol::record::Record;

use super::{ApiError, AppState};
use crate::materialise::Freshness;
use crate::store::CloudStore;

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
    let snap = s.store.list_snapshot(depot, record_type, limit + 1).await?;
    let freshness = Freshness::at(snap.materialised, snap.last);
    let mut records = BTreeMap::new();
    let mut docs: HashMap<String, Vec<u8>> = HashMap::new();
    for (id, fields, doc) in snap.records {
        let fields = serde_json::from_str(&fields)
            .map_err(|e| ApiError::internal(format!("stored fields: {e}")))?;
        if let Some(doc) = doc {
            docs.insert(id.clone(), doc);
        }
        records.insert(id, fields);
    }
    if freshness.changes_behind == 0 {
        return Ok(RecordList {
            records,
            freshness,
            up_to_date: true,
        });
    }
    s.materialiser.wake.notify_one();
    // Applying is the costly part: no overlay free, the materialised fields alone.
    let Ok(permit) = s.overlays.clone().try_acquire_owned() else {
        return Ok(RecordList {
            records,
            freshness,
            up_to_date: false,
        });
    };
    let mut pending = snap.pending;
    let up_to_date = pending.len() as i64 <= limit;
    pending.truncate(usize::try_from(limit).unwrap_or(0));
    let mut order: Vec<String> = Vec::new();
    let mut by_id: HashMap<String, Vec<Vec<u8>>> = HashMap::new();
    for (id, change) in pending {
        by_id
            .entry(id.clone())
            .or_insert_with(|| {
                order.push(id);
                Vec::new()
            })
            .push(change);
    }
    // Automerge work off the async threads.
    let shown = tokio::task::spawn_blocking(move || {
        let mut shown = Vec::with_capacity(order.len());
        for id in order {
            let changes = by_id.remove(&id).unwrap_or_default();
            if let Some(fields) = apply(docs.get(&id).map(Vec::as_slice), &changes) {
                shown.push((id, fields));
            }
        }
        shown
    })
    .await
    .map_err(|e| ApiError::internal(format!("applying unfolded changes: {e}")))?;
    drop(permit);
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
