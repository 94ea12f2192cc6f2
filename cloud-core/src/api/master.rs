//! Master data the cloud defines and depots pull (admin): depots (create one, list them
//! with their sync state), a depot's vehicles and its device credentials.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{post, put};
use axum::{Json, Router};
use garasi_sync_protocol::ids::valid_id;
use garasi_sync_protocol::record::FieldValue;
use garasi_sync_protocol::records;
use serde::Deserialize;

use super::records::{edit_record, record_json};
use super::{Admin, ApiError, AppState, KnownDepot};
use crate::store::{CloudStore, ReadModel};

pub(super) fn routes<S: CloudStore + 'static>() -> Router<AppState<S>> {
    Router::new()
        .route(
            "/api/v1/admin/depots",
            post(create_depot::<S>).get(list_depots::<S>),
        )
        .route(
            "/api/v1/admin/depots/{depot}/vehicles/{id}",
            put(put_vehicle::<S>),
        )
        .route(
            "/api/v1/admin/depots/{depot}/devices",
            post(create_device::<S>),
        )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewDepotBody {
    name: String,
    /// Seconds its enrolment token works [default: the cloud's --enrolment-ttl-hours].
    enrolment_ttl_s: Option<u64>,
}

async fn create_depot<S: CloudStore>(
    State(s): State<AppState<S>>,
    _: Admin,
    body: Result<Json<NewDepotBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(b) =
        body.map_err(|e| ApiError::bad_request(format!("invalid JSON body: {}", e.body_text())))?;
    let expires_ms = super::credentials::expiry(&s, b.enrolment_ttl_s)?;
    let d = s.store.create_depot_until(&b.name, expires_ms).await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({
            "id": d.id,
            "enrolment_token": d.enrolment_token,
            "enrolment_expires_ms": d.expires_ms,
        })),
    )
        .into_response())
}

/// Ops view: every depot with its last sync, the backlog it last reported and its lag
/// (how long its oldest unsent operational change has waited; 0 when it has none).
async fn list_depots<S: ReadModel>(
    State(s): State<AppState<S>>,
    _: Admin,
) -> Result<Json<serde_json::Value>, ApiError> {
    // Both reads at once, on two read connections: with the cores saturated each round
    // trip waits for one, and these do not depend on each other.
    let (depots, fresh) = tokio::join!(s.store.depots(), s.materialiser.freshness(None));
    let (depots, fresh) = (depots?, fresh?);
    let now = crate::store::now_ms();
    let depots: Vec<serde_json::Value> = depots
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
    Ok(Json(
        serde_json::json!({ "depots": depots, "materialiser": fresh }),
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

async fn put_vehicle<S: CloudStore>(
    State(s): State<AppState<S>>,
    Path((depot, id)): Path<(String, String)>,
    _: Admin,
    body: Result<Json<VehicleBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Json(v) =
        body.map_err(|e| ApiError::bad_request(format!("invalid vehicle: {}", e.body_text())))?;
    if !valid_id(&id) {
        return Err(ApiError::bad_request(format!(
            "vehicle id {id:?} is invalid: use 1-64 letters, digits, '-' or '_'"
        )));
    }
    if v.label.trim().is_empty() || !(v.battery_kwh > 0.0 && v.battery_kwh < 10_000.0) {
        return Err(ApiError::bad_request(
            "a vehicle needs a label and a battery_kwh between 0 and 10000",
        ));
    }
    if v.kwh_per_km
        .is_some_and(|k| !garasi_sync_protocol::records::vehicle::valid_kwh_per_km(k))
    {
        return Err(ApiError::bad_request("kwh_per_km must be between 0 and 20"));
    }
    if v.vehicle_type.as_deref().is_some_and(|t| !valid_id(t)) {
        return Err(ApiError::bad_request(
            "vehicle_type must be 1-64 letters, digits, '-' or '_'",
        ));
    }
    KnownDepot::check(&*s.store, &depot).await?;
    let text_or_null = |t: Option<String>| t.map(FieldValue::Text).unwrap_or(FieldValue::Null);
    let fields = [
        ("label", FieldValue::Text(v.label)),
        ("plate", text_or_null(v.plate)),
        ("battery_kwh", FieldValue::Float(v.battery_kwh)),
        (
            "kwh_per_km",
            v.kwh_per_km
                .map(FieldValue::Float)
                .unwrap_or(FieldValue::Null),
        ),
        ("vehicle_type", text_or_null(v.vehicle_type)),
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
    Path(depot): Path<String>,
    _: Admin,
    body: Result<Json<DeviceBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(d) =
        body.map_err(|e| ApiError::bad_request(format!("invalid device: {}", e.body_text())))?;
    // A bus, an OCPP charge point (its Basic-auth password) or a panel meter.
    if !valid_id(&d.id) || !["vehicle", "charger", "meter"].contains(&d.kind.as_str()) {
        return Err(ApiError::bad_request(
            "a device needs an id of 1-64 letters, digits, '-' or '_' and a kind: \"vehicle\", \"charger\" or \"meter\"",
        ));
    }
    KnownDepot::check(&*s.store, &depot).await?;
    // A device of another kind under this id would take over its login (a charger's
    // id typed where a bus's was meant): refused. Same kind: a new password, as before.
    if let (Some(existing), _) =
        super::records::load_record(&s, &depot, records::DEVICE, &d.id).await?
    {
        let kind = existing.visible().ok().and_then(|f| match f.get("kind") {
            Some(FieldValue::Text(k)) => Some(k.clone()),
            _ => None,
        });
        if let Some(kind) = kind.filter(|k| *k != d.kind) {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!(
                    "device {} is already a {kind}: choose another id (a device keeps its kind)",
                    d.id
                ),
            ));
        }
    }
    let password = crate::store::random_token();
    let hash = tokio::task::spawn_blocking({
        let password = password.clone();
        move || crate::store::hash_device_password(&password)
    })
    .await?
    .map_err(ApiError::internal)?;
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
