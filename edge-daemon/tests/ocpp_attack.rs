//! Broken and hostile OCPP traffic against the real binary, from a WebSocket client of
//! another codebase (Python `websockets`): each malformed or schema-violating frame gets
//! the CALLERROR OCPP 1.6J names and is counted, the connection carries on, an oversized
//! frame ends only that connection, wrong credentials are refused before the WebSocket
//! opens, and a second charger heartbeating meanwhile loses nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::*;
use serde_json::{json, Value};

const TS: &str = "2026-11-30T22:00:00Z";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_get_the_right_callerror_and_other_chargers_are_unaffected() {
    let Some(py) = ocpp_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    init(dir.path());
    add_vehicle(dir.path(), "bus-1");
    let bus_password = add_device(dir.path(), "bus-1");
    let bad = add_charger(dir.path(), "CP-BAD", "1");
    let good = add_charger(dir.path(), "CP-GOOD", "1");
    let edge = Edge::start(dir.path(), &[]);
    let start = |extra: Value| {
        let mut p = json!({"connectorId": 1, "idTag": "bus-1", "meterStart": 0, "timestamp": TS});
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                p.as_object_mut().unwrap().remove(k);
            } else {
                p[k] = v.clone();
            }
        }
        json!([2, "st", "StartTransaction", p]).to_string()
    };
    // (frame, expected [id, code]) — null: no answer expected.
    let cases: Vec<(Value, Value)> = vec![
        (json!("not json"), json!(["-1", "FormationViolation"])),
        (json!(r#"{"a": 1}"#), json!(["-1", "FormationViolation"])),
        (json!(r#"[2, "a", "Heartbeat"]"#), json!(["a", "FormationViolation"])),
        (json!(r#"[7, "b", "Heartbeat", {}]"#), json!(["b", "FormationViolation"])),
        (json!(r#"[2, "c", "Heartbeat", [1]]"#), json!(["c", "FormationViolation"])),
        (json!(r#"[2, "d", "NoSuchAction", {}]"#), json!(["d", "NotImplemented"])),
        (json!(r#"[2, "e", "Reset", {"type": "Hard"}]"#), json!(["e", "NotSupported"])),
        (json!(start(json!({"connectorId": "1"}))), json!(["st", "TypeConstraintViolation"])),
        (json!(start(json!({"meterStart": null}))), json!(["st", "OccurenceConstraintViolation"])),
        (json!(start(json!({"surprise": 1}))), json!(["st", "FormationViolation"])),
        (json!(start(json!({"idTag": "X".repeat(21)}))), json!(["st", "PropertyConstraintViolation"])),
        (json!(start(json!({"timestamp": "yesterday"}))), json!(["st", "PropertyConstraintViolation"])),
        (
            json!(json!([2, "f", "StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Sleeping"}]).to_string()),
            json!(["f", "PropertyConstraintViolation"]),
        ),
        (json!({"binary": "0102"}), json!(["-1", "FormationViolation"])),
        // Values the schema allows but no charger of this depot can mean.
        (json!(start(json!({"connectorId": 7}))), json!(["st", "PropertyConstraintViolation"])),
        (json!(start(json!({"meterStart": -5}))), json!(["st", "PropertyConstraintViolation"])),
        (
            json!(json!([2, "g", "StopTransaction", {"transactionId": 1_099_511_627_776_i64, "meterStop": 1, "timestamp": TS}]).to_string()),
            json!(["g", "PropertyConstraintViolation"]),
        ),
        (json!(r#"[3, "nobody-asked", {}]"#), Value::Null),
        (json!(r#"[4, "nobody-asked", "GenericError", "", {}]"#), Value::Null),
        (json!(r#"[2, "ok", "Heartbeat", {}]"#), json!(["ok", 3])),
    ];
    let frames: Vec<Value> = cases.iter().map(|(f, _)| f.clone()).collect();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/ocpp_clients/raw_frames.py"
    );
    let ws = edge.http.replacen("http://", "ws://", 1) + "/ocpp";
    let mut child = Command::new(&py)
        .args([
            script,
            &ws,
            "CP-BAD",
            &bad,
            "CP-GOOD",
            &good,
            "bus-1",
            &bus_password,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(Value::from(frames).to_string().as_bytes())
        .unwrap();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        edge.log()
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();

    let got = r["frames"].as_array().unwrap();
    for ((frame, want), answer) in cases.iter().zip(got) {
        match want {
            Value::Null => assert!(answer.is_null(), "{frame} answered {answer}"),
            w if w[1] == 3 => assert_eq!(
                (answer[0].as_i64(), &answer[1]),
                (Some(3), &w[0]),
                "{frame}"
            ),
            w => assert_eq!(
                (answer[0].as_i64(), &answer[1], &answer[2]),
                (Some(4), &w[0], &w[1]),
                "{frame} answered {answer}"
            ),
        }
    }
    // An oversized frame (1 MiB, limit 64 KiB) ends that connection (1009: too big);
    // the charger connects again and is served.
    // (Or the client saw a reset: the edge closed before the frame was all sent; the
    // edge's own count below says why it closed.)
    let over = &r["oversized"];
    assert!(over["close"] == 1009 || over["close"] == "reset", "{r}");
    assert_eq!(over["then_heartbeat"], true, "{r}");
    let logins = &r["logins"];
    for (name, status) in [
        ("wrong_password", 401),
        ("unknown_charger", 401),
        ("no_credentials", 401),
        ("no_subprotocol", 400),
        ("other_subprotocol", 400),
        ("vehicle_credentials", 401),
    ] {
        assert_eq!(logins[name], status, "{name}: {logins}");
    }
    let steady = &r["steady"];
    assert!(steady["sent"].as_i64().unwrap() >= 10, "{steady}");
    assert_eq!(
        steady["sent"], steady["answered"],
        "the other charger lost heartbeats: {steady}"
    );

    for (code, n) in [
        ("FormationViolation", 7.0),
        ("NotImplemented", 1.0),
        ("NotSupported", 1.0),
        ("TypeConstraintViolation", 1.0),
        ("OccurenceConstraintViolation", 1.0),
        ("PropertyConstraintViolation", 6.0),
    ] {
        let m = format!("garasi_charging_ocpp_callerrors_sent_total{{code=\"{code}\"}}");
        assert_eq!(edge.metric(&m).await, n, "{m}");
    }
    assert_eq!(
        edge.metric("garasi_charging_ocpp_refused_total{reason=\"bad_credentials\"}")
            .await,
        3.0
    );
    assert_eq!(
        edge.metric("garasi_charging_ocpp_refused_total{reason=\"subprotocol\"}")
            .await,
        2.0
    );
    assert_eq!(
        edge.metric("garasi_charging_ocpp_refused_total{reason=\"no_credentials\"}")
            .await,
        1.0
    );
    assert_eq!(
        edge.metric("garasi_charging_ocpp_connections_ended_total{why=\"frame_too_big\"}")
            .await,
        1.0
    );
    // Nothing a refused frame carried was stored.
    let v = edge.get_json("/api/v1/charging/sessions?since_ms=0").await;
    assert_eq!(v["sessions"], json!([]), "{v}");
    assert!(
        edge.log()
            .lines()
            .all(|l| !l.contains(&bad) && !l.contains(&good)),
        "a password reached the log"
    );
}

/// A charger that stops reading its answers: the edge's sends to it time out and only
/// its connection ends; a request to it through the API answers in bounded time, and a
/// second charger heartbeating meanwhile loses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_charger_that_stops_reading_ends_only_its_own_connection() {
    let Some(py) = ocpp_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    init(dir.path());
    add_vehicle(dir.path(), "bus-1");
    let bus_password = add_device(dir.path(), "bus-1");
    let stall = add_charger(dir.path(), "CP-STALL", "1");
    let good = add_charger(dir.path(), "CP-GOOD", "1");
    let other = add_charger(dir.path(), "CP-OTHER", "1");
    let edge = Edge::start(dir.path(), &[]);
    let ws = edge.http.replacen("http://", "ws://", 1) + "/ocpp";
    let dir_ = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/ocpp_clients/");
    let staller = Command::new(&py)
        .args([&format!("{dir_}stall.py"), &ws, "CP-STALL", &stall])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The healthy charger (raw_frames.py's steady heartbeats, with one frame of its own).
    let mut healthy = Command::new(&py)
        .args([
            &format!("{dir_}raw_frames.py"),
            &ws,
            "CP-OTHER",
            &other,
            "CP-GOOD",
            &good,
            "bus-1",
            &bus_password,
        ])
        // Heartbeats for as long as the stalled charger is being dealt with.
        .env("STEADY_S", "30")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    healthy
        .stdin
        .take()
        .unwrap()
        .write_all(br#"["[2, \"ok\", \"Heartbeat\", {}]"]"#)
        .unwrap();
    // Meanwhile a person asks the stalled charger for its configuration.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let token = edge.staff_token().await.unwrap();
    let t = std::time::Instant::now();
    let r = reqwest::Client::new()
        .post(format!(
            "{}/api/v1/charging/chargers/CP-STALL/ocpp/GetConfiguration",
            edge.http
        ))
        .bearer_auth(token)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let waited = t.elapsed();
    assert!(!r.status().is_success(), "{}", r.status());
    assert!(
        waited < std::time::Duration::from_secs(45),
        "the API waited {waited:?}"
    );
    let out = tokio::task::spawn_blocking(move || staller.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let lines: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert_eq!(
        lines.len(),
        2,
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(lines[0]["sent"].as_i64().unwrap() > 1000, "{text}");
    assert!(
        lines[1]["closed_after_s"].as_f64().is_some(),
        "the edge kept the stalled connection: {text}"
    );
    let h = tokio::task::spawn_blocking(move || healthy.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let r: Value = serde_json::from_slice(&h.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&h.stderr)));
    assert_eq!(r["steady"]["sent"], r["steady"]["answered"], "{r}");
    assert!(r["steady"]["sent"].as_i64().unwrap() >= 200, "{r}");
    assert_eq!(
        edge.metric("garasi_charging_ocpp_connections_ended_total{why=\"send_failed\"}")
            .await,
        1.0
    );
    println!(
        "stalled charger: {} frames sent unread, closed {} s after; the API answered in {waited:?}; the other charger: {}",
        lines[0]["sent"], lines[1]["closed_after_s"], r["steady"]
    );
}
