//! Issue 12 item 9, acceptance 3: TODS runs from the cloud to a depot, as separate
//! processes. The cloud imports a GTFS feed with `run_events.txt` (runs that split a
//! block at a relief point), the depot's plan publishes blocks and runs, and at the depot
//! the dispatcher sees the runs, puts two drivers on the two halves of one block, and the
//! board flags a relief at the wrong place. The run assignments sync back to the cloud.
//!
//! The feed, by hand (times UTC, every day):
//! - block B1: t1 A 06:00 -> M 06:30 -> B 07:00, t2 B 07:10 -> A 08:10;
//! - block B2: t3 A 09:00 -> M 09:30 -> B 10:00, t4 B 10:10 -> A 11:10;
//! - run 1 drives t1 from A to M (leaves it mid-trip at M 06:30); run 2 takes t1 at M at
//!   06:30 and drives on through t2: B1 is split between runs 1 and 2 at M, 06:30;
//! - run 3 leaves t3 at M at 09:30, run 4 takes it at B at 10:00: a relief at the wrong
//!   place (and 30 minutes without a driver).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod browser;
mod procs;
#[allow(dead_code)]
#[path = "dispatch_offline/support.rs"]
mod support;

use std::io::Write;
use std::time::Duration;

use garasi_fleet_tests::{eventually, have_openssl};
use procs::{CloudProc, EdgeProc};
use support::{call, sign_in_when_synced};
use thirtyfour::components::SelectElement;
use thirtyfour::prelude::*;

fn tods_zip(start: jiff::civil::Date, end: jiff::civil::Date) -> Vec<u8> {
    let files = [
        ("agency.txt", "agency_name,agency_url,agency_timezone\nTest Transit,https://example.org,UTC\n".to_string()),
        ("stops.txt", "stop_id,stop_name,stop_lat,stop_lon\nA,Terminal A,-6.20,106.80\nM,Halte Tengah,-6.15,106.80\nB,Terminal B,-6.10,106.80\n".to_string()),
        ("routes.txt", "route_id,route_short_name,route_type\nR1,1,3\n".to_string()),
        (
            "calendar.txt",
            format!(
                "service_id,monday,tuesday,wednesday,thursday,friday,saturday,sunday,start_date,end_date\nALL,1,1,1,1,1,1,1,{},{}\n",
                start.strftime("%Y%m%d"),
                end.strftime("%Y%m%d")
            ),
        ),
        ("trips.txt", "route_id,service_id,trip_id,block_id\nR1,ALL,t1,B1\nR1,ALL,t2,B1\nR1,ALL,t3,B2\nR1,ALL,t4,B2\n".to_string()),
        ("stop_times.txt", "trip_id,arrival_time,departure_time,stop_id,stop_sequence\n\
t1,06:00:00,06:00:00,A,1\nt1,06:30:00,06:30:00,M,2\nt1,07:00:00,07:00:00,B,3\n\
t2,07:10:00,07:10:00,B,1\nt2,08:10:00,08:10:00,A,2\n\
t3,09:00:00,09:00:00,A,1\nt3,09:30:00,09:30:00,M,2\nt3,10:00:00,10:00:00,B,3\n\
t4,10:10:00,10:10:00,B,1\nt4,11:10:00,11:10:00,A,2\n".to_string()),
        ("run_events.txt", "service_id,run_id,event_sequence,event_type,trip_id,start_location,start_time,start_mid_trip,end_location,end_time,end_mid_trip\n\
ALL,1,1,Sign-in,,A,05:45:00,,A,05:50:00,\n\
ALL,1,2,Operator,t1,A,06:00:00,2,M,06:30:00,1\n\
ALL,2,1,Operator,t1,M,06:30:00,1,B,07:00:00,2\n\
ALL,2,2,Operator,t2,B,07:10:00,,A,08:10:00,\n\
ALL,3,1,Operator,t3,A,09:00:00,2,M,09:30:00,1\n\
ALL,4,1,Operator,t3,B,10:00:00,1,B,10:00:00,2\n\
ALL,4,2,Operator,t4,B,10:10:00,,A,11:10:00,\n".to_string()),
    ];
    let mut buf = std::io::Cursor::new(Vec::new());
    let mut z = zip::ZipWriter::new(&mut buf);
    let opts = zip::write::SimpleFileOptions::default();
    for (name, text) in files {
        z.start_file(name, opts).unwrap();
        z.write_all(text.as_bytes()).unwrap();
    }
    z.finish().unwrap();
    buf.into_inner()
}

