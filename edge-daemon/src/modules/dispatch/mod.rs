//! dispatch module: the depot's day. Blocks arrive from the cloud as master data (or are
//! imported locally by a depot without a cloud); the dispatcher assigns a vehicle and a
//! driver to each (by hand or from the auto-assign proposal), drivers sign on with a
//! badge or a PIN, telemetry against the depot geofence records pull-out and pull-in,
//! and a vehicle that drops out gets a ranked list of replacements and a one-action
//! swap. Assignments, sign-ons and events are operational records that sync to the
//! cloud, so the cloud sees each depot's day. Everything works with the cloud away.
//!
//! Owns `dispatch_records`; reads people through auth's [`People`], vehicles through
//! fleet's [`FleetApi`] and live state through [`LiveStateSource`].

pub mod badge;
mod pages;
pub mod plan;
mod store;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use garasi_sync_protocol::actor::{new_actor, ActorId, Side};
use garasi_sync_protocol::record::FieldValue;
use serde::Deserialize;

use super::auth::people::{People, Person, Refusal};
use super::fleet::{FleetApi, LiveStateSource, StatusBody};
use super::{Module, ModuleContext, ModuleError, Services, Started};
use crate::bus::{Bus, Event};
use crate::config::DispatchConfig;
use crate::http::ApiError;
use crate::metrics::Metrics;
use crate::store::migrate::Migration;
use crate::store::Store;
use plan::{Assignment, Params, VehicleState};

pub use store::{import_local_blocks, LocalBlock};

/// Operational record types dispatch writes (they sync to the cloud).
pub const ASSIGNMENT_RECORD: &str = "assignment";
pub const SIGNON_RECORD: &str = "signon";
pub const EVENT_RECORD: &str = "dispatch_event";
/// Master data record types dispatch applies.
pub const BLOCK_RECORD: &str = "block";
pub const STOP_RECORD: &str = "stop";
pub const SHAPE_RECORD: &str = "shape";

const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "dispatch records",
    sql: "CREATE TABLE dispatch_records (
            record_type TEXT NOT NULL,
            record_id TEXT NOT NULL,
            service_date TEXT,
            doc BLOB,
            fields TEXT NOT NULL,
            updated_ms INTEGER NOT NULL,
            PRIMARY KEY (record_type, record_id)
          );
          CREATE INDEX dispatch_records_by_day ON dispatch_records (record_type, service_date);",
}];

/// Who may change the day.
const PLANNERS: &[&str] = &["dispatcher", "depot_manager"];

/// The module's shared state and public API.
pub struct Dispatch {
    store: Store,
    bus: Bus,
    metrics: Arc<Metrics>,
    services: Services,
    actor: ActorId,
    pub params: Params,
    tz: jiff::tz::TimeZone,
    geofence: Option<(f64, f64, f64)>,
}

impl Dispatch {
    fn people(&self) -> Result<Arc<People>, ApiError> {
        self.services
            .get::<People>()
            .ok_or_else(|| ApiError::internal("auth module is not running"))
    }

    fn fleet(&self) -> Result<Arc<FleetApi>, ApiError> {
        self.services
            .get::<FleetApi>()
            .ok_or_else(|| ApiError::internal("fleet module is not running"))
    }

    /// The depot's service day at `ms`.
    pub fn date_at(&self, ms: i64) -> String {
        jiff::Timestamp::from_millisecond(ms)
            .map(|t| t.to_zoned(self.tz.clone()).date().to_string())
            .unwrap_or_default()
    }

    /// The depot's time zone.
    pub fn timezone(&self) -> jiff::tz::TimeZone {
        self.tz.clone()
    }

    pub fn today(&self) -> String {
        self.date_at(crate::util::now_ms())
    }

