//! The materialiser: folds stored changes into one merged document and visible fields per
//! record (`records` table), so the cloud can list and show any depot's records without
//! replaying their history. It follows the global change cursor; a crash at any point
//! only means the next run re-applies a page (applying a change twice is a no-op), since
//! documents and the cursor are saved in one transaction.
//!
//! Documents are loaded only for the records a page touches (automerge documents cost
//! ~17 KiB each when loaded), and written back once per page.

use std::collections::HashMap;
use std::sync::Arc;

use garasi_sync_protocol::actor::{new_actor, ActorId, Side};
use garasi_sync_protocol::record::Record;

use crate::store::{CloudStore, MaterialRecord, RecordKey, StoreError};

/// Changes folded per transaction. Large pages matter: a record touched by a page is
/// loaded and saved once per page, however many of its changes the page holds.
const PAGE: i64 = 50_000;

#[derive(Debug, thiserror::Error)]
pub enum MaterialiseError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("record {key} does not load: {detail}")]
    BadRecord { key: String, detail: String },
}

pub struct Materialiser<S> {
    store: Arc<S>,
    actor: ActorId,
    /// One fold at a time (the background task and readers catching up).
    lock: tokio::sync::Mutex<()>,
    /// Woken after every push that stored changes.
    pub wake: tokio::sync::Notify,
}

impl<S: CloudStore> Materialiser<S> {
    pub fn new(store: Arc<S>) -> Self {
        Materialiser {
            store,
            actor: new_actor(Side::Cloud),
            lock: tokio::sync::Mutex::new(()),
            wake: tokio::sync::Notify::new(),
        }
    }

    /// Folds every change stored so far. Returns how many changes were folded.
    pub async fn catch_up(&self) -> Result<u64, MaterialiseError> {
        let _one = self.lock.lock().await;
        let mut cursor = self.store.materialised_cursor().await?;
        let mut folded = 0u64;
        loop {
            let page = self.store.changes_after(cursor, PAGE).await?;
            let Some(last) = page.last().map(|c| c.cursor) else {
                return Ok(folded);
            };
            folded += page.len() as u64;
            // Changes per record, in cursor order.
            let mut order: Vec<RecordKey> = Vec::new();
            let mut by_key: HashMap<RecordKey, Vec<Vec<u8>>> = HashMap::new();
            for c in page {
                let key = RecordKey {
                    depot: c.depot,
                    record_type: c.record_type,
                    record_id: c.record_id,
                };
                by_key
                    .entry(key.clone())
                    .or_insert_with(|| {
                        order.push(key);
                        Vec::new()
                    })
                    .push(c.change);
            }
            let docs = self.store.load_records(&order).await?;
            let now = crate::store::now_ms();
            // CPU work (automerge) off the async threads, split across the cores.
            let workers = std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(8);
            let per = order.len().div_ceil(workers).max(1);
            let mut jobs = Vec::new();
            let mut docs = docs.into_iter();
            let mut keys = order.into_iter();
            loop {
                let part: Vec<RecordKey> = keys.by_ref().take(per).collect();
                if part.is_empty() {
                    break;
                }
                let part_docs: Vec<_> = docs.by_ref().take(part.len()).collect();
                let part_changes: HashMap<RecordKey, Vec<Vec<u8>>> =
                    part.iter().filter_map(|k| by_key.remove_entry(k)).collect();
                let actor = self.actor.clone();
                jobs.push(tokio::task::spawn_blocking(move || {
                    fold(part, part_docs, part_changes, actor, now)
                }));
            }
            let mut records = Vec::new();
            for j in jobs {
                records.extend(j.await.map_err(|e| StoreError::Task(e.to_string()))??);
            }
            self.store.save_records(&records, last).await?;
            cursor = last;
        }
    }

    /// Keeps the records up to date: folds after every wake-up (and every few seconds).
    pub async fn run(self: Arc<Self>, cancel: tokio_util::sync::CancellationToken) {
        loop {
            if let Err(e) = self.catch_up().await {
                tracing::error!(error = %e, "materialiser failed; retrying");
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
            }
        }
    }
}

fn fold(
    order: Vec<RecordKey>,
    docs: Vec<Option<Vec<u8>>>,
    mut by_key: HashMap<RecordKey, Vec<Vec<u8>>>,
    actor: ActorId,
    now: i64,
) -> Result<Vec<MaterialRecord>, MaterialiseError> {
    let mut out = Vec::with_capacity(order.len());
    for (key, doc) in order.into_iter().zip(docs) {
        let bad = |detail: String| MaterialiseError::BadRecord {
            key: format!("{}/{}/{}", key.depot, key.record_type, key.record_id),
            detail,
        };
        let mut record = match &doc {
            Some(bytes) => Record::load(bytes, actor.clone()).map_err(|e| bad(e.to_string()))?,
            None => Record::new(actor.clone()),
        };
        let changes = by_key.remove(&key).unwrap_or_default();
        if let Err(e) = record.apply(&changes) {
            // A change that does not decode was refused at push; if one is here anyway,
            // skip it rather than stop every other record.
            tracing::error!(error = %e, depot = %key.depot, record_type = %key.record_type, "stored change does not apply; skipped");
        }
        if record.missing_deps() > 0 {
            tracing::warn!(depot = %key.depot, record_type = %key.record_type, record_id = %key.record_id,
                "record has changes waiting for dependencies; shown without them until they arrive");
        }
        let fields = record.visible().map_err(|e| bad(e.to_string()))?;
        let fields_json = serde_json::to_string(&fields).map_err(|e| bad(e.to_string()))?;
        out.push(MaterialRecord {
            key,
            doc: record.save(),
            fields_json,
            updated_ms: now,
        });
    }
    Ok(out)
}
