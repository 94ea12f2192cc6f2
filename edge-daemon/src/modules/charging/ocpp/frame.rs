//! OCPP-J frames (OCPP 1.6J section 4): `[2, id, action, payload]` CALL,
//! `[3, id, payload]` CALLRESULT, `[4, id, code, description, details]` CALLERROR. Parses
//! a text frame into one of them, or into the CALLERROR the sender must get back.

use serde_json::{json, Value};

/// The RPC framework's error codes of OCPP 1.6J (section 4.2.3), spelled as the
/// specification spells them ("Occurence" included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    NotImplemented,
    NotSupported,
    InternalError,
    ProtocolError,
    SecurityError,
    FormationViolation,
    PropertyConstraintViolation,
    OccurenceConstraintViolation,
    TypeConstraintViolation,
    GenericError,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::NotImplemented => "NotImplemented",
            ErrorCode::NotSupported => "NotSupported",
            ErrorCode::InternalError => "InternalError",
            ErrorCode::ProtocolError => "ProtocolError",
            ErrorCode::SecurityError => "SecurityError",
            ErrorCode::FormationViolation => "FormationViolation",
            ErrorCode::PropertyConstraintViolation => "PropertyConstraintViolation",
            ErrorCode::OccurenceConstraintViolation => "OccurenceConstraintViolation",
            ErrorCode::TypeConstraintViolation => "TypeConstraintViolation",
            ErrorCode::GenericError => "GenericError",
        }
    }
}

/// Longest message id OCPP-J allows (a UUID).
pub const MAX_ID_CHARS: usize = 36;
/// The id a CALLERROR carries when the frame's own id could not be read.
pub const UNKNOWN_ID: &str = "-1";

#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    Call {
        id: String,
        action: String,
        payload: Value,
    },
    Result {
        id: String,
        payload: Value,
    },
    Error {
        id: String,
        code: String,
        description: String,
    },
}

/// A frame that cannot be taken: the CALLERROR to send back (`id` is the frame's own id
/// where it could be read). `answer` is false for a broken CALLRESULT or CALLERROR,
/// which OCPP-J never answers.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    pub id: String,
    pub code: ErrorCode,
    pub description: String,
    pub answer: bool,
}

fn refused(id: &str, code: ErrorCode, description: impl Into<String>) -> Refused {
    Refused {
        id: id.to_string(),
        code,
        description: description.into(),
        answer: true,
    }
}

/// Parses one text frame.
pub fn parse(text: &str) -> Result<Frame, Refused> {
    let Ok(Value::Array(mut parts)) = serde_json::from_str::<Value>(text) else {
        return Err(refused(
            UNKNOWN_ID,
            ErrorCode::FormationViolation,
            "a frame is a JSON array: [2, id, action, payload]",
        ));
    };
    let id = match parts.get(1) {
        Some(Value::String(s)) if !s.is_empty() && s.chars().count() <= MAX_ID_CHARS => s.clone(),
        _ => {
            return Err(refused(
                UNKNOWN_ID,
                ErrorCode::FormationViolation,
                "the message id must be a string of 1-36 characters",
            ))
        }
    };
    let kind = parts.first().and_then(Value::as_u64);
    let expected = match kind {
        Some(2) => 4,
        Some(3) => 3,
        Some(4) => 5,
        _ => {
            return Err(refused(
                &id,
                ErrorCode::FormationViolation,
                "the message type must be 2 (CALL), 3 (CALLRESULT) or 4 (CALLERROR)",
            ))
        }
    };
    if parts.len() != expected {
        let mut r = refused(
            &id,
            ErrorCode::FormationViolation,
            format!("this message type has {expected} elements"),
        );
        r.answer = kind == Some(2);
        return Err(r);
    }
    match kind {
        Some(2) => {
            let payload = parts.pop().unwrap_or(Value::Null);
            let Some(Value::String(action)) = parts.pop() else {
                return Err(refused(
                    &id,
                    ErrorCode::FormationViolation,
                    "the action must be a string",
                ));
            };
            if !payload.is_object() {
                return Err(refused(
                    &id,
                    ErrorCode::FormationViolation,
                    "the payload must be a JSON object",
                ));
            }
            Ok(Frame::Call {
                id,
                action,
                payload,
            })
        }
        Some(3) => Ok(Frame::Result {
            id,
            payload: parts.pop().unwrap_or(Value::Null),
        }),
        _ => {
            let text = |v: Option<&Value>| {
                v.and_then(Value::as_str)
                    .unwrap_or("")
                    .chars()
                    .take(255)
                    .collect()
            };
            Ok(Frame::Error {
                code: text(parts.get(2)),
                description: text(parts.get(3)),
                id,
            })
        }
    }
}

pub fn call(id: &str, action: &str, payload: &Value) -> String {
    json!([2, id, action, payload]).to_string()
}

pub fn result(id: &str, payload: &Value) -> String {
    json!([3, id, payload]).to_string()
}

pub fn error(id: &str, code: ErrorCode, description: &str) -> String {
    json!([4, id, code.as_str(), description, {}]).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_and_their_refusals() {
        let f = parse(r#"[2,"a1","Heartbeat",{}]"#).unwrap();
        assert_eq!(
            f,
            Frame::Call {
                id: "a1".into(),
                action: "Heartbeat".into(),
                payload: json!({})
            }
        );
        assert!(matches!(
            parse(r#"[3,"a1",{"x":1}]"#),
            Ok(Frame::Result { .. })
        ));
        assert!(matches!(
            parse(r#"[4,"a1","NotSupported","no",{}]"#),
            Ok(Frame::Error { ref code, .. }) if code == "NotSupported"
        ));
        for (bad, id, answer) in [
            ("not json", UNKNOWN_ID, true),
            (r#"{"a":1}"#, UNKNOWN_ID, true),
            (r#"[2, 7, "Heartbeat", {}]"#, UNKNOWN_ID, true),
            (
                &format!(r#"[2,"{}","Heartbeat",{{}}]"#, "x".repeat(37)),
                UNKNOWN_ID,
                true,
            ),
            (r#"[9,"b","Heartbeat",{}]"#, "b", true),
            (r#"[2,"b","Heartbeat"]"#, "b", true),
            (r#"[2,"b",5,{}]"#, "b", true),
            (r#"[2,"b","Heartbeat",[]]"#, "b", true),
            (r#"[3,"b"]"#, "b", false),
        ] {
            let r = parse(bad).unwrap_err();
            assert_eq!(r.code, ErrorCode::FormationViolation, "{bad}");
            assert_eq!((r.id.as_str(), r.answer), (id, answer), "{bad}");
        }
        assert_eq!(
            error("z", ErrorCode::NotImplemented, "no"),
            r#"[4,"z","NotImplemented","no",{}]"#
        );
    }
}
