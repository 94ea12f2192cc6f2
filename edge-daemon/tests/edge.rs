//! End-to-end tests of the real `garasi-edge` binary: MQTT in (rumqttc and mosquitto_pub),
//! REST and SSE out, encryption at rest, device auth and ACLs, dead letters (its
//! lifecycle is in `edge_lifecycle.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use futures::StreamExt;
use rumqttc::QoS;

/// Collects SSE `telemetry` events (vehicle ids) in the background.
fn sse_collector(edge: &Edge) -> std::sync::Arc<parking_lot::Mutex<Vec<String>>> {
    let seen = std::sync::Arc::new(parking_lot::Mutex::new(Vec::new()));
    let (url, seen2) = (
        format!("{}/api/v1/telemetry/stream", edge.http),
        seen.clone(),
    );
    tokio::spawn(async move {
        let resp = reqwest::get(url).await.unwrap();
        let mut body = resp.bytes_stream();
        let mut buf = String::new();
        while let Some(Ok(chunk)) = body.next().await {
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find("\n\n") {
                let ev: String = buf.drain(..end + 2).collect();
                if ev.contains("event: telemetry") {
                    if let Some(data) = ev.lines().find_map(|l| l.strip_prefix("data: ")) {
                        let v: serde_json::Value = serde_json::from_str(data).unwrap();
                        seen2
                            .lock()
                            .push(v["vehicle_id"].as_str().unwrap().to_string());
                    }
                }
            }
        }
    });
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telemetry_from_rumqttc_and_mosquitto_pub_reaches_rest_and_sse() {
    let tmp = tempfile::tempdir().unwrap();
    let pw = depot(tmp.path(), &["bus-1", "bus-2", "bus-3"]);
    let edge = Edge::start(tmp.path(), &[]);
    let seen = sse_collector(&edge);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // rumqttc, MQTT 3.1.1.
    let (c, mut rx) = mqtt_client(edge.mqtt, "bus-1", "bus-1", &pw[0]).await;
    connack(&mut rx).await.expect("bus-1 connects");
    let t = now_ms();
    c.publish(
        "garasi/v1/vehicles/bus-1/telemetry",
        QoS::AtLeastOnce,
        false,
        sample(t, 31.0),
    )
    .await
    .unwrap();

    // The real mosquitto_pub, 3.1.1 and MQTT 5.
    let mosquitto = require_tool("mosquitto_pub");
    if mosquitto {
        for (id, pass, port, version) in [
            ("bus-2", &pw[1], edge.mqtt.port(), "mqttv311"),
            ("bus-3", &pw[2], edge.mqtt5.port(), "mqttv5"),
        ] {
            let out = Command::new("mosquitto_pub")
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &port.to_string(),
                    "-V",
                    version,
                    "-i",
                    id,
                    "-u",
                    id,
                    "-P",
                    pass,
                    "-q",
                    "1",
                ])
                .args([
                    "-t",
                    &format!("garasi/v1/vehicles/{id}/telemetry"),
                    "-m",
                    &sample(t + 1, 42.0),
                ])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "mosquitto_pub {version}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    let ids: &[&str] = if mosquitto {
        &["bus-1", "bus-2", "bus-3"]
    } else {
        &["bus-1"]
    };
    for id in ids {
        let got = eventually(Duration::from_secs(10), || async {
            let s = samples_of(&edge, id).await;
            (!s.is_empty()).then_some(s)
        })
        .await
        .unwrap_or_else(|| panic!("{id}: no sample in REST\n{}", edge.log()));
        assert_eq!(got.len(), 1);
        assert!(got[0]["speed_kmh"].as_f64().unwrap() > 30.0);
        let list = edge.get_json("/api/v1/vehicles").await;
        let v = list["vehicles"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["id"] == *id)
            .unwrap()
            .clone();
        assert_eq!(v["live"]["status"], "online", "{v}");
        assert_eq!(v["live"]["sample"]["soc_pct"], 77.5);
    }
    let all_seen = eventually(Duration::from_secs(5), || async {
        let s = seen.lock().clone();
        ids.iter().all(|id| s.iter().any(|x| x == id)).then_some(s)
    })
    .await;
    assert!(all_seen.is_some(), "SSE saw {:?}", seen.lock());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_is_encrypted_and_keys_are_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let pw = depot(tmp.path(), &["bus-1"]);
    let mut edge = Edge::start(tmp.path(), &[]);
    let (c, mut rx) = mqtt_client(edge.mqtt, "bus-1", "bus-1", &pw[0]).await;
    connack(&mut rx).await.unwrap();
    let marker = "MARKER-7f3a9c-garasi-plaintext-probe";
    let payload = serde_json::json!({"ts": now_ms(), "signals": {"Vehicle.Speed": 1.0, "Vehicle.Cabin.Note": marker}}).to_string();
    c.publish(
        "garasi/v1/vehicles/bus-1/telemetry",
        QoS::AtLeastOnce,
        false,
        payload,
    )
    .await
    .unwrap();
    eventually(Duration::from_secs(10), || async {
        (!samples_of(&edge, "bus-1").await.is_empty()).then_some(())
    })
    .await
    .expect("sample stored");

    // While running (WAL holds the newest pages) and after a clean stop.
    for phase in ["running", "stopped"] {
        if phase == "stopped" {
            edge.sigterm();
            assert_eq!(edge.wait_exit(Duration::from_secs(15)), Some(0));
        }
        for f in ["garasi.db", "garasi.db-wal"] {
            let p = tmp.path().join(f);
            if let Ok(bytes) = std::fs::read(&p) {
                assert!(
                    !bytes.windows(marker.len()).any(|w| w == marker.as_bytes()),
                    "{phase}: marker in plaintext in {f}"
                );
                if f == "garasi.db" {
                    assert_ne!(
                        &bytes[..16],
                        b"SQLite format 3\0",
                        "{phase}: database header is plaintext"
                    );
                }
            }
        }
    }
    assert!(
        !edge.log().contains(
            &std::fs::read_to_string(tmp.path().join("db.key"))
                .unwrap()
                .trim()
                .to_string()
        ),
        "key in log"
    );

    // The standard sqlcipher CLI opens it with the raw key, and not without.
    if require_tool("sqlcipher") {
        let key = std::fs::read_to_string(tmp.path().join("db.key"))
            .unwrap()
            .trim()
            .to_string();
        let db = tmp.path().join("garasi.db");
        let sql = format!("PRAGMA key = \"x'{key}'\";\nPRAGMA cipher_page_size = 4096;\nSELECT extra FROM telemetry_samples;\n");
        let out = Command::new("sqlcipher")
            .arg(&db)
            .arg(&sql)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(marker),
            "sqlcipher with key: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = Command::new("sqlcipher")
            .arg(&db)
            .arg("SELECT count(*) FROM telemetry_samples;")
            .output()
            .unwrap();
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            all.contains("not a database") || !out.status.success(),
            "sqlcipher without key must fail: {all}"
        );
    }

    // Wrong key, missing key, plaintext database: refused, each named.
    let wrong = tmp.path().join("wrong.key");
    std::fs::write(&wrong, format!("{}\n", "ab".repeat(32))).unwrap();
    std::os::unix::fs::PermissionsExt::set_mode(
        &mut std::fs::metadata(&wrong).unwrap().permissions(),
        0o600,
    );
    Command::new("chmod")
        .args(["600", wrong.to_str().unwrap()])
        .status()
        .unwrap();
    let err = Edge::try_start(tmp.path(), &["--key-file", wrong.to_str().unwrap()])
        .err()
        .expect("wrong key must not start");
    assert!(err.contains("does not open database"), "{err}");
    assert!(
        !err.contains(&"ab".repeat(32)),
        "key material in error output"
    );
    let err = Edge::try_start(
        tmp.path(),
        &["--key-file", tmp.path().join("nope.key").to_str().unwrap()],
    )
    .err()
    .expect("missing key must not start");
    assert!(err.contains("is missing"), "{err}");
    let plain = tempfile::tempdir().unwrap();
    rusqlite::Connection::open(plain.path().join("garasi.db"))
        .unwrap()
        .execute_batch("CREATE TABLE x(y);")
        .unwrap();
    Command::new("cp")
        .arg(tmp.path().join("db.key"))
        .arg(plain.path().join("db.key"))
        .status()
        .unwrap();
    let err = Edge::try_start(plain.path(), &[])
        .err()
        .expect("plaintext db must not start");
    assert!(err.contains("plain, unencrypted SQLite"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_refused_and_forged_publish_not_ingested() {
    let tmp = tempfile::tempdir().unwrap();
    let pw = depot(tmp.path(), &["bus-1", "bus-2"]);
    let edge = Edge::start(tmp.path(), &[]);

    let (_c, mut rx) = mqtt_client(edge.mqtt, "bus-1", "bus-1", "not-the-password").await;
    assert!(connack(&mut rx).await.is_err(), "wrong password accepted");
    let (_c, mut rx) = mqtt_client(edge.mqtt5, "ghost", "ghost", &pw[0]).await;
    assert!(connack(&mut rx).await.is_err(), "unknown device accepted");
    let (_c, mut rx) = mqtt_client(edge.mqtt, "bus-2", "bus-2", &pw[0]).await;
    assert!(
        connack(&mut rx).await.is_err(),
        "bus-1's password opened bus-2"
    );

    // bus-1 tries to speak for bus-2: the gate closes the connection, nothing is stored.
    let (c, mut rx) = mqtt_client(edge.mqtt, "bus-1", "bus-1", &pw[0]).await;
    connack(&mut rx).await.unwrap();
    c.publish(
        "garasi/v1/vehicles/bus-2/telemetry",
        QoS::AtLeastOnce,
        false,
        sample(now_ms(), 99.0),
    )
    .await
    .unwrap();
    assert!(
        closed_within(&mut rx, Duration::from_secs(5)).await,
        "forging connection was not closed"
    );
    // A legitimate bus-2 sample afterwards proves ingest is alive and bus-2 got only its own.
    let (c2, mut rx2) = mqtt_client(edge.mqtt, "bus-2", "bus-2", &pw[1]).await;
    connack(&mut rx2).await.unwrap();
    c2.publish(
        "garasi/v1/vehicles/bus-2/telemetry",
        QoS::AtLeastOnce,
        false,
        sample(now_ms(), 12.0),
    )
    .await
    .unwrap();
    let got = eventually(Duration::from_secs(10), || async {
        let s = samples_of(&edge, "bus-2").await;
        (!s.is_empty()).then_some(s)
    })
    .await
    .unwrap();
    assert_eq!(got.len(), 1, "only bus-2's own sample: {got:?}");
    assert_eq!(got[0]["speed_kmh"], 12.0);
    assert!(edge.metric("garasi_mqtt_acl_denied_total").await >= 1.0);
    assert!(
        edge.metric("garasi_mqtt_connects_total{result=\"bad_credentials\"}")
            .await
            >= 3.0
    );

    // Subscribing to another vehicle's topics is refused with a SUBACK failure code
    // (issue 12: the standard's answer; before, the connection was closed), and the
    // connection stays usable.
    let (c3, mut rx3) = mqtt_client(edge.mqtt5, "bus-1b", "bus-1", &pw[0]).await;
    connack(&mut rx3).await.unwrap();
    c3.subscribe("garasi/v1/vehicles/+/telemetry", QoS::AtMostOnce)
        .await
        .unwrap();
    let codes = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match rx3.recv().await {
                Some(Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(a)))) => {
                    return Some(a.return_codes)
                }
                Some(Ok(_)) => continue,
                _ => return None,
            }
        }
    })
    .await
    .ok()
    .flatten();
    assert_eq!(
        codes,
        Some(vec![rumqttc::SubscribeReasonCode::Failure]),
        "wildcard subscription across vehicles was not refused"
    );
    c3.publish(
        "garasi/v1/vehicles/bus-1/status",
        QoS::AtLeastOnce,
        false,
        "{}",
    )
    .await
    .unwrap();
    let acked = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match rx3.recv().await {
                Some(Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_)))) => return true,
                Some(Ok(_)) => continue,
                _ => return false,
            }
        }
    })
    .await
    .unwrap_or(false);
    assert!(acked, "the connection still works after the refusal");
}

