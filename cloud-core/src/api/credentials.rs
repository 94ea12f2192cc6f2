//! Rotating and revoking credentials (admin). A depot's secret: a new enrolment token
//! (expiring; it replaces any unused one) that the depot trades for a new secret, the
//! old one working until then (`garasi-edge enroll` with the new token); or revoked at
//! once with any unused token (a lost box). A device's password: disabled or enabled,
//! or replaced by a new one shown once (the depot applies both on its next pull: the
//! edge refuses disabled devices). The admin token: replaced by a new random one,
//! written to the token file (0600) and in force at once.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post, put};
use axum::{Json, Router};
use garasi_sync_protocol::ids::valid_id;
use garasi_sync_protocol::record::FieldValue;
use garasi_sync_protocol::records;
use serde::Deserialize;

use super::records::{edit_record, load_record};
use super::{Admin, ApiError, AppState, KnownDepot};
use crate::admin_token::AdminTokenError;
use crate::store::CloudStore;

/// Longest enrolment token lifetime a request may ask for.
pub(super) const MAX_ENROLMENT_TTL_S: u64 = 30 * 24 * 3600;

pub(super) fn routes<S: CloudStore + 'static>() -> Router<AppState<S>> {
    Router::new()
        .route(
            "/api/v1/admin/depots/{depot}/enrolment-token",
            post(new_enrolment_token::<S>),
        )
        .route(
            "/api/v1/admin/depots/{depot}/secret",
            delete(revoke_depot::<S>),
        )
        .route(
            "/api/v1/admin/depots/{depot}/devices/{id}",
            put(put_device::<S>),
        )
        .route(
            "/api/v1/admin/depots/{depot}/devices/{id}/password",
            post(rotate_device::<S>),
        )
        .route("/api/v1/admin/admin-token", post(rotate_admin::<S>))
}

/// When a token issued now with `ttl_s` (or the configured default) stops working.
pub(super) fn expiry<S>(s: &AppState<S>, ttl_s: Option<u64>) -> Result<i64, ApiError> {
    let ttl = ttl_s.unwrap_or(s.limits.enrolment_ttl.as_secs());
    if ttl == 0 || ttl > MAX_ENROLMENT_TTL_S {
        return Err(ApiError::bad_request(format!(
            "enrolment token lifetime must be 1 to {MAX_ENROLMENT_TTL_S} seconds"
        )));
    }
    Ok(crate::store::now_ms() + ttl as i64 * 1000)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TokenBody {
    /// Seconds the token works [default: the cloud's --enrolment-ttl-hours].
    ttl_s: Option<u64>,
}

async fn new_enrolment_token<S: CloudStore>(
    State(s): State<AppState<S>>,
    _: Admin,
    KnownDepot(depot): KnownDepot,
    body: Option<Json<TokenBody>>,
) -> Result<Response, ApiError> {
    let Json(b) = body.unwrap_or_default();
    let expires_ms = expiry(&s, b.ttl_s)?;
    let token = s.store.issue_enrolment_token(&depot, expires_ms).await?;
    tracing::info!(depot = %depot, expires_ms, "enrolment token issued");
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "depot": depot, "enrolment_token": token, "expires_ms": expires_ms })),
    )
        .into_response())
}

async fn revoke_depot<S: CloudStore>(
    State(s): State<AppState<S>>,
    _: Admin,
    KnownDepot(depot): KnownDepot,
) -> Result<Json<serde_json::Value>, ApiError> {
    s.store.revoke_depot(&depot).await?;
    tracing::warn!(depot = %depot, "depot secret and enrolment token revoked");
    Ok(Json(serde_json::json!({ "depot": depot, "revoked": true })))
}

/// The device record, which must exist (404 otherwise).
async fn existing_device<S: CloudStore>(
    s: &AppState<S>,
    depot: &str,
    id: &str,
) -> Result<(), ApiError> {
    if !valid_id(id) {
        return Err(ApiError::bad_request(format!(
            "device id {id:?} is invalid: use 1-64 letters, digits, '-' or '_'"
        )));
    }
    KnownDepot::check(&*s.store, depot).await?;
    match load_record(s, depot, records::DEVICE, id).await? {
        (Some(_), _) => Ok(()),
        (None, _) => Err(ApiError::not_found(format!(
            "depot {depot} has no device {id}: create it with POST /api/v1/admin/depots/{depot}/devices"
        ))),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceState {
    disabled: bool,
}

/// `PUT .../devices/{id}` `{"disabled": true}`: the depot refuses the device from its
/// next pull on (and accepts it again after `false`).
async fn put_device<S: CloudStore>(
    State(s): State<AppState<S>>,
    Path((depot, id)): Path<(String, String)>,
    _: Admin,
    body: Result<Json<DeviceState>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Json(b) =
        body.map_err(|e| ApiError::bad_request(format!("invalid device: {}", e.body_text())))?;
    existing_device(&s, &depot, &id).await?;
    edit_record(
        &s,
        &depot,
        records::DEVICE,
        &id,
        &[("disabled", FieldValue::Bool(b.disabled))],
    )
    .await?;
    tracing::info!(depot = %depot, device = %id, disabled = b.disabled, "device credential changed");
    Ok(Json(
        serde_json::json!({ "id": id, "disabled": b.disabled }),
    ))
}

/// `POST .../devices/{id}/password`: a new password, shown once; the old one stops
/// working at the depot on its next pull.
async fn rotate_device<S: CloudStore>(
    State(s): State<AppState<S>>,
    Path((depot, id)): Path<(String, String)>,
    _: Admin,
) -> Result<Json<serde_json::Value>, ApiError> {
    existing_device(&s, &depot, &id).await?;
    let password = crate::store::random_token();
    let hash = tokio::task::spawn_blocking({
        let password = password.clone();
        move || crate::store::hash_device_password(&password)
    })
    .await?
    .map_err(ApiError::internal)?;
    edit_record(
        &s,
        &depot,
        records::DEVICE,
        &id,
        &[("password_hash", FieldValue::Text(hash))],
    )
    .await?;
    tracing::info!(depot = %depot, device = %id, "device password rotated");
    Ok(Json(serde_json::json!({ "id": id, "password": password })))
}

/// `POST /api/v1/admin/admin-token`: a new admin token, shown once; the one used for
/// this request stops working.
async fn rotate_admin<S: Send + Sync>(
    State(s): State<AppState<S>>,
    _: Admin,
) -> Result<Json<serde_json::Value>, ApiError> {
    match s.admin_token.rotate() {
        Ok(token) => {
            tracing::warn!("admin token rotated through the API");
            Ok(Json(serde_json::json!({ "token": token })))
        }
        Err(e @ AdminTokenError::NoFile) => Err(ApiError::new(StatusCode::CONFLICT, e.to_string())),
        Err(e) => {
            tracing::error!(error = %e, "rotating the admin token failed");
            Err(ApiError::internal(
                "the new admin token could not be written: see the cloud's log; the old one still works",
            ))
        }
    }
}
