//! A depot's records of one type up to every stored change, read without waiting: the
//! materialised records, with the changes the materialiser has not folded yet applied
//! in memory on top, all read in one statement on a read connection (one snapshot, and
//! one round trip: with the cores saturated each round trip waits for one). During a
//! reconnect storm a list used to fold the depot's backlog first, through the writers
//! every push was queueing on; now it never waits for them and still shows every
//! stored change.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use garasi_sync_protocol::actor::{new_actor, Side};
use garasi_sync_protocol::record::Record;

use super::overlay_kept::Overlay;
use super::slow::{self, ListTimes};
use super::{ApiError, AppState};
use crate::materialise::Freshness;
use crate::store::CloudStore;

/// Unfolded changes applied in memory per list, at most. Past this (a depot far
/// behind), the list shows a prefix of them and says it is not up to date.
const PENDING_LIMIT: i64 = 5_000;
/// Lists applying unfolded changes at once (each may hold a page of changes and their
/// documents). A list finding none free does not wait: it answers with the
/// materialised fields and says it is not up to date.
pub(super) const CONCURRENT_OVERLAYS: usize = 4;
/// Changes a list applies on the async thread itself, at most; more go to a blocking
/// thread (see `little`).
const APPLY_INLINE: usize = 32;
/// Bytes of plain changes and documents to load a list applies on the async thread, at
/// most.
const APPLY_INLINE_BYTES: usize = 64 * 1024;

/// A listed type: visible fields by record id, in id order.
pub(super) struct RecordList {
    pub records: BTreeMap<String, serde_json::Value>,
    /// The materialiser's position for the depot (what the stored fields include).
    pub freshness: Freshness,
    /// False when more unfolded changes were stored than one list applies.
    pub up_to_date: bool,
}

pub(super) async fn list_up_to_date<S: CloudStore>(
    s: &AppState<S>,
    depot: &str,
    record_type: &str,
) -> Result<RecordList, ApiError> {
    list_applying_at_most(s, depot, record_type, PENDING_LIMIT).await
}

async fn list_applying_at_most<S: CloudStore>(
    s: &AppState<S>,
    depot: &str,
    record_type: &str,
    limit: i64,
) -> Result<RecordList, ApiError> {
    let started = Instant::now();
    let snap = s.store.list_snapshot(depot, record_type, limit + 1).await?;
    let read = started.elapsed();
    let freshness = Freshness::at(snap.materialised, snap.last);
    let mut records = BTreeMap::new();
    let mut docs: HashMap<String, Vec<u8>> = HashMap::new();
    for (id, fields, doc) in snap.records {
        let fields = serde_json::from_str(&fields)
            .map_err(|e| ApiError::internal(format!("stored fields: {e}")))?;
        if let Some(doc) = doc {
            docs.insert(id.clone(), doc);
        }
        records.insert(id, fields);
    }
    let fast = |pending| ListTimes {
        depot,
        read,
        waited: Duration::ZERO,
        applied: Duration::ZERO,
        pending,
        total: started.elapsed(),
    };
    if freshness.changes_behind == 0 {
        slow::note(&fast(0));
        s.kept_overlays.forget(depot, record_type);
        return Ok(RecordList {
            records,
            freshness,
            up_to_date: true,
        });
    }
    s.materialiser.wake.notify_one();
    // Applying is the costly part: no overlay free, the materialised fields alone.
    let Ok(permit) = s.overlays.clone().try_acquire_owned() else {
        slow::note(&fast(snap.pending.len()));
        return Ok(RecordList {
            records,
            freshness,
            up_to_date: false,
        });
    };
    let up_to_date = snap.pending.len() as i64 <= limit;
    let mut pending: Vec<(i64, String, Vec<u8>)> = snap
        .pending_cursors
        .into_iter()
        .zip(snap.pending)
        .map(|(cursor, (id, change))| (cursor, id, change))
        .collect();
    pending.truncate(usize::try_from(limit).unwrap_or(0));
    // What the last list applied, if the materialiser has not passed it: then only the
    // changes stored since are applied. A list that could not apply everything keeps
    // nothing (its overlay would not hold every change up to the snapshot).
    let kept = s.kept_overlays.clone();
    let cached = up_to_date
        .then(|| kept.take(depot, record_type, snap.materialised, snap.last))
        .flatten();
    let (materialised, last) = (snap.materialised, snap.last);
    let pending_n = pending.len();
    // Little automerge work (a kept overlay with a few small changes since) is done on
    // the async thread: a blocking thread's start is a wake-up more to wait for on busy
    // cores, and took longer than the work itself. The rest, and a kept overlay whose
    // documents refuse a change (built afresh then), go to a blocking thread.
    let mut cached = cached;
    let mut inline = None;
    if little(cached.as_ref(), &docs, &pending) {
        let applying = Instant::now();
        let fast = match cached.take() {
            Some(o) => overlay(o, &docs, &pending, last),
            None => Some(build(None, &docs, &pending, materialised, last)),
        };
        #[cfg(test)]
        tests::APPLIED_INLINE.with(|n| n.set(n.get() + usize::from(fast.is_some())));
        inline = fast.map(|built| (built, Duration::ZERO, applying.elapsed()));
    }
    let built = match inline {
        Some(built) => built,
        None => {
            let queued = Instant::now();
            tokio::task::spawn_blocking(move || {
                let waited = queued.elapsed();
                let applying = Instant::now();
                let built = build(cached, &docs, &pending, materialised, last);
                (built, waited, applying.elapsed())
            })
            .await
            .map_err(|e| ApiError::internal(format!("applying unfolded changes: {e}")))?
        }
    };
    let ((overlay, complete), waited, applied) = built;
    slow::note(&ListTimes {
        depot,
        read,
        waited,
        applied,
        pending: pending_n,
        total: started.elapsed(),
    });
    let shown: Vec<(String, serde_json::Value)> = overlay
        .records
        .iter()
        .map(|(id, (_, fields))| (id.clone(), fields.clone()))
        .collect();
    if up_to_date && complete {
        s.kept_overlays.keep(depot, record_type, overlay);
    }
    drop(permit);
    for (id, fields) in shown {
        records.insert(id, fields);
    }
    Ok(RecordList {
        records,
        freshness,
        up_to_date,
    })
}

