//! Regression (issue 9, found in review): a record quarantined for a non-scalar field
//! was not saved at all, so its later changes waited forever for dependencies that were
//! never saved and the record froze at the cloud, even after the depot repaired the
//! field. Now the record folds without the bad value, is quarantined once, and later
//! changes (the repair included) show.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use automerge::{transaction::Transactable, AutoCommit, ObjType, ROOT};
use garasi_cloud::materialise::Materialiser;
use garasi_cloud::store::sqlite::SqliteStore;
use garasi_cloud::store::{ChangeIn, CloudStore};
use garasi_sync_protocol::actor::{new_actor, Side};
use garasi_sync_protocol::record::{FieldValue, Record};

fn ch(id: &str, change: Vec<u8>) -> ChangeIn {
    ChangeIn {
        record_type: "vehicle_status".into(),
        record_id: id.into(),
        change,
    }
}

#[tokio::test]
async fn later_good_changes_of_a_quarantined_record_are_never_shown() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(&dir.path().join("cloud.db")).unwrap();
    s.migrate().await.unwrap();
    let s = Arc::new(s);
    let m = Materialiser::new(s.clone());
    let d = s.create_depot("D").await.unwrap().id;

    // One depot replica making three changes in a row.
    let mut doc = AutoCommit::new().with_actor(new_actor(Side::Depot));
    doc.put(ROOT, "status", "in_service").unwrap();
    doc.commit();
    let c1 = doc.get_last_local_change().unwrap().bytes().into_owned();
    // Legacy (stored before the push check existed): a text object in a field.
    let t = doc.put_object(ROOT, "note", ObjType::Text).unwrap();
    doc.splice_text(&t, 0, 0, "x").unwrap();
    doc.commit();
    let c2 = doc.get_last_local_change().unwrap().bytes().into_owned();
    // The depot repairs the field and changes the status: plain scalar puts.
    doc.put(ROOT, "note", "brakes").unwrap();
    doc.put(ROOT, "status", "out_of_service").unwrap();
    doc.commit();
    let c3 = doc.get_last_local_change().unwrap().bytes().into_owned();

    s.push(&d, 1, &[ch("bus-1", c1.clone())], &[])
        .await
        .unwrap();
    m.catch_up().await.unwrap();
    s.push(&d, 2, &[ch("bus-1", c2.clone())], &[])
        .await
        .unwrap();
    m.catch_up().await.unwrap();
    assert_eq!(
        s.quarantined(&d, 10).await.unwrap().len(),
        1,
        "c2 quarantined"
    );
    // c3 passes today's push check (depot actor, scalar puts on root keys).
    garasi_sync_protocol::rules::check_authored(&c3, Side::Depot).unwrap();
    s.push(&d, 3, &[ch("bus-1", c3.clone())], &[])
        .await
        .unwrap();
    m.catch_up().await.unwrap();

    // What every replica with all three changes shows.
    let mut all = Record::new(new_actor(Side::Cloud));
    all.apply(&[c1, c2, c3]).unwrap();
    let expected = all.visible().expect("after c3 the record is scalar again");
    assert_eq!(
        expected["status"],
        FieldValue::Text("out_of_service".into())
    );

    let listed = s.list_records(&d, "vehicle_status").await.unwrap();
    let f: serde_json::Value = serde_json::from_str(&listed[0].1).unwrap();
    eprintln!(
        "cloud shows {f}; quarantine rows {}; positions {:?}",
        s.quarantined(&d, 10).await.unwrap().len(),
        s.change_positions(None).await.unwrap(),
    );
    assert_eq!(
        f["status"], "out_of_service",
        "the rest of a quarantined record's changes must still apply"
    );
}