    /// Every registered vehicle with its status and last reported charge.
    pub async fn vehicle_states(&self) -> Result<Vec<VehicleState>, ApiError> {
        let fleet = self.fleet()?;
        let f2 = fleet.clone();
        let vehicles = tokio::task::spawn_blocking(move || f2.list())
            .await
            .map_err(ApiError::internal)?;
        let statuses = fleet.statuses().await.map_err(ApiError::internal)?;
        let live = self.services.get::<LiveStateSource>();
        Ok(vehicles
            .into_iter()
            .map(|v| {
                let l = live.as_ref().and_then(|l| l.0.live(&v.id));
                let sample = l.as_ref().and_then(|l| l.get("sample"));
                VehicleState {
                    status: statuses.get(&v.id).and_then(|s| s.status.clone()),
                    soc_pct: sample
                        .and_then(|s| s.get("soc_pct"))
                        .and_then(|x| x.as_f64()),
                    charging: sample
                        .and_then(|s| s.get("charging"))
                        .and_then(|x| x.as_bool())
                        .unwrap_or(false),
                    id: v.id,
                    label: v.label,
                    battery_kwh: v.battery_kwh,
                    kwh_per_km: v.kwh_per_km,
                    vehicle_type: v.vehicle_type,
                }
            })
            .collect())
    }

    /// The service day as the board shows it.
    pub async fn day_view(&self, date: &str) -> Result<serde_json::Value, ApiError> {
        let d = date.to_string();
        let day = self
            .store
            .read(move |c| store::load_day(c, &d))
            .await
            .map_err(ApiError::internal)?;
        let vehicles = self.vehicle_states().await?;
        let people = self.people()?.list().await.map_err(ApiError::internal)?;
        let names: HashMap<&str, &str> = people
            .iter()
            .map(|p| (p.id.as_str(), p.name.as_str()))
            .collect();
        let now = crate::util::now_ms();
        let vmap: HashMap<String, VehicleState> =
            vehicles.iter().map(|v| (v.id.clone(), v.clone())).collect();
        let signed_on: HashSet<String> = day
            .signons
            .iter()
            .filter_map(|s| s["person"].as_str().map(String::from))
            .collect();
        let ctx = plan::DayContext {
            blocks: &day.blocks,
            assignments: &day.assignments,
            vehicles: &vmap,
            signed_on: &signed_on,
            is_today: date == self.today(),
            now_ms: now,
            params: &self.params,
        };
        let rows: Vec<serde_json::Value> = day
            .blocks
            .iter()
            .map(|b| {
                let a = day.assignments.get(&b.id);
                let v = a.and_then(|a| a.vehicle.as_ref()).and_then(|v| vmap.get(v));
                let driver = a.and_then(|a| a.driver.clone());
                let conflicts = plan::conflicts(b, &ctx);
                serde_json::json!({
                    "id": b.id,
                    "block": b.block,
                    "routes": b.routes,
                    "pull_out_ms": b.pull_out_ms,
                    "pull_in_ms": b.pull_in_ms,
                    "first_departure_ms": b.first_departure_ms,
                    "distance_km": b.distance_km,
                    "energy_kwh": (plan::energy_kwh(b.distance_km, v, &self.params) * 10.0).round() / 10.0,
                    "vehicle_type": b.vehicle_type,
                    "trips": b.trips.len(),
                    "assignment": a,
                    "vehicle_label": v.map(|v| v.label.clone()),
                    "soc_pct": v.and_then(|v| v.soc_pct),
                    "forecast_soc_pct": v.and_then(|v| plan::forecast_soc(v, b.pull_out_ms, now, &self.params)).map(|x| x.round()),
                    "driver_name": driver.as_deref().and_then(|d| names.get(d).copied()),
                    "driver_signed_on": driver.as_ref().is_some_and(|d| signed_on.contains(d)),
                    "state": row_state(a, driver.as_ref().is_some_and(|d| signed_on.contains(d))),
                    "conflicts": conflicts,
                })
            })
            .collect();
        let drivers: Vec<&Person> = people.iter().filter(|p| p.has_role("driver")).collect();
        Ok(serde_json::json!({
            "date": date,
            "today": self.today(),
            "now_ms": now,
            "blocks": rows,
            "vehicles": vehicles,
            "drivers": drivers,
            "signons": day.signons,
            "events": day.events,
        }))
    }

