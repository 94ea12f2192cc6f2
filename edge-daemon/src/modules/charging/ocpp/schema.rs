//! The official OCPP 1.6J JSON schemas (`schemas/ocpp1.6/`, draft-04), compiled once:
//! every CALL a charger sends and every CALLRESULT it answers ours with is checked
//! against its action's schema before anything reads it, and a violation becomes the
//! CALLERROR the specification names for it.

use std::collections::HashMap;

use jsonschema::error::ValidationErrorKind;
use jsonschema::Validator;
use serde_json::Value;

use super::frame::ErrorCode;

macro_rules! schemas {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("../../../../../schemas/ocpp1.6/", $name, ".json")))),*]
    };
}

/// Requests a charger sends to the central system.
pub const FROM_CHARGER: &[(&str, &str)] = schemas![
    "Authorize",
    "BootNotification",
    "DataTransfer",
    "DiagnosticsStatusNotification",
    "FirmwareStatusNotification",
    "Heartbeat",
    "MeterValues",
    "StartTransaction",
    "StatusNotification",
    "StopTransaction",
];

/// Requests the central system sends to chargers: checked before they leave, so a
/// person's or the planner's mistake is refused here, not by the charger.
pub const TO_CHARGER: &[(&str, &str)] = schemas![
    "ChangeAvailability",
    "ChangeConfiguration",
    "ClearChargingProfile",
    "DataTransfer",
    "GetCompositeSchedule",
    "GetConfiguration",
    "RemoteStartTransaction",
    "RemoteStopTransaction",
    "Reset",
    "SetChargingProfile",
    "TriggerMessage",
    "UnlockConnector",
];

/// Answers a charger gives to the central system's requests (the schema file is
/// `<Action>Response.json`).
pub const ANSWERS: &[(&str, &str)] = schemas![
    "ChangeAvailabilityResponse",
    "ChangeConfigurationResponse",
    "ClearChargingProfileResponse",
    "DataTransferResponse",
    "GetCompositeScheduleResponse",
    "GetConfigurationResponse",
    "RemoteStartTransactionResponse",
    "RemoteStopTransactionResponse",
    "ResetResponse",
    "SetChargingProfileResponse",
    "TriggerMessageResponse",
    "UnlockConnectorResponse",
];

/// Actions of OCPP 1.6 (and its security extension) a central system is not sent, or
/// does not take: a charger sending one gets NotSupported, an unknown name
/// NotImplemented.
pub const KNOWN_UNSUPPORTED: &[&str] = &[
    "CancelReservation",
    "ChangeAvailability",
    "ChangeConfiguration",
    "ClearCache",
    "ClearChargingProfile",
    "GetCompositeSchedule",
    "GetConfiguration",
    "GetDiagnostics",
    "GetLocalListVersion",
    "RemoteStartTransaction",
    "RemoteStopTransaction",
    "ReserveNow",
    "Reset",
    "SendLocalList",
    "SetChargingProfile",
    "TriggerMessage",
    "UnlockConnector",
    "UpdateFirmware",
    "LogStatusNotification",
    "SecurityEventNotification",
    "SignCertificate",
    "SignedFirmwareStatusNotification",
    "CertificateSigned",
    "DeleteCertificate",
    "ExtendedTriggerMessage",
    "GetInstalledCertificateIds",
    "GetLog",
    "InstallCertificate",
    "SignedUpdateFirmware",
];

pub struct Schemas {
    requests: HashMap<&'static str, Validator>,
    outgoing: HashMap<&'static str, Validator>,
    answers: HashMap<&'static str, Validator>,
}

/// A payload that does not meet its schema: the error code and what to fix.
#[derive(Debug, Clone, PartialEq)]
pub struct Violation {
    pub code: ErrorCode,
    pub description: String,
}

