//! charging's HTTP routes for people (the OCPP door for chargers is `ocpp/door.rs`):
//! chargers, sessions and card bindings here, requests to chargers in
//! `commands_api.rs`, energy in `energy_api.rs`. Every route needs a signed-in
//! dispatcher or depot manager.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::service::ChargingApi;
use crate::http::ApiError;
use crate::modules::auth::service::{valid_id, People};

pub(super) const PEOPLE: &[&str] = &["dispatcher", "depot_manager"];
#[derive(Clone)]
struct AppState {
    api: Arc<ChargingApi>,
    people: Arc<People>,
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
    let cap = s.api.board.cap.read().clone();
    Ok(Json(
        json!({ "chargers": list, "alarms": alarms, "plan": plan,
                    "plan_made_ms": *s.api.board.made_ms.read(), "site_cap_w": site_cap_w,
                    "cap": cap }),
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BindBody {
    /// The transaction the dispatcher saw on the connector.
    transaction_id: i64,
    /// The bus; null unbinds.
    vehicle: Option<String>,
}

/// Binds a bus to the transaction running on a connector (the Charging page's form).
async fn put_vehicle(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path((charger, connector)): Path<(String, i64)>,
    body: Result<Json<BindBody>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let who = s.people.require(&headers, PEOPLE).await?;
    let Json(b) = body.map_err(ApiError::from_json_rejection)?;
    if !valid_id(&charger) || !(1..=64).contains(&connector) {
        return Err(ApiError::not_found("no such connector"));
    }
    if let Some(v) = &b.vehicle {
        if !valid_id(v) || !s.api.is_bus(v).await {
            return Err(ApiError::bad_request(format!(
                "{} is not a bus of this depot's fleet; choose one from the list",
                if valid_id(v) { v.as_str() } else { "that id" }
            )));
        }
    }
    let bind = super::binding::Bind {
        charger: &charger,
        connector,
        tx: b.transaction_id,
        vehicle: b.vehicle.as_deref(),
        by: &who.id,
    };
    match s.api.bind_vehicle(bind).await.map_err(ApiError::internal)? {
        Ok(()) => Ok(Json(json!({"charger": charger, "connector": connector,
            "transaction_id": b.transaction_id, "vehicle": b.vehicle, "bound_by": who.id}))),
        Err(e @ super::binding::Refused::NoTransaction { .. }) => {
            Err(ApiError::not_found(e.to_string()))
        }
        Err(e) => Err(ApiError::new(
            axum::http::StatusCode::CONFLICT,
            e.to_string(),
        )),
    }
}

#[derive(Deserialize)]
struct DateQuery {
    date: Option<String>,
}

async fn load(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<DateQuery>,
) -> Result<Json<Value>, ApiError> {
    s.people.require(&headers, PEOPLE).await?;
    Ok(Json(load_json(&s.api, q.date.as_deref()).await?))
}

/// The depot's zone (the tariff's) and a date there (today by default) as `[from, to)`.
pub(super) async fn day_bounds(
    api: &ChargingApi,
    date: Option<&str>,
) -> Result<(jiff::tz::TimeZone, jiff::civil::Date, i64, i64), ApiError> {
    let tz = jiff::tz::TimeZone::get(&api.tariff().await.timezone).map_err(ApiError::internal)?;
    let date = match date {
        Some(d) => d
            .parse::<jiff::civil::Date>()
            .map_err(|_| ApiError::bad_request("date is YYYY-MM-DD"))?,
        None => jiff::Timestamp::now().to_zoned(tz.clone()).date(),
    };
    let start = |d: jiff::civil::Date| -> Result<i64, ApiError> {
        Ok(d.to_zoned(tz.clone())
            .map_err(|_| ApiError::bad_request("that date is out of range"))?
            .timestamp()
            .as_millisecond())
    };
    let next = date
        .tomorrow()
        .map_err(|_| ApiError::bad_request("that date is out of range"))?;
    let (from, to) = (start(date)?, start(next)?);
    Ok((tz, date, from, to))
}

/// The cap the chargers share now: the last plan's (live when other-load panels are
/// set), the configured site cap before the first plan, None without smart charging.
pub(super) fn charging_cap_w(api: &ChargingApi) -> Option<i64> {
    let site = api.cfg.site_cap_kw.map(|kw| (kw * 1000.0) as i64)?;
    let cap = api.board.cap.read();
    Some(if cap.site_w > 0 { cap.charging_w } else { site })
}

/// The site load (5-minute steps): drawn, planned ahead, and the cap; over a calendar
/// day when `date` is given, else over the last 12 hours and the next 12 (a depot's
/// charging night crosses midnight, so the view around now does not end at it).
pub(super) async fn load_json(api: &ChargingApi, date: Option<&str>) -> Result<Value, ApiError> {
    let (tz, day, mut from, mut to) = day_bounds(api, date).await?;
    if date.is_none() {
        let step = super::load::STEP_MS;
        from = (crate::util::now_ms() - 12 * 3_600_000).div_euclid(step) * step;
        to = from + 24 * 3_600_000;
    }
    let date = day;
    let connectors: Vec<(String, i64)> = api
        .connectors()
        .await
        .map_err(ApiError::internal)?
        .into_iter()
        .map(|k| (k.charger_id, k.connector_id))
        .collect();
    let plan = api.board.plan.read().clone();
    let cap_w = charging_cap_w(api);
    let now = crate::util::now_ms();
    let series = api
        .store
        .read(move |c| super::load::day(c, &connectors, &plan, from, to, now, cap_w))
        .await
        .map_err(ApiError::internal)?;
    Ok(
        json!({"date": date.to_string(), "timezone": tz.iana_name(), "step_ms": super::load::STEP_MS,
              "series": series}),
    )
}

pub(super) fn routes(
    api: Arc<ChargingApi>,
    people: Arc<People>,
    services: crate::modules::framework::Services,
) -> Router {
    Router::new()
        .route("/api/v1/charging/chargers", get(chargers))
        .route("/api/v1/charging/load", get(load))
        .route("/api/v1/charging/sessions", get(sessions))
        .route("/api/v1/charging/tags/{tag}", put(put_tag))
        .route(
            "/api/v1/charging/chargers/{charger}/connectors/{connector}/vehicle",
            put(put_vehicle),
        )
        .merge(super::energy_api::routes(
            api.clone(),
            people.clone(),
            services,
        ))
        .merge(super::commands_api::routes(api.clone(), people.clone()))
        .with_state(AppState { api, people })
}
