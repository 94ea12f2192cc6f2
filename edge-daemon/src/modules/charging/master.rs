//! Chargers and the tariff as cloud master data: the appliers for the `charger` record
//! (its connectors and power; its password comes as a `device` of kind `charger`, which
//! auth applies) and the `tariff` record (checked with the same rules as the config's;
//! an invalid one is refused into the dead letters, and the depot keeps the tariff it
//! had). The cloud's tariff, once received, replaces the config file's.

use garasi_sync_protocol::record::FieldValue;
use garasi_sync_protocol::records::{self, charger};
use rusqlite::{params, Connection, OptionalExtension, Transaction};

use super::energy::Tariff;
use crate::modules::sync::service::{apply_master, ApplyError};
use crate::store::migrate::Migration;

pub(super) const MIGRATION: Migration = Migration {
    version: 6,
    name: "tariff from the cloud",
    sql: "CREATE TABLE charging_tariff (
            id TEXT PRIMARY KEY,
            tariff_json TEXT NOT NULL,
            updated_ms INTEGER NOT NULL
          );",
};

/// Why a cloud record was refused (kept in the dead letters, retried when fixed).
#[derive(Debug, thiserror::Error)]
pub(super) enum MasterError {
    #[error("charger {id}: connectors {connectors} or max_power_w {max_w} out of range (1-16, 1000-1000000 W)")]
    Charger {
        id: String,
        connectors: i64,
        max_w: i64,
    },
    #[error("tariff is not valid JSON: {0}")]
    TariffJson(#[from] serde_json::Error),
    #[error("tariff refused: {0}")]
    Tariff(String),
}

fn int(f: &std::collections::BTreeMap<String, FieldValue>, k: &str) -> Option<i64> {
    match f.get(k) {
        Some(FieldValue::Int(i)) => Some(*i),
        _ => None,
    }
}

/// A `charger` record: added, or its connectors and power updated (what the charger
/// reported about itself is kept).
pub(super) fn apply_charger(
    tx: &Transaction<'_>,
    id: &str,
    changes: &[Vec<u8>],
) -> Result<(), ApplyError> {
    let f = apply_master(tx, records::CHARGER, id, changes)?;
    let (Some(connectors), Some(max_w)) = (int(&f, "connectors"), int(&f, "max_power_w")) else {
        tracing::warn!(
            charger = id,
            "cloud charger record is incomplete; not usable yet"
        );
        return Ok(());
    };
    if !garasi_sync_protocol::ids::valid_id(id) || !charger::valid(connectors, max_w) {
        return Err(ApplyError::refused(MasterError::Charger {
            id: id.to_string(),
            connectors,
            max_w,
        }));
    }
    tx.execute(
        "INSERT INTO charging_chargers (id, connectors, max_power_w, added_ms) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT(id) DO UPDATE SET connectors = excluded.connectors, max_power_w = excluded.max_power_w",
        params![id, connectors, max_w, crate::util::now_ms()],
    )
    .map_err(ApplyError::from)?;
    Ok(())
}

/// The `tariff` record: stored when it is valid.
pub(super) fn apply_tariff(
    tx: &Transaction<'_>,
    id: &str,
    changes: &[Vec<u8>],
) -> Result<(), ApplyError> {
    let f = apply_master(tx, records::TARIFF, id, changes)?;
    let Some(FieldValue::Text(json)) = f.get(records::TARIFF_V1_FIELD) else {
        return Ok(());
    };
    let t: Tariff =
        serde_json::from_str(json).map_err(|e| ApplyError::refused(MasterError::from(e)))?;
    let problems = t.problems();
    if !problems.is_empty() {
        return Err(ApplyError::refused(MasterError::Tariff(
            problems.join("; "),
        )));
    }
    tx.execute(
        "INSERT INTO charging_tariff (id, tariff_json, updated_ms) VALUES (?1, ?2, ?3)
         ON CONFLICT(id) DO UPDATE SET tariff_json = excluded.tariff_json, updated_ms = excluded.updated_ms",
        params![id, json, crate::util::now_ms()],
    )
    .map_err(ApplyError::from)?;
    Ok(())
}

/// The cloud's tariff, if one arrived (it was checked when applied).
pub(super) fn cloud_tariff(c: &Connection) -> rusqlite::Result<Option<Tariff>> {
    let json: Option<String> = c
        .query_row(
            "SELECT tariff_json FROM charging_tariff WHERE id = ?1",
            [records::TARIFF_ID],
            |r| r.get(0),
        )
        .optional()?;
    // Checked when applied, so this fails only if the store was altered; say so.
    Ok(json.and_then(|j| {
        serde_json::from_str(&j)
            .map_err(|e| tracing::error!(error = %e, "the stored cloud tariff cannot be read; using the config's"))
            .ok()
    }))
}
