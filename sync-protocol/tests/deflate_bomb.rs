//! Regression (issue 9, defect 7 class, found in review): an automerge change chunk may
//! be DEFLATE compressed (chunk type 2), and automerge 0.12 inflates it with an
//! unbounded `read_to_end` inside `Change::from_bytes`. A 358-byte push made
//! `rules::check_authored` grow peak RSS by 161 MiB before it refused the change. Now
//! the envelope is inflated with a bounded reader first (`rules::check_envelope`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use automerge::{transaction::Transactable, AutoCommit, ROOT};
use garasi_sync_protocol::actor::{new_actor, Side};
use garasi_sync_protocol::rules::check_authored;
use garasi_sync_protocol::wire::{self, Batch, Entry};

mod common;

/// Runs in a child process (fresh peak RSS): checks the change it is given.
#[test]
fn child_check() {
    if let Some(change) = common::child_input("GARASI_BOMB_PATH") {
        common::child_report(|| check_authored(&change, Side::Depot).is_err());
    }
}

#[test]
fn a_small_compressed_change_makes_check_authored_allocate_a_thousand_times_its_size() {
    // A depot-tagged change putting 48 MiB of 'a' in one field; Change::bytes() gives
    // automerge's compressed chunk form.
    let mut doc = AutoCommit::new().with_actor(new_actor(Side::Depot));
    doc.put(ROOT, "note", "a".repeat(48 * 1024 * 1024)).unwrap();
    doc.commit();
    let bomb = doc.get_last_local_change().unwrap().bytes().into_owned();
    drop(doc);
    assert_eq!(bomb[8], 2, "chunk type 2: compressed change");
    eprintln!("compressed change: {} bytes", bomb.len());
    assert!(
        bomb.len() < wire::MAX_CHANGE_BYTES / 8,
        "well under the per-change cap"
    );

    // It passes the wire decoder's checks (so it reaches check_authored at the cloud).
    let batch = Batch {
        depot: "d".into(),
        batch_seq: 1,
        entries: vec![Entry::Change {
            record_type: "vehicle_status".into(),
            record_id: "bus-1".into(),
            change: bomb.clone(),
        }],
    };
    let on_wire = wire::encode(&batch).unwrap();
    eprintln!("wire batch: {} bytes", on_wire.len());
    let decoded = wire::decode(&on_wire).expect("the wire decoder accepts it");
    let Entry::Change { change, .. } = &decoded.entries[0] else {
        panic!()
    };

    let (refused, grown_mib) = common::in_child("child_check", "GARASI_BOMB_PATH", change);
    assert!(refused, "refused in the end (text over 16 KiB)");
    eprintln!(
        "peak RSS grew by {grown_mib} MiB checking a {} byte change",
        change.len()
    );
    assert!(
        grown_mib < 16,
        "checking a {} byte change grew peak RSS by {grown_mib} MiB before refusing it",
        change.len()
    );
}
