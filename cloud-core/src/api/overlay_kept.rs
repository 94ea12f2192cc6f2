//! What a record list applied on top of the materialised records, kept for the next
//! list of the same depot and type while the materialiser is behind. During a reconnect
//! storm a depot's unfolded changes can number hundreds, and every list loaded each
//! record's document and applied all of them again (tens of ms of CPU on saturated
//! cores); with this, a list applies only the changes stored since the last one.
//!
//! An overlay holds, for every record with changes past `from` (the materialiser's
//! position in the snapshot it was first built from), the document with every change of
//! the type up to `upto` applied. It serves a snapshot folded up to `m` only if
//! `from <= m <= upto`: then the materialised document of any record not in it has every
//! change that record has up to `upto` (it had none in `(from, upto]`). A snapshot read
//! before the materialiser reached `from` (a list started earlier, or a slow one) must
//! not use it: records changed between its position and `from` are not in it. Changes
//! apply in any order to the same result (automerge), and a depot's cursor never shows a
//! change behind one already passed (issue 14's cursors).

use std::collections::HashMap;

use garasi_sync_protocol::record::Record;
use parking_lot::Mutex;

/// Overlays kept at most (one per depot and type listed while behind); past it the one
/// kept longest ago is dropped, and the next list of that depot builds its own again.
/// With [`KEPT_RECORDS`] this bounds what is held between lists (documents of a few KiB
/// to tens of KiB each).
const KEPT: usize = 8;
/// An overlay of more records than this is not kept (it would hold too much memory; the
/// next list builds its own).
pub(super) const KEPT_RECORDS: usize = 1_000;
/// Kept overlays nobody listed for this long are dropped.
const KEPT_FOR: std::time::Duration = std::time::Duration::from_secs(60);

pub(super) struct Overlay {
    /// The materialiser's position in the snapshot this overlay was first built from.
    pub from: i64,
    /// Every change of the type up to this cursor is applied.
    pub upto: i64,
    /// By record id: its document with the changes applied, and its visible fields.
    pub records: HashMap<String, (Record, serde_json::Value)>,
}

#[derive(Default)]
pub struct KeptOverlays {
    entries: Mutex<HashMap<(String, String), (std::time::Instant, Overlay)>>,
}

impl KeptOverlays {
    /// Takes the overlay of `depot`'s `record_type` if it is still valid for a snapshot
    /// folded up to `materialised` and stored up to `last`. Taken, not shared: a list
    /// running meanwhile builds its own.
    pub(super) fn take(
        &self,
        depot: &str,
        record_type: &str,
        materialised: i64,
        last: i64,
    ) -> Option<Overlay> {
        let key = (depot.to_string(), record_type.to_string());
        let (_, o) = self.entries.lock().remove(&key)?;
        (o.from <= materialised && materialised <= o.upto && o.upto <= last).then_some(o)
    }

    pub(super) fn keep(&self, depot: &str, record_type: &str, overlay: Overlay) {
        if overlay.records.len() > KEPT_RECORDS {
            return;
        }
        let now = std::time::Instant::now();
        let mut entries = self.entries.lock();
        entries.retain(|_, (at, _)| now.duration_since(*at) < KEPT_FOR);
        let key = (depot.to_string(), record_type.to_string());
        if entries.len() >= KEPT && !entries.contains_key(&key) {
            let oldest = entries
                .iter()
                .min_by_key(|(_, (at, _))| *at)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                entries.remove(&oldest);
            }
        }
        entries.insert(key, (now, overlay));
    }

    /// The materialiser caught up: the stored fields say it all.
    pub(super) fn forget(&self, depot: &str, record_type: &str) {
        let key = (depot.to_string(), record_type.to_string());
        self.entries.lock().remove(&key);
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.entries.lock().len()
    }
}
