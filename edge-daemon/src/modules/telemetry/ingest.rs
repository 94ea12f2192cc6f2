//! Ingest: reads the broker's local link, classifies each message by topic, validates its
//! payload against the JSON Schemas in `schemas/mqtt/` and hands typed items (or dead
//! letters with a reason) to the writer. Runs on its own thread: the link API is blocking.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use jsonschema::Validator;
use rumqttd::local::{LinkError, LinkRx};
use rumqttd::Notification;
use serde_json::Value;

use super::metrics::TelemetryMetrics;
use crate::modules::fleet::service::FleetApi;

pub const TELEMETRY_SCHEMA: &str = include_str!("../../../../schemas/mqtt/telemetry.schema.json");
pub const STATUS_SCHEMA: &str = include_str!("../../../../schemas/mqtt/status.schema.json");
pub const FAULTS_SCHEMA: &str = include_str!("../../../../schemas/mqtt/faults.schema.json");

/// Everything the ingest link subscribes to.
pub const FILTER: &str = "garasi/v1/vehicles/#";

/// Why a message was dead-lettered. Values are metric labels and API strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    NotJson,
    Schema,
    UnknownVehicle,
    Oversized,
    UnexpectedTopic,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NotJson => "not_json",
            Reason::Schema => "schema_violation",
            Reason::UnknownVehicle => "unknown_vehicle",
            Reason::Oversized => "oversized",
            Reason::UnexpectedTopic => "unexpected_topic",
        }
    }
}

/// A validated sample: the edge's one sample type.
pub type Sample = crate::bus::TelemetryUpdate;

#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    pub spn: i64,
    pub fmi: i64,
    pub active: bool,
    pub occurrences: Option<i64>,
    pub severity: Option<String>,
    pub description: Option<String>,
}

#[derive(Debug, Clone)]
pub enum Item {
    Sample(Sample),
    Status {
        vehicle_id: String,
        online: bool,
        ts_ms: i64,
        firmware: Option<String>,
    },
    Faults {
        vehicle_id: String,
        ts_ms: i64,
        faults: Vec<Fault>,
    },
    Dead {
        topic: String,
        reason: Reason,
        detail: String,
        payload: Bytes,
        received_ms: i64,
    },
}

/// Compiled schemas; the files are the single source of truth.
pub struct Schemas {
    telemetry: Validator,
    status: Validator,
    faults: Validator,
}

impl Schemas {
    pub fn load() -> Result<Self, String> {
        // The files declare draft-07: jsonschema builds draft 2020-12 validators with
        // ~12 MiB of meta-schema state each (measured), draft-07 with ~5 MiB once.
        let compile = |name: &str, text: &str| -> Result<Validator, String> {
            let v: Value = serde_json::from_str(text).map_err(|e| format!("{name}: {e}"))?;
            jsonschema::validator_for(&v).map_err(|e| format!("{name}: {e}"))
        };
        Ok(Schemas {
            telemetry: compile("telemetry.schema.json", TELEMETRY_SCHEMA)?,
            status: compile("status.schema.json", STATUS_SCHEMA)?,
            faults: compile("faults.schema.json", FAULTS_SCHEMA)?,
        })
    }
}

