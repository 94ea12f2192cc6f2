//! Issue 14, acceptance 6: a depot a week away from the cloud, then the drain.
//!
//! The cloud publishes the week's timetable, vehicles, device credentials, drivers and
//! a dispatcher; then the depot's link is cut for seven days of a simulated clock (the
//! seven days after today, which the cloud's plan window holds). Each day, at the real
//! node: buses report their charge from the yard over MQTT, the dispatcher auto-assigns
//! the day's ten blocks and puts a driver and a bay on each through the HTTP API
//! (planned), and every assigned bus leaves
//! the yard geofence at its block's pull-out and comes back after its pull-in (run: the
//! node records both from the buses' positions). Meanwhile 30 buses report every 5 s
//! (3,628,800 samples, written straight into the outbox through the node's own store:
//! MQTT at that volume would take the suite too long), staff edit a vehicle status
//! every simulated hour (168 changes), and the outbox quota, set so that it is reached,
//! is enforced every simulated 6 hours (besides the node's own 30 s checks). The node
//! is restarted mid-week. When the link is back: every operational record arrives as
//! the depot has it, every sample the quota kept arrives exactly once, the sync status
//! (which the board's banner reads) shows the drain to 0 and the quota's exact counts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/mqtt.rs"]
mod mqtt;
#[path = "week_offline/support.rs"]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use garasi_cloud::store::CloudStore;
use garasi_edge::modules::{fleet, sync};
use garasi_edge::store::{DataDir, Store};
use garasi_fleet_tests::{dispatcher_token, eventually, have_openssl, Cloud};
use garasi_sync_protocol::actor::{new_actor, Side};
use garasi_sync_protocol::records::DISPATCH_EVENT;
use garasi_sync_protocol::streams::{TelemetrySampleV1, TELEMETRY_V1};
use reqwest::Method;
use support::*;

const BUSES: usize = 30;
const DAYS: i64 = 7;
const REPORT_EVERY_MS: i64 = 5_000;
/// Outbox quota (MiB): the week's telemetry is far above it.
const QUOTA_MIB: u64 = 24;
const DAY_MS: i64 = 86_400_000;
const DISPATCHER: &str = "disp-week";

/// What a block's day at the depot was: its bus and driver (assigned by the
/// dispatcher), its bay, and when the bus left and came back.
struct Run {
    bus: String,
    driver: String,
    bay: String,
    out: i64,
    back: i64,
}

fn sample(bus: usize, ts_ms: i64) -> Vec<u8> {
    TelemetrySampleV1 {
        vehicle_id: format!("bus-{bus:02}"),
        ts_ms,
        lat: Some(-6.15 + bus as f64 * 1e-3),
        lon: Some(106.8),
        heading: Some(90.0),
        speed_kmh: Some(30.0),
        soc_pct: Some(80.0),
        odometer_km: Some(1000.0 + ts_ms as f64 / 1e6),
        battery_temp_c: Some(31.5),
        power_w: Some(45_000.0),
        charging: Some(false),
        extra: None,
    }
    .encode()
}

/// One simulated hour from `h0`: every bus's 5 s reports in one transaction, then a
/// status edit of one of the buses dispatch does not use (20-29), so every day's plan
/// has its ten buses.
async fn write_hour(store: &Store, h0: i64, hour: i64) -> u64 {
    let actor = new_actor(Side::Depot);
    store
        .write(move |c| {
            let tx = c.transaction()?;
            for ts in (h0..h0 + 3_600_000).step_by(REPORT_EVERY_MS as usize) {
                for b in 0..BUSES {
                    sync::service::append_stream_row(&tx, TELEMETRY_V1, ts, &sample(b, ts))?;
                }
            }
            tx.commit()?;
            let body = fleet::service::StatusBody {
                status: ["in_service", "in_maintenance"][(hour % 2) as usize].into(),
                note: Some(format!("hour {hour}")),
                set_by: "depot-manager".into(),
            };
            let bus = format!("bus-{:02}", 20 + hour % 10);
            fleet::service::set_status(c, &actor, &bus, &body)
                .map_err(|e| rusqlite::Error::ToSqlConversionFailure(e.to_string().into()))?;
            Ok(())
        })
        .await
        .unwrap();
    (3_600_000 / REPORT_EVERY_MS) as u64 * BUSES as u64
}

