//! The fleet as separate processes: one `garasi-cloud` and two `garasi-edge` nodes, each
//! depot reaching the cloud through a link (TCP proxy) the test can cut.
//!
//! - `outage_then_everything_converges`: vehicles and device credentials defined once in
//!   the cloud flow down; both links are cut and the cloud restarted; meanwhile depot A
//!   and the cloud edit the same record (same field and different fields), depot B edits
//!   its own, both take telemetry; links restored: identical records everywhere, the
//!   cloud's value wins, both other edits survive, every sample arrives exactly once, and
//!   neither depot sees the other's data.
//! - `kill9_of_edge_and_cloud_while_the_backlog_drains`: see its own comment.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod procs;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use garasi_fleet_tests::{eventually, have_openssl};
use procs::{publish_samples, CloudProc, EdgeProc, Link};

const T0: i64 = 1_780_000_000_000;

/// Defines a vehicle and its device in the cloud; returns the device password.
async fn vehicle(cloud: &CloudProc, depot: &str, id: &str) -> String {
    cloud
        .admin_put(
            &format!("/api/v1/admin/depots/{depot}/vehicles/{id}"),
            serde_json::json!({"label": id, "battery_kwh": 350.0}),
        )
        .await;
    let d = cloud
        .admin_post(
            &format!("/api/v1/admin/depots/{depot}/devices"),
            serde_json::json!({"id": id}),
        )
        .await;
    d["password"].as_str().unwrap().to_string()
}

async fn status_at_edge(edge: &EdgeProc, id: &str) -> Option<serde_json::Value> {
    edge.get(&format!("/api/v1/vehicles/{id}/status")).await
}

async fn status_at_cloud(cloud: &CloudProc, depot: &str, id: &str) -> Option<serde_json::Value> {
    cloud
        .admin_get(&format!(
            "/api/v1/admin/depots/{depot}/records/vehicle_status/{id}"
        ))
        .await
        .map(|v| v["fields"].clone())
}

