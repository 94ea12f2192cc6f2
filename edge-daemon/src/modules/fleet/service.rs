//! fleet's public API for other modules: the registry (`FleetApi`), its types, and the
//! live-state hook another module (telemetry) fills in.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use rusqlite::params;
use serde::{Deserialize, Serialize};

use garasi_sync_protocol::actor::{new_actor, ActorId, Side};
use garasi_sync_protocol::record::{FieldValue, RecordError};
use garasi_sync_protocol::records;

use super::status::text;
use super::store::{load_all, vehicle_row, write_vehicle, VEHICLE_SELECT};
use crate::bus::{Bus, Event, TelemetryUpdate};
use crate::modules::auth::service::valid_id;
use crate::modules::framework::Services;
use crate::modules::sync::service::apply_master;
use crate::modules::sync::service::ApplyError;
use crate::store::{Store, StoreCallError};

pub use super::status::{
    get_status, set_status, StatusBody, VehicleStatus, STATUS_RECORD, VEHICLE_RECORD,
};
pub use super::store::upsert_vehicle;

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
    #[error("{0}")]
    BadText(String),
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

/// Live state of vehicles, provided by another module (telemetry) at start.
pub trait LiveState: Send + Sync {
    /// The vehicle's latest state, if any is known.
    fn live(&self, vehicle_id: &str) -> Option<LiveView>;
}

/// A vehicle's latest state as the live-state provider knows it; the `live` object of
/// `/api/v1/vehicles[/{id}]`, always serialised through a `serde_json::Value` (see
/// `VehicleView`) so its key order is what the API always gave.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct LiveView {
    /// `online`, `stale`, `offline` or `unknown`.
    pub status: &'static str,
    /// `last_seen_ms` as RFC 3339.
    pub last_seen: Option<String>,
    pub last_seen_ms: Option<i64>,
    pub sample: Option<TelemetryUpdate>,
    pub firmware: Option<String>,
    pub active_faults: Vec<ActiveFault>,
}

/// One active fault (J1939 SPN/FMI) of a vehicle.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ActiveFault {
    pub spn: i64,
    pub fmi: i64,
    pub severity: Option<String>,
    pub description: Option<String>,
}

/// Wrapper so the trait object can live in [`Services`] (keyed by concrete type).
pub struct LiveStateSource(pub Arc<dyn LiveState>);

/// A vehicle's odometer and charge at its first and last reading in a window.
#[derive(Debug, Clone, PartialEq)]
pub struct Travel {
    pub first_km: f64,
    pub last_km: f64,
    pub first_soc_pct: Option<f64>,
    pub last_soc_pct: Option<f64>,
}

/// How far a vehicle went in a window (telemetry provides it; blocking: call it off
/// the async threads).
pub trait TravelLog: Send + Sync {
    fn travel(&self, vehicle_id: &str, from_ms: i64, to_ms: i64) -> Option<Travel>;
}

/// Wrapper so the trait object can live in [`Services`].
pub struct TravelSource(pub Arc<dyn TravelLog>);

/// The registry as other modules see it: an in-memory copy, refreshed on a miss (the CLI
/// may add vehicles while the node runs) with a short negative cache so a flood of
/// messages from an unknown vehicle costs one query per few seconds, not one per message.
pub struct FleetApi {
    pub(super) store: Store,
    bus: Bus,
    /// This process's automerge actor for the status records fleet edits.
    pub(super) actor: ActorId,
    vehicles: RwLock<HashMap<String, Vehicle>>,
    misses: RwLock<HashMap<String, Instant>>,
}

const MISS_TTL: Duration = Duration::from_secs(5);

impl FleetApi {
    pub(super) fn new(store: Store, bus: Bus) -> Result<Self, StoreCallError> {
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
    pub(super) fn apply_master(
        &self,
        tx: &rusqlite::Transaction<'_>,
        id: &str,
        changes: &[Vec<u8>],
    ) -> Result<(), ApplyError> {
        let f = apply_master(tx, VEHICLE_RECORD, id, changes)?;
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
                Some(FieldValue::Float(x)) if records::vehicle::valid_kwh_per_km(*x) => Some(*x),
                _ => None,
            },
            vehicle_type: text(f.get("vehicle_type")).filter(|t| valid_id(t)),
        };
        if !(valid_id(&v.id) && v.battery_kwh.is_finite() && v.battery_kwh > 0.0) {
            // Kept in the master document; the registry only takes usable vehicles.
            tracing::warn!(vehicle = %v.id, "cloud vehicle record is incomplete; not registered yet");
            return Ok(());
        }
        write_vehicle(tx, &v).map_err(ApplyError::from)?;
        // The cache may run ahead of a transaction that then fails; the next pull applies
        // the same changes again, so it converges.
        self.vehicles.write().insert(v.id.clone(), v.clone());
        self.misses.write().remove(&v.id);
        self.bus
            .publish(Event::VehicleUpserted { vehicle_id: v.id });
        Ok(())
    }

    /// Whether the vehicle is registered. Blocking on a cache miss (one indexed query).
    pub fn is_known(&self, id: &str) -> bool {
        // Checked before any bookkeeping: the miss cache holds only well-formed ids (at
        // most 64 bytes each, 10,000 of them), whatever a client sends.
        if !garasi_sync_protocol::ids::valid_id(id) {
            return false;
        }
        if self.vehicles.read().contains_key(id) {
            return true;
        }
        if self
            .misses
            .read()
            .get(id)
            .is_some_and(|t| t.elapsed() < MISS_TTL)
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
                self.vehicles.write().insert(v.id.clone(), v);
                true
            }
            Err(_) => {
                let mut m = self.misses.write();
                if m.len() > 10_000 {
                    m.clear();
                }
                m.insert(id.to_string(), Instant::now());
                false
            }
        }
    }

    /// All vehicles, read fresh from the store (so CLI edits made while the node runs
    /// show up); falls back to the in-memory copy if the read fails.
    pub fn list(&self) -> Vec<Vehicle> {
        match load_all(&self.store) {
            Ok(all) => {
                *self.vehicles.write() = all.iter().map(|v| (v.id.clone(), v.clone())).collect();
                all
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading the vehicle registry failed; serving the cached copy");
                let mut v: Vec<Vehicle> = self.vehicles.read().values().cloned().collect();
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
            self.vehicles.read().get(id).cloned()
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
        self.vehicles.write().insert(v.id.clone(), v.clone());
        self.misses.write().remove(&v.id);
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
    /// Through a JSON value, as when the live view was built with `json!`: without
    /// serde_json's `preserve_order` (production builds) its keys come out sorted.
    #[serde(serialize_with = "as_json_value")]
    pub live: Option<LiveView>,
}

fn as_json_value<S: serde::Serializer>(live: &Option<LiveView>, s: S) -> Result<S::Ok, S::Error> {
    serde_json::to_value(live)
        .map_err(serde::ser::Error::custom)?
        .serialize(s)
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
