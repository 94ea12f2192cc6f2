//! The cloud's HTTP API for depots and admins: create depots (admin), enrol (one-time
//! token), push a sync batch, pull changes. Every sync route authenticates one depot
//! (`x-garasi-depot` + `authorization: Bearer <secret>`) and acts only on that depot's
//! data; bad batches get a clear error and change nothing.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use garasi_sync_protocol::actor::{new_actor, Side};
use garasi_sync_protocol::ids::valid_id;
use garasi_sync_protocol::record::{FieldValue, Record};
use garasi_sync_protocol::records;
use garasi_sync_protocol::streams;
use garasi_sync_protocol::wire::{self, Batch, Entry, WireError};
use serde::Deserialize;

use crate::materialise::{Freshness, MaterialiseError, Materialiser};
use crate::store::{ChangeIn, CloudStore, RecordKey, StoreError, SyncReport};

/// JSON error `{"error": {"status", "message"}}`.
pub struct ApiError(pub(crate) StatusCode, pub(crate) String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.0,
            Json(serde_json::json!({ "error": { "status": self.0.as_u16(), "message": self.1 } })),
        )
            .into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::BadToken => ApiError(StatusCode::UNAUTHORIZED, e.to_string()),
            StoreError::NoSuchDepot(_) => ApiError(StatusCode::NOT_FOUND, e.to_string()),
            other => {
                tracing::error!(error = %other, "store error");
                ApiError(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error: see the cloud's log".into(),
                )
            }
        }
    }
}

