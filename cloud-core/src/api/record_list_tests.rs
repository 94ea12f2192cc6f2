//! The record list shows every stored change without the materialiser having folded
//! it, and says when a depot is too far behind for one list to apply everything.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use garasi_sync_protocol::actor::{new_actor, Side};
use garasi_sync_protocol::record::{FieldValue, Record};

use super::{list_applying_at_most, list_up_to_date};
use crate::api::AppState;
use crate::store::sqlite::SqliteStore;
use crate::store::{ChangeIn, CloudStore};

thread_local! {
    /// Lists that applied their changes on the async thread (`list_applying_at_most`),
    /// counted per thread: a test's runtime runs its lists on the test's own thread.
    pub(super) static APPLIED_INLINE: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The API's state over a fresh SQLite store (its directory kept alive by the caller),
/// and one depot.
async fn cloud_with_a_depot() -> (tempfile::TempDir, AppState<SqliteStore>, String) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("cloud.db")).unwrap();
    store.migrate().await.unwrap();
    let s = AppState::new(Arc::new(store), Arc::from("admin-token-for-tests")).unwrap();
    let d = s.store.create_depot("D").await.unwrap().id;
    (dir, s, d)
}

/// The depot's vehicle statuses once the materialiser has folded everything (checked).
async fn folded(s: &AppState<SqliteStore>, d: &str) -> super::RecordList {
    s.materialiser.catch_up().await.unwrap();
    let list = list_up_to_date(s, d, "vehicle_status").await.unwrap();
    assert_eq!(list.freshness.changes_behind, 0, "everything folded");
    list
}

fn status(record: &mut Record, id: &str, status: &str) -> ChangeIn {
    let change = record
        .set(&[("status", FieldValue::Text(status.into()))])
        .unwrap()
        .unwrap();
    ChangeIn {
        record_type: "vehicle_status".into(),
        record_id: id.into(),
        change,
    }
}

#[tokio::test]
async fn a_list_shows_changes_the_materialiser_has_not_folded() {
    let (_dir, s, d) = cloud_with_a_depot().await;
    let (mut bus1, mut bus2) = (
        Record::new(new_actor(Side::Depot)),
        Record::new(new_actor(Side::Depot)),
    );
    let c1 = status(&mut bus1, "bus-1", "in_service");
    s.store.push(&d, 1, &[c1], &[]).await.unwrap();
    // Nothing folded (no materialiser runs here): the list applies the change itself.
    let list = list_up_to_date(&s, &d, "vehicle_status").await.unwrap();
    assert!(list.freshness.changes_behind > 0, "nothing was folded");
    assert!(list.up_to_date);
    assert_eq!(list.records["bus-1"]["status"], "in_service");
    // Folded, then a later change on top of the stored document, and a new record.
    s.materialiser.catch_up().await.unwrap();
    let c2 = status(&mut bus1, "bus-1", "in_maintenance");
    let c3 = status(&mut bus2, "bus-2", "out_of_service");
    s.store.push(&d, 2, &[c2, c3], &[]).await.unwrap();
    let list = list_up_to_date(&s, &d, "vehicle_status").await.unwrap();
    assert_eq!(list.records["bus-1"]["status"], "in_maintenance");
    assert_eq!(list.records["bus-2"]["status"], "out_of_service");
    // Other types are not shown in this list.
    assert_eq!(list.records.len(), 2);
    // Too far behind for one list: a prefix, and it says so.
    let list = list_applying_at_most(&s, &d, "vehicle_status", 1)
        .await
        .unwrap();
    assert!(!list.up_to_date);
    assert_eq!(list.records["bus-1"]["status"], "in_maintenance");
    assert!(!list.records.contains_key("bus-2"), "{:?}", list.records);
    // Once folded, the stored fields alone say the same.
    let list = folded(&s, &d).await;
    assert_eq!(list.records["bus-2"]["status"], "out_of_service");
}

