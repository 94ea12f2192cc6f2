//! The cloud's sync API over real HTTP: depot authentication and isolation on every sync
//! route, and bad batches (malformed, truncated, oversized, wrong version, replayed)
//! answered with a clear error that changes nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use garasi_cloud::http::{router, AppState};
use garasi_cloud::store::sqlite::SqliteStore;
use garasi_cloud::store::CloudStore;
use garasi_sync_protocol::wire::{self, Batch, Entry};

const ADMIN: &str = "admin-test-token";

struct Cloud {
    base: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

async fn start() -> Cloud {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("cloud.db")).unwrap();
    store.migrate().await.unwrap();
    let app = router(AppState::new(Arc::new(store), Arc::from(ADMIN)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Cloud {
        base: format!("http://{addr}"),
        http: reqwest::Client::new(),
        _dir: dir,
    }
}

impl Cloud {
    async fn depot(&self, name: &str) -> (String, String) {
        let r = self
            .http
            .post(format!("{}/api/v1/admin/depots", self.base))
            .bearer_auth(ADMIN)
            .json(&serde_json::json!({"name": name}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let d: serde_json::Value = r.json().await.unwrap();
        let token = d["enrolment_token"].as_str().unwrap().to_string();
        let e: serde_json::Value = self
            .http
            .post(format!("{}/api/v1/enroll", self.base))
            .json(&serde_json::json!({"token": token}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (
            e["depot_id"].as_str().unwrap().to_string(),
            e["secret"].as_str().unwrap().to_string(),
        )
    }

    async fn push(&self, as_depot: &str, secret: &str, body: Vec<u8>) -> reqwest::Response {
        self.http
            .post(format!("{}/api/v1/sync/push", self.base))
            .header("x-garasi-depot", as_depot)
            .bearer_auth(secret)
            .body(body)
            .send()
            .await
            .unwrap()
    }

    async fn pull(&self, as_depot: &str, secret: &str) -> Result<Batch, u16> {
        let r = self
            .http
            .get(format!("{}/api/v1/sync/pull?cursor=0", self.base))
            .header("x-garasi-depot", as_depot)
            .bearer_auth(secret)
            .send()
            .await
            .unwrap();
        if !r.status().is_success() {
            return Err(r.status().as_u16());
        }
        Ok(wire::decode(&r.bytes().await.unwrap()).unwrap())
    }
}

fn batch(depot: &str, seq: u64) -> Vec<u8> {
    wire::encode(&Batch {
        depot: depot.into(),
        batch_seq: seq,
        entries: vec![
            Entry::Change {
                record_type: "vehicle_status".into(),
                record_id: "bus-1".into(),
                change: vec![0x85, 0x6f, 0x4a, seq as u8],
            },
            Entry::Stream {
                stream: "telemetry".into(),
                seq,
                ts_ms: 1_700_000_000_000,
                payload: b"{}".to_vec(),
            },
        ],
    })
    .unwrap()
}

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
    assert_eq!(c.push(&a, &s, batch(&a, 1)).await.status(), 200);
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
    ];
    for (what, body, status, needle) in cases {
        let r = c.push(&a, &s, body).await;
        assert_eq!(r.status().as_u16(), status, "{what}");
        let text = r.text().await.unwrap();
        assert!(text.contains(needle), "{what}: {text}");
    }
    // Replays of an accepted batch are acknowledged and add nothing.
    for _ in 0..3 {
        let out: serde_json::Value = c.push(&a, &s, batch(&a, 1)).await.json().await.unwrap();
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
    use garasi_sync_protocol::actor::{new_actor, Side};
    use garasi_sync_protocol::record::{FieldValue, Record};
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
