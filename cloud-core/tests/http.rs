//! The cloud's sync API over real HTTP: depot authentication and isolation on every sync
//! route, and bad batches (malformed, truncated, oversized, wrong version, replayed)
//! answered with a clear error that changes nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use garasi_sync_protocol::actor::{new_actor, Side};
use garasi_sync_protocol::record::{FieldValue, Record};
use garasi_sync_protocol::wire::{self, Batch, Entry};

#[tokio::test]
async fn every_sync_route_authenticates_and_isolates_depots() {
    let c = start().await;
    let r = c
        .http
        .post(format!("{}/api/v1/admin/depots", c.base))
        .bearer_auth("guess")
        .json(&serde_json::json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let (a, a_secret) = c.depot("A").await;
    let (b, b_secret) = c.depot("B").await;

    let r = c.push(&a, &a_secret, batch(&a, 1)).await;
    assert_eq!(r.status(), 200);
    let out: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        (out["new_changes"].as_u64(), out["new_rows"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(c.pull(&a, &a_secret).await.unwrap().entries.len(), 1);
    assert_eq!(
        c.pull(&b, &b_secret).await.unwrap().entries.len(),
        0,
        "B must not see A's records"
    );

    // A's secret with B's name, B's secret with A's name, no credentials: refused everywhere.
    for (depot, secret) in [(&b, &a_secret), (&a, &b_secret), (&a, &String::new())] {
        assert_eq!(c.push(depot, secret, batch(depot, 2)).await.status(), 401);
        assert_eq!(c.pull(depot, secret).await.unwrap_err(), 401);
    }
    let anon = c
        .http
        .get(format!("{}/api/v1/sync/pull", c.base))
        .send()
        .await
        .unwrap();
    assert_eq!(anon.status(), 401);

    // A authenticated batch that claims to be B's is refused; B is untouched.
    let r = c.push(&a, &a_secret, batch(&b, 3)).await;
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("authenticated as"));
    assert_eq!(c.pull(&b, &b_secret).await.unwrap().entries.len(), 0);
}

#[tokio::test]
async fn bad_batches_get_a_clear_error_and_change_nothing() {
    let c = start().await;
    let (a, s) = c.depot("A").await;
    let first = batch(&a, 1);
    assert_eq!(c.push(&a, &s, first.clone()).await.status(), 200);
    let good = batch(&a, 2);

    let mut wrong_version = good.clone();
    wrong_version[4..6].copy_from_slice(&99u16.to_be_bytes());
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "malformed",
            b"PUT THIS IN YOUR DATABASE".to_vec(),
            400,
            "bad magic",
        ),
        (
            "truncated",
            good[..good.len() / 2].to_vec(),
            400,
            "rejected",
        ),
        ("wrong version", wrong_version, 400, "version 99"),
        ("oversized", vec![b'G'; wire::MAX_WIRE_BYTES + 10], 413, ""),
        (
            "a change that is not an automerge change",
            batch_of(&a, 5, vec![0x85, 0x6f, 0x4a, 0x83, 1, 2], sample(5)),
            400,
            "change 0",
        ),
        (
            "a stream row that is not a telemetry sample",
            batch_of(&a, 6, change(6), b"{}".to_vec()),
            400,
            "stream row 6",
        ),
    ];
    for (what, body, status, needle) in cases {
        let r = c.push(&a, &s, body).await;
        assert_eq!(r.status().as_u16(), status, "{what}");
        let text = r.text().await.unwrap();
        assert!(text.contains(needle), "{what}: {text}");
    }
    // Replays of an accepted batch are acknowledged and add nothing.
    for _ in 0..3 {
        let out: serde_json::Value = c.push(&a, &s, first.clone()).await.json().await.unwrap();
        assert_eq!(out["replayed"], true);
        assert_eq!(out["new_changes"], 0);
    }
    assert_eq!(
        c.pull(&a, &s).await.unwrap().entries.len(),
        1,
        "nothing changed"
    );
    assert!(c
        .http
        .get(format!("{}/healthz", c.base))
        .send()
        .await
        .unwrap()
        .status()
        .is_success());
}

