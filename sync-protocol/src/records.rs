//! The replicated record types edge and cloud agree on, who authors each, and the id rule
//! for records. The cloud refuses a depot's push of any type that is not operational, or
//! with an id outside [`valid_record_id`], before it stores anything.

/// Operational records: authored at depots (and editable by the cloud).
pub const VEHICLE_STATUS: &str = "vehicle_status";
pub const ASSIGNMENT: &str = "assignment";
pub const SIGNON: &str = "signon";
pub const DISPATCH_EVENT: &str = "dispatch_event";
/// A driver on a TODS run for one service day (the run's record id plus the driver).
pub const RUN_ASSIGNMENT: &str = "run_assignment";
/// An OCPP charging transaction at a depot (`{charger}.{transaction id}`): who charged
/// where, the charger's meter registers at start and stop, the energy between them.
pub const CHARGING_SESSION: &str = "charging_session";

/// Master data: authored only by the cloud, flows down to depots.
pub const VEHICLE: &str = "vehicle";
pub const DEVICE: &str = "device";
pub const PERSON: &str = "person";
pub const BLOCK: &str = "block";
pub const STOP: &str = "stop";
pub const SHAPE: &str = "shape";
/// A driver's TODS run on one service day: its events (pieces on blocks, reliefs).
pub const RUN: &str = "run";
/// An OCPP charge point at a depot (id = its charge box id): `connectors` and
/// `max_power_w` (integers). Its password is a `device` of kind `charger` (disabling
/// that device is how a charger is taken out of service).
pub const CHARGER: &str = "charger";
/// The depot's electricity tariff (one record, id [`TARIFF_ID`]): field
/// [`TARIFF_V1_FIELD`], a [`crate::tariff::Tariff`] as JSON. A later shape of the tariff
/// gets a field of its own (`tariff_v2_json`), written beside v1 for depots not yet
/// upgraded, so every depot keeps a decoder for what it is sent.
pub const TARIFF: &str = "tariff";
/// The id of a depot's one tariff record.
pub const TARIFF_ID: &str = "tariff";
/// The field of the `tariff` record holding its version-1 JSON.
pub const TARIFF_V1_FIELD: &str = "tariff_v1_json";

/// Every operational record type: the only types a depot may push.
pub const OPERATIONAL: &[&str] = &[
    VEHICLE_STATUS,
    ASSIGNMENT,
    SIGNON,
    DISPATCH_EVENT,
    RUN_ASSIGNMENT,
    CHARGING_SESSION,
];
/// Every master record type.
pub const MASTER: &[&str] = &[
    VEHICLE, DEVICE, PERSON, BLOCK, STOP, SHAPE, RUN, CHARGER, TARIFF,
];

/// Field rules of the `vehicle` master record that the cloud's API and the depot's
/// registry both apply (one definition, so they cannot drift apart).
pub mod vehicle {
    /// Highest plausible energy use of a bus, kWh per km (exclusive).
    pub const MAX_KWH_PER_KM: f64 = 20.0;

    /// Energy use per km: above 0 and below [`MAX_KWH_PER_KM`] (NaN is refused).
    pub fn valid_kwh_per_km(k: f64) -> bool {
        k > 0.0 && k < MAX_KWH_PER_KM
    }
}

/// Field rules of the `charger` master record (the cloud's API and the depot both apply).
pub mod charger {
    /// Connectors a charge point may have.
    pub const CONNECTORS: std::ops::RangeInclusive<i64> = 1..=16;
    /// Power of a whole charge point, W (1 kW to 1 MW).
    pub const MAX_POWER_W: std::ops::RangeInclusive<i64> = 1_000..=1_000_000;

    pub fn valid(connectors: i64, max_power_w: i64) -> bool {
        CONNECTORS.contains(&connectors) && MAX_POWER_W.contains(&max_power_w)
    }
}

/// Longest record id (a sign-on id is a service date plus a person id).
pub const MAX_RECORD_ID: usize = 128;

/// What identifies a stored change: its record and its bytes. Two records' first
/// changes can be byte-identical (same actor, same fields, no timestamp), so content
/// alone is not an identity; within one record, identical bytes are the same change.
/// Length-prefixed, so no two (type, id, bytes) triples hash alike by concatenation.
pub fn change_key(record_type: &str, record_id: &str, change: &[u8]) -> [u8; 32] {
    use blake2::{Blake2b512, Digest};
    let mut h = Blake2b512::new();
    h.update(b"garasi-change-v2");
    for part in [record_type.as_bytes(), record_id.as_bytes(), change] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(&h.finalize()[..32]);
    out
}

/// Whether a depot may author records of this type.
pub fn is_operational(record_type: &str) -> bool {
    OPERATIONAL.contains(&record_type)
}

/// 1-128 ASCII letters, digits, '-', '_' or '.', starting with a letter or digit: no
/// separators, control or bidi characters, nothing that changes meaning when printed.
pub fn valid_record_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_RECORD_ID
        && id
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && id.bytes().next().is_some_and(|c| c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_identity_includes_the_record() {
        let c = [1u8, 2, 3];
        assert_ne!(change_key("signon", "a", &c), change_key("signon", "b", &c));
        assert_ne!(change_key("signon", "a", &c), change_key("signo", "na", &c));
        assert_eq!(change_key("signon", "a", &c), change_key("signon", "a", &c));
    }

    #[test]
    fn types_and_ids() {
        assert!(is_operational("vehicle_status"));
        for m in MASTER {
            assert!(!is_operational(m), "{m} is master data");
        }
        assert!(!is_operational("vehicle_status\0"));
        assert!(valid_record_id("2026-11-29-drv-1"));
        assert!(valid_record_id("ev-1700000000000-0a1b2c3d"));
        assert!(valid_record_id(&"a".repeat(MAX_RECORD_ID)));
        for bad in [
            "",
            "-x",
            "bus 1",
            "bus\n1",
            "bus\u{202e}1",
            "bus/1",
            "a\0b",
            &"a".repeat(MAX_RECORD_ID + 1),
        ] {
            assert!(!valid_record_id(bad), "{bad:?} must be refused");
        }
    }
}