pub(crate) fn wire_error(e: WireError) -> ApiError {
    let status = match e {
        WireError::TooLarge { .. }
        | WireError::BodyTooLarge { .. }
        | WireError::TooManyEntries { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        _ => StatusCode::BAD_REQUEST,
    };
    ApiError(status, format!("sync batch rejected: {e}"))
}

/// Batches decoded at once: a decode may hold its 64 MiB body and entries in memory, so
/// the number in flight bounds what hostile batches can make the cloud allocate.
const CONCURRENT_DECODES: usize = 2;
/// Stripes of the record edit lock (edits of one record are serialised, so each admin
/// request sees the one before it; different records rarely share a stripe).
const EDIT_STRIPES: usize = 64;

pub struct AppState<S> {
    pub store: Arc<S>,
    /// Keeps the `records` table (merged documents, visible fields) up to date.
    pub materialiser: Arc<Materialiser<S>>,
    /// Bearer token for admin routes (from the cloud's configuration).
    pub admin_token: Arc<str>,
    /// Timetable imports in flight and parsed feeds (planning API, publisher).
    pub timetables: Arc<crate::timetable::Timetables>,
    /// Bounds concurrent batch decodes ([`CONCURRENT_DECODES`]).
    pub decodes: Arc<tokio::sync::Semaphore>,
    /// Serialises edits of one record ([`EDIT_STRIPES`]).
    pub edit_locks: Arc<Vec<tokio::sync::Mutex<()>>>,
    pub metrics: Arc<crate::metrics::CloudMetrics>,
}

impl<S: CloudStore> AppState<S> {
    pub fn new(store: Arc<S>, admin_token: Arc<str>) -> Result<Self, prometheus::Error> {
        Ok(AppState {
            materialiser: Arc::new(Materialiser::new(store.clone())),
            store,
            admin_token,
            timetables: Arc::default(),
            decodes: Arc::new(tokio::sync::Semaphore::new(CONCURRENT_DECODES)),
            edit_locks: Arc::new(
                (0..EDIT_STRIPES)
                    .map(|_| tokio::sync::Mutex::new(()))
                    .collect(),
            ),
            metrics: Arc::new(crate::metrics::CloudMetrics::new()?),
        })
    }
}

impl<S> Clone for AppState<S> {
    fn clone(&self) -> Self {
        AppState {
            materialiser: self.materialiser.clone(),
            store: self.store.clone(),
            admin_token: self.admin_token.clone(),
            timetables: self.timetables.clone(),
            decodes: self.decodes.clone(),
            edit_locks: self.edit_locks.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

pub(crate) fn require_admin<S>(s: &AppState<S>, headers: &HeaderMap) -> Result<(), ApiError> {
    let ok = bearer(headers).is_some_and(|t| {
        subtle::ConstantTimeEq::ct_eq(t.as_bytes(), s.admin_token.as_bytes()).into()
    });
    if ok {
        Ok(())
    } else {
        Err(ApiError(
            StatusCode::UNAUTHORIZED,
            "admin routes need authorization: Bearer <admin token>".into(),
        ))
    }
}

impl From<MaterialiseError> for ApiError {
    fn from(e: MaterialiseError) -> Self {
        match e {
            MaterialiseError::Store(e) => e.into(),
            other @ MaterialiseError::Task(_) => {
                tracing::error!(error = %other, "materialiser error");
                ApiError(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error: see the cloud's log".into(),
                )
            }
        }
    }
}

/// How long a list waits for the materialiser before it answers from the last
/// materialised state (and says how far behind that is).
const READ_FRESHNESS_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// One of a depot's records up to every stored change: its materialised document plus
/// the changes stored after the materialised cursor (so neither a read nor an edit
/// depends on how far behind the materialiser is). `None` if it has none.
async fn load_record<S: CloudStore>(
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
    let fresh = s.materialiser.freshness().await?;
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
        ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("stored record does not load: {e}"),
        )
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

fn record_json(
    record_type: &str,
    record_id: &str,
    record: &Record,
    fresh: Freshness,
) -> Result<Json<serde_json::Value>, ApiError> {
    let fields = record
        .visible()
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(Json(
        serde_json::json!({ "record_type": record_type, "record_id": record_id, "fields": fields, "freshness": fresh }),
    ))
}

/// The record as the cloud sees it (same merge rule as every replica).
async fn get_record<S: CloudStore>(
    State(s): State<AppState<S>>,
    headers: HeaderMap,
    Path((depot, record_type, record_id)): Path<(String, String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    require_admin(&s, &headers)?;
    let (Some(record), fresh) = load_record(&s, &depot, &record_type, &record_id).await? else {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("depot {depot} has no {record_type} record {record_id}"),
        ));
    };
    record_json(&record_type, &record_id, &record, fresh)
}

/// Edits fields of a depot's record as the cloud; the change reaches the depot on its
/// next pull, and wins a concurrent conflict on the same field.
async fn put_record<S: CloudStore>(
    State(s): State<AppState<S>>,
    headers: HeaderMap,
    Path((depot, record_type, record_id)): Path<(String, String, String)>,
    body: Result<
        Json<serde_json::Map<String, serde_json::Value>>,
        axum::extract::rejection::JsonRejection,
    >,
) -> Result<Json<serde_json::Value>, ApiError> {
    require_admin(&s, &headers)?;
    if !(records::is_operational(&record_type) || records::MASTER.contains(&record_type.as_str()))
        || !records::valid_record_id(&record_id)
    {
        return Err(bad_request(format!(
            "no record type {record_type:?} with a valid id: types are {:?} and {:?}; ids are 1-{} letters, digits, '-', '_' or '.'",
            records::OPERATIONAL,
            records::MASTER,
            records::MAX_RECORD_ID
        )));
    }
    let Json(fields) = body.map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("body must be a JSON object of fields: {}", e.body_text()),
        )
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
                return Err(ApiError(
                    StatusCode::BAD_REQUEST,
                    format!("field {k:?}: records hold scalars only"),
                ))
            }
        };
        values.push((k.as_str(), fv));
    }
    require_depot(&s, &depot).await?;
    let (record, fresh) = edit_record(&s, &depot, &record_type, &record_id, &values).await?;
    record_json(&record_type, &record_id, &record, fresh)
}

/// Writes fields of one of a depot's records as the cloud: the change is stored for the
/// depot's next pull and folded into the materialised record at once.
///
/// Each edit is made by a fresh cloud actor, so concurrent edits (here, from another
/// cloud process, or the publisher) can never fork an actor; edits of one record in this
/// process are serialised, so each sees the one before it.
async fn edit_record<S: CloudStore>(
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
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
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
    let fresh = s.materialiser.freshness().await?;
    Ok((record, fresh))
}

