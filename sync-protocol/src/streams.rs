//! Append-only streams: the names edge and cloud agree on and the payload format of each.
//! A stream row is identified by (depot, stream, seq); `seq` is assigned by the depot's
//! outbox (monotonic, never reused), so a re-sent row is recognised and stored once.
//!
//! Payloads are postcard-encoded structs. The version is part of the stream name
//! (`telemetry.v1`): a new payload layout gets a new name, and decoders for every name
//! that shipped stay here.

use serde::{Deserialize, Serialize};

/// Vehicle telemetry samples, payload [`TelemetrySampleV1`].
pub const TELEMETRY_V1: &str = "telemetry.v1";

/// One telemetry sample as it travels to the cloud (the edge's `telemetry_samples` row
/// without local bookkeeping).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TelemetrySampleV1 {
    pub vehicle_id: String,
    pub ts_ms: i64,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    pub heading: Option<f64>,
    pub speed_kmh: Option<f64>,
    pub soc_pct: Option<f64>,
    pub odometer_km: Option<f64>,
    pub battery_temp_c: Option<f64>,
    pub power_w: Option<f64>,
    pub charging: Option<bool>,
    /// Other VSS signals, a JSON object text.
    pub extra: Option<String>,
}

/// Charger meter samples (OCPP MeterValues and transaction data), payload
/// [`ChargingMeterSampleV1`].
pub const CHARGING_METER_V1: &str = "charging_meter.v1";

/// One sampled value of a charger's meter, normalised at the edge (energy in Wh, power
/// in W; other measurands in the unit the charger gave).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChargingMeterSampleV1 {
    pub charger_id: String,
    pub connector_id: i64,
    /// The edge's transaction id, when the sample belongs to a transaction it knows.
    pub transaction_id: Option<i64>,
    pub ts_ms: i64,
    pub measurand: String,
    pub phase: String,
    pub context: String,
    /// `Outlet`, `Inlet`, `EV`, ...; empty when the charger did not say (Outlet).
    pub location: String,
    pub value: f64,
    pub unit: String,
}

impl ChargingMeterSampleV1 {
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).unwrap_or_default()
    }
    pub fn decode(payload: &[u8]) -> Result<Self, StreamError> {
        postcard::from_bytes(payload).map_err(|e| StreamError::Malformed {
            stream: CHARGING_METER_V1.into(),
            detail: e.to_string(),
        })
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum StreamError {
    #[error("stream {0:?} is not known to this build: upgrade it")]
    UnknownStream(String),
    #[error("stream {stream} row is malformed: {detail}")]
    Malformed { stream: String, detail: String },
}

impl TelemetrySampleV1 {
    pub fn encode(&self) -> Vec<u8> {
        // Encoding a plain struct into a Vec cannot fail.
        postcard::to_stdvec(self).unwrap_or_default()
    }
    pub fn decode(payload: &[u8]) -> Result<Self, StreamError> {
        postcard::from_bytes(payload).map_err(|e| StreamError::Malformed {
            stream: TELEMETRY_V1.into(),
            detail: e.to_string(),
        })
    }
}

/// Checks that a payload decodes as its stream's format (the cloud refuses a batch with
/// a row it could never read, rather than storing garbage).
pub fn validate(stream: &str, payload: &[u8]) -> Result<(), StreamError> {
    match stream {
        TELEMETRY_V1 => TelemetrySampleV1::decode(payload).map(|_| ()),
        CHARGING_METER_V1 => ChargingMeterSampleV1::decode(payload).map(|_| ()),
        other => Err(StreamError::UnknownStream(other.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn telemetry_round_trip_and_garbage_refused() {
        let s = TelemetrySampleV1 {
            vehicle_id: "bus-1".into(),
            ts_ms: 1_700_000_000_000,
            lat: Some(28.06),
            lon: Some(-82.41),
            heading: None,
            speed_kmh: Some(31.5),
            soc_pct: Some(77.0),
            odometer_km: None,
            battery_temp_c: None,
            power_w: Some(-12_000.0),
            charging: Some(false),
            extra: None,
        };
        let bytes = s.encode();
        assert_eq!(TelemetrySampleV1::decode(&bytes).unwrap(), s);
        assert!(validate(TELEMETRY_V1, &bytes).is_ok());
        assert!(matches!(
            validate(TELEMETRY_V1, &bytes[..5]),
            Err(StreamError::Malformed { .. })
        ));
        assert_eq!(
            validate("scans.v9", &bytes),
            Err(StreamError::UnknownStream("scans.v9".into()))
        );
    }

    #[test]
    fn charging_meter_round_trip_and_garbage_refused() {
        let s = ChargingMeterSampleV1 {
            charger_id: "CP-1".into(),
            connector_id: 2,
            transaction_id: Some(7),
            ts_ms: 1_700_000_000_000,
            measurand: "Energy.Active.Import.Register".into(),
            phase: String::new(),
            context: "Sample.Periodic".into(),
            location: String::new(),
            value: 12_500.0,
            unit: "Wh".into(),
        };
        let bytes = s.encode();
        assert_eq!(ChargingMeterSampleV1::decode(&bytes).unwrap(), s);
        assert!(validate(CHARGING_METER_V1, &bytes).is_ok());
        assert!(validate(CHARGING_METER_V1, &bytes[..3]).is_err());
    }
}
