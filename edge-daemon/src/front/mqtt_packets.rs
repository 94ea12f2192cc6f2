//! MQTT packet checks of the gate: frame lengths, the namespace rule for PUBLISH and
//! SUBSCRIBE (and the will), and the CONNACK refusals the gate answers itself.

#[derive(Debug, thiserror::Error)]
pub(super) enum GateError {
    #[error("malformed packet")]
    Malformed,
    #[error("packet of {0} bytes exceeds the limit")]
    Oversized(usize),
    #[error("no CONNECT within the timeout")]
    Timeout,
    #[error("topic {0:?} is outside the device namespace")]
    Acl(String),
    #[error("second CONNECT on one connection")]
    Reconnect,
    #[error("closed before CONNECT to make room for a newer connection")]
    Evicted,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl GateError {
    /// The `mqtt_protocol_errors_total` reason, for errors that are the device's fault.
    pub(super) fn protocol_reason(&self) -> Option<&'static str> {
        match self {
            GateError::Malformed | GateError::Reconnect => Some("malformed"),
            GateError::Oversized(_) => Some("oversized"),
            GateError::Timeout => Some("timeout"),
            // Evictions are counted by the admission registry; ACL breaches and I/O
            // errors have their own counts or none.
            GateError::Evicted | GateError::Acl(_) | GateError::Io(_) => None,
        }
    }
}

pub(super) enum Refusal {
    BadCredentials,
    NotAuthorized,
    Unavailable,
    ClientIdRejected,
}

pub(super) fn connack_refused(v5: bool, r: Refusal) -> Vec<u8> {
    if v5 {
        let code = match r {
            Refusal::BadCredentials => 0x86,
            Refusal::NotAuthorized => 0x87,
            Refusal::Unavailable => 0x88,
            Refusal::ClientIdRejected => 0x85,
        };
        vec![0x20, 0x03, 0x00, code, 0x00]
    } else {
        let code = match r {
            Refusal::BadCredentials => 0x04,
            Refusal::NotAuthorized => 0x05,
            Refusal::Unavailable => 0x03,
            Refusal::ClientIdRejected => 0x02,
        };
        vec![0x20, 0x02, 0x00, code]
    }
}

/// Length of the fixed header and of the rest of the packet, once the header is complete.
pub(super) fn frame_len(buf: &[u8]) -> Result<Option<(usize, usize)>, GateError> {
    let mut len = 0usize;
    for i in 1..5 {
        let Some(&b) = buf.get(i) else {
            return Ok(None);
        };
        len += usize::from(b & 0x7f) << (7 * (i - 1));
        if b & 0x80 == 0 {
            return Ok(Some((i + 1, len)));
        }
    }
    Err(GateError::Malformed)
}

pub(super) fn read_u16(buf: &[u8], at: usize) -> Result<u16, GateError> {
    match (buf.get(at), buf.get(at + 1)) {
        (Some(a), Some(b)) => Ok(u16::from_be_bytes([*a, *b])),
        _ => Err(GateError::Malformed),
    }
}

/// A topic name a device may publish to: inside its namespace, no wildcards.
pub(super) fn topic_allowed(ns: &str, topic: &str) -> bool {
    topic.len() > ns.len() && topic.starts_with(ns) && !topic.contains(['+', '#'])
}

/// A filter a device may subscribe to: inside its namespace (wildcards only below it).
pub(super) fn filter_allowed(ns: &str, filter: &str) -> bool {
    filter.len() > ns.len() && filter.starts_with(ns)
}

pub(super) fn utf8(b: &[u8]) -> Result<&str, GateError> {
    std::str::from_utf8(b).map_err(|_| GateError::Malformed)
}

