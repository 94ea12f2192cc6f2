//! The planning routes (admin): upload a GTFS timetable and follow its import, give a
//! depot a plan (timetable, routes, rolling window) which is published at once as master
//! data, define the depot's people with their offline credentials, and read back a
//! depot's day as the depot recorded it (blocks, assignments, sign-ons, events). The
//! importing and publishing themselves are `timetable`'s.

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use garasi_sync_protocol::people;
use garasi_sync_protocol::record::FieldValue;
use garasi_sync_protocol::records;
use serde::Deserialize;

use super::{body, Admin, ApiError, AppState, KnownDepot};
use crate::store::{CloudStore, ReadModel};
use crate::timetable::{self, ImportZip, Plan};

pub(super) fn routes<S: CloudStore + 'static>() -> Router<AppState<S>> {
    Router::new()
        .route(
            "/api/v1/admin/timetables",
            post(upload::<S>).get(list_timetables::<S>),
        )
        .route("/api/v1/admin/imports/{id}", get(get_import::<S>))
        .route("/api/v1/admin/depots/{depot}/plan", put(put_plan::<S>))
        .route(
            "/api/v1/admin/depots/{depot}/people/{id}",
            put(put_person::<S>),
        )
        .route("/api/v1/admin/depots/{depot}/days/{date}", get(day::<S>))
}

#[derive(Deserialize)]
struct UploadQuery {
    name: Option<String>,
    /// Answer when the import has finished instead of at once.
    #[serde(default)]
    wait: bool,
}

/// `POST /api/v1/admin/timetables?name=..`: the body is the GTFS zip, streamed to a
/// temporary file (one upload at a time). The import runs in the background, after the
/// imports before it; the answer names where to follow it.
async fn upload<S: CloudStore + 'static>(
    State(s): State<AppState<S>>,
    Query(q): Query<UploadQuery>,
    _: Admin,
    body: Body,
) -> Result<Response, ApiError> {
    let name = q.name.unwrap_or_else(|| "timetable".into());
    if name.trim().is_empty() || name.len() > 200 {
        return Err(ApiError::bad_request("name must be 1-200 characters"));
    }
    let busy = |what: &str| {
        s.metrics.refused("busy");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{what}: retry when an import has finished (GET /api/v1/admin/imports/{{id}})"),
        )
    };
    let Some(slot) = s.timetables.reserve() else {
        return Err(busy(&format!(
            "{} imports are already waiting or running",
            timetable::MAX_QUEUED_IMPORTS
        )));
    };
    let receiving =
        tokio::time::timeout(s.limits.upload_timeout, s.uploads.clone().acquire_owned())
            .await
            .map_err(|_| busy("another upload is still being received"))?
            .map_err(|_| busy("shutting down"))?;
    let (zip, bytes) =
        body::read_to_file(&s, body, s.limits.upload_bytes, s.limits.upload_timeout).await?;
    drop(receiving);
    if bytes == 0 {
        return Err(ApiError::bad_request(
            "the request body must be the GTFS zip (Content-Type: application/zip)",
        ));
    }
    let (id, task) =
        s.timetables
            .clone()
            .run_import(s.store.clone(), name, ImportZip::Temp(zip), slot);
    if q.wait {
        let _ = task.await;
        return Ok(import_view(&s, id)?.into_response());
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({
            "import": id,
            "status": format!("/api/v1/admin/imports/{id}"),
        })),
    )
        .into_response())
}

fn import_view<S>(s: &AppState<S>, id: u64) -> Result<Json<serde_json::Value>, ApiError> {
    s.timetables.import_status(id).map(Json).ok_or_else(|| {
        ApiError::not_found(format!("no import {id} (this process keeps the last 100)"))
    })
}

async fn get_import<S: Send + Sync>(
    State(s): State<AppState<S>>,
    Path(id): Path<u64>,
    _: Admin,
) -> Result<Json<serde_json::Value>, ApiError> {
    import_view(&s, id)
}

async fn list_timetables<S: ReadModel>(
    State(s): State<AppState<S>>,
    _: Admin,
) -> Result<Json<serde_json::Value>, ApiError> {
    let list: Vec<serde_json::Value> = s
        .store
        .timetables()
        .await?
        .into_iter()
        .map(|t| {
            serde_json::json!({
                "id": t.id, "name": t.name, "created_ms": t.created_ms, "bytes": t.bytes,
                "report": serde_json::from_str::<serde_json::Value>(&t.report_json).unwrap_or_default(),
            })
        })
        .collect();
    Ok(Json(serde_json::json!({ "timetables": list })))
}

