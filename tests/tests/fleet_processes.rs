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
use procs::{define_vehicle, publish_samples, recent_t0, CloudProc, EdgeProc, Link};

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
    let t0 = recent_t0();
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
    let pw_a1 = define_vehicle(&cloud, &a_id, "bus-a1").await;
    let pw_a2 = define_vehicle(&cloud, &a_id, "bus-a2").await;
    let pw_b1 = define_vehicle(&cloud, &b_id, "bus-b1").await;
    eventually(
        "vehicles and their device credentials reach their depots",
        || async {
            a.get("/api/v1/vehicles/bus-a2").await.is_some()
                && b.get("/api/v1/vehicles/bus-b1").await.is_some()
                && procs::device_accepted(a.mqtt_port, "bus-a1", &pw_a1).await
                && procs::device_accepted(a.mqtt_port, "bus-a2", &pw_a2).await
                && procs::device_accepted(b.mqtt_port, "bus-b1", &pw_b1).await
        },
    )
    .await;
    assert!(
        b.get("/api/v1/vehicles/bus-a1").await.is_none(),
        "B never gets A's vehicles"
    );
    assert!(a.get("/api/v1/vehicles/bus-b1").await.is_none());
    // Status edits are made by signed-in dispatchers (set_by is the session's person).
    a.sign_in(&cloud, &a_id, "disp-a").await;
    b.sign_in(&cloud, &b_id, "disp-b").await;
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
    // The cloud shows a change once it commits, before its answer reaches the edge; a cut
    // in between leaves the change in A's outbox (replayed later, harmlessly), so the
    // outage starts only once A has its acknowledgement.
    eventually("A's outbox is empty", || async {
        a.get("/api/v1/sync/status")
            .await
            .is_some_and(|s| s["backlog"]["changes"] == 0)
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
        publish_samples(a.mqtt_port, "bus-a1", &pw_a1, t0, n),
        publish_samples(a.mqtt_port, "bus-a2", &pw_a2, t0, n),
        publish_samples(b.mqtt_port, "bus-b1", &pw_b1, t0, n),
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
            .flat_map(|id| (0..n).map(move |i| (id.to_string(), t0 + i as i64 * 1000)))
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

/// Every change of every status document, as bytes (order-independent set).
fn doc_changes(
    docs: impl IntoIterator<Item = (String, Vec<u8>)>,
) -> BTreeMap<String, BTreeSet<Vec<u8>>> {
    use garasi_sync_protocol::actor::{new_actor, Side};
    use garasi_sync_protocol::record::Record;
    docs.into_iter()
        .map(|(id, doc)| {
            let mut r = Record::load(&doc, new_actor(Side::Depot)).unwrap();
            (id, r.changes_since(&[]).into_iter().collect())
        })
        .collect()
}

/// kill -9 of the edge and of the cloud, alternately, at random points while a backlog
/// drains and new telemetry and edits keep arriving at both sides (24 kill points;
/// `GARASI_KILL_POINTS=N` for a longer run). Afterwards, from both stores: every sample
/// the edge committed is at the cloud exactly once, every change of every record is on
/// both sides exactly once, the outbox is empty with no batch pending, and the edge's
/// pull cursor is the cloud's last change for the depot.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill9_of_edge_and_cloud_while_the_backlog_drains() {
    use rand::{Rng, SeedableRng};
    if !have_openssl() {
        return;
    }
    let points: usize = std::env::var("GARASI_KILL_POINTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24);
    let seed: u64 = rand::rng().random();
    eprintln!("kill points: {points}, seed: {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);

    let t0 = recent_t0();
    let tmp = tempfile::tempdir().unwrap();
    let mut cloud = CloudProc::start(&tmp.path().join("cloud"));
    let (depot, token) = cloud.add_depot("Depot K");
    let link = Link::new(cloud.port).await;
    let mut edge =
        EdgeProc::enroll_and_start(&tmp.path().join("edge"), &link.url(), &token, &cloud.ca_pem);
    let ids = ["bus-1", "bus-2", "bus-3"];
    let mut passwords = Vec::new();
    for id in ids {
        passwords.push(define_vehicle(&cloud, &depot, id).await);
    }
    eventually(
        "vehicles and their device credentials reach the depot",
        || async {
            let mut all = edge.get("/api/v1/vehicles/bus-3").await.is_some();
            for (id, pw) in ids.iter().zip(&passwords) {
                all = all && procs::device_accepted(edge.mqtt_port, id, pw).await;
            }
            all
        },
    )
    .await;
    edge.sign_in(&cloud, &depot, "disp").await;

    // A backlog built offline: telemetry and status edits at the depot, edits at the cloud.
    link.cut();
    let statuses = ["in_service", "out_of_service", "in_maintenance"];
    for i in 0..30 {
        let body = serde_json::json!({"status": statuses[i % 3], "note": format!("edge {i}"), "set_by": "disp"});
        assert!(
            edge.put(&format!("/api/v1/vehicles/{}/status", ids[i % 3]), body)
                .await
        );
    }
    for i in 0..9 {
        cloud
            .admin_put(
                &format!("/api/v1/admin/depots/{depot}/records/vehicle_status/{}", ids[i % 3]),
                serde_json::json!({"status": statuses[(i + 1) % 3], "cloud_note": format!("cloud {i}")}),
            )
            .await;
    }
    let backlog = 4000;
    let acks = futures::future::join_all(
        ids.iter()
            .zip(&passwords)
            .map(|(id, pw)| publish_samples(edge.mqtt_port, id, pw, t0, backlog)),
    )
    .await;
    assert!(
        acks.iter().all(|a| *a == backlog),
        "acknowledged {acks:?} of {backlog} each"
    );
    // Acknowledged is not yet committed (README "Durability"): wait for the commit, so
    // the whole backlog is in the outbox before the first kill.
    eventually("the backlog is committed", || async {
        edge.get("/api/v1/sync/status").await.is_some_and(|s| {
            s["backlog"]["stream_rows"].as_u64() == Some(3 * backlog as u64)
                && s["backlog"]["changes"].as_u64() == Some(30)
        })
    })
    .await;
    link.restore().await;

    // Load that keeps coming while processes die.
    let stop_load = tokio_util::sync::CancellationToken::new();
    let mut load = Vec::new();
    for (id, pw) in ids.iter().zip(&passwords) {
        load.push(procs::publish_until(
            edge.mqtt_port,
            id,
            pw,
            t0 + 10_000_000,
            stop_load.clone(),
        ));
    }
    let edits = {
        let token = edge.token.clone().unwrap_or_default();
        let (stop, http, edge_url, cloud_https, cloud_base) = (
            stop_load.clone(),
            reqwest::Client::builder()
                .timeout(Duration::from_secs(2))
                .build()
                .unwrap(),
            edge.http(),
            cloud.https.clone(),
            cloud.base(),
        );
        let depot = depot.clone();
        tokio::spawn(async move {
            let mut i = 0usize;
            while !stop.is_cancelled() {
                let id = ["bus-1", "bus-2", "bus-3"][i % 3];
                let _ = http
                    .put(format!("{edge_url}/api/v1/vehicles/{id}/status"))
                    .bearer_auth(&token)
                    .json(&serde_json::json!({"status": "in_service", "note": format!("live {i}"), "set_by": "disp"}))
                    .send()
                    .await;
                if i.is_multiple_of(4) {
                    let _ = cloud_https
                        .put(format!(
                            "{cloud_base}/api/v1/admin/depots/{depot}/records/vehicle_status/{id}"
                        ))
                        .bearer_auth(procs::ADMIN)
                        .timeout(Duration::from_secs(2))
                        .json(&serde_json::json!({"cloud_note": format!("live {i}")}))
                        .send()
                        .await;
                }
                i += 1;
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
        })
    };

    for i in 0..points {
        tokio::time::sleep(Duration::from_millis(rng.random_range(50..400))).await;
        if i % 2 == 0 {
            edge.kill9();
            edge.restart();
        } else {
            cloud.kill9();
            cloud.restart();
        }
    }
    stop_load.cancel();
    for l in load {
        l.await.unwrap();
    }
    edits.await.unwrap();

    // Drain, then compare both stores.
    eventually("the outbox drains", || async {
        edge.get("/api/v1/sync/status")
            .await
            .is_some_and(|s| s["link"] == "online" && s["backlog"]["entries"] == 0)
    })
    .await;
    eventually("every record is the same on both sides", || async {
        let mut same = true;
        for id in ids {
            let (e, c) = (
                status_at_edge(&edge, id).await,
                status_at_cloud(&cloud, &depot, id).await,
            );
            same &= matches!((e, c), (Some(e), Some(c)) if fields(&e) == fields(&c));
        }
        same
    })
    .await;
    // One more pull cycle so the cursor covers the last cloud change.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(edge.stop(), Some(0), "edge stops cleanly");
    assert_eq!(cloud.stop(), Some(0), "cloud stops cleanly");

    let store = edge.store();
    let (edge_samples, outbox, stream_outbox, pending, pull_cursor) = store
        .read_blocking(|c| {
            let mut st = c.prepare("SELECT vehicle_id, ts_ms FROM telemetry_samples")?;
            let samples: BTreeSet<(String, i64)> = st
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?;
            let n = |sql: &str| c.query_row(sql, [], |r| r.get::<_, i64>(0));
            Ok((
                samples,
                n("SELECT count(*) FROM sync_outbox")?,
                n("SELECT count(*) FROM sync_stream_outbox")?,
                n("SELECT count(*) FROM sync_state WHERE key = 'push_pending'")?,
                n("SELECT CAST(value AS INTEGER) FROM sync_state WHERE key = 'pull_cursor'")?,
            ))
        })
        .unwrap();
    assert_eq!(
        (outbox, stream_outbox, pending),
        (0, 0, 0),
        "outbox empty, no batch pending"
    );
    assert!(edge_samples.len() >= 3 * backlog, "{}", edge_samples.len());

    use garasi_cloud::store::CloudStore;
    let cs = garasi_cloud::store::sqlite::SqliteStore::open(&cloud.dir.join("cloud.db")).unwrap();
    let rows = cs
        .stream_rows(
            &depot,
            garasi_sync_protocol::streams::TELEMETRY_V1,
            0,
            i64::MAX,
        )
        .await
        .unwrap();
    let cloud_samples: Vec<(String, i64)> = rows
        .iter()
        .map(|r| {
            let s = garasi_sync_protocol::streams::TelemetrySampleV1::decode(&r.payload).unwrap();
            (s.vehicle_id, s.ts_ms)
        })
        .collect();
    let cloud_set: BTreeSet<_> = cloud_samples.iter().cloned().collect();
    assert_eq!(
        cloud_samples.len(),
        cloud_set.len(),
        "no sample stored twice"
    );
    assert_eq!(cloud_set.len(), edge_samples.len(), "no sample lost");
    assert!(cloud_set == edge_samples, "the same samples on both sides");

    let mine = cs.pull(&depot, 0, i64::MAX).await.unwrap();
    let last_cursor = mine.iter().map(|c| c.cursor).max().unwrap();
    assert_eq!(
        pull_cursor, last_cursor,
        "the edge pulled up to the cloud's last change"
    );
    let status_changes: BTreeSet<Vec<u8>> = mine
        .iter()
        .filter(|c| c.record_type == "vehicle_status")
        .map(|c| c.change.clone())
        .collect();
    let at_edge = doc_changes(edge_docs(&edge));
    let keys: Vec<_> = ids
        .iter()
        .map(|id| garasi_cloud::store::RecordKey {
            depot: depot.clone(),
            record_type: "vehicle_status".into(),
            record_id: id.to_string(),
        })
        .collect();
    let materialiser = garasi_cloud::materialise::Materialiser::new(std::sync::Arc::new(cs));
    materialiser.catch_up().await.unwrap();
    let cs = garasi_cloud::store::sqlite::SqliteStore::open(&cloud.dir.join("cloud.db")).unwrap();
    let docs = cs.load_records(&keys).await.unwrap();
    let at_cloud = doc_changes(
        ids.iter()
            .map(|s| s.to_string())
            .zip(docs.into_iter().map(Option::unwrap)),
    );
    assert_eq!(at_edge, at_cloud, "every change on both sides");
    let union: BTreeSet<Vec<u8>> = at_edge.values().flatten().cloned().collect();
    let stored = mine
        .iter()
        .filter(|c| c.record_type == "vehicle_status")
        .count();
    assert_eq!(stored, union.len(), "each change stored once at the cloud");
    assert_eq!(status_changes, union);
    eprintln!(
        "kill9: {points} kill points, {} samples, {} status changes, pull cursor {pull_cursor}",
        edge_samples.len(),
        union.len()
    );
}