/// Sets up the cloud side before the outage: vehicles, devices, drivers, the week's
/// plan. Returns the bus passwords.
async fn master_data(cloud: &Cloud, depot: &str, first: jiff::civil::Date) -> Vec<String> {
    let mut passwords = Vec::new();
    for b in 0..BUSES {
        let id = format!("bus-{b:02}");
        let path = format!("/api/v1/admin/depots/{depot}/vehicles/{id}");
        let body = serde_json::json!({"label": id, "battery_kwh": 350.0, "kwh_per_km": 1.2});
        admin(cloud, Method::PUT, &path, body, None).await;
        let path = format!("/api/v1/admin/depots/{depot}/devices");
        let d = admin(
            cloud,
            Method::POST,
            &path,
            serde_json::json!({"id": id}),
            None,
        )
        .await;
        passwords.push(d["password"].as_str().unwrap().to_string());
    }
    // A driver per block of a day (drv-0 to drv-9).
    for k in 0..BLOCKS {
        let path = format!("/api/v1/admin/depots/{depot}/people/drv-{k}");
        let body = serde_json::json!({"name": format!("Driver {k}"), "roles": ["driver"], "pin": format!("{}", 5100 + k * 7)});
        admin(cloud, Method::PUT, &path, body, None).await;
    }
    let last = first.checked_add(jiff::Span::new().days(DAYS)).unwrap();
    let (f, l) = (first.strftime("%Y%m%d"), last.strftime("%Y%m%d"));
    let feed = week_feed(&f.to_string(), &l.to_string());
    let path = "/api/v1/admin/timetables?name=week&wait=true";
    let import = admin(
        cloud,
        Method::POST,
        path,
        serde_json::Value::Null,
        Some(feed),
    )
    .await;
    assert_eq!(import["state"], "imported", "{import}");
    let plan = serde_json::json!({"timetable": import["timetable"], "routes": [{"route": "R1"}], "window_days": DAYS});
    let path = format!("/api/v1/admin/depots/{depot}/plan");
    let plan = admin(cloud, Method::PUT, &path, plan, None).await;
    assert_eq!(
        plan["published"]["blocks"],
        DAYS * BLOCKS as i64,
        "the simulated week (the feed does not run today): {plan}"
    );
    passwords
}

