//! Reconnect-storm benchmark (issue 14): `cargo bench -p garasi-fleet-tests --bench
//! fleet_drain [-- SAMPLES]`. For K = 1, 4, 8 and 16 depots, each depot's outbox holds
//! SAMPLES telemetry rows (default 100,000) and 500 status changes; the K nodes start
//! cut off from one fresh cloud (SQLite always; PostgreSQL when GARASI_TEST_POSTGRES is
//! set), each holding its first push at a gate (`fleet_drain/gate.rs`), and drain once
//! the gate opens for all of them at once, as after a regional outage. Timings start
//! there. Reported: time until every outbox is empty,
//! aggregate samples/s, the machine's cores busy over the drain (/proc/stat: cloud,
//! edges and PostgreSQL share the 2 cores), and the latency of the ops view
//! (`GET /api/v1/admin/depots`) and a record view (a depot's `vehicle_status` records)
//! asked every 50 ms during the drain. Every depot's rows and changes are checked at the
//! cloud, exactly once. The cloud is the real `garasi-cloud serve` in its own process
//! and session, as a service runs (`fleet_drain/cloud.rs`); the K edges are the real
//! `Node`, in this process; PostgreSQL is its own server. CPU is reported per party, and
//! the cloud's slow-answer log lines are printed after each cell.
//! Reference: one raw batched INSERT stream of the same rows, measured in the same run.
//!
//! GARASI_BENCH_KS=4,8 runs those fleet sizes only; a size given more than once is also
//! reported pooled over its runs (`fleet_drain/pooled.rs`).
//! GARASI_BENCH_CLOUD_SESSION=shared runs the cloud in the bench's session instead.
//! The three admins' probes run in a process and session of their own (as a browser on
//! another machine); GARASI_BENCH_PROBES=inproc runs them as threads of the bench's
//! process, beside the depots (`fleet_drain/probes.rs`).
//! GARASI_BENCH_CLOUD_KEY=ec gives the cloud an ECDSA P-256 certificate (default RSA
//! 2048, as the README's set-up makes): 16 TLS handshakes at the opening.
//! GARASI_BENCH_DEPOTS_NICE=N runs the K depots at nice N (the cloud, PostgreSQL and the
//! probes stay at 0), standing for depots on machines of their own; unset, all share the
//! cores at one priority.
//!
//! Last line of output: JSON with every figure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "fleet_drain/cloud.rs"]
mod cloud;
#[path = "fleet_drain/gate.rs"]
mod gate;
#[path = "fleet_drain/pooled.rs"]
mod pooled;
#[path = "fleet_drain/probe.rs"]
mod probe;
#[path = "fleet_drain/probes.rs"]
mod probes;
mod support;

use cloud::{shared_session, CloudProcess};

use std::time::{Duration, Instant};

use garasi_cloud::store::postgres::PgStore;
use garasi_cloud::store::sqlite::SqliteStore;
use garasi_cloud::store::CloudStore;
use garasi_edge::config::Settings;
use garasi_edge::modules::{fleet, sync};
use garasi_edge::node::{self, Node};
use garasi_sync_protocol::streams::TELEMETRY_V1;
use serde_json::json;

const VEHICLES: usize = 30;
const CHANGES: usize = 500;
const KS: [usize; 4] = [1, 4, 8, 16];

/// Busy, total and stolen jiffies of the whole machine (stolen: runnable, but the
/// hypervisor ran something else; counted in busy).
fn cpu_jiffies() -> (u64, u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total - idle, total, v.get(7).copied().unwrap_or(0))
}

