//! OCPP benchmark, one run (`cargo bench -p garasi-edge --bench ocpp [-- CHARGERS SECONDS]`):
//!  (a) the real `garasi-edge` binary idle, no charger connected: CPU and RSS over the
//!      same length of time (the reference);
//!  (b) CHARGERS (200) chargers connected over WebSocket with Basic auth, each in a
//!      transaction, sending MeterValues (energy and power) every 10 s and accepting the
//!      TxProfiles the smart charging planner sends (site cap set): CPU, RSS, answer
//!      latency, the planner's own round time;
//!  (c) the pure planner for CHARGERS buses over a night, against a naive equal split of
//!      the cap over the same slots (the reference).
//! Ends with one JSON line of the figures.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures::{SinkExt, StreamExt};
use garasi_edge::modules::charging::plan::{plan, Need};
use garasi_edge::store::{DataDir, Store};
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

fn proc_stat(pid: u32) -> (u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // After the command name, field 3 (the state, a letter) is at index 0: utime
    // (field 14) and stime (15) are at 11 and 12.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| f.get(i).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
    let ticks = field(11) + field(12);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0);
    (ticks, rss)
}

/// CPU (% of one core) and RSS (MiB, at the end) of `pid` over `secs`.
async fn measure(pid: u32, secs: u64) -> (f64, f64) {
    let hz = 100.0; // USER_HZ on Linux
    let (t0, _) = proc_stat(pid);
    let w0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let (t1, rss) = proc_stat(pid);
    let cpu = (t1 - t0) as f64 / hz / w0.elapsed().as_secs_f64() * 100.0;
    (cpu, rss as f64 / 1024.0)
}

fn now_text() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

#[derive(Default)]
struct Stats {
    answered: AtomicU64,
    failed: AtomicU64,
    profiles: AtomicU64,
    latencies_us: Mutex<Vec<u64>>,
}