/// What a list shows before the fold is what it shows after: for a record whose new
/// field holds a nested object (shown without it), a change waiting for one that was
/// never stored (held), a change that is not automerge at all, and plain ones.
#[tokio::test]
async fn a_list_before_the_fold_shows_what_the_fold_saves() {
    use automerge::{transaction::Transactable, AutoCommit, ObjType, ROOT};
    let (_dir, s, d) = cloud_with_a_depot().await;
    let change = |id: &str, change: Vec<u8>| ChangeIn {
        record_type: "vehicle_status".into(),
        record_id: id.into(),
        change,
    };
    let mut ok = Record::new(new_actor(Side::Depot));
    let plain = status(&mut ok, "bus-ok", "in_service");
    // A nested object in a field (legacy data the push check now refuses).
    let mut doc = AutoCommit::new().with_actor(new_actor(Side::Depot));
    doc.put(ROOT, "note", "fine").unwrap();
    let t = doc.put_object(ROOT, "status", ObjType::Text).unwrap();
    doc.splice_text(&t, 0, 0, "broken").unwrap();
    let nested = doc.get_last_local_change().unwrap().bytes().into_owned();
    // A second change whose first never arrived.
    let mut held = Record::new(new_actor(Side::Depot));
    status(&mut held, "bus-held", "in_service");
    let second = status(&mut held, "bus-held", "in_maintenance").change;
    s.store
        .push(
            &d,
            1,
            &[
                plain,
                change("bus-nested", nested),
                change("bus-held", second),
                change("bus-junk", vec![0x85, 0x6f, 1, 2, 3]),
            ],
            &[],
        )
        .await
        .unwrap();
    let before = list_up_to_date(&s, &d, "vehicle_status").await.unwrap();
    assert!(before.freshness.changes_behind > 0, "nothing folded yet");
    let after = folded(&s, &d).await;
    assert_eq!(
        before.records, after.records,
        "the fold saved what the list showed"
    );
    assert_eq!(after.records["bus-ok"]["status"], "in_service");
    assert_eq!(after.records["bus-nested"]["note"], "fine");
}

/// With every overlay permit taken (lists of a storm applying changes), a list does
/// not queue: it answers from the materialised fields and says it is not up to date.
#[tokio::test]
async fn a_list_finding_no_overlay_free_answers_at_once() {
    let (_dir, s, d) = cloud_with_a_depot().await;
    let mut bus = Record::new(new_actor(Side::Depot));
    s.store
        .push(&d, 1, &[status(&mut bus, "bus-1", "in_service")], &[])
        .await
        .unwrap();
    let all = s
        .overlays
        .clone()
        .acquire_many_owned(super::CONCURRENT_OVERLAYS as u32)
        .await
        .unwrap();
    let list = list_up_to_date(&s, &d, "vehicle_status").await.unwrap();
    assert!(!list.up_to_date);
    assert!(
        list.records.is_empty(),
        "nothing folded yet: {:?}",
        list.records
    );
    drop(all);
    let list = list_up_to_date(&s, &d, "vehicle_status").await.unwrap();
    assert!(list.up_to_date);
    assert_eq!(list.records["bus-1"]["status"], "in_service");
}

/// While the materialiser is behind, a list keeps what it applied, and the next applies
/// only what was stored since: the same as a list built afresh, with a junk change among
/// the new ones too; once the materialiser has passed it, the kept overlay is dropped.
#[tokio::test]
async fn a_kept_overlay_shows_what_a_fresh_list_and_the_fold_show() {
    let (_dir, s, d) = cloud_with_a_depot().await;
    let (mut bus1, mut bus2, mut bus4) = (
        Record::new(new_actor(Side::Depot)),
        Record::new(new_actor(Side::Depot)),
        Record::new(new_actor(Side::Depot)),
    );
    let (c1, c2) = (
        status(&mut bus1, "bus-1", "in_service"),
        status(&mut bus2, "bus-2", "out_of_service"),
    );
    s.store.push(&d, 1, &[c1, c2], &[]).await.unwrap();
    let first = list_up_to_date(&s, &d, "vehicle_status").await.unwrap();
    assert_eq!(first.records["bus-1"]["status"], "in_service");
    // A marker in the kept overlay shows whether the next list used it.
    let (m, l) = (first.freshness.materialised_cursor, i64::MAX);
    let mut kept = s.kept_overlays.take(&d, "vehicle_status", m, l).unwrap();
    kept.records.get_mut("bus-2").unwrap().1["status"] = "kept".into();
    s.kept_overlays.keep(&d, "vehicle_status", kept);
    let junk = ChangeIn {
        record_type: "vehicle_status".into(),
        record_id: "bus-1".into(),
        change: vec![0x85, 0x6f, 1, 2, 3],
    };
    let more = [
        status(&mut bus1, "bus-1", "in_maintenance"),
        status(&mut bus4, "bus-4", "in_service"),
    ];
    s.store.push(&d, 2, &more, &[]).await.unwrap();
    let second = list_up_to_date(&s, &d, "vehicle_status").await.unwrap();
    assert_eq!(
        second.records["bus-2"]["status"], "kept",
        "the kept overlay was used"
    );
    assert_eq!(second.records["bus-1"]["status"], "in_maintenance");
    assert_eq!(second.records["bus-4"]["status"], "in_service");
    // An overlay first built from a later materialiser position than a snapshot's (that
    // list read its snapshot before the fold moved) does not serve it: records changed
    // in between are not in it.
    let l = second.freshness.last_cursor;
    let mut kept = s.kept_overlays.take(&d, "vehicle_status", 0, l).unwrap();
    assert_eq!(kept.upto, l);
    kept.from = 1;
    s.kept_overlays.keep(&d, "vehicle_status", kept);
    let unkept = list_up_to_date(&s, &d, "vehicle_status").await.unwrap();
    assert_eq!(
        unkept.records["bus-2"]["status"], "out_of_service",
        "built afresh"
    );
    // A junk change among the new ones: that list is built afresh, as without keeping.
    s.store
        .push(
            &d,
            3,
            &[junk, status(&mut bus2, "bus-2", "in_service")],
            &[],
        )
        .await
        .unwrap();
    let third = list_up_to_date(&s, &d, "vehicle_status").await.unwrap();
    s.kept_overlays.forget(&d, "vehicle_status");
    let fresh = list_up_to_date(&s, &d, "vehicle_status").await.unwrap();
    assert_eq!(third.records, fresh.records);
    assert_eq!(third.records["bus-2"]["status"], "in_service");
    // The materialiser passes it: the kept overlay is no longer taken, and dropped.
    let after = folded(&s, &d).await;
    assert_eq!(
        after.records, fresh.records,
        "the fold saved what the lists showed"
    );
    assert_eq!(s.kept_overlays.len(), 0);
}

