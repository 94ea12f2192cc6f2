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
use rusqlite::params;
use serde::{Deserialize, Serialize};

use super::{Module, ModuleContext, ModuleError, Services, Started};
use crate::bus::{Bus, Event};
use crate::http::ApiError;
use crate::store::migrate::Migration;
use crate::store::{Store, StoreCallError};

const MIGRATIONS: &[Migration] = &[Migration {
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
}];

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Vehicle {
    pub id: String,
    pub label: String,
    pub plate: Option<String>,
    pub battery_kwh: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("vehicle id {0:?} is invalid: use 1-64 letters, digits, '-' or '_'")]
    BadId(String),
    #[error("battery capacity must be a positive number of kWh, got {0}")]
    BadCapacity(f64),
    #[error("label must not be empty")]
    EmptyLabel,
    #[error(transparent)]
    Store(#[from] StoreCallError),
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
    let v = v.clone();
    store.write_blocking(move |c| {
        let now = crate::util::now_ms();
        c.execute(
            "INSERT INTO fleet_vehicles (id, label, plate, battery_kwh, created_ms, updated_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5)
             ON CONFLICT(id) DO UPDATE SET label = excluded.label, plate = excluded.plate,
               battery_kwh = excluded.battery_kwh, updated_ms = excluded.updated_ms",
            params![v.id, v.label, v.plate, v.battery_kwh, now],
        )
    })?;
    Ok(())
}

fn load_all(store: &Store) -> Result<Vec<Vehicle>, StoreCallError> {
    store.read_blocking(|c| {
        let mut st =
            c.prepare("SELECT id, label, plate, battery_kwh FROM fleet_vehicles ORDER BY id")?;
        let rows = st.query_map([], |r| {
            Ok(Vehicle {
                id: r.get(0)?,
                label: r.get(1)?,
                plate: r.get(2)?,
                battery_kwh: r.get(3)?,
            })
        })?;
        rows.collect()
    })
}

/// The registry as other modules see it: an in-memory copy, refreshed on a miss (the CLI
/// may add vehicles while the node runs) with a short negative cache so a flood of
/// messages from an unknown vehicle costs one query per few seconds, not one per message.
pub struct FleetApi {
    store: Store,
    bus: Bus,
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
            vehicles: RwLock::new(map),
            misses: RwLock::new(HashMap::new()),
        })
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
                "SELECT id, label, plate, battery_kwh FROM fleet_vehicles WHERE id = ?1",
                params![id_owned],
                |r| {
                    Ok(Vehicle {
                        id: r.get(0)?,
                        label: r.get(1)?,
                        plate: r.get(2)?,
                        battery_kwh: r.get(3)?,
                    })
                },
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
}

pub struct FleetModule;

impl Module for FleetModule {
    fn name(&self) -> &'static str {
        "fleet"
    }
    fn migrations(&self) -> &'static [Migration] {
        MIGRATIONS
    }
    fn start(&self, ctx: &ModuleContext) -> Result<Started, ModuleError> {
        let api = Arc::new(FleetApi::new(ctx.store.clone(), ctx.bus.clone())?);
        tracing::info!(vehicles = api.list().len(), "vehicle registry loaded");
        ctx.services.provide(api.clone());
        let routes = Router::new()
            .route("/api/v1/vehicles", get(list))
            .route("/api/v1/vehicles/{id}", get(get_one).put(put))
            .with_state(AppState {
                api,
                services: ctx.services.clone(),
            });
        Ok(Started {
            routes: Some(routes),
        })
    }
}