fn fields(v: &serde_json::Value) -> (String, String, String) {
    let s = |k: &str| v[k].as_str().unwrap_or("").to_string();
    (s("status"), s("note"), s("set_by"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn outage_then_everything_converges() {
    if !have_openssl() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut cloud = CloudProc::start(&tmp.path().join("cloud"));
    let (a_id, a_token) = cloud.add_depot("Depot A");
    let (b_id, b_token) = cloud.add_depot("Depot B");
    let (link_a, link_b) = (Link::new(cloud.port).await, Link::new(cloud.port).await);
    let mut a = EdgeProc::enroll_and_start(
        &tmp.path().join("a"),
        &link_a.url(),
        &a_token,
        &cloud.ca_pem,
    );
    let mut b = EdgeProc::enroll_and_start(
        &tmp.path().join("b"),
        &link_b.url(),
        &b_token,
        &cloud.ca_pem,
    );

    // Master data flows down: vehicles and their device credentials, defined once.
    let pw_a1 = vehicle(&cloud, &a_id, "bus-a1").await;
    let pw_a2 = vehicle(&cloud, &a_id, "bus-a2").await;
    let pw_b1 = vehicle(&cloud, &b_id, "bus-b1").await;
    eventually("vehicles reach their depots", || async {
        a.get("/api/v1/vehicles/bus-a2").await.is_some()
            && b.get("/api/v1/vehicles/bus-b1").await.is_some()
    })
    .await;
    assert!(
        b.get("/api/v1/vehicles/bus-a1").await.is_none(),
        "B never gets A's vehicles"
    );
    assert!(a.get("/api/v1/vehicles/bus-b1").await.is_none());
    // A base state seen by both sides.
    assert!(
        a.put(
            "/api/v1/vehicles/bus-a1/status",
            serde_json::json!({"status": "in_service", "set_by": "disp-a"})
        )
        .await
    );
    eventually("A's base state reaches the cloud", || async {
        status_at_cloud(&cloud, &a_id, "bus-a1")
            .await
            .is_some_and(|f| f["status"] == "in_service")
    })
    .await;

    // Outage: both links cut, and the cloud itself restarted meanwhile.
    link_a.cut();
    link_b.cut();
    assert!(a.put("/api/v1/vehicles/bus-a1/status", serde_json::json!({"status": "out_of_service", "note": "mirror broken", "set_by": "disp-a"})).await);
    assert!(
        a.put(
            "/api/v1/vehicles/bus-a2/status",
            serde_json::json!({"status": "in_maintenance", "set_by": "disp-a"})
        )
        .await
    );
    assert!(
        b.put(
            "/api/v1/vehicles/bus-b1/status",
            serde_json::json!({"status": "out_of_service", "note": "tyre", "set_by": "disp-b"})
        )
        .await
    );
    cloud
        .admin_put(
            &format!("/api/v1/admin/depots/{a_id}/records/vehicle_status/bus-a1"),
            serde_json::json!({"status": "in_maintenance", "workshop": "bay 4"}),
        )
        .await;
    let n = 1500;
    let (ka, kb, kc) = tokio::join!(
        publish_samples(a.mqtt_port, "bus-a1", &pw_a1, T0, n),
        publish_samples(a.mqtt_port, "bus-a2", &pw_a2, T0, n),
        publish_samples(b.mqtt_port, "bus-b1", &pw_b1, T0, n),
    );
    assert_eq!(
        (ka, kb, kc),
        (n, n, n),
        "every sample acknowledged by the edges"
    );
    assert_eq!(cloud.stop(), Some(0), "cloud stops cleanly");
    cloud.restart();
    eventually("A reports the link down with a backlog", || async {
        a.get("/api/v1/sync/status").await.is_some_and(|s| {
            s["link"] == "offline"
                && s["backlog"]["changes"] == 2
                && s["backlog"]["stream_rows"].as_u64() == Some(2 * n as u64)
        })
    })
    .await;
    assert_eq!(
        status_at_edge(&a, "bus-a1").await.unwrap()["status"],
        "out_of_service",
        "the depot keeps working"
    );

    link_a.restore().await;
    link_b.restore().await;
    eventually("every replica shows the same records", || async {
        let (ea, ca) = (status_at_edge(&a, "bus-a1").await, status_at_cloud(&cloud, &a_id, "bus-a1").await);
        let (eb, cb) = (status_at_edge(&b, "bus-b1").await, status_at_cloud(&cloud, &b_id, "bus-b1").await);
        let (ea2, ca2) = (status_at_edge(&a, "bus-a2").await, status_at_cloud(&cloud, &a_id, "bus-a2").await);
        matches!((ea, ca, eb, cb, ea2, ca2), (Some(ea), Some(ca), Some(eb), Some(cb), Some(ea2), Some(ca2))
            if fields(&ea) == fields(&ca) && ca["note"] == "mirror broken" && fields(&eb) == fields(&cb) && fields(&ea2) == fields(&ca2))
    })
    .await;
    let c = status_at_cloud(&cloud, &a_id, "bus-a1").await.unwrap();
    assert_eq!(
        c["status"], "in_maintenance",
        "the cloud's concurrent value wins"
    );
    assert_eq!(
        c["note"], "mirror broken",
        "A's edit of another field survives"
    );
    assert_eq!(
        c["workshop"], "bay 4",
        "the cloud's edit of another field survives"
    );
    assert_eq!(
        status_at_cloud(&cloud, &b_id, "bus-b1").await.unwrap()["note"],
        "tyre"
    );
    assert!(
        status_at_cloud(&cloud, &b_id, "bus-a1").await.is_none(),
        "records stay with their depot"
    );

    // Telemetry: every sample exactly once, at the right depot.
    eventually("all telemetry reaches the cloud", || async {
        cloud.telemetry(&a_id).await.len() >= 2 * n && cloud.telemetry(&b_id).await.len() >= n
    })
    .await;
    let want = |ids: &[&str]| -> BTreeSet<(String, i64)> {
        ids.iter()
            .flat_map(|id| (0..n).map(move |i| (id.to_string(), T0 + i as i64 * 1000)))
            .collect()
    };
    for (depot, ids) in [(&a_id, &["bus-a1", "bus-a2"][..]), (&b_id, &["bus-b1"][..])] {
        let got = cloud.telemetry(depot).await;
        let set: BTreeSet<_> = got.iter().cloned().collect();
        assert_eq!(got.len(), set.len(), "no sample twice");
        assert_eq!(set, want(ids), "every sample, nothing else");
    }
    // The ops view sees both depots synced with nothing waiting.
    eventually("ops view shows empty backlogs", || async {
        cloud
            .admin_get("/api/v1/admin/depots")
            .await
            .is_some_and(|v| {
                v["depots"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|d| d["backlog"]["entries"] == 0 && d["lag_s"] == 0.0)
            })
    })
    .await;
    assert_eq!(a.stop(), Some(0));
    assert_eq!(b.stop(), Some(0));
    assert_eq!(cloud.stop(), Some(0));
}

/// Per vehicle: the status document's change hashes, from the edge's encrypted store.
fn edge_docs(edge: &EdgeProc) -> BTreeMap<String, Vec<u8>> {
    edge.store()
        .read_blocking(|c| {
            let mut st = c.prepare("SELECT vehicle_id, doc FROM fleet_vehicle_status")?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })
        .unwrap()
}
