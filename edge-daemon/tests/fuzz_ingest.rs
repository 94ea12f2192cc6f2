//! Fuzz harness (issue 11, "Keep it attacked") for MQTT payload ingest: the pure
//! `telemetry::ingest::classify` that every device message goes through (topic, size,
//! JSON, JSON Schema, then the typed item). Arbitrary topics and bytes, and mutated
//! valid telemetry/status/faults payloads, never panic; whatever is refused is a dead
//! letter with a reason and a bounded detail; what is accepted is for the topic's own
//! vehicle and matches the schema's bounds.
//!
//! 256 cases per property in `cargo test`; PROPTEST_CASES for long local runs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::LazyLock;

use bytes::Bytes;
use garasi_edge::modules::telemetry::ingest::{classify, Item, Schemas};
use proptest::prelude::*;

/// The compiled schemas are several MiB; compile them once for every case.
static SCHEMAS: LazyLock<Schemas> = LazyLock::new(|| Schemas::load().unwrap());
const MAX_PAYLOAD: usize = 4096;
const RECEIVED: i64 = 1_700_000_000_000;

/// Cases per property: small for CI, PROPTEST_CASES for long runs.
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

fn topic() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => ("(bus-1|bus-2|\\PC{0,6})", "(telemetry|status|faults|horn|)").prop_map(|(id, kind)| format!("garasi/v1/vehicles/{id}/{kind}")),
        1 => "\\PC{0,40}",
        1 => "(garasi/v1/vehicles/bus-1/telemetry)(/[a-z#+]{0,3}){0,2}",
    ]
}

/// A JSON value that is sometimes a plausible signal value and sometimes anything.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        (-1e6f64..1e6).prop_map(serde_json::Value::from),
        "\\PC{0,12}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            proptest::collection::btree_map("\\PC{0,8}", inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

const SIGNALS: &[&str] = &[
    "Vehicle.Speed",
    "Vehicle.CurrentLocation.Latitude",
    "Vehicle.CurrentLocation.Longitude",
    "Vehicle.Powertrain.TractionBattery.StateOfCharge.Displayed",
    "Vehicle.Powertrain.TractionBattery.Charging.IsCharging",
    "Vehicle.Powertrain.TractionBattery.CurrentPower",
    "Vehicle.TraveledDistance",
    "Vehicle.Body.Lights.IsLowBeamOn",
];

/// Payloads shaped like the schemas' messages, with random values (valid or not).
fn shaped_payload() -> impl Strategy<Value = String> {
    let ts = prop_oneof![946_684_800_000i64..4_102_444_800_000, any::<i64>()];
    prop_oneof![
        (ts.clone(), proptest::collection::vec((0..SIGNALS.len(), json_value()), 0..6)).prop_map(
            |(ts, sigs)| {
                let m: serde_json::Map<_, _> =
                    sigs.into_iter().map(|(i, v)| (SIGNALS[i].to_string(), v)).collect();
                serde_json::json!({ "ts": ts, "signals": m }).to_string()
            }
        ),
        (ts.clone(), "(online|offline|\\PC{0,6})", proptest::option::of("\\PC{0,70}")).prop_map(
            |(ts, state, fw)| serde_json::json!({ "ts": ts, "state": state, "firmware": fw }).to_string()
        ),
        (ts, proptest::collection::vec((any::<i64>(), 0i64..40, json_value()), 0..4)).prop_map(
            |(ts, fs)| {
                let faults: Vec<_> = fs
                    .into_iter()
                    .map(|(spn, fmi, sev)| serde_json::json!({ "spn": spn.rem_euclid(600_000), "fmi": fmi, "active": true, "severity": sev }))
                    .collect();
                serde_json::json!({ "ts": ts, "faults": faults }).to_string()
            }
        ),
    ]
}

fn mutate(bytes: &mut Vec<u8>, muts: &[(u8, usize, u8)]) {
    for &(kind, at, v) in muts {
        let len = bytes.len();
        match kind {
            0 if len > 0 => bytes[at % len] = v,
            1 => {
                // JSON's structural bytes, where a one-byte edit does the most.
                const JSONISH: &[u8] = b"{}[]\",:0-e.\\";
                bytes.insert(at % (len + 1), JSONISH[v as usize % JSONISH.len()]);
            }
            2 if len > 0 => {
                bytes.remove(at % len);
            }
            3 => bytes.truncate(at % (len + 1)),
            _ => {}
        }
    }
}

/// What every outcome must satisfy.
fn check(topic: &str, payload: &[u8]) {
    let payload = Bytes::copy_from_slice(payload);
    let item = classify(topic, &payload, RECEIVED, MAX_PAYLOAD, &SCHEMAS, &|id| {
        id == "bus-1"
    });
    match item {
        Item::Dead { detail, reason, .. } => {
            // The detail is logged and stored: bounded by the payload limit, not the input.
            assert!(
                detail.len() <= MAX_PAYLOAD + 512,
                "{reason:?} detail of {} bytes",
                detail.len()
            );
        }
        Item::Sample(s) => {
            assert_eq!(s.vehicle_id, "bus-1");
            assert!(payload.len() <= MAX_PAYLOAD);
            assert!((946_684_800_000..=4_102_444_800_000).contains(&s.ts_ms));
            if let Some(extra) = &s.extra {
                let v: serde_json::Value = serde_json::from_str(extra).unwrap();
                assert!(v.is_object());
            }
        }
        Item::Status { vehicle_id, .. } | Item::Faults { vehicle_id, .. } => {
            assert_eq!(vehicle_id, "bus-1");
        }
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_topics_and_bytes(t in topic(), payload in proptest::collection::vec(any::<u8>(), 0..300)) {
        check(&t, &payload);
    }

    #[test]
    fn shaped_payloads(t in topic(), p in shaped_payload()) {
        check(&t, p.as_bytes());
    }

    #[test]
    fn mutated_payloads(
        t in topic(),
        p in shaped_payload(),
        muts in proptest::collection::vec((0u8..4, any::<usize>(), any::<u8>()), 1..6),
    ) {
        let mut bytes = p.into_bytes();
        mutate(&mut bytes, &muts);
        check(&t, &bytes);
    }

    /// Deep nesting and long payloads around the size limit.
    #[test]
    fn deep_and_large(depth in 0usize..3000, pad in 0usize..(2 * MAX_PAYLOAD)) {
        let deep = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let p = format!(r#"{{"ts":1700000000000,"signals":{{"Vehicle.Speed":{deep}}},"x":"{}"}}"#, "a".repeat(pad));
        check("garasi/v1/vehicles/bus-1/telemetry", p.as_bytes());
    }
}
