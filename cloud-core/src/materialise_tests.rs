//! The materialiser's locks: a read catching one depot up never waits for another
//! depot's fold (a reconnect storm keeps the others folding for seconds).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use automerge::{transaction::Transactable, AutoCommit, ROOT};
use garasi_sync_protocol::actor::{new_actor, Side};

use super::Materialiser;
use crate::store::sqlite::SqliteStore;
use crate::store::{ChangeIn, CloudStore};

fn status_change(status: &str) -> ChangeIn {
    let mut doc = AutoCommit::new().with_actor(new_actor(Side::Depot));
    doc.put(ROOT, "status", status).unwrap();
    doc.commit();
    ChangeIn {
        record_type: "vehicle_status".into(),
        record_id: "bus-1".into(),
        change: doc.get_last_local_change().unwrap().bytes().into_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_of_one_depot_does_not_wait_for_another_depots_fold() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(&dir.path().join("cloud.db")).unwrap();
    s.migrate().await.unwrap();
    let s = Arc::new(s);
    let m = Materialiser::new(s.clone());
    let (a, b) = (
        s.create_depot("A").await.unwrap().id,
        s.create_depot("B").await.unwrap().id,
    );
    s.push(&a, 1, &[status_change("in_service")], &[])
        .await
        .unwrap();
    s.push(&b, 1, &[status_change("in_maintenance")], &[])
        .await
        .unwrap();
    // Depot B's fold is under way (its lock held, as while it folds a long page).
    let b_lock = m.locks.lock().entry(b.clone()).or_default().clone();
    let held = b_lock.lock().await;
    // With one lock for every depot, A's read gave up after its wait, unfolded.
    let fresh = m.refresh_for_read(Some(&a), Duration::from_secs(2)).await;
    assert_eq!(fresh.changes_behind, 0, "depot A folded for its read");
    // B's own read does wait for B's fold, bounded, and answers with what is folded.
    let fresh = m
        .refresh_for_read(Some(&b), Duration::from_millis(200))
        .await;
    assert!(
        fresh.changes_behind > 0,
        "B not folded while its fold holds the lock"
    );
    drop(held);
    let fresh = m.refresh_for_read(Some(&b), Duration::from_secs(2)).await;
    assert_eq!(fresh.changes_behind, 0);
}