fn run<'a>(day: &'a serde_json::Value, run: &str) -> &'a serde_json::Value {
    day["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["run"] == run)
        .unwrap_or_else(|| panic!("run {run} not in {day}"))
}

/// A run's conflict codes, without those that depend on the time of day the test runs
/// (no driver, or a driver not signed on, close to the run's start).
fn codes(r: &serde_json::Value) -> Vec<String> {
    r["conflicts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["code"].as_str().unwrap().to_string())
        .filter(|c| c != "run_unassigned" && c != "driver_not_signed_on")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn runs_split_a_block_between_two_drivers_and_a_bad_relief_is_flagged() {
    if !have_openssl() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let cloud = CloudProc::start(&tmp.path().join("cloud"));
    let (depot, token) = cloud.add_depot("Depot Pulogadung");
    let mut edge = EdgeProc::enroll_and_start_with(
        &tmp.path().join("edge"),
        &cloud.base(),
        &token,
        &cloud.ca_pem,
        &["--depot-timezone", "UTC"],
    );
    for (id, body) in [
        (
            "disp-1",
            serde_json::json!({"name": "Sari", "roles": ["dispatcher"], "password": "correct horse battery"}),
        ),
        (
            "drv-1",
            serde_json::json!({"name": "Budi", "roles": ["driver"], "pin": "2468"}),
        ),
        (
            "drv-2",
            serde_json::json!({"name": "Wati", "roles": ["driver"], "pin": "1357"}),
        ),
    ] {
        cloud
            .admin_put(&format!("/api/v1/admin/depots/{depot}/people/{id}"), body)
            .await;
    }
    let today = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date();
    let zip = tods_zip(
        today.checked_sub(jiff::Span::new().days(1)).unwrap(),
        today.checked_add(jiff::Span::new().days(30)).unwrap(),
    );
    let r = cloud
        .https
        .post(format!(
            "{}/api/v1/admin/timetables?name=tods&wait=true",
            cloud.base()
        ))
        .bearer_auth(procs::ADMIN)
        .body(zip)
        .send()
        .await
        .unwrap();
    let import: serde_json::Value = r.json().await.unwrap();
    assert_eq!(import["state"], "imported", "{import}");
    assert_eq!(import["report"]["imported"]["runs"], 4, "{import}");
    let plan = cloud
        .admin_put(
            &format!("/api/v1/admin/depots/{depot}/plan"),
            serde_json::json!({"timetable": import["timetable"], "routes": [{"route": "R1"}], "window_days": 0}),
        )
        .await;
    assert_eq!(plan["published"]["blocks"], 2, "{plan}");
    assert_eq!(plan["published"]["runs"], 4, "{plan}");
    let today = today.to_string();

    // The dispatcher arrives by sync; then the runs do.
    sign_in_when_synced(&mut edge, "disp-1", "correct horse battery").await;
    let tok = edge.token.clone().unwrap();
    eventually("runs reach the depot", || async {
        let d = edge.get(&format!("/api/v1/dispatch/days/{today}")).await;
        d.as_ref().and_then(|v| v["runs"].as_array().map(Vec::len)) == Some(4)
    })
    .await;
    let day = edge
        .get(&format!("/api/v1/dispatch/days/{today}"))
        .await
        .unwrap();
    let b1 = format!("{}-B1", today.replace('-', ""));
    // Run 1: sign-in at 05:45, then t1 to the relief at M ("Halte Tengah").
    let r1 = run(&day, "1");
    assert_eq!(r1["blocks"], serde_json::json!([b1]));
    assert_eq!(r1["events"][1]["to_name"], "Halte Tengah");
    assert!(
        codes(r1).is_empty() && codes(run(&day, "2")).is_empty(),
        "{day}"
    );
    // B1's two pieces: run 1 to M, run 2 from M.
    let pieces = day["pieces"][&b1].as_array().unwrap();
    let who: Vec<(&str, &str, &str)> = pieces
        .iter()
        .map(|p| {
            (
                p["run"].as_str().unwrap(),
                p["from_name"].as_str().unwrap(),
                p["to_name"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        who,
        [
            ("1", "Terminal A", "Halte Tengah"),
            ("2", "Halte Tengah", "Terminal B"),
            ("2", "Terminal B", "Terminal A")
        ]
    );
    // Runs 3 and 4: the relief on B2 is at another place, flagged on both.
    for r in ["3", "4"] {
        let c = run(&day, r)["conflicts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["code"] != "run_unassigned")
            .cloned()
            .unwrap();
        assert_eq!(c["code"], "relief_place", "run {r}: {day}");
        let m = c["message"].as_str().unwrap();
        assert!(
            m.contains("run 3 leaves it at Halte Tengah 09:30, run 4 takes it at Terminal B 10:00"),
            "{m}"
        );
    }

    // Two drivers on B1's two halves. Only a signed-in planner may, and only a driver.
    let path = |r: &str| {
        let id = run(&day, r)["id"].as_str().unwrap().to_string();
        format!("/api/v1/dispatch/days/{today}/runs/{id}/assignment")
    };
    let put = |p: String, body: serde_json::Value, t: Option<String>| {
        let edge = &edge;
        async move { call(edge, reqwest::Method::PUT, &p, t.as_deref(), Some(body)).await }
    };
    let (st, _, _) = put(path("1"), serde_json::json!({"driver": "drv-1"}), None).await;
    assert_eq!(st, 401, "a run assignment needs a session");
    let (st, v, _) = put(
        path("1"),
        serde_json::json!({"driver": "disp-1"}),
        Some(tok.clone()),
    )
    .await;
    assert_eq!(st, 400, "{v}");
    let (st, _, _) = put(
        path("1"),
        serde_json::json!({"driver": "drv-1"}),
        Some(tok.clone()),
    )
    .await;
    assert_eq!(st, 200);
    let (st, day, _) = put(
        path("2"),
        serde_json::json!({"driver": "drv-2"}),
        Some(tok.clone()),
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(
        (
            run(&day, "1")["driver_name"].as_str(),
            run(&day, "2")["driver_name"].as_str()
        ),
        (Some("Budi"), Some("Wati"))
    );
    let drivers: Vec<&str> = day["pieces"][&b1]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["driver"].as_str().unwrap())
        .collect();
    assert_eq!(
        drivers,
        ["drv-1", "drv-2", "drv-2"],
        "one block, two drivers"
    );
    assert!(
        codes(run(&day, "1")).is_empty() && codes(run(&day, "2")).is_empty(),
        "{day}"
    );
    // An empty body changes nothing (the driver field is required).
    let (st, _, _) = put(path("1"), serde_json::json!({}), Some(tok.clone())).await;
    assert_eq!(
        st, 422,
        "a body without its field is refused as the API refuses such bodies"
    );
    // Budi on run 3 too (09:00-09:30, after run 1): only the relief conflict stays.
    let (_, day, _) = put(
        path("3"),
        serde_json::json!({"driver": "drv-1"}),
        Some(tok.clone()),
    )
    .await;
    assert_eq!(codes(run(&day, "3")), ["relief_place"]);

    // The board in a browser: the runs table, the relief flagged, and a driver chosen on
    // a run's row by the signed-in dispatcher.
    if let Some(b) = browser::start().await {
        let d = b.driver.clone();
        let run4 = run(&day, "4")["id"].as_str().unwrap().to_string();
        let result = async {
            d.goto(&format!("{}/dispatch?date={today}", edge.http()))
                .await?;
            let table = d.find(By::Id("runs")).await?.text().await?;
            assert!(
                table.contains("Run 1") && table.contains("Halte Tengah"),
                "{table}"
            );
            assert!(
                table.contains("relief on block B2: run 3 leaves it at Halte Tengah 09:30"),
                "{table}"
            );
            d.find(By::Id("auto")).await?.click().await?;
            d.find(By::Id("login-person"))
                .await?
                .send_keys("disp-1")
                .await?;
            d.find(By::Id("login-password"))
                .await?
                .send_keys("correct horse battery")
                .await?;
            d.find(By::Css("#login button")).await?.click().await?;
            let css = format!("select.run-driver[data-run=\"{run4}\"]");
            let mut select = None;
            for _ in 0..100 {
                if let Ok(s) = d.find(By::Css(css.as_str())).await {
                    select = Some(s);
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let select = select.expect("the signed-in board offers a driver for each run");
            SelectElement::new(&select)
                .await?
                .select_by_value("drv-2")
                .await?;
            Ok::<(), WebDriverError>(())
        }
        .await;
        d.quit().await.ok();
        result.unwrap();
        eventually("the run's driver chosen on the board is saved", || async {
            let v = edge.get(&format!("/api/v1/dispatch/days/{today}")).await;
            v.is_some_and(|v| run(&v, "4")["driver"] == "drv-2")
        })
        .await;
    }

    // The assignments are operational records: they reach the cloud.
    let run1 = run(&day, "1")["id"].as_str().unwrap().to_string();
    eventually("run assignments reach the cloud", || async {
        cloud
            .admin_get(&format!(
                "/api/v1/admin/depots/{depot}/records/run_assignment/{run1}"
            ))
            .await
            .is_some_and(|r| r.to_string().contains("drv-1"))
    })
    .await;
}
