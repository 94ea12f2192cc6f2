//! The OCPP 1.6J central system against a charge point from another codebase (The
//! Mobility House's `ocpp` library over `websockets`, in the venv `.ci/run` makes),
//! over a real WebSocket to the real binary: a charging day with a remote stop, smart
//! charging requests, an outage with a replayed queue and a stop the edge never saw
//! start; the energy the edge keeps must be exactly what the charger metered.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// Posts an OCPP request to a charger through the edge's API, as the staff member.
async fn ocpp_call(edge: &Edge, charger: &str, action: &str, payload: Value) -> (u16, Value) {
    let token = edge.staff_token().await.expect("staff token");
    let r = reqwest::Client::new()
        .post(format!(
            "{}/api/v1/charging/chargers/{charger}/ocpp/{action}",
            edge.http
        ))
        .bearer_auth(token)
        .json(&payload)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn session(sessions: &[Value], tx: i64) -> &Value {
    sessions
        .iter()
        .find(|s| s["transaction_id"] == tx)
        .unwrap_or_else(|| panic!("no session {tx} in {sessions:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outside_charge_point_runs_a_charging_day_and_its_energy_is_kept_exactly() {
    let Some(py) = ocpp_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    init(dir.path());
    add_vehicle(dir.path(), "bus-1");
    let password = add_charger(dir.path(), "CP-1", "2");
    let edge = Edge::start(dir.path(), &[]);
    let ws = edge.http.replacen("http://", "ws://", 1) + "/ocpp";
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/ocpp_clients/charge_point.py"
    );
    let mut child = Command::new(&py)
        .args([script, &ws, "CP-1", &password, "bus-1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Value>();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(serde_json::from_str(&line).unwrap_or(json!({"raw": line})));
        }
    });
    let mut events = Vec::new();
    let mut composite = Value::Null;
    loop {
        let ev = match tokio::time::timeout(Duration::from_secs(60), rx.recv()).await {
            Ok(Some(ev)) => ev,
            _ => {
                let _ = child.kill();
                let err = child
                    .wait_with_output()
                    .map(|o| String::from_utf8_lossy(&o.stderr).to_string());
                panic!(
                    "charge point stopped early after {events:?}: {err:?}\n{}",
                    edge.log()
                );
            }
        };
        events.push(ev.clone());
        match ev["event"].as_str() {
            Some("charging") => {
                let tx = ev["tx"].as_i64().unwrap();
                let profile = json!({"connectorId": 1, "csChargingProfiles": {
                    "chargingProfileId": 7, "transactionId": tx, "stackLevel": 0,
                    "chargingProfilePurpose": "TxProfile", "chargingProfileKind": "Absolute",
                    "chargingSchedule": {"chargingRateUnit": "W", "startSchedule": "2026-11-30T22:00:00Z",
                        "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 40000.0},
                                                   {"startPeriod": 3600, "limit": 22000.0}]}}});
                let (s, a) = ocpp_call(&edge, "CP-1", "SetChargingProfile", profile).await;
                assert_eq!((s, a["status"].as_str()), (200, Some("Accepted")), "{a}");
                let (s, a) = ocpp_call(
                    &edge,
                    "CP-1",
                    "GetCompositeSchedule",
                    json!({"connectorId": 1, "duration": 7200, "chargingRateUnit": "W"}),
                )
                .await;
                assert_eq!(s, 200, "{a}");
                composite = a;
                // A request that breaks the official schema never leaves the edge.
                let (s, _) = ocpp_call(
                    &edge,
                    "CP-1",
                    "RemoteStopTransaction",
                    json!({"transactionId": "x"}),
                )
                .await;
                assert_eq!(s, 400);
                let (s, a) = ocpp_call(
                    &edge,
                    "CP-1",
                    "RemoteStopTransaction",
                    json!({"transactionId": tx}),
                )
                .await;
                assert_eq!((s, a["status"].as_str()), (200, Some("Accepted")), "{a}");
            }
            Some("done") => break,
            _ => {}
        }
    }
    assert!(child.wait().unwrap().success());
    let by = |name: &str| {
        events
            .iter()
            .find(|e| e["event"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name}: {events:?}"))
    };
    assert_eq!(by("boot")["status"], "Accepted");
    assert_eq!(by("boot")["interval"], 300);
    assert_eq!(by("authorize")["known"], "Accepted");
    assert_eq!(by("authorize")["unknown"], "Invalid");
    assert_eq!(by("profile")["purpose"], "TxProfile");
    assert_eq!(composite["status"], "Accepted", "{composite}");
    assert_eq!(
        composite["chargingSchedule"]["chargingSchedulePeriod"][1]["limit"],
        22000.0
    );
    let (tx1, tx2) = (
        by("started")["tx"].as_i64().unwrap(),
        by("started2")["tx"].as_i64().unwrap(),
    );
    assert_ne!(tx1, tx2);
    // The start sent again after the outage (its answer lost) got the same transaction.
    assert_eq!(by("start_again")["tx"].as_i64(), Some(tx2));

    let v = edge.get_json("/api/v1/charging/sessions?since_ms=0").await;
    let sessions = v["sessions"].as_array().unwrap().clone();
    // Replays (the stop sent twice, samples re-sent) made no extra session.
    assert_eq!(sessions.len(), 3, "{sessions:#?}");
    let s1 = session(&sessions, tx1);
    assert_eq!(
        (s1["energy_wh"].as_i64(), s1["stop_reason"].as_str()),
        (Some(2000), Some("Remote")),
        "{s1}"
    );
    assert_eq!(s1["vehicle_id"], "bus-1");
    let s2 = session(&sessions, tx2);
    assert_eq!(
        (s2["energy_wh"].as_i64(), s2["meter_stop_wh"].as_i64()),
        (Some(3000), Some(15000)),
        "{s2}"
    );
    assert_eq!(
        (s2["stop_reason"].as_str(), s2["connector_id"].as_i64()),
        (Some("EVDisconnected"), Some(2))
    );
    let s3 = sessions
        .iter()
        .find(|s| s["origin"] == "stop_only")
        .expect("stop-only session");
    // Its start is the Transaction.Begin register the charger reported: 19000 -> 20000.
    assert_eq!(
        (s3["charger_tx_id"].as_i64(), s3["energy_wh"].as_i64()),
        (Some(987654), Some(1000)),
        "{s3}"
    );

    // Every request a person sent is recorded with who sent it and how it ended; the
    // one the schema refused never reached the charger, so it is not there.
    let r = edge.get_json("/api/v1/charging/requests").await;
    let done: Vec<(String, String, String)> = r["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["action"].as_str().unwrap().into(),
                x["person"].as_str().unwrap().into(),
                x["outcome"].as_str().unwrap().into(),
            )
        })
        .collect();
    let staff = STAFF_ID.to_string();
    assert_eq!(
        done,
        vec![
            (
                "RemoteStopTransaction".into(),
                staff.clone(),
                "Accepted".into()
            ),
            (
                "GetCompositeSchedule".into(),
                staff.clone(),
                "Accepted".into()
            ),
            ("SetChargingProfile".into(), staff, "Accepted".into()),
        ],
        "{r}"
    );
    let c = edge.get_json("/api/v1/charging/chargers").await;
    let cp = &c["chargers"][0];
    assert_eq!(
        (cp["charger"]["vendor"].as_str(), cp["online"].as_bool()),
        (Some("Garasi Test"), Some(false)),
        "{c}"
    );
    assert!(cp["connectors"]
        .as_array()
        .unwrap()
        .iter()
        .any(|k| k["connector_id"] == 1 && k["status"] == "Available"));
    assert_eq!(
        edge.metric("garasi_charging_ocpp_calls_total{action=\"StopTransaction\"}")
            .await,
        4.0
    );
}