    /// Records a driver's sign-on for today (first sign-on time kept, last one updated).
    pub async fn sign_on(
        &self,
        person: &Person,
        method: &str,
        terminal: Option<String>,
    ) -> Result<serde_json::Value, ApiError> {
        let date = self.today();
        let id = format!("{date}-{}", person.id);
        let (actor, person2, method2) = (self.actor.clone(), person.clone(), method.to_string());
        let now = crate::util::now_ms();
        let v = self
            .store
            .write(move |c| {
                let tx = c.transaction()?;
                let first = store::fields(&tx, SIGNON_RECORD, &id)?
                    .and_then(|f| f["at_ms"].as_i64())
                    .unwrap_or(now);
                let v = store::edit(
                    &tx,
                    &actor,
                    SIGNON_RECORD,
                    &id,
                    &date,
                    &[
                        ("service_date", FieldValue::Text(date.clone())),
                        ("person", FieldValue::Text(person2.id.clone())),
                        ("name", FieldValue::Text(person2.name.clone())),
                        ("method", FieldValue::Text(method2)),
                        (
                            "terminal",
                            terminal.map(FieldValue::Text).unwrap_or(FieldValue::Null),
                        ),
                        ("at_ms", FieldValue::Int(first)),
                        ("last_at_ms", FieldValue::Int(now)),
                    ],
                )?;
                tx.commit()?;
                Ok(v)
            })
            .await
            .map_err(ApiError::internal)?;
        self.metrics
            .dispatch_signons_total
            .with_label_values(&[method])
            .inc();
        tracing::info!(person = %person.id, method, "driver signed on");
        Ok(v)
    }

    /// A badge line from a reader: sign the badge's holder on, or refuse (counted).
    pub async fn badge_scanned(&self, terminal: &str, line: &str) -> Result<Person, Refusal> {
        let people = self
            .people()
            .map_err(|_| Refusal::Store("auth module is not running".into()))?;
        let person = people.by_badge(line).await?;
        self.sign_on(&person, "badge", Some(terminal.to_string()))
            .await
            .map_err(|e| Refusal::Store(e.message))?;
        Ok(person)
    }

    fn count_event(&self, kind: &str) {
        self.metrics
            .dispatch_events_total
            .with_label_values(&[kind])
            .inc();
    }

    /// A vehicle left (`out == true`) or entered the depot geofence at `ts_ms`.
    async fn pull_event(&self, vehicle: &str, out: bool, ts_ms: i64) {
        let dates = vec![self.date_at(ts_ms - 86_400_000), self.date_at(ts_ms)];
        let (actor, v, grace) = (
            self.actor.clone(),
            vehicle.to_string(),
            self.params.late_grace_ms,
        );
        let r = self
            .store
            .write(move |c| store::pull_event(c, &actor, &dates, &v, out, ts_ms, grace))
            .await;
        match r {
            Ok(Some(block)) => {
                self.count_event(if out { "pull_out" } else { "pull_in" });
                tracing::info!(vehicle, block = %block, pull = if out { "out" } else { "in" }, "pull event recorded");
            }
            Ok(None) => tracing::debug!(vehicle, "geofence crossing with no matching assignment"),
            Err(e) => tracing::error!(vehicle, error = %e, "recording a pull event failed"),
        }
    }