/// More unfolded changes than a list applies inline go to a blocking thread, a few on
/// top of a kept overlay are applied inline; both show what the fold then saves.
#[tokio::test]
async fn lists_applied_inline_or_on_a_blocking_thread_show_the_fold() {
    let (_dir, s, d) = cloud_with_a_depot().await;
    let mut buses: Vec<Record> = (0..40)
        .map(|_| Record::new(new_actor(Side::Depot)))
        .collect();
    let mut changes = Vec::new();
    for (i, bus) in buses.iter_mut().enumerate() {
        changes.push(status(bus, &format!("bus-{i}"), "in_service"));
        changes.push(status(bus, &format!("bus-{i}"), "in_maintenance"));
    }
    assert!(changes.len() > super::APPLY_INLINE);
    s.store.push(&d, 1, &changes, &[]).await.unwrap();
    let inline = || APPLIED_INLINE.with(std::cell::Cell::get);
    let many = list_up_to_date(&s, &d, "vehicle_status").await.unwrap();
    assert_eq!(inline(), 0, "80 changes applied on a blocking thread");
    assert_eq!(many.freshness.changes_behind, 80);
    assert_eq!(many.records.len(), 40);
    assert_eq!(
        s.kept_overlays.len(),
        1,
        "the blocking thread's overlay kept"
    );
    // Three more, applied inline on the kept overlay.
    let few: Vec<ChangeIn> = (0..3)
        .map(|i| status(&mut buses[i], &format!("bus-{i}"), "out_of_service"))
        .collect();
    s.store.push(&d, 2, &few, &[]).await.unwrap();
    let after_few = list_up_to_date(&s, &d, "vehicle_status").await.unwrap();
    // Inline only with the kept overlay: without it, 83 changes to apply.
    assert_eq!(inline(), 1, "3 changes on the kept overlay applied inline");
    assert!(after_few.up_to_date);
    assert_eq!(after_few.records["bus-0"]["status"], "out_of_service");
    assert_eq!(after_few.records["bus-39"]["status"], "in_maintenance");
    assert_eq!(
        after_few.records,
        folded(&s, &d).await.records,
        "the fold saved what the lists showed"
    );
}

/// What a list applies on the async thread is bounded: a compressed change (it may
/// inflate to 1 MiB), more than 32 changes, or big documents to load go to a blocking
/// thread.
#[test]
fn only_little_work_is_applied_inline() {
    use super::{little, APPLY_INLINE, APPLY_INLINE_BYTES};
    let mut bus = Record::new(new_actor(Side::Depot));
    let small = status(&mut bus, "bus-1", "in_service").change;
    let long = status(&mut bus, "bus-1", &"x".repeat(4_000)).change;
    assert!(garasi_sync_protocol::rules::plain_change(&small));
    assert!(
        !garasi_sync_protocol::rules::plain_change(&long),
        "automerge compressed it"
    );
    let none = std::collections::HashMap::new();
    let one = |c: &Vec<u8>| vec![(1, "bus-1".to_string(), c.clone())];
    assert!(little(None, &none, &one(&small)));
    assert!(!little(None, &none, &one(&long)));
    let many: Vec<_> = (0..=APPLY_INLINE as i64)
        .map(|i| (i, format!("bus-{i}"), small.clone()))
        .collect();
    assert!(little(None, &none, &many[..APPLY_INLINE]));
    assert!(!little(None, &none, &many));
    let big_doc =
        std::collections::HashMap::from([("bus-1".to_string(), vec![0u8; APPLY_INLINE_BYTES])]);
    assert!(
        !little(None, &big_doc, &one(&small)),
        "a big document to load"
    );
}
