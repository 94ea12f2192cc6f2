//! fleet's HTTP routes: the vehicle registry and operational status.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

use super::service::{
    with_live, FleetApi, FleetError, StatusBody, Vehicle, VehicleStatus, VehicleView,
};
use super::status::get_status;
use crate::http::ApiError;
use crate::modules::framework::Services;
use crate::store::Store;

/// One HTTP mapping for fleet's errors, wherever a route meets them (dispatch's too):
/// an unknown vehicle is 404, what the request got wrong 400, the store 500.
impl From<FleetError> for ApiError {
    fn from(e: FleetError) -> Self {
        match e {
            FleetError::UnknownVehicle(_) => ApiError::not_found(e.to_string()),
            FleetError::Sql(_) | FleetError::Store(_) => ApiError::internal(e),
            FleetError::BadId(_)
            | FleetError::BadCapacity(_)
            | FleetError::EmptyLabel
            | FleetError::BadConsumption(_)
            | FleetError::BadType(_)
            | FleetError::BadStatus(_)
            | FleetError::NoSetter
            | FleetError::Record(_) => ApiError::bad_request(e.to_string()),
        }
    }
}

#[derive(Clone)]
struct AppState {
    api: Arc<FleetApi>,
    services: Services,
    store: Store,
}

async fn get_vehicle_status(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<VehicleStatus>, ApiError> {
    let id2 = id.clone();
    match s.store.read(move |c| get_status(c, &id2)).await? {
        Some(v) => Ok(Json(v)),
        None => Err(ApiError::not_found(format!(
            "vehicle {id} has no operational status yet: PUT one"
        ))),
    }
}

async fn put_vehicle_status(
    State(s): State<AppState>,
    Path(id): Path<String>,
    body: Result<Json<StatusBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<VehicleStatus>, ApiError> {
    let Json(b) = body.map_err(ApiError::from_json_rejection)?;
    Ok(Json(s.api.set_status(&id, b).await?))
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
    body: Result<Json<VehicleBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Vehicle>, ApiError> {
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
pub(super) fn routes(api: Arc<FleetApi>, services: Services, store: Store) -> Router {
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
        })
}
