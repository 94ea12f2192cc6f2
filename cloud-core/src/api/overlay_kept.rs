//! What a record list applied on top of the materialised records, kept for the next
//! list of the same depot and type while the materialiser is behind. During a reconnect
//! storm a depot's unfolded changes can number hundreds, and every list loaded each
//! record's document and applied all of them again (tens of ms of CPU on saturated
//! cores); with this, a list applies only the changes stored since the last one.
//!
//! An overlay holds, for every record with changes past the materialiser's position
//! when it was first built, the document with every change of the type up to `upto`
//! applied. It stays valid while the materialiser's position is at most `upto`: the
//! materialised document of any other record then has every change it has up to
//! `upto`. Changes are applied in any order to the same result (automerge), and a
//! depot's cursor never shows a change behind one already passed (issue 14's cursors).

use std::collections::HashMap;

use garasi_sync_protocol::record::Record;
use parking_lot::Mutex;

/// Overlays kept at most (one per depot and type listed while behind); past it one is
/// dropped, and the next list of that depot builds its own again.
const KEPT: usize = 32;

pub(super) struct Overlay {
    /// Every change of the type up to this cursor is applied.
    pub upto: i64,
    /// By record id: its document with the changes applied, and its visible fields.
    pub records: HashMap<String, (Record, serde_json::Value)>,
}

#[derive(Default)]
pub struct KeptOverlays {
    entries: Mutex<HashMap<(String, String), Overlay>>,
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
        let o = self.entries.lock().remove(&key)?;
        (materialised <= o.upto && o.upto <= last).then_some(o)
    }

    pub(super) fn keep(&self, depot: &str, record_type: &str, overlay: Overlay) {
        let mut entries = self.entries.lock();
        let key = (depot.to_string(), record_type.to_string());
        if entries.len() >= KEPT && !entries.contains_key(&key) {
            if let Some(any) = entries.keys().next().cloned() {
                entries.remove(&any);
            }
        }
        entries.insert(key, overlay);
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
