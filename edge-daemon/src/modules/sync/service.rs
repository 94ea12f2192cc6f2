//! sync's public API for other modules: append to the outbox inside your transaction,
//! register an applier for your record types, apply cloud master data, enrol.

use std::collections::HashMap;
use std::sync::Arc;

use garasi_sync_protocol::record::{FieldValue, Record};
use parking_lot::RwLock;
use rusqlite::{params, OptionalExtension, Transaction};

pub use super::enrol::{cloud_client, enroll, load_enrolment, Enrolment};
pub use super::outbox::{
    append_change, append_stream_row, backlog, backlog_estimate, enforce_quota, Backlog,
    QuotaOutcome,
};

/// Applies pulled changes to a master-data record (cloud-authored: vehicles, devices) and
/// returns its visible fields; the owning module then writes its own table from them in
/// the same transaction. The documents are kept here, generically, because master data
/// is never edited at the depot.
pub fn apply_master(
    tx: &Transaction<'_>,
    record_type: &str,
    record_id: &str,
    changes: &[Vec<u8>],
) -> Result<std::collections::BTreeMap<String, FieldValue>, String> {
    let actor = garasi_sync_protocol::actor::new_actor(garasi_sync_protocol::actor::Side::Depot);
    let doc: Option<Vec<u8>> = tx
        .query_row(
            "SELECT doc FROM sync_master_docs WHERE record_type = ?1 AND record_id = ?2",
            params![record_type, record_id],
            |r| r.get(0),
        )
        .optional()
        .map_err(|e| e.to_string())?;
    let mut record = match doc {
        Some(b) => Record::load(&b, actor),
        None => Ok(Record::new(actor)),
    }
    .map_err(|e| e.to_string())?;
    record.apply_in_order(changes).map_err(|e| e.to_string())?;
    tx.execute(
        "INSERT INTO sync_master_docs (record_type, record_id, doc) VALUES (?1, ?2, ?3)
         ON CONFLICT(record_type, record_id) DO UPDATE SET doc = excluded.doc",
        params![record_type, record_id, record.save()],
    )
    .map_err(|e| e.to_string())?;
    record.visible().map_err(|e| e.to_string())
}

/// Applies pulled changes of one record inside the sync transaction.
pub type Applier =
    Arc<dyn Fn(&Transaction<'_>, &str, &[Vec<u8>]) -> Result<(), String> + Send + Sync>;

/// Record type -> the owning module's applier. Modules register at start.
#[derive(Default)]
pub struct Appliers(RwLock<HashMap<String, Applier>>);

impl Appliers {
    pub fn register(&self, record_type: &str, f: Applier) {
        self.0.write().insert(record_type.to_string(), f);
    }
    pub(super) fn get(&self, record_type: &str) -> Option<Applier> {
        self.0.read().get(record_type).cloned()
    }
}

/// The sync schema, for other modules' unit tests.
#[cfg(test)]
pub(crate) fn test_schema(c: &mut rusqlite::Connection) {
    crate::store::migrate::run(c, "sync", super::store::MIGRATIONS).unwrap();
}