/// `PUT /api/v1/admin/depots/{d}/plan`: checked against the timetable, stored, and
/// published at once (the background publisher keeps the window rolling).
async fn put_plan<S: CloudStore>(
    State(s): State<AppState<S>>,
    Path(depot): Path<String>,
    _: Admin,
    body: Result<Json<Plan>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Json(plan) =
        body.map_err(|e| ApiError::bad_request(format!("invalid plan: {}", e.body_text())))?;
    KnownDepot::check(&*s.store, &depot).await?;
    let feed = s.timetables.feed(&*s.store, plan.timetable).await?;
    timetable::check_plan(&plan, &feed)?;
    let json = serde_json::to_string(&plan).map_err(|e| ApiError::internal(e.to_string()))?;
    s.store.set_depot_plan(&depot, &json).await?;
    let published =
        timetable::publish(&*s.store, &s.materialiser, &s.timetables, &depot, &plan).await?;
    Ok(Json(
        serde_json::json!({ "depot": depot, "plan": plan, "published": published }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PersonBody {
    name: String,
    roles: Vec<String>,
    /// Set or replace the password (dispatchers, managers). Never stored in clear.
    password: Option<String>,
    /// Set or replace the PIN (drivers' tablets, with or without a badge).
    pin: Option<String>,
    /// Set or replace the badge number.
    badge: Option<String>,
    #[serde(default)]
    disabled: bool,
}

/// argon2id hash of a secret, off the async threads (hashing is deliberately slow).
async fn hash_secret(secret: Option<String>) -> Result<Option<String>, ApiError> {
    match secret {
        None => Ok(None),
        Some(sec) => tokio::task::spawn_blocking(move || people::hash_secret(&sec))
            .await?
            .map(Some)
            .map_err(ApiError::internal),
    }
}

/// `PUT /api/v1/admin/depots/{d}/people/{id}`: a person with depot roles and the
/// credentials that work at the depot offline: argon2id hashes of the password and PIN
/// and the digest of the badge (never the values themselves).
async fn put_person<S: CloudStore>(
    State(s): State<AppState<S>>,
    Path((depot, id)): Path<(String, String)>,
    _: Admin,
    body: Result<Json<PersonBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Json(p) =
        body.map_err(|e| ApiError::bad_request(format!("invalid person: {}", e.body_text())))?;
    let problems = people::problems(
        &id,
        &p.name,
        &p.roles,
        p.password.as_deref(),
        p.pin.as_deref(),
        p.badge.as_deref(),
    );
    if !problems.is_empty() {
        return Err(ApiError::bad_request(problems.join("; ")));
    }
    KnownDepot::check(&*s.store, &depot).await?;
    let password_hash = hash_secret(p.password).await?;
    let pin_hash = hash_secret(p.pin).await?;
    let mut fields = vec![
        ("name", FieldValue::Text(p.name.trim().to_string())),
        ("roles", FieldValue::Text(p.roles.join(","))),
        ("disabled", FieldValue::Bool(p.disabled)),
    ];
    if let Some(h) = password_hash {
        fields.push(("password_hash", FieldValue::Text(h)));
    }
    if let Some(h) = pin_hash {
        fields.push(("pin_hash", FieldValue::Text(h)));
    }
    if let Some(b) = &p.badge {
        fields.push(("badge_digest", FieldValue::Text(people::badge_digest(b))));
    }
    let edit = timetable::Edit {
        record_type: timetable::PERSON_RECORD,
        record_id: id.clone(),
        fields,
    };
    timetable::apply_edits(&*s.store, &s.materialiser, &depot, &[edit]).await?;
    Ok(Json(serde_json::json!({
        "id": id,
        "roles": p.roles,
        "disabled": p.disabled,
    })))
}

/// `GET /api/v1/admin/depots/{d}/days/{date}`: the depot's day as it synced up: each
/// block of the date with its assignment, and the day's sign-ons and events.
async fn day<S: CloudStore>(
    State(s): State<AppState<S>>,
    Path((depot, date)): Path<(String, String)>,
    _: Admin,
) -> Result<Json<serde_json::Value>, ApiError> {
    if date.parse::<jiff::civil::Date>().is_err() {
        return Err(ApiError::bad_request(format!(
            "date {date:?} is not a date: use YYYY-MM-DD"
        )));
    }
    KnownDepot::check(&*s.store, &depot).await?;
    // Up to every stored change, without waiting for the materialiser (it used to
    // fold every depot's backlog first, which a reconnect storm made long).
    let mut up_to_date = true;
    let mut of_day =
        async |record_type: &str| -> Result<Vec<(String, serde_json::Value)>, ApiError> {
            let list = super::record_list::list_up_to_date(&s, &depot, record_type).await?;
            up_to_date &= list.up_to_date;
            Ok(list
                .records
                .into_iter()
                .filter(|(_, v)| v["service_date"] == date.as_str())
                .collect())
        };
    let blocks = of_day(timetable::BLOCK_RECORD).await?;
    let assignments: std::collections::HashMap<String, serde_json::Value> =
        of_day(records::ASSIGNMENT).await?.into_iter().collect();
    let signons = of_day(records::SIGNON).await?;
    let mut events = of_day(records::DISPATCH_EVENT).await?;
    events.sort_by_key(|(_, v)| v["at_ms"].as_i64().unwrap_or(0));
    let blocks: Vec<serde_json::Value> = blocks
        .into_iter()
        .map(|(id, mut b)| {
            if let Some(obj) = b.as_object_mut() {
                obj.remove("trips");
            }
            serde_json::json!({
                "record_id": id,
                "block": b,
                "assignment": assignments.get(&id),
            })
        })
        .collect();
    let pack = |v: Vec<(String, serde_json::Value)>| -> Vec<serde_json::Value> {
        v.into_iter()
            .map(|(id, f)| serde_json::json!({ "record_id": id, "fields": f }))
            .collect()
    };
    Ok(Json(serde_json::json!({
        "depot": depot,
        "date": date,
        "blocks": blocks,
        "signons": pack(signons),
        "events": pack(events),
        "up_to_date": up_to_date,
    })))
}
