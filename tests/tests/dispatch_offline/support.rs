//! Helpers of the depot-day test: a one-route GTFS feed made on the fly, MQTT
//! publishing as a device (`common/mqtt.rs`), day-view lookups, edge HTTP calls with a
//! session, and a child process reaped when the test ends.

#[path = "../common/zip.rs"]
mod zip_files;

use std::time::Duration;

use super::procs::EdgeProc;

#[path = "../common/mqtt.rs"]
mod mqtt;
// tods_runs.rs shares this file and publishes nothing.
#[allow(unused_imports)]
pub(crate) use mqtt::publish;

pub(crate) const DEPOT: (f64, f64) = (-6.2, 106.8);

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

pub(crate) fn hms(s: i64) -> String {
    format!("{:02}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}

/// A one-route GTFS feed (agency time zone UTC) running every day this month: block
/// NOW (2 trips) and block BIG (6 trips), starting 20 and 30 minutes from now (as GTFS
/// times of today's service day, past 24:00 if need be).
pub(crate) fn feed_zip() -> Vec<u8> {
    let now_s = (now_ms() / 1000) % 86_400;
    let today = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date();
    let start = today.checked_sub(jiff::Span::new().days(1)).unwrap();
    let end = today.checked_add(jiff::Span::new().days(30)).unwrap();
    let mut trips = String::from("route_id,service_id,trip_id,block_id\n");
    let mut times = String::from("trip_id,arrival_time,departure_time,stop_id,stop_sequence\n");
    let mut add = |block: &str, first: i64, n: i64| {
        for k in 0..n {
            let id = format!("{block}{k}");
            trips.push_str(&format!("R1,ALL,{id},{block}\n"));
            let t = first + k * 50 * 60;
            let (a, b) = if k % 2 == 0 {
                ("S1", "S2")
            } else {
                ("S2", "S1")
            };
            times.push_str(&format!("{id},{},{},{a},1\n", hms(t), hms(t)));
            times.push_str(&format!("{id},{},{},{b},2\n", hms(t + 2400), hms(t + 2400)));
        }
    };
    add("NOW", now_s + 20 * 60, 2);
    add("BIG", now_s + 30 * 60, 6);
    let files = [
        ("agency.txt", "agency_name,agency_url,agency_timezone\nTest Transit,https://example.org,UTC\n".to_string()),
        ("stops.txt", "stop_id,stop_name,stop_lat,stop_lon\nS1,Depot Gate,-6.2,106.8\nS2,Terminal Kota,-6.1,106.8\n".to_string()),
        ("routes.txt", "route_id,route_short_name,route_long_name,route_type\nR1,1,Depot - Kota,3\n".to_string()),
        (
            "calendar.txt",
            format!(
                "service_id,monday,tuesday,wednesday,thursday,friday,saturday,sunday,start_date,end_date\nALL,1,1,1,1,1,1,1,{},{}\n",
                start.strftime("%Y%m%d"),
                end.strftime("%Y%m%d")
            ),
        ),
        ("trips.txt", trips),
        ("stop_times.txt", times),
    ];
    zip_files::zip_files(&files)
}

/// One block's row of a day view.
pub(crate) fn block(day: &serde_json::Value, id: &str) -> serde_json::Value {
    day["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["id"] == id)
        .unwrap_or_else(|| panic!("block {id} not in {day}"))
        .clone()
}

/// A record's fields without the unset ones (the edge's typed view lists every field,
/// the cloud's only those ever written).
pub(crate) fn non_null(v: &serde_json::Value) -> serde_json::Value {
    match v.as_object() {
        Some(o) => o
            .iter()
            .filter(|(_, x)| !x.is_null())
            .map(|(k, x)| (k.clone(), x.clone()))
            .collect(),
        None => v.clone(),
    }
}

/// Polls `f` for up to 20 s.
pub(crate) async fn eventually_ok<F, Fut>(mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

pub(crate) fn sample(ts: i64, soc: f64, lat: f64, lon: f64) -> serde_json::Value {
    serde_json::json!({"ts": ts, "signals": {
        "Vehicle.Powertrain.TractionBattery.StateOfCharge.Displayed": soc,
        "Vehicle.CurrentLocation.Latitude": lat,
        "Vehicle.CurrentLocation.Longitude": lon,
        "Vehicle.Speed": 0.0,
    }})
}

/// Edge HTTP with an optional session token.
pub(crate) async fn call(
    edge: &EdgeProc,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value, String) {
    let writes = method == reqwest::Method::POST || method == reqwest::Method::PUT;
    let mut rq = reqwest::Client::new().request(method, format!("{}{path}", edge.http()));
    if let Some(t) = token {
        rq = rq.bearer_auth(t);
    }
    match body {
        Some(b) => rq = rq.json(&b),
        // The node takes POST and PUT only as JSON, even without fields.
        None if writes => rq = rq.json(&serde_json::json!({})),
        None => {}
    }
    let r = rq.send().await.unwrap();
    let status = r.status().as_u16();
    let cookie = r
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let json = r.json().await.unwrap_or(serde_json::Value::Null);
    (status, json, cookie)
}

/// Signs `person` in at the depot once sync has brought them there (within 60 s) and
/// keeps the session token in `edge`.
pub(crate) async fn sign_in_when_synced(edge: &mut EdgeProc, person: &str, password: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while edge.token.is_none() {
        let body = serde_json::json!({"person": person, "password": password, "token": true});
        let (st, login, _) = call(
            edge,
            reqwest::Method::POST,
            "/api/v1/session",
            None,
            Some(body),
        )
        .await;
        if st == 200 {
            edge.token = login["token"].as_str().map(String::from);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{person} never reached the depot"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A child process killed and reaped when the test ends, also when it fails.
pub(crate) struct Killed(pub(crate) std::process::Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
