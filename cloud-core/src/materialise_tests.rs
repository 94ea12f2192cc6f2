//! The materialiser's locks: one depot's fold never waits for another depot's (a
//! reconnect storm keeps the others folding for seconds), and a depot's folds take
//! turns.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use automerge::{transaction::Transactable, AutoCommit, ROOT};
use garasi_sync_protocol::actor::{new_actor, Side};

use super::{Materialiser, Waiter};
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
async fn one_depots_fold_does_not_wait_for_another_depots() {
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
    // With one lock for every depot, A's fold waited here for B's.
    let folded = tokio::time::timeout(Duration::from_secs(5), m.fold_next_page(&a, Waiter::Person))
        .await
        .expect("A's fold waited for B's")
        .unwrap();
    assert_eq!(folded, (false, 1));
    assert_eq!(m.freshness(Some(&a)).await.unwrap().changes_behind, 0);
    // B's next fold waits its turn.
    let waiting = tokio::time::timeout(
        Duration::from_millis(200),
        m.fold_next_page(&b, Waiter::Person),
    )
    .await;
    assert!(waiting.is_err(), "two folds of B at once");
    drop(held);
    assert_eq!(
        m.fold_next_page(&b, Waiter::Person).await.unwrap(),
        (false, 1)
    );
    assert_eq!(m.freshness(Some(&b)).await.unwrap().changes_behind, 0);
}