/// True if the connection's event loop ends with an error within `t`.
async fn closed_within(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<Result<rumqttc::Event, String>>,
    t: Duration,
) -> bool {
    let deadline = tokio::time::Instant::now() + t;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(Err(_))) | Ok(None) => return true,
            Ok(Some(Ok(_))) => continue,
            Err(_) => return false,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_payloads_are_dead_lettered_counted_and_harmless() {
    let tmp = tempfile::tempdir().unwrap();
    let pw = depot(tmp.path(), &["bus-1"]);
    // A device whose vehicle is not registered.
    let orphan = add_device(tmp.path(), "bus-404");
    let edge = Edge::start(tmp.path(), &[]);
    let (c, mut rx) = mqtt_client(edge.mqtt, "bus-1", "bus-1", &pw[0]).await;
    connack(&mut rx).await.unwrap();
    let (o, mut orx) = mqtt_client(edge.mqtt, "bus-404", "bus-404", &orphan).await;
    connack(&mut orx).await.unwrap();
    let t = "garasi/v1/vehicles/bus-1/telemetry";
    c.publish(t, QoS::AtLeastOnce, false, "this is { not json")
        .await
        .unwrap();
    c.publish(
        t,
        QoS::AtLeastOnce,
        false,
        r#"{"ts": 1700000000000, "signals": {"Vehicle.Speed": "fast"}}"#,
    )
    .await
    .unwrap();
    c.publish(
        t,
        QoS::AtLeastOnce,
        false,
        format!(r#"{{"ts":1700000000000,"pad":"{}"}}"#, "x".repeat(40_000)),
    )
    .await
    .unwrap();
    c.publish(
        "garasi/v1/vehicles/bus-1/horn",
        QoS::AtLeastOnce,
        false,
        "{}",
    )
    .await
    .unwrap();
    o.publish(
        "garasi/v1/vehicles/bus-404/telemetry",
        QoS::AtLeastOnce,
        false,
        sample(now_ms(), 5.0),
    )
    .await
    .unwrap();
    // Good data flows in between.
    c.publish(t, QoS::AtLeastOnce, false, sample(now_ms(), 20.0))
        .await
        .unwrap();

    let reasons = [
        "not_json",
        "schema_violation",
        "oversized",
        "unexpected_topic",
        "unknown_vehicle",
    ];
    let dl = eventually(Duration::from_secs(10), || async {
        let j = edge.get_json("/api/v1/telemetry/dead-letters").await;
        reasons
            .iter()
            .all(|r| j["kept_by_reason"][r].as_i64() == Some(1))
            .then_some(j)
    })
    .await
    .unwrap_or_else(|| panic!("dead letters incomplete"));
    let first = &dl["dead_letters"].as_array().unwrap()[0];
    assert!(
        first["detail"].as_str().unwrap().len() > 5,
        "a reason a human can read: {first}"
    );
    for r in reasons {
        assert_eq!(
            edge.metric(&format!(
                "garasi_telemetry_dead_letters_total{{reason=\"{r}\"}}"
            ))
            .await,
            1.0,
            "{r}"
        );
    }
    assert_eq!(
        samples_of(&edge, "bus-1").await.len(),
        1,
        "the good sample got through"
    );
    let health = reqwest::get(format!("{}/healthz", edge.http))
        .await
        .unwrap();
    assert!(health.status().is_success());
    let ready = reqwest::get(format!("{}/readyz", edge.http)).await.unwrap();
    assert!(ready.status().is_success());
    // The connection that sent garbage is still up (bad payloads are not protocol errors).
    c.publish(t, QoS::AtLeastOnce, false, sample(now_ms() + 5, 21.0))
        .await
        .unwrap();
    eventually(Duration::from_secs(10), || async {
        (samples_of(&edge, "bus-1").await.len() == 2).then_some(())
    })
    .await
    .expect("still ingesting");
}
