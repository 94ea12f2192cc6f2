//! Ingest benchmark, one run, three pipelines over the same messages (run it with
//! `cargo bench -p garasi-edge --bench ingest [-- MESSAGES]`):
//!  (a) N MQTT publishers -> the real `garasi-edge` binary (gate -> rumqttd -> ingest ->
//!      SQLCipher), measuring sustained committed rows/s;
//!  (b) raw SQLCipher batched insert of the same rows (the storage ceiling);
//!  (c) the classic pipeline: publishers -> external Mosquitto (127.0.0.1:1883) -> a
//!      separate MQTT subscriber doing the same validation and batched writes.
//! Also: idle RSS of the node with 50 connected devices, and start-to-ready time.
//! Ends with one JSON line of the figures.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use garasi_edge::modules::telemetry::{ingest, live, writer, MIGRATIONS};
use garasi_edge::modules::{auth, fleet};
use garasi_edge::store::{migrate, DataDir, Role, Store};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

const DEVICES: usize = 50;

fn payload(ts: i64) -> String {
    serde_json::json!({"ts": ts, "signals": {
        "Vehicle.CurrentLocation.Latitude": 28.06, "Vehicle.CurrentLocation.Longitude": -82.41,
        "Vehicle.Speed": 31.5, "Vehicle.TraveledDistance": 20001.2,
        "Vehicle.Powertrain.TractionBattery.StateOfCharge.Displayed": 77.5,
        "Vehicle.Powertrain.TractionBattery.Temperature.Average": 30.1,
        "Vehicle.Powertrain.TractionBattery.CurrentPower": 38000.0
    }})
    .to_string()
}

