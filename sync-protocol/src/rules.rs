//! What a change may contain and who may author it. Records are flat maps of scalars,
//! so a valid change only puts scalars on (or deletes) keys of the root map. The cloud
//! runs [`check_authored`] on every change a depot pushes, so a change tagged as the
//! cloud's (see [`crate::actor`]) can only have been made by the cloud, and no change
//! that the fold could not show (an object, a list, a text object, a counter) is stored.

use automerge::{legacy, Change, ScalarValue};

use crate::actor::{side_of, Side};
use crate::record::RecordError;

/// Most operations one change may carry (records have a handful of fields).
pub const MAX_OPS_PER_CHANGE: usize = 256;
/// Longest field name, in bytes.
pub const MAX_FIELD_NAME: usize = 64;
/// Longest text value, in bytes (notes and labels are far shorter).
pub const MAX_TEXT_BYTES: usize = 16 * 1024;

/// What a checked change says about itself.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedChange {
    pub side: Side,
    /// The change's actor and sequence number: two different changes with the same pair
    /// are a fork of that actor, which automerge cannot apply.
    pub actor: Vec<u8>,
    pub seq: u64,
}

/// Decodes one change and checks that `side` authored it and that it only holds scalar
/// puts and deletes on root-map keys. Never panics on hostile bytes.
pub fn check_authored(bytes: &[u8], side: Side) -> Result<CheckedChange, RecordError> {
    let change =
        Change::from_bytes(bytes.to_vec()).map_err(|e| RecordError::BadChange(e.to_string()))?;
    let actual = side_of(change.actor_id());
    if actual != side {
        return Err(RecordError::Forbidden(format!(
            "the change's actor is tagged {actual:?}; only {side:?} changes are accepted here"
        )));
    }
    if change.len() > MAX_OPS_PER_CHANGE {
        return Err(RecordError::Forbidden(format!(
            "the change has {} operations; the limit is {MAX_OPS_PER_CHANGE}",
            change.len()
        )));
    }
    // Expanding a change is automerge's own code on bytes it has already parsed; a panic
    // there must still not take the server down with it.
    let expanded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| change.decode()))
        .map_err(|_| RecordError::BadChange("the change's operations do not decode".into()))?;
    for op in &expanded.operations {
        check_op(op)?;
    }
    Ok(CheckedChange {
        side: actual,
        actor: change.actor_id().to_bytes().to_vec(),
        seq: change.seq(),
    })
}

fn check_op(op: &legacy::Op) -> Result<(), RecordError> {
    let field = match (&op.obj, &op.key, op.insert) {
        (legacy::ObjectId::Root, legacy::Key::Map(k), false) => k.as_str(),
        _ => {
            return Err(RecordError::Forbidden(
                "records are flat: operations may only touch keys of the root map".into(),
            ))
        }
    };
    if field.is_empty()
        || field.len() > MAX_FIELD_NAME
        || !field
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_')
    {
        return Err(RecordError::Forbidden(format!(
            "field name {:?} is not 1-{MAX_FIELD_NAME} ASCII letters, digits or '_'",
            field.chars().take(MAX_FIELD_NAME).collect::<String>()
        )));
    }
    match &op.action {
        legacy::OpType::Delete => Ok(()),
        legacy::OpType::Put(v) => match v {
            ScalarValue::Null
            | ScalarValue::Boolean(_)
            | ScalarValue::Int(_)
            | ScalarValue::F64(_) => Ok(()),
            ScalarValue::Str(s) if s.len() <= MAX_TEXT_BYTES => Ok(()),
            ScalarValue::Str(s) => Err(RecordError::Forbidden(format!(
                "field {field:?} holds {} bytes of text; the limit is {MAX_TEXT_BYTES}",
                s.len()
            ))),
            other => Err(RecordError::NotScalar(format!(
                "{field} (a {} value)",
                scalar_kind(other)
            ))),
        },
        legacy::OpType::Make(t) => Err(RecordError::NotScalar(format!("{field} (a {t:?})"))),
        _ => Err(RecordError::NotScalar(format!(
            "{field} (a counter or mark operation)"
        ))),
    }
}

fn scalar_kind(v: &ScalarValue) -> &'static str {
    match v {
        ScalarValue::Bytes(_) => "bytes",
        ScalarValue::Uint(_) => "uint",
        ScalarValue::Counter(_) => "counter",
        ScalarValue::Timestamp(_) => "timestamp",
        ScalarValue::Unknown { .. } => "unknown",
        _ => "scalar",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actor::new_actor;
    use crate::record::{FieldValue, Record};
    use automerge::{transaction::Transactable, AutoCommit, ObjType, ROOT};

    fn last_change(doc: &mut AutoCommit) -> Vec<u8> {
        doc.get_last_local_change().unwrap().bytes().into_owned()
    }

    #[test]
    fn scalar_changes_by_the_right_side_pass() {
        let mut r = Record::new(new_actor(Side::Depot));
        let c = r
            .set(&[
                ("status", FieldValue::Text("in_service".into())),
                ("n", FieldValue::Int(3)),
                ("x", FieldValue::Null),
            ])
            .unwrap()
            .unwrap();
        let ok = check_authored(&c, Side::Depot).unwrap();
        assert_eq!(ok.seq, 1);
        assert!(matches!(
            check_authored(&c, Side::Cloud),
            Err(RecordError::Forbidden(_))
        ));
    }

    #[test]
    fn objects_text_counters_and_nesting_are_refused() {
        let mut doc = AutoCommit::new().with_actor(new_actor(Side::Depot));
        doc.put_object(ROOT, "status", ObjType::Text).unwrap();
        assert!(matches!(
            check_authored(&last_change(&mut doc), Side::Depot),
            Err(RecordError::NotScalar(_))
        ));
        let mut doc = AutoCommit::new().with_actor(new_actor(Side::Depot));
        let m = doc.put_object(ROOT, "m", ObjType::Map).unwrap();
        doc.put(&m, "inner", 1).unwrap();
        assert!(check_authored(&last_change(&mut doc), Side::Depot).is_err());
        let mut doc = AutoCommit::new().with_actor(new_actor(Side::Depot));
        doc.put(ROOT, "c", ScalarValue::counter(1)).unwrap();
        assert!(matches!(
            check_authored(&last_change(&mut doc), Side::Depot),
            Err(RecordError::NotScalar(_))
        ));
        let mut doc = AutoCommit::new().with_actor(new_actor(Side::Depot));
        doc.put(ROOT, "bad name", 1).unwrap();
        assert!(matches!(
            check_authored(&last_change(&mut doc), Side::Depot),
            Err(RecordError::Forbidden(_))
        ));
        let mut doc = AutoCommit::new().with_actor(new_actor(Side::Depot));
        doc.put(ROOT, "note", "x".repeat(MAX_TEXT_BYTES + 1))
            .unwrap();
        assert!(check_authored(&last_change(&mut doc), Side::Depot).is_err());
        assert!(matches!(
            check_authored(&[0x85, 0x6f, 0x4a, 0x83, 1, 2, 3], Side::Depot),
            Err(RecordError::BadChange(_))
        ));
    }
}
