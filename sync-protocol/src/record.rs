//! Operational records as automerge documents: flat maps of scalar fields. Concurrent
//! edits of different fields both survive; on a true conflict on one field the visible
//! value is a cloud-written one if there is one, otherwise automerge's own winner.

use std::collections::BTreeMap;

use automerge::{
    transaction::Transactable, ActorId, AutoCommit, Change, ChangeHash, ReadDoc, ScalarValue,
    Value, ROOT,
};
use serde::{Deserialize, Serialize};

use crate::actor::{side_of, Side};

/// A field value. Records are flat: nested data belongs in its own record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FieldValue {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("automerge: {0}")]
    Automerge(#[from] automerge::AutomergeError),
    #[error("a change could not be decoded: {0}")]
    BadChange(String),
    #[error("field {0:?} holds a nested object; records are flat maps of scalars")]
    NotScalar(String),
    #[error("change refused: {0}")]
    Forbidden(String),
    #[error("{0} change(s) wait for changes they depend on (set aside or never stored)")]
    MissingDeps(usize),
}

impl From<FieldValue> for ScalarValue {
    fn from(v: FieldValue) -> Self {
        match v {
            FieldValue::Null => ScalarValue::Null,
            FieldValue::Bool(b) => ScalarValue::Boolean(b),
            FieldValue::Int(i) => ScalarValue::Int(i),
            FieldValue::Float(f) => ScalarValue::F64(f),
            FieldValue::Text(s) => ScalarValue::Str(s.into()),
        }
    }
}

fn field_value(v: &ScalarValue) -> FieldValue {
    match v {
        ScalarValue::Null => FieldValue::Null,
        ScalarValue::Boolean(b) => FieldValue::Bool(*b),
        ScalarValue::Int(i) => FieldValue::Int(*i),
        ScalarValue::Uint(u) => FieldValue::Int(i64::try_from(*u).unwrap_or(i64::MAX)),
        ScalarValue::F64(f) => FieldValue::Float(*f),
        ScalarValue::Counter(c) => FieldValue::Int(i64::from(c)),
        ScalarValue::Timestamp(t) => FieldValue::Int(*t),
        ScalarValue::Str(s) => FieldValue::Text(s.to_string()),
        ScalarValue::Bytes(_) | ScalarValue::Unknown { .. } => FieldValue::Null,
    }
}

/// One replica of one record.
pub struct Record {
    doc: AutoCommit,
}

impl Record {
    /// An empty record edited by `actor` (see [`crate::actor::new_actor`]).
    pub fn new(actor: ActorId) -> Self {
        Record {
            doc: AutoCommit::new().with_actor(actor),
        }
    }

    /// Loads a saved record; further edits are by `actor`.
    pub fn load(bytes: &[u8], actor: ActorId) -> Result<Self, RecordError> {
        Ok(Record {
            doc: AutoCommit::load(bytes)?.with_actor(actor),
        })
    }

    pub fn save(&mut self) -> Vec<u8> {
        self.doc.save()
    }

    /// Writes fields in one change; returns the encoded change (what goes into the outbox).
    ///
    /// Every field written gets an operation of this actor, even when some replica's
    /// value already equals it. Automerge would otherwise skip the write, or turn it into
    /// a delete of the other conflicting values, keeping the *other* actor's op: a cloud
    /// write of a value that lost an earlier conflict would then not count as the cloud's,
    /// and a concurrent depot edit would beat it. The merge rule is decided on who wrote
    /// the surviving operations, so a write must always leave one.
    pub fn set(&mut self, fields: &[(&str, FieldValue)]) -> Result<Option<Vec<u8>>, RecordError> {
        for (k, v) in fields {
            let new = ScalarValue::from(v.clone());
            let equal_present = self
                .doc
                .get_all(ROOT, *k)?
                .iter()
                .any(|(val, _)| matches!(val, Value::Scalar(s) if s.as_ref() == &new));
            if equal_present {
                // Delete every current op, then put ours: the put has no predecessors,
                // so it stands as this actor's value (concurrent with anything unseen).
                self.doc.delete(ROOT, *k)?;
            }
            self.doc.put(ROOT, *k, new)?;
        }
        Ok(self
            .doc
            .get_last_local_change()
            .map(|mut c| c.bytes().into_owned()))
    }

    /// Writes only the fields whose visible value differs (republishing master data
    /// costs nothing when nothing changed). `None` when every field was already so.
    pub fn set_changed(
        &mut self,
        fields: &[(&str, FieldValue)],
    ) -> Result<Option<Vec<u8>>, RecordError> {
        let now = self.visible()?;
        let changed: Vec<(&str, FieldValue)> = fields
            .iter()
            .filter(|(k, v)| now.get(*k) != Some(v))
            .cloned()
            .collect();
        if changed.is_empty() {
            return Ok(None);
        }
        self.set(&changed)
    }