pub(crate) async fn require_depot<S: CloudStore>(
    s: &AppState<S>,
    depot: &str,
) -> Result<(), ApiError> {
    if s.store.depots().await?.iter().any(|d| d.id == depot) {
        Ok(())
    } else {
        Err(StoreError::NoSuchDepot(depot.into()).into())
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

/// The authenticated depot of a sync request.
async fn depot_of<S: CloudStore>(s: &AppState<S>, headers: &HeaderMap) -> Result<String, ApiError> {
    let unauthorized = || {
        ApiError(
            StatusCode::UNAUTHORIZED,
            "authenticate with x-garasi-depot and authorization: Bearer <depot secret>".into(),
        )
    };
    let depot = headers
        .get("x-garasi-depot")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(unauthorized)?;
    let secret = bearer(headers).ok_or_else(unauthorized)?;
    if s.store.authenticate(depot, secret).await? {
        Ok(depot.to_string())
    } else {
        Err(unauthorized())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewDepotBody {
    name: String,
}

async fn create_depot<S: CloudStore>(
    State(s): State<AppState<S>>,
    headers: HeaderMap,
    body: Result<Json<NewDepotBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    require_admin(&s, &headers)?;
    let Json(b) = body.map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("invalid JSON body: {}", e.body_text()),
        )
    })?;
    let d = s.store.create_depot(&b.name).await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "id": d.id, "enrolment_token": d.enrolment_token })),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnrollBody {
    token: String,
}

async fn enroll<S: CloudStore>(
    State(s): State<AppState<S>>,
    body: Result<Json<EnrollBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Json(b) = body.map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("invalid JSON body: {}", e.body_text()),
        )
    })?;
    let c = s.store.enroll(&b.token).await?;
    Ok(Json(
        serde_json::json!({ "depot_id": c.depot_id, "secret": c.secret }),
    ))
}

async fn push<S: CloudStore>(
    State(s): State<AppState<S>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let depot = depot_of(&s, &headers).await?;
    // Decoding and checking run in the blocking pool, at most CONCURRENT_DECODES at once:
    // together they bound what hostile batches can make the cloud allocate and compute.
    let checked =
        {
            // The permit moves into the blocking task: a client that hangs up cannot free
            // its slot while its batch is still being decoded.
            let permit =
                s.decodes.clone().acquire_owned().await.map_err(|_| {
                    ApiError(StatusCode::SERVICE_UNAVAILABLE, "shutting down".into())
                })?;
            let authenticated = depot.clone();
            tokio::task::spawn_blocking(move || {
                let _permit = permit;
                crate::push_check::check(&body, &authenticated)
            })
            .await
            .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        };
    let crate::push_check::Checked {
        batch_seq,
        changes,
        rows,
    } = checked.map_err(|r| {
        if let Some(reason) = r.reason {
            s.metrics.sync_refused.with_label_values(&[reason]).inc();
            tracing::warn!(depot = %depot, reason, error = %r.message, "sync batch refused");
        }
        ApiError(r.status, r.message)
    })?;
    let out = s.store.push(&depot, batch_seq, &changes, &rows).await?;
    s.store.record_sync(&depot, sync_report(&headers)).await?;
    if out.new_changes > 0 {
        s.materialiser.wake.notify_one();
    }
    Ok(Json(
        serde_json::json!({ "replayed": out.replayed, "new_changes": out.new_changes, "new_rows": out.new_rows }),
    ))
}

/// Parses `x-garasi-backlog: entries=N;bytes=N;oldest_change_ms=N` (absent or malformed:
/// no report; the ops view then keeps the previous one).
fn sync_report(headers: &HeaderMap) -> Option<SyncReport> {
    let v = headers.get("x-garasi-backlog")?.to_str().ok()?;
    let mut r = SyncReport::default();
    for part in v.split(';') {
        let (k, n) = part.split_once('=')?;
        let n: i64 = n.trim().parse().ok()?;
        match k.trim() {
            "entries" => r.backlog_entries = n,
            "bytes" => r.backlog_bytes = n,
            "oldest_change_ms" => r.oldest_change_ms = (n > 0).then_some(n),
            _ => {}
        }
    }
    Some(r)
}