fn compile(list: &[(&'static str, &str)]) -> Result<HashMap<&'static str, Validator>, String> {
    let mut out = HashMap::new();
    for (name, text) in list {
        let v: Value = serde_json::from_str(text).map_err(|e| format!("{name}: {e}"))?;
        let validator = jsonschema::draft4::new(&v).map_err(|e| format!("{name}: {e}"))?;
        out.insert(name.trim_end_matches("Response"), validator);
    }
    Ok(out)
}

impl Schemas {
    pub fn load() -> Result<Self, String> {
        Ok(Schemas {
            requests: compile(FROM_CHARGER)?,
            outgoing: compile(TO_CHARGER)?,
            answers: compile(ANSWERS)?,
        })
    }

    /// Whether the central system takes this action from a charger.
    pub fn handles(&self, action: &str) -> bool {
        self.requests.contains_key(action)
    }

    pub fn check_request(&self, action: &str, payload: &Value) -> Result<(), Violation> {
        match self.requests.get(action) {
            Some(v) => check(v, payload),
            None => Err(Violation {
                code: ErrorCode::NotImplemented,
                description: format!("no schema for {action}"),
            }),
        }
    }

    /// The action's `&'static` name and the payload's check, for a request to a
    /// charger; None for an action the central system does not send.
    pub fn check_outgoing(
        &self,
        action: &str,
        payload: &Value,
    ) -> Option<(&'static str, Result<(), Violation>)> {
        let (name, v) = self.outgoing.get_key_value(action)?;
        Some((name, check(v, payload)))
    }

    pub fn check_answer(&self, action: &str, payload: &Value) -> Result<(), Violation> {
        match self.answers.get(action) {
            Some(v) => check(v, payload),
            None => Ok(()),
        }
    }
}

/// The first violation, as OCPP 1.6J names it: a wrong JSON type is a
/// TypeConstraintViolation, a missing required field an OccurenceConstraintViolation, a
/// field the action does not have a FormationViolation (the PDU's structure), and a
/// value out of its enumeration, length, range or format a PropertyConstraintViolation.
fn check(v: &Validator, payload: &Value) -> Result<(), Violation> {
    let Err(e) = v.validate(payload) else {
        return Ok(());
    };
    let code = match &e.kind {
        ValidationErrorKind::Type { .. } => ErrorCode::TypeConstraintViolation,
        ValidationErrorKind::Required { .. } => ErrorCode::OccurenceConstraintViolation,
        ValidationErrorKind::AdditionalProperties { .. } => ErrorCode::FormationViolation,
        _ => ErrorCode::PropertyConstraintViolation,
    };
    // The path names the field; the message may quote the value, cut short.
    let path = e.instance_path.to_string();
    let mut description = format!("{path}: {e}");
    if description.len() > 200 {
        let mut cut = 200;
        while !description.is_char_boundary(cut) {
            cut -= 1;
        }
        description.truncate(cut);
    }
    Err(Violation { code, description })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn violations_get_the_code_the_specification_names() {
        let s = Schemas::load().unwrap();
        let ok = json!({"connectorId": 1, "idTag": "BUS-1", "meterStart": 0,
                        "timestamp": "2026-11-30T22:00:00Z"});
        assert!(s.check_request("StartTransaction", &ok).is_ok());
        let cases = [
            (
                json!({"connectorId": "1", "idTag": "B", "meterStart": 0, "timestamp": "2026-11-30T22:00:00Z"}),
                ErrorCode::TypeConstraintViolation,
            ),
            (
                json!({"connectorId": 1, "idTag": "B", "timestamp": "2026-11-30T22:00:00Z"}),
                ErrorCode::OccurenceConstraintViolation,
            ),
            (
                json!({"connectorId": 1, "idTag": "B", "meterStart": 0, "timestamp": "2026-11-30T22:00:00Z", "x": 1}),
                ErrorCode::FormationViolation,
            ),
            (
                json!({"connectorId": 1, "idTag": "B".repeat(21), "meterStart": 0, "timestamp": "2026-11-30T22:00:00Z"}),
                ErrorCode::PropertyConstraintViolation,
            ),
        ];
        for (payload, code) in cases {
            assert_eq!(
                s.check_request("StartTransaction", &payload)
                    .unwrap_err()
                    .code,
                code,
                "{payload}"
            );
        }
        let status = json!({"connectorId": 1, "errorCode": "NoError", "status": "Charging-ish"});
        assert_eq!(
            s.check_request("StatusNotification", &status)
                .unwrap_err()
                .code,
            ErrorCode::PropertyConstraintViolation
        );
        assert!(s.handles("MeterValues") && !s.handles("Reset"));
        assert!(s
            .check_answer("SetChargingProfile", &json!({"status": "Accepted"}))
            .is_ok());
        assert!(s
            .check_answer("SetChargingProfile", &json!({"status": "Fine"}))
            .is_err());
    }
}
