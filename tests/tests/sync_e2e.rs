//! A cloud and a depot together: the depot enrols over TLS, a vehicle's operational
//! status edited at either side reaches the other, and after a partition in which both
//! sides edit (the same field and different fields), the link returns and both show the
//! same record: the cloud's value wins the conflict, both other edits survive.
//! The cloud server and the edge node run in this process (their real code paths: axum
//! over rustls, the edge's modules and sync worker); separate-process and kill -9 tests
//! are still to come.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use garasi_fleet_tests::{depot, eventually, have_openssl, Cloud, ADMIN};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn depot_and_cloud_converge_and_the_cloud_wins_a_conflict() {
    if !have_openssl() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let cloud = Cloud::start(tmp.path()).await;
    let token = cloud.new_depot_token("Depot A").await;
    let (edge, depot_id) = depot(&tmp.path().join("edge"), &cloud, &token, &["bus-1"]).await;
    assert!(
        garasi_edge::modules::sync::service::enroll(
            &edge.store,
            &format!("https://{}", cloud.link_addr),
            &token,
            Some(cloud.ca_pem.clone())
        )
        .await
        .is_err(),
        "token is one-time"
    );
    let edge_url = format!("http://{}/api/v1/vehicles/bus-1/status", edge.http_addr);
    let cloud_url = format!(
        "{}/api/v1/admin/depots/{depot_id}/records/vehicle_status/bus-1",
        cloud.admin_base
    );
    let http = reqwest::Client::new();
    let edge_view = || {
        let (http, url) = (http.clone(), edge_url.clone());
        async move {
            http.get(url)
                .send()
                .await
                .ok()?
                .json::<serde_json::Value>()
                .await
                .ok()
        }
    };
    let cloud_view = || {
        let (https, url) = (cloud.https.clone(), cloud_url.clone());
        async move {
            https
                .get(url)
                .bearer_auth(ADMIN)
                .send()
                .await
                .ok()?
                .json::<serde_json::Value>()
                .await
                .ok()
                .map(|v| v["fields"].clone())
        }
    };

    // Edits at the depot are made by a signed-in dispatcher: set_by is that person.
    let tok = garasi_fleet_tests::dispatcher_token(
        &cloud.https,
        &cloud.admin_base,
        &depot_id,
        &format!("http://{}", edge.http_addr),
        "dispatcher-2",
    )
    .await;

    // 1. Depot -> cloud.
    let r = http
        .put(&edge_url)
        .bearer_auth(&tok)
        .json(&serde_json::json!({"status": "in_service"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    eventually("the depot's edit reaches the cloud", || async {
        cloud_view()
            .await
            .is_some_and(|f| f["status"] == "in_service")
    })
    .await;

    // 2. Cloud -> depot.
    cloud
        .https
        .put(&cloud_url)
        .bearer_auth(ADMIN)
        .json(&serde_json::json!({"note": "annual inspection due"}))
        .send()
        .await
        .unwrap();
    eventually("the cloud's edit reaches the depot", || async {
        edge_view()
            .await
            .is_some_and(|v| v["note"] == "annual inspection due")
    })
    .await;

    // 3. Partition: the depot's link to the cloud is cut; both sides edit.
    cloud.cut_link();
    tokio::time::sleep(Duration::from_millis(300)).await;
    http.put(&edge_url)
        .bearer_auth(&tok)
        .json(&serde_json::json!({"status": "out_of_service", "note": "door fault"}))
        .send()
        .await
        .unwrap();
    cloud
        .https
        .put(&cloud_url)
        .bearer_auth(ADMIN)
        .json(&serde_json::json!({"status": "in_maintenance", "workshop": "bay 4"}))
        .send()
        .await
        .unwrap();
    let status_url = format!("http://{}/api/v1/sync/status", edge.http_addr);
    eventually("the depot reports the link down", || async {
        let s: serde_json::Value = http
            .get(&status_url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        s["link"] == "offline" && s["backlog"]["entries"].as_i64() == Some(1)
    })
    .await;
    assert_eq!(
        edge_view().await.unwrap()["status"],
        "out_of_service",
        "the depot keeps working offline"
    );

    // 4. The link returns (same address).
    cloud.restore_link().await;
    eventually("both sides converge", || async {
        let (e, c) = (edge_view().await, cloud_view().await);
        matches!((e, c), (Some(e), Some(c)) if e["status"] == c["status"] && e["note"] == c["note"] && c["note"] == "door fault")
    })
    .await;
    let (e, c) = (edge_view().await.unwrap(), cloud_view().await.unwrap());
    assert_eq!(
        c["status"], "in_maintenance",
        "the cloud's concurrent value wins"
    );
    assert_eq!(e["status"], "in_maintenance");
    assert_eq!(
        c["note"], "door fault",
        "the depot's edit of another field survives"
    );
    assert_eq!(
        c["workshop"], "bay 4",
        "the cloud's edit of another field survives"
    );
    assert_eq!(c["set_by"], "dispatcher-2");
    let s: serde_json::Value = http
        .get(&status_url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(s["link"], "online");
    assert_eq!(s["backlog"]["entries"], 0, "the outbox drained");
    assert!(edge.stop(Duration::from_secs(5)).await);
}