/// A dispatch day at the node: charge reported from the yard, the day auto-assigned, a
/// driver and a bay put on each block, each assigned bus out through the geofence and
/// back. Returns what the depot recorded per block, and the MQTT samples sent.
async fn dispatch_day(
    node: &garasi_edge::node::Node,
    date: &str,
    d0: i64,
    passwords: &[String],
) -> (BTreeMap<String, Run>, u64) {
    let edge = Edge::sign_in(
        node,
        DISPATCHER,
        &format!("{DISPATCHER} password for tests"),
    )
    .await;
    let mqtt = node.mqtt_addr.port();
    let yard = |ts| report(ts, 95.0, YARD.0, YARD.1);
    for (b, pw) in passwords.iter().enumerate().take(BLOCKS) {
        let bus = format!("bus-{b:02}");
        mqtt::publish(mqtt, &bus, pw, "telemetry", yard(d0 + 4 * 3_600_000)).await;
    }
    let path = format!("/api/v1/dispatch/days/{date}");
    eventually("the yard reports reach dispatch", || async {
        let v = edge.get(&path).await;
        v["vehicles"]
            .as_array()
            .unwrap()
            .iter()
            .take(BLOCKS)
            .all(|x| x["soc_pct"] == 95.0)
    })
    .await;
    let plan = edge
        .write(
            Method::POST,
            &format!("{path}/auto-assign"),
            serde_json::json!({"apply": true}),
        )
        .await;
    assert_eq!(
        plan["proposals"].as_array().map(Vec::len),
        Some(BLOCKS),
        "{plan}"
    );
    let day = edge.get(&path).await;
    let mut expected = BTreeMap::new();
    for (k, b) in day["blocks"].as_array().unwrap().iter().enumerate() {
        let id = b["id"].as_str().unwrap().to_string();
        let (driver, bay) = (format!("drv-{k}"), format!("B{k}"));
        let body = serde_json::json!({"driver": driver, "bay": bay});
        edge.write(Method::PUT, &format!("{path}/blocks/{id}/assignment"), body)
            .await;
        let bus = b["assignment"]["vehicle"].as_str().unwrap().to_string();
        let pw = &passwords[bus[4..].parse::<usize>().unwrap()];
        let (out, back) = (
            b["pull_out_ms"].as_i64().unwrap() + 60_000,
            b["pull_in_ms"].as_i64().unwrap() + 60_000,
        );
        let away = report(out, 90.0, YARD.0 + 0.01, YARD.1);
        mqtt::publish(mqtt, &bus, pw, "telemetry", away).await;
        mqtt::publish(mqtt, &bus, pw, "telemetry", yard(back)).await;
        expected.insert(
            id,
            Run {
                bus,
                driver,
                bay,
                out,
                back,
            },
        );
    }
    eventually(
        "every block's pull-out and pull-in are recorded",
        || async {
            let day = edge.get(&path).await;
            day["blocks"].as_array().unwrap().iter().all(|b| {
                let a = &b["assignment"];
                let run = &expected[b["id"].as_str().unwrap()];
                a["vehicle"] == run.bus.as_str()
                    && a["driver"] == run.driver.as_str()
                    && a["pull_out_actual_ms"] == run.out
                    && a["pull_in_actual_ms"] == run.back
            })
        },
    )
    .await;
    (expected, 3 * BLOCKS as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_week_offline_then_every_record_and_every_kept_sample_arrives_once() {
    if !have_openssl() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("cloud")).unwrap();
    let cloud = Cloud::start(&tmp.path().join("cloud")).await;
    let token = cloud.new_depot_token("Week away").await;
    let edge_dir = tmp.path().join("edge");
    let dd = DataDir::new(&edge_dir, None);
    dd.init().unwrap();
    let es = Store::open(&dd).unwrap();
    garasi_edge::node::migrate_all(&es).unwrap();
    let link = format!("https://{}", cloud.link_addr);
    let depot = sync::service::enroll(&es, &link, &token, Some(cloud.ca_pem.clone()))
        .await
        .unwrap();
    drop(es);
    let today = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date();
    let first = today.checked_add(jiff::Span::new().days(1)).unwrap();
    let passwords = master_data(&cloud, &depot, first).await;
    let mut node = start_depot(&edge_dir, QUOTA_MIB).await;
    let edge_base = format!("http://{}", node.http_addr);
    dispatcher_token(
        &cloud.https,
        &cloud.admin_base,
        &depot,
        &edge_base,
        DISPATCHER,
    )
    .await;
    let last = first.checked_add(jiff::Span::new().days(DAYS - 1)).unwrap();
    let edge = Edge::sign_in(
        &node,
        DISPATCHER,
        &format!("{DISPATCHER} password for tests"),
    )
    .await;
    eventually(
        "the week's plan, the fleet and the drivers reach the depot",
        || async {
            let v = edge.get(&format!("/api/v1/dispatch/days/{last}")).await;
            v["blocks"].as_array().map(Vec::len) == Some(BLOCKS)
                && v["vehicles"].as_array().map(Vec::len) == Some(BUSES)
                && v["drivers"].as_array().map(Vec::len) == Some(BLOCKS)
        },
    )
    .await;

    // ---- The link is cut for the week.
    cloud.cut_link();
    let start = first
        .to_zoned(jiff::tz::TimeZone::UTC)
        .unwrap()
        .timestamp()
        .as_millisecond();
    let (mut thinned, mut dropped, mut written) = (0u64, 0u64, 0u64);
    let mut expected = BTreeMap::new();
    let t0 = std::time::Instant::now();
    for day in 0..DAYS {
        if day == 3 {
            // A restart mid-week (a clean stop and start): nothing is lost.
            assert!(node.stop(Duration::from_secs(10)).await, "clean stop");
            node = start_depot(&edge_dir, QUOTA_MIB).await;
        }
        let d0 = start + day * DAY_MS;
        let date = first
            .checked_add(jiff::Span::new().days(day))
            .unwrap()
            .to_string();
        let (blocks, sent) = dispatch_day(&node, &date, d0, &passwords).await;
        expected.extend(blocks);
        written += sent;
        for h in 0..24 {
            let hour = day * 24 + h;
            written += write_hour(&node.store, d0 + h * 3_600_000, hour).await;
            if hour % 6 == 5 {
                let q = node
                    .store
                    .write(|c| sync::service::enforce_quota(c, (QUOTA_MIB << 20) as i64))
                    .await
                    .unwrap();
                thinned += q.thinned;
                dropped += q.dropped;
            }
        }
    }
    println!("the week took {:?} of real time", t0.elapsed());
    // What the board's banner says is waiting at the end of the week, link still cut.
    let banner = sync_status(&node).await;
    assert!(node.stop(Duration::from_secs(10)).await, "clean stop");
    // What waits, read from the stopped depot's store.
    let es = Store::open(&dd).unwrap();
    let kept: BTreeSet<i64> = es
        .read_blocking(|c| {
            let mut st = c.prepare("SELECT seq FROM sync_stream_outbox")?;
            let rows = st.query_map([], |r| r.get(0))?;
            rows.collect()
        })
        .unwrap();
    let changes = es.read_blocking(sync::service::backlog).unwrap().changes;
    drop(es);
    // The banner counts what waits, not the seq span (3.6 M here before the fix); the
    // batch in flight and the quota's gaps are both accounted for, so it is exact.
    assert_eq!(
        banner["backlog"]["entries"].as_i64(),
        Some(kept.len() as i64 + changes),
        "{banner}"
    );
    assert!(
        thinned > 0 && dropped > 0,
        "the quota was reached: {thinned} thinned, {dropped} dropped"
    );
    assert_eq!(
        expected.len(),
        DAYS as usize * BLOCKS,
        "every day's blocks were run"
    );

    // ---- The link is back; the depot's node starts and drains.
    cloud.restore_link().await;
    let node = start_depot(&edge_dir, QUOTA_MIB).await;
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    let status = loop {
        let s = sync_status(&node).await;
        let left = s["backlog"]["entries"].as_i64().unwrap();
        seen.push(left);
        if left == 0 {
            break s;
        }
        assert!(std::time::Instant::now() < deadline, "still draining: {s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    node.stop(Duration::from_secs(10)).await;
    // The quota's totals as the depot keeps them: the node's own checks count there too.
    let (q_thinned, q_dropped) = (
        status["quota"]["stream_rows_thinned"].as_u64().unwrap(),
        status["quota"]["stream_rows_dropped"].as_u64().unwrap(),
    );
    println!(
        "week: {written} samples, {} kept, {q_thinned} thinned, {q_dropped} dropped ({thinned}/{dropped} by the 6-hourly checks); {changes} changes; backlog seen draining: {seen:?}",
        kept.len()
    );
    assert!(q_thinned >= thinned && q_dropped >= dropped, "{status}");
    assert_eq!(
        kept.len() as u64 + q_thinned + q_dropped,
        written,
        "every sample kept or counted once: {status}"
    );
    assert!(
        seen.len() > 2 && seen[0] > 0,
        "the drain was seen under way: {seen:?}"
    );
    assert!(
        seen[0] <= kept.len() as i64 + changes,
        "the drain starts from what waited: {seen:?}"
    );
    assert!(
        seen.windows(2).all(|w| w[1] <= w[0]),
        "the backlog only goes down: {seen:?}"
    );
    // Sent once: counted at the sender (the cloud's key would hide a row sent twice).
    assert_eq!(
        status["pushed_total"],
        kept.len() as u64 + changes as u64,
        "{status}"
    );

    check_cloud(&cloud, &depot, &kept, &expected).await;
}

/// At the cloud: every kept sample once, every status edit, every assignment as run.
async fn check_cloud(
    cloud: &Cloud,
    depot: &str,
    kept: &BTreeSet<i64>,
    expected: &BTreeMap<String, Run>,
) {
    let store = cloud.state.store.clone();
    let mut at_cloud = Vec::new();
    let mut after = 0;
    loop {
        let page = store
            .stream_rows(depot, TELEMETRY_V1, after, 50_000)
            .await
            .unwrap();
        let Some(end) = page.last().map(|r| r.seq) else {
            break;
        };
        at_cloud.extend(page.iter().map(|r| r.seq));
        after = end;
    }
    let distinct: BTreeSet<i64> = at_cloud.iter().copied().collect();
    assert_eq!(at_cloud.len(), distinct.len(), "no sample stored twice");
    assert!(
        &distinct == kept,
        "the samples the quota kept, no more and no fewer"
    );
    let status_changes = store
        .pull(depot, 0, i64::MAX)
        .await
        .unwrap()
        .iter()
        .filter(|c| c.record_type == fleet::service::STATUS_RECORD)
        .count();
    assert_eq!(
        status_changes as i64,
        DAYS * 24,
        "every status edit of the week"
    );
    cloud.state.materialiser.catch_up().await.unwrap();
    let assignments: BTreeMap<String, serde_json::Value> = store
        .list_records(depot, "assignment")
        .await
        .unwrap()
        .into_iter()
        .map(|(id, f)| (id, serde_json::from_str(&f).unwrap()))
        .collect();
    assert_eq!(
        assignments.len(),
        expected.len(),
        "one assignment per block run"
    );
    let events = store.list_records(depot, DISPATCH_EVENT).await.unwrap();
    assert_eq!(
        events.len(),
        2 * expected.len(),
        "a pull-out and a pull-in per block"
    );
    for (block, run) in expected {
        let a = &assignments[block];
        assert_eq!(a["vehicle"], run.bus.as_str(), "{block}: {a}");
        assert_eq!(a["driver"], run.driver.as_str(), "{block}: {a}");
        assert_eq!(a["bay"], run.bay.as_str(), "{block}: {a}");
        assert_eq!(a["assigned_by"], DISPATCHER, "{block}: {a}");
        assert_eq!(a["pull_out_actual_ms"], run.out, "{block}: {a}");
        assert_eq!(a["pull_in_actual_ms"], run.back, "{block}: {a}");
    }
}
