//! MQTT packet basics of the gate: its errors, frame lengths, field readers, and the
//! CONNACK refusals the gate answers itself (the namespace rule is `mqtt_acl.rs`).

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

pub(super) fn utf8(b: &[u8]) -> Result<&str, GateError> {
    std::str::from_utf8(b).map_err(|_| GateError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_lengths() {
        assert_eq!(frame_len(&[0x30]).unwrap(), None);
        assert_eq!(frame_len(&[0x30, 0x05]).unwrap(), Some((2, 5)));
        assert_eq!(frame_len(&[0x30, 0xc1, 0x02]).unwrap(), Some((3, 321)));
        assert!(frame_len(&[0x30, 0xff, 0xff, 0xff, 0xff, 0x01]).is_err());
    }
}
