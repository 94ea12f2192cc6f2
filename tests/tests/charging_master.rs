//! Issue 13: chargers and the tariff are cloud master data. The fleet admin defines a
//! charge point (connectors, power), its password (a device of kind `charger`), a panel
//! meter and a tariff with today as a public holiday, at the cloud; the enrolled depot
//! (a separate process) pulls them: the charge point connects with the cloud's
//! password over OCPP, the panel meter over MQTT, and the day's energy is costed at the
//! holiday band. The cloud refuses a tariff with an uncovered hour, a charger out of
//! range and a device of an unknown kind, with a reason.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod procs;

use std::sync::Arc;
use std::time::Duration;

use garasi_fleet_tests::eventually;
use procs::{CloudProc, EdgeProc};
use serde_json::{json, Value};

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

fn jakarta_date(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .unwrap()
        .to_zoned(jiff::tz::TimeZone::get("Asia/Jakarta").unwrap())
        .date()
        .to_string()
}

async fn refused(cloud: &CloudProc, path: &str, body: Value, why: &str) {
    let r = cloud
        .https
        .put(format!("{}{path}", cloud.base()))
        .bearer_auth(procs::ADMIN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "{path} {body}");
    let text = r.text().await.unwrap();
    assert!(text.contains(why), "{text}");
}

