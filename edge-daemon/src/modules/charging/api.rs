//! charging's HTTP routes for people (the OCPP door for chargers is `ocpp/door.rs`).
//! Every route needs a signed-in dispatcher or depot manager; a request to a charger is
//! checked against the official schema of its action before it is sent, and logged with
//! the person who sent it.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::service::{CallFailure, ChargingApi};
use crate::http::ApiError;
use crate::modules::auth::service::{valid_id, People};

pub(super) const PEOPLE: &[&str] = &["dispatcher", "depot_manager"];
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

async fn chargers(State(s): State<AppState>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    s.people.require(&headers, PEOPLE).await?;
    let chargers = s.api.chargers().await.map_err(ApiError::internal)?;
    let connectors = s.api.connectors().await.map_err(ApiError::internal)?;
    let alarms = s
        .api
        .alarms(crate::util::now_ms() - 86_400_000)
        .await
        .map_err(ApiError::internal)?;
    let plan = s.api.board.plan.read().clone();
    let list: Vec<Value> = chargers
        .into_iter()
        .map(|c| {
            let own: Vec<_> = connectors.iter().filter(|k| k.charger_id == c.id).collect();
            json!({"charger": c, "online": s.api.online(&c.id), "connectors": own})
        })
        .collect();
    let site_cap_w = s.api.cfg.site_cap_kw.map(|kw| (kw * 1000.0) as i64);
    Ok(Json(
        json!({ "chargers": list, "alarms": alarms, "plan": plan,
                    "plan_made_ms": *s.api.board.made_ms.read(), "site_cap_w": site_cap_w }),
    ))
}

#[derive(Deserialize)]
struct Since {
    since_ms: Option<i64>,
}

async fn sessions(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<Since>,
) -> Result<Json<Value>, ApiError> {
    s.people.require(&headers, PEOPLE).await?;
    let since = q
        .since_ms
        .unwrap_or_else(|| crate::util::now_ms() - 86_400_000);
    let list = s.api.sessions(since).await.map_err(ApiError::internal)?;
    Ok(Json(json!({ "sessions": list })))
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
    if MANAGER_ONLY.contains(&action) && !who.has_role("depot_manager") {
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
    let answer = s.api.call(&id, action, payload).await?;
    if action == "ClearChargingProfile" {
        // Its fallback profile may be gone: the next planning round sends it again.
        s.api.board.forget(&id);
    }
    Ok(Json(answer))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TagBody {
    vehicle: String,
}

/// Binds a charging card (id tag) to a bus.
async fn put_tag(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(tag): Path<String>,
    body: Result<Json<TagBody>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let who = s.people.require(&headers, PEOPLE).await?;
    let Json(b) = body.map_err(ApiError::from_json_rejection)?;
    // An idTag is CiString20 in OCPP 1.6.
    if tag.is_empty() || tag.len() > 20 || tag.chars().any(|c| c.is_control()) {
        return Err(ApiError::bad_request("an id tag is 1-20 characters"));
    }
    if !valid_id(&b.vehicle) {
        return Err(ApiError::bad_request("vehicle id is invalid"));
    }
    s.api
        .bind_tag(&tag, &b.vehicle, &who.id)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(
        json!({"id_tag": tag, "vehicle": b.vehicle, "set_by": who.id}),
    ))
}

pub(super) fn routes(api: Arc<ChargingApi>, people: Arc<People>) -> Router {
    Router::new()
        .route("/api/v1/charging/chargers", get(chargers))
        .route("/api/v1/charging/sessions", get(sessions))
        .route("/api/v1/charging/chargers/{id}/ocpp/{action}", post(call))
        .route("/api/v1/charging/tags/{tag}", put(put_tag))
        .merge(super::energy_api::routes(api.clone(), people.clone()))
        .with_state(AppState { api, people })
}
