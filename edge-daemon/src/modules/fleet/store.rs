//! fleet's tables: the vehicle registry (`fleet_vehicles`) and the visible status
//! columns; validation of a vehicle before it is stored.

use rusqlite::params;

use super::service::{FleetError, Vehicle};
use crate::modules::auth::service::valid_id;
use crate::store::migrate::Migration;
use crate::store::{Store, StoreCallError};

pub(super) const MIGRATIONS: &[Migration] = &[
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

/// Validates and stores a vehicle (insert or update). Used by the CLI and the API.
pub fn upsert_vehicle(store: &Store, v: &Vehicle) -> Result<(), FleetError> {
    if !valid_id(&v.id) {
        return Err(FleetError::BadId(v.id.clone()));
    }
    if !(v.battery_kwh.is_finite() && v.battery_kwh > 0.0) {
        return Err(FleetError::BadCapacity(v.battery_kwh));
    }
    if v.label.trim().is_empty() {
        return Err(FleetError::EmptyLabel);
    }
    use garasi_sync_protocol::text;
    let plate = v.plate.as_deref().unwrap_or("");
    if let Some(p) = text::problem("label", &v.label, text::NAME_CHARS, false)
        .or_else(|| text::problem("plate", plate, text::PLATE_CHARS, false))
    {
        return Err(FleetError::BadText(p));
    }
    if let Some(k) = v.kwh_per_km {
        if !garasi_sync_protocol::records::vehicle::valid_kwh_per_km(k) {
            return Err(FleetError::BadConsumption(k));
        }
    }
    if let Some(t) = &v.vehicle_type {
        if !valid_id(t) {
            return Err(FleetError::BadType(t.clone()));
        }
    }
    let v = v.clone();
    store.write_blocking(move |c| write_vehicle(c, &v))?;
    Ok(())
}

/// Inserts or updates one registry row (local edits and the cloud's master data).
pub(super) fn write_vehicle(c: &rusqlite::Connection, v: &Vehicle) -> rusqlite::Result<usize> {
    c.execute(
        "INSERT INTO fleet_vehicles (id, label, plate, battery_kwh, kwh_per_km, vehicle_type, created_ms, updated_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)
         ON CONFLICT(id) DO UPDATE SET label = excluded.label, plate = excluded.plate,
           battery_kwh = excluded.battery_kwh, kwh_per_km = excluded.kwh_per_km,
           vehicle_type = excluded.vehicle_type, updated_ms = excluded.updated_ms",
        params![v.id, v.label, v.plate, v.battery_kwh, v.kwh_per_km, v.vehicle_type, crate::util::now_ms()],
    )
}

pub(super) const VEHICLE_SELECT: &str =
    "SELECT id, label, plate, battery_kwh, kwh_per_km, vehicle_type FROM fleet_vehicles";

pub(super) fn vehicle_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Vehicle> {
    Ok(Vehicle {
        id: r.get(0)?,
        label: r.get(1)?,
        plate: r.get(2)?,
        battery_kwh: r.get(3)?,
        kwh_per_km: r.get(4)?,
        vehicle_type: r.get(5)?,
    })
}

pub(super) fn load_all(store: &Store) -> Result<Vec<Vehicle>, StoreCallError> {
    store.read_blocking(|c| {
        let mut st = c.prepare(&format!("{VEHICLE_SELECT} ORDER BY id"))?;
        let rows = st.query_map([], vehicle_row)?;
        rows.collect()
    })
}
