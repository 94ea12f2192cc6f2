//! Issue 13's demo and pages, against the real `garasi-edge demo` process: its simulated
//! chargers (OCPP clients of the node's door) and panel meters (MQTT devices) connect,
//! buses plug in and get a plan under the site cap, the day is placed around the
//! current time (buses out on blocks, buses charging for their next pull-out, one at
//! risk on the board), and the Charging and Energy pages show it in headless Chromium,
//! in Bahasa Indonesia and English, with their uPlot charts drawn.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "charging_demo_bind/mod.rs"]
mod bind;
mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;
use thirtyfour::prelude::*;

/// The dispatcher's password the demo printed (once it has set itself up).
async fn demo_password(edge: &Edge) -> String {
    let log = eventually(Duration::from_secs(60), || async {
        let log = edge.log();
        log.contains("sign in as dispatcher / ").then_some(log)
    })
    .await
    .expect("the demo prints the dispatcher's password");
    log.split("dispatcher / ")
        .nth(1)
        .and_then(|s| s.split(';').next())
        .unwrap()
        .trim()
        .to_string()
}

async fn token(edge: &Edge) -> String {
    let password = demo_password(edge).await;
    let r: Value = reqwest::Client::new()
        .post(format!("{}/api/v1/session", edge.http))
        .json(&serde_json::json!({"person": "dispatcher", "password": password, "token": true}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    r["token"].as_str().unwrap().to_string()
}

async fn get(edge: &Edge, t: &str, path: &str) -> Value {
    let r = reqwest::Client::new()
        .get(format!("{}{path}", edge.http))
        .bearer_auth(t)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{path}: {}", r.status());
    r.json().await.unwrap()
}

/// Every block of yesterday, today and tomorrow (the demo's day may cross midnight).
async fn blocks(edge: &Edge, t: &str) -> Vec<Value> {
    let now = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::get("Asia/Jakarta").unwrap());
    let mut out = Vec::new();
    for d in [
        now.date().yesterday().unwrap(),
        now.date(),
        now.date().tomorrow().unwrap(),
    ] {
        let v = get(edge, t, &format!("/api/v1/dispatch/days/{d}")).await;
        out.extend(v["blocks"].as_array().cloned().unwrap_or_default());
    }
    out
}

/// The buses the plan cannot get ready by their pull-out.
fn at_risk(plan: &[Value]) -> Vec<String> {
    plan.iter()
        .filter(|s| s["ready_ms"].is_null() || s["ready_ms"].as_i64() > s["deadline_ms"].as_i64())
        .map(|s| s["vehicle"].as_str().unwrap().to_string())
        .collect()
}

/// What `garasi-edge demo --buses N` places: N/2 blocks, a fifth of them (at least
/// one) already out, the rest with their buses plugged in two to a charger, the first
/// of those at risk.
struct DemoShape {
    blocks: usize,
    past: usize,
    plugged: usize,
    chargers: usize,
    risky: String,
}

fn shape(buses: usize) -> DemoShape {
    let blocks = buses / 2;
    let past = (blocks / 5).max(1);
    let plugged = blocks - past;
    DemoShape {
        blocks,
        past,
        plugged,
        chargers: plugged.div_ceil(2),
        risky: format!("bus-{:03}", past + 1),
    }
}

async fn the_demo_day(edge: &Edge, t: &str, buses: usize) {
    let want = shape(buses);
    // The chargers online and the buses charging under a plan; once the buses' charge
    // has arrived (telemetry at once, the chargers' SoC within 10 s; until then the
    // planner counts an unknown battery as empty), only the first to leave, nearly
    // empty for a long block, is at risk.
    let last = parking_lot::Mutex::new(Value::Null);
    let ready = eventually(Duration::from_secs(90), || {
        let (last, want) = (&last, &want);
        async move {
            let v = get(edge, t, "/api/v1/charging/chargers").await;
            *last.lock() = v.clone();
            let online = v["chargers"]
                .as_array()?
                .iter()
                .filter(|c| c["online"] == true)
                .count();
            let plan = v["plan"].as_array()?;
            (online == want.chargers
                && plan.len() == want.plugged
                && at_risk(plan) == [want.risky.clone()])
            .then_some(v)
        }
    })
    .await;
    let ready = ready.unwrap_or_else(|| {
        let v = last.lock().clone();
        let online: Vec<&Value> = v["chargers"].as_array().unwrap().iter().filter(|c| c["online"] == true).map(|c| &c["charger"]["id"]).collect();
        let plan = v["plan"].as_array().cloned().unwrap_or_default();
        let planned: Vec<(&Value, &Value, &Value, &Value)> =
            plan.iter().map(|p| (&p["vehicle"], &p["need_wh"], &p["ready_ms"], &p["deadline_ms"])).collect();
        panic!(
            "want {} chargers online, {} buses planned, {} alone at risk; online {online:?}, planned {planned:?}, at risk {:?}",
            want.chargers,
            want.plugged,
            want.risky,
            at_risk(&plan)
        )
    });
    assert_eq!(ready["site_cap_w"], 400_000);
    let plan = ready["plan"].as_array().unwrap();
    let planned_now: i64 = plan
        .iter()
        .map(|s| {
            let now = now_ms();
            let p = s["periods"].as_array().unwrap();
            p.iter()
                .take_while(|x| x[0].as_i64().unwrap() <= now)
                .last()
                .map_or(0, |x| x[1].as_i64().unwrap())
        })
        .sum();
    assert!(
        (250_000..=400_000).contains(&planned_now),
        "the cap is shared out: {planned_now} W"
    );
    // The board: buses out on the blocks that already left, the at-risk block flagged.
    let all = blocks(edge, t).await;
    assert_eq!(all.len(), want.blocks, "the blocks around now, no others");
    let out = all.iter().filter(|b| b["state"] == "pulled_out").count();
    assert_eq!(
        out, want.past,
        "the blocks pulled out before the demo started"
    );
    // The board's forecast needs the bus's charge (telemetry), which may come a moment
    // after the plan named it.
    let low = |all: &[Value]| -> Vec<String> {
        all.iter()
            .filter(|b| {
                b["conflicts"]
                    .as_array()
                    .is_some_and(|c| c.iter().any(|c| c["code"] == "low_charge"))
            })
            .filter_map(|b| b["assignment"]["vehicle"].as_str().map(str::to_string))
            .collect()
    };
    let flagged = eventually(Duration::from_secs(30), || async {
        let f = low(&blocks(edge, t).await);
        f.contains(&want.risky).then_some(f)
    })
    .await;
    assert!(
        flagged.is_some(),
        "{}'s block is a conflict on the board: {:?}",
        want.risky,
        low(&blocks(edge, t).await)
    );
    let upcoming = all
        .iter()
        .filter(|b| b["pull_out_ms"].as_i64().unwrap() > now_ms())
        .count();
    assert_eq!(
        upcoming, want.plugged,
        "the blocks still to pull out, whatever the hour"
    );
}

async fn the_cap_holds_and_panels_report(edge: &Edge, t: &str) {
    // Four meter rounds (every 10 s) after the plan is in.
    tokio::time::sleep(Duration::from_secs(40)).await;
    let v = get(edge, t, "/api/v1/charging/chargers").await;
    let over: Vec<&Value> = v["alarms"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == "over_profile")
        .collect();
    assert!(
        over.is_empty(),
        "the simulated chargers keep to their profiles: {over:?}"
    );
    // A live cap: the workshop panel's load comes off the site's 400 kW, and the plan
    // in force shares out no more than what is left.
    let cap = &v["cap"];
    let other = cap["other_w"].as_i64().unwrap();
    assert!(
        other > 0 && cap["stale"].as_array().unwrap().is_empty(),
        "{cap}"
    );
    assert_eq!(
        cap["charging_w"].as_i64().unwrap(),
        400_000 - other,
        "{cap}"
    );
    // Cut off from the edge, the chargers' fallback leaves room for the workshop's peak.
    let fallback = cap["fallback_w"].as_i64().unwrap();
    assert!(fallback > 0 && fallback <= 400_000 - other, "{cap}");
    let now = now_ms();
    let planned: i64 = v["plan"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let p = s["periods"].as_array().unwrap();
            p.iter()
                .take_while(|x| x[0].as_i64().unwrap() <= now)
                .last()
                .map_or(0, |x| x[1].as_i64().unwrap())
        })
        .sum();
    assert!(
        planned <= 400_000 - other,
        "{planned} W planned under {cap}"
    );
    let load = get(edge, t, "/api/v1/charging/load").await;
    assert_eq!(load["series"]["cap_w"].as_i64(), Some(400_000 - other));
    let actual: Vec<i64> = load["series"]["actual_w"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_i64)
        .collect();
    assert!(!actual.is_empty(), "the chargers' power is on the chart");
    let peak = actual.iter().copied().max().unwrap();
    assert!(
        peak <= 400_000,
        "the site never draws over its cap: {actual:?}"
    );
    // What the chargers draw now (each connector's newest reading, from the store):
    // most of the cap is in use (the chart's step under way also counts the minutes
    // before the first reading, so it is lower).
    let db = open_db(&edge.dir);
    let drawing: f64 = db
        .query_row(
            "SELECT coalesce(sum(value), 0) FROM (SELECT value, row_number() OVER
               (PARTITION BY charger_id, connector_id ORDER BY ts_ms DESC) AS n
               FROM charging_meter_samples WHERE measurand = 'Power.Active.Import') WHERE n = 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        (250_000.0..=400_000.0).contains(&drawing),
        "the buses use the cap, never more: {drawing} W"
    );
    let energy = eventually(Duration::from_secs(30), || async {
        let e = get(edge, t, "/api/v1/charging/energy").await;
        let panels = e["panels"].as_array()?;
        (panels.len() == 2
            && panels
                .iter()
                .all(|p| p["online"] == true && p["wh"].as_i64() > Some(0)))
        .then_some(e)
    })
    .await
    .expect("both panel meters online with energy today");
    assert!(energy["cost_sen"].as_i64().unwrap() > 0);
    assert!(energy["cost"].as_str().unwrap().starts_with("Rp "));
    // Energy per km: the buses out on blocks have driven (the simulator drives fast and
    // uses 1.2 kWh/km), so their measured figure is the simulator's.
    let eff = get(edge, t, "/api/v1/charging/efficiency").await;
    for bus in ["bus-001", "bus-002", "bus-003"] {
        let b = eff["buses"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["vehicle"] == bus)
            .unwrap();
        if b["km"].as_f64().unwrap_or(0.0) >= 5.0 {
            let k = b["kwh_per_km"].as_f64().unwrap_or(0.0);
            assert!((1.1..=1.3).contains(&k), "{bus} measured {k} kWh/km: {b}");
        }
    }
    let measured = eff["buses"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["kwh_per_km"].is_f64())
        .count();
    assert!(measured >= 1, "some bus drove far enough to measure: {eff}");
    // The month per panel and per charger: both panels and the six chargers, with energy.
    let month = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::get("Asia/Jakarta").unwrap())
        .strftime("%Y-%m")
        .to_string();
    let m = get(
        edge,
        t,
        &format!("/api/v1/charging/energy/month?month={month}"),
    )
    .await;
    assert_eq!(m["panels"].as_array().unwrap().len(), 2, "{m}");
    assert_eq!(m["chargers"].as_array().unwrap().len(), 6, "{m}");
    assert!(
        m["panels"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["wh"].as_i64() > Some(0)),
        "{m}"
    );
    // Per charger today: the six, with what their registers counted, costed (asked
    // again: the day's figures above were read as soon as the panels had energy).
    let today = eventually(Duration::from_secs(60), || async {
        let e = get(edge, t, "/api/v1/charging/energy").await;
        let c = e["chargers"].as_array()?;
        (c.iter().filter_map(|c| c["wh"].as_i64()).sum::<i64>() > 0).then_some(e)
    })
    .await
    .expect("today's chargers count energy");
    let chargers = today["chargers"].as_array().unwrap();
    assert_eq!(chargers.len(), 6);
    let sen: i64 = chargers
        .iter()
        .map(|c| c["cost_sen"].as_i64().unwrap())
        .sum();
    assert!(sen > 0, "energy counted is costed: {chargers:?}");
}

