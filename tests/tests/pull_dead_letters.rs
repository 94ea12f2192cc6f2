//! Regression (issue 9, defect 6): a pulled change the depot refuses used to fail the
//! whole pull transaction, so the cursor never moved and master data stopped flowing for
//! good. Now it is kept in `sync_dead_letters` with its reason, counted, shown in the
//! sync status, and the pull moves on. Cloud and depot run in this process (their real
//! code paths: axum over rustls, the edge's modules and sync worker).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use automerge::{transaction::Transactable, AutoCommit, ROOT};
use garasi_cloud::store::{ChangeIn, CloudStore};
use garasi_fleet_tests::{depot, eventually, have_openssl, Cloud, ADMIN};
use garasi_sync_protocol::actor::{new_actor, Side};

/// A change no depot module can apply: automerge's chunk header, then bytes that are
/// no change at all.
fn undecodable_change() -> Vec<u8> {
    vec![
        0x85, 0x6f, 0x4a, 0x83, 0xde, 0xad, 0xbe, 0xef, 1, 3, 9, 9, 9,
    ]
}

/// A well-formed change of a record type this build does not know.
fn some_change() -> Vec<u8> {
    let mut doc = AutoCommit::new().with_actor(new_actor(Side::Cloud));
    doc.put(ROOT, "kwh", 12).unwrap();
    doc.get_last_local_change().unwrap().bytes().into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_pulled_change_is_set_aside_and_the_pull_moves_on() {
    if !have_openssl() {
        return;
    }
    // A failed assertion would otherwise wait forever for the node's blocking tasks when
    // the runtime drops: report it and end the test process at once.
    // (Written to the process's stderr directly: the harness's output capture is gone
    // with the process.)
    std::panic::set_hook(Box::new(|info| {
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "test failed: {info}");
        std::process::exit(101);
    }));
    let tmp = tempfile::tempdir().unwrap();
    let cloud = Cloud::start(tmp.path()).await;
    let token = cloud.new_depot_token("Depot A").await;
    let (edge, depot_id) = depot(&tmp.path().join("edge"), &cloud, &token, &["bus-1"]).await;
    // Stored without the push check (as data from before it existed would be): one
    // change the fleet module refuses, one of a type this build does not know.
    cloud
        .state
        .store
        .add_changes(
            &depot_id,
            &[
                ChangeIn {
                    record_type: "vehicle_status".into(),
                    record_id: "bus-1".into(),
                    change: undecodable_change(),
                },
                ChangeIn {
                    record_type: "work_order".into(),
                    record_id: "cs-1".into(),
                    change: some_change(),
                },
            ],
        )
        .await
        .unwrap();
    // Master data defined after them must still arrive.
    let r = cloud
        .https
        .put(format!(
            "{}/api/v1/admin/depots/{depot_id}/vehicles/bus-2",
            cloud.admin_base
        ))
        .bearer_auth(ADMIN)
        .json(&serde_json::json!({"label": "Bus 2", "battery_kwh": 300.0}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let http = reqwest::Client::new();
    let base = format!("http://{}", edge.http_addr);
    eventually("bus-2 reaches the depot past the refused change", || {
        let (http, url) = (http.clone(), format!("{base}/api/v1/vehicles/bus-2"));
        async move { http.get(url).send().await.is_ok_and(|r| r.status() == 200) }
    })
    .await;
    // The fleet's in-memory registry shows bus-2 while the pull's transaction is still
    // committing: wait for the committed dead letters and the worker's counters too.
    eventually("the pull's dead letters are committed and counted", || {
        let (http, url) = (http.clone(), format!("{base}/api/v1/sync/status"));
        async move {
            let Ok(r) = http.get(url).send().await else {
                return false;
            };
            r.json::<serde_json::Value>().await.is_ok_and(|v| {
                v["dead_letters"]["kept"] == 2 && v["dead_letters"]["since_start"] == 2
            })
        }
    })
    .await;
    // What was set aside is shown to signed-in staff only (issue 11).
    let tok = garasi_fleet_tests::dispatcher_token(
        &cloud.https,
        &cloud.admin_base,
        &depot_id,
        &base,
        "disp-1",
    )
    .await;
    let status: serde_json::Value = http
        .get(format!("{base}/api/v1/sync/status"))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let dead = &status["dead_letters"];
    assert_eq!(dead["kept"], 2, "{status}");
    let reasons: Vec<String> = dead["newest"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| format!("{} {}", d["record_type"], d["reason"]))
        .collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("vehicle_status") && r.contains("could not be decoded")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("work_order") && r.contains("not known")),
        "{reasons:?}"
    );
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("garasi_sync_dead_letters_total{reason=\"refused\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("garasi_sync_dead_letters_total{reason=\"unknown_type\"} 1"),
        "{metrics}"
    );
    // The refused change left bus-1's status untouched, and a later cloud edit of it
    // arrives and shows.
    let r = cloud
        .https
        .put(format!(
            "{}/api/v1/admin/depots/{depot_id}/records/vehicle_status/bus-1",
            cloud.admin_base
        ))
        .bearer_auth(ADMIN)
        .json(&serde_json::json!({"status": "in_maintenance", "set_by": "admin"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    eventually("the later cloud edit of bus-1 reaches the depot", || {
        let (http, url) = (http.clone(), format!("{base}/api/v1/vehicles/bus-1/status"));
        async move {
            let Ok(r) = http.get(url).send().await else {
                return false;
            };
            r.json::<serde_json::Value>()
                .await
                .is_ok_and(|v| v["status"] == "in_maintenance")
        }
    })
    .await;
    edge.stop(std::time::Duration::from_secs(5)).await;
}