#[derive(Deserialize)]
struct PullQuery {
    cursor: Option<i64>,
    limit: Option<i64>,
}

/// Returns a wire batch of the depot's changes after `cursor`; `batch_seq` carries the
/// cursor to ask from next time (unchanged when there is nothing new).
async fn pull<S: CloudStore>(
    State(s): State<AppState<S>>,
    headers: HeaderMap,
    Query(q): Query<PullQuery>,
) -> Result<Response, ApiError> {
    let depot = depot_of(&s, &headers).await?;
    let cursor = q.cursor.unwrap_or(0).max(0);
    let limit = q.limit.unwrap_or(1000).clamp(1, 10_000);
    let changes = s.store.pull(&depot, cursor, limit).await?;
    s.store.record_sync(&depot, sync_report(&headers)).await?;
    let next = changes.last().map(|c| c.cursor).unwrap_or(cursor);
    let batch = Batch {
        depot,
        batch_seq: next as u64,
        entries: changes
            .into_iter()
            .map(|c| Entry::Change {
                record_type: c.record_type,
                record_id: c.record_id,
                change: c.change,
            })
            .collect(),
    };
    let bytes = wire::encode(&batch).map_err(wire_error)?;
    Ok((
        [(header::CONTENT_TYPE, "application/vnd.garasi.sync-batch")],
        bytes,
    )
        .into_response())
}

/// Ops view: every depot with its last sync, the backlog it last reported and its lag
/// (how long its oldest unsent operational change has waited; 0 when it has none).
async fn list_depots<S: CloudStore>(
    State(s): State<AppState<S>>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    require_admin(&s, &headers)?;
    let now = crate::store::now_ms();
    let depots: Vec<serde_json::Value> = s
        .store
        .depots()
        .await?
        .into_iter()
        .map(|d| {
            let lag_s = d
                .oldest_change_ms
                .map(|t| ((now - t).max(0) as f64 / 1000.0).round())
                .unwrap_or(0.0);
            serde_json::json!({
                "id": d.id,
                "name": d.name,
                "enrolled": d.enrolled,
                "last_sync_ms": d.last_sync_ms,
                "seconds_since_sync": d.last_sync_ms.map(|t| ((now - t).max(0) as f64 / 1000.0).round()),
                "backlog": { "entries": d.backlog_entries, "bytes": d.backlog_bytes },
                "lag_s": lag_s,
                "quarantined_records": d.quarantined,
            })
        })
        .collect();
    let fresh = s.materialiser.freshness().await?;
    Ok(Json(
        serde_json::json!({ "depots": depots, "materialiser": fresh }),
    ))
}

/// A depot's quarantined records (newest first): what the materialiser could not fold,
/// and why. The records keep their last good state; their other changes still apply.
async fn list_quarantine<S: CloudStore>(
    State(s): State<AppState<S>>,
    headers: HeaderMap,
    Path(depot): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    require_admin(&s, &headers)?;
    require_depot(&s, &depot).await?;
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

/// Prometheus metrics (low-cardinality labels; no depot ids, nothing personal).
async fn metrics<S: CloudStore>(State(s): State<AppState<S>>) -> Response {
    let quarantined = s
        .materialiser
        .quarantined_total
        .load(std::sync::atomic::Ordering::Relaxed);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(quarantined),
    )
        .into_response()
}