/// Whether applying `pending` past `o`'s `upto` (all of it with no overlay) is little
/// enough for the async thread: at most [`APPLY_INLINE`] changes, every one plain (a
/// compressed one may inflate to 1 MiB), and with the documents to load for records not
/// in `o`, at most [`APPLY_INLINE_BYTES`].
fn little(
    o: Option<&Overlay>,
    docs: &HashMap<String, Vec<u8>>,
    pending: &[(i64, String, Vec<u8>)],
) -> bool {
    let upto = o.map_or(i64::MIN, |o| o.upto);
    let (mut n, mut bytes) = (0, 0);
    let mut loading = std::collections::HashSet::new();
    for (_, id, change) in pending.iter().filter(|(c, _, _)| *c > upto) {
        n += 1;
        if n > APPLY_INLINE || !garasi_sync_protocol::rules::plain_change(change) {
            return false;
        }
        bytes += change.len();
        let held = o.is_some_and(|o| o.records.contains_key(id));
        if !held && loading.insert(id.as_str()) {
            bytes += docs.get(id).map_or(0, Vec::len);
        }
        if bytes > APPLY_INLINE_BYTES {
            return false;
        }
    }
    true
}

/// The overlay for a list: `cached` moved up to `last` if its documents take the new
/// changes, else one built afresh from the materialised position. Whether it may be
/// kept comes with it.
fn build(
    cached: Option<Overlay>,
    docs: &HashMap<String, Vec<u8>>,
    pending: &[(i64, String, Vec<u8>)],
    materialised: i64,
    last: i64,
) -> (Overlay, bool) {
    cached
        .and_then(|o| overlay(o, docs, pending, last))
        .unwrap_or_else(|| {
            let fresh = Overlay {
                from: materialised,
                upto: i64::MIN,
                records: HashMap::new(),
            };
            // A fresh overlay has no document of its own to fail on: each record's
            // changes go through `apply`, which never fails the whole.
            overlay(fresh, docs, pending, last).unwrap_or_else(|| {
                let empty = Overlay {
                    from: materialised,
                    upto: last,
                    records: HashMap::new(),
                };
                (empty, false)
            })
        })
}

/// Applies to `o` the changes of `pending` past its `upto` (a fresh overlay: all of
/// them), loading a record's stored document from `docs` the first time it is met, and
/// moves it up to `last`. Returns it and whether it may be kept (every record's changes
/// applied); `None` if a change does not apply to a kept document (built afresh then).
fn overlay(
    mut o: Overlay,
    docs: &HashMap<String, Vec<u8>>,
    pending: &[(i64, String, Vec<u8>)],
    last: i64,
) -> Option<(Overlay, bool)> {
    let mut order: Vec<&str> = Vec::new();
    let mut by_id: HashMap<&str, Vec<Vec<u8>>> = HashMap::new();
    for (cursor, id, change) in pending {
        if *cursor > o.upto {
            by_id
                .entry(id)
                .or_insert_with(|| {
                    order.push(id);
                    Vec::new()
                })
                .push(change.clone());
        }
    }
    let mut complete = true;
    for id in order {
        let changes = by_id.remove(id).unwrap_or_default();
        match o.records.get_mut(id) {
            Some((record, fields)) => {
                record.apply(&changes).ok()?;
                *fields = visible_json(record)?;
            }
            None => match apply(docs.get(id).map(Vec::as_slice), &changes) {
                Some(applied) => {
                    o.records.insert(id.to_string(), applied);
                }
                // Shown with its stored fields; not kept, as the overlay would then lack
                // this record's changes when it meets the next one.
                None => complete = false,
            },
        }
    }
    o.upto = last;
    Some((o, complete))
}

fn visible_json(record: &Record) -> Option<serde_json::Value> {
    serde_json::to_value(record.visible().ok()?).ok()
}

/// A record's document with `changes` applied to its stored one, and its visible
/// fields: what the materialiser will save (the same steps as its fold). All at once,
/// and one by one only if that fails, leaving out a change that does not apply as the
/// fold does (and quarantines it). `None` where the fold saves nothing: a stored
/// document that no longer loads keeps its stored fields.
fn apply(doc: Option<&[u8]>, changes: &[Vec<u8>]) -> Option<(Record, serde_json::Value)> {
    let load = || match doc {
        Some(bytes) => Record::load(bytes, new_actor(Side::Cloud)).ok(),
        None => Some(Record::new(new_actor(Side::Cloud))),
    };
    let mut record = load()?;
    if record.apply(changes).is_err() {
        record = load()?;
        for change in changes {
            let _ = record.apply(std::slice::from_ref(change));
        }
    }
    let fields = visible_json(&record)?;
    Some((record, fields))
}

#[cfg(test)]
#[path = "record_list_tests.rs"]
mod tests;
