//! Helpers of the week-offline test: the week's timetable as a GTFS feed, the cloud's
//! admin calls, the depot node with its yard geofence, and the depot's HTTP API as the
//! dispatcher uses it.

#[path = "../common/zip.rs"]
mod zip_files;

use garasi_edge::config::Settings;
use garasi_edge::node::{self, Node};
use garasi_fleet_tests::{Cloud, ADMIN};

/// The depot yard (the geofence's centre) and its radius in metres.
pub(crate) const YARD: (f64, f64, f64) = (-6.2, 106.8, 300.0);
/// Blocks a day: W0 to W9, pulling out 10 minutes apart from about 05:00.
pub(crate) const BLOCKS: usize = 10;

fn hms(s: i64) -> String {
    format!("{:02}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}

/// A one-route feed (UTC) running every day from `first` to `last` (YYYYMMDD): blocks
/// W0-W9, each four 40-minute trips 50 minutes apart, the first from 05:00 + 10 min x k.
pub(crate) fn week_feed(first: &str, last: &str) -> Vec<u8> {
    let mut trips = String::from("route_id,service_id,trip_id,block_id\n");
    let mut times = String::from("trip_id,arrival_time,departure_time,stop_id,stop_sequence\n");
    for k in 0..BLOCKS as i64 {
        for t in 0..4i64 {
            let id = format!("W{k}T{t}");
            trips.push_str(&format!("R1,ALL,{id},W{k}\n"));
            let start = 5 * 3600 + k * 600 + t * 3000;
            let (a, b) = if t % 2 == 0 {
                ("S1", "S2")
            } else {
                ("S2", "S1")
            };
            times.push_str(&format!("{id},{0},{0},{a},1\n", hms(start)));
            times.push_str(&format!("{id},{0},{0},{b},2\n", hms(start + 2400)));
        }
    }
    let files = [
        ("agency.txt", "agency_name,agency_url,agency_timezone\nTest Transit,https://example.org,UTC\n".to_string()),
        ("stops.txt", "stop_id,stop_name,stop_lat,stop_lon\nS1,Depot Gate,-6.2,106.8\nS2,Terminal Kota,-6.1,106.8\n".to_string()),
        ("routes.txt", "route_id,route_short_name,route_long_name,route_type\nR1,1,Depot - Kota,3\n".to_string()),
        (
            "calendar.txt",
            format!("service_id,monday,tuesday,wednesday,thursday,friday,saturday,sunday,start_date,end_date\nALL,1,1,1,1,1,1,1,{first},{last}\n"),
        ),
        ("trips.txt", trips),
        ("stop_times.txt", times),
    ];
    zip_files::zip_files(&files)
}

/// An admin call to the cloud (`PUT`/`POST` with a JSON body, or a raw body when
/// `raw` is given); asserts success and returns the JSON answer.
pub(crate) async fn admin(
    cloud: &Cloud,
    method: reqwest::Method,
    path: &str,
    body: serde_json::Value,
    raw: Option<Vec<u8>>,
) -> serde_json::Value {
    let rq = cloud
        .https
        .request(method, format!("{}{path}", cloud.admin_base))
        .bearer_auth(ADMIN);
    let rq = match raw {
        Some(bytes) => rq.body(bytes),
        None => rq.json(&body),
    };
    let r = rq.send().await.unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    assert!(status.is_success(), "{path}: {status} {text}");
    serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)
}

/// Starts the depot's node on free ports: its yard geofence, depot time UTC, the
/// outbox quota in MiB (its own quota checks then agree with the test's).
pub(crate) async fn start_depot(dir: &std::path::Path, quota_mib: u64) -> Node {
    let mut settings = Settings {
        http_listen: Some("127.0.0.1:0".into()),
        mqtt_listen: Some("127.0.0.1:0".into()),
        mqtt5_listen: Some("127.0.0.1:0".into()),
        sync_outbox_quota_mb: Some(quota_mib.to_string()),
        ..Default::default()
    };
    settings.dispatch.depot_geofence = Some(format!("{},{},{}", YARD.0, YARD.1, YARD.2));
    settings.dispatch.depot_timezone = Some("UTC".into());
    let cfg = settings.resolve(dir).unwrap();
    let bound = node::bind(&cfg).unwrap();
    Node::start(cfg, bound).await.unwrap()
}

/// The depot's HTTP API as a signed-in person uses it.
pub(crate) struct Edge {
    pub base: String,
    pub token: String,
    pub http: reqwest::Client,
}

impl Edge {
    /// Signs `person` in at the node (a local password check: no cloud needed).
    pub(crate) async fn sign_in(node: &Node, person: &str, password: &str) -> Edge {
        let base = format!("http://{}", node.http_addr);
        let http = reqwest::Client::new();
        let r = http
            .post(format!("{base}/api/v1/session"))
            .json(&serde_json::json!({"person": person, "password": password, "token": true}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "sign-in: {}", r.status());
        let v: serde_json::Value = r.json().await.unwrap();
        let token = v["token"].as_str().unwrap().to_string();
        Edge { base, token, http }
    }

    pub(crate) async fn get(&self, path: &str) -> serde_json::Value {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "GET {path}: {}", r.status());
        r.json().await.unwrap()
    }

    /// A write (`POST`, `PUT`) with a JSON body; asserts success.
    pub(crate) async fn write(
        &self,
        method: reqwest::Method,
        path: &str,
        body: serde_json::Value,
    ) -> serde_json::Value {
        let r = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let v: serde_json::Value = r.json().await.unwrap_or_default();
        assert!(status.is_success(), "{method} {path}: {status} {v}");
        v
    }
}

/// A vehicle's telemetry message at `ts` (ms) from (`lat`, `lon`) with its charge.
pub(crate) fn report(ts: i64, soc: f64, lat: f64, lon: f64) -> serde_json::Value {
    serde_json::json!({"ts": ts, "signals": {
        "Vehicle.Powertrain.TractionBattery.StateOfCharge.Displayed": soc,
        "Vehicle.CurrentLocation.Latitude": lat,
        "Vehicle.CurrentLocation.Longitude": lon,
        "Vehicle.Speed": 0.0,
    }})
}

/// The node's sync status, as the board's banner reads it (no session needed).
pub(crate) async fn sync_status(node: &Node) -> serde_json::Value {
    let url = format!("http://{}/api/v1/sync/status", node.http_addr);
    let r = reqwest::get(url).await.unwrap();
    assert!(r.status().is_success(), "sync status: {}", r.status());
    r.json().await.unwrap()
}