/// Publishes two panel readings an hour apart, `kwh` apart, ending an hour ago.
async fn publish_panel(port: u16, id: &str, password: &str, kwh: f64) {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
    let mut opts = MqttOptions::new(format!("{id}-sim"), "127.0.0.1", port);
    opts.set_credentials(id, password);
    let (client, mut ev) = AsyncClient::new(opts, 10);
    let now_s = now_ms() / 1000;
    for (ts, e) in [(now_s - 7200, 5_000.0), (now_s - 3600, 5_000.0 + kwh)] {
        let reading = json!({"energy_kwh": e, "power_kw": kwh, "ts": ts});
        client
            .publish(
                format!("DATA/PM/{id}"),
                QoS::AtLeastOnce,
                false,
                reading.to_string(),
            )
            .await
            .unwrap();
    }
    let mut acks = 0;
    let done = tokio::time::timeout(Duration::from_secs(20), async {
        while acks < 2 {
            match ev.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => acks += 1,
                Ok(Event::Incoming(Packet::ConnAck(c))) => {
                    assert_eq!(
                        c.code,
                        rumqttc::ConnectReturnCode::Success,
                        "the cloud's meter password works"
                    )
                }
                Ok(_) => {}
                Err(e) => panic!("meter connection: {e}"),
            }
        }
    })
    .await;
    assert!(done.is_ok(), "both readings acknowledged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chargers_meters_and_the_tariff_come_from_the_cloud() {
    let dir = tempfile::tempdir().unwrap();
    let cloud = CloudProc::start(&dir.path().join("cloud"));
    let (depot, token) = cloud.add_depot("Depot Cawang");
    let mut edge = EdgeProc::enroll_and_start(
        &dir.path().join("edge"),
        &cloud.base(),
        &token,
        &cloud.ca_pem,
    );
    let admin = |p: &str| format!("/api/v1/admin/depots/{depot}/{p}");

    refused(
        &cloud,
        &admin("chargers/CP-7"),
        json!({"connectors": 0, "max_power_kw": 120}),
        "1-16 connectors",
    )
    .await;
    refused(
        &cloud,
        &admin("chargers/CP-7"),
        json!({"connectors": 2, "max_power_kw": 5000}),
        "max_power_kw",
    )
    .await;
    let gap = json!({"bands": [{"name": "WD", "days": "weekday", "from_hour": 0, "to_hour": 24, "rate_sen_per_kwh": 1}]});
    refused(
        &cloud,
        &admin("tariff"),
        gap,
        "no band covers these hours on weekends",
    )
    .await;
    let bad_day = json!({"bands": [{"name": "ALL", "days": "all", "from_hour": 0, "to_hour": 24, "rate_sen_per_kwh": 1}], "holidays": ["25/12/2026"]});
    refused(&cloud, &admin("tariff"), bad_day, "YYYY-MM-DD").await;
    let loose_day = json!({"bands": [{"name": "ALL", "days": "all", "from_hour": 0, "to_hour": 24, "rate_sen_per_kwh": 1}], "holidays": ["20261225"]});
    refused(&cloud, &admin("tariff"), loose_day, "YYYY-MM-DD").await;

    cloud
        .admin_put(
            &admin("chargers/CP-7"),
            json!({"connectors": 2, "max_power_kw": 120}),
        )
        .await;
    let cp = cloud
        .admin_post(&admin("devices"), json!({"id": "CP-7", "kind": "charger"}))
        .await;
    let cp_password = cp["password"].as_str().unwrap().to_string();
    // The charger's id cannot be made a bus's (or anything else's) login.
    let r = cloud
        .https
        .post(format!("{}{}", cloud.base(), admin("devices")))
        .bearer_auth(procs::ADMIN)
        .json(&json!({"id": "CP-7", "kind": "vehicle"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    assert!(r.text().await.unwrap().contains("already a charger"));
    let pm = cloud
        .admin_post(&admin("devices"), json!({"id": "PM-1", "kind": "meter"}))
        .await;
    let pm_password = pm["password"].as_str().unwrap().to_string();
    // Both hours of the readings are public holidays: 90 Rupiah a kWh then.
    let now = now_ms();
    let holidays = vec![jakarta_date(now - 7_200_000), jakarta_date(now - 3_600_000)];
    let tariff = json!({"timezone": "Asia/Jakarta", "holidays": holidays, "bands": [
        {"name": "LIBUR", "days": "holiday", "from_hour": 0, "to_hour": 24, "rate_sen_per_kwh": 9_000},
        {"name": "WBP", "days": "all", "from_hour": 17, "to_hour": 22, "rate_sen_per_kwh": 155_367},
        {"name": "LWBP", "days": "all", "from_hour": 0, "to_hour": 24, "rate_sen_per_kwh": 103_578}]});
    cloud.admin_put(&admin("tariff"), tariff).await;

    edge.sign_in(&cloud, &depot, "disp-1").await;
    eventually(
        "CP-7 at the depot with the cloud's connectors and power",
        || async {
            let v = edge.get("/api/v1/charging/chargers").await;
            v.is_some_and(|v| {
                v["chargers"].as_array().unwrap().iter().any(|c| {
                    c["charger"]["id"] == "CP-7"
                        && c["charger"]["max_power_w"] == 120_000
                        && c["charger"]["connectors"] == 2
                })
            })
        },
    )
    .await;

    // The charge point connects with the password the cloud issued.
    let cancel = tokio_util::sync::CancellationToken::new();
    let tracker = tokio_util::task::TaskTracker::new();
    let http: std::net::SocketAddr = edge.http().trim_start_matches("http://").parse().unwrap();
    let sim = garasi_edge::sim::charger::SimCharger {
        id: "CP-7".into(),
        password: cp_password,
        connectors: 2,
        connector_max_w: 120_000.0,
        plugs: vec![],
    };
    let plugged = Arc::default();
    garasi_edge::sim::charger::spawn_chargers(
        http,
        vec![sim],
        Duration::from_secs(10),
        plugged,
        cancel.clone(),
        &tracker,
    );
    eventually(
        "CP-7 online over OCPP with the cloud's password",
        || async {
            let v = edge.get("/api/v1/charging/chargers").await;
            v.is_some_and(|v| {
                v["chargers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|c| c["charger"]["id"] == "CP-7" && c["online"] == true)
            })
        },
    )
    .await;
    cancel.cancel();

    // The panel meter, with the cloud's password: 10 kWh on a holiday at Rp 90,00/kWh.
    publish_panel(edge.mqtt_port, "PM-1", &pm_password, 10.0).await;
    let day = jakarta_date(now - 5_400_000);
    let mut last = Value::Null;
    for _ in 0..100 {
        last = edge
            .get(&format!("/api/v1/charging/energy?date={day}"))
            .await
            .unwrap_or(Value::Null);
        if last["wh"] == 10_000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(last["wh"], 10_000, "{last}");
    let panel = &last["panels"][0];
    assert_eq!(panel["bands"][0]["band"], "LIBUR", "{last}");
    // 10 kWh x 9,000 sen = 90,000 sen = Rp 900,00.
    assert_eq!(last["cost_sen"], 90_000, "{last}");
    assert_eq!(last["cost"], "Rp 900,00");
    edge.stop();
}
