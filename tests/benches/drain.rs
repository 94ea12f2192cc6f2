//! Sync drain benchmark (`cargo bench -p garasi-fleet-tests --bench drain [-- SAMPLES]`),
//! run once per cloud store (SQLite always; PostgreSQL when GARASI_TEST_POSTGRES is set).
//!
//! 1. Drain: an enrolled depot whose outbox holds SAMPLES telemetry rows (default
//!    1,000,000) and 10,000 operational changes (vehicle status edits through the real
//!    `fleet::service::set_status` path) starts its node; the time until the outbox is empty is the
//!    drain (push over HTTPS to the real cloud router, stored, acknowledged, deleted).
//!    Reference: raw batched INSERT of the same rows into the same backend's table.
//! 2. Apply: 100,000 record changes (10,000 records x 10) stored at the cloud and folded
//!    into merged documents by the materialiser.
//!
//! Last line of output: JSON with every figure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use garasi_cloud::materialise::Materialiser;
use garasi_cloud::store::postgres::PgStore;
use garasi_cloud::store::sqlite::SqliteStore;
use garasi_cloud::store::{ChangeIn, CloudStore};
use garasi_edge::config::Settings;
use garasi_edge::modules::{fleet, sync};
use garasi_edge::node::{self, Node};
use garasi_edge::store::{DataDir, Store};
use garasi_sync_protocol::actor::{new_actor, Side};
use garasi_sync_protocol::record::{FieldValue, Record};
use garasi_sync_protocol::streams::TELEMETRY_V1;
use serde_json::json;

const CHANGES: usize = 10_000;
const VEHICLES: usize = 200;
const APPLY_RECORDS: usize = 10_000;
const APPLY_PER_RECORD: usize = 10;
const REF_BATCH: usize = 20_000;

fn payload(i: usize) -> (i64, Vec<u8>) {
    support::payload(i, VEHICLES)
}

enum Backend {
    Sqlite(std::path::PathBuf),
    Postgres(String, String),
}

impl Backend {
    fn name(&self) -> &'static str {
        match self {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(..) => "postgres",
        }
    }
}

