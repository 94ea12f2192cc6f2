//! Fuzz harness (issue 11, "Keep it attacked") for every JSON request body the cloud
//! accepts, through the real router on loopback (the body types are private to
//! `api/`): bodies shaped like each route's type with hostile values (long, control and
//! bidi text, huge and negative numbers, wrong types, unknown fields), arbitrary JSON
//! and raw bytes, with random path segments, mostly as the admin. The cloud never
//! answers 5xx and always answers. A timetable is imported first, so plans reach the
//! publisher.
//!
//! 256 requests in `cargo test`; PROPTEST_CASES for long local runs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::ADMIN;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{json, Value};

/// (method, path template, the body type's fields as `name:type`: s(tring), n(umber),
/// i(nteger), b(ool), r(oles: strings), p(lan routes: objects)).
const ROUTES: &[(&str, &str, &[&str])] = &[
    ("POST", "/api/v1/enroll", &["token:s"]),
    (
        "POST",
        "/api/v1/admin/depots",
        &["name:s", "enrolment_ttl_s:i"],
    ),
    (
        "PUT",
        "/api/v1/admin/depots/{d}/vehicles/{x}",
        &[
            "label:s",
            "plate:s",
            "battery_kwh:n",
            "kwh_per_km:n",
            "vehicle_type:s",
        ],
    ),
    (
        "POST",
        "/api/v1/admin/depots/{d}/devices",
        &["id:s", "kind:s"],
    ),
    (
        "POST",
        "/api/v1/admin/depots/{d}/enrolment-token",
        &["ttl_s:i"],
    ),
    (
        "PUT",
        "/api/v1/admin/depots/{d}/devices/{x}",
        &["disabled:b"],
    ),
    (
        "PUT",
        "/api/v1/admin/depots/{d}/records/{t}/{x}",
        &["status:s", "note:s", "vehicle:s", "count:i", "ok:b"],
    ),
    (
        "PUT",
        "/api/v1/admin/depots/{d}/plan",
        &[
            "timetable:i",
            "routes:p",
            "window_days:i",
            "min_layover_s:i",
            "pull_out_lead_s:i",
            "pull_in_lag_s:i",
            "timezone:s",
        ],
    ),
    (
        "PUT",
        "/api/v1/admin/depots/{d}/people/{x}",
        &[
            "name:s",
            "roles:r",
            "password:s",
            "pin:s",
            "badge:s",
            "disabled:b",
        ],
    ),
];

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("bus-1".to_string()),
        Just("vehicle_status".to_string()),
        Just("Asia/Jakarta".to_string()),
        Just("1234".to_string()),
        "[a-z0-9_-]{0,12}",
        "\\PC{0,24}",
        "[\\x00-\\x1f\u{202a}-\u{202e}\u{2066}-\u{2069}a]{0,8}",
        (100usize..3000).prop_map(|n| "é".repeat(n)),
    ]
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => text().prop_map(Value::from),
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::from),
        1 => any::<i64>().prop_map(Value::from),
        1 => prop_oneof![Just(1e308f64), Just(-0.0), -1e6f64..1e6].prop_map(Value::from),
        1 => Just(json!(18446744073709551615u64)),
    ]
}

/// A value of the field's type, mostly small and plausible, sometimes extreme.
fn typed(ty: &'static str) -> BoxedStrategy<Value> {
    match ty {
        "s" => text().prop_map(Value::from).boxed(),
        "n" => prop_oneof![0f64..1000.0, Just(f64::MAX), Just(-1.0)]
            .prop_map(Value::from)
            .boxed(),
        "i" => prop_oneof![4 => 0i64..400, 1 => any::<i64>(), 1 => Just(1_000_000_000i64)]
            .prop_map(Value::from)
            .boxed(),
        "b" => any::<bool>().prop_map(Value::from).boxed(),
        "r" => proptest::collection::vec(prop_oneof![Just("driver".to_string()), text()], 0..4)
            .prop_map(Value::from)
            .boxed(),
        _ => proptest::collection::vec((text(), proptest::option::of(text())), 0..4)
            .prop_map(|rs| {
                Value::from(
                    rs.into_iter()
                        .map(|(r, v)| json!({"route": r, "vehicle_type": v}))
                        .collect::<Vec<_>>(),
                )
            })
            .boxed(),
    }
}

