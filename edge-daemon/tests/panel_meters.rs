//! Issue 13, acceptance 4: energy panel meters in the seed's format (`DATA/PM/<panel>`,
//! JSON with voltage, current, power_kw, energy_kwh, pf, frequency, status, ts),
//! published by the real `mosquitto_pub` as an authenticated meter device, give the
//! day's kWh and Rupiah cost by time-of-use band; the numbers are checked by hand. A
//! meter cannot publish as another panel, a vehicle cannot publish as a meter, and a
//! bad reading is a dead letter.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::json;

fn add(dir: &std::path::Path, id: &str, kind: &str) -> String {
    let d = dir.to_str().unwrap();
    let out = cli(&["device", "add", "--data-dir", d, "--id", id, "--kind", kind]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    text.lines()
        .find(|l| l.contains("password"))
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap()
        .to_string()
}

/// mosquitto_pub at QoS 1 on MQTT 5; whether the broker took it (a PUBACK with a
/// failure code is printed as a warning by mosquitto_pub, whatever its exit status).
fn publish(port: u16, user: &str, pass: &str, topic: &str, payload: &str) -> bool {
    let out = Command::new("mosquitto_pub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-V",
            "mqttv5",
            "-q",
            "1",
        ])
        .args([
            "-i",
            &format!("{user}-pub"),
            "-u",
            user,
            "-P",
            pass,
            "-t",
            topic,
            "-m",
            payload,
        ])
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.status.success() && !said.to_lowercase().contains("not authori") && !said.contains("failed")
}

/// Epoch seconds of a Jakarta wall-clock time on Friday 2026-11-27.
fn jakarta(h: i8, m: i8) -> i64 {
    let tz = jiff::tz::TimeZone::get("Asia/Jakarta").unwrap();
    jiff::civil::date(2026, 11, 27)
        .at(h, m, 0, 0)
        .to_zoned(tz)
        .unwrap()
        .timestamp()
        .as_second()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_format_readings_give_the_days_kwh_and_rupiah_by_band() {
    if !require_tool("mosquitto_pub") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    init(dir.path());
    let p1 = add(dir.path(), "P-1", "meter");
    let _p2 = add(dir.path(), "P-2", "meter");
    let bus = add(dir.path(), "bus-1", "vehicle");
    let edge = Edge::start(dir.path(), &[]);
    let port = edge.mqtt5.port();
    // The hand-checked day (default tariff: WBP 17-22 at Rp 1.553,67/kWh, LWBP the
    // rest at Rp 1.035,78/kWh): registers at 15, 16, 17, 18, 22 and 23 o'clock.
    for (h, kwh) in [
        (15, 100.0),
        (16, 112.5),
        (17, 120.0),
        (18, 150.0),
        (22, 200.0),
        (23, 201.0),
    ] {
        let reading = json!({"voltage": 231.0, "current": 40.0, "power_kw": 27.5, "energy_kwh": kwh,
                             "pf": 0.98, "frequency": 50.0, "status": "ok", "ts": jakarta(h, 0)});
        assert!(
            publish(port, "P-1", &p1, "DATA/PM/P-1", &reading.to_string()),
            "reading at {h}:00"
        );
    }
    // P-1 as P-2, and a bus as a meter: refused by the gate (PUBACK 0x87 on MQTT 5).
    let forged = json!({"energy_kwh": 999999.0, "ts": jakarta(12, 0)}).to_string();
    assert!(!publish(port, "P-1", &p1, "DATA/PM/P-2", &forged));
    assert!(!publish(port, "bus-1", &bus, "DATA/PM/P-1", &forged));
    // A bad reading: a dead letter, the rest unaffected.
    assert!(publish(
        port,
        "P-1",
        &p1,
        "DATA/PM/P-1",
        r#"{"energy_kwh": "lots", "ts": 1764565200}"#
    ));

    let day = eventually(Duration::from_secs(10), || async {
        let v = edge
            .get_json("/api/v1/charging/energy?date=2026-11-27")
            .await;
        (v["wh"] == 101_000).then_some(v)
    })
    .await
    .unwrap_or_else(|| panic!("{}", edge.log()));
    println!("the day at the edge: {day}");
    let panels = day["panels"].as_array().unwrap();
    assert_eq!(panels.len(), 1, "{day}");
    let p = &panels[0];
    assert_eq!(p["panel"], "P-1");
    let band = |n: &str| {
        p["bands"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["band"] == n)
            .unwrap()
            .clone()
    };
    // By hand: intervals by their midpoints. 15:30 and 16:30 are LWBP (12.5 + 7.5 kWh),
    // 17:30 and 20:00 WBP (30 + 50), 22:30 LWBP (1): LWBP 21 kWh, WBP 80 kWh.
    // 21 x 1.035,78 = Rp 21.751,38; 80 x 1.553,67 = Rp 124.293,60; Rp 146.044,98.
    assert_eq!(
        (
            band("LWBP")["wh"].as_i64(),
            band("LWBP")["cost_sen"].as_i64()
        ),
        (Some(21_000), Some(2_175_138))
    );
    assert_eq!(
        (band("WBP")["wh"].as_i64(), band("WBP")["cost_sen"].as_i64()),
        (Some(80_000), Some(12_429_360))
    );
    assert_eq!(
        (p["cost_sen"].as_i64(), p["cost"].as_str()),
        (Some(14_604_498), Some("Rp 146.044,98"))
    );
    assert_eq!(p["online"], false, "its newest reading is days old");
    // The day before has nothing; the month has it on the 27th only.
    assert_eq!(
        edge.get_json("/api/v1/charging/energy?date=2026-11-26")
            .await["wh"],
        0
    );
    let month = edge
        .get_json("/api/v1/charging/energy/month?month=2026-11")
        .await;
    let days = month["days"].as_array().unwrap();
    assert_eq!(days.len(), 30);
    assert_eq!(
        (days[26]["date"].as_str(), days[26]["wh"].as_i64()),
        (Some("2026-11-27"), Some(101_000))
    );
    assert_eq!(month["cost_sen"], 14_604_498);
    // A reading now: online.
    let now = json!({"energy_kwh": 202.0, "power_kw": 12.0, "ts": now_ms() / 1000}).to_string();
    assert!(publish(port, "P-1", &p1, "DATA/PM/P-1", &now));
    let online = eventually(Duration::from_secs(10), || async {
        let v = edge.get_json("/api/v1/charging/energy").await;
        (v["panels"][0]["online"] == true).then_some(v)
    })
    .await;
    assert!(online.is_some());
    assert_eq!(
        edge.metric("garasi_charging_panel_messages_total{kind=\"schema\"}")
            .await,
        1.0
    );
    assert_eq!(
        edge.metric("garasi_charging_panel_messages_total{kind=\"reading\"}")
            .await,
        7.0
    );
}
