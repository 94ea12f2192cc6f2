//! fleet's HTTP routes: the vehicle registry and operational status.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

use super::service::{
    with_live, FleetApi, FleetError, StatusBody, Vehicle, VehicleStatus, VehicleView,
};
use super::status::get_status;
use crate::http::ApiError;
use crate::modules::auth::service::People;
use crate::modules::framework::Services;
use crate::store::Store;

/// One HTTP mapping for fleet's errors, wherever a route meets them (dispatch's too):
/// an unknown vehicle is 404, what the request got wrong 400, the store 500.
impl From<FleetError> for ApiError {
    fn from(e: FleetError) -> Self {
        match e {
            FleetError::UnknownVehicle(_) => ApiError::not_found(e.to_string()),
            // A status document that no longer loads is the node's fault, not the client's.
            FleetError::Sql(_) | FleetError::Store(_) | FleetError::Record(_) => {
                ApiError::internal(e)
            }
            FleetError::BadId(_)
            | FleetError::BadCapacity(_)
            | FleetError::EmptyLabel
            | FleetError::BadText(_)
            | FleetError::BadConsumption(_)
            | FleetError::BadType(_)
            | FleetError::BadStatus(_)
            | FleetError::NoSetter => ApiError::bad_request(e.to_string()),
        }
    }
}

#[derive(Clone)]
struct AppState {
    api: Arc<FleetApi>,
    services: Services,
    store: Store,
    people: Arc<People>,
}

/// Who may change the registry (a standalone depot's vehicles).
const REGISTRARS: &[&str] = &["depot_manager", "dispatcher"];
/// Who may set a vehicle's operational status.
const STATUS_SETTERS: &[&str] = &["dispatcher", "depot_manager", "mechanic"];
/// Who sees who set a status; the wall board (no session) sees the status and note only.
const STAFF: &[&str] = &["dispatcher", "depot_manager", "mechanic", "driver"];

/// A status change as a client sends it. `set_by` is always the signed-in person; a
/// body naming someone else is refused rather than silently corrected.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusRequest {
    status: String,
    note: Option<String>,
    #[serde(default)]
    set_by: Option<String>,
}

async fn get_vehicle_status(
    State(s): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<VehicleStatus>, ApiError> {
    let staff = s.people.require(&headers, STAFF).await.is_ok();
    let id2 = id.clone();
    match s.store.read(move |c| get_status(c, &id2)).await? {
        Some(mut v) => {
            if !staff {
                v.set_by = None;
            }
            Ok(Json(v))
        }
        None => Err(ApiError::not_found(format!(
            "vehicle {id} has no operational status yet: PUT one"
        ))),
    }
}

async fn put_vehicle_status(
    State(s): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Json<StatusRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<VehicleStatus>, ApiError> {
    let who = s.people.require(&headers, STATUS_SETTERS).await?;
    let Json(b) = body.map_err(ApiError::from_json_rejection)?;
    if b.set_by.as_ref().is_some_and(|by| by != &who.id) {
        return Err(ApiError::bad_request(
            "set_by is taken from your session: leave it out",
        ));
    }
    let body = StatusBody {
        status: b.status,
        note: b.note,
        set_by: who.id,
    };
    Ok(Json(s.api.set_status(&id, body).await?))
}

async fn list(State(s): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let api = s.api.clone();
    let vehicles = tokio::task::spawn_blocking(move || api.list())
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let views = with_live(&s.services, vehicles);
    Ok(Json(serde_json::json!({ "vehicles": views })))
}

async fn get_one(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<VehicleView>, ApiError> {
    let v = s
        .api
        .get(&id)
        .ok_or_else(|| ApiError::not_found(format!("vehicle {id} is not registered")))?;
    let mut views = with_live(&s.services, vec![v]);
    views
        .pop()
        .map(Json)
        .ok_or_else(|| ApiError::internal("vehicle vanished"))
}

async fn put(
    State(s): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Json<VehicleBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Vehicle>, ApiError> {
    s.people.require(&headers, REGISTRARS).await?;
    let Json(b) = body.map_err(ApiError::from_json_rejection)?;
    let v = Vehicle {
        id,
        label: b.label,
        plate: b.plate,
        battery_kwh: b.battery_kwh,
        kwh_per_km: b.kwh_per_km,
        vehicle_type: b.vehicle_type,
    };
    s.api.upsert(v.clone()).await?;
    Ok(Json(v))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VehicleBody {
    label: String,
    plate: Option<String>,
    battery_kwh: f64,
    #[serde(default)]
    kwh_per_km: Option<f64>,
    #[serde(default)]
    vehicle_type: Option<String>,
}

/// The registry and status routes.
pub(super) fn routes(
    api: Arc<FleetApi>,
    services: Services,
    store: Store,
    people: Arc<People>,
) -> Router {
    Router::new()
        .route("/api/v1/vehicles", get(list))
        .route("/api/v1/vehicles/{id}", get(get_one).put(put))
        .route(
            "/api/v1/vehicles/{id}/status",
            get(get_vehicle_status).put(put_vehicle_status),
        )
        .with_state(AppState {
            api,
            services,
            store,
            people,
        })
}