/// Pure classification of one message; the unit tests drive this directly.
pub fn classify(
    topic: &str,
    payload: &Bytes,
    received_ms: i64,
    max_payload: usize,
    schemas: &Schemas,
    is_known: &dyn Fn(&str) -> bool,
) -> Item {
    let dead = |reason: Reason, detail: String| Item::Dead {
        topic: topic.to_string(),
        reason,
        detail,
        payload: payload.clone(),
        received_ms,
    };
    let parts: Vec<&str> = topic.split('/').collect();
    let (vehicle_id, kind) = match parts.as_slice() {
        ["garasi", "v1", "vehicles", id, kind] if !id.is_empty() => (*id, *kind),
        _ => {
            return dead(
                Reason::UnexpectedTopic,
                "expected garasi/v1/vehicles/{id}/{telemetry|status|faults}".into(),
            )
        }
    };
    let validator = match kind {
        "telemetry" => &schemas.telemetry,
        "status" => &schemas.status,
        "faults" => &schemas.faults,
        _ => {
            return dead(
                Reason::UnexpectedTopic,
                format!("unknown message kind {kind:?}: expected telemetry, status or faults"),
            )
        }
    };
    if payload.len() > max_payload {
        return dead(
            Reason::Oversized,
            format!("{} bytes, limit {max_payload}", payload.len()),
        );
    }
    let mut v: Value = match serde_json::from_slice(payload) {
        Ok(v) => v,
        Err(e) => return dead(Reason::NotJson, e.to_string()),
    };
    // `is_valid` is the fast path; the error walk runs only for bad payloads.
    if !validator.is_valid(&v) {
        let detail = validator
            .iter_errors(&v)
            .next()
            .map(|err| format!("{} at {}", err, err.instance_path))
            .unwrap_or_else(|| "does not match the schema".into());
        return dead(Reason::Schema, detail);
    }
    if !is_known(vehicle_id) {
        return dead(Reason::UnknownVehicle, format!("vehicle {vehicle_id} is not in the registry: add it with `garasi-edge vehicle add`"));
    }
    let vehicle_id = vehicle_id.to_string();
    let ts = |v: &Value| v.get("ts").and_then(Value::as_i64);
    match kind {
        "telemetry" => {
            let ts_ms = ts(&v).unwrap_or(received_ms);
            let mut signals = match v.get_mut("signals").map(Value::take) {
                Some(Value::Object(m)) => m,
                _ => serde_json::Map::new(),
            };
            let mut num = |k: &str| signals.remove(k).and_then(|x| x.as_f64());
            let lat = num("Vehicle.CurrentLocation.Latitude");
            let lon = num("Vehicle.CurrentLocation.Longitude");
            let heading = num("Vehicle.CurrentLocation.Heading");
            let speed_kmh = num("Vehicle.Speed");
            let soc_pct = num("Vehicle.Powertrain.TractionBattery.StateOfCharge.Displayed");
            let odometer_km = num("Vehicle.TraveledDistance");
            let battery_temp_c = num("Vehicle.Powertrain.TractionBattery.Temperature.Average");
            let power_w = num("Vehicle.Powertrain.TractionBattery.CurrentPower");
            let charging = signals
                .remove("Vehicle.Powertrain.TractionBattery.Charging.IsCharging")
                .and_then(|x| x.as_bool());
            let extra = (!signals.is_empty()).then(|| Value::Object(signals).to_string());
            Item::Sample(Sample {
                vehicle_id,
                ts_ms,
                received_ms,
                lat,
                lon,
                heading,
                speed_kmh,
                soc_pct,
                odometer_km,
                battery_temp_c,
                power_w,
                charging,
                extra,
            })
        }
        "status" => Item::Status {
            vehicle_id,
            online: v.get("state").and_then(Value::as_str) == Some("online"),
            ts_ms: ts(&v).unwrap_or(received_ms),
            firmware: v
                .get("firmware")
                .and_then(Value::as_str)
                .map(str::to_string),
        },
        _ => {
            let faults = v
                .get("faults")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .map(|f| Fault {
                            spn: f.get("spn").and_then(Value::as_i64).unwrap_or(0),
                            fmi: f.get("fmi").and_then(Value::as_i64).unwrap_or(0),
                            active: f.get("active").and_then(Value::as_bool).unwrap_or(false),
                            occurrences: f.get("occurrences").and_then(Value::as_i64),
                            severity: f
                                .get("severity")
                                .and_then(Value::as_str)
                                .map(str::to_string),
                            description: f
                                .get("description")
                                .and_then(Value::as_str)
                                .map(str::to_string),
                        })
                        .collect()
                })
                .unwrap_or_default();
            Item::Faults {
                vehicle_id,
                ts_ms: ts(&v).unwrap_or(received_ms),
                faults,
            }
        }
    }
}

/// The ingest loop. Returns when `draining` is set and the link has been quiet for a
/// moment (everything the router held for us is handed over), or the link closes.
pub struct Ingest {
    pub schemas: Schemas,
    pub fleet: Arc<FleetApi>,
    pub metrics: Arc<TelemetryMetrics>,
    pub max_payload: usize,
    pub draining: Arc<AtomicBool>,
    pub backpressure: Arc<crate::broker::Backpressure>,
}