    /// A vehicle went out of service: its unfinished blocks are flagged as disrupted.
    async fn vehicle_dropped(&self, vehicle: &str, status: &str) {
        let now = crate::util::now_ms();
        let dates = vec![
            self.date_at(now - 86_400_000),
            self.date_at(now),
            self.date_at(now + 86_400_000),
        ];
        let (actor, v) = (self.actor.clone(), vehicle.to_string());
        let reason = format!("{vehicle} {}", status.replace('_', " "));
        match self
            .store
            .write(move |c| store::disrupt(c, &actor, &dates, &v, &reason, now))
            .await
        {
            Ok(n) if n > 0 => {
                self.count_event("out_of_service");
                tracing::warn!(
                    vehicle,
                    blocks = n,
                    "vehicle dropped out; its blocks need a replacement"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::error!(vehicle, error = %e, "flagging disrupted blocks failed"),
        }
    }
}

fn row_state(a: Option<&Assignment>, signed_on: bool) -> &'static str {
    match a {
        None => "unassigned",
        Some(a) if a.pull_in_actual_ms.is_some() => "pulled_in",
        Some(a) if a.disrupted_ms.is_some() => "disrupted",
        Some(a) if a.pull_out_actual_ms.is_some() => "pulled_out",
        Some(a) if a.vehicle.is_some() && a.driver.is_some() && signed_on => "ready",
        Some(a) if a.vehicle.is_some() => "assigned",
        Some(_) => "unassigned",
    }
}

fn check_date(date: &str) -> Result<(), ApiError> {
    date.parse::<jiff::civil::Date>()
        .map(|_| ())
        .map_err(|_| ApiError::bad_request(format!("date {date:?} is not a date: use YYYY-MM-DD")))
}

async fn get_day(
    State(d): State<Arc<Dispatch>>,
    Path(date): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    check_date(&date)?;
    Ok(Json(d.day_view(&date).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AssignBody {
    /// Some(id) assigns, Some("") clears, None leaves as is.
    vehicle: Option<String>,
    driver: Option<String>,
    bay: Option<String>,
}

async fn put_assignment(
    State(d): State<Arc<Dispatch>>,
    headers: HeaderMap,
    Path((date, block)): Path<(String, String)>,
    body: Result<Json<AssignBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let who = d.people()?.require(&headers, PLANNERS)?;
    let Json(b) = body.map_err(ApiError::from_json_rejection)?;
    check_date(&date)?;
    if let Some(v) = b.vehicle.as_deref().filter(|v| !v.is_empty()) {
        if d.fleet()?.get(v).is_none() {
            return Err(ApiError::bad_request(format!(
                "vehicle {v} is not registered at this depot"
            )));
        }
    }
    if let Some(p) = b.driver.as_deref().filter(|p| !p.is_empty()) {
        match d.people()?.get(p).await.map_err(ApiError::internal)? {
            Some(person) if person.has_role("driver") => {}
            Some(_) => return Err(ApiError::bad_request(format!("{p} is not a driver"))),
            None => {
                return Err(ApiError::bad_request(format!(
                    "no driver {p} at this depot"
                )))
            }
        }
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

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct AutoBody {
    #[serde(default)]
    apply: bool,
}

/// The auto-assign proposal for a day; with `apply`, it is written in one transaction.
async fn auto_assign(
    State(d): State<Arc<Dispatch>>,
    headers: HeaderMap,
    Path(date): Path<String>,
    body: Option<Json<AutoBody>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let who = d.people()?.require(&headers, PLANNERS)?;
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

async fn get_replacements(
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
struct SwapBody {
    vehicle: String,
    reason: Option<String>,
}

/// One action: the block's vehicle is replaced, the disruption cleared, and a `swap`
/// event recorded, in one transaction.
async fn swap(
    State(d): State<Arc<Dispatch>>,
    headers: HeaderMap,
    Path((date, block)): Path<(String, String)>,
    body: Result<Json<SwapBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let who = d.people()?.require(&headers, PLANNERS)?;
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
            store::swap(
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
struct StatusNote {
    note: Option<String>,
}

/// The dispatcher takes a vehicle out of service (or puts it back); attributed.
async fn set_vehicle_service(
    State(d): State<Arc<Dispatch>>,
    headers: HeaderMap,
    Path((vehicle, action)): Path<(String, String)>,
    body: Option<Json<StatusNote>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let who = d
        .people()?
        .require(&headers, &["dispatcher", "depot_manager", "mechanic"])?;
    let status = match action.as_str() {
        "out-of-service" => "out_of_service",
        "in-service" => "in_service",
        _ => return Err(ApiError::not_found("use out-of-service or in-service")),
    };
    let note = body.and_then(|b| b.0.note);
    let v = d
        .fleet()?
        .set_status(
            &vehicle,
            StatusBody {
                status: status.into(),
                note,
                set_by: who.id,
            },
        )
        .await
        .map_err(|e| match e {
            super::fleet::FleetError::UnknownVehicle(_) => ApiError::not_found(e.to_string()),
            other => ApiError::internal(other),
        })?;
    Ok(Json(serde_json::json!({ "status": v })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignOnBody {
    person: String,
    pin: String,
    terminal: Option<String>,
}

/// PIN sign-on at a tablet: signs the driver on for today and opens their session.
async fn sign_on_pin(
    State(d): State<Arc<Dispatch>>,
    body: Result<Json<SignOnBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(b) = body.map_err(ApiError::from_json_rejection)?;
    let people = d.people()?;
    let person = people
        .verify_pin(b.person.trim(), &b.pin)
        .await
        .map_err(|r| ApiError::new(r.status(), r.to_string()))?;
    let terminal = b.terminal.map(|t| t.chars().take(64).collect());
    let signon = d.sign_on(&person, "pin", terminal).await?;
    let token = people.open_session(person.clone());
    Ok((
        [(
            header::SET_COOKIE,
            super::auth::people::session_cookie(&token),
        )],
        Json(serde_json::json!({ "person": person, "signon": signon })),
    )
        .into_response())
}

/// The signed-in driver's card: today's and tomorrow's assignments with bus, bay,
/// pull-out time and the trips (stop names resolved).
pub async fn driver_card(d: &Dispatch, person: &Person) -> Result<serde_json::Value, ApiError> {
    let now = crate::util::now_ms();
    let dates = vec![d.today(), d.date_at(now + 86_400_000)];
    let (dates2, pid) = (dates.clone(), person.id.clone());
    let card = d
        .store
        .read(move |c| store::driver_card(c, &dates2, &pid))
        .await
        .map_err(ApiError::internal)?;
    let fleet = d.fleet()?;
    let today = d.today();
    let signed_on = card.signed_on_today;
    let items: Vec<serde_json::Value> = card
        .items
        .into_iter()
        .map(|(b, a, stops)| {
            let label = a
                .vehicle
                .as_deref()
                .and_then(|v| fleet.get(v))
                .map(|v| v.label);
            let trips: Vec<serde_json::Value> = b
                .trips
                .iter()
                .map(|t| {
                    serde_json::json!({
                        "trip": t.trip, "route": t.route, "headsign": t.headsign,
                        "start": t.start, "end": t.end,
                        "from": stops.get(&t.from).cloned().unwrap_or_else(|| t.from.clone()),
                        "to": stops.get(&t.to).cloned().unwrap_or_else(|| t.to.clone()),
                    })
                })
                .collect();
            serde_json::json!({
                "service_date": b.service_date,
                "block": b.block,
                "block_id": b.id,
                "vehicle": a.vehicle,
                "vehicle_label": label,
                "bay": a.bay,
                "pull_out_ms": b.pull_out_ms,
                "pull_in_ms": b.pull_in_ms,
                "trips": trips,
            })
        })
        .collect();
    Ok(serde_json::json!({
        "person": person,
        "today": today,
        "signed_on": signed_on,
        "assignments": items,
    }))
}

async fn tablet_api(
    State(d): State<Arc<Dispatch>>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    let p = d.people()?.require(&headers, &["driver"])?;
    Ok(Json(driver_card(&d, &p).await?))
}

/// Watches the bus: geofence crossings become pull events; a vehicle going out of
/// service disrupts its blocks.
async fn watch(
    d: Arc<Dispatch>,
    mut rx: tokio::sync::broadcast::Receiver<Event>,
    cancel: tokio_util::sync::CancellationToken,
) {
    let mut inside: HashMap<String, bool> = HashMap::new();
    loop {
        let ev = tokio::select! {
            _ = cancel.cancelled() => return,
            ev = rx.recv() => ev,
        };
        match ev {
            Ok(Event::TelemetryCommitted(batch)) => {
                let Some((lat0, lon0, r)) = d.geofence else {
                    continue;
                };
                for u in batch.iter() {
                    let (Some(lat), Some(lon)) = (u.lat, u.lon) else {
                        continue;
                    };
                    let now_in = store::distance_m((lat0, lon0), (lat, lon)) <= r;
                    match inside.insert(u.vehicle_id.clone(), now_in) {
                        Some(was) if was != now_in => {
                            d.pull_event(&u.vehicle_id, !now_in, u.ts_ms).await;
                        }
                        _ => {}
                    }
                }
            }
            Ok(Event::VehicleStatusChanged { vehicle_id, status }) => {
                if let Some(s) = status
                    .as_deref()
                    .filter(|s| *s == "out_of_service" || *s == "in_maintenance")
                {
                    d.vehicle_dropped(&vehicle_id, s).await;
                }
            }
            Ok(_) => {}
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(
                    missed = n,
                    "dispatch fell behind the event bus; pull events may be missed"
                );
            }
            Err(_) => return,
        }
    }
}

pub struct DispatchModule;

impl Module for DispatchModule {
    fn name(&self) -> &'static str {
        "dispatch"
    }
    fn depends_on(&self) -> &'static [&'static str] {
        &["sync", "auth", "fleet"]
    }
    fn migrations(&self) -> &'static [Migration] {
        MIGRATIONS
    }
    fn start(&self, ctx: &ModuleContext) -> Result<Started, ModuleError> {
        let cfg: &DispatchConfig = &ctx.config.dispatch;
        let tz = match &cfg.timezone {
            Some(name) => {
                jiff::tz::TimeZone::get(name).map_err(|e| ModuleError::start("dispatch", e))?
            }
            None => jiff::tz::TimeZone::system(),
        };
        let d = Arc::new(Dispatch {
            store: ctx.store.clone(),
            bus: ctx.bus.clone(),
            metrics: ctx.metrics.clone(),
            services: ctx.services.clone(),
            actor: new_actor(Side::Depot),
            params: cfg.params,
            tz,
            geofence: cfg.geofence,
        });
        if let Some(appliers) = ctx.services.get::<super::sync::Appliers>() {
            for t in [BLOCK_RECORD, STOP_RECORD, SHAPE_RECORD] {
                appliers.register(
                    t,
                    Arc::new(
                        move |tx: &rusqlite::Transaction<'_>, id: &str, changes: &[Vec<u8>]| {
                            store::apply_master(tx, t, id, changes)
                        },
                    ),
                );
            }
            for t in [ASSIGNMENT_RECORD, SIGNON_RECORD, EVENT_RECORD] {
                let actor = d.actor.clone();
                appliers.register(
                    t,
                    Arc::new(
                        move |tx: &rusqlite::Transaction<'_>, id: &str, changes: &[Vec<u8>]| {
                            store::apply_operational(tx, &actor, t, id, changes)
                        },
                    ),
                );
            }
        }
        ctx.tracker
            .spawn(watch(d.clone(), d.bus.subscribe(), ctx.cancel.clone()));
        for path in &cfg.badge_readers {
            badge::spawn_reader(
                d.clone(),
                path.clone(),
                cfg.badge_baud,
                &ctx.tracker,
                ctx.shutdown.clone(),
            );
        }
        ctx.services.provide(d.clone());
        let routes = Router::new()
            .route("/api/v1/dispatch/days/{date}", get(get_day))
            .route(
                "/api/v1/dispatch/days/{date}/blocks/{block}/assignment",
                put(put_assignment),
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
            .merge(pages::routes())
            .with_state(d);
        Ok(Started {
            routes: Some(routes),
        })
    }
}