fn any_json() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            proptest::collection::btree_map("\\PC{0,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Shaped like the route's type (each field now and then left out or of any type,
/// rarely an unknown one), any JSON, or raw bytes.
fn body(fields: &'static [&'static str]) -> impl Strategy<Value = Vec<u8>> {
    let per_field: Vec<_> = fields
        .iter()
        .map(|f| {
            let (name, ty) = f.split_once(':').unwrap();
            (Just(name), typed(ty), scalar(), 0u8..12)
        })
        .collect();
    let shaped = (per_field, 0u8..10, ("\\PC{0,6}", scalar())).prop_map(|(kv, roll, (k, v))| {
        let mut m: serde_json::Map<String, Value> = kv
            .into_iter()
            .filter(|(_, _, _, r)| *r < 11)
            .map(|(name, good, any, r)| (name.to_string(), if r == 0 { any } else { good }))
            .collect();
        if roll == 0 {
            m.insert(k, v);
        }
        serde_json::to_vec(&Value::Object(m)).unwrap()
    });
    prop_oneof![
        6 => shaped,
        2 => any_json().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        1 => proptest::collection::vec(any::<u8>(), 0..64),
        1 => (0usize..20_000).prop_map(|n| format!("{}{}", "[".repeat(n), "]".repeat(n)).into_bytes()),
    ]
}

/// A path segment: the real depot (`{depot}` here, replaced later), a plausible id, or
/// anything, percent-encoded.
fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => Just("{depot}".to_string()),
        2 => Just("bus-1".to_string()),
        1 => Just("vehicle_status".to_string()),
        2 => "\\PC{1,20}",
    ]
    .prop_map(|s| {
        if s == "{depot}" {
            return s;
        }
        s.bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect()
    })
}

#[test]
fn every_json_body_route_survives_hostile_bodies() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cloud = rt.block_on(common::start());
    let (depot, _secret) = rt.block_on(cloud.depot("fuzz"));
    let feed = std::fs::read(format!(
        "{}/tests/fixtures/gtfs/testagency.zip",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let up = rt
        .block_on(
            cloud
                .http
                .post(format!(
                    "{}/api/v1/admin/timetables?name=t&wait=true",
                    cloud.base
                ))
                .bearer_auth(ADMIN)
                .header("content-type", "application/zip")
                .body(feed)
                .send(),
        )
        .unwrap();
    assert!(
        up.status().is_success(),
        "timetable upload: {}",
        up.status()
    );
    // No pooled connections: a connection the server closes after refusing a body
    // unread would otherwise fail the next request with a client-side race.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let _in_runtime = rt.enter();

    let strategy = (0..ROUTES.len())
        .prop_flat_map(|r| (Just(r), body(ROUTES[r].2), segment(), segment(), segment()))
        .prop_flat_map(|c| (Just(c), 0u8..10, 0u8..10));
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    });
    let seen = parking_lot::Mutex::new(std::collections::BTreeMap::<u16, u32>::new());
    let started = std::time::Instant::now();
    let result = runner.run(&strategy, |((r, b, d, t, x), ct_roll, auth_roll)| {
        let (method, template, _) = ROUTES[r];
        let path = template
            .replace("{d}", &d)
            .replace("{t}", &t)
            .replace("{x}", &x)
            .replace("{depot}", &depot);
        let mut req = http
            .request(method.parse().unwrap(), format!("{}{path}", cloud.base))
            .body(b.clone());
        if ct_roll > 0 {
            req = req.header("content-type", "application/json");
        }
        if auth_roll > 0 {
            req = req.bearer_auth(ADMIN);
        }
        let resp = rt
            .block_on(req.send())
            .map_err(|e| TestCaseError::fail(format!("{method} {path}: no answer: {e:?}")))?;
        let status = resp.status();
        *seen.lock().entry(status.as_u16()).or_default() += 1;
        let text = rt.block_on(resp.text()).unwrap_or_default();
        prop_assert!(
            !status.is_server_error(),
            "{method} {path} body {:?}: {status} {text}",
            String::from_utf8_lossy(&b)
        );
        Ok(())
    });
    eprintln!(
        "{} cases in {:?}; statuses {:?}",
        cases(),
        started.elapsed(),
        seen.lock()
    );
    result.unwrap();
}