fn ids() -> Vec<String> {
    (0..DEVICES).map(|i| format!("bench-{i:03}")).collect()
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Publishes `per_device` QoS 1 messages from each device, flat out; returns when all are acked.
async fn publish_all(
    addr: SocketAddr,
    creds: &[(String, String)],
    topic_prefix: &str,
    per_device: usize,
    base_ts: i64,
) {
    let mut tasks = Vec::new();
    for (i, (id, pw)) in creds.iter().enumerate() {
        let mut mo = MqttOptions::new(
            format!("{topic_prefix}{id}"),
            addr.ip().to_string(),
            addr.port(),
        );
        if !pw.is_empty() {
            mo.set_credentials(id.clone(), pw.clone());
        }
        mo.set_inflight(100);
        mo.set_keep_alive(Duration::from_secs(30));
        let (c, mut el) = AsyncClient::new(mo, 1000);
        let topic = format!("{topic_prefix}garasi/v1/vehicles/{id}/telemetry");
        let base = base_ts + (i as i64) * 10_000_000;
        tasks.push(tokio::spawn(async move {
            let pubs = tokio::spawn(async move {
                for n in 0..per_device {
                    c.publish(
                        topic.clone(),
                        QoS::AtLeastOnce,
                        false,
                        payload(base + n as i64),
                    )
                    .await
                    .unwrap();
                }
            });
            let mut acked = 0;
            while acked < per_device {
                match el.poll().await {
                    Ok(Event::Incoming(Packet::PubAck(_))) => acked += 1,
                    Ok(_) => {}
                    Err(e) => panic!("publisher failed: {e}"),
                }
            }
            pubs.await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

async fn committed(http: &str) -> f64 {
    let text = reqwest::get(format!("{http}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("garasi_telemetry_rows_committed_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

struct EmbeddedResult {
    rate: f64,
    ready_ms: f64,
    idle_rss_mib: f64,
    loaded_rss_mib: f64,
}

async fn embedded(total: usize) -> EmbeddedResult {
    let tmp = tempfile::tempdir().unwrap();
    let dd = DataDir::new(tmp.path(), None);
    dd.init().unwrap();
    let store = Store::open(&dd).unwrap();
    for m in garasi_edge::node::all_modules() {
        store
            .write_blocking(|c| Ok(migrate::run(c, m.name(), m.migrations())))
            .unwrap()
            .unwrap();
    }
    let mut creds = Vec::new();
    for id in ids() {
        fleet::upsert_vehicle(
            &store,
            &fleet::Vehicle {
                id: id.clone(),
                label: id.clone(),
                plate: None,
                battery_kwh: 350.0,
            },
        )
        .unwrap();
        creds.push((
            id.clone(),
            auth::add_device(&store, &id, "vehicle").unwrap(),
        ));
    }
    drop(store);
    let exe = Path::new(env!("CARGO_BIN_EXE_garasi-edge"));
    let t0 = Instant::now();
    let mut child = Command::new(exe)
        .args(["run", "--data-dir", tmp.path().to_str().unwrap()])
        .args([
            "--http-listen",
            "127.0.0.1:0",
            "--mqtt-listen",
            "127.0.0.1:0",
            "--mqtt5-listen",
            "127.0.0.1:0",
        ])
        .env("RUST_LOG", "warn,garasi_edge=info")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", exe.display()));
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = loop {
        let line = lines.next().expect("node exited").unwrap();
        if line.contains("garasi-edge ready") {
            break line;
        }
    };
    let ready_ms = t0.elapsed().as_secs_f64() * 1000.0;
    std::thread::spawn(move || for _ in lines {});
    let field = |k: &str| {
        ready
            .split_whitespace()
            .find_map(|w| w.strip_prefix(k))
            .unwrap()
            .to_string()
    };
    let http = format!("http://{}", field("http="));
    let mqtt: SocketAddr = field("mqtt=").parse().unwrap();

    // Idle with 50 connected devices.
    let mut idle_clients = Vec::new();
    for (id, pw) in &creds {
        let mut mo = MqttOptions::new(format!("idle-{id}"), mqtt.ip().to_string(), mqtt.port());
        mo.set_credentials(id.clone(), pw.clone());
        let (c, mut el) = AsyncClient::new(mo, 10);
        tokio::spawn(async move { while el.poll().await.is_ok() {} });
        idle_clients.push(c);
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    let idle_rss_mib = rss_kib(child.id()) as f64 / 1024.0;
    drop(idle_clients);

    let per = total / DEVICES;
    let t1 = Instant::now();
    publish_all(mqtt, &creds, "", per, 1_700_000_000_000).await;
    let target = (per * DEVICES) as f64;
    while committed(&http).await < target {
        if t1.elapsed() > Duration::from_secs(300) {
            panic!("embedded pipeline did not commit everything in 300 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rate = target / t1.elapsed().as_secs_f64();
    let loaded_rss_mib = rss_kib(child.id()) as f64 / 1024.0;
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    EmbeddedResult {
        rate,
        ready_ms,
        idle_rss_mib,
        loaded_rss_mib,
    }
}

fn bench_conn(dir: &Path) -> rusqlite::Connection {
    let dd = DataDir::new(dir, None);
    dd.init().unwrap();
    let mut c = dd.open(Role::Writer).unwrap();
    migrate::run(&mut c, "telemetry", MIGRATIONS).unwrap();
    c
}

/// (b) Raw batched insert of the same rows through the same statement.
fn raw_insert(total: usize) -> f64 {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = bench_conn(tmp.path());
    let t0 = Instant::now();
    for chunk in 0..total.div_ceil(writer::MAX_BATCH) {
        let tx = c.transaction().unwrap();
        {
            let mut st = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO telemetry_samples (vehicle_id, ts_ms, received_ms, lat, lon, heading, speed_kmh,
                       soc_pct, odometer_km, battery_temp_c, power_w, charging, extra)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                )
                .unwrap();
            let start = chunk * writer::MAX_BATCH;
            for n in start..(start + writer::MAX_BATCH).min(total) {
                let id = format!("bench-{:03}", n % DEVICES);
                st.execute(rusqlite::params![
                    id,
                    1_700_000_000_000i64 + n as i64,
                    0i64,
                    28.06,
                    -82.41,
                    None::<f64>,
                    31.5,
                    77.5,
                    20001.2,
                    30.1,
                    38000.0,
                    None::<bool>,
                    None::<String>
                ])
                .unwrap();
            }
        }
        tx.commit().unwrap();
    }
    total as f64 / t0.elapsed().as_secs_f64()
}

/// (c) Publishers -> Mosquitto -> a subscriber that validates and batch-writes like ours.
async fn external(total: usize, addr: SocketAddr) -> f64 {
    let tmp = tempfile::tempdir().unwrap();
    let conn = bench_conn(tmp.path());
    let metrics = Arc::new(garasi_edge::metrics::Metrics::new().unwrap());
    let w = writer::Writer {
        conn,
        live: Arc::new(live::Live::new(30_000, 120_000)),
        bus: garasi_edge::bus::Bus::new(16),
        metrics: metrics.clone(),
        interval: Duration::from_millis(100),
    };
    let (tx, rx) = std::sync::mpsc::sync_channel(50_000);
    let writer_thread = std::thread::spawn(move || w.run(rx));
    let prefix = format!("b{}/", std::process::id());
    let mut mo = MqttOptions::new(
        format!("{prefix}subscriber"),
        addr.ip().to_string(),
        addr.port(),
    );
    mo.set_inflight(1000);
    mo.set_max_packet_size(1 << 20, 1 << 20);
    let (sub, mut el) = AsyncClient::new(mo, 1000);
    sub.subscribe(
        format!("{prefix}garasi/v1/vehicles/+/telemetry"),
        QoS::AtLeastOnce,
    )
    .await
    .unwrap();
    let expect = (total / DEVICES) * DEVICES;
    let strip = prefix.clone();
    let consumer = tokio::spawn(async move {
        let schemas = ingest::Schemas::load().unwrap();
        let mut n = 0;
        let mut subscribed = false;
        while n < expect {
            match el.poll().await.unwrap() {
                Event::Incoming(Packet::SubAck(_)) => subscribed = true,
                Event::Incoming(Packet::Publish(p)) => {
                    let topic = p.topic.strip_prefix(&strip).unwrap_or(&p.topic).to_string();
                    let item = ingest::classify(
                        &topic,
                        &Bytes::from(p.payload.to_vec()),
                        0,
                        16 * 1024,
                        &schemas,
                        &|_| true,
                    );
                    tx.send(item).unwrap();
                    n += 1;
                }
                _ => {}
            }
            let _ = subscribed;
        }
        drop(tx);
    });
    tokio::time::sleep(Duration::from_millis(500)).await; // SUBACK before publishing
    let creds: Vec<(String, String)> = ids().into_iter().map(|i| (i, String::new())).collect();
    let t0 = Instant::now();
    publish_all(addr, &creds, &prefix, total / DEVICES, 1_700_000_000_000).await;
    consumer.await.unwrap();
    writer_thread.join().unwrap();
    let rate = expect as f64 / t0.elapsed().as_secs_f64();
    assert_eq!(
        metrics.telemetry_rows_committed_total.get() as usize,
        expect,
        "external pipeline lost rows"
    );
    rate
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes "--bench"; the first numeric argument is the message count.
    let total: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(300_000);
    println!("garasi-bench: {total} telemetry messages from {DEVICES} devices, QoS 1, one run");
    let e = embedded(total).await;
    println!(
        "(a) embedded broker -> garasi-edge -> SQLCipher: {:>9.0} rows/s committed",
        e.rate
    );
    let raw = tokio::task::spawn_blocking(move || raw_insert(total))
        .await
        .unwrap();
    println!("(b) raw SQLCipher batched insert (reference):    {raw:>9.0} rows/s");
    let mosq: SocketAddr = "127.0.0.1:1883".parse().unwrap();
    let ext = if std::net::TcpStream::connect_timeout(&mosq, Duration::from_secs(1)).is_ok() {
        let r = external(total, mosq).await;
        println!("(c) Mosquitto + separate subscriber pipeline:    {r:>9.0} rows/s");
        Some(r)
    } else {
        println!("(c) Mosquitto not reachable at {mosq}: skipped");
        None
    };
    println!(
        "ratio (a)/(b) = {:.2}   ratio (a)/(c) = {}",
        e.rate / raw,
        ext.map(|x| format!("{:.2}", e.rate / x))
            .unwrap_or("n/a".into())
    );
    println!(
        "idle RSS with {DEVICES} connected devices: {:.1} MiB; after the load: {:.1} MiB",
        e.idle_rss_mib, e.loaded_rss_mib
    );
    println!(
        "start-to-ready (process spawn to ready line): {:.0} ms",
        e.ready_ms
    );
    let json = serde_json::json!({
        "messages": total, "devices": DEVICES,
        "embedded_rows_per_s": e.rate.round(), "raw_insert_rows_per_s": raw.round(),
        "external_pipeline_rows_per_s": ext.map(f64::round),
        "ratio_embedded_vs_raw": (e.rate / raw * 100.0).round() / 100.0,
        "ratio_embedded_vs_external": ext.map(|x| (e.rate / x * 100.0).round() / 100.0),
        "idle_rss_mib_50_devices": (e.idle_rss_mib * 10.0).round() / 10.0,
        "loaded_rss_mib": (e.loaded_rss_mib * 10.0).round() / 10.0,
        "start_to_ready_ms": e.ready_ms.round(),
    });
    println!("{json}");
}
