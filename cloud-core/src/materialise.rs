//! The materialiser: folds stored changes into one merged document and visible fields per
//! record (`records` table), so the cloud can list and show any depot's records without
//! replaying their history. It follows each depot's change cursor on its own (cursors are
//! per depot, see [`ChangePosition`]), one depot per transaction, so its work stays
//! inside one depot as the depots' data would be on a distributed store; a crash at any
//! point only means the next run re-applies a page (applying a change twice is a no-op),
//! since documents and the depot's cursor are saved in one transaction.
//!
//! Documents are loaded only for the records a page touches (automerge documents cost
//! ~17 KiB each when loaded), and written back once per page.
//!
//! A record that cannot be fully folded never stops the materialiser: a change that does
//! not apply is skipped (the others are kept), a field holding a non-scalar value is
//! shown without it, changes waiting for dependencies that were never stored are
//! named; each case saves a quarantine row (depot, record, cursor, reason) with the
//! page, so the cursor moves on and the ops view shows what needs a look. Only a stored
//! document that no longer loads keeps the record at its last saved state.

use std::collections::HashMap;
use std::sync::Arc;

use garasi_sync_protocol::actor::{new_actor, ActorId, Side};
use garasi_sync_protocol::record::Record;

use crate::store::{
    ChangeOut, ChangePosition, CloudStore, MaterialRecord, Quarantined, ReadModel, RecordKey,
    StoreError,
};

/// Changes folded per transaction. Large pages matter: a record touched by a page is
/// loaded and saved once per page, however many of its changes the page holds.
const PAGE: i64 = 50_000;

#[derive(Debug, thiserror::Error)]
pub enum MaterialiseError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("materialiser task failed: {0}")]
    Task(String),
}

pub struct Materialiser<S> {
    store: Arc<S>,
    actor: ActorId,
    /// One fold at a time per depot (the background task and a plan's publication
    /// catching up take turns on a depot's pages, never folding one twice); folds of
    /// different depots do not wait for each other. One entry per depot ever folded.
    locks: parking_lot::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Woken after every push that stored changes.
    pub wake: tokio::sync::Notify,
    /// Records quarantined since start (for `/metrics`).
    pub quarantined_total: std::sync::atomic::AtomicU64,
}

/// How far the materialised records are behind the stored changes: of one depot (its
/// cursors), or of the whole cloud (cursors summed over depots, so only the difference
/// means something).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Freshness {
    pub materialised_cursor: i64,
    pub last_cursor: i64,
    /// Stored changes not yet folded into the records shown: the distance between the
    /// cursors, so at most that many (cursors of a database from before per-depot
    /// sequences, and SQLite's shared cursor, have gaps).
    pub changes_behind: i64,
}

impl Freshness {
    /// Of one depot whose changes are folded up to `materialised` and stored up to
    /// `last`.
    pub fn at(materialised: i64, last: i64) -> Freshness {
        Freshness {
            materialised_cursor: materialised,
            last_cursor: last,
            changes_behind: (last - materialised).max(0),
        }
    }

    fn of(positions: &[ChangePosition]) -> Freshness {
        let (m, l) = positions.iter().fold((0i64, 0i64), |(m, l), p| {
            (m.saturating_add(p.materialised), l.saturating_add(p.last))
        });
        Freshness {
            materialised_cursor: m,
            last_cursor: l,
            changes_behind: positions
                .iter()
                .map(|p| (p.last - p.materialised).max(0))
                .sum(),
        }
    }
}

/// Reading how far behind the materialiser is needs only the read model (ops views).
impl<S: ReadModel> Materialiser<S> {
    /// Of one depot, or of every depot (`None`).
    pub async fn freshness(&self, depot: Option<&str>) -> Result<Freshness, StoreError> {
        Ok(Freshness::of(&self.store.change_positions(depot).await?))
    }
}

/// Who waits for a fold: the background task, whose automerge work runs on the bulk
/// threads (nice +10, below people's reads), or a person's request (a plan's
/// publication folds first), at normal priority so a storm's pushes do not slow it.
#[derive(Clone, Copy)]
enum Waiter {
    Background,
    Person,
}

