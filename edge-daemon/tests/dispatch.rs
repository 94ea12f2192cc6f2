//! Dispatch on a real `garasi-edge` process without a cloud (people and blocks from the
//! CLI): sign-on refusals (issue 4, acceptance 4) through a real serial line (a socat
//! pty pair) and the PIN route, and the planning rules over HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use common::{cli, eventually, now_ms, require_tool, Edge};

fn person(
    dir: &Path,
    id: &str,
    roles: &str,
    badge: Option<&str>,
    pin: Option<&str>,
    password: Option<&str>,
) {
    common::add_person(dir, id, id, roles, badge, pin, password);
}

/// Rows that sync to the cloud (outbox) and sign-on records: what "nothing written"
/// is checked against.
fn written(dir: &Path) -> (i64, i64) {
    let c = common::open_db(dir);
    let outbox: i64 = c
        .query_row("SELECT count(*) FROM sync_outbox", [], |r| r.get(0))
        .unwrap();
    let signons: i64 = c
        .query_row(
            "SELECT count(*) FROM dispatch_records WHERE record_type = 'signon'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    (outbox, signons)
}

fn today() -> String {
    jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_badges_wrong_pins_and_unknown_drivers_are_refused_counted_and_write_nothing() {
    if !require_tool("socat") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("depot");
    common::init(&dir);
    person(
        &dir,
        "drv-1",
        "driver",
        Some("04A1B2C3"),
        Some("2468"),
        None,
    );
    person(
        &dir,
        "mech-1",
        "mechanic",
        None,
        None,
        Some("a long enough password"),
    );
    // Bad people are refused by the CLI with the reason, and nothing is stored.
    let out = cli(&[
        "person",
        "add",
        "--data-dir",
        dir.to_str().unwrap(),
        "--id",
        "x/y",
        "--name",
        "",
        "--roles",
        "pilot",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("person id") && err.contains("name") && err.contains("roles"),
        "{err}"
    );

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
    let edge = Edge::start(
        &dir,
        &[
            "--depot-timezone",
            "UTC",
            "--badge-reader",
            reader.to_str().unwrap(),
        ],
    );
    let before = written(&dir);

    // Garbage from the reader: escape codes, spaces, an over-long line, invalid UTF-8;
    // then a well-formed badge nobody holds.
    let mut tty = std::fs::OpenOptions::new()
        .write(true)
        .open(&scanner)
        .unwrap();
    tty.write_all(b"\x1b[0m!!\r\n04 A1 B2\n").unwrap();
    tty.write_all(&[b'7'; 400]).unwrap();
    tty.write_all(b"\n\xff\xfe\xfd\nFFFF0000\n").unwrap();
    tty.flush().unwrap();
    let metric = |m: String, reason: &str| -> f64 {
        let key = format!("garasi_auth_refusals_total{{method=\"badge\",reason=\"{reason}\"}} ");
        m.lines()
            .find_map(|l| l.strip_prefix(&key))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    let got = eventually(Duration::from_secs(15), || async {
        let m = edge.metrics().await;
        (metric(m.clone(), "garbage") == 4.0 && metric(m, "unknown_badge") == 1.0).then_some(())
    })
    .await;
    assert!(
        got.is_some(),
        "4 garbage lines and 1 unknown badge counted:\n{}",
        edge.metrics().await
    );
    assert!(edge.log().contains("badge refused"), "refusals are logged");
    assert!(
        !edge.log().contains("FFFF0000"),
        "badge numbers are not logged"
    );

    // The PIN route: wrong PIN, unknown driver, malformed PIN, a mechanic with no PIN.
    let client = reqwest::Client::new();
    let signon = |body: serde_json::Value| {
        let c = client.clone();
        let url = format!("{}/api/v1/signon", edge.http);
        async move {
            let r = c.post(url).json(&body).send().await.unwrap();
            let st = r.status().as_u16();
            let j: serde_json::Value = r.json().await.unwrap();
            (
                st,
                j["error"]["message"].as_str().unwrap_or("").to_string(),
                r_cookie_absent(&j),
            )
        }
    };
    fn r_cookie_absent(j: &serde_json::Value) -> bool {
        j.get("person").is_none()
    }
    let (st, msg, no_session) = signon(serde_json::json!({"person": "drv-1", "pin": "1111"})).await;
    assert_eq!(st, 401);
    assert!(msg.contains("wrong person id or PIN"), "{msg}");
    assert!(no_session);
    // Unknown people, malformed PINs and people without a PIN get the very same answer:
    // the route never tells who exists.
    let wrong = msg;
    let (st, msg, _) = signon(serde_json::json!({"person": "ghost", "pin": "1234"})).await;
    assert_eq!((st, &msg), (401, &wrong));
    let (st, msg, _) = signon(serde_json::json!({"person": "drv-1", "pin": "12ab"})).await;
    assert_eq!((st, &msg), (401, &wrong));
    let (st, msg, _) = signon(serde_json::json!({"person": "mech-1", "pin": "1234"})).await;
    assert_eq!((st, &msg), (401, &wrong));
    let r = client
        .post(format!("{}/api/v1/signon", edge.http))
        .body("{not json")
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status().as_u16(),
        400,
        "a body that is not JSON is a clear 400"
    );
    let m = edge.metrics().await;
    // One label for every denial (metrics are open); the log names each cause.
    assert!(
        m.contains("garasi_auth_refusals_total{method=\"pin\",reason=\"denied\"} 4"),
        "{m}"
    );
    for cause in ["WrongSecret", "UnknownPerson", "BadFormat", "NotADriver"] {
        assert!(edge.log().contains(cause), "{cause} logged");
    }
    assert!(
        !m.contains("garasi_dispatch_signons_total"),
        "no sign-on counted yet:\n{m}"
    );
    assert_eq!(
        written(&dir),
        before,
        "refusals write nothing (no record, no outbox entry)"
    );

    // Five wrong PINs in a row lock the person, even with the right PIN after (a
    // malformed PIN is refused before the person is looked up, so it does not count).
    for _ in 0..4 {
        signon(serde_json::json!({"person": "drv-1", "pin": "0000"})).await;
    }
    let (st, msg, _) = signon(serde_json::json!({"person": "drv-1", "pin": "2468"})).await;
    assert_eq!(
        (st, &msg),
        (401, &wrong),
        "locked, answered like a wrong PIN"
    );
    assert!(edge.log().contains("Locked"));
    assert_eq!(written(&dir), before);

    // The real badge still signs on (a lock is per PIN guesser, the badge is physical).
    tty.write_all(b"04a1b2c3\r\n").unwrap();
    let got = eventually(Duration::from_secs(15), || async {
        let d: serde_json::Value = edge
            .staff_get(&format!("/api/v1/dispatch/days/{}", today()))
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        d["signons"]
            .as_array()?
            .iter()
            .find(|s| s["person"] == "drv-1" && s["method"] == "badge")
            .cloned()
    })
    .await;
    let s = got.expect("the badge signs drv-1 on");
    assert_eq!(s["terminal"], reader.display().to_string());
    let after = written(&dir);
    assert_eq!(after.1, before.1 + 1, "one sign-on record");
    assert_eq!(after.0, before.0 + 1, "its change is in the sync outbox");
    assert!(edge
        .metrics()
        .await
        .contains("garasi_dispatch_signons_total{method=\"badge\"} 1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standalone_depot_plans_its_day_over_http() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("depot");
    common::init(&dir);
    for (id, kwh, typ) in [("bus-1", "1.0", "12m"), ("bus-2", "1.0", "18m")] {
        let out = cli(&[
            "vehicle",
            "add",
            "--data-dir",
            dir.to_str().unwrap(),
            "--id",
            id,
            "--battery-kwh",
            "300",
            "--kwh-per-km",
            kwh,
            "--vehicle-type",
            typ,
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    person(
        &dir,
        "disp",
        "dispatcher",
        None,
        None,
        Some("dispatcher password"),
    );
    person(&dir, "drv", "driver", None, Some("1234"), None);
    let date = today();
    let t0 = now_ms() + 3_600_000;
    let blocks = serde_json::json!([
        {"id": "b-typed", "service_date": date, "block": "T", "routes": "R", "pull_out_ms": t0, "pull_in_ms": t0 + 3_600_000, "distance_km": 50.0, "vehicle_type": "18m"},
        {"id": "b-plain", "service_date": date, "block": "P", "routes": "R", "pull_out_ms": t0, "pull_in_ms": t0 + 3_600_000, "distance_km": 50.0},
    ]);
    let f = tmp.path().join("blocks.json");
    std::fs::write(&f, blocks.to_string()).unwrap();
    let out = cli(&[
        "dispatch",
        "import-blocks",
        "--data-dir",
        dir.to_str().unwrap(),
        "--file",
        f.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let edge = Edge::start(&dir, &["--depot-timezone", "UTC"]);
    let c = reqwest::Client::new();
    let r = c
        .post(format!("{}/api/v1/session", edge.http))
        .json(&serde_json::json!({"person": "drv", "password": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401, "a driver has no password");
    let login: serde_json::Value = c
        .post(format!("{}/api/v1/session", edge.http))
        .json(&serde_json::json!({"person": "disp", "password": "dispatcher password", "token": true}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let tok = login["token"].as_str().unwrap().to_string();
    // No charge reported yet: nothing can be proposed, and the board says why.
    let p: serde_json::Value = c
        .post(format!(
            "{}/api/v1/dispatch/days/{date}/auto-assign",
            edge.http
        ))
        .bearer_auth(&tok)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(p["proposals"].as_array().unwrap().len(), 0, "{p}");
    assert!(
        p["unassigned"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("state of charge"),
        "{p}"
    );
    // Hand assignment: the 12 m bus on the block that needs 18 m, twice the same bus at
    // the same time, an unknown vehicle refused.
    for (block, v) in [("b-typed", "bus-1"), ("b-plain", "bus-1")] {
        let r = c
            .put(format!(
                "{}/api/v1/dispatch/days/{date}/blocks/{block}/assignment",
                edge.http
            ))
            .bearer_auth(&tok)
            .json(&serde_json::json!({"vehicle": v, "driver": "drv"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
    }
    let r = c
        .put(format!(
            "{}/api/v1/dispatch/days/{date}/blocks/b-plain/assignment",
            edge.http
        ))
        .bearer_auth(&tok)
        .json(&serde_json::json!({"vehicle": "bus-9"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let r = c
        .put(format!(
            "{}/api/v1/dispatch/days/{date}/blocks/nope/assignment",
            edge.http
        ))
        .bearer_auth(&tok)
        .json(&serde_json::json!({"vehicle": "bus-2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let day: serde_json::Value = edge
        .staff_get(&format!("/api/v1/dispatch/days/{date}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let codes = |id: &str| -> Vec<String> {
        day["blocks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["id"] == id)
            .unwrap()["conflicts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["code"].as_str().unwrap().to_string())
            .collect()
    };
    for want in [
        "vehicle_type",
        "double_vehicle",
        "double_driver",
        "no_charge_data",
    ] {
        assert!(
            codes("b-typed").contains(&want.to_string()),
            "{want}: {:?}",
            codes("b-typed")
        );
    }
    // The board page renders the day on the server.
    let html = reqwest::get(format!("{}/dispatch?date={date}", edge.http))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("row-b-typed")
            && html.contains("needs 18m")
            && html.contains("double_vehicle"),
        "{html}"
    );
    let bad = edge
        .staff_get("/api/v1/dispatch/days/tomorrow")
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 400);
}

/// A child process killed and reaped when the test ends, also when it fails.
struct Killed(std::process::Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
