//! What the sync benchmarks share: the telemetry payload, a cloud served over TLS with
//! its materialiser, and an edge data directory holding a backlog.
#![allow(dead_code)]

use std::sync::Arc;

use garasi_cloud::http::{router, serve_tls, tls_acceptor, AppState};
use garasi_cloud::store::CloudStore;
use garasi_edge::modules::{fleet, sync};
use garasi_edge::node;
use garasi_edge::store::{DataDir, Store};
use garasi_sync_protocol::actor::{new_actor, Side};
use garasi_sync_protocol::streams::{TelemetrySampleV1, TELEMETRY_V1};
use tokio_util::sync::CancellationToken;

/// One telemetry sample of `vehicles` buses reporting once a second (the i-th sample).
pub fn payload(i: usize, vehicles: usize) -> (i64, Vec<u8>) {
    let ts = 1_763_700_000_000 + (i / vehicles) as i64 * 1000;
    let s = TelemetrySampleV1 {
        vehicle_id: format!("bus-{:03}", i % vehicles),
        ts_ms: ts,
        lat: Some(28.06 + (i % 1000) as f64 * 1e-5),
        lon: Some(-82.41 - (i % 777) as f64 * 1e-5),
        heading: Some((i % 360) as f64),
        speed_kmh: Some((i % 70) as f64),
        soc_pct: Some(90.0 - (i % 500) as f64 * 0.1),
        odometer_km: Some(10_000.0 + i as f64 * 0.01),
        battery_temp_c: Some(31.5),
        power_w: Some(45_000.0),
        charging: Some(false),
        extra: None,
    };
    (ts, s.encode())
}

/// A cloud serving over TLS on a free port, with the materialiser running.
pub struct BenchCloud<S> {
    pub store: Arc<S>,
    pub addr: std::net::SocketAddr,
    pub ca_pem: String,
    pub cancel: CancellationToken,
}

pub async fn serve_cloud<S: CloudStore + 'static>(
    store: S,
    dir: &std::path::Path,
) -> BenchCloud<S> {
    let (ca, cert, key) = garasi_fleet_tests::test_pki(dir).unwrap();
    store.migrate().await.unwrap();
    let store = Arc::new(store);
    let state = AppState::new(store.clone(), Arc::from(garasi_fleet_tests::ADMIN)).unwrap();
    let cancel = CancellationToken::new();
    tokio::spawn(state.materialiser.clone().run(cancel.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let tls = tls_acceptor(&cert, &key).unwrap();
    let c = cancel.clone();
    tokio::spawn(async move { serve_tls(listener, tls, router(state), c).await.unwrap() });
    BenchCloud {
        store,
        addr,
        ca_pem: std::fs::read_to_string(ca).unwrap(),
        cancel,
    }
}

/// Fills a new (not yet enrolled) edge data directory: `vehicles` buses, `changes`
/// status edits through the real `fleet::service::set_status`, `samples` telemetry rows.
pub fn build_backlog(edge_dir: &std::path::Path, vehicles: usize, changes: usize, samples: usize) {
    let dd = DataDir::new(edge_dir, None);
    dd.init().unwrap();
    let es = Store::open(&dd).unwrap();
    node::migrate_all(&es).unwrap();
    for v in 0..vehicles {
        let id = format!("bus-{v:03}");
        fleet::service::upsert_vehicle(
            &es,
            &fleet::service::Vehicle {
                id: id.clone(),
                label: id,
                plate: None,
                battery_kwh: 350.0,
                kwh_per_km: None,
                vehicle_type: None,
            },
        )
        .unwrap();
    }
    let actor = new_actor(Side::Depot);
    es.write_blocking(|c| {
        let statuses = ["in_service", "out_of_service", "in_maintenance"];
        for i in 0..changes {
            let body = fleet::service::StatusBody {
                status: statuses[i % 3].into(),
                note: Some(format!("change {i}")),
                set_by: "bench".into(),
            };
            fleet::service::set_status(c, &actor, &format!("bus-{:03}", i % vehicles), &body)
                .map_err(|e| rusqlite::Error::ToSqlConversionFailure(e.to_string().into()))?;
        }
        for chunk in (0..samples).collect::<Vec<_>>().chunks(50_000) {
            let tx = c.transaction()?;
            for &i in chunk {
                let (ts, p) = payload(i, vehicles);
                sync::service::append_stream_row(&tx, TELEMETRY_V1, ts, &p)?;
            }
            tx.commit()?;
        }
        Ok(())
    })
    .unwrap();
}

/// Enrols a filled edge data directory with the cloud; returns the depot id.
pub async fn enroll<S: CloudStore + 'static>(
    edge_dir: &std::path::Path,
    cloud: &BenchCloud<S>,
    name: &str,
) -> String {
    enroll_with(edge_dir, &*cloud.store, cloud.addr, &cloud.ca_pem, name).await
}

/// Enrols with a cloud at `addr` whose store `store` can create the depot.
pub async fn enroll_with<S: CloudStore + 'static>(
    edge_dir: &std::path::Path,
    store: &S,
    addr: std::net::SocketAddr,
    ca_pem: &str,
    name: &str,
) -> String {
    let token = store.create_depot(name).await.unwrap().enrolment_token;
    let es = Store::open(&DataDir::new(edge_dir, None)).unwrap();
    sync::service::enroll(
        &es,
        &format!("https://{addr}"),
        &token,
        Some(ca_pem.to_string()),
    )
    .await
    .unwrap()
}

/// Runs a benchmark's `run(samples)`: the sample count is the first number after `--`.
pub fn main_with<F: std::future::Future<Output = ()>>(
    default: usize,
    run: impl FnOnce(usize) -> F,
) {
    let samples = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(default);
    // GARASI_BENCH_DEPOTS_NICE=N: the runtime's threads (where the benches' depots run)
    // at nice N, standing for depots on machines of their own. The caller's thread, which
    // runs `run` itself and starts the probes' threads, keeps its priority.
    let nice: i32 = std::env::var("GARASI_BENCH_DEPOTS_NICE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_start(move || {
            if nice != 0 {
                #[cfg(target_os = "linux")]
                rustix::process::nice(nice).unwrap();
            }
        })
        .build()
        .unwrap();
    rt.block_on(run(samples));
}

/// A page's text (the bench's own requests: they must answer).
pub async fn get_text(http: &reqwest::Client, url: String) -> String {
    http.get(url).send().await.unwrap().text().await.unwrap()
}

/// A connection to PostgreSQL with a fresh schema `{schema}_raw` holding a bare
/// `stream_rows` table keyed like the store's, on the search path: where the benches'
/// raw references write. Returns the client and the schema's name.
pub async fn raw_reference(conn: &str, schema: &str) -> (tokio_postgres::Client, String) {
    let (client, connection) = tokio_postgres::connect(conn, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let raw = format!("{schema}_raw");
    client.batch_execute(&format!("DROP SCHEMA IF EXISTS {raw} CASCADE; CREATE SCHEMA {raw}; SET search_path TO {raw};
        CREATE TABLE stream_rows (depot TEXT NOT NULL, stream TEXT NOT NULL, seq BIGINT NOT NULL, ts_ms BIGINT NOT NULL,
          payload BYTEA NOT NULL, PRIMARY KEY (depot, stream, seq));
        CREATE INDEX stream_rows_time ON stream_rows (depot, ts_ms);")).await.unwrap();
    (client, raw)
}