async fn type_into(d: &WebDriver, id: &str, text: &str) {
    d.find(By::Id(id))
        .await
        .unwrap()
        .send_keys(text)
        .await
        .unwrap();
}

async fn click(d: &WebDriver, by: By) {
    d.find(by).await.unwrap().click().await.unwrap();
}

async fn sign_in(d: &WebDriver, edge: &Edge) {
    let password = demo_password(edge).await;
    d.goto(format!("{}/charging", edge.http)).await.unwrap();
    type_into(d, "login-person", "dispatcher").await;
    type_into(d, "login-password", "wrong").await;
    click(d, By::Css("#login button")).await;
    let err = d.find(By::Id("login-error")).await.unwrap();
    let said = eventually(Duration::from_secs(10), || async {
        let t = err.text().await.ok()?;
        (!t.is_empty()).then_some(t)
    })
    .await;
    // In the page's language (the browser asks for English), from the catalogue.
    assert_eq!(
        said.as_deref(),
        Some("Wrong person id or password."),
        "a wrong password is refused on the page"
    );
    let pw = d.find(By::Id("login-password")).await.unwrap();
    pw.clear().await.unwrap();
    pw.send_keys(&password).await.unwrap();
    click(d, By::Css("#login button")).await;
}

async fn pages_in_the_browser(edge: &Edge, t: &str) {
    if !require_tool("chromedriver") || !require_tool("chromium") {
        return;
    }
    let (_driver, d) = browser().await;
    sign_in(&d, edge).await;
    let rows = eventually(Duration::from_secs(15), || async {
        let n = d
            .find_all(By::Css("#connectors tbody tr[data-vehicle^='bus-']"))
            .await
            .ok()?
            .len();
        (n == 12).then_some(n)
    })
    .await;
    assert_eq!(rows, Some(12), "twelve connectors with a bus");
    // Indonesian by default (the browser asks for English, the cookie is not set yet:
    // the page follows Accept-Language, so check the explicit switch both ways).
    click(&d, By::Id("lang-id")).await;
    let h1 = d
        .find(By::Css("header h1"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(h1, "Pengisian daya");
    let risk = d.find(By::Css("tr.at-risk")).await.unwrap();
    assert_eq!(
        risk.attr("data-vehicle").await.unwrap().as_deref(),
        Some("bus-004")
    );
    assert!(risk
        .text()
        .await
        .unwrap()
        .contains("tidak siap tepat waktu"));
    // The chart: uPlot drew a canvas with the day's 288 five-minute steps.
    let chart = eventually(Duration::from_secs(10), || async {
        d.find(By::Css("#chart canvas")).await.ok()?;
        d.find(By::Id("chart"))
            .await
            .ok()?
            .attr("data-points")
            .await
            .ok()?
    })
    .await;
    assert_eq!(chart.as_deref(), Some("288"));
    click(&d, By::Id("lang-en")).await;
    assert_eq!(
        d.find(By::Css("header h1"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "Charging"
    );
    assert!(d
        .find(By::Css("tr.at-risk"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
        .contains("not ready in time"));
    bind::on_the_page(&d, edge, t).await;
    // The language sticks (cookie) on the next page.
    d.goto(format!("{}/energy", edge.http)).await.unwrap();
    assert_eq!(
        d.find(By::Css("header h1"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "Energy"
    );
    let panels = eventually(Duration::from_secs(20), || async {
        let n = d
            .find_all(By::Css("#panels tbody tr[data-panel]"))
            .await
            .ok()?
            .len();
        (n == 2).then_some(n)
    })
    .await;
    assert_eq!(panels, Some(2));
    let cost = d
        .find(By::Id("total-cost"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(cost.starts_with("Rp "), "{cost}");
    assert!(
        d.find(By::Css("#efficiency td.per-km")).await.is_ok(),
        "energy per km on the page"
    );
    assert_eq!(
        d.find_all(By::Css("#month-sources tbody tr"))
            .await
            .unwrap()
            .len(),
        8,
        "the month per panel (2) and per charger (6)"
    );
    assert_eq!(
        d.find_all(By::Css("#chargers tbody tr"))
            .await
            .unwrap()
            .len(),
        6
    );
    assert!(
        d.find(By::Css("#chart canvas")).await.is_ok(),
        "the month's bars are drawn"
    );
    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    // Kept for a person to look at (target/tmp); a failed screenshot is not a failure.
    if let Err(e) = d.screenshot(&shots.join("energy.png")).await {
        eprintln!("screenshot: {e}");
    }
    d.goto(format!("{}/charging", edge.http)).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    if let Err(e) = d.screenshot(&shots.join("charging.png")).await {
        eprintln!("screenshot: {e}");
    }
    // Signed out, the pages show only the sign-in form.
    click(&d, By::Id("signout")).await;
    assert!(eventually(Duration::from_secs(10), || async {
        d.find(By::Id("login")).await.ok()
    })
    .await
    .is_some());
    assert!(d.find(By::Id("connectors")).await.is_err());
    d.quit().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_charges_its_buses_for_their_pull_outs_and_the_pages_show_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut edge = Edge::start_demo(dir.path(), &["--buses", "30"]);
    let t = token(&edge).await;
    // Without a session the pages and their views are closed.
    let r = reqwest::get(format!("{}/charging/view", edge.http))
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let page = reqwest::get(format!("{}/charging", edge.http))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("id=\"login\"") && !page.contains("bus-0"),
        "no data before sign-in"
    );
    the_demo_day(&edge, &t, 30).await;
    the_cap_holds_and_panels_report(&edge, &t).await;
    bind::through_the_api(&edge, &t).await;
    pages_in_the_browser(&edge, &t).await;
    // A request the page cannot use is said on the page, in its language, as a 400.
    let r = reqwest::Client::new()
        .get(format!("{}/energy?month=2026-1&lang=id", edge.http))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let html = r.text().await.unwrap();
    assert!(
        html.contains("id=\"page-error\">Permintaan tidak dapat dipakai: month is YYYY-MM"),
        "{html}"
    );
    edge.sigterm();
    assert_eq!(
        edge.wait_exit(Duration::from_secs(20)),
        Some(0),
        "{}",
        edge.log()
    );

    // The demo again on the same data, smaller: the day is placed around the new
    // moment, the earlier run's extra blocks are gone, bus-003's pull-out (out in the
    // first run, ahead now) does not linger, the chargers get fresh passwords.
    let mut again = Edge::start_demo(dir.path(), &["--buses", "20"]);
    let t = token(&again).await;
    the_demo_day(&again, &t, 20).await;
    again.sigterm();
    assert_eq!(
        again.wait_exit(Duration::from_secs(20)),
        Some(0),
        "{}",
        again.log()
    );
}
