//! dispatch's HTTP routes: the day, assignments (of blocks, and of drivers to TODS
//! runs), auto-assign, replacements, swaps,
//! taking vehicles out of service, PIN sign-on and the tablet's card.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;

use super::plan;
use super::service::{driver_card, Dispatch, PLANNERS};
use super::{events, store};
use crate::http::{ApiError, ClientIp};
use crate::modules::fleet::service::StatusBody;
use garasi_sync_protocol::record::FieldValue;

pub(super) fn check_date(date: &str) -> Result<(), ApiError> {
    date.parse::<jiff::civil::Date>()
        .map(|_| ())
        .map_err(|_| ApiError::bad_request(format!("date {date:?} is not a date: use YYYY-MM-DD")))
}

/// Who may read the day as data (sign-on times, drivers, forecasts); the wall board
/// (`/dispatch`) shows the day without a session.
const DAY_READERS: &[&str] = &["dispatcher", "depot_manager", "mechanic"];

pub(super) async fn get_day(
    State(d): State<Arc<Dispatch>>,
    headers: HeaderMap,
    Path(date): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    d.people.require(&headers, DAY_READERS).await?;
    check_date(&date)?;
    Ok(Json(d.day_view(&date).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AssignBody {
    /// Some(id) assigns, Some("") clears, None leaves as is.
    vehicle: Option<String>,
    driver: Option<String>,
    bay: Option<String>,
}

pub(super) async fn put_assignment(
    State(d): State<Arc<Dispatch>>,
    headers: HeaderMap,
    Path((date, block)): Path<(String, String)>,
    body: Result<Json<AssignBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let who = d.people.require(&headers, PLANNERS).await?;
    let Json(b) = body.map_err(ApiError::from_json_rejection)?;
    check_date(&date)?;
    if let Some(v) = b.vehicle.as_deref().filter(|v| !v.is_empty()) {
        if d.fleet.get(v).is_none() {
            return Err(ApiError::bad_request(format!(
                "vehicle {v} is not registered at this depot"
            )));
        }
    }
    if let Some(p) = b.driver.as_deref().filter(|p| !p.is_empty()) {
        require_driver(&d, p).await?;
    }
    let mut values = vec![("assigned_by", FieldValue::Text(who.id.clone()))];
    let opt = |s: &str| {
        if s.is_empty() {
            FieldValue::Null
        } else {
            FieldValue::Text(s.to_string())
        }
    };
    if let Some(v) = &b.vehicle {
        values.push(("vehicle", opt(v)));
    }
    if let Some(p) = &b.driver {
        values.push(("driver", opt(p)));
    }
    if let Some(bay) = &b.bay {
        if bay.chars().count() > 16 {
            return Err(ApiError::bad_request("a bay is at most 16 characters"));
        }
        values.push(("bay", opt(bay.trim())));
    }
    let actor = d.actor.clone();
    let (date2, block2) = (date.clone(), block.clone());
    let written = d
        .store
        .write(move |c| store::assign(c, &actor, &date2, &[(block2, values)]))
        .await
        .map_err(ApiError::internal)?;
    if written == 0 {
        return Err(ApiError::not_found(format!(
            "block {block} is not in the plan for {date}"
        )));
    }
    d.count_event("assign");
    Ok(Json(d.day_view(&date).await?))
}

/// Refuses a person who is not one of this depot's drivers, saying which.
async fn require_driver(d: &Dispatch, p: &str) -> Result<(), ApiError> {
    match d.people.get(p).await.map_err(ApiError::internal)? {
        Some(person) if person.has_role("driver") => Ok(()),
        Some(_) => Err(ApiError::bad_request(format!("{p} is not a driver"))),
        None => Err(ApiError::bad_request(format!(
            "no driver {p} at this depot"
        ))),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RunAssignBody {
    /// A driver's person id; "" or null clears. Required: `{}` changes nothing by
    /// mistake.
    driver: serde_json::Value,
}

/// Puts a driver on a TODS run (planners only; the assignment names who made it).
pub(super) async fn put_run_assignment(
    State(d): State<Arc<Dispatch>>,
    headers: HeaderMap,
    Path((date, run)): Path<(String, String)>,
    body: Result<Json<RunAssignBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let who = d.people.require(&headers, PLANNERS).await?;
    let Json(b) = body.map_err(ApiError::from_json_rejection)?;
    check_date(&date)?;
    let driver = match b.driver {
        serde_json::Value::Null => None,
        serde_json::Value::String(p) => Some(p).filter(|p| !p.is_empty()),
        _ => return Err(ApiError::bad_request("driver is a person id, \"\" or null")),
    };
    if let Some(p) = &driver {
        require_driver(&d, p).await?;
    }
    let (actor, date2, run2) = (d.actor.clone(), date.clone(), run.clone());
    let written = d
        .store
        .write(move |c| super::runs::assign(c, &actor, &date2, &run2, driver.as_deref(), &who.id))
        .await
        .map_err(ApiError::internal)?;
    if !written {
        return Err(ApiError::not_found(format!(
            "run {run} is not in the plan for {date}"
        )));
    }
    d.count_event("assign_run");
    Ok(Json(d.day_view(&date).await?))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct AutoBody {
    #[serde(default)]
    apply: bool,
}

/// The auto-assign proposal for a day; with `apply`, it is written in one transaction.
pub(super) async fn auto_assign(
    State(d): State<Arc<Dispatch>>,
    headers: HeaderMap,
    Path(date): Path<String>,
    body: Option<Json<AutoBody>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let who = d.people.require(&headers, PLANNERS).await?;
    check_date(&date)?;
    let apply = body.map(|b| b.0.apply).unwrap_or(false);
    let d2 = date.clone();
    let day = d
        .store
        .read(move |c| store::load_day(c, &d2))
        .await
        .map_err(ApiError::internal)?;
    let vehicles = d.vehicle_states().await?;
    let proposal = plan::auto_assign(
        &day.blocks,
        &day.assignments,
        &vehicles,
        crate::util::now_ms(),
        &d.params,
    );
    if apply && !proposal.proposals.is_empty() {
        let edits: Vec<(String, Vec<(&'static str, FieldValue)>)> = proposal
            .proposals
            .iter()
            .map(|p| {
                (
                    p.block.clone(),
                    vec![
                        ("vehicle", FieldValue::Text(p.vehicle.clone())),
                        ("assigned_by", FieldValue::Text(who.id.clone())),
                    ],
                )
            })
            .collect();
        let (actor, d3) = (d.actor.clone(), date.clone());
        d.store
            .write(move |c| store::assign(c, &actor, &d3, &edits))
            .await
            .map_err(ApiError::internal)?;
        d.count_event("assign");
    }
    Ok(Json(serde_json::json!({
        "date": date,
        "applied": apply,
        "proposals": proposal.proposals,
        "unassigned": proposal.unassigned.iter().map(|(b, why)| serde_json::json!({"block": b, "reason": why})).collect::<Vec<_>>(),
    })))
}

pub(super) async fn get_replacements(
    State(d): State<Arc<Dispatch>>,
    Path((date, block)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    check_date(&date)?;
    let d2 = date.clone();
    let day = d
        .store
        .read(move |c| store::load_day(c, &d2))
        .await
        .map_err(ApiError::internal)?;
    let b = day.blocks.iter().find(|b| b.id == block).ok_or_else(|| {
        ApiError::not_found(format!("block {block} is not in the plan for {date}"))
    })?;
    let vehicles = d.vehicle_states().await?;
    let now = crate::util::now_ms();
    let from = day
        .assignments
        .get(&block)
        .and_then(|a| a.disrupted_ms)
        .unwrap_or(now)
        .max(now);
    let list = plan::replacements(
        b,
        &day.blocks,
        &day.assignments,
        &vehicles,
        from,
        now,
        &d.params,
    );
    Ok(Json(serde_json::json!({
        "block": block,
        "remaining_km": (b.remaining_km(from) * 10.0).round() / 10.0,
        "replacements": list,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SwapBody {
    vehicle: String,
    reason: Option<String>,
}

/// One action: the block's vehicle is replaced, the disruption cleared, and a `swap`
/// event recorded, in one transaction.
pub(super) async fn swap(
    State(d): State<Arc<Dispatch>>,
    headers: HeaderMap,
    Path((date, block)): Path<(String, String)>,
    body: Result<Json<SwapBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let who = d.people.require(&headers, PLANNERS).await?;
    let Json(b) = body.map_err(ApiError::from_json_rejection)?;
    check_date(&date)?;
    let states = d.vehicle_states().await?;
    match states.iter().find(|v| v.id == b.vehicle) {
        None => {
            return Err(ApiError::bad_request(format!(
                "vehicle {} is not registered at this depot",
                b.vehicle
            )))
        }
        Some(v) if !v.usable() => {
            return Err(ApiError::bad_request(format!(
                "{} is {}: pick a vehicle in service",
                v.label,
                v.status.as_deref().unwrap_or("").replace('_', " ")
            )))
        }
        Some(_) => {}
    }
    let (actor, d2, blk, who_id) = (d.actor.clone(), date.clone(), block.clone(), who.id.clone());
    let outcome = d
        .store
        .write(move |c| {
            events::swap(
                c,
                &actor,
                &d2,
                &blk,
                &b.vehicle,
                b.reason.as_deref(),
                &who_id,
            )
        })
        .await
        .map_err(ApiError::internal)?;
    match outcome {
        Err(msg) => Err(ApiError::new(StatusCode::CONFLICT, msg)),
        Ok(ev) => {
            d.count_event("swap");
            Ok(Json(
                serde_json::json!({ "swap": ev, "day": d.day_view(&date).await? }),
            ))
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct StatusNote {
    note: Option<String>,
}

/// The dispatcher takes a vehicle out of service (or puts it back); attributed.
pub(super) async fn set_vehicle_service(
    State(d): State<Arc<Dispatch>>,
    headers: HeaderMap,
    Path((vehicle, action)): Path<(String, String)>,
    body: Option<Json<StatusNote>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let who = d
        .people
        .require(&headers, &["dispatcher", "depot_manager", "mechanic"])
        .await?;
    let status = match action.as_str() {
        "out-of-service" => "out_of_service",
        "in-service" => "in_service",
        _ => return Err(ApiError::not_found("use out-of-service or in-service")),
    };
    let note = body.and_then(|b| b.0.note);
    let v = d
        .fleet
        .set_status(
            &vehicle,
            StatusBody {
                status: status.into(),
                note,
                set_by: who.id,
            },
        )
        .await?;
    Ok(Json(serde_json::json!({ "status": v })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SignOnBody {
    person: String,
    pin: String,
    terminal: Option<String>,
}

/// PIN sign-on at a tablet: signs the driver on for today and opens their session.
pub(super) async fn sign_on_pin(
    State(d): State<Arc<Dispatch>>,
    ClientIp(ip): ClientIp,
    body: Result<Json<SignOnBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(b) = body.map_err(ApiError::from_json_rejection)?;
    let people = d.people.clone();
    let (person, token) = people
        .sign_in_pin(ip, b.person.trim(), &b.pin)
        .await
        .map_err(|r| ApiError::new(r.status(), r.to_string()))?;
    let terminal = b.terminal.map(|t| t.chars().take(64).collect());
    let signon = d.sign_on(&person, "pin", terminal).await?;
    Ok((
        [(
            header::SET_COOKIE,
            crate::modules::auth::service::session_cookie(&token),
        )],
        Json(serde_json::json!({ "person": person, "signon": signon })),
    )
        .into_response())
}

pub(super) async fn tablet_api(
    State(d): State<Arc<Dispatch>>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    let p = d.people.require(&headers, &["driver"]).await?;
    Ok(Json(driver_card(&d, &p).await?))
}

/// dispatch's routes, its pages included.
pub(super) fn routes(d: Arc<Dispatch>) -> Router {
    Router::new()
        .route("/api/v1/dispatch/days/{date}", get(get_day))
        .route(
            "/api/v1/dispatch/days/{date}/blocks/{block}/assignment",
            put(put_assignment),
        )
        .route(
            "/api/v1/dispatch/days/{date}/runs/{run}/assignment",
            put(put_run_assignment),
        )
        .route(
            "/api/v1/dispatch/days/{date}/auto-assign",
            post(auto_assign),
        )
        .route(
            "/api/v1/dispatch/days/{date}/blocks/{block}/replacements",
            get(get_replacements),
        )
        .route(
            "/api/v1/dispatch/days/{date}/blocks/{block}/swap",
            post(swap),
        )
        .route(
            "/api/v1/dispatch/vehicles/{vehicle}/{action}",
            post(set_vehicle_service),
        )
        .route("/api/v1/signon", post(sign_on_pin))
        .route("/api/v1/tablet", get(tablet_api))
        .merge(super::pages::routes())
        .with_state(d)
}
