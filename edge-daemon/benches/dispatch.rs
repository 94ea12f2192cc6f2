//! Dispatch benchmark, one run (`cargo bench -p garasi-edge --bench dispatch`): a depot
//! with 500 blocks and 600 vehicles (every one with a state of charge).
//!  - auto-assign: the planning function alone, then the HTTP proposal (reads the day,
//!    the fleet, live state, plans) and the HTTP apply (500 assignments and their outbox
//!    entries in one transaction, on a fresh day);
//!  - board load: the server-rendered board page and the day's JSON with 500 blocks.
//!
//! Reference figures from the same run and server: `GET /api/v1/vehicles` (the 600
//! vehicles with live state, a plain read of comparable size) and `GET /healthz` (the
//! HTTP floor). Medians of several runs. Ends with one JSON line.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use garasi_edge::config::Settings;
use garasi_edge::modules::dispatch::service::LocalBlock;
use garasi_edge::modules::dispatch::{self, plan};
use garasi_edge::modules::{auth, fleet};
use garasi_edge::node::{self, Node};
use garasi_edge::store::{DataDir, Store};

const BLOCKS: usize = 500;
const VEHICLES: usize = 600;

/// Deterministic pseudo-random numbers (no seed juggling across runs).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn blocks(date: &str, midnight: i64, rng: &mut Lcg) -> Vec<LocalBlock> {
    (0..BLOCKS)
        .map(|i| {
            let out = midnight + (4.0 * 3600.0 + rng.next() * 6.0 * 3600.0) as i64 * 1000;
            let len = (6.0 + rng.next() * 8.0) * 3_600_000.0;
            let km = 80.0 + rng.next() * 170.0;
            let trips = (0..8)
                .map(|k| {
                    let s = out + 600_000 + k * (len as i64 / 8);
                    plan::Trip {
                        trip: format!("t{i}-{k}"),
                        route: format!("R{}", i % 40),
                        headsign: None,
                        start: "06:00:00".into(),
                        end: "06:50:00".into(),
                        start_ms: s,
                        end_ms: s + 3_000_000,
                        from: "stop-a".into(),
                        to: "stop-b".into(),
                        km: km / 8.0,
                    }
                })
                .collect();
            LocalBlock {
                id: format!("{}-b{i:03}", date.replace('-', "")),
                service_date: date.into(),
                block: format!("b{i:03}"),
                routes: format!("R{}", i % 40),
                pull_out_ms: out,
                pull_in_ms: out + len as i64,
                distance_km: km,
                vehicle_type: (i % 10 == 0).then(|| "18m".to_string()),
                trips,
            }
        })
        .collect()
}

