//! Charging master data the cloud defines and depots pull (admin): a depot's OCPP charge
//! points (connectors and power; each one's password is a device of kind `charger`,
//! `POST .../devices`) and its electricity tariff (time-of-use bands by hour and day
//! type, public holidays), checked with the same rules the depot applies.

use axum::extract::{Path, State};
use axum::routing::put;
use axum::{Json, Router};
use garasi_sync_protocol::ids::valid_id;
use garasi_sync_protocol::record::FieldValue;
use garasi_sync_protocol::records::{self, charger};
use garasi_sync_protocol::tariff::Tariff;
use serde::Deserialize;

use super::records::{edit_record, record_json};
use super::{Admin, ApiError, AppState, KnownDepot};
use crate::store::CloudStore;

pub(super) fn routes<S: CloudStore + 'static>() -> Router<AppState<S>> {
    Router::new()
        .route(
            "/api/v1/admin/depots/{depot}/chargers/{id}",
            put(put_charger::<S>),
        )
        .route("/api/v1/admin/depots/{depot}/tariff", put(put_tariff::<S>))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChargerBody {
    connectors: i64,
    max_power_kw: f64,
}

async fn put_charger<S: CloudStore>(
    State(s): State<AppState<S>>,
    Path((depot, id)): Path<(String, String)>,
    _: Admin,
    body: Result<Json<ChargerBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Json(c) =
        body.map_err(|e| ApiError::bad_request(format!("invalid charger: {}", e.body_text())))?;
    if !valid_id(&id) {
        return Err(ApiError::bad_request(format!(
            "charger id {id:?} is invalid: use its charge box id, 1-64 letters, digits, '-' or '_'"
        )));
    }
    let max_w = (c.max_power_kw * 1000.0).round();
    let max_w = if max_w.is_finite() { max_w as i64 } else { -1 };
    if !charger::valid(c.connectors, max_w) {
        return Err(ApiError::bad_request(
            "a charger has 1-16 connectors and a max_power_kw of 1 to 1000",
        ));
    }
    KnownDepot::check(&*s.store, &depot).await?;
    let fields = [
        ("connectors", FieldValue::Int(c.connectors)),
        ("max_power_w", FieldValue::Int(max_w)),
    ];
    let (record, fresh) = edit_record(&s, &depot, records::CHARGER, &id, &fields).await?;
    record_json(records::CHARGER, &id, &record, fresh)
}

async fn put_tariff<S: CloudStore>(
    State(s): State<AppState<S>>,
    Path(depot): Path<String>,
    _: Admin,
    body: Result<Json<Tariff>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Json(t) =
        body.map_err(|e| ApiError::bad_request(format!("invalid tariff: {}", e.body_text())))?;
    let problems = t.problems();
    if !problems.is_empty() {
        return Err(ApiError::bad_request(format!(
            "the tariff cannot be used: {}",
            problems.join("; ")
        )));
    }
    KnownDepot::check(&*s.store, &depot).await?;
    let json = serde_json::to_string(&t).map_err(|e| ApiError::internal(e.to_string()))?;
    let fields = [(records::TARIFF_V1_FIELD, FieldValue::Text(json))];
    let id = records::TARIFF_ID;
    let (record, fresh) = edit_record(&s, &depot, records::TARIFF, id, &fields).await?;
    record_json(records::TARIFF, id, &record, fresh)
}
