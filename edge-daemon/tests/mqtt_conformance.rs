//! MQTT conformance against outside clients (issue 12): the Eclipse Paho Python client,
//! on 3.1.1 and 5, against the real `garasi-edge` and, in the same test, against the
//! machine's Mosquitto (127.0.0.1:1883) where it runs, which must behave the same.
//! Paho comes from the venv `.ci/run` makes (`GARASI_TEST_PYTHON`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::*;

/// A Python with paho-mqtt (`GARASI_TEST_PYTHON`); None (skipped) outside CI.
fn paho_python() -> Option<String> {
    let py = std::env::var("GARASI_TEST_PYTHON").ok();
    let ok = py.as_ref().is_some_and(|p| {
        Command::new(p)
            .args(["-c", "import paho.mqtt.client"])
            .status()
            .is_ok_and(|s| s.success())
    });
    if !ok {
        if std::env::var_os("CI").is_some() {
            panic!("GARASI_TEST_PYTHON with paho-mqtt is required in CI (.ci/run makes it)");
        }
        eprintln!("SKIPPED: set GARASI_TEST_PYTHON to a python with paho-mqtt (run .ci/run)");
        return None;
    }
    py
}

/// The CONNACK reason code Paho got (None: no CONNACK).
fn paho_connack(
    py: &str,
    port: u16,
    version: &str,
    keepalive: u16,
    login: Option<(&str, &str)>,
) -> Option<u64> {
    paho_connack_as(py, port, version, keepalive, login, "conformance")
}

/// Like `paho_connack`, with this MQTT client id.
fn paho_connack_as(
    py: &str,
    port: u16,
    version: &str,
    keepalive: u16,
    login: Option<(&str, &str)>,
    client_id: &str,
) -> Option<u64> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mqtt_clients/connect.py");
    let mut cmd = Command::new(py);
    cmd.arg(script).args([
        "127.0.0.1",
        &port.to_string(),
        version,
        &keepalive.to_string(),
    ]);
    let (u, p) = login.unwrap_or(("", ""));
    cmd.args([u, p, client_id]);
    let out = cmd.output().expect("run python");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
    v["rc"].as_u64()
}

fn mosquitto_runs() -> bool {
    std::net::TcpStream::connect("127.0.0.1:1883").is_ok()
}

/// Keepalive 0 means "no keepalive" in MQTT: the gate answered it with no CONNACK (the
/// broker behind it refuses 0) while logging and counting the device as connected. Now
/// accepted on 3.1.1 and 5, like Mosquitto, and only connections the broker accepted are
/// counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_zero_is_accepted_and_only_real_connections_are_counted() {
    let Some(py) = paho_python() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let pw = depot(tmp.path(), &["bus-1"]).remove(0);
    let edge = Edge::start(tmp.path(), &[]);
    let ours = [("3.1.1", edge.mqtt.port()), ("5", edge.mqtt5.port())];
    for (version, port) in ours {
        let rc = paho_connack(&py, port, version, 0, Some(("bus-1", &pw)));
        println!("garasi-edge, MQTT {version}, keepalive 0: CONNACK {rc:?}");
        assert_eq!(rc, Some(0), "MQTT {version}");
    }
    if mosquitto_runs() {
        for version in ["3.1.1", "5"] {
            let rc = paho_connack(&py, 1883, version, 0, None);
            println!("Mosquitto, MQTT {version}, keepalive 0: CONNACK {rc:?}");
            assert_eq!(
                rc,
                Some(0),
                "Mosquitto behaves differently on MQTT {version}"
            );
        }
    } else {
        eprintln!("Mosquitto is not running on 1883: compared with the standard only");
    }
    let accepted = edge
        .metric("garasi_mqtt_connects_total{result=\"accepted\"}")
        .await;
    let logged = edge.log().matches("device connected").count();
    assert_eq!(
        (accepted, logged),
        (2.0, 2),
        "one count and one line per real connection"
    );
}

/// The MQTT client id is free (any UTF-8: spaces, slashes, wildcards, none at all); only
/// the username is a device id. Spaces, `/ # + $` and non-ASCII were tried: the broker
/// behind the gate refused `/ # + $` with "server unavailable" (136) where Mosquitto
/// accepts them; now the same on both, 3.1.1 and 5.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_client_id_is_accepted_like_mosquitto() {
    let Some(py) = paho_python() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let pw = depot(tmp.path(), &["bus-1"]).remove(0);
    let edge = Edge::start(tmp.path(), &[]);
    let ids = ["bus 1 unit A", "bus/1#+$", "ünï ✓", "x.y.z", "50%", ""];
    for (version, port) in [("3.1.1", edge.mqtt.port()), ("5", edge.mqtt5.port())] {
        for id in ids {
            let ours = paho_connack_as(&py, port, version, 30, Some(("bus-1", &pw)), id);
            let theirs = mosquitto_runs()
                .then(|| paho_connack_as(&py, 1883, version, 30, None, id))
                .flatten();
            println!(
                "MQTT {version}, client id {id:?}: garasi-edge {ours:?}, Mosquitto {theirs:?}"
            );
            assert_eq!(ours, Some(0), "MQTT {version}, client id {id:?}");
            if mosquitto_runs() {
                assert_eq!(theirs, ours, "Mosquitto differs on {id:?}");
            }
        }
    }
}