/// CPU seconds used so far by this process (the edges).
fn cpu_self() -> f64 {
    let ticks = 100.0; // USER_HZ on Linux
    let used = |stat: &str| -> f64 {
        // Fields after the `(comm)`: utime and stime are the 12th and 13th.
        let rest = stat.rsplit_once(')').map_or("", |x| x.1);
        let f: Vec<&str> = rest.split_whitespace().collect();
        let n = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        (n(11) + n(12)) / ticks
    };
    used(&std::fs::read_to_string("/proc/self/stat").unwrap_or_default())
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    // Nearest rank: the smallest answer with at least p of all at or below it (so with
    // fewer than 100 answers, the p99 is the slowest).
    let rank = (p * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// Answer times' count, median, 99th percentile (nearest rank) and slowest (ms), and
/// how many took over 50 ms (the acceptance's bound).
fn summary(v: &mut [f64]) -> serde_json::Value {
    let over = v.iter().filter(|ms| **ms > 50.0).count();
    json!({ "n": v.len(), "p50": percentile(v, 0.5), "p99": percentile(v, 0.99), "max": percentile(v, 1.0), "over_50ms": over })
}

/// Where the cloud's `batches` table is, to read when each batch arrived.
enum Batches<'a> {
    Sqlite(std::path::PathBuf),
    Postgres(&'a str, &'a str),
}

/// The longest time between two batches of one depot starting to be stored at the
/// cloud (ms), over every depot: it holds the batch's own service time and its wait
/// behind other depots' batches, and an edge that paused between batches (a sync
/// interval, 2 s) would add to it; with one depot there is nothing to wait behind.
async fn longest_pause(b: &Batches<'_>) -> i64 {
    let sql = "SELECT depot, received_ms FROM batches ORDER BY depot, batch_seq";
    let rows: Vec<(String, i64)> = match b {
        Batches::Sqlite(path) => {
            let c = rusqlite::Connection::open(path).unwrap();
            let mut st = c.prepare(sql).unwrap();
            st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        }
        Batches::Postgres(conn, schema) => {
            let (c, connection) = tokio_postgres::connect(conn, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(connection);
            c.batch_execute(&format!("SET search_path TO {schema}"))
                .await
                .unwrap();
            c.query(sql, &[])
                .await
                .unwrap()
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect()
        }
    };
    rows.windows(2)
        .filter(|w| w[0].0 == w[1].0)
        .map(|w| w[1].1 - w[0].1)
        .max()
        .unwrap_or(0)
}

/// K depots draining at once into a fresh cloud process on `database`; `store` is the
/// same database, for creating depots and checking what arrived.
async fn storm<S: CloudStore + 'static>(
    store: S,
    database: &str,
    batches: Batches<'_>,
    dir: &std::path::Path,
    template: &std::path::Path,
    k: usize,
    samples: usize,
) -> serde_json::Value {
    let cloud = CloudProcess::start(dir, database);
    store.migrate().await.unwrap();
    // The depots reach the cloud through a gate (their regional link), open while they
    // enrol.
    let link = gate::Gate::new(cloud.addr).await;
    let mut depots = Vec::new();
    for i in 0..k {
        let edge_dir = dir.join(format!("edge-{i}"));
        copy_dir(template, &edge_dir);
        let name = format!("D{i}");
        let id = support::enroll_with(&edge_dir, &store, link.addr, &cloud.ca_pem, &name).await;
        depots.push((id, edge_dir));
    }
    link.shut();
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cloud.ca_pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let base = format!("https://{}/api/v1/admin/depots", cloud.addr);
    let list_of = |id: &String| format!("{base}/{id}/records/vehicle_status");
    // The ops view; one depot's list refreshed (what a dashboard does); and every
    // depot's list in turn (each asked cold, after the others).
    let mut probes = probes::Probes::start(
        &cloud.ca_pem,
        vec![
            vec![base.clone()],
            vec![list_of(&depots[0].0)],
            depots.iter().map(|(id, _)| list_of(id)).collect(),
        ],
    );
    let mut nodes = Vec::new();
    let mut starting = Vec::new();
    for (_, edge_dir) in &depots {
        let settings = Settings {
            http_listen: Some("127.0.0.1:0".into()),
            mqtt_listen: Some("127.0.0.1:0".into()),
            mqtt5_listen: Some("127.0.0.1:0".into()),
            sync_interval_ms: Some("2000".into()),
            ..Default::default()
        };
        let cfg = settings.resolve(edge_dir).unwrap();
        let bound = node::bind(&cfg).unwrap();
        starting.push(Node::start(cfg, bound));
    }
    for n in futures::future::join_all(starting).await {
        nodes.push(n.unwrap());
    }
    // The depots run cut off, each holding its first push's connection at the gate; then
    // their links come back at once, as after a regional outage. What is measured starts
    // here: the depots' own start (opening encrypted stores) is not the storm.
    link.wait_held(k).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // One held connection per depot: more would be a depot that gave up waiting (its
    // connect timeout) and came back, and was not ready at the opening.
    assert_eq!(link.held(), k, "each depot held once at the gate");
    let (busy0, total0, stolen0) = cpu_jiffies();
    let me0 = cpu_self();
    let cloud0 = cloud.cpu_s();
    let t = Instant::now();
    link.open();
    probes.go();
    let mut drained = vec![None; k];
    while drained.iter().any(Option::is_none) {
        for (i, n) in nodes.iter().enumerate() {
            if drained[i].is_none() {
                let b = n.store.read(sync::service::backlog_estimate).await.unwrap();
                if b.entries() == 0 {
                    drained[i] = Some(t.elapsed().as_secs_f64());
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drain_s = t.elapsed().as_secs_f64();
    let (busy1, total1, stolen1) = cpu_jiffies();
    let me1 = cpu_self();
    let cloud1 = cloud.cpu_s();
    let mut measured = probes.finish().into_iter();
    let mut next = || measured.next().unwrap();
    let ((mut ops, _), (mut recs, recs_behind), (mut each, each_behind)) = (next(), next(), next());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let cores_busy = (busy1 - busy0) as f64 / (total1 - total0).max(1) as f64 * cores;
    // Why a depot waited between batches: its failed pushes, and the cloud's refusals.
    let plain = reqwest::Client::new();
    let mut push_failures = 0.0;
    for n in &nodes {
        let text = support::get_text(&plain, format!("http://{}/metrics", n.http_addr)).await;
        push_failures += metric_sum(&text, "garasi_sync_failures_total{step=\"push\"}");
    }
    let cloud_metrics = support::get_text(&http, format!("https://{}/metrics", cloud.addr)).await;
    let cloud_refusals = metric_sum(&cloud_metrics, "garasi_cloud_refusals_total");
    for n in nodes {
        n.stop(Duration::from_secs(10)).await;
    }
    for (depot, _) in &depots {
        assert_eq!(
            store.stream_len(depot, TELEMETRY_V1).await.unwrap(),
            samples as i64,
            "{depot}: every sample at the cloud, once"
        );
        let changes = store.pull(depot, 0, i64::MAX).await.unwrap();
        let status = changes
            .iter()
            .filter(|c| c.record_type == fleet::service::STATUS_RECORD)
            .count();
        assert_eq!(status, CHANGES, "{depot}: every change at the cloud, once");
    }
    drop(cloud);
    // The cloud's own account of its slow answers (where their time went).
    let log = std::fs::read_to_string(dir.join("cloud.log")).unwrap_or_default();
    for line in log.lines().filter(|l| l.contains("slow")) {
        eprintln!("cloud: {line}");
    }
    let pause_ms = longest_pause(&batches).await;
    let slowest = drained.iter().flatten().copied().fold(0.0, f64::max);
    let fastest = drained.iter().flatten().copied().fold(f64::MAX, f64::min);
    json!({
        "k": k,
        "drain_s": drain_s,
        "samples_per_s": ((k * samples) as f64 / drain_s).round(),
        "first_depot_done_s": fastest,
        "last_depot_done_s": slowest,
        "cores_busy": (cores_busy * 100.0).round() / 100.0,
        "cores_stolen": ((stolen1 - stolen0) as f64 / (total1 - total0).max(1) as f64 * cores * 100.0).round() / 100.0,
        "cores_edges": ((me1 - me0) / drain_s * 100.0).round() / 100.0,
        "cores_cloud": ((cloud1 - cloud0) / drain_s * 100.0).round() / 100.0,
        // PostgreSQL's processes come and go (autovacuum workers), so its share is what
        // the machine was busy with beyond the cloud and the edges (the machine's other
        // services idle meanwhile are counted in it too).
        "cores_postgres_and_rest": ((cores_busy - (cloud1 - cloud0 + me1 - me0) / drain_s).max(0.0) * 100.0).round() / 100.0,
        "longest_gap_between_batches_ms": pause_ms,
        "edge_push_failures": push_failures,
        "cloud_refusals": cloud_refusals,
        // Raw, for pooling runs of the same K (fleet_drain/pooled.rs); taken out after.
        "samples_ms": { "ops": ops.clone(), "record": recs.clone(), "in_turn": each.clone() },
        "ops_view_ms": summary(&mut ops),
        "record_view_not_up_to_date": recs_behind,
        "record_view_ms": summary(&mut recs),
        "record_views_in_turn_not_up_to_date": each_behind,
        "record_views_in_turn_ms": summary(&mut each),
        "ops_view_at_cloud": server_view(&cloud_metrics, "/api/v1/admin/depots"),
        "record_view_at_cloud": server_view(&cloud_metrics, "/api/v1/admin/depots/{depot}/records/{record_type}"),
    })
}

/// The cloud's own view of a GET route's answer times, from its histogram
/// (`garasi_cloud_http_request_seconds`): the upper bound of the bucket holding the 99th
/// percentile (ms), and how many of its requests took over 50 ms. Against the probe's
/// figures it tells the cloud's share of a slow answer from the network's and the
/// client's (a request's time in the cloud's TLS layer and socket queues is not in it).
fn server_view(text: &str, route: &str) -> serde_json::Value {
    let prefix =
        format!("garasi_cloud_http_request_seconds_bucket{{method=\"GET\",route=\"{route}\",le=\"");
    let buckets: Vec<(f64, f64)> = text
        .lines()
        .filter_map(|l| l.strip_prefix(prefix.as_str()))
        .filter_map(|rest| {
            let (le, n) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, n.trim().parse().ok()?))
        })
        .collect();
    let total = buckets.last().map_or(0.0, |b| b.1);
    let p99 = buckets
        .iter()
        .find(|b| b.1 >= 0.99 * total)
        .map_or(f64::NAN, |b| b.0 * 1000.0);
    let within = buckets
        .iter()
        .find(|b| (b.0 - 0.05).abs() < 1e-9)
        .map_or(0.0, |b| b.1);
    json!({ "n": total, "p99_at_most_ms": p99, "over_50ms": total - within })
}

/// The sum of every sample of a Prometheus text whose line starts with `name`.
fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// The references: the same rows as one raw stream into PostgreSQL, in batches of 20,000,
/// by `INSERT ... SELECT FROM unnest` and by binary COPY: (rows/s, rows/s).
async fn raw_postgres(conn: &str, schema: &str, rows: usize) -> (f64, f64) {
    let (client, raw) = support::raw_reference(conn, schema).await;
    let t = Instant::now();
    for start in (0..rows).step_by(20_000) {
        let end = (start + 20_000).min(rows);
        let seqs: Vec<i64> = (start..end).map(|i| i as i64 + 1).collect();
        let pl: Vec<(i64, Vec<u8>)> = (start..end)
            .map(|i| support::payload(i, VEHICLES))
            .collect();
        let ts: Vec<i64> = pl.iter().map(|p| p.0).collect();
        let ps: Vec<&[u8]> = pl.iter().map(|p| p.1.as_slice()).collect();
        client.execute("INSERT INTO stream_rows SELECT 'd', 'telemetry.v1', * FROM unnest($1::bigint[], $2::bigint[], $3::bytea[])", &[&seqs, &ts, &ps]).await.unwrap();
    }
    let insert_s = t.elapsed().as_secs_f64();
    client.batch_execute("TRUNCATE stream_rows").await.unwrap();
    let t = Instant::now();
    for start in (0..rows).step_by(20_000) {
        use tokio_postgres::binary_copy::BinaryCopyInWriter;
        use tokio_postgres::types::Type;
        let sink = client
            .copy_in("COPY stream_rows FROM STDIN (FORMAT binary)")
            .await
            .unwrap();
        let w = BinaryCopyInWriter::new(
            sink,
            &[Type::TEXT, Type::TEXT, Type::INT8, Type::INT8, Type::BYTEA],
        );
        tokio::pin!(w);
        for i in start..(start + 20_000).min(rows) {
            let (ts, p) = support::payload(i, VEHICLES);
            w.as_mut()
                .write(&[&"d", &"telemetry.v1", &(i as i64 + 1), &ts, &p])
                .await
                .unwrap();
        }
        w.finish().await.unwrap();
    }
    let copy_s = t.elapsed().as_secs_f64();
    client
        .batch_execute(&format!("DROP SCHEMA {raw} CASCADE"))
        .await
        .unwrap();
    (
        (rows as f64 / insert_s).round(),
        (rows as f64 / copy_s).round(),
    )
}

async fn run(samples: usize) {
    let tmp = tempfile::tempdir().unwrap();
    let template = tmp.path().join("template");
    let t = Instant::now();
    support::build_backlog(&template, VEHICLES, CHANGES, samples);
    eprintln!(
        "backlog of one depot built in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let pg = std::env::var("GARASI_TEST_POSTGRES").ok();
    if pg.is_none() {
        eprintln!("PostgreSQL skipped: set GARASI_TEST_POSTGRES");
    }
    // Whether the depots ran below the cloud's priority (support::main_with).
    let depots_nice = std::env::var("GARASI_BENCH_DEPOTS_NICE").unwrap_or_else(|_| "0".into());
    eprintln!("depots at nice {depots_nice}");
    let session = if shared_session() { "shared" } else { "own" };
    // Whether Linux shares the CPU between sessions first (what the session changes).
    let autogroup = std::fs::read_to_string("/proc/sys/kernel/sched_autogroup_enabled")
        .map_or_else(|_| "unknown".to_owned(), |v| v.trim().to_owned());
    let probes = if probes::in_process() {
        "in the depots' process and session"
    } else {
        "own process and session"
    };
    eprintln!(
        "the cloud in a session {session}; the admins' probes: {probes}; autogroup {autogroup}"
    );
    let mut out = json!({ "samples_per_depot": samples, "changes_per_depot": CHANGES, "depots_nice": depots_nice, "cloud_session": session, "probes": probes, "autogroup": autogroup });
    // GARASI_BENCH_ONLY=sqlite|postgres runs one store.
    let only = std::env::var("GARASI_BENCH_ONLY").ok();
    for backend in ["sqlite", "postgres"] {
        if only.as_deref().is_some_and(|o| o != backend) {
            continue;
        }
        let mut results = Vec::new();
        // GARASI_BENCH_KS=8,16 runs those fleet sizes only.
        let ks: Vec<usize> = std::env::var("GARASI_BENCH_KS").map_or_else(
            |_| KS.to_vec(),
            |v| {
                v.split(',')
                    .map(|k| {
                        k.trim()
                            .parse()
                            .expect("GARASI_BENCH_KS: sizes like 4,8,16")
                    })
                    .collect()
            },
        );
        for (run, k) in ks.into_iter().enumerate() {
            let dir = tmp.path().join(format!("{backend}-{run}-{k}"));
            std::fs::create_dir_all(&dir).unwrap();
            let r = match (backend, &pg) {
                ("sqlite", _) => {
                    let db = format!("sqlite://{}", dir.join("cloud.db").display());
                    // The cloud process makes the database; this handle reads it after.
                    drop(CloudProcess::start(&dir.join("first"), &db));
                    let s = SqliteStore::open(&dir.join("cloud.db")).unwrap();
                    let b = Batches::Sqlite(dir.join("cloud.db"));
                    storm(s, &db, b, &dir, &template, k, samples).await
                }
                ("postgres", Some(conn)) => {
                    let schema = format!("garasi_storm_{}_{run}_{k}", std::process::id());
                    let s = PgStore::connect(conn, Some(&schema)).await.unwrap();
                    s.drop_schema(&schema).await.unwrap();
                    let s = PgStore::connect(conn, Some(&schema)).await.unwrap();
                    let b = Batches::Postgres(conn, &schema);
                    // The cloud process lives in the same schema.
                    let db = format!("{conn} options='-c search_path={schema}'");
                    let r = storm(s, &db, b, &dir, &template, k, samples).await;
                    let s = PgStore::connect(conn, Some(&schema)).await.unwrap();
                    s.drop_schema(&schema).await.unwrap();
                    r
                }
                _ => continue,
            };
            println!(
                "{backend:8} K={k:2}: {:>8} samples/s in {:.1} s, cores busy {:.2} (cloud {}, edges {}, PostgreSQL and the rest {}; stolen by the host {}), longest gap between a depot's batches {} ms (push failures {}, cloud refusals {}), ops view p50 {:.1} p99 {:.1} ms (at the cloud: p99 <= {} ms, {} over 50 ms), record view p50 {:.1} p99 {:.1} ms, every depot's in turn p50 {:.1} p99 {:.1} ms (at the cloud, both: p99 <= {} ms, {} over 50 ms; {} answers not up to date)",
                r["samples_per_s"], r["drain_s"].as_f64().unwrap(), r["cores_busy"].as_f64().unwrap(),
                r["cores_cloud"], r["cores_edges"], r["cores_postgres_and_rest"], r["cores_stolen"],
                r["longest_gap_between_batches_ms"], r["edge_push_failures"], r["cloud_refusals"],
                r["ops_view_ms"]["p50"].as_f64().unwrap(), r["ops_view_ms"]["p99"].as_f64().unwrap(),
                r["ops_view_at_cloud"]["p99_at_most_ms"], r["ops_view_at_cloud"]["over_50ms"],
                r["record_view_ms"]["p50"].as_f64().unwrap(), r["record_view_ms"]["p99"].as_f64().unwrap(),
                r["record_views_in_turn_ms"]["p50"].as_f64().unwrap(), r["record_views_in_turn_ms"]["p99"].as_f64().unwrap(),
                r["record_view_at_cloud"]["p99_at_most_ms"], r["record_view_at_cloud"]["over_50ms"],
                r["record_view_not_up_to_date"].as_u64().unwrap() + r["record_views_in_turn_not_up_to_date"].as_u64().unwrap(),
            );
            results.push(r);
            // Each cell's K depots and cloud are done with: their disk back.
            std::fs::remove_dir_all(&dir).ok();
        }
        let pooled = pooled::pool(&mut results);
        for p in &pooled {
            println!("{}", pooled::line(backend, p));
        }
        out[backend] = json!(results);
        out[format!("{backend}_pooled")] = json!(pooled);
    }
    if let Some(conn) = &pg {
        let raw = raw_postgres(
            conn,
            &format!("garasi_storm_{}", std::process::id()),
            samples * 4,
        )
        .await;
        let (insert, copy) = raw;
        println!("references, one raw stream into PostgreSQL: INSERT from unnest {insert} rows/s, binary COPY {copy} rows/s");
        out["postgres_raw_insert_rows_per_s"] = json!(insert);
        out["postgres_raw_copy_rows_per_s"] = json!(copy);
    }
    println!("{out}");
}

fn main() {
    if probes::child_main() {
        return;
    }
    support::main_with(100_000, run);
}
