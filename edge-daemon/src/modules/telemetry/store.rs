//! telemetry's tables: samples, rollups, faults, dead letters.

use crate::store::migrate::Migration;

pub(crate) const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "samples, latest, faults, dead letters, rollups",
    sql: "CREATE TABLE telemetry_samples (
            vehicle_id TEXT NOT NULL,
            ts_ms INTEGER NOT NULL,
            received_ms INTEGER NOT NULL,
            lat REAL, lon REAL, heading REAL, speed_kmh REAL, soc_pct REAL, odometer_km REAL,
            battery_temp_c REAL, power_w REAL, charging INTEGER,
            extra TEXT,
            PRIMARY KEY (vehicle_id, ts_ms)
          ) WITHOUT ROWID;
          CREATE TABLE telemetry_latest (
            vehicle_id TEXT PRIMARY KEY,
            ts_ms INTEGER, received_ms INTEGER,
            lat REAL, lon REAL, heading REAL, speed_kmh REAL, soc_pct REAL, odometer_km REAL,
            battery_temp_c REAL, power_w REAL, charging INTEGER,
            online INTEGER, status_ms INTEGER, firmware TEXT
          );
          CREATE TABLE telemetry_faults (
            vehicle_id TEXT NOT NULL, spn INTEGER NOT NULL, fmi INTEGER NOT NULL,
            active INTEGER NOT NULL, severity TEXT, occurrences INTEGER, description TEXT,
            first_seen_ms INTEGER NOT NULL, last_seen_ms INTEGER NOT NULL,
            PRIMARY KEY (vehicle_id, spn, fmi)
          ) WITHOUT ROWID;
          CREATE TABLE telemetry_dead_letters (
            id INTEGER PRIMARY KEY,
            received_ms INTEGER NOT NULL,
            topic TEXT NOT NULL,
            reason TEXT NOT NULL,
            detail TEXT NOT NULL,
            payload BLOB NOT NULL,
            payload_len INTEGER NOT NULL
          );
          CREATE TABLE telemetry_rollup_1m (
            vehicle_id TEXT NOT NULL, bucket_ms INTEGER NOT NULL, samples INTEGER NOT NULL,
            speed_sum REAL, speed_n INTEGER, speed_max REAL, soc_min REAL, soc_max REAL,
            odometer_max REAL, battery_temp_max REAL, power_sum REAL, power_n INTEGER,
            PRIMARY KEY (vehicle_id, bucket_ms)
          ) WITHOUT ROWID;
          CREATE TABLE telemetry_rollup_state (
            vehicle_id TEXT PRIMARY KEY,
            rolled_until_ms INTEGER NOT NULL
          );",
}];