/// One charger: connects (again after a 503, as chargers do), starts a transaction, then
/// meters every 10 s until `until`; accepts every CALL the edge sends.
async fn charger(
    http: String,
    id: String,
    password: String,
    until: Instant,
    stats: Arc<Stats>,
    start: tokio::sync::mpsc::Sender<()>,
) {
    let url = format!("{}/ocpp/{id}", http.replacen("http://", "ws://", 1));
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{password}"));
    let ws = loop {
        let mut req = url.as_str().into_client_request().unwrap();
        req.headers_mut()
            .insert("Authorization", format!("Basic {auth}").parse().unwrap());
        req.headers_mut()
            .insert("Sec-WebSocket-Protocol", "ocpp1.6".parse().unwrap());
        match tokio_tungstenite::connect_async(req).await {
            Ok((ws, _)) => break ws,
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    };
    let (mut tx, mut rx) = ws.split();
    let mut n = 0u64;
    let mut call = |action: &str, payload: Value| {
        n += 1;
        (
            format!("m{n}"),
            json!([2, format!("m{n}"), action, payload]).to_string(),
        )
    };
    // Reads until the answer to `want` arrives; answers the edge's CALLs meanwhile.
    macro_rules! answer_of {
        ($want:expr) => {{
            let mut got = None;
            while let Some(Ok(m)) = rx.next().await {
                let Message::Text(t) = m else { continue };
                let v: Value = serde_json::from_str(t.as_str()).unwrap_or(Value::Null);
                if v[0] == 2 {
                    stats.profiles.fetch_add(1, Ordering::Relaxed);
                    let ok = json!([3, v[1], {"status": "Accepted"}]).to_string();
                    if tx.send(Message::Text(ok.into())).await.is_err() { break; }
                } else if v[1] == $want.as_str() {
                    got = Some(v);
                    break;
                }
            }
            got
        }};
    }
    let ts = now_text();
    for (action, payload) in [
        (
            "BootNotification",
            json!({"chargePointVendor": "Bench", "chargePointModel": "B1"}),
        ),
        (
            "StatusNotification",
            json!({"connectorId": 1, "errorCode": "NoError", "status": "Charging"}),
        ),
        (
            "StartTransaction",
            json!({"connectorId": 1, "idTag": "BENCH", "meterStart": 0, "timestamp": ts}),
        ),
    ] {
        let (mid, frame) = call(action, payload);
        tx.send(Message::Text(frame.into())).await.unwrap();
        let a = answer_of!(mid);
        if action == "StartTransaction" {
            let txid = a
                .as_ref()
                .map(|a| a[2]["transactionId"].clone())
                .unwrap_or(Value::Null);
            let _ = start.send(()).await;
            let mut wh = 0.0;
            // Spread the chargers over the 10 s period.
            tokio::time::sleep(Duration::from_millis(rand::random::<u64>() % 10_000)).await;
            while Instant::now() < until {
                wh += 150_000.0 * 10.0 / 3600.0;
                let mv = json!({"connectorId": 1, "transactionId": txid, "meterValue": [{"timestamp": now_text(),
                    "sampledValue": [{"value": format!("{wh:.0}"), "measurand": "Energy.Active.Import.Register", "unit": "Wh"},
                                     {"value": "15000", "measurand": "Power.Active.Import", "unit": "W"}]}]});
                let (mid, frame) = call("MeterValues", mv);
                let t0 = Instant::now();
                if tx.send(Message::Text(frame.into())).await.is_err() {
                    stats.failed.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                match answer_of!(mid) {
                    Some(v) if v[0] == 3 => {
                        stats.answered.fetch_add(1, Ordering::Relaxed);
                        stats
                            .latencies_us
                            .lock()
                            .push(t0.elapsed().as_micros() as u64);
                    }
                    _ => {
                        stats.failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                tokio::time::sleep(Duration::from_secs(10).saturating_sub(t0.elapsed())).await;
            }
        }
    }
}

fn pct(v: &mut [u64], p: f64) -> f64 {
    v.sort_unstable();
    v.get(((v.len() as f64 - 1.0) * p).round() as usize)
        .copied()
        .unwrap_or(0) as f64
        / 1000.0
}

/// (c): the planner for `n` buses, and the naive equal split as the reference.
fn planning(n: usize) -> (f64, f64) {
    let now = 1_764_540_000_000i64;
    let needs: Vec<Need> = (0..n as i64)
        .map(|i| Need {
            charger: format!("c{i}"),
            connector: 1,
            vehicle: Some(format!("bus-{i}")),
            need_wh: 100_000 + (i % 50) * 3_000,
            deadline_ms: now + 6 * 3_600_000 + (i % 30) * 5 * 60_000,
            max_w: 150_000,
            charger_max_w: 150_000,
        })
        .collect();
    let cap = 3_000_000;
    let mut ours = Vec::new();
    let mut naive = Vec::new();
    for _ in 0..15 {
        let t = Instant::now();
        std::hint::black_box(plan(&needs, now, cap, 15 * 60_000));
        ours.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        // Everyone gets cap / n in every slot until full or 24 h past the last deadline.
        let mut left: Vec<i64> = needs.iter().map(|x| x.need_wh).collect();
        let mut periods: Vec<Vec<(i64, i64)>> = vec![Vec::new(); n];
        let mut ts = now;
        while left.iter().any(|l| *l > 0) && ts < now + 33 * 3_600_000 {
            for (i, l) in left.iter_mut().enumerate() {
                let w = (cap / n as i64).min(needs[i].max_w);
                periods[i].push((ts, w));
                *l -= w / 4;
            }
            ts += 15 * 60_000;
        }
        std::hint::black_box(periods);
        naive.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    ours.sort_by(f64::total_cmp);
    naive.sort_by(f64::total_cmp);
    (ours[ours.len() / 2], naive[naive.len() / 2])
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().filter(|a| !a.starts_with('-')).collect();
    let chargers: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(200);
    let secs: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(60);
    let tmp = tempfile::tempdir().unwrap();
    let dd = DataDir::new(tmp.path(), None);
    dd.init().unwrap();
    let store = Store::open(&dd).unwrap();
    garasi_edge::node::migrate_all(&store).unwrap();
    let t = Instant::now();
    let creds: Vec<(String, String)> = (0..chargers)
        .map(|i| {
            let id = format!("CP-{i:03}");
            let pw = garasi_edge::modules::charging::service::add_charger(&store, &id, 1, 150_000)
                .unwrap()
                .unwrap();
            (id, pw)
        })
        .collect();
    eprintln!(
        "{chargers} chargers registered in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    drop(store);
    let config = tmp.path().join("bench.toml");
    std::fs::write(&config, "[modules.charging]\nsite_cap_kw = 3000\n").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_garasi-edge"))
        .args([
            "run",
            "--data-dir",
            tmp.path().to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ])
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
        .unwrap();
    let pid = child.id();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = loop {
        let line = lines.next().expect("node exited").unwrap();
        if line.contains("garasi-edge ready") {
            break line;
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let http = format!(
        "http://{}",
        ready
            .split_whitespace()
            .find_map(|w| w.strip_prefix("http="))
            .unwrap()
    );
    let (idle_cpu, idle_rss) = measure(pid, secs).await;
    eprintln!("idle: {idle_cpu:.2} % CPU, {idle_rss:.1} MiB");

    let stats = Arc::new(Stats::default());
    let (started_tx, mut started_rx) = tokio::sync::mpsc::channel(chargers);
    let t = Instant::now();
    let until = Instant::now() + Duration::from_secs(secs + 120);
    let mut tasks = Vec::new();
    // A few at a time: one address's password checks are queued (a real depot's
    // chargers have their own addresses).
    for chunk in creds.chunks(4) {
        for (id, pw) in chunk {
            tasks.push(tokio::spawn(charger(
                http.clone(),
                id.clone(),
                pw.clone(),
                until,
                stats.clone(),
                started_tx.clone(),
            )));
        }
        for _ in chunk {
            started_rx.recv().await;
        }
    }
    let connect_s = t.elapsed().as_secs_f64();
    eprintln!("{chargers} chargers connected and charging after {connect_s:.1} s");
    tokio::time::sleep(Duration::from_secs(12)).await;
    stats.answered.store(0, Ordering::Relaxed);
    stats.latencies_us.lock().clear();
    let (load_cpu, load_rss) = measure(pid, secs).await;
    let answered = stats.answered.load(Ordering::Relaxed);
    let failed = stats.failed.load(Ordering::Relaxed);
    let mut lat = stats.latencies_us.lock().clone();
    let (p50, p99) = (pct(&mut lat, 0.5), pct(&mut lat, 0.99));
    let metrics = reqwest::get(format!("{http}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let metric = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or(-1.0)
    };
    let plan_round_ms = metric("garasi_charging_plan_last_ms ");
    let planned = metric("garasi_charging_plan_buses ");
    let (plan_ms, naive_ms) = planning(chargers);
    let _ = child.kill();
    let _ = child.wait();
    for t in tasks {
        t.abort();
    }
    println!(
        "OCPP benchmark, {chargers} chargers, MeterValues every 10 s each, measured over {secs} s:"
    );
    println!("  edge idle (reference): {idle_cpu:.2} % of one core, {idle_rss:.1} MiB RSS");
    println!("  edge with {chargers} chargers: {load_cpu:.2} % of one core ({:.1}x idle), {load_rss:.1} MiB RSS (+{:.1} MiB)",
        load_cpu / idle_cpu.max(0.01), load_rss - idle_rss);
    println!("  MeterValues answered: {answered} ({:.1}/s), failed {failed}; answer latency p50 {p50:.2} ms, p99 {p99:.2} ms",
        answered as f64 / secs as f64);
    println!(
        "  profiles the planner sent (accepted): {}",
        stats.profiles.load(Ordering::Relaxed)
    );
    println!("  the edge's planning round for {planned} buses: {plan_round_ms} ms (gather + plan, before sending)");
    println!("  pure plan of {chargers} buses over a night: {plan_ms:.2} ms; naive equal split (reference): {naive_ms:.2} ms ({:.1}x)",
        plan_ms / naive_ms.max(0.0001));
    println!(
        "{}",
        json!({"chargers": chargers, "secs": secs, "connect_s": connect_s, "idle_cpu_pct": idle_cpu, "idle_rss_mib": idle_rss,
        "load_cpu_pct": load_cpu, "load_rss_mib": load_rss, "answered": answered, "failed": failed, "p50_ms": p50, "p99_ms": p99,
        "plan_round_ms": plan_round_ms, "planned": planned, "plan_ms": plan_ms, "naive_ms": naive_ms})
    );
}
