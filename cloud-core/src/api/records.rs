//! Any record of any depot, as the cloud sees it (admin): read one (merged up to every
//! stored change), edit one as the cloud (the change reaches the depot on its next pull
//! and wins a concurrent conflict on the same field), list a type, and the quarantine.
//! Also the edit machinery the master-data routes write through.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use garasi_sync_protocol::actor::{new_actor, Side};
use garasi_sync_protocol::record::{FieldValue, Record};
use garasi_sync_protocol::records;

use super::{Admin, ApiError, AppState, KnownDepot, EDIT_STRIPES};
use crate::materialise::Freshness;
use crate::store::{ChangeIn, CloudStore, ReadModel, RecordKey};

pub(super) fn routes<S: CloudStore + 'static>() -> Router<AppState<S>> {
    Router::new()
        .route(
            "/api/v1/admin/depots/{depot}/quarantine",
            get(list_quarantine::<S>),
        )
        .route(
            "/api/v1/admin/depots/{depot}/records/{record_type}",
            get(list_records::<S>),
        )
        .route(
            "/api/v1/admin/depots/{depot}/records/{record_type}/{record_id}",
            get(get_record::<S>).put(put_record::<S>),
        )
}

/// One of a depot's records up to every stored change: its materialised document plus
/// the changes stored after the materialised cursor (so neither a read nor an edit
/// depends on how far behind the materialiser is). `None` if it has none.
pub(super) async fn load_record<S: CloudStore>(
    s: &AppState<S>,
    depot: &str,
    record_type: &str,
    record_id: &str,
) -> Result<(Option<Record>, Freshness), ApiError> {
    let key = RecordKey {
        depot: depot.into(),
        record_type: record_type.into(),
        record_id: record_id.into(),
    };
    // Cursor first: a document saved after it only makes some changes apply twice
    // (a no-op), never miss.
    let fresh = s.materialiser.freshness(Some(depot)).await?;
    let doc = s
        .store
        .load_records(std::slice::from_ref(&key))
        .await?
        .pop()
        .flatten();
    let later = s
        .store
        .record_changes_after(&key, fresh.materialised_cursor)
        .await?;
    let internal = |e: garasi_sync_protocol::record::RecordError| {
        ApiError::internal(format!("stored record does not load: {e}"))
    };
    let mut record = match doc {
        Some(d) => Record::load(&d, new_actor(Side::Cloud)).map_err(internal)?,
        None if later.is_empty() => return Ok((None, fresh)),
        None => Record::new(new_actor(Side::Cloud)),
    };
    for change in &later {
        // One that does not apply is the materialiser's to quarantine; the rest count.
        let _ = record.apply(std::slice::from_ref(change));
    }
    if record.heads().is_empty() {
        return Ok((None, fresh));
    }
    Ok((Some(record), fresh))
}

pub(super) fn record_json(
    record_type: &str,
    record_id: &str,
    record: &Record,
    fresh: Freshness,
) -> Result<Json<serde_json::Value>, ApiError> {
    let fields = record
        .visible()
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Json(
        serde_json::json!({ "record_type": record_type, "record_id": record_id, "fields": fields, "freshness": fresh }),
    ))
}

/// The record as the cloud sees it (same merge rule as every replica).
async fn get_record<S: CloudStore>(
    State(s): State<AppState<S>>,
    Path((depot, record_type, record_id)): Path<(String, String, String)>,
    _: Admin,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (Some(record), fresh) = load_record(&s, &depot, &record_type, &record_id).await? else {
        return Err(ApiError::not_found(format!(
            "depot {depot} has no {record_type} record {record_id}"
        )));
    };
    record_json(&record_type, &record_id, &record, fresh)
}