pub fn run(mut link: LinkRx, out: SyncSender<Item>, ctx: Ingest) {
    let Ingest {
        schemas,
        fleet,
        metrics,
        max_payload,
        draining,
        backpressure,
    } = ctx;
    let is_known = |id: &str| fleet.is_known(id);
    // Resolved once: a labelled lookup per message is a hash and a lock.
    let by_kind = |k: &str| metrics.messages_total.with_label_values(&[k]);
    let (count_telemetry, count_status, count_faults, count_dead) = (
        by_kind("telemetry"),
        by_kind("status"),
        by_kind("faults"),
        by_kind("dead_letter"),
    );
    let mut quiet_since: Option<Instant> = None;
    loop {
        let deadline = Instant::now() + Duration::from_millis(100);
        match link.recv_deadline(deadline) {
            Ok(Some(Notification::Forward(fwd))) => {
                quiet_since = None;
                let topic = String::from_utf8_lossy(&fwd.publish.topic);
                let item = classify(
                    &topic,
                    &fwd.publish.payload,
                    crate::util::now_ms(),
                    max_payload,
                    &schemas,
                    &is_known,
                );
                match &item {
                    Item::Sample(_) => count_telemetry.inc(),
                    Item::Status { .. } => count_status.inc(),
                    Item::Faults { .. } => count_faults.inc(),
                    Item::Dead { reason, .. } => {
                        metrics
                            .dead_letters_total
                            .with_label_values(&[reason.as_str()])
                            .inc();
                        count_dead.inc();
                    }
                }
                metrics.queue_depth.inc();
                if out.send(item).is_err() {
                    tracing::error!("telemetry writer is gone; ingest stops");
                    return;
                }
                // Counted only once the writer has taken it, so a slow writer also
                // holds back the gate.
                backpressure.ingested(1);
            }
            // The router parks a link whose buffer it filled; it must be told we are
            // ready again or it stops sending (silently).
            Ok(Some(Notification::Unschedule)) => {
                if link.ready().is_err() {
                    return;
                }
            }
            Ok(Some(_)) | Ok(None) => {}
            Err(LinkError::RecvTimeout(_)) => {
                if draining.load(Ordering::SeqCst) {
                    let since = *quiet_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= Duration::from_millis(300) {
                        return;
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "broker link closed; ingest stops");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn go(topic: &str, payload: &str) -> Item {
        let schemas = Schemas::load().unwrap();
        classify(
            topic,
            &Bytes::from(payload.to_string()),
            1_700_000_000_000,
            1024,
            &schemas,
            &|id| id == "bus-1",
        )
    }

    fn reason(i: Item) -> &'static str {
        match i {
            Item::Dead { reason, .. } => reason.as_str(),
            other => panic!("expected a dead letter, got {other:?}"),
        }
    }

    #[test]
    fn good_sample_maps_vss_signals() {
        let i = go(
            "garasi/v1/vehicles/bus-1/telemetry",
            r#"{"ts":1700000000500,"signals":{"Vehicle.Speed":31.5,"Vehicle.Powertrain.TractionBattery.StateOfCharge.Displayed":80,"Vehicle.Body.Lights.IsLowBeamOn":true}}"#,
        );
        let Item::Sample(s) = i else { panic!("{i:?}") };
        assert_eq!(s.ts_ms, 1_700_000_000_500);
        assert_eq!(s.speed_kmh, Some(31.5));
        assert_eq!(s.soc_pct, Some(80.0));
        assert_eq!(
            s.extra.as_deref(),
            Some(r#"{"Vehicle.Body.Lights.IsLowBeamOn":true}"#)
        );
    }

    #[test]
    fn every_bad_kind_has_its_reason() {
        assert_eq!(
            reason(go("garasi/v1/vehicles/bus-1/telemetry", "not json{")),
            "not_json"
        );
        assert_eq!(
            reason(go(
                "garasi/v1/vehicles/bus-1/telemetry",
                r#"{"ts":1700000000000,"signals":{"Vehicle.Speed":-5}}"#
            )),
            "schema_violation"
        );
        assert_eq!(
            reason(go(
                "garasi/v1/vehicles/bus-1/telemetry",
                r#"{"signals":{"Vehicle.Speed":5}}"#
            )),
            "schema_violation"
        );
        assert_eq!(
            reason(go(
                "garasi/v1/vehicles/bus-9/telemetry",
                r#"{"ts":1700000000000,"signals":{"Vehicle.Speed":5}}"#
            )),
            "unknown_vehicle"
        );
        assert_eq!(
            reason(go(
                "garasi/v1/vehicles/bus-1/telemetry",
                &format!(r#"{{"ts":1,"x":"{}"}}"#, "a".repeat(2000))
            )),
            "oversized"
        );
        assert_eq!(
            reason(go("garasi/v1/vehicles/bus-1/horn", "{}")),
            "unexpected_topic"
        );
        assert_eq!(
            reason(go("garasi/v1/vehicles/bus-1/telemetry/extra", "{}")),
            "unexpected_topic"
        );
    }

    #[test]
    fn status_and_faults() {
        let Item::Status { online, .. } =
            go("garasi/v1/vehicles/bus-1/status", r#"{"state":"offline"}"#)
        else {
            panic!()
        };
        assert!(!online);
        let Item::Faults { faults, .. } = go(
            "garasi/v1/vehicles/bus-1/faults",
            r#"{"ts":1700000000000,"faults":[{"spn":5246,"fmi":3,"active":true,"severity":"critical"}]}"#,
        ) else {
            panic!()
        };
        assert_eq!(faults[0].spn, 5246);
        assert_eq!(
            reason(go(
                "garasi/v1/vehicles/bus-1/faults",
                r#"{"ts":1700000000000,"faults":[{"spn":999999,"fmi":3,"active":true}]}"#
            )),
            "schema_violation"
        );
    }
}
