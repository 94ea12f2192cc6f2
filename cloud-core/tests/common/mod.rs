//! Shared helpers of the cloud's HTTP tests: the real router on a loopback port over a
//! fresh SQLite store, depots enrolled through the API, push and pull as a depot does;
//! a fresh PostgreSQL schema for the tests that need one.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use garasi_cloud::api::{router, AppState};
use garasi_cloud::store::postgres::PgStore;
use garasi_cloud::store::sqlite::SqliteStore;
use garasi_cloud::store::CloudStore;
use garasi_sync_protocol::actor::{new_actor, Side};
use garasi_sync_protocol::record::{FieldValue, Record};
use garasi_sync_protocol::streams::{self, TelemetrySampleV1};
use garasi_sync_protocol::wire::{self, Batch, Entry};

pub const ADMIN: &str = "admin-test-token";

pub struct Cloud<S = SqliteStore> {
    pub base: String,
    pub http: reqwest::Client,
    pub dir: tempfile::TempDir,
    /// The store behind the API, for writing what no API accepts (legacy data).
    pub store: Arc<S>,
}

/// A fresh, migrated PostgreSQL schema `garasi_test_{name}_{pid}`, with the connection
/// string and the schema's name; `None` (the test skips) when `GARASI_TEST_POSTGRES` is
/// unset, which CI never allows.
pub async fn fresh_postgres(name: &str) -> Option<(PgStore, String, String)> {
    let Ok(conn) = std::env::var("GARASI_TEST_POSTGRES") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "GARASI_TEST_POSTGRES must be set in CI"
        );
        eprintln!("SKIPPED: set GARASI_TEST_POSTGRES to run against PostgreSQL");
        return None;
    };
    let schema = format!("garasi_test_{name}_{}", std::process::id());
    let old = PgStore::connect(&conn, Some(&schema)).await.unwrap();
    old.drop_schema(&schema).await.unwrap();
    let s = PgStore::connect(&conn, Some(&schema)).await.unwrap();
    s.migrate().await.unwrap();
    Some((s, conn, schema))
}

/// The cloud over a fresh SQLite store.
pub async fn start() -> Cloud {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("cloud.db")).unwrap();
    start_on(store, dir).await
}

/// The cloud over `store` (migrated here); `dir` lives as long as the cloud.
pub async fn start_on<S: CloudStore + 'static>(store: S, dir: tempfile::TempDir) -> Cloud<S> {
    store.migrate().await.unwrap();
    let store = Arc::new(store);
    let state = AppState::new(store.clone(), Arc::from(ADMIN)).unwrap();
    // The materialiser runs beside the API, as `serve` runs it.
    let m = state.materialiser.clone();
    tokio::spawn(m.run(tokio_util::sync::CancellationToken::new()));
    let app = router(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Cloud {
        base: format!("http://{addr}"),
        http: reqwest::Client::new(),
        dir,
        store,
    }
}

impl<S> Cloud<S> {
    pub async fn depot(&self, name: &str) -> (String, String) {
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

    pub async fn push(&self, as_depot: &str, secret: &str, body: Vec<u8>) -> reqwest::Response {
        self.http
            .post(format!("{}/api/v1/sync/push", self.base))
            .header("x-garasi-depot", as_depot)
            .bearer_auth(secret)
            .body(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn pull(&self, as_depot: &str, secret: &str) -> Result<Batch, u16> {
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

pub fn change(seq: u64) -> Vec<u8> {
    let mut r = Record::new(new_actor(Side::Depot));
    r.set(&[("status", FieldValue::Text(format!("s{seq}")))])
        .unwrap()
        .unwrap()
}

pub fn sample(seq: u64) -> Vec<u8> {
    TelemetrySampleV1 {
        vehicle_id: "bus-1".into(),
        ts_ms: 1_700_000_000_000 + seq as i64,
        lat: None,
        lon: None,
        heading: None,
        speed_kmh: Some(20.0),
        soc_pct: Some(80.0),
        odometer_km: None,
        battery_temp_c: None,
        power_w: None,
        charging: None,
        extra: None,
    }
    .encode()
}

pub fn batch_of(depot: &str, seq: u64, change: Vec<u8>, payload: Vec<u8>) -> Vec<u8> {
    wire::encode(&Batch {
        depot: depot.into(),
        batch_seq: seq,
        entries: vec![
            Entry::Change {
                record_type: "vehicle_status".into(),
                record_id: "bus-1".into(),
                change,
            },
            Entry::Stream {
                stream: streams::TELEMETRY_V1.into(),
                seq,
                ts_ms: 1_700_000_000_000,
                payload,
            },
        ],
    })
    .unwrap()
}

pub fn batch(depot: &str, seq: u64) -> Vec<u8> {
    batch_of(depot, seq, change(seq), sample(seq))
}
