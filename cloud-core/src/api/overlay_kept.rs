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

/// Overlays kept at most (one per depot and type listed while behind); past it, or past
/// [`KEPT_TOTAL`], the ones kept longest ago are dropped, and the next list of such a
/// depot builds its own again. Enough for a dashboard going through a city's depots in
/// turn while another stays open (with 8, 16 depots in turn dropped each other's, and
/// the open one's, so every list of them was cold).
const KEPT: usize = 64;
/// An overlay of more records than this is not kept (it would hold too much memory; the
/// next list builds its own).
pub(super) const KEPT_RECORDS: usize = 1_000;
/// Records held in all kept overlays together, at most: what bounds the memory
/// (documents of a few KiB to tens of KiB each), as 8 overlays of [`KEPT_RECORDS`] did.
const KEPT_TOTAL: usize = 8 * KEPT_RECORDS;
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
        // An empty one saves the next list nothing (it has no changes of the type to
        // apply), and would take a place: a day view lists four types per depot, and
        // an admin may ask for types that do not exist.
        if overlay.records.is_empty() || overlay.records.len() > KEPT_RECORDS {
            return;
        }
        let now = std::time::Instant::now();
        let mut entries = self.entries.lock();
        entries.retain(|_, (at, _)| now.duration_since(*at) < KEPT_FOR);
        let key = (depot.to_string(), record_type.to_string());
        entries.remove(&key);
        let mut held: usize = entries.values().map(|(_, o)| o.records.len()).sum();
        while entries.len() >= KEPT || held + overlay.records.len() > KEPT_TOTAL {
            let oldest = entries
                .iter()
                .min_by_key(|(_, (at, _))| *at)
                .map(|(k, _)| k.clone());
            let Some(dropped) = oldest.and_then(|k| entries.remove(&k)) else {
                break;
            };
            held -= dropped.1.records.len();
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

#[cfg(test)]
mod tests {
    use super::*;
    use garasi_sync_protocol::actor::{new_actor, Side};

    fn overlay(records: usize) -> Overlay {
        let actor = new_actor(Side::Cloud);
        Overlay {
            from: 0,
            upto: 1,
            records: (0..records)
                .map(|i| {
                    let record = Record::new(actor.clone());
                    (i.to_string(), (record, serde_json::Value::Null))
                })
                .collect(),
        }
    }

    #[test]
    fn sixteen_depots_in_turn_stay_kept() {
        let kept = KeptOverlays::default();
        for d in 0..17 {
            kept.keep(&format!("d{d}"), "vehicle_status", overlay(30));
        }
        assert_eq!(kept.len(), 17);
        assert!(kept.take("d0", "vehicle_status", 0, 1).is_some());
    }

    #[test]
    fn the_records_held_stay_bounded_and_the_oldest_go_first() {
        let kept = KeptOverlays::default();
        for d in 0..9 {
            kept.keep(&format!("d{d}"), "t", overlay(KEPT_RECORDS));
        }
        // 9,000 records asked, 8,000 allowed: the first one kept went.
        assert_eq!(kept.len(), 8);
        assert!(kept.take("d0", "t", 0, 1).is_none());
        assert!(kept.take("d1", "t", 0, 1).is_some());
        // Overlays past the count are dropped too, oldest first.
        let many = KeptOverlays::default();
        for d in 0..KEPT + 3 {
            many.keep(&format!("d{d}"), "t", overlay(1));
        }
        assert_eq!(many.len(), KEPT);
        assert!(many.take("d2", "t", 0, 1).is_none());
        assert!(many.take("d3", "t", 0, 1).is_some());
        // Keeping one again replaces it, without dropping another.
        many.keep("d4", "t", overlay(1));
        assert_eq!(many.len(), KEPT - 1);
    }
}
