//! A vehicle's operational status: a replicated record (automerge document + visible
//! columns + outbox entry, written in one transaction).

use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};

use garasi_sync_protocol::actor::ActorId;
use garasi_sync_protocol::record::{FieldValue, Record};

use super::service::FleetError;
use crate::modules::sync::service::append_change;

/// Replicated record type name of a vehicle's operational status.
pub const STATUS_RECORD: &str = garasi_sync_protocol::records::VEHICLE_STATUS;
/// Master data: a vehicle as the cloud defines it.
pub const VEHICLE_RECORD: &str = garasi_sync_protocol::records::VEHICLE;
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

pub(super) fn text(v: Option<&FieldValue>) -> Option<String> {
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
    if let Some(p) = body.note.as_deref().and_then(|n| {
        use garasi_sync_protocol::text;
        text::problem("note", n, text::NOTE_CHARS, true)
    }) {
        return Err(FleetError::BadText(p));
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
        append_change(&tx, STATUS_RECORD, vehicle_id, &change)?;
    }
    tx.commit()?;
    Ok(view)
}

/// The vehicle's status document, or a new one.
pub(super) fn load_status_doc(
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

#[cfg(test)]
mod tests {
    use super::*;
    use garasi_sync_protocol::actor::{new_actor, Side};

    fn db() -> rusqlite::Connection {
        let mut c = rusqlite::Connection::open_in_memory().unwrap();
        crate::modules::sync::service::test_schema(&mut c);
        crate::store::migrate::run(&mut c, "fleet", super::super::store::MIGRATIONS).unwrap();
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