/// Builds the depot's backlog, starts the node, times the drain.
async fn drain<S: CloudStore + 'static>(
    store: S,
    dir: &std::path::Path,
    samples: usize,
) -> serde_json::Value {
    let cloud = support::serve_cloud(store, dir).await;
    let edge_dir = dir.join("edge");
    let t = Instant::now();
    support::build_backlog(&edge_dir, VEHICLES, CHANGES, samples);
    let depot = support::enroll(&edge_dir, &cloud, "Bench depot").await;
    let (store, cancel) = (cloud.store.clone(), cloud.cancel.clone());
    let es = Store::open(&DataDir::new(&edge_dir, None)).unwrap();
    let backlog = es.read_blocking(sync::service::backlog).unwrap();
    eprintln!(
        "  backlog built in {:.1} s: {backlog:?}",
        t.elapsed().as_secs_f64()
    );
    drop(es);

    let settings = Settings {
        http_listen: Some("127.0.0.1:0".into()),
        mqtt_listen: Some("127.0.0.1:0".into()),
        mqtt5_listen: Some("127.0.0.1:0".into()),
        sync_interval_ms: Some("100".into()),
        ..Default::default()
    };
    let cfg = settings.resolve(&edge_dir).unwrap();
    let bound = node::bind(&cfg).unwrap();
    let t = Instant::now();
    let node = Node::start(cfg, bound).await.unwrap();
    loop {
        let b = node
            .store
            .read(sync::service::backlog_estimate)
            .await
            .unwrap();
        if b.entries() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drain_s = t.elapsed().as_secs_f64();
    assert_eq!(
        store.stream_len(&depot, TELEMETRY_V1).await.unwrap(),
        samples as i64,
        "every sample at the cloud"
    );
    let changes_at_cloud = store
        .pull(&depot, 0, i64::MAX)
        .await
        .unwrap()
        .iter()
        .filter(|c| c.record_type == fleet::service::STATUS_RECORD)
        .count();
    assert_eq!(changes_at_cloud, CHANGES, "every change at the cloud");
    node.stop(Duration::from_secs(10)).await;
    cancel.cancel();
    json!({
        "drain_s": drain_s,
        "drain_samples_per_s": (samples as f64 / drain_s).round(),
        "drain_entries_per_s": ((samples + CHANGES) as f64 / drain_s).round(),
        "backlog_bytes": backlog.bytes(),
    })
}

/// The reference: the same rows inserted straight into the backend, in batches.
async fn raw_insert(backend: &Backend, samples: usize) -> f64 {
    let rows: Vec<(i64, i64, Vec<u8>)> = (0..samples)
        .map(|i| {
            let (ts, p) = payload(i);
            (i as i64 + 1, ts, p)
        })
        .collect();
    match backend {
        Backend::Sqlite(dir) => {
            let c = rusqlite::Connection::open(dir.join("raw.db")).unwrap();
            c.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
                CREATE TABLE stream_rows (depot TEXT NOT NULL, stream TEXT NOT NULL, seq INTEGER NOT NULL, ts_ms INTEGER NOT NULL,
                  payload BLOB NOT NULL, PRIMARY KEY (depot, stream, seq)) WITHOUT ROWID;
                CREATE INDEX stream_rows_time ON stream_rows (depot, ts_ms);").unwrap();
            let t = Instant::now();
            let mut c = c;
            for chunk in rows.chunks(REF_BATCH) {
                let tx = c.transaction().unwrap();
                {
                    let mut st = tx
                        .prepare_cached(
                            "INSERT INTO stream_rows VALUES ('d', 'telemetry.v1', ?1, ?2, ?3)",
                        )
                        .unwrap();
                    for (seq, ts, p) in chunk {
                        st.execute(rusqlite::params![seq, ts, p]).unwrap();
                    }
                }
                tx.commit().unwrap();
            }
            t.elapsed().as_secs_f64()
        }
        Backend::Postgres(conn, schema) => {
            let (client, raw) = support::raw_reference(conn, schema).await;
            let t = Instant::now();
            for chunk in rows.chunks(REF_BATCH) {
                let seqs: Vec<i64> = chunk.iter().map(|r| r.0).collect();
                let ts: Vec<i64> = chunk.iter().map(|r| r.1).collect();
                let ps: Vec<&[u8]> = chunk.iter().map(|r| r.2.as_slice()).collect();
                client.execute("INSERT INTO stream_rows SELECT 'd', 'telemetry.v1', * FROM unnest($1::bigint[], $2::bigint[], $3::bytea[])", &[&seqs, &ts, &ps]).await.unwrap();
            }
            let s = t.elapsed().as_secs_f64();
            client
                .batch_execute(&format!("DROP SCHEMA {raw} CASCADE"))
                .await
                .unwrap();
            s
        }
    }
}

/// 100,000 record changes stored at the cloud, then folded by the materialiser.
async fn apply<S: CloudStore + 'static>(store: S) -> serde_json::Value {
    store.migrate().await.unwrap();
    let store = Arc::new(store);
    let depot = store.create_depot("Apply").await.unwrap().id;
    let mut changes = Vec::with_capacity(APPLY_RECORDS * APPLY_PER_RECORD);
    for r in 0..APPLY_RECORDS {
        let mut rec = Record::new(new_actor(Side::Depot));
        for k in 0..APPLY_PER_RECORD {
            let ch = rec
                .set(&[
                    ("status", FieldValue::Text(format!("s{k}"))),
                    ("odometer", FieldValue::Int((r * 10 + k) as i64)),
                ])
                .unwrap()
                .unwrap();
            changes.push(ChangeIn {
                record_type: "vehicle_status".into(),
                record_id: format!("r{r}"),
                change: ch,
            });
        }
    }
    // Interleave records the way many depots' edits arrive: change k of every record,
    // then change k + 1.
    let mut ordered = Vec::with_capacity(changes.len());
    for k in 0..APPLY_PER_RECORD {
        for r in 0..APPLY_RECORDS {
            ordered.push(changes[r * APPLY_PER_RECORD + k].clone());
        }
    }
    let t = Instant::now();
    for (i, chunk) in ordered.chunks(1000).enumerate() {
        store.push(&depot, i as i64 + 1, chunk, &[]).await.unwrap();
    }
    let store_s = t.elapsed().as_secs_f64();
    let m = Materialiser::new(store.clone());
    let t = Instant::now();
    let folded = m.catch_up().await.unwrap();
    let fold_s = t.elapsed().as_secs_f64();
    assert_eq!(folded as usize, ordered.len());
    let recs = store.list_records(&depot, "vehicle_status").await.unwrap();
    assert_eq!(recs.len(), APPLY_RECORDS);
    json!({ "apply_store_s": store_s, "apply_fold_s": fold_s, "apply_total_s": store_s + fold_s })
}