/// Checks one complete packet (`frame`, fixed header of `h` bytes) from a device; true
/// when it is a PUBLISH (which ingest will receive).
pub(super) fn check_packet(frame: &[u8], h: usize, ns: &str, v5: bool) -> Result<bool, GateError> {
    match frame[0] >> 4 {
        1 => Err(GateError::Reconnect),
        3 => {
            let len = read_u16(frame, h)? as usize;
            let topic = utf8(frame.get(h + 2..h + 2 + len).ok_or(GateError::Malformed)?)?;
            // MQTT 5 may send an empty topic with a topic alias; an alias can only have
            // been set by an earlier publish whose topic was checked here.
            if (v5 && topic.is_empty()) || topic_allowed(ns, topic) {
                Ok(true)
            } else {
                Err(GateError::Acl(topic.to_string()))
            }
        }
        8 => {
            let mut pos = h + 2; // packet identifier
            if v5 {
                let (vh, plen) = frame_len(frame.get(pos - 1..).ok_or(GateError::Malformed)?)?
                    .ok_or(GateError::Malformed)?;
                // frame_len reads a varint after one leading byte; skip the varint and properties.
                pos += vh - 1 + plen;
            }
            if pos >= frame.len() {
                return Err(GateError::Malformed);
            }
            while pos < frame.len() {
                let len = read_u16(frame, pos)? as usize;
                let filter = utf8(
                    frame
                        .get(pos + 2..pos + 2 + len)
                        .ok_or(GateError::Malformed)?,
                )?;
                if !filter_allowed(ns, filter) {
                    return Err(GateError::Acl(filter.to_string()));
                }
                pos += 2 + len + 1; // options byte
            }
            if pos == frame.len() {
                Ok(false)
            } else {
                Err(GateError::Malformed)
            }
        }
        _ => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publish(topic: &str) -> Vec<u8> {
        let mut v = vec![0x30, (2 + topic.len() + 2) as u8, 0, topic.len() as u8];
        v.extend_from_slice(topic.as_bytes());
        v.extend_from_slice(b"{}");
        v
    }

    #[test]
    fn publish_acl() {
        let ns = "garasi/v1/vehicles/bus-1/";
        assert!(check_packet(&publish("garasi/v1/vehicles/bus-1/telemetry"), 2, ns, false).is_ok());
        for bad in [
            "garasi/v1/vehicles/bus-2/telemetry",
            "garasi/v1/vehicles/bus-1",
            "garasi/v1/vehicles/bus-10/x",
            "other",
        ] {
            assert!(
                matches!(
                    check_packet(&publish(bad), 2, ns, false),
                    Err(GateError::Acl(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn subscribe_acl_v4_and_v5() {
        let ns = "garasi/v1/vehicles/bus-1/";
        let sub = |filter: &str, v5: bool| {
            let mut body = vec![0, 1];
            if v5 {
                body.push(0);
            }
            body.extend_from_slice(&(filter.len() as u16).to_be_bytes());
            body.extend_from_slice(filter.as_bytes());
            body.push(1);
            let mut v = vec![0x82, body.len() as u8];
            v.extend(body);
            v
        };
        for v5 in [false, true] {
            assert!(check_packet(&sub("garasi/v1/vehicles/bus-1/cmd/#", v5), 2, ns, v5).is_ok());
            assert!(matches!(
                check_packet(&sub("garasi/v1/vehicles/+/telemetry", v5), 2, ns, v5),
                Err(GateError::Acl(_))
            ));
            assert!(matches!(
                check_packet(&sub("#", v5), 2, ns, v5),
                Err(GateError::Acl(_))
            ));
        }
    }

    #[test]
    fn frame_lengths() {
        assert_eq!(frame_len(&[0x30]).unwrap(), None);
        assert_eq!(frame_len(&[0x30, 0x05]).unwrap(), Some((2, 5)));
        assert_eq!(frame_len(&[0x30, 0xc1, 0x02]).unwrap(), Some((3, 321)));
        assert!(frame_len(&[0x30, 0xff, 0xff, 0xff, 0xff, 0x01]).is_err());
        assert!(matches!(
            check_packet(&[0x30, 0x01, 0x00], 2, "x/", false),
            Err(GateError::Malformed)
        ));
    }
}
