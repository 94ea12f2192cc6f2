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
) -> Result<std::collections::BTreeMap<String, FieldValue>, ApplyError> {
    let actor = garasi_sync_protocol::actor::new_actor(garasi_sync_protocol::actor::Side::Depot);
    let doc: Option<Vec<u8>> = tx
        .query_row(
            "SELECT doc FROM sync_master_docs WHERE record_type = ?1 AND record_id = ?2",
            params![record_type, record_id],
            |r| r.get(0),
        )
        .optional()?;
    let mut record = match doc {
        Some(b) => Record::load(&b, actor),
        None => Ok(Record::new(actor)),
    }?;
    record.apply_in_order(changes)?;
    tx.execute(
        "INSERT INTO sync_master_docs (record_type, record_id, doc) VALUES (?1, ?2, ?3)
         ON CONFLICT(record_type, record_id) DO UPDATE SET doc = excluded.doc",
        params![record_type, record_id, record.save()],
    )?;
    Ok(record.visible()?)
}

/// Why pulled changes could not be applied. Each variant displays exactly as the error
/// it wraps, so dead letters and logs read as they always did.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Record(#[from] garasi_sync_protocol::record::RecordError),
    #[error(transparent)]
    Sql(#[from] rusqlite::Error),
    /// The owning module refused the record, with its own error.
    #[error(transparent)]
    Refused(Box<dyn std::error::Error + Send + Sync>),
}

impl From<String> for ApplyError {
    fn from(reason: String) -> Self {
        ApplyError::Refused(reason.into())
    }
}

impl From<&str> for ApplyError {
    fn from(reason: &str) -> Self {
        ApplyError::Refused(reason.into())
    }
}

impl ApplyError {
    /// The owning module's own refusal.
    pub fn refused(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        ApplyError::Refused(Box::new(e))
    }
}

/// Applies pulled changes of one record inside the sync transaction.
pub type Applier =
    Arc<dyn Fn(&Transaction<'_>, &str, &[Vec<u8>]) -> Result<(), ApplyError> + Send + Sync>;

/// Record type -> the owning module's applier. Modules register at start.
#[derive(Default)]
pub struct Appliers(RwLock<HashMap<String, Applier>>);

impl Appliers {
    /// Call this from `Module::start` itself, not from a task it spawns: the sync worker
    /// pulls once every module's `start` has returned, and a change of a type with no
    /// applier then is set aside as unknown.
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