/// Every record of one type at one depot, merged (the cloud's view of the depot).
async fn list_records<S: CloudStore>(
    State(s): State<AppState<S>>,
    headers: HeaderMap,
    Path((depot, record_type)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    require_admin(&s, &headers)?;
    require_depot(&s, &depot).await?;
    let fresh = s.materialiser.refresh_for_read(READ_FRESHNESS_WAIT).await;
    let mut records = Vec::new();
    for (id, fields) in s.store.list_records(&depot, &record_type).await? {
        let fields: serde_json::Value = serde_json::from_str(&fields).map_err(|e| {
            ApiError(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("stored fields: {e}"),
            )
        })?;
        records.push(serde_json::json!({ "record_id": id, "fields": fields }));
    }
    Ok(Json(
        serde_json::json!({ "record_type": record_type, "records": records, "freshness": fresh }),
    ))
}

#[derive(Deserialize)]
struct TelemetryQuery {
    after: Option<i64>,
    limit: Option<i64>,
}

/// A depot's telemetry as it arrived (decoded), oldest seq first; `next` is the `after`
/// to ask from next time.
async fn depot_telemetry<S: CloudStore>(
    State(s): State<AppState<S>>,
    headers: HeaderMap,
    Path(depot): Path<String>,
    Query(q): Query<TelemetryQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    require_admin(&s, &headers)?;
    require_depot(&s, &depot).await?;
    let after = q.after.unwrap_or(0).max(0);
    let limit = q.limit.unwrap_or(1000).clamp(1, 50_000);
    let rows = s
        .store
        .stream_rows(&depot, streams::TELEMETRY_V1, after, limit)
        .await?;
    let next = rows.last().map_or(after, |r| r.seq);
    let mut samples = Vec::with_capacity(rows.len());
    for r in rows {
        let sample = streams::TelemetrySampleV1::decode(&r.payload)
            .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        samples.push(serde_json::json!({ "seq": r.seq, "sample": sample }));
    }
    Ok(Json(
        serde_json::json!({ "samples": samples, "next": next }),
    ))
}

/// Master data: a vehicle of a depot, defined here once and pulled by the depot.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VehicleBody {
    label: String,
    plate: Option<String>,
    battery_kwh: f64,
    /// Energy use, for dispatch's energy check (the depot's default when absent).
    #[serde(default)]
    kwh_per_km: Option<f64>,
    /// Type a block may require (e.g. "12m", "articulated").
    #[serde(default)]
    vehicle_type: Option<String>,
}

pub(crate) fn bad_request(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into())
}

async fn put_vehicle<S: CloudStore>(
    State(s): State<AppState<S>>,
    headers: HeaderMap,
    Path((depot, id)): Path<(String, String)>,
    body: Result<Json<VehicleBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    require_admin(&s, &headers)?;
    let Json(v) = body.map_err(|e| bad_request(format!("invalid vehicle: {}", e.body_text())))?;
    if !valid_id(&id) {
        return Err(bad_request(format!(
            "vehicle id {id:?} is invalid: use 1-64 letters, digits, '-' or '_'"
        )));
    }
    if v.label.trim().is_empty() || !(v.battery_kwh > 0.0 && v.battery_kwh < 10_000.0) {
        return Err(bad_request(
            "a vehicle needs a label and a battery_kwh between 0 and 10000",
        ));
    }
    if v.kwh_per_km.is_some_and(|k| !(k > 0.0 && k < 20.0)) {
        return Err(bad_request("kwh_per_km must be between 0 and 20"));
    }
    if v.vehicle_type.as_deref().is_some_and(|t| !valid_id(t)) {
        return Err(bad_request(
            "vehicle_type must be 1-64 letters, digits, '-' or '_'",
        ));
    }
    require_depot(&s, &depot).await?;
    let fields = [
        ("label", FieldValue::Text(v.label)),
        (
            "plate",
            v.plate.map(FieldValue::Text).unwrap_or(FieldValue::Null),
        ),
        ("battery_kwh", FieldValue::Float(v.battery_kwh)),
        (
            "kwh_per_km",
            v.kwh_per_km
                .map(FieldValue::Float)
                .unwrap_or(FieldValue::Null),
        ),
        (
            "vehicle_type",
            v.vehicle_type
                .map(FieldValue::Text)
                .unwrap_or(FieldValue::Null),
        ),
    ];
    let (record, fresh) = edit_record(&s, &depot, records::VEHICLE, &id, &fields).await?;
    record_json(records::VEHICLE, &id, &record, fresh)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceBody {
    id: String,
    #[serde(default = "vehicle_kind")]
    kind: String,
}

fn vehicle_kind() -> String {
    "vehicle".into()
}

/// Master data: a device credential for a depot. The password is generated here and
/// shown once; only its argon2id hash is stored and synced to the depot, which checks
/// device logins offline.
async fn create_device<S: CloudStore>(
    State(s): State<AppState<S>>,
    headers: HeaderMap,
    Path(depot): Path<String>,
    body: Result<Json<DeviceBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    require_admin(&s, &headers)?;
    let Json(d) = body.map_err(|e| bad_request(format!("invalid device: {}", e.body_text())))?;
    if !valid_id(&d.id) || d.kind != "vehicle" {
        return Err(bad_request(
            "a device needs an id of 1-64 letters, digits, '-' or '_' and kind \"vehicle\"",
        ));
    }
    require_depot(&s, &depot).await?;
    let password = crate::store::random_token();
    let hash = tokio::task::spawn_blocking({
        let password = password.clone();
        move || crate::store::hash_device_password(&password)
    })
    .await
    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    let fields = [
        ("kind", FieldValue::Text(d.kind)),
        ("password_hash", FieldValue::Text(hash)),
        ("disabled", FieldValue::Bool(false)),
    ];
    edit_record(&s, &depot, records::DEVICE, &d.id, &fields).await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "id": d.id, "password": password })),
    )
        .into_response())
}

