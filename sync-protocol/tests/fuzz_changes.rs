//! Fuzz harness (issue 11, "Keep it attacked") for the change decoders a pushed or pulled
//! batch entry goes through: `rules::check_envelope`, `rules::check_authored` (the
//! cloud's push check) and `Record::apply` / `apply_in_order` / `visible` (the fold), on
//! arbitrary bytes and on mutated valid changes (plain and DEFLATE-compressed: automerge
//! compresses changes over 256 bytes). Nothing panics; what the push check accepts also
//! applies and shows without error. Saved documents (`Record::load`) get the same
//! treatment: they come from our own stores, but a damaged one must not take a process
//! down.
//!
//! 256 cases per property in `cargo test`; PROPTEST_CASES for long local runs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use garasi_sync_protocol::actor::{new_actor, ActorId, Side};
use garasi_sync_protocol::record::{FieldValue, Record};
use garasi_sync_protocol::rules::{check_authored, check_envelope};
use proptest::prelude::*;

/// Cases per property: small for CI, PROPTEST_CASES for long runs.
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

fn value() -> impl Strategy<Value = FieldValue> {
    prop_oneof![
        Just(FieldValue::Null),
        any::<bool>().prop_map(FieldValue::Bool),
        any::<i64>().prop_map(FieldValue::Int),
        any::<f64>().prop_map(FieldValue::Float),
        "\\PC{0,24}".prop_map(FieldValue::Text),
        // Long enough that automerge stores the change DEFLATE-compressed.
        (300usize..900).prop_map(|n| FieldValue::Text("x".repeat(n))),
    ]
}

/// A depot actor from the generator's bytes (not `new_actor`'s random ones), so a
/// persisted failing seed replays the same bytes.
fn depot_actor(rest: [u8; 15]) -> ActorId {
    let mut bytes = vec![0xD1];
    bytes.extend_from_slice(&rest);
    ActorId::from(&bytes[..])
}

/// One to three edits of one record by one depot; each edit's change, in order.
fn changes() -> impl Strategy<Value = Vec<Vec<u8>>> {
    (
        any::<[u8; 15]>(),
        proptest::collection::vec(
            proptest::collection::vec(("[a-z_]{1,8}", value()), 1..5),
            1..4,
        ),
    )
        .prop_map(move |(actor, edits)| {
            let mut r = Record::new(depot_actor(actor));
            edits
                .iter()
                .filter_map(|fields| {
                    let fields: Vec<(&str, FieldValue)> = fields
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.clone()))
                        .collect();
                    r.set(&fields).unwrap()
                })
                .collect()
        })
}

fn mutation() -> impl Strategy<Value = (u8, usize, u8)> {
    (0u8..5, any::<usize>(), any::<u8>())
}

fn mutate(bytes: &mut Vec<u8>, muts: &[(u8, usize, u8)]) {
    for &(kind, at, v) in muts {
        let len = bytes.len();
        match kind {
            0 if len > 0 => bytes[at % len] = v,
            1 if len > 0 => bytes[at % len] ^= 1 << (v % 8),
            2 => bytes.insert(at % (len + 1), v),
            3 if len > 0 => {
                bytes.remove(at % len);
            }
            4 => bytes.truncate(at % (len + 1)),
            _ => {}
        }
    }
}

/// Everything the cloud and a depot do with one incoming change; panics are the failure.
fn exercise(bytes: &[u8]) {
    let _ = check_envelope(bytes);
    if let Ok(checked) = check_authored(bytes, Side::Depot) {
        assert_eq!(checked.side, Side::Depot);
        // The cloud folds what it accepted. Some accepted changes do not apply (see the
        // regression above): the materialiser quarantines those, so only panics fail.
        let mut r = Record::new(new_actor(Side::Cloud));
        if r.apply(&[bytes.to_vec()]).is_ok() {
            r.visible().expect("an applied change shows");
        }
        let _ = r.malformed_fields();
    }
    let _ = check_authored(bytes, Side::Cloud);
    // A depot applies what it pulls, checked or not: errors are fine, panics are not.
    let mut r = Record::new(new_actor(Side::Depot));
    if r.apply_in_order(&[bytes.to_vec()]).is_ok() {
        let _ = r.visible();
        let _ = r.save();
    }
}

