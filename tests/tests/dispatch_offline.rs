//! Issue 4, acceptance 3: a depot's day with the cloud stopped, as separate processes.
//!
//! The cloud imports a timetable (a small GTFS zip made here, with trips starting soon
//! after "now" so today's blocks are live), the depot gets a plan (rolling window today +
//! 1), vehicles, device credentials and people. The cloud is then STOPPED, and at the
//! depot: the dispatcher signs in and auto-assigns today and tomorrow (the proposal must
//! respect state of charge), assigns drivers; a driver signs on with a badge scanned on a
//! serial line (a socat pty pair); the tablet shows the driver's bus, bay and trips; the
//! assigned bus leaves the geofence (pull-out recorded); a critical fault takes it out of
//! service, the board flags the block and proposes replacements, the swap is applied. The
//! cloud comes back and its day view shows exactly the depot's day.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod procs;
#[path = "dispatch_offline/support.rs"]
mod support;

use std::io::Write;
use std::time::Duration;

use garasi_fleet_tests::{eventually, have_openssl};
use procs::{CloudProc, EdgeProc};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_depot_day_with_the_cloud_stopped_then_synced() {
    if !have_openssl() {
        return;
    }
    assert!(
        std::process::Command::new("socat")
            .arg("-V")
            .output()
            .is_ok(),
        "socat is needed for the badge reader pty: apt-get install socat (.ci/run installs it)"
    );
    let tmp = tempfile::tempdir().unwrap();
    // The badge reader: a pty pair; the edge reads `reader`, the test types on `scanner`.
    let (reader, scanner) = (tmp.path().join("reader"), tmp.path().join("scanner"));
    let _socat = Killed(
        std::process::Command::new("socat")
            .arg(format!("pty,raw,echo=0,link={}", reader.display()))
            .arg(format!("pty,raw,echo=0,link={}", scanner.display()))
            .spawn()
            .unwrap(),
    );
    for _ in 0..100 {
        if reader.exists() && scanner.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }

    let mut cloud = CloudProc::start(&tmp.path().join("cloud"));
    let (depot, token) = cloud.add_depot("Depot Pulogadung");
    let geofence = format!("{},{},300", DEPOT.0, DEPOT.1);
    let mut edge = EdgeProc::enroll_and_start_with(
        &tmp.path().join("edge"),
        &cloud.base(),
        &token,
        &cloud.ca_pem,
        &[
            "--depot-timezone",
            "UTC",
            "--depot-geofence",
            &geofence,
            "--badge-reader",
            &reader.display().to_string(),
        ],
    );

    // Master data, defined once in the cloud.
    let mut passwords = std::collections::HashMap::new();
    for (id, soc) in [
        ("bus-1", 90.0),
        ("bus-2", 25.0),
        ("bus-3", 15.0),
        ("bus-4", 80.0),
    ] {
        cloud
            .admin_put(
                &format!("/api/v1/admin/depots/{depot}/vehicles/{id}"),
                serde_json::json!({"label": format!("Bus {}", &id[4..]), "battery_kwh": 300.0, "kwh_per_km": 1.2}),
            )
            .await;
        let d = cloud
            .admin_post(
                &format!("/api/v1/admin/depots/{depot}/devices"),
                serde_json::json!({"id": id}),
            )
            .await;
        passwords.insert(id, (d["password"].as_str().unwrap().to_string(), soc));
    }
    let people = [
        (
            "disp-1",
            serde_json::json!({"name": "Sari (dispatch)", "roles": ["dispatcher"], "password": "correct horse battery"}),
        ),
        (
            "drv-1",
            serde_json::json!({"name": "Budi", "roles": ["driver"], "badge": "04A1B2C3", "pin": "2468"}),
        ),
        (
            "drv-2",
            serde_json::json!({"name": "Wati", "roles": ["driver"], "pin": "1357"}),
        ),
    ];
    for (id, body) in people {
        cloud
            .admin_put(&format!("/api/v1/admin/depots/{depot}/people/{id}"), body)
            .await;
    }
    let r = cloud
        .https
        .post(format!(
            "{}/api/v1/admin/timetables?name=test&wait=true",
            cloud.base()
        ))
        .bearer_auth(procs::ADMIN)
        .body(feed_zip())
        .send()
        .await
        .unwrap();
    let import: serde_json::Value = r.json().await.unwrap();
    assert_eq!(import["state"], "imported", "{import}");
    assert_eq!(import["percent"], 100.0, "{import}");
    let plan = cloud
        .admin_put(
            &format!("/api/v1/admin/depots/{depot}/plan"),
            serde_json::json!({"timetable": import["timetable"], "routes": [{"route": "R1"}], "window_days": 1}),
        )
        .await;
    assert_eq!(
        plan["published"]["blocks"], 4,
        "2 blocks x (today, tomorrow): {plan}"
    );
    let today = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date();
    let tomorrow = today.checked_add(jiff::Span::new().days(1)).unwrap();
    let (today, tomorrow) = (today.to_string(), tomorrow.to_string());

    // The depot has its day, people and vehicles before the cloud goes away.
    // The dispatcher arrives by sync; reading the day needs their session (issue 11).
    sign_in_when_synced(&mut edge, "disp-1", "correct horse battery").await;
    eventually("blocks reach the depot", || async {
        let t = edge.get(&format!("/api/v1/dispatch/days/{tomorrow}")).await;
        t.as_ref()
            .and_then(|v| v["blocks"].as_array().map(Vec::len))
            == Some(2)
    })
    .await;
    // Every bus reports its charge from the yard (inside the geofence).
    for (id, (pw, soc)) in &passwords {
        publish(
            edge.mqtt_port,
            id,
            pw,
            "telemetry",
            sample(now_ms(), *soc, DEPOT.0, DEPOT.1),
        )
        .await;
    }
    eventually("charge is known at the depot", || async {
        let v = edge.get(&format!("/api/v1/dispatch/days/{today}")).await;
        v.is_some_and(|v| {
            v["vehicles"]
                .as_array()
                .unwrap()
                .iter()
                .all(|x| x["soc_pct"].is_number())
        })
    })
    .await;

    // ---- The cloud stops. Everything below happens at the depot alone.
    assert_eq!(cloud.stop(), Some(0), "cloud exits cleanly");

    let (st, login, _) = call(
        &edge,
        reqwest::Method::POST,
        "/api/v1/session",
        None,
        Some(serde_json::json!({"person": "disp-1", "password": "correct horse battery", "token": true})),
    )
    .await;
    assert_eq!(st, 200, "{login}");
    let tok = login["token"].as_str().unwrap().to_string();
    let (st, _, _) = call(
        &edge,
        reqwest::Method::POST,
        &format!("/api/v1/dispatch/days/{tomorrow}/auto-assign"),
        None,
        Some(serde_json::json!({"apply": true})),
    )
    .await;
    assert_eq!(st, 401, "auto-assign needs a signed-in dispatcher");

    for date in [&tomorrow, &today] {
        let (st, p, _) = call(
            &edge,
            reqwest::Method::POST,
            &format!("/api/v1/dispatch/days/{date}/auto-assign"),
            Some(&tok),
            Some(serde_json::json!({"apply": true})),
        )
        .await;
        assert_eq!(st, 200, "{p}");
        let props = p["proposals"].as_array().unwrap();
        assert_eq!(props.len(), 2, "both blocks get a vehicle: {p}");
        for x in props {
            assert!(
                x["available_kwh"].as_f64().unwrap() >= x["need_kwh"].as_f64().unwrap(),
                "{x}"
            );
            assert_ne!(x["vehicle"], "bus-3", "15% (45 kWh) covers no block: {p}");
        }
        // BIG (6 x 11 km x 1.2 + 30 kWh reserve = 110 kWh) cannot go to bus-2 (75 kWh).
        let big = props
            .iter()
            .find(|x| x["block"].as_str().unwrap().ends_with("BIG"))
            .unwrap();
        assert_ne!(big["vehicle"], "bus-2", "{p}");
        let id = |suffix: &str| format!("{}-{suffix}", date.replace('-', ""));
        for (block, driver, bay) in [("NOW", "drv-1", "B7"), ("BIG", "drv-2", "B8")] {
            let (st, v, _) = call(
                &edge,
                reqwest::Method::PUT,
                &format!(
                    "/api/v1/dispatch/days/{date}/blocks/{}/assignment",
                    id(block)
                ),
                Some(&tok),
                Some(serde_json::json!({"driver": driver, "bay": bay})),
            )
            .await;
            assert_eq!(st, 200, "{v}");
        }
    }
    let day = edge
        .get(&format!("/api/v1/dispatch/days/{today}"))
        .await
        .unwrap();
    let now_block = day["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["block"] == "NOW")
        .unwrap()
        .clone();
    let bus = now_block["assignment"]["vehicle"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        now_block["assignment"]["assigned_by"], "disp-1",
        "writes are attributed"
    );
    assert!(
        now_block["energy_kwh"].as_f64().unwrap() > 50.0,
        "{now_block}"
    );

    // Badge sign-on through the pty: a garbage line first (refused), then the badge.
    let mut tty = std::fs::OpenOptions::new()
        .write(true)
        .open(&scanner)
        .unwrap();
    tty.write_all(b"\x1b[2J%%garbage%%\r\n04a1b2c3\r\n")
        .unwrap();
    eventually("the badge signs drv-1 on", || async {
        let d = edge
            .get(&format!("/api/v1/dispatch/days/{today}"))
            .await
            .unwrap();
        d["signons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["person"] == "drv-1" && s["method"] == "badge")
    })
    .await;
    let metrics = reqwest::get(format!("{}/metrics", edge.http()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("garasi_auth_refusals_total{method=\"badge\",reason=\"garbage\"} 1"),
        "{metrics}"
    );

    // The tablet: PIN sign-on, then the driver's card.
    let (st, _, cookie) = call(
        &edge,
        reqwest::Method::POST,
        "/api/v1/signon",
        None,
        Some(serde_json::json!({"person": "drv-1", "pin": "2468", "terminal": "tablet-3"})),
    )
    .await;
    assert_eq!(st, 200);
    let session = cookie.split(';').next().unwrap().to_string();
    let card: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/api/v1/tablet", edge.http()))
        .header("cookie", &session)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mine = &card["assignments"].as_array().unwrap()[0];
    assert_eq!(mine["vehicle"], bus.as_str(), "{card}");
    assert_eq!(mine["bay"], "B7");
    assert_eq!(
        mine["trips"][0]["from"], "Depot Gate",
        "stop names come with the master data"
    );
    let page = reqwest::Client::new()
        .get(format!("{}/tablet", edge.http()))
        .header("cookie", &session)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(&format!("Bus {}", &bus[4..])) && page.contains("B7"),
        "{page}"
    );

    // Pull-out: the bus leaves the yard (1.1 km north of the geofence centre).
    let (pw, soc) = passwords[bus.as_str()].clone();
    publish(
        edge.mqtt_port,
        &bus,
        &pw,
        "telemetry",
        sample(now_ms(), soc, DEPOT.0 + 0.01, DEPOT.1),
    )
    .await;
    let now_id = now_block["id"].as_str().unwrap().to_string();
    eventually("the pull-out is recorded", || async {
        let d = edge
            .get(&format!("/api/v1/dispatch/days/{today}"))
            .await
            .unwrap();
        let b = block(&d, &now_id);
        b["assignment"]["pull_out_actual_ms"].is_number() && b["state"] == "pulled_out"
    })
    .await;

    // A critical fault takes the bus out of service; the block is flagged.
    publish(edge.mqtt_port, &bus, &pw, "faults", serde_json::json!({"ts": now_ms(), "faults": [{"spn": 5246, "fmi": 3, "active": true, "severity": "critical", "description": "HV isolation fault"}]})).await;
    eventually("the block is disrupted", || async {
        let d = edge
            .get(&format!("/api/v1/dispatch/days/{today}"))
            .await
            .unwrap();
        let b = block(&d, &now_id);
        b["state"] == "disrupted"
            && b["conflicts"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["code"] == "disrupted")
    })
    .await;
    let (st, rep, _) = call(
        &edge,
        reqwest::Method::GET,
        &format!("/api/v1/dispatch/days/{today}/blocks/{now_id}/replacements"),
        None,
        None,
    )
    .await;
    assert_eq!(st, 200);
    let list = rep["replacements"].as_array().unwrap();
    assert!(!list.is_empty(), "{rep}");
    assert!(
        list.iter()
            .all(|r| r["vehicle"] != bus.as_str() && r["vehicle"] != "bus-3"),
        "{rep}"
    );
    let spare: Vec<f64> = list
        .iter()
        .map(|r| r["available_kwh"].as_f64().unwrap() - r["need_kwh"].as_f64().unwrap())
        .collect();
    assert!(
        spare.windows(2).all(|w| w[0] >= w[1]),
        "ranked by charge to spare: {rep}"
    );
    let new_bus = list[0]["vehicle"].as_str().unwrap().to_string();
    let (st, sw, _) = call(
        &edge,
        reqwest::Method::POST,
        &format!("/api/v1/dispatch/days/{today}/blocks/{now_id}/swap"),
        Some(&tok),
        Some(serde_json::json!({"vehicle": new_bus, "reason": "HV fault"})),
    )
    .await;
    assert_eq!(st, 200, "{sw}");
    assert_eq!(sw["swap"]["from_vehicle"], bus.as_str());
    let edge_today = edge
        .get(&format!("/api/v1/dispatch/days/{today}"))
        .await
        .unwrap();
    let edge_tomorrow = edge
        .get(&format!("/api/v1/dispatch/days/{tomorrow}"))
        .await
        .unwrap();
    let b = block(&edge_today, &now_id);
    assert_eq!(b["assignment"]["vehicle"], new_bus.as_str());
    assert_eq!(b["assignment"]["swapped_from"], bus.as_str());
    assert!(b["assignment"]["disrupted_ms"].is_null());

    // ---- The cloud comes back and shows the same day.
    cloud.restart();
    for (date, at_edge) in [(&today, &edge_today), (&tomorrow, &edge_tomorrow)] {
        let want: std::collections::BTreeMap<String, serde_json::Value> = at_edge["blocks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| {
                (
                    b["id"].as_str().unwrap().to_string(),
                    non_null(&b["assignment"]),
                )
            })
            .collect();
        let want_events = at_edge["events"].as_array().unwrap().len();
        let want_signons = at_edge["signons"].as_array().unwrap().len();
        let last = parking_lot::Mutex::new(String::new());
        let seen = |s: String| *last.lock() = s;
        let shown = eventually_ok(|| async {
            let Some(c) = cloud
                .admin_get(&format!("/api/v1/admin/depots/{depot}/days/{date}"))
                .await
            else {
                return false;
            };
            seen(format!("cloud: {c}"));
            let got: std::collections::BTreeMap<String, serde_json::Value> = c["blocks"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| {
                    (
                        b["record_id"].as_str().unwrap().to_string(),
                        non_null(&b["assignment"]),
                    )
                })
                .collect();
            got == want
                && c["events"].as_array().unwrap().len() == want_events
                && c["signons"].as_array().unwrap().len() == want_signons
        })
        .await;
        assert!(
            shown,
            "the cloud never showed the depot's {date}.\nedge: {at_edge}\n{}",
            last.lock()
        );
    }
    let c = cloud
        .admin_get(&format!("/api/v1/admin/depots/{depot}/days/{today}"))
        .await
        .unwrap();
    let kinds: Vec<&str> = c["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["fields"]["kind"].as_str().unwrap())
        .collect();
    for k in ["pull_out", "out_of_service", "swap"] {
        assert!(
            kinds.contains(&k),
            "{k} missing from the cloud's events {kinds:?}"
        );
    }
}