impl<S: CloudStore> Materialiser<S> {
    pub fn new(store: Arc<S>) -> Self {
        Materialiser {
            store,
            actor: new_actor(Side::Cloud),
            locks: parking_lot::Mutex::new(HashMap::new()),
            wake: tokio::sync::Notify::new(),
            quarantined_total: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Folds every change stored so far, one page of each depot behind in turn (a depot
    /// with a big backlog does not keep the others waiting). Returns how many changes
    /// were folded. For a person's request (normal priority); the background task folds
    /// on the bulk threads.
    pub async fn catch_up(&self) -> Result<u64, MaterialiseError> {
        self.catch_up_for(Waiter::Person).await
    }

    async fn catch_up_for(&self, waiter: Waiter) -> Result<u64, MaterialiseError> {
        let mut folded = 0;
        let mut behind: Vec<String> = self
            .store
            .change_positions(None)
            .await?
            .into_iter()
            .filter(|p| p.materialised < p.last)
            .map(|p| p.depot)
            .collect();
        while !behind.is_empty() {
            let mut still = Vec::with_capacity(behind.len());
            for depot in behind {
                let (more, n) = self.fold_next_page(&depot, waiter).await?;
                folded += n;
                if more {
                    still.push(depot);
                }
            }
            behind = still;
        }
        Ok(folded)
    }

    /// Folds the next page of one depot's changes, if it has any not yet folded: whether
    /// more may follow, and how many it folded. One page at a time under the depot's
    /// lock, the position read under it, so the background fold and a read's fold take
    /// turns without folding a page twice.
    async fn fold_next_page(
        &self,
        depot: &str,
        waiter: Waiter,
    ) -> Result<(bool, u64), MaterialiseError> {
        let lock = self
            .locks
            .lock()
            .entry(depot.to_string())
            .or_default()
            .clone();
        let _one = lock.lock().await;
        let Some(pos) = self.store.change_positions(Some(depot)).await?.pop() else {
            return Ok((false, 0));
        };
        if pos.materialised >= pos.last {
            return Ok((false, 0));
        }
        let page = self
            .store
            .changes_after(depot, pos.materialised, pos.last, PAGE)
            .await?;
        // A short page is everything up to `last` (read before it, and nothing can commit
        // below it later), so the depot is then folded up to `last`.
        let next = match page.last() {
            Some(c) if page.len() as i64 >= PAGE => c.cursor,
            _ => pos.last,
        };
        let n = page.len() as u64;
        self.fold_page(depot, page, next, waiter).await?;
        Ok((next < pos.last, n))
    }

    /// Folds one page of one depot's changes and saves the records with the depot's
    /// new cursor `upto`.
    async fn fold_page(
        &self,
        depot: &str,
        page: Vec<ChangeOut>,
        upto: i64,
        waiter: Waiter,
    ) -> Result<(), MaterialiseError> {
        // Changes per record, in cursor order.
        let mut order: Vec<RecordKey> = Vec::new();
        let mut by_key: HashMap<RecordKey, Vec<(i64, Vec<u8>)>> = HashMap::new();
        for c in page {
            let key = RecordKey {
                depot: depot.to_string(),
                record_type: c.record_type,
                record_id: c.record_id,
            };
            by_key
                .entry(key.clone())
                .or_insert_with(|| {
                    order.push(key);
                    Vec::new()
                })
                .push((c.cursor, c.change));
        }
        let docs = self.store.load_records(&order).await?;
        let now = crate::store::now_ms();
        // CPU work (automerge) off the async threads, split across the cores; the
        // background's on the bulk threads (nice +10), below record lists applying the
        // same changes themselves (`Waiter`). A list never waits for the fold, and with
        // idle cores the fold runs at full speed. (A person's fold waits for a background
        // page of the same depot in progress, one page at most.)
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
            let part_changes: HashMap<RecordKey, Vec<(i64, Vec<u8>)>> =
                part.iter().filter_map(|k| by_key.remove_entry(k)).collect();
            let actor = self.actor.clone();
            let job = move || fold(part, part_docs, part_changes, actor, now);
            jobs.push(match waiter {
                Waiter::Background => crate::bulk::spawn_blocking(job),
                Waiter::Person => tokio::task::spawn_blocking(job),
            });
        }
        let (mut records, mut quarantined) = (Vec::new(), Vec::new());
        for j in jobs {
            let (r, q) = j.await.map_err(|e| MaterialiseError::Task(e.to_string()))?;
            records.extend(r);
            quarantined.extend(q);
        }
        for q in &quarantined {
            tracing::error!(depot = %q.key.depot, record_type = %q.key.record_type,
                record_id = %q.key.record_id, cursor = q.cursor, reason = %q.reason,
                "record quarantined: a change could not be folded; the record keeps its last good state");
        }
        self.quarantined_total.fetch_add(
            quarantined.len() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        self.store
            .save_records(&records, &quarantined, &[(depot.to_string(), upto)])
            .await?;
        Ok(())
    }

    /// Keeps the records up to date: folds after every wake-up (and every few seconds).
    pub async fn run(self: Arc<Self>, cancel: tokio_util::sync::CancellationToken) {
        loop {
            if let Err(e) = self.catch_up_for(Waiter::Background).await {
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

#[cfg(test)]
#[path = "materialise_tests.rs"]
mod tests;

/// Folds one part of a page. Returns the records to save and the quarantine rows.
fn fold(
    order: Vec<RecordKey>,
    docs: Vec<Option<Vec<u8>>>,
    mut by_key: HashMap<RecordKey, Vec<(i64, Vec<u8>)>>,
    actor: ActorId,
    now: i64,
) -> (Vec<MaterialRecord>, Vec<Quarantined>) {
    let (mut out, mut bad) = (Vec::with_capacity(order.len()), Vec::new());
    for (key, doc) in order.into_iter().zip(docs) {
        let changes = by_key.remove(&key).unwrap_or_default();
        let first = changes.first().map_or(0, |c| c.0);
        let mut quarantine = |cursor: i64, reason: String| {
            bad.push(Quarantined {
                key: key.clone(),
                cursor,
                reason,
                at_ms: now,
            })
        };
        let load = || match &doc {
            Some(bytes) => Record::load(bytes, actor.clone()),
            None => Ok(Record::new(actor.clone())),
        };
        let mut record = match load() {
            Ok(r) => r,
            Err(e) => {
                quarantine(first, format!("stored document does not load: {e}"));
                continue;
            }
        };
        let malformed_before = record.malformed_fields().unwrap_or_default();
        let held_before = record.missing_deps();
        let bytes: Vec<Vec<u8>> = changes.iter().map(|c| c.1.clone()).collect();
        if record.apply(&bytes).is_err() {
            // Start again from the stored document and keep every change that applies.
            let Ok(again) = load() else { continue };
            record = again;
            for (cursor, change) in &changes {
                if let Err(e) = record.apply(std::slice::from_ref(change)) {
                    quarantine(*cursor, format!("change does not apply: {e}"));
                }
            }
        }
        // Changes waiting for dependencies that were never stored (or could not be
        // folded) are kept in the document but not shown: say so once, when it happens.
        let missing = record.missing_deps();
        if missing > held_before {
            quarantine(
                first,
                format!("changes wait for {missing} dependencies that are not stored; shown without them"),
            );
        }
        // Non-scalar values are passed over by `visible` (the record still folds and
        // later changes still apply); a field newly holding one is quarantined once.
        let malformed: Vec<String> = record
            .malformed_fields()
            .unwrap_or_default()
            .into_iter()
            .filter(|f| !malformed_before.contains(f))
            .collect();
        if !malformed.is_empty() {
            quarantine(
                first,
                format!("field(s) {malformed:?} hold a nested object; records are flat maps of scalars, so they are shown without it"),
            );
        }
        let fields = match record.visible() {
            Ok(f) => f,
            Err(e) => {
                quarantine(first, format!("record cannot be shown: {e}"));
                continue;
            }
        };
        let fields_json = match serde_json::to_string(&fields) {
            Ok(j) => j,
            Err(e) => {
                quarantine(first, format!("fields do not serialise: {e}"));
                continue;
            }
        };
        out.push(MaterialRecord {
            key,
            doc: record.save(),
            fields_json,
            updated_ms: now,
        });
    }
    (out, bad)
}