/// Regression (found by `mutated_changes`): a depot change with one byte edited (64:
/// 124 -> 4) passes the push check and applies, but automerge then panicked looking it
/// up by hash in `apply_in_order` (a depot pulling it back crashed its pull). Now refused.
#[test]
fn non_canonical_change_is_refused_not_a_panic() {
    let mut c: Vec<u8> = vec![
        133, 111, 74, 131, 64, 244, 213, 128, 1, 108, 0, 16, 209, 193, 102, 176, 136, 139, 123,
        195, 160, 72, 101, 225, 137, 139, 94, 18, 1, 1, 0, 0, 0, 6, 21, 15, 52, 1, 66, 2, 86, 7,
        87, 45, 112, 2, 124, 1, 95, 5, 97, 97, 97, 97, 95, 1, 97, 3, 97, 95, 95, 4, 4, 1, 124, 0,
        133, 1, 214, 4, 0, 0, 0, 0, 0, 0, 0, 0, 128, 32, 32, 65, 65, 240, 145, 181, 160, 97, 194,
        174, 97, 240, 158, 187, 176, 32, 32, 194, 174, 48, 65, 234, 159, 147, 97, 194, 161, 225,
        166, 176, 224, 168, 190, 224, 184, 191, 4, 0,
    ];
    c[64] = 4;
    let mut depot = Record::new(new_actor(Side::Depot));
    assert!(depot.apply_in_order(&[c]).is_err());
}

/// Regression (found by `mutated_changes`): a depot change (seq 2, no dependencies,
/// actor 00 D1 00..) passed the push check, then automerge panicked applying it, in the
/// cloud's fold and a depot's pull alike. The push check refuses it now, and applying it
/// anyway is an error that leaves the record unharmed.
#[test]
fn change_automerge_cannot_import_is_refused_not_a_panic() {
    let c: Vec<u8> = vec![
        133, 111, 74, 131, 115, 129, 102, 12, 1, 63, 0, 16, 0, 209, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 2, 1, 0, 0, 0, 6, 21, 10, 52, 1, 66, 2, 86, 4, 87, 8, 112, 2, 126, 5, 95, 97,
        97, 97, 95, 2, 95, 97, 2, 2, 1, 126, 133, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0,
    ];
    assert!(
        check_authored(&c, Side::Depot).is_err(),
        "the push check refuses a later change with no dependencies"
    );
    let mut r = Record::new(new_actor(Side::Cloud));
    r.set(&[("status", FieldValue::Text("ok".into()))]).unwrap();
    assert!(r.apply(std::slice::from_ref(&c)).is_err());
    assert!(r.apply_in_order(&[c]).is_err());
    let shown = r.visible().unwrap();
    assert_eq!(shown.get("status"), Some(&FieldValue::Text("ok".into())));
    r.set(&[("status", FieldValue::Text("still".into()))])
        .unwrap();
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        exercise(&bytes);
    }

    /// Arbitrary bytes behind an automerge change header (magic, any checksum, chunk type
    /// 1 or 2, a LEB128 length), so the parsers past the envelope see them.
    #[test]
    fn arbitrary_bytes_behind_a_change_header(
        compressed in any::<bool>(),
        checksum in any::<[u8; 4]>(),
        body in proptest::collection::vec(any::<u8>(), 0..300),
        lie in -4i64..4,
    ) {
        let mut bytes = vec![0x85, 0x6f, 0x4a, 0x83];
        bytes.extend_from_slice(&checksum);
        bytes.push(if compressed { 2 } else { 1 });
        let mut len = (body.len() as i64 + lie).max(0) as u64;
        loop {
            let b = (len & 0x7f) as u8;
            len >>= 7;
            bytes.push(if len == 0 { b } else { b | 0x80 });
            if len == 0 {
                break;
            }
        }
        bytes.extend(body);
        exercise(&bytes);
    }

    #[test]
    fn valid_depot_changes_pass_and_apply(cs in changes()) {
        let mut r = Record::new(new_actor(Side::Cloud));
        for c in &cs {
            prop_assert!(check_authored(c, Side::Depot).is_ok());
            prop_assert!(check_authored(c, Side::Cloud).is_err());
        }
        r.apply_in_order(&cs).unwrap();
        r.visible().unwrap();
    }

    #[test]
    fn mutated_changes(
        cs in changes(),
        pick in any::<usize>(),
        muts in proptest::collection::vec(mutation(), 1..6),
    ) {
        let mut bytes = cs[pick % cs.len()].clone();
        mutate(&mut bytes, &muts);
        let run = std::panic::catch_unwind(|| exercise(&bytes));
        prop_assert!(run.is_ok(), "panicked on change {bytes:?}");
    }

    /// A damaged saved document: `Record::load` errs or loads, never panics.
    #[test]
    fn mutated_documents(
        cs in changes(),
        muts in proptest::collection::vec(mutation(), 1..6),
    ) {
        let mut r = Record::new(new_actor(Side::Depot));
        r.apply(&cs).unwrap();
        let mut doc = r.save();
        mutate(&mut doc, &muts);
        if let Ok(mut loaded) = Record::load(&doc, new_actor(Side::Cloud)) {
            let _ = loaded.visible();
            let _ = loaded.missing_deps();
            let _ = loaded.changes_since(&[]);
        }
    }
}
