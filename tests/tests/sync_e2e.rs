//! A cloud and a depot together: the depot enrols over TLS, a vehicle's operational
//! status edited at either side reaches the other, and after a partition in which both
//! sides edit (the same field and different fields), the link returns and both show the
//! same record: the cloud's value wins the conflict, both other edits survive.
//! The cloud server and the edge node run in this process (their real code paths: axum
//! over rustls, the edge's modules and sync worker); separate-process and kill -9 tests
//! are still to come.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use garasi_cloud::http::{router, serve_tls, tls_acceptor, AppState};
use garasi_cloud::store::sqlite::SqliteStore;
use garasi_cloud::store::CloudStore;
use garasi_edge::config::Settings;
use garasi_edge::modules::{fleet, sync};
use garasi_edge::node::{self, Node};
use garasi_edge::store::{DataDir, Store};
use tokio_util::sync::CancellationToken;

const ADMIN: &str = "fleet-admin-token-for-tests";

async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Serves the cloud API over TLS on `listener` until the token is cancelled.
fn serve(
    listener: tokio::net::TcpListener,
    state: AppState<SqliteStore>,
    tls: tokio_rustls::TlsAcceptor,
) -> CancellationToken {
    let cancel = CancellationToken::new();
    let c = cancel.clone();
    tokio::spawn(async move { serve_tls(listener, tls, router(state), c).await.unwrap() });
    cancel
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn depot_and_cloud_converge_and_the_cloud_wins_a_conflict() {
    if std::process::Command::new("openssl")
        .arg("version")
        .output()
        .is_err()
    {
        assert!(
            std::env::var_os("CI").is_none(),
            "openssl is required in CI"
        );
        eprintln!("SKIPPED: openssl not installed");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (ca, cert, key) = garasi_fleet_tests::test_pki(tmp.path()).unwrap();
    let tls = tls_acceptor(&cert, &key).unwrap();

    // Cloud: one store, two listeners. `sync_link` is what the depot talks to (we cut
    // it to simulate the outage); `admin` stays up for the fleet admin.
    let store = SqliteStore::open(&tmp.path().join("cloud.db")).unwrap();
    store.migrate().await.unwrap();
    let depot_token = store.create_depot("Depot A").await.unwrap().enrolment_token;
    let state = AppState::new(Arc::new(store), Arc::from(ADMIN));
    let link_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let link_addr = link_listener.local_addr().unwrap();
    let sync_link = serve(link_listener, state.clone(), tls.clone());
    let admin_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin_base = format!("https://{}", admin_listener.local_addr().unwrap());
    let _admin = serve(admin_listener, state.clone(), tls.clone());
    let ca_pem = std::fs::read_to_string(&ca).unwrap();
    let https = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .build()
        .unwrap();

    // Depot: a data dir with one vehicle, enrolled, then the node with its sync worker.
    let edge_dir = tmp.path().join("edge");
    let dd = DataDir::new(&edge_dir, None);
    dd.init().unwrap();
    let edge_store = Store::open(&dd).unwrap();
    for m in node::all_modules() {
        edge_store
            .write_blocking(|c| {
                Ok(garasi_edge::store::migrate::run(
                    c,
                    m.name(),
                    m.migrations(),
                ))
            })
            .unwrap()
            .unwrap();
    }
    fleet::upsert_vehicle(
        &edge_store,
        &fleet::Vehicle {
            id: "bus-1".into(),
            label: "Bus 1".into(),
            plate: None,
            battery_kwh: 350.0,
        },
    )
    .unwrap();
    let depot = sync::enroll(
        &edge_store,
        &format!("https://{link_addr}"),
        &depot_token,
        Some(ca_pem.clone()),
    )
    .await
    .unwrap();
    assert!(
        sync::enroll(
            &edge_store,
            &format!("https://{link_addr}"),
            &depot_token,
            Some(ca_pem)
        )
        .await
        .is_err(),
        "token is one-time"
    );
    drop(edge_store);
    let settings = Settings {
        http_listen: Some("127.0.0.1:0".into()),
        mqtt_listen: Some("127.0.0.1:0".into()),
        mqtt5_listen: Some("127.0.0.1:0".into()),
        sync_interval_ms: Some("200".into()),
        ..Default::default()
    };
    let cfg = settings.resolve(&edge_dir).unwrap();
    let bound = node::bind(&cfg).unwrap();
    let edge = Node::start(cfg, bound).await.unwrap();
    let edge_url = format!("http://{}/api/v1/vehicles/bus-1/status", edge.http_addr);
    let cloud_url =
        format!("{admin_base}/api/v1/admin/depots/{depot}/records/vehicle_status/bus-1");
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
        let (https, url) = (https.clone(), cloud_url.clone());
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

    // 1. Depot -> cloud.
    let r = http
        .put(&edge_url)
        .json(&serde_json::json!({"status": "in_service", "set_by": "dispatcher-1"}))
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
    https
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
    sync_link.cancel();
    tokio::time::sleep(Duration::from_millis(300)).await;
    http.put(&edge_url).json(&serde_json::json!({"status": "out_of_service", "note": "door fault", "set_by": "dispatcher-2"})).send().await.unwrap();
    https
        .put(&cloud_url)
        .bearer_auth(ADMIN)
        .json(&serde_json::json!({"status": "in_maintenance", "workshop": "bay 4"}))
        .send()
        .await
        .unwrap();
    eventually("the depot reports the link down", || async {
        let s: serde_json::Value = http
            .get(format!("http://{}/api/v1/sync/status", edge.http_addr))
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
    let listener = tokio::net::TcpListener::bind(link_addr).await.unwrap();
    let _restored = serve(listener, state.clone(), tls.clone());
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
        .get(format!("http://{}/api/v1/sync/status", edge.http_addr))
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