async fn run(samples: usize) {
    let mut out = json!({ "samples": samples, "changes": CHANGES, "apply_changes": APPLY_RECORDS * APPLY_PER_RECORD });
    let mut backends = Vec::new();
    let tmp = tempfile::tempdir().unwrap();
    backends.push(Backend::Sqlite(tmp.path().join("sqlite")));
    match std::env::var("GARASI_TEST_POSTGRES") {
        Ok(conn) => backends.push(Backend::Postgres(
            conn,
            format!("garasi_bench_{}", std::process::id()),
        )),
        Err(_) => eprintln!("PostgreSQL skipped: set GARASI_TEST_POSTGRES"),
    }
    for b in &backends {
        eprintln!("== {}", b.name());
        let dir = tmp.path().join(b.name());
        std::fs::create_dir_all(&dir).unwrap();
        let (d, a) = match b {
            Backend::Sqlite(dir) => (
                drain(
                    SqliteStore::open(&dir.join("cloud.db")).unwrap(),
                    dir,
                    samples,
                )
                .await,
                apply(SqliteStore::open(&dir.join("apply.db")).unwrap()).await,
            ),
            Backend::Postgres(conn, schema) => {
                let fresh = |s: String| async move {
                    let st = PgStore::connect(conn, Some(&s)).await.unwrap();
                    st.drop_schema(&s).await.unwrap();
                    PgStore::connect(conn, Some(&s)).await.unwrap()
                };
                let d = drain(fresh(schema.clone()).await, &dir, samples).await;
                let a = apply(fresh(format!("{schema}_apply")).await).await;
                for s in [schema.clone(), format!("{schema}_apply")] {
                    PgStore::connect(conn, Some(&s))
                        .await
                        .unwrap()
                        .drop_schema(&s)
                        .await
                        .unwrap();
                }
                (d, a)
            }
        };
        let raw_s = raw_insert(b, samples).await;
        let raw_rate = (samples as f64 / raw_s).round();
        let drain_rate = d["drain_samples_per_s"].as_f64().unwrap();
        println!(
            "{:9} drain {:>9.0} samples/s ({:.1} s for {samples} + {CHANGES} changes) | raw insert {:>9.0} rows/s (ratio {:.2}) | apply 100k changes: store {:.2} s + fold {:.2} s",
            b.name(), drain_rate, d["drain_s"].as_f64().unwrap(), raw_rate, drain_rate / raw_rate,
            a["apply_store_s"].as_f64().unwrap(), a["apply_fold_s"].as_f64().unwrap()
        );
        let mut r = d;
        r["raw_insert_rows_per_s"] = json!(raw_rate);
        r["ratio_drain_vs_raw"] = json!((drain_rate / raw_rate * 100.0).round() / 100.0);
        for (k, v) in a.as_object().unwrap() {
            r[k] = v.clone();
        }
        out[b.name()] = r;
    }
    println!("{out}");
}

fn main() {
    support::main_with(1_000_000, run);
}