async fn median_ms(n: usize, mut f: impl AsyncFnMut() -> usize) -> (f64, usize) {
    let mut t = Vec::with_capacity(n);
    let mut bytes = 0;
    for _ in 0..n {
        let s = Instant::now();
        bytes = f().await;
        t.push(s.elapsed().as_secs_f64() * 1000.0);
    }
    t.sort_by(f64::total_cmp);
    (t[n / 2], bytes)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let dd = DataDir::new(dir, None);
    dd.init().unwrap();
    let store = Store::open(&dd).unwrap();
    node::migrate_all(&store).unwrap();
    let mut rng = Lcg(42);
    let now = garasi_edge::util::now_ms();
    let mut vehicles = Vec::new();
    for i in 0..VEHICLES {
        let v = fleet::service::Vehicle {
            id: format!("bus-{i:03}"),
            label: format!("Bus {i}"),
            plate: None,
            battery_kwh: 350.0,
            kwh_per_km: Some(1.1 + rng.next() * 0.3),
            vehicle_type: Some(if i % 5 == 0 { "18m" } else { "12m" }.into()),
        };
        fleet::service::upsert_vehicle(&store, &v).unwrap();
        vehicles.push((v, 30.0 + rng.next() * 70.0));
    }
    // Live state as telemetry would leave it (the bench's fixture: writing 600 samples
    // through MQTT would measure ingest, not dispatch).
    store
        .write_blocking(|c| {
            let tx = c.transaction()?;
            for (v, soc) in &vehicles {
                tx.execute(
                    "INSERT INTO telemetry_latest (vehicle_id, ts_ms, received_ms, soc_pct, charging) VALUES (?1, ?2, ?2, ?3, 0)",
                    rusqlite::params![v.id, now, soc],
                )?;
            }
            tx.commit()
        })
        .unwrap();
    auth::service::upsert_local(
        &store,
        &auth::service::NewPerson {
            id: "disp",
            name: "Dispatcher",
            roles: &["dispatcher".to_string()],
            password: Some("benchmark password"),
            pin: None,
            badge: None,
        },
    )
    .unwrap();
    let utc = jiff::tz::TimeZone::UTC;
    let today = jiff::Timestamp::now().to_zoned(utc.clone()).date();
    let day = |n: i64| today.checked_add(jiff::Span::new().days(n)).unwrap();
    let (d1, d2) = (day(1), day(2));
    let mid = |d: jiff::civil::Date| {
        d.to_zoned(utc.clone())
            .unwrap()
            .timestamp()
            .as_millisecond()
    };
    let b1 = blocks(&d1.to_string(), mid(d1), &mut Lcg(7));
    let b2 = blocks(&d2.to_string(), mid(d2), &mut Lcg(7));
    dispatch::service::import_local_blocks(&store, &b1).unwrap();
    dispatch::service::import_local_blocks(&store, &b2).unwrap();
    drop(store);

    // The pure planning function on the same inputs.
    let pblocks: Vec<plan::Block> = b1
        .iter()
        .map(|b| plan::Block {
            id: b.id.clone(),
            service_date: b.service_date.clone(),
            block: b.block.clone(),
            pull_out_ms: b.pull_out_ms,
            pull_in_ms: b.pull_in_ms,
            distance_km: b.distance_km,
            vehicle_type: b.vehicle_type.clone(),
            ..Default::default()
        })
        .collect();
    let states: Vec<plan::VehicleState> = vehicles
        .iter()
        .map(|(v, soc)| plan::VehicleState {
            id: v.id.clone(),
            label: v.label.clone(),
            battery_kwh: v.battery_kwh,
            kwh_per_km: v.kwh_per_km,
            vehicle_type: v.vehicle_type.clone(),
            status: None,
            soc_pct: Some(*soc),
            charging: false,
            charge_plan: None,
        })
        .collect();
    let params = plan::Params::default();
    let mut pure = Vec::new();
    let mut proposed = 0;
    for _ in 0..5 {
        let s = Instant::now();
        let r = plan::auto_assign(&pblocks, &Default::default(), &states, now, &params);
        pure.push(s.elapsed().as_secs_f64() * 1000.0);
        proposed = r.proposals.len();
        for p in &r.proposals {
            assert!(p.available_kwh >= p.need_kwh);
        }
    }
    pure.sort_by(f64::total_cmp);

    let settings = Settings {
        http_listen: Some("127.0.0.1:0".into()),
        mqtt_listen: Some("127.0.0.1:0".into()),
        mqtt5_listen: Some("127.0.0.1:0".into()),
        dispatch: garasi_edge::modules::dispatch::config::DispatchFlags {
            depot_timezone: Some("UTC".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let cfg = settings.resolve(dir).unwrap();
    let bound = node::bind(&cfg).unwrap();
    let node = Node::start(cfg, bound).await.unwrap();
    let base = format!("http://{}", node.http_addr);
    let c = reqwest::Client::new();
    let login: serde_json::Value = c
        .post(format!("{base}/api/v1/session"))
        .json(
            &serde_json::json!({"person": "disp", "password": "benchmark password", "token": true}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let tok = login["token"].as_str().unwrap().to_string();
    let get = |path: String| {
        let (c, tok) = (c.clone(), tok.clone());
        async move {
            // Signed in, as a dispatcher's console is (the day's data needs a session).
            let r = c.get(path).bearer_auth(tok).send().await.unwrap();
            assert!(r.status().is_success());
            r.bytes().await.unwrap().len()
        }
    };
    // Warm-up (reader pool, caches).
    get(format!("{base}/dispatch?date={d1}")).await;
    let (health, _) = median_ms(20, async || get(format!("{base}/healthz")).await).await;
    let (veh_list, veh_bytes) =
        median_ms(10, async || get(format!("{base}/api/v1/vehicles")).await).await;
    let (board_html, html_bytes) =
        median_ms(10, async || get(format!("{base}/dispatch?date={d1}")).await).await;
    let (board_json, json_bytes) = median_ms(10, async || {
        get(format!("{base}/api/v1/dispatch/days/{d1}")).await
    })
    .await;
    let (http_propose, _) = median_ms(5, async || {
        let r = c
            .post(format!("{base}/api/v1/dispatch/days/{d1}/auto-assign"))
            .bearer_auth(&tok)
            .json(&serde_json::json!({"apply": false}))
            .send()
            .await
            .unwrap();
        let v: serde_json::Value = r.json().await.unwrap();
        v["proposals"].as_array().unwrap().len()
    })
    .await;
    let s = Instant::now();
    let applied: serde_json::Value = c
        .post(format!("{base}/api/v1/dispatch/days/{d2}/auto-assign"))
        .bearer_auth(&tok)
        .json(&serde_json::json!({"apply": true}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let http_apply = s.elapsed().as_secs_f64() * 1000.0;
    let applied_n = applied["proposals"].as_array().unwrap().len();
    let (board_assigned, _) =
        median_ms(10, async || get(format!("{base}/dispatch?date={d2}")).await).await;
    node.stop(Duration::from_secs(10)).await;

    println!("dispatch benchmark: {BLOCKS} blocks, {VEHICLES} vehicles (debug builds are ~10x slower; run with cargo bench)");
    println!(
        "  auto-assign, planning function:  {:8.1} ms  ({proposed} proposed)",
        pure[2]
    );
    println!("  auto-assign, HTTP proposal:      {http_propose:8.1} ms");
    println!(
        "  auto-assign, HTTP apply:         {http_apply:8.1} ms  ({applied_n} assignments written)"
    );
    println!("  board page (HTML), unassigned:   {board_html:8.1} ms  ({html_bytes} bytes)");
    println!("  board page (HTML), assigned:     {board_assigned:8.1} ms");
    println!("  day JSON:                        {board_json:8.1} ms  ({json_bytes} bytes)");
    println!("  reference GET /api/v1/vehicles:  {veh_list:8.1} ms  ({veh_bytes} bytes)");
    println!("  reference GET /healthz:          {health:8.2} ms");
    println!(
        "{}",
        serde_json::json!({
            "blocks": BLOCKS, "vehicles": VEHICLES,
            "auto_assign_pure_ms": pure[2], "proposed": proposed,
            "auto_assign_http_propose_ms": http_propose, "auto_assign_http_apply_ms": http_apply, "applied": applied_n,
            "board_html_ms": board_html, "board_html_assigned_ms": board_assigned, "board_html_bytes": html_bytes,
            "day_json_ms": board_json, "day_json_bytes": json_bytes,
            "ref_vehicles_ms": veh_list, "ref_vehicles_bytes": veh_bytes, "ref_healthz_ms": health,
            "ratio_board_vs_vehicles": board_html / veh_list,
            "ratio_propose_vs_vehicles": http_propose / veh_list,
        })
    );
}
