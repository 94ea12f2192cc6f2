//! What charging replicates to the cloud: each transaction as a `charging_session`
//! operational record (its automerge document kept beside the row, its changes in the
//! sync outbox in the same transaction as the row), and each stored meter sample as a
//! `charging_meter.v1` stream row. The edge is the authority on what a charger metered:
//! a change pulled back (its own echo, or a cloud edit) merges into the document only.

use garasi_sync_protocol::actor::ActorId;
use garasi_sync_protocol::record::{FieldValue, Record};
use garasi_sync_protocol::records::CHARGING_SESSION;
use garasi_sync_protocol::streams::{ChargingMeterSampleV1, CHARGING_METER_V1};
use rusqlite::{params, OptionalExtension, Transaction};

use super::sessions::{self, Sample};
use crate::modules::sync::service::{append_change, append_stream_row, ApplyError};
use crate::store::migrate::Migration;

pub(super) const MIGRATION: Migration = Migration {
    version: 2,
    name: "session documents",
    sql: "ALTER TABLE charging_transactions ADD COLUMN doc BLOB;",
};

/// The record id of a transaction: charger ids have no dots, so it splits back.
pub fn record_id(charger: &str, tx: i64) -> String {
    format!("{charger}.{tx}")
}

fn err(e: impl std::fmt::Display) -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(e.to_string().into())
}

fn load(t: &Transaction<'_>, actor: &ActorId, tx: i64) -> rusqlite::Result<Option<Record>> {
    let doc: Option<Option<Vec<u8>>> = t
        .query_row(
            "SELECT doc FROM charging_transactions WHERE id = ?1",
            params![tx],
            |r| r.get(0),
        )
        .optional()?;
    Ok(match doc {
        None => None,
        Some(Some(b)) => Some(Record::load(&b, actor.clone()).map_err(err)?),
        Some(None) => Some(Record::new(actor.clone())),
    })
}

/// Writes the transaction's current values into its record (one change, queued for the
/// cloud) in the caller's transaction.
pub(super) fn publish(t: &Transaction<'_>, actor: &ActorId, tx: i64) -> rusqlite::Result<()> {
    let (Some(s), Some(mut r)) = (sessions::session(t, tx)?, load(t, actor, tx)?) else {
        return Ok(());
    };
    let int = |v: Option<i64>| v.map_or(FieldValue::Null, FieldValue::Int);
    let text = |v: &Option<String>| v.clone().map_or(FieldValue::Null, FieldValue::Text);
    let change = r
        .set(&[
            ("charger_id", FieldValue::Text(s.charger_id.clone())),
            ("connector_id", FieldValue::Int(s.connector_id)),
            ("transaction_id", FieldValue::Int(s.transaction_id)),
            ("origin", FieldValue::Text(s.origin.clone())),
            ("charger_tx_id", int(s.charger_tx_id)),
            ("id_tag", text(&s.id_tag)),
            ("vehicle_id", text(&s.vehicle_id)),
            ("start_ms", int(s.start_ms)),
            ("meter_start_wh", int(s.meter_start_wh)),
            ("stop_ms", int(s.stop_ms)),
            ("meter_stop_wh", int(s.meter_stop_wh)),
            ("stop_reason", text(&s.stop_reason)),
            ("energy_wh", int(s.energy_wh)),
            ("bound_by", text(&s.bound_by)),
        ])
        .map_err(err)?;
    t.execute(
        "UPDATE charging_transactions SET doc = ?2 WHERE id = ?1",
        params![tx, r.save()],
    )?;
    if let Some(change) = change {
        append_change(t, CHARGING_SESSION, &record_id(&s.charger_id, tx), &change)?;
    }
    Ok(())
}

/// Queues newly stored samples for the cloud.
pub(super) fn stream(
    t: &Transaction<'_>,
    charger: &str,
    connector: i64,
    tx: Option<i64>,
    samples: &[&Sample],
) -> rusqlite::Result<()> {
    for s in samples {
        let row = ChargingMeterSampleV1 {
            charger_id: charger.to_string(),
            connector_id: connector,
            transaction_id: tx.filter(|t| *t > 0),
            ts_ms: s.ts_ms,
            measurand: s.measurand.clone(),
            phase: s.phase.clone(),
            context: s.context.clone(),
            location: s.location.clone(),
            value: s.value,
            unit: s.unit.clone(),
        };
        append_stream_row(t, CHARGING_METER_V1, s.ts_ms, &row.encode())?;
    }
    Ok(())
}

/// Pulled changes of a session record: merged into its document (a session this edge
/// does not have is left to the cloud).
pub(super) fn apply(
    t: &Transaction<'_>,
    actor: &ActorId,
    id: &str,
    changes: &[Vec<u8>],
) -> Result<(), ApplyError> {
    let Some((charger, tx)) = id
        .rsplit_once('.')
        .and_then(|(c, n)| Some((c, n.parse::<i64>().ok()?)))
    else {
        return Err(ApplyError::from(
            "a charging_session id is CHARGER.TRANSACTION",
        ));
    };
    let owner: Option<String> = t
        .query_row(
            "SELECT charger_id FROM charging_transactions WHERE id = ?1",
            params![tx],
            |r| r.get(0),
        )
        .optional()
        .map_err(ApplyError::from)?;
    if owner.as_deref() != Some(charger) {
        // Not this edge's session (or another charger's): left to the cloud.
        return Ok(());
    }
    let Some(mut r) = load(t, actor, tx).map_err(ApplyError::from)? else {
        return Ok(());
    };
    r.apply_in_order(changes).map_err(ApplyError::from)?;
    t.execute(
        "UPDATE charging_transactions SET doc = ?2 WHERE id = ?1",
        params![tx, r.save()],
    )
    .map_err(ApplyError::from)?;
    Ok(())
}
