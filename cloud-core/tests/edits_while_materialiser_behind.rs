//! Regression (issue 9, found in review): admin edits were built on the materialised
//! document after waiting at most 2 s for the materialiser. While it was busy (a backlog
//! from a fleet reconnecting), two admin PUTs of one record, one after the other, were
//! both built on the same stale document, became concurrent cloud edits, and the later
//! one lost half the time (7 of 8 records in one run) while the PUT answered its value.
//! Now an edit builds on the materialised document plus every change stored after it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Instant;

use garasi_cloud::api::{router, AppState};
use garasi_cloud::store::sqlite::SqliteStore;
use garasi_cloud::store::{ChangeIn, CloudStore};
use garasi_sync_protocol::actor::{new_actor, Side};
use garasi_sync_protocol::record::{FieldValue, Record};

const ADMIN: &str = "admin-token-for-tests";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_second_of_two_serial_admin_edits_can_lose_while_the_materialiser_is_busy() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("cloud.db")).unwrap();
    store.migrate().await.unwrap();
    let store = Arc::new(store);
    let d = store.create_depot("D").await.unwrap().id;

    // A backlog: one depot change under many record ids (each a record to fold).
    let n: usize = std::env::var("GARASI_BACKLOG")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(120_000);
    let c = Record::new(new_actor(Side::Depot))
        .set(&[("status", FieldValue::Text("in_service".into()))])
        .unwrap()
        .unwrap();
    for (i, chunk) in (0..n).collect::<Vec<_>>().chunks(20_000).enumerate() {
        let changes: Vec<ChangeIn> = chunk
            .iter()
            .map(|k| ChangeIn {
                record_type: "vehicle_status".into(),
                record_id: format!("bus-{k}"),
                change: c.clone(),
            })
            .collect();
        store.push(&d, i as i64 + 1, &changes, &[]).await.unwrap();
    }

    // The server as `serve` runs it: the router plus the materialiser's own loop.
    let state = AppState::new(store.clone(), Arc::from(ADMIN)).unwrap();
    let mat = state.materialiser.clone();
    let cancel = tokio_util::sync::CancellationToken::new();
    tokio::spawn(mat.clone().run(cancel.clone()));
    let app = router(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    let http = reqwest::Client::new();
    let t0 = Instant::now();
    let k = 8;
    let mut jobs = Vec::new();
    for r in 0..k {
        let (http, base, d) = (http.clone(), base.clone(), d.clone());
        jobs.push(tokio::spawn(async move {
            let url = format!("{base}/api/v1/admin/depots/{d}/records/vehicle_status/edit-{r}");
            let mut behind = Vec::new();
            for value in ["first", "second"] {
                let resp: serde_json::Value = http
                    .put(&url)
                    .bearer_auth(ADMIN)
                    .json(&serde_json::json!({ "note": value }))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                assert_eq!(resp["fields"]["note"], value, "{resp}");
                behind.push(resp["freshness"]["changes_behind"].as_i64().unwrap());
            }
            behind
        }));
    }
    let mut behind = Vec::new();
    for j in jobs {
        behind.push(j.await.unwrap());
    }
    eprintln!(
        "16 admin PUTs took {:?}; changes_behind reported: {behind:?}",
        t0.elapsed()
    );
    // Let the materialiser finish.
    mat.catch_up().await.unwrap();
    eprintln!("materialiser caught up after {:?}", t0.elapsed());
    let mut lost = Vec::new();
    for r in 0..k {
        let v: serde_json::Value = http
            .get(format!(
                "{base}/api/v1/admin/depots/{d}/records/vehicle_status/edit-{r}"
            ))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if v["fields"]["note"] != "second" {
            lost.push((r, v["fields"]["note"].clone()));
        }
    }
    cancel.cancel();
    assert!(
        lost.is_empty(),
        "records whose later admin edit lost to the earlier one: {lost:?}"
    );
}