async fn healthz() -> &'static str {
    "ok\n"
}

pub fn router<S: CloudStore + 'static>(state: AppState<S>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics::<S>))
        .route(
            "/api/v1/admin/depots/{depot}/quarantine",
            get(list_quarantine::<S>),
        )
        .route(
            "/api/v1/admin/depots",
            post(create_depot::<S>).get(list_depots::<S>),
        )
        .route(
            "/api/v1/admin/depots/{depot}/records/{record_type}",
            get(list_records::<S>),
        )
        .route(
            "/api/v1/admin/depots/{depot}/vehicles/{id}",
            axum::routing::put(put_vehicle::<S>),
        )
        .route(
            "/api/v1/admin/depots/{depot}/telemetry",
            get(depot_telemetry::<S>),
        )
        .route(
            "/api/v1/admin/depots/{depot}/devices",
            post(create_device::<S>),
        )
        .route(
            "/api/v1/admin/depots/{depot}/records/{record_type}/{record_id}",
            get(get_record::<S>).put(put_record::<S>),
        )
        .merge(crate::planning::routes::<S>())
        .route("/api/v1/enroll", post(enroll::<S>))
        .route("/api/v1/sync/push", post(push::<S>))
        .route("/api/v1/sync/pull", get(pull::<S>))
        .layer(DefaultBodyLimit::max(wire::MAX_WIRE_BYTES))
        .with_state(state)
}

/// Loads a rustls acceptor from PEM files (certificate chain, private key).
pub fn tls_acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<tokio_rustls::TlsAcceptor, String> {
    use tokio_rustls::rustls;
    let read = |p: &std::path::Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let certs: Vec<_> = rustls_pemfile::certs(&mut &read(cert)?[..])
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: not a PEM certificate chain: {e}", cert.display()))?;
    let key_der = rustls_pemfile::private_key(&mut &read(key)?[..])
        .map_err(|e| format!("{}: {e}", key.display()))?
        .ok_or_else(|| format!("{}: no private key in the PEM file", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| format!("TLS certificate/key rejected: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Serves `app` over TLS on an already-bound listener until `cancel` fires.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    app: Router,
    cancel: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto::Builder;
    use hyper_util::service::TowerToHyperService;
    loop {
        let (tcp, peer) = tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (acceptor, app, cancel) = (acceptor.clone(), app.clone(), cancel.clone());
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(
                std::time::Duration::from_secs(10),
                acceptor.accept(tcp),
            )
            .await
            {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let service = TowerToHyperService::new(app);
            let builder = Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection(TokioIo::new(tls), service);
            tokio::pin!(conn);
            // Stopping the server also ends its open (keep-alive) connections: requests
            // in flight finish, idle connections close.
            let result = tokio::select! {
                r = conn.as_mut() => r,
                _ = cancel.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}
