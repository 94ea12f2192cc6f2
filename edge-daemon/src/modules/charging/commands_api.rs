//! charging's route for people's requests to chargers: one OCPP 1.6 request
//! (RemoteStopTransaction, SetChargingProfile, ...) to a connected charger, checked
//! against the official schema before it leaves, sent by a signed-in dispatcher or
//! depot manager (what can lock a charger out, cut a charge or take away the edge's own
//! profiles needs a depot manager), recorded with the person who sent it and how it
//! ended (`requests.rs`; listed at `/api/v1/charging/requests`).

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::Value;

use super::api::PEOPLE;
use super::service::{CallFailure, ChargingApi};
use crate::http::ApiError;
use crate::modules::auth::service::{valid_id, People};

/// Requests only a depot manager may send.
const MANAGER_ONLY: &[&str] = &[
    "ChangeAvailability",
    "ChangeConfiguration",
    "ClearChargingProfile",
    "Reset",
    "UnlockConnector",
];
/// Configuration keys never changed through the API (OCPP 1.6 security whitepaper).
const PROTECTED_KEYS: &[&str] = &["AuthorizationKey", "SecurityProfile"];

#[derive(Clone)]
struct AppState {
    api: Arc<ChargingApi>,
    people: Arc<People>,
}

impl From<CallFailure> for ApiError {
    fn from(e: CallFailure) -> Self {
        let status = match e {
            CallFailure::Offline(_) => StatusCode::CONFLICT,
            CallFailure::Busy(_) => StatusCode::TOO_MANY_REQUESTS,
            CallFailure::Timeout(_) | CallFailure::Closed => StatusCode::GATEWAY_TIMEOUT,
            CallFailure::CallError { .. } | CallFailure::BadAnswer(_) => StatusCode::BAD_GATEWAY,
        };
        ApiError::new(status, e.to_string())
    }
}

/// Sends one OCPP request (`RemoteStopTransaction`, `SetChargingProfile`, ...) to a
/// connected charger and returns its answer.
async fn call(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let who = s.people.require(&headers, PEOPLE).await?;
    let Json(payload) = body.map_err(ApiError::from_json_rejection)?;
    if !valid_id(&id) {
        return Err(ApiError::bad_request("charger id is invalid"));
    }
    let Some((action, check)) = s.api.schemas.check_outgoing(&action, &payload) else {
        return Err(ApiError::bad_request(
            "unknown action: use one of RemoteStartTransaction, RemoteStopTransaction, \
             SetChargingProfile, ClearChargingProfile, GetCompositeSchedule, ChangeAvailability, \
             ChangeConfiguration, GetConfiguration, TriggerMessage, Reset, UnlockConnector, DataTransfer",
        ));
    };
    check.map_err(|v| ApiError::bad_request(format!("{action}: {}", v.description)))?;
    // What can lock a charger out, cut a charge or take the site's safety net away is a
    // depot manager's call.
    // The profiles the edge itself keeps on a charger (its safety net and the plan's) are
    // a manager's too.
    let own_profile = action == "SetChargingProfile" && {
        let p = &payload["csChargingProfiles"];
        matches!(
            p["chargingProfilePurpose"].as_str(),
            Some("ChargePointMaxProfile" | "TxDefaultProfile")
        ) || p["chargingProfileId"]
            .as_i64()
            .is_some_and(|i| matches!(i, 1 | 2 | 100..=116))
    };
    if (MANAGER_ONLY.contains(&action) || own_profile) && !who.has_role("depot_manager") {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("{action} needs a depot manager"),
        ));
    }
    if action == "ChangeConfiguration"
        && payload["key"]
            .as_str()
            .is_some_and(|k| PROTECTED_KEYS.iter().any(|p| p.eq_ignore_ascii_case(k)))
    {
        return Err(ApiError::bad_request(
            "the charger's credentials and security profile are changed with `garasi-edge charging`, not here",
        ));
    }
    tracing::info!(person = %who.id, charger = %id, action, "request sent to a charger");
    let answer = s.api.call(&id, action, payload).await;
    let outcome = match &answer {
        Ok(a) => a["status"].as_str().unwrap_or("answered").to_string(),
        Err(e) => e.to_string(),
    };
    let request = super::requests::Request {
        ts_ms: crate::util::now_ms(),
        person: who.id.clone(),
        charger_id: id.clone(),
        action: action.to_string(),
        outcome,
    };
    s.api
        .store
        .write(move |c| super::requests::record(c, &request))
        .await
        .map_err(ApiError::internal)?;
    let answer = answer?;
    if matches!(action, "ClearChargingProfile" | "SetChargingProfile") {
        // Its profiles may have changed: the next planning round sends the edge's again.
        s.api.board.forget(&id);
    }
    Ok(Json(answer))
}

/// The newest requests people sent to chargers, with who and how they ended.
async fn requests(State(s): State<AppState>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    s.people.require(&headers, PEOPLE).await?;
    let list = s
        .api
        .store
        .read(|c| super::requests::newest(c, 200))
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(serde_json::json!({ "requests": list })))
}

pub(super) fn routes<S: Clone + Send + Sync + 'static>(
    api: Arc<ChargingApi>,
    people: Arc<People>,
) -> Router<S> {
    Router::new()
        .route("/api/v1/charging/chargers/{id}/ocpp/{action}", post(call))
        .route("/api/v1/charging/requests", get(requests))
        .with_state(AppState { api, people })
}