/// Edits fields of a depot's record as the cloud; the change reaches the depot on its
/// next pull, and wins a concurrent conflict on the same field.
async fn put_record<S: CloudStore>(
    State(s): State<AppState<S>>,
    Path((depot, record_type, record_id)): Path<(String, String, String)>,
    _: Admin,
    body: Result<
        Json<serde_json::Map<String, serde_json::Value>>,
        axum::extract::rejection::JsonRejection,
    >,
) -> Result<Json<serde_json::Value>, ApiError> {
    if !(records::is_operational(&record_type) || records::MASTER.contains(&record_type.as_str()))
        || !records::valid_record_id(&record_id)
    {
        return Err(ApiError::bad_request(format!(
            "no record type {record_type:?} with a valid id: types are {:?} and {:?}; ids are 1-{} letters, digits, '-', '_' or '.'",
            records::OPERATIONAL,
            records::MASTER,
            records::MAX_RECORD_ID
        )));
    }
    let Json(fields) = body.map_err(|e| {
        ApiError::bad_request(format!(
            "body must be a JSON object of fields: {}",
            e.body_text()
        ))
    })?;
    let mut values = Vec::new();
    for (k, v) in &fields {
        let fv = match v {
            serde_json::Value::Null => FieldValue::Null,
            serde_json::Value::Bool(b) => FieldValue::Bool(*b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => FieldValue::Int(i),
                None => FieldValue::Float(n.as_f64().unwrap_or(0.0)),
            },
            serde_json::Value::String(t) => FieldValue::Text(t.clone()),
            _ => {
                return Err(ApiError::bad_request(format!(
                    "field {k:?}: records hold scalars only"
                )))
            }
        };
        values.push((k.as_str(), fv));
    }
    KnownDepot::check(&*s.store, &depot).await?;
    let (record, fresh) = edit_record(&s, &depot, &record_type, &record_id, &values).await?;
    record_json(&record_type, &record_id, &record, fresh)
}

/// Writes fields of one of a depot's records as the cloud: the change is stored for the
/// depot's next pull and folded into the materialised record at once.
///
/// Each edit is made by a fresh cloud actor, so concurrent edits (here, from another
/// cloud process, or the publisher) can never fork an actor; edits of one record in this
/// process are serialised, so each sees the one before it.
pub(super) async fn edit_record<S: CloudStore>(
    s: &AppState<S>,
    depot: &str,
    record_type: &str,
    record_id: &str,
    values: &[(&str, FieldValue)],
) -> Result<(Record, Freshness), ApiError> {
    let stripe = {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (depot, record_type, record_id).hash(&mut h);
        (h.finish() % EDIT_STRIPES as u64) as usize
    };
    let _one_at_a_time = s.edit_locks[stripe].lock().await;
    let (record, _) = load_record(s, depot, record_type, record_id).await?;
    let mut record = record.unwrap_or_else(|| Record::new(new_actor(Side::Cloud)));
    let change = record
        .set(values)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    if let Some(change) = change {
        s.store
            .add_changes(
                depot,
                &[ChangeIn {
                    record_type: record_type.into(),
                    record_id: record_id.into(),
                    change,
                }],
            )
            .await?;
    }
    s.materialiser.wake.notify_one();
    let fresh = s.materialiser.freshness(Some(depot)).await?;
    Ok((record, fresh))
}

/// A depot's quarantined records (newest first): what the materialiser could not fold,
/// and why. The records keep their last good state; their other changes still apply.
async fn list_quarantine<S: ReadModel>(
    State(s): State<AppState<S>>,
    _: Admin,
    KnownDepot(depot): KnownDepot,
) -> Result<Json<serde_json::Value>, ApiError> {
    let rows: Vec<serde_json::Value> = s
        .store
        .quarantined(&depot, 500)
        .await?
        .into_iter()
        .map(|q| {
            serde_json::json!({
                "record_type": q.key.record_type,
                "record_id": q.key.record_id,
                "cursor": q.cursor,
                "reason": q.reason,
                "at_ms": q.at_ms,
            })
        })
        .collect();
    Ok(Json(serde_json::json!({ "quarantined": rows })))
}

/// Every record of one type at one depot, merged up to every stored change (the
/// cloud's view of the depot), without waiting for the materialiser or the writers.
async fn list_records<S: CloudStore>(
    State(s): State<AppState<S>>,
    Path((depot, record_type)): Path<(String, String)>,
    _: Admin,
) -> Result<Json<serde_json::Value>, ApiError> {
    // Whether the depot exists is asked only when its list is empty (or its id cannot
    // be one): a depot that has records exists, as depots are never deleted, and with
    // the cores saturated each round trip waits for one.
    if depot.contains('\0') {
        KnownDepot::check(&*s.store, &depot).await?;
    }
    if record_type.contains('\0') {
        return Err(ApiError::bad_request(format!(
            "no record type {record_type:?}: types are {:?} and {:?}",
            records::OPERATIONAL,
            records::MASTER
        )));
    }
    let list = super::record_list::list_up_to_date(&s, &depot, &record_type).await?;
    if list.records.is_empty() {
        KnownDepot::check(&*s.store, &depot).await?;
    }
    let records: Vec<serde_json::Value> = list
        .records
        .into_iter()
        .map(|(id, fields)| serde_json::json!({ "record_id": id, "fields": fields }))
        .collect();
    Ok(Json(serde_json::json!({
        "record_type": record_type,
        "records": records,
        "freshness": list.freshness,
        "up_to_date": list.up_to_date,
    })))
}
