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
/// Largest change once inflated: automerge DEFLATEs changes over 256 bytes, and DEFLATE
/// expands up to ~1000x, so a small compressed change could otherwise cost gigabytes.
pub const MAX_INFLATED_BYTES: usize = 1024 * 1024;

/// automerge chunk header: magic, checksum, then the chunk type.
const CHUNK_TYPE_AT: usize = 8;
const CHUNK_CHANGE: u8 = 1;
const CHUNK_COMPRESSED_CHANGE: u8 = 2;

/// Whether `bytes` is a plain (not compressed) change chunk: its size is then what it
/// costs to apply, where a compressed one may inflate to [`MAX_INFLATED_BYTES`].
pub fn plain_change(bytes: &[u8]) -> bool {
    bytes.get(CHUNK_TYPE_AT) == Some(&CHUNK_CHANGE)
}

/// Checks a change chunk's envelope before automerge parses it: a change (plain or
/// compressed), and a compressed one inflates to at most [`MAX_INFLATED_BYTES`],
/// measured with a bounded reader (automerge itself inflates without a limit).
/// Returns the change's size once inflated.
pub fn check_envelope(bytes: &[u8]) -> Result<usize, RecordError> {
    let bad = |what: &str| RecordError::BadChange(what.to_string());
    match bytes.get(CHUNK_TYPE_AT) {
        Some(&CHUNK_CHANGE) => Ok(bytes.len()),
        Some(&CHUNK_COMPRESSED_CHANGE) => {
            // Length of the compressed data: unsigned LEB128 after the type byte.
            let (mut len, mut shift, mut at) = (0u64, 0u32, CHUNK_TYPE_AT + 1);
            loop {
                let b = *bytes.get(at).ok_or_else(|| bad("truncated chunk header"))?;
                at += 1;
                len |= u64::from(b & 0x7f) << shift;
                if b & 0x80 == 0 {
                    break;
                }
                shift += 7;
                if shift > 56 {
                    return Err(bad("chunk length is malformed"));
                }
            }
            let end = usize::try_from(len)
                .ok()
                .and_then(|l| at.checked_add(l))
                .filter(|e| *e <= bytes.len())
                .ok_or_else(|| bad("chunk length runs past the change"))?;
            let mut inflated = Vec::new();
            let read = std::io::Read::read_to_end(
                &mut std::io::Read::take(
                    flate2::read::DeflateDecoder::new(&bytes[at..end]),
                    MAX_INFLATED_BYTES as u64 + 1,
                ),
                &mut inflated,
            )
            .map_err(|e| bad(&format!("compressed change does not inflate: {e}")))?;
            if read > MAX_INFLATED_BYTES {
                return Err(RecordError::Forbidden(format!(
                    "the change inflates to more than {MAX_INFLATED_BYTES} bytes"
                )));
            }
            Ok(read)
        }
        Some(_) => Err(bad("not a change chunk")),
        None => Err(bad("truncated chunk header")),
    }
}

/// What a checked change says about itself.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedChange {
    pub side: Side,
    /// The change's actor and sequence number: two different changes with the same pair
    /// are a fork of that actor, which automerge cannot apply.
    pub actor: Vec<u8>,
    pub seq: u64,
    /// Size once inflated (what a batch's inflate budget counts).
    pub inflated: usize,
}

/// Decodes one change and checks that `side` authored it and that it only holds scalar
/// puts and deletes on root-map keys. Never panics on hostile bytes.
pub fn check_authored(bytes: &[u8], side: Side) -> Result<CheckedChange, RecordError> {
    let inflated = check_envelope(bytes)?;
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
    // An actor's later change always depends on its earlier one; one that claims a
    // later sequence number with no dependencies cannot be real, and automerge panicked
    // applying such a change (found by the fuzz harness).
    if change.seq() > 1 && change.deps().is_empty() {
        return Err(RecordError::BadChange(format!(
            "change {} of its actor names no change it depends on",
            change.seq()
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
        inflated,
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

    /// Review finding: a 49 KB compressed change inflated to ~160 MiB inside automerge
    /// before any check. Honest changes over 256 bytes are compressed too and pass.
    #[test]
    fn compressed_changes_are_measured_before_automerge_inflates_them() {
        let mut r = Record::new(new_actor(Side::Depot));
        let long = r
            .set(&[("note", FieldValue::Text("lorem ipsum ".repeat(100)))])
            .unwrap()
            .unwrap();
        assert_eq!(
            long[CHUNK_TYPE_AT], CHUNK_COMPRESSED_CHANGE,
            "automerge compressed it"
        );
        check_authored(&long, Side::Depot).unwrap();
        // A compressed chunk whose data inflates past the cap (checksum irrelevant: the
        // envelope is refused before automerge reads it).
        let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
        std::io::Write::write_all(&mut enc, &vec![0u8; 2 * MAX_INFLATED_BYTES]).unwrap();
        let data = enc.finish().unwrap();
        let mut bomb = vec![0x85, 0x6f, 0x4a, 0x83, 0, 0, 0, 0, CHUNK_COMPRESSED_CHANGE];
        let mut n = data.len();
        loop {
            let b = (n & 0x7f) as u8;
            n >>= 7;
            bomb.push(if n > 0 { b | 0x80 } else { b });
            if n == 0 {
                break;
            }
        }
        bomb.extend(&data);
        assert!(bomb.len() < 4096);
        assert!(matches!(
            check_authored(&bomb, Side::Depot),
            Err(RecordError::Forbidden(_))
        ));
        let mut doc_chunk = long.clone();
        doc_chunk[CHUNK_TYPE_AT] = 0;
        assert!(matches!(
            check_authored(&doc_chunk, Side::Depot),
            Err(RecordError::BadChange(_))
        ));
        assert!(check_authored(&long[..12], Side::Depot).is_err());
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