#[tokio::test]
async fn cloud_edit_wins_a_concurrent_conflict_end_to_end_over_http() {
    let c = start().await;
    let (a, s) = c.depot("A").await;
    let (b, _) = c.depot("B").await;
    // The depot's replica: a base state, pushed and seen by the cloud.
    let mut depot = Record::new(new_actor(Side::Depot));
    let base = depot
        .set(&[
            ("status", FieldValue::Text("in_service".into())),
            ("note", FieldValue::Null),
        ])
        .unwrap()
        .unwrap();
    let push = |seq: u64, change: Vec<u8>| {
        wire::encode(&Batch {
            depot: a.clone(),
            batch_seq: seq,
            entries: vec![Entry::Change {
                record_type: "vehicle_status".into(),
                record_id: "bus-1".into(),
                change,
            }],
        })
        .unwrap()
    };
    assert_eq!(c.push(&a, &s, push(1, base)).await.status(), 200);
    let url = format!(
        "{}/api/v1/admin/depots/{a}/records/vehicle_status/bus-1",
        c.base
    );
    let seen: serde_json::Value = c
        .http
        .get(&url)
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(seen["fields"]["status"], "in_service");

    // Concurrently: the depot (offline) and the cloud both change `status`; each also
    // changes a different field.
    let offline = depot
        .set(&[
            ("status", FieldValue::Text("out_of_service".into())),
            ("note", FieldValue::Text("door".into())),
        ])
        .unwrap()
        .unwrap();
    let r = c
        .http
        .put(&url)
        .bearer_auth(ADMIN)
        .json(&serde_json::json!({"status": "in_maintenance", "set_by": "fleet-admin"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The link returns: push, then pull and apply.
    assert_eq!(c.push(&a, &s, push(2, offline)).await.status(), 200);
    let pulled = c.pull(&a, &s).await.unwrap();
    let changes: Vec<Vec<u8>> = pulled
        .entries
        .into_iter()
        .map(|e| match e {
            Entry::Change { change, .. } => change,
            Entry::Stream { .. } => panic!("no streams pulled"),
        })
        .collect();
    depot.apply(&changes).unwrap();
    let at_depot = depot.visible().unwrap();
    let at_cloud: serde_json::Value = c
        .http
        .get(&url)
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        at_depot["status"],
        FieldValue::Text("in_maintenance".into()),
        "cloud wins at the depot"
    );
    assert_eq!(
        at_cloud["fields"]["status"], "in_maintenance",
        "and at the cloud"
    );
    assert_eq!(
        at_depot["note"],
        FieldValue::Text("door".into()),
        "different fields both survive"
    );
    assert_eq!(at_cloud["fields"]["note"], "door");
    assert_eq!(at_cloud["fields"]["set_by"], "fleet-admin");

    // Admin routes need the admin token; B has no such record.
    assert_eq!(
        c.http
            .get(&url)
            .bearer_auth(&s)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let other = format!(
        "{}/api/v1/admin/depots/{b}/records/vehicle_status/bus-1",
        c.base
    );
    assert_eq!(
        c.http
            .get(&other)
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}

#[tokio::test]
async fn ops_view_and_master_data() {
    let c = start().await;
    let (a, s) = c.depot("A").await;
    // The edge reports its backlog with every sync request.
    let r = c
        .http
        .get(format!("{}/api/v1/sync/pull?cursor=0", c.base))
        .header("x-garasi-depot", &a)
        .header(
            "x-garasi-backlog",
            "entries=42;bytes=4200;oldest_change_ms=1000",
        )
        .bearer_auth(&s)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let ops: serde_json::Value = c
        .http
        .get(format!("{}/api/v1/admin/depots", c.base))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let d = &ops["depots"][0];
    assert_eq!(d["id"], a.as_str());
    assert_eq!(d["enrolled"], true);
    assert_eq!(d["backlog"]["entries"], 42);
    assert!(d["lag_s"].as_f64().unwrap() > 1_000_000.0, "{d}");
    assert!(d["seconds_since_sync"].as_f64().unwrap() < 60.0, "{d}");
    // Ops routes are admin-only.
    let r = c
        .http
        .get(format!("{}/api/v1/admin/depots", c.base))
        .bearer_auth(&s)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // Master data: a vehicle and a device defined in the cloud reach the depot's pull.
    let r = c
        .http
        .put(format!("{}/api/v1/admin/depots/{a}/vehicles/bus-9", c.base))
        .bearer_auth(ADMIN)
        .json(&serde_json::json!({"label": "Bus 9", "plate": "B 9 X", "battery_kwh": 420.0}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let bad = c
        .http
        .put(format!("{}/api/v1/admin/depots/{a}/vehicles/bus-9", c.base))
        .bearer_auth(ADMIN)
        .json(&serde_json::json!({"label": "Bus 9", "battery_kwh": -1}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let r = c
        .http
        .post(format!("{}/api/v1/admin/depots/{a}/devices", c.base))
        .bearer_auth(ADMIN)
        .json(&serde_json::json!({"id": "bus-9"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let dev: serde_json::Value = r.json().await.unwrap();
    let password = dev["password"].as_str().unwrap().to_string();
    let pulled = c.pull(&a, &s).await.unwrap();
    let types: Vec<String> = pulled
        .entries
        .iter()
        .filter_map(|e| match e {
            Entry::Change { record_type, .. } => Some(record_type.clone()),
            Entry::Stream { .. } => None,
        })
        .collect();
    assert_eq!(types, ["vehicle", "device"]);
    // The device record carries a hash, never the password.
    for e in &pulled.entries {
        if let Entry::Change { change, .. } = e {
            assert!(!String::from_utf8_lossy(change).contains(&password));
        }
    }
    let list: serde_json::Value = c
        .http
        .get(format!(
            "{}/api/v1/admin/depots/{a}/records/vehicle",
            c.base
        ))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["records"][0]["record_id"], "bus-9");
    assert_eq!(list["records"][0]["fields"]["battery_kwh"], 420.0);
    // Unknown depot: a clear 404.
    let r = c
        .http
        .put(format!(
            "{}/api/v1/admin/depots/depot-nope/vehicles/bus-1",
            c.base
        ))
        .bearer_auth(ADMIN)
        .json(&serde_json::json!({"label": "x", "battery_kwh": 300}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // A record list asks whether its depot exists only when the list is empty: an
    // unknown depot (or an id no depot can have) is still a 404, a known depot without
    // records of the type an empty list.
    let list_status = |depot: &str| {
        let url = format!(
            "{}/api/v1/admin/depots/{depot}/records/vehicle_status",
            c.base
        );
        let req = c.http.get(url).bearer_auth(ADMIN);
        async move { req.send().await.unwrap().status() }
    };
    assert_eq!(list_status("depot-nope").await, 404);
    assert_eq!(list_status("depot%00nope").await, 404);
    let (empty, _) = c.depot("Empty").await;
    assert_eq!(list_status(&empty).await, 200);
    let r = c
        .http
        .get(format!(
            "{}/api/v1/admin/depots/{empty}/records/vehicle%00status",
            c.base
        ))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "a record type cannot hold NUL");
}

/// Each request is timed under its route's template: a record view of a depot is counted
/// under `{depot}`, never under the depot's id (labels stay few and say nothing of whom).
#[tokio::test]
async fn request_times_are_labelled_by_route_template_not_by_id() {
    let c = start().await;
    let (a, _) = c.depot("A").await;
    for _ in 0..3 {
        let r = c
            .http
            .get(format!(
                "{}/api/v1/admin/depots/{a}/records/vehicle_status",
                c.base
            ))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let text = metrics_text(&c).await;
    let count = |route: &str| -> f64 {
        let key =
            format!("garasi_cloud_http_request_seconds_count{{method=\"GET\",route=\"{route}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(key.as_str()))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    };
    assert_eq!(
        count("/api/v1/admin/depots/{depot}/records/{record_type}"),
        3.0,
        "{text}"
    );
    assert!(!text.contains(&a), "a depot id reached a label: {text}");
    // A method a client makes up is no label of its own (one per name would grow the
    // exposition without end), and neither is a path no route matches.
    for i in 0..3 {
        let made_up = reqwest::Method::from_bytes(format!("MADEUP{i}").as_bytes()).unwrap();
        c.http
            .request(made_up, format!("{}/healthz", c.base))
            .send()
            .await
            .unwrap();
        c.http
            .get(format!("{}/no/such/route/{i}", c.base))
            .send()
            .await
            .unwrap();
    }
    let text = metrics_text(&c).await;
    assert!(!text.contains("MADEUP"), "{text}");
    assert!(!text.contains("/no/such/route"), "{text}");
    assert!(
        text.contains("method=\"other\",route=\"/healthz\""),
        "{text}"
    );
    assert!(text.contains("route=\"unmatched\""), "{text}");
}

/// The cloud's Prometheus exposition.
async fn metrics_text(c: &Cloud) -> String {
    let r = c.http.get(format!("{}/metrics", c.base)).send().await;
    r.unwrap().text().await.unwrap()
}