    pub fn heads(&mut self) -> Vec<ChangeHash> {
        self.doc.get_heads()
    }

    /// Encoded changes this replica has beyond `have` (all of them for `&[]`).
    pub fn changes_since(&mut self, have: &[ChangeHash]) -> Vec<Vec<u8>> {
        self.doc
            .get_changes(have)
            .into_iter()
            .map(|mut c| c.bytes().into_owned())
            .collect()
    }

    /// Dependencies of held changes that have not arrived (0 when nothing is held).
    /// Held changes are not part of a saved record, so savers check this first.
    pub fn missing_deps(&mut self) -> usize {
        self.doc.get_missing_deps(&[]).len()
    }

    /// Applies encoded changes. Duplicates are ignored; a change whose dependencies
    /// have not arrived yet is held until they do (so delivery order does not matter).
    pub fn apply(&mut self, changes: &[Vec<u8>]) -> Result<(), RecordError> {
        let decoded = changes
            .iter()
            .map(|b| {
                let _inflated = crate::rules::check_envelope(b)?;
                Change::from_bytes(b.clone()).map_err(|e| RecordError::BadChange(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        // automerge panics on some changes that parse and pass the push check (a depot
        // change with seq 2 and no dependencies: found by tests/fuzz_changes.rs), which
        // would take down the cloud's fold or a depot's pull. Such a change is an error,
        // and the document is put back as it was before the failed apply.
        let before = self.doc.clone();
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.doc.apply_changes(decoded)
        })) {
            Ok(applied) => applied?,
            Err(_) => {
                self.doc = before;
                return Err(RecordError::BadChange(
                    "automerge cannot apply the change".into(),
                ));
            }
        }
        Ok(())
    }

    /// The visible record: per field, a concurrent cloud-written value wins; among
    /// several (or none from the cloud) automerge's ordering decides, which is the same
    /// on every replica with the same changes. Values that are not scalars (objects a
    /// change should never have made: see [`crate::rules`]) are passed over, so such a
    /// field shows its scalar value, or nothing; [`Record::malformed_fields`] names them.
    pub fn visible(&self) -> Result<BTreeMap<String, FieldValue>, RecordError> {
        let mut out = BTreeMap::new();
        for key in self.doc.keys(ROOT) {
            let all = self.doc.get_all(ROOT, key.as_str())?;
            let pick = |only_cloud: bool| {
                all.iter()
                    .filter_map(|(v, id)| match (v, id) {
                        (Value::Scalar(s), automerge::ObjId::Id(counter, actor, _)) => {
                            Some((s, *counter, actor))
                        }
                        _ => None,
                    })
                    .filter(|(_, _, actor)| !only_cloud || side_of(actor) == Side::Cloud)
                    // automerge's own winner: the greatest (counter, actor).
                    .max_by(|a, b| (a.1, a.2).cmp(&(b.1, b.2)))
                    .map(|(s, _, _)| field_value(s))
            };
            if let Some(v) = pick(true).or_else(|| pick(false)) {
                out.insert(key.clone(), v);
            }
        }
        Ok(out)
    }

    /// Fields holding a non-scalar value among their current values (nothing a valid
    /// change makes; kept from before the push check, or made by a foreign library).
    pub fn malformed_fields(&self) -> Result<Vec<String>, RecordError> {
        let mut out = Vec::new();
        for key in self.doc.keys(ROOT) {
            let all = self.doc.get_all(ROOT, key.as_str())?;
            if all.iter().any(|(v, _)| matches!(v, Value::Object(_))) {
                out.push(key);
            }
        }
        Ok(out)
    }

    /// Applies changes that must be complete: pulled in the cloud's order, each one's
    /// dependencies came before it. One that would wait for a dependency (set aside, or
    /// never stored) is an error instead of a change silently dropped on save.
    pub fn apply_in_order(&mut self, changes: &[Vec<u8>]) -> Result<(), RecordError> {
        self.apply(changes)?;
        // Held changes are kept in saved documents (automerge retains them), so only
        // the changes given here count: each must now be part of the history.
        // automerge panics in the look-up when a change applied but its bytes were not
        // canonical (one edited byte can do it, and the push check accepts it: found by
        // tests/fuzz_changes.rs), so the look-up runs under catch_unwind: such a change is
        // refused (a dead letter at a depot) rather than taking the pull down.
        let held = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            changes
                .iter()
                .filter_map(|b| Change::from_bytes(b.clone()).ok())
                .filter(|c| self.doc.get_change_by_hash(&c.hash()).is_none())
                .count()
        }))
        .map_err(|_| RecordError::BadChange("the change is not in canonical form".into()))?;
        match held {
            0 => Ok(()),
            n => Err(RecordError::MissingDeps(n)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actor::new_actor;

    fn sync(a: &mut Record, b: &mut Record) {
        let ab = a.changes_since(&[]);
        let ba = b.changes_since(&[]);
        b.apply(&ab).unwrap();
        a.apply(&ba).unwrap();
    }

    #[test]
    fn cloud_wins_a_true_conflict_and_different_fields_both_survive() {
        let mut cloud = Record::new(new_actor(Side::Cloud));
        cloud
            .set(&[
                ("status", FieldValue::Text("in_service".into())),
                ("note", FieldValue::Null),
            ])
            .unwrap();
        let mut depot = Record::new(new_actor(Side::Depot));
        depot.apply(&cloud.changes_since(&[])).unwrap();
        // Offline: both edit `status`; each edits one other field.
        depot
            .set(&[
                ("status", FieldValue::Text("out_of_service".into())),
                ("note", FieldValue::Text("brake".into())),
            ])
            .unwrap();
        cloud
            .set(&[
                ("status", FieldValue::Text("in_maintenance".into())),
                ("set_by", FieldValue::Text("admin".into())),
            ])
            .unwrap();
        sync(&mut cloud, &mut depot);
        let (v1, v2) = (cloud.visible().unwrap(), depot.visible().unwrap());
        assert_eq!(v1, v2);
        assert_eq!(
            v1["status"],
            FieldValue::Text("in_maintenance".into()),
            "cloud wins the conflict"
        );
        assert_eq!(v1["note"], FieldValue::Text("brake".into()));
        assert_eq!(v1["set_by"], FieldValue::Text("admin".into()));
        // A later depot edit that has seen the cloud's value is not a conflict: it stands.
        depot
            .set(&[("status", FieldValue::Text("in_service".into()))])
            .unwrap();
        sync(&mut cloud, &mut depot);
        assert_eq!(
            cloud.visible().unwrap()["status"],
            FieldValue::Text("in_service".into())
        );
    }

    /// Regression (issue 9, defect 3): after a conflict the cloud won, the cloud wrote the
    /// depot's old, losing value while the depot wrote another. Automerge saw a write
    /// equal to its own winner and kept the depot's op instead of making a cloud one, so
    /// the depot's concurrent value showed.
    #[test]
    fn a_cloud_write_of_an_earlier_losing_value_still_wins() {
        let status = |s: &str| [("status", FieldValue::Text(s.into()))];
        let mut cloud = Record::new(new_actor(Side::Cloud));
        cloud.set(&status("in_service")).unwrap();
        let mut depot = Record::new(new_actor(Side::Depot));
        depot.apply(&cloud.changes_since(&[])).unwrap();
        // Partition 1.
        cloud.set(&status("in_maintenance")).unwrap();
        depot.set(&status("out_of_service")).unwrap();
        sync(&mut cloud, &mut depot);
        assert_eq!(
            cloud.visible().unwrap()["status"],
            FieldValue::Text("in_maintenance".into())
        );
        // Partition 2: the cloud writes the value that lost, the depot another one.
        cloud.set(&status("out_of_service")).unwrap();
        depot.set(&status("in_service")).unwrap();
        sync(&mut cloud, &mut depot);
        assert_eq!(cloud.visible().unwrap(), depot.visible().unwrap());
        assert_eq!(
            cloud.visible().unwrap()["status"],
            FieldValue::Text("out_of_service".into()),
            "the cloud's concurrent write wins, whatever its value"
        );
        // Writing the value already shown still records the write (no silent skip).
        let before = cloud.heads();
        assert!(cloud.set(&status("out_of_service")).unwrap().is_some());
        assert_ne!(cloud.heads(), before);
        assert!(cloud
            .set_changed(&status("out_of_service"))
            .unwrap()
            .is_none());
    }

    #[test]
    fn save_load_and_garbage_changes() {
        let mut r = Record::new(new_actor(Side::Depot));
        r.set(&[
            ("a", FieldValue::Int(1)),
            ("b", FieldValue::Float(2.5)),
            ("c", FieldValue::Bool(true)),
        ])
        .unwrap();
        let saved = r.save();
        let mut back = Record::load(&saved, new_actor(Side::Depot)).unwrap();
        assert_eq!(back.visible().unwrap(), r.visible().unwrap());
        assert!(matches!(
            back.apply(&[vec![1, 2, 3]]),
            Err(RecordError::BadChange(_))
        ));
        assert_eq!(
            back.heads(),
            r.heads(),
            "a rejected change leaves the record as it was"
        );
    }
}
