//! dispatch's shared state and public API (`Dispatch`): the day view, sign-on, badge
//! scans, pull events and disruption when a vehicle drops out.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use garasi_sync_protocol::actor::ActorId;
use garasi_sync_protocol::record::FieldValue;

pub use super::charge_need::{ChargePlanSource, ChargePlans, NextBlock};
use super::metrics::DispatchMetrics;
use super::plan::{self, Assignment, Params, VehicleState};
use super::{events, store};
use crate::bus::Bus;
use crate::http::ApiError;
use crate::modules::auth::service::{People, Person, Refusal};
use crate::modules::fleet::service::{FleetApi, LiveStateSource};
use crate::modules::framework::Services;
use crate::store::Store;

pub use super::local::{import_local_blocks, retire_local_blocks, LocalBlock};

/// Operational record types dispatch writes (they sync to the cloud).
pub const ASSIGNMENT_RECORD: &str = garasi_sync_protocol::records::ASSIGNMENT;
pub const SIGNON_RECORD: &str = garasi_sync_protocol::records::SIGNON;
pub const EVENT_RECORD: &str = garasi_sync_protocol::records::DISPATCH_EVENT;
/// Master data record types dispatch applies.
pub const BLOCK_RECORD: &str = garasi_sync_protocol::records::BLOCK;
pub const STOP_RECORD: &str = garasi_sync_protocol::records::STOP;
pub const SHAPE_RECORD: &str = garasi_sync_protocol::records::SHAPE;
pub const RUN_RECORD: &str = garasi_sync_protocol::records::RUN;
pub const RUN_ASSIGNMENT_RECORD: &str = garasi_sync_protocol::records::RUN_ASSIGNMENT;

/// Who may change the day.
pub(super) const PLANNERS: &[&str] = &["dispatcher", "depot_manager"];

/// The module's shared state and public API.
pub struct Dispatch {
    pub(super) store: Store,
    pub(super) bus: Bus,
    pub(super) metrics: DispatchMetrics,
    pub(super) services: Services,
    /// Dependencies, looked up once at start.
    pub(super) people: Arc<People>,
    pub(super) fleet: Arc<FleetApi>,
    pub(super) actor: ActorId,
    pub params: Params,
    pub(super) tz: jiff::tz::TimeZone,
    pub(super) geofence: Option<(f64, f64, f64)>,
}

impl Dispatch {
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
        let fleet = self.fleet.clone();
        let f2 = fleet.clone();
        let vehicles = tokio::task::spawn_blocking(move || f2.list())
            .await
            .map_err(ApiError::internal)?;
        let statuses = fleet.statuses().await.map_err(ApiError::internal)?;
        let live = self.services.get::<LiveStateSource>();
        let plans = self.services.get::<ChargePlanSource>();
        Ok(vehicles
            .into_iter()
            .map(|v| {
                let l = live.as_ref().and_then(|l| l.0.live(&v.id));
                let sample = l.as_ref().and_then(|l| l.sample.as_ref());
                VehicleState {
                    status: statuses.get(&v.id).and_then(|s| s.status.clone()),
                    soc_pct: sample.and_then(|s| s.soc_pct),
                    charging: sample.and_then(|s| s.charging).unwrap_or(false),
                    charge_plan: plans.as_ref().and_then(|p| p.0.periods(&v.id)),
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
        let (day, day_runs) = self
            .store
            .read(move |c| Ok((store::load_day(c, &d)?, super::runs::load(c, &d)?)))
            .await
            .map_err(ApiError::internal)?;
        let vehicles = self.vehicle_states().await?;
        let people = self.people.list().await.map_err(ApiError::internal)?;
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
        let runs = super::runs::view(
            &day_runs,
            &day.blocks,
            &day.assignments,
            &names,
            &self.tz,
            &self.params,
            super::runs::At {
                signed_on: &signed_on,
                is_today: date == self.today(),
                now_ms: now,
            },
        );
        Ok(serde_json::json!({
            "date": date,
            "today": self.today(),
            "now_ms": now,
            "blocks": rows,
            "runs": runs["runs"],
            "reliefs": runs["reliefs"],
            "pieces": runs["pieces"],
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
            .signons_total
            .with_label_values(&[method])
            .inc();
        tracing::info!(person = %person.id, method, "driver signed on");
        Ok(v)
    }

    /// A badge line from a reader: sign the badge's holder on, or refuse (counted).
    pub async fn badge_scanned(&self, terminal: &str, line: &str) -> Result<Person, Refusal> {
        let people = &self.people;
        let person = people.by_badge(line).await?;
        self.sign_on(&person, "badge", Some(terminal.to_string()))
            .await
            .map_err(|e| Refusal::Store(e.message))?;
        Ok(person)
    }

    pub(super) fn count_event(&self, kind: &str) {
        self.metrics.events_total.with_label_values(&[kind]).inc();
    }

    /// A vehicle left (`out == true`) or entered the depot geofence at `ts_ms`.
    pub(super) async fn pull_event(&self, vehicle: &str, out: bool, ts_ms: i64) {
        let dates = vec![self.date_at(ts_ms - 86_400_000), self.date_at(ts_ms)];
        let (actor, v, grace) = (
            self.actor.clone(),
            vehicle.to_string(),
            self.params.late_grace_ms,
        );
        let r = self
            .store
            .write(move |c| events::pull_event(c, &actor, &dates, &v, out, ts_ms, grace))
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
    pub(super) async fn vehicle_dropped(&self, vehicle: &str, status: &str) {
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
            .write(move |c| events::disrupt(c, &actor, &dates, &v, &reason, now))
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

pub(super) fn row_state(a: Option<&Assignment>, signed_on: bool) -> &'static str {
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
    let fleet = d.fleet.clone();
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
