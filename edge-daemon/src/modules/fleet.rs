//! fleet module: the vehicle registry (id, label, plate, battery capacity). Managed by CLI
//! and API for now; it becomes cloud master data when sync lands. Other modules ask
//! [`FleetApi`] whether a vehicle exists; the vehicle list can be enriched with live state
//! by whichever module registers a [`LiveStateSource`] (telemetry does).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};

use garasi_sync_protocol::actor::{new_actor, ActorId, Side};
use garasi_sync_protocol::record::{FieldValue, Record, RecordError};

use super::{Module, ModuleContext, ModuleError, Services, Started};
use crate::bus::{Bus, Event};
use crate::http::ApiError;
use crate::store::migrate::Migration;
use crate::store::{Store, StoreCallError};

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "vehicles",
        sql: "CREATE TABLE fleet_vehicles (
            id TEXT PRIMARY KEY,
            label TEXT NOT NULL,
            plate TEXT,
            battery_kwh REAL NOT NULL CHECK (battery_kwh > 0),
            created_ms INTEGER NOT NULL,
            updated_ms INTEGER NOT NULL
          );",
    },
    Migration {
        version: 2,
        name: "vehicle operational status (replicated record)",
        sql: "CREATE TABLE fleet_vehicle_status (
            vehicle_id TEXT PRIMARY KEY,
            doc BLOB NOT NULL,
            status TEXT,
            note TEXT,
            set_by TEXT,
            updated_ms INTEGER NOT NULL
          );",
    },
    Migration {
        version: 3,
        name: "vehicle energy use and type (dispatch)",
        sql: "ALTER TABLE fleet_vehicles ADD COLUMN kwh_per_km REAL;
              ALTER TABLE fleet_vehicles ADD COLUMN vehicle_type TEXT;",
    },
];

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Vehicle {
    pub id: String,
    pub label: String,
    pub plate: Option<String>,
    pub battery_kwh: f64,
    /// Energy use per km; dispatch uses its configured default when unknown.
    #[serde(default)]
    pub kwh_per_km: Option<f64>,
    /// What a block may require (e.g. "12m", "articulated").
    #[serde(default)]
    pub vehicle_type: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("vehicle id {0:?} is invalid: use 1-64 letters, digits, '-' or '_'")]
    BadId(String),
    #[error("battery capacity must be a positive number of kWh, got {0}")]
    BadCapacity(f64),
    #[error("label must not be empty")]
    EmptyLabel,
    #[error("kwh_per_km must be between 0 and 20, got {0}")]
    BadConsumption(f64),
    #[error("vehicle_type {0:?} is invalid: use 1-64 letters, digits, '-' or '_'")]
    BadType(String),
    #[error("status {0:?} is unknown: use in_service, out_of_service or in_maintenance")]
    BadStatus(String),
    #[error("set_by must name who set the status")]
    NoSetter,
    #[error("vehicle {0} is not registered")]
    UnknownVehicle(String),
    #[error("replicated record: {0}")]
    Record(#[from] RecordError),
    #[error("database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error(transparent)]
    Store(#[from] StoreCallError),
}

/// Replicated record type name of a vehicle's operational status.
pub const STATUS_RECORD: &str = "vehicle_status";
/// Master data: a vehicle as the cloud defines it.
pub const VEHICLE_RECORD: &str = "vehicle";
const STATUSES: [&str; 3] = ["in_service", "out_of_service", "in_maintenance"];

/// A vehicle's operational status as every replica shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VehicleStatus {
    pub vehicle_id: String,
    pub status: Option<String>,
    pub note: Option<String>,
    pub set_by: Option<String>,
    pub updated_ms: i64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusBody {
    pub status: String,
    pub note: Option<String>,
    pub set_by: String,
}

fn text(v: Option<&FieldValue>) -> Option<String> {
    match v {
        Some(FieldValue::Text(s)) => Some(s.clone()),
        _ => None,
    }
}

/// Sets a vehicle's operational status: updates its automerge document, the visible
/// columns and the sync outbox in ONE transaction (all or nothing).
pub fn set_status(
    c: &mut rusqlite::Connection,
    actor: &ActorId,
    vehicle_id: &str,
    body: &StatusBody,
) -> Result<VehicleStatus, FleetError> {
    if !STATUSES.contains(&body.status.as_str()) {
        return Err(FleetError::BadStatus(body.status.clone()));
    }
    if body.set_by.trim().is_empty() {
        return Err(FleetError::NoSetter);
    }
    let tx = c.transaction()?;
    let known: bool = tx.query_row(
        "SELECT count(*) > 0 FROM fleet_vehicles WHERE id = ?1",
        params![vehicle_id],
        |r| r.get(0),
    )?;
    if !known {
        return Err(FleetError::UnknownVehicle(vehicle_id.into()));
    }
    let mut record = load_status_doc(&tx, actor, vehicle_id)?;
    let note = body
        .note
        .clone()
        .map(FieldValue::Text)
        .unwrap_or(FieldValue::Null);
    let change = record.set(&[
        ("status", FieldValue::Text(body.status.clone())),
        ("note", note),
        ("set_by", FieldValue::Text(body.set_by.clone())),
    ])?;
    let view = save_status_doc(&tx, vehicle_id, &mut record)?;
    if let Some(change) = change {
        super::sync::append_change(&tx, STATUS_RECORD, vehicle_id, &change)?;
    }
    tx.commit()?;
    Ok(view)
}

/// The vehicle's status document, or a new one.
fn load_status_doc(
    tx: &rusqlite::Transaction<'_>,
    actor: &ActorId,
    vehicle_id: &str,
) -> Result<Record, FleetError> {
    let doc: Option<Vec<u8>> = tx
        .query_row(
            "SELECT doc FROM fleet_vehicle_status WHERE vehicle_id = ?1",
            params![vehicle_id],
            |r| r.get(0),
        )
        .optional()?;
    Ok(match doc {
        Some(bytes) => Record::load(&bytes, actor.clone())?,
        None => Record::new(actor.clone()),
    })
}

/// Stores the document and its visible fields (the merge rule's result) together.
fn save_status_doc(
    tx: &rusqlite::Transaction<'_>,
    vehicle_id: &str,
    record: &mut Record,
) -> Result<VehicleStatus, FleetError> {
    let visible = record.visible()?;
    let view = VehicleStatus {
        vehicle_id: vehicle_id.into(),
        status: text(visible.get("status")),
        note: text(visible.get("note")),
        set_by: text(visible.get("set_by")),
        updated_ms: crate::util::now_ms(),
    };
    tx.execute(
        "INSERT INTO fleet_vehicle_status (vehicle_id, doc, status, note, set_by, updated_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT(vehicle_id) DO UPDATE SET doc = excluded.doc, status = excluded.status, note = excluded.note,
           set_by = excluded.set_by, updated_ms = excluded.updated_ms",
        params![vehicle_id, record.save(), view.status, view.note, view.set_by, view.updated_ms],
    )?;
    Ok(view)
}

/// Applies changes pulled from the cloud to a vehicle's status record (called by the
/// sync worker inside its transaction). Nothing goes to the outbox: they came from there.
pub fn apply_remote_status(
    tx: &rusqlite::Transaction<'_>,
    actor: &ActorId,
    vehicle_id: &str,
    changes: &[Vec<u8>],
) -> Result<(), FleetError> {
    let mut record = load_status_doc(tx, actor, vehicle_id)?;
    record.apply_in_order(changes)?;
    save_status_doc(tx, vehicle_id, &mut record)?;
    Ok(())
}

/// The visible status (materialised columns; the document is the source of truth).
pub fn get_status(
    c: &rusqlite::Connection,
    vehicle_id: &str,
) -> rusqlite::Result<Option<VehicleStatus>> {
    c.query_row(
        "SELECT vehicle_id, status, note, set_by, updated_ms FROM fleet_vehicle_status WHERE vehicle_id = ?1",
        params![vehicle_id],
        |r| Ok(VehicleStatus { vehicle_id: r.get(0)?, status: r.get(1)?, note: r.get(2)?, set_by: r.get(3)?, updated_ms: r.get(4)? }),
    )
    .optional()
}

/// Live state of vehicles, provided by another module (telemetry) at start.
pub trait LiveState: Send + Sync {
    /// JSON object describing the vehicle's latest state, if any is known.
    fn live(&self, vehicle_id: &str) -> Option<serde_json::Value>;
}

/// Wrapper so the trait object can live in [`Services`] (keyed by concrete type).
pub struct LiveStateSource(pub Arc<dyn LiveState>);

/// Validates and stores a vehicle (insert or update). Used by the CLI and the API.
pub fn upsert_vehicle(store: &Store, v: &Vehicle) -> Result<(), FleetError> {
    if !super::auth::valid_id(&v.id) {
        return Err(FleetError::BadId(v.id.clone()));
    }
    if !(v.battery_kwh.is_finite() && v.battery_kwh > 0.0) {
        return Err(FleetError::BadCapacity(v.battery_kwh));
    }
    if v.label.trim().is_empty() {
        return Err(FleetError::EmptyLabel);
    }
    if let Some(k) = v.kwh_per_km {
        if !(k > 0.0 && k < 20.0) {
            return Err(FleetError::BadConsumption(k));
        }
    }
    if let Some(t) = &v.vehicle_type {
        if !super::auth::valid_id(t) {
            return Err(FleetError::BadType(t.clone()));
        }
    }
    let v = v.clone();
    store.write_blocking(move |c| write_vehicle(c, &v))?;
    Ok(())
}

/// Inserts or updates one registry row (local edits and the cloud's master data).
fn write_vehicle(c: &rusqlite::Connection, v: &Vehicle) -> rusqlite::Result<usize> {
    c.execute(
        "INSERT INTO fleet_vehicles (id, label, plate, battery_kwh, kwh_per_km, vehicle_type, created_ms, updated_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)
         ON CONFLICT(id) DO UPDATE SET label = excluded.label, plate = excluded.plate,
           battery_kwh = excluded.battery_kwh, kwh_per_km = excluded.kwh_per_km,
           vehicle_type = excluded.vehicle_type, updated_ms = excluded.updated_ms",
        params![v.id, v.label, v.plate, v.battery_kwh, v.kwh_per_km, v.vehicle_type, crate::util::now_ms()],
    )
}

const VEHICLE_SELECT: &str =
    "SELECT id, label, plate, battery_kwh, kwh_per_km, vehicle_type FROM fleet_vehicles";

fn vehicle_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Vehicle> {
    Ok(Vehicle {
        id: r.get(0)?,
        label: r.get(1)?,
        plate: r.get(2)?,
        battery_kwh: r.get(3)?,
        kwh_per_km: r.get(4)?,
        vehicle_type: r.get(5)?,
    })
}

fn load_all(store: &Store) -> Result<Vec<Vehicle>, StoreCallError> {
    store.read_blocking(|c| {
        let mut st = c.prepare(&format!("{VEHICLE_SELECT} ORDER BY id"))?;
        let rows = st.query_map([], vehicle_row)?;
        rows.collect()
    })
}

/// The registry as other modules see it: an in-memory copy, refreshed on a miss (the CLI
/// may add vehicles while the node runs) with a short negative cache so a flood of
/// messages from an unknown vehicle costs one query per few seconds, not one per message.
pub struct FleetApi {
    store: Store,
    bus: Bus,
    /// This process's automerge actor for the status records fleet edits.
    actor: ActorId,
    vehicles: RwLock<HashMap<String, Vehicle>>,
    misses: RwLock<HashMap<String, Instant>>,
}

const MISS_TTL: Duration = Duration::from_secs(5);

impl FleetApi {
    fn new(store: Store, bus: Bus) -> Result<Self, StoreCallError> {
        let map = load_all(&store)?
            .into_iter()
            .map(|v| (v.id.clone(), v))
            .collect();
        Ok(FleetApi {
            store,
            bus,
            actor: new_actor(Side::Depot),
            vehicles: RwLock::new(map),
            misses: RwLock::new(HashMap::new()),
        })
    }

    /// Applies the cloud's master data for one vehicle (sync transaction). The cloud
    /// defines vehicles of enrolled depots; its values replace local ones.
    fn apply_master(
        &self,
        tx: &rusqlite::Transaction<'_>,
        id: &str,
        changes: &[Vec<u8>],
    ) -> Result<(), String> {
        let f = super::sync::apply_master(tx, VEHICLE_RECORD, id, changes)?;
        let v = Vehicle {
            id: id.to_string(),
            label: text(f.get("label")).unwrap_or_else(|| id.to_string()),
            plate: text(f.get("plate")),
            battery_kwh: match f.get("battery_kwh") {
                Some(FieldValue::Float(x)) => *x,
                Some(FieldValue::Int(x)) => *x as f64,
                _ => 0.0,
            },
            kwh_per_km: match f.get("kwh_per_km") {
                Some(FieldValue::Float(x)) if *x > 0.0 && *x < 20.0 => Some(*x),
                _ => None,
            },
            vehicle_type: text(f.get("vehicle_type")).filter(|t| super::auth::valid_id(t)),
        };
        if !(super::auth::valid_id(&v.id) && v.battery_kwh.is_finite() && v.battery_kwh > 0.0) {
            // Kept in the master document; the registry only takes usable vehicles.
            tracing::warn!(vehicle = %v.id, "cloud vehicle record is incomplete; not registered yet");
            return Ok(());
        }
        write_vehicle(tx, &v).map_err(|e| e.to_string())?;
        // The cache may run ahead of a transaction that then fails; the next pull applies
        // the same changes again, so it converges.
        if let Ok(mut m) = self.vehicles.write() {
            m.insert(v.id.clone(), v.clone());
        }
        if let Ok(mut m) = self.misses.write() {
            m.remove(&v.id);
        }
        self.bus
            .publish(Event::VehicleUpserted { vehicle_id: v.id });
        Ok(())
    }

    /// Whether the vehicle is registered. Blocking on a cache miss (one indexed query).
    pub fn is_known(&self, id: &str) -> bool {
        if self.vehicles.read().is_ok_and(|m| m.contains_key(id)) {
            return true;
        }
        if self
            .misses
            .read()
            .is_ok_and(|m| m.get(id).is_some_and(|t| t.elapsed() < MISS_TTL))
        {
            return false;
        }
        let id_owned = id.to_string();
        let found = self.store.read_blocking(move |c| {
            c.query_row(
                &format!("{VEHICLE_SELECT} WHERE id = ?1"),
                params![id_owned],
                vehicle_row,
            )
        });
        match found {
            Ok(v) => {
                if let Ok(mut m) = self.vehicles.write() {
                    m.insert(v.id.clone(), v);
                }
                true
            }
            Err(_) => {
                if let Ok(mut m) = self.misses.write() {
                    if m.len() > 10_000 {
                        m.clear();
                    }
                    m.insert(id.to_string(), Instant::now());
                }
                false
            }
        }
    }

    /// All vehicles, read fresh from the store (so CLI edits made while the node runs
    /// show up); falls back to the in-memory copy if the read fails.
    pub fn list(&self) -> Vec<Vehicle> {
        match load_all(&self.store) {
            Ok(all) => {
                if let Ok(mut m) = self.vehicles.write() {
                    *m = all.iter().map(|v| (v.id.clone(), v.clone())).collect();
                }
                all
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading the vehicle registry failed; serving the cached copy");
                let mut v: Vec<Vehicle> = self
                    .vehicles
                    .read()
                    .map(|m| m.values().cloned().collect())
                    .unwrap_or_default();
                v.sort_by(|a, b| a.id.cmp(&b.id));
                v
            }
        }
    }

    /// Sets a vehicle's operational status (replicated record) and tells the bus.
    pub async fn set_status(
        &self,
        vehicle_id: &str,
        body: StatusBody,
    ) -> Result<VehicleStatus, FleetError> {
        let (actor, id) = (self.actor.clone(), vehicle_id.to_string());
        let v = self
            .store
            .write(move |c| Ok(set_status(c, &actor, &id, &body)))
            .await??;
        self.bus.publish(Event::VehicleStatusChanged {
            vehicle_id: vehicle_id.to_string(),
            status: v.status.clone(),
        });
        Ok(v)
    }

    /// Every vehicle's operational status (vehicles never given one are absent).
    pub async fn statuses(&self) -> Result<HashMap<String, VehicleStatus>, StoreCallError> {
        self.store
            .read(|c| {
                let mut st = c.prepare_cached(
                    "SELECT vehicle_id, status, note, set_by, updated_ms FROM fleet_vehicle_status",
                )?;
                let rows = st.query_map([], |r| {
                    Ok(VehicleStatus {
                        vehicle_id: r.get(0)?,
                        status: r.get(1)?,
                        note: r.get(2)?,
                        set_by: r.get(3)?,
                        updated_ms: r.get(4)?,
                    })
                })?;
                rows.map(|r| r.map(|v| (v.vehicle_id.clone(), v))).collect()
            })
            .await
    }

    pub fn get(&self, id: &str) -> Option<Vehicle> {
        if self.is_known(id) {
            self.vehicles.read().ok()?.get(id).cloned()
        } else {
            None
        }
    }

    pub async fn upsert(&self, v: Vehicle) -> Result<(), FleetError> {
        let store = self.store.clone();
        let v2 = v.clone();
        tokio::task::spawn_blocking(move || upsert_vehicle(&store, &v2))
            .await
            .map_err(|e| FleetError::Store(StoreCallError::Task(e.to_string())))??;
        if let Ok(mut m) = self.vehicles.write() {
            m.insert(v.id.clone(), v.clone());
        }
        if let Ok(mut m) = self.misses.write() {
            m.remove(&v.id);
        }
        self.bus
            .publish(Event::VehicleUpserted { vehicle_id: v.id });
        Ok(())
    }
}

/// A vehicle with its live state, as the API returns it.
#[derive(Debug, Serialize)]
pub struct VehicleView {
    #[serde(flatten)]
    pub vehicle: Vehicle,
    pub live: Option<serde_json::Value>,
}

pub fn with_live(services: &Services, vehicles: Vec<Vehicle>) -> Vec<VehicleView> {
    let live = services.get::<LiveStateSource>();
    vehicles
        .into_iter()
        .map(|vehicle| {
            let live = live.as_ref().and_then(|l| l.0.live(&vehicle.id));
            VehicleView { vehicle, live }
        })
        .collect()
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
    match s
        .store
        .read(move |c| get_status(c, &id2))
        .await
        .map_err(ApiError::internal)?
    {
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
    match s.api.set_status(&id, b).await {
        Ok(v) => Ok(Json(v)),
        Err(e @ FleetError::UnknownVehicle(_)) => Err(ApiError::not_found(e.to_string())),
        Err(e @ (FleetError::BadStatus(_) | FleetError::NoSetter)) => {
            Err(ApiError::bad_request(e.to_string()))
        }
        Err(e) => Err(ApiError::internal(e)),
    }
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
    match s.api.upsert(v.clone()).await {
        Ok(()) => Ok(Json(v)),
        Err(FleetError::Store(e)) => Err(ApiError::internal(e.to_string())),
        Err(e) => Err(ApiError::bad_request(e.to_string())),
    }
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

/// A critical fault takes a vehicle out of service (a dispatcher puts it back). The
/// status record says why and syncs like any dispatcher's change.
async fn take_faulty_out_of_service(
    api: Arc<FleetApi>,
    mut events: tokio::sync::broadcast::Receiver<Event>,
    cancel: tokio_util::sync::CancellationToken,
) {
    loop {
        let ev = tokio::select! {
            _ = cancel.cancelled() => return,
            ev = events.recv() => ev,
        };
        let vehicle_id = match ev {
            Ok(Event::FaultsChanged {
                vehicle_id,
                critical,
                ..
            }) if critical > 0 => vehicle_id,
            Ok(_) => continue,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(missed = n, "fleet fell behind the event bus");
                continue;
            }
            Err(_) => return,
        };
        let id = vehicle_id.clone();
        let current = api
            .store
            .read(move |c| get_status(c, &id))
            .await
            .ok()
            .flatten()
            .and_then(|s| s.status);
        if current.as_deref() == Some("out_of_service") {
            continue;
        }
        let body = StatusBody {
            status: "out_of_service".into(),
            note: Some("critical fault reported by the vehicle".into()),
            set_by: "telemetry".into(),
        };
        match api.set_status(&vehicle_id, body).await {
            Ok(_) => {
                tracing::warn!(vehicle = %vehicle_id, "critical fault: vehicle taken out of service")
            }
            Err(e) => {
                tracing::error!(vehicle = %vehicle_id, error = %e, "could not take a faulty vehicle out of service")
            }
        }
    }
}

pub struct FleetModule;

impl Module for FleetModule {
    fn name(&self) -> &'static str {
        "fleet"
    }
    fn depends_on(&self) -> &'static [&'static str] {
        &["sync"]
    }
    fn migrations(&self) -> &'static [Migration] {
        MIGRATIONS
    }
    fn start(&self, ctx: &ModuleContext) -> Result<Started, ModuleError> {
        let api = Arc::new(FleetApi::new(ctx.store.clone(), ctx.bus.clone())?);
        if let Some(appliers) = ctx.services.get::<super::sync::Appliers>() {
            let a = api.actor.clone();
            appliers.register(
                STATUS_RECORD,
                Arc::new(
                    move |tx: &rusqlite::Transaction<'_>, id: &str, changes: &[Vec<u8>]| {
                        apply_remote_status(tx, &a, id, changes).map_err(|e| e.to_string())
                    },
                ),
            );
        }
        if let Some(appliers) = ctx.services.get::<super::sync::Appliers>() {
            let api = api.clone();
            appliers.register(
                VEHICLE_RECORD,
                Arc::new(
                    move |tx: &rusqlite::Transaction<'_>, id: &str, changes: &[Vec<u8>]| {
                        api.apply_master(tx, id, changes)
                    },
                ),
            );
        }
        tracing::info!(vehicles = api.list().len(), "vehicle registry loaded");
        ctx.services.provide(api.clone());
        let routes = Router::new()
            .route("/api/v1/vehicles", get(list))
            .route("/api/v1/vehicles/{id}", get(get_one).put(put))
            .route(
                "/api/v1/vehicles/{id}/status",
                get(get_vehicle_status).put(put_vehicle_status),
            )
            .with_state(AppState {
                api: api.clone(),
                services: ctx.services.clone(),
                store: ctx.store.clone(),
            });
        ctx.tracker.spawn(take_faulty_out_of_service(
            api,
            ctx.bus.subscribe(),
            ctx.cancel.clone(),
        ));
        Ok(Started {
            routes: Some(routes),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> rusqlite::Connection {
        let mut c = rusqlite::Connection::open_in_memory().unwrap();
        super::super::sync::test_schema(&mut c);
        crate::store::migrate::run(&mut c, "fleet", MIGRATIONS).unwrap();
        c.execute("INSERT INTO fleet_vehicles (id, label, battery_kwh, created_ms, updated_ms) VALUES ('bus-1', 'Bus 1', 350, 0, 0)", []).unwrap();
        c
    }

    fn body(status: &str) -> StatusBody {
        StatusBody {
            status: status.into(),
            note: Some("brakes".into()),
            set_by: "dispatcher-7".into(),
        }
    }

    fn outbox(c: &rusqlite::Connection) -> i64 {
        c.query_row("SELECT count(*) FROM sync_outbox WHERE record_type = 'vehicle_status' AND record_id = 'bus-1'", [], |r| r.get(0)).unwrap()
    }

    #[test]
    fn status_write_and_outbox_entry_commit_together() {
        let mut c = db();
        let actor = new_actor(Side::Depot);
        let v = set_status(&mut c, &actor, "bus-1", &body("out_of_service")).unwrap();
        assert_eq!(v.status.as_deref(), Some("out_of_service"));
        assert_eq!(
            get_status(&c, "bus-1").unwrap().unwrap().note.as_deref(),
            Some("brakes")
        );
        assert_eq!(outbox(&c), 1);
        set_status(&mut c, &actor, "bus-1", &body("in_service")).unwrap();
        assert_eq!(outbox(&c), 2);
        // The outbox holds real automerge changes: replaying them rebuilds the record.
        let changes: Vec<Vec<u8>> = {
            let mut st = c
                .prepare("SELECT change FROM sync_outbox ORDER BY seq")
                .unwrap();
            st.query_map([], |r| r.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        };
        let mut replica = Record::new(new_actor(Side::Cloud));
        replica.apply(&changes).unwrap();
        assert_eq!(
            replica.visible().unwrap()["status"],
            FieldValue::Text("in_service".into())
        );
    }

    #[test]
    fn no_outbox_no_write() {
        let mut c = db();
        c.execute_batch("DROP TABLE sync_outbox;").unwrap();
        let err = set_status(
            &mut c,
            &new_actor(Side::Depot),
            "bus-1",
            &body("in_maintenance"),
        )
        .unwrap_err();
        assert!(matches!(err, FleetError::Sql(_)), "{err}");
        assert!(
            get_status(&c, "bus-1").unwrap().is_none(),
            "the record must not commit without its outbox entry"
        );
    }

    #[test]
    fn bad_status_and_unknown_vehicle_write_nothing() {
        let mut c = db();
        let a = new_actor(Side::Depot);
        assert!(matches!(
            set_status(&mut c, &a, "bus-1", &body("flying")),
            Err(FleetError::BadStatus(_))
        ));
        assert!(matches!(
            set_status(&mut c, &a, "bus-9", &body("in_service")),
            Err(FleetError::UnknownVehicle(_))
        ));
        assert_eq!(outbox(&c), 0);
    }
}
