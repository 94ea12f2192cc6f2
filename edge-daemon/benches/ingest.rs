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
use garasi_edge::modules::sync::SyncModule;
use garasi_edge::modules::telemetry::{ingest, live, writer, TelemetryModule};
use garasi_edge::modules::Module;
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

/// Connection errors the publishers retried (each costs 200 ms inside the timed run:
/// printed, so a rate that includes them says so).
static RETRIES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

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
            // Like a real device: told "server unavailable" (50 devices sign in at once
            // from this one address), it comes back shortly.
            let mut retries = 0;
            while acked < per_device {
                match el.poll().await {
                    Ok(Event::Incoming(Packet::PubAck(_))) => acked += 1,
                    Ok(_) => {}
                    Err(e) if retries < 100 => {
                        retries += 1;
                        let _ = e;
                        RETRIES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    }
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

async fn metric(http: &str, name: &str) -> f64 {
    let text = reqwest::get(format!("{http}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let prefix = format!("{name} ");
    text.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

struct EmbeddedResult {
    rate: f64,
    committed: f64,
    lost: f64,
    cursor_jumps: f64,
    publish_rate: f64,
    ready_ms: f64,
    idle_rss_mib: f64,
    loaded_rss_mib: f64,
}

async fn embedded(total: usize) -> EmbeddedResult {
    let tmp = tempfile::tempdir().unwrap();
    let dd = DataDir::new(tmp.path(), None);
    dd.init().unwrap();
    let store = Store::open(&dd).unwrap();
    garasi_edge::node::migrate_all(&store).unwrap();
    let mut creds = Vec::new();
    for id in ids() {
        fleet::service::upsert_vehicle(
            &store,
            &fleet::service::Vehicle {
                id: id.clone(),
                label: id.clone(),
                plate: None,
                battery_kwh: 350.0,
                kwh_per_km: None,
                vehicle_type: None,
            },
        )
        .unwrap();
        creds.push((
            id.clone(),
            auth::service::add_device(&store, &id, "vehicle").unwrap(),
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
        .stderr(Stdio::null())
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

    // Idle with 50 connected devices: all 50 signed in (those told "server unavailable"
    // while the one address's sign-in queue was full come back), then measured.
    let connected = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut idle_clients = Vec::new();
    for (id, pw) in &creds {
        let mut mo = MqttOptions::new(format!("idle-{id}"), mqtt.ip().to_string(), mqtt.port());
        mo.set_credentials(id.clone(), pw.clone());
        let (c, mut el) = AsyncClient::new(mo, 10);
        let (connected, stop) = (connected.clone(), stop.clone());
        tokio::spawn(async move {
            let mut counted = false;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match el.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) if !counted => {
                        counted = true;
                        connected.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        });
        idle_clients.push(c);
    }
    let wait = Instant::now();
    while connected.load(std::sync::atomic::Ordering::Relaxed) < creds.len() {
        assert!(
            wait.elapsed() < Duration::from_secs(60),
            "idle devices did not all sign in"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "    all {} idle devices signed in after {:.1} s",
        creds.len(),
        wait.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    let idle_rss_mib = rss_kib(child.id()) as f64 / 1024.0;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    drop(idle_clients);

    let per = total / DEVICES;
    let t1 = Instant::now();
    publish_all(mqtt, &creds, "", per, 1_700_000_000_000).await;
    let target = (per * DEVICES) as f64;
    let publish_s = t1.elapsed().as_secs_f64();
    // Wait until everything is committed, or nothing more arrives for 3 s (lost in the
    // broker: counted as cursor jumps).
    let (mut last, mut last_change) = (0.0, Instant::now());
    let mut done_at = t1.elapsed();
    loop {
        let c = metric(&http, "garasi_telemetry_rows_committed_total").await;
        if c > last {
            last = c;
            last_change = Instant::now();
            done_at = t1.elapsed();
        }
        if c >= target || last_change.elapsed() > Duration::from_secs(3) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rate = last / done_at.as_secs_f64();
    let jumps = metric(&http, "garasi_broker_cursor_jumps_total").await;
    let loaded_rss_mib = rss_kib(child.id()) as f64 / 1024.0;
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    EmbeddedResult {
        rate,
        committed: last,
        lost: target - last,
        cursor_jumps: jumps,
        publish_rate: target / publish_s,
        ready_ms,
        idle_rss_mib,
        loaded_rss_mib,
    }
}

fn bench_conn(dir: &Path) -> rusqlite::Connection {
    let dd = DataDir::new(dir, None);
    dd.init().unwrap();
    let mut c = dd.open(Role::Writer).unwrap();
    // The writer also appends each sample to the sync stream outbox: same work as (a).
    migrate::run(&mut c, "sync", SyncModule.migrations()).unwrap();
    migrate::run(&mut c, "telemetry", TelemetryModule.migrations()).unwrap();
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
async fn external(total: usize, addr: SocketAddr) -> ExternalResult {
    let tmp = tempfile::tempdir().unwrap();
    let conn = bench_conn(tmp.path());
    let registry = prometheus::Registry::new();
    let metrics = Arc::new(
        garasi_edge::modules::telemetry::metrics::TelemetryMetrics::register(&registry).unwrap(),
    );
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
    let t0 = Instant::now();
    let consumer = tokio::spawn(async move {
        let schemas = ingest::Schemas::load().unwrap();
        let mut n = 0;
        let mut last = t0.elapsed();
        // Stop when all arrived, or nothing came for 3 s (the broker dropped the rest).
        while n < expect {
            let ev = match tokio::time::timeout(Duration::from_secs(3), el.poll()).await {
                Ok(ev) => ev.unwrap(),
                Err(_) => break,
            };
            if let Event::Incoming(Packet::Publish(p)) = ev {
                let topic = p.topic.strip_prefix(&strip).unwrap_or(&p.topic).to_string();
                let payload = Bytes::from(p.payload.to_vec());
                let item = ingest::classify(&topic, &payload, 0, 16 * 1024, &schemas, &|_| true);
                tx.send(item).unwrap();
                n += 1;
                last = t0.elapsed();
            }
        }
        drop(tx);
        last
    });
    tokio::time::sleep(Duration::from_millis(500)).await; // SUBACK before publishing
    let creds: Vec<(String, String)> = ids().into_iter().map(|i| (i, String::new())).collect();
    let started = t0.elapsed();
    publish_all(addr, &creds, &prefix, total / DEVICES, 1_700_000_000_000).await;
    let last = consumer.await.unwrap();
    writer_thread.join().unwrap();
    let elapsed = (last - started).as_secs_f64();
    let committed = metrics.rows_committed_total.get() as f64;
    ExternalResult {
        rate: committed / elapsed,
        lost: expect as f64 - committed,
    }
}

/// Starts `mosquitto` on a free port with queues that never drop.
fn own_mosquitto() -> Option<(SocketAddr, std::process::Child, tempfile::TempDir)> {
    let dir = tempfile::tempdir().ok()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let conf = dir.path().join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n\
             max_queued_messages 0\nmax_queued_bytes 0\nmax_inflight_messages 0\n"
        ),
    )
    .ok()?;
    let child = Command::new("mosquitto")
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().ok()?;
    for _ in 0..50 {
        if std::net::TcpStream::connect(addr).is_ok() {
            return Some((addr, child, dir));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

struct ExternalResult {
    rate: f64,
    lost: f64,
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
    println!(
        "    publishers were acked at {:.0} msg/s; committed {:.0}, lost {:.0} (router cursor jumps {:.0})",
        e.publish_rate, e.committed, e.lost, e.cursor_jumps
    );
    println!(
        "    connection errors retried by the publishers (200 ms each, inside the timed run): {}",
        RETRIES.load(std::sync::atomic::Ordering::Relaxed)
    );
    let raw = tokio::task::spawn_blocking(move || raw_insert(total))
        .await
        .unwrap();
    println!("(b) raw SQLCipher batched insert (reference):    {raw:>9.0} rows/s");
    // The reference broker: our own Mosquitto configured never to drop (its defaults
    // drop QoS 1 messages beyond 1,000 queued per subscriber, which would make the
    // comparison meaningless), else the machine's Mosquitto on 1883 with its defaults.
    let (ext, ext_label) = match own_mosquitto() {
        Some((addr, mut child, _dir)) => {
            let r = external(total, addr).await;
            let _ = child.kill();
            let _ = child.wait();
            (Some(r), "own Mosquitto, unlimited queues")
        }
        None => {
            let mosq: SocketAddr = "127.0.0.1:1883".parse().unwrap();
            if std::net::TcpStream::connect_timeout(&mosq, Duration::from_secs(1)).is_ok() {
                (
                    Some(external(total, mosq).await),
                    "Mosquitto 127.0.0.1:1883, default config",
                )
            } else {
                (None, "no Mosquitto available")
            }
        }
    };
    match &ext {
        Some(r) => println!(
            "(c) Mosquitto + separate subscriber pipeline:    {:>9.0} rows/s committed, lost {:.0} ({ext_label})",
            r.rate, r.lost
        ),
        None => println!("(c) skipped: {ext_label}"),
    }
    println!(
        "ratio (a)/(b) = {:.2}   ratio (a)/(c) = {}",
        e.rate / raw,
        ext.as_ref()
            .map(|x| format!("{:.2}", e.rate / x.rate))
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
        "embedded_rows_per_s": e.rate.round(), "embedded_lost": e.lost, "embedded_cursor_jumps": e.cursor_jumps, "raw_insert_rows_per_s": raw.round(),
        "external_pipeline_rows_per_s": ext.as_ref().map(|x| x.rate.round()),
        "external_pipeline_lost": ext.as_ref().map(|x| x.lost),
        "external_broker": ext_label,
        "ratio_embedded_vs_raw": (e.rate / raw * 100.0).round() / 100.0,
        "ratio_embedded_vs_external": ext.as_ref().map(|x| (e.rate / x.rate * 100.0).round() / 100.0),
        "idle_rss_mib_50_devices": (e.idle_rss_mib * 10.0).round() / 10.0,
        "loaded_rss_mib": (e.loaded_rss_mib * 10.0).round() / 10.0,
        "start_to_ready_ms": e.ready_ms.round(),
    });
    println!("{json}");
}
