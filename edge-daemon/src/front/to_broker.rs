//! How a device's CONNECT is rewritten for the embedded broker: its client id
//! namespaced and escaped (the broker refuses some characters MQTT allows), overlong ids
//! refused, keepalive 0 replaced.

/// Readies a device's CONNECT for the broker; false when its client id cannot be taken.
/// The client id is namespaced so two devices can never take over each other's session
/// (device ids have no dots). The broker's packet writer stores string lengths in 16
/// bits without a check: an id grown past that by the prefix and the escaping would be
/// cut short and the rest of the CONNECT read as other fields (a forged will, another
/// id), so an overlong one is refused. Keepalive 0 ("no keepalive") is allowed by MQTT,
/// but the broker refuses it and would close without a CONNACK: it gets the longest
/// keepalive instead (the device is taken for gone after ~27 h without a packet; its
/// telemetry age says offline long before that).
pub(super) fn for_broker(connect: &mut rumqttd::protocol::Connect, device: &str) -> bool {
    if !connect.client_id.is_empty() {
        connect.client_id = format!("{device}.{}", broker_client_id(&connect.client_id));
        if connect.client_id.len() > MAX_BROKER_CLIENT_ID {
            return false;
        }
    }
    if connect.keep_alive == 0 {
        connect.keep_alive = u16::MAX;
    }
    true
}

/// Longest client id the gate hands the broker, prefix and escapes included (far below
/// the 65,535 bytes its packet writer can hold; real client ids are a few dozen).
const MAX_BROKER_CLIENT_ID: usize = 1024;

/// The device's own MQTT client id as the broker takes it. MQTT lets a client id hold
/// any characters; the broker behind the gate refuses `+ $ # /` (it refused such a
/// device with "server unavailable", where Mosquitto accepts it). They are
/// percent-escaped, `%` too, so two different ids stay different.
fn broker_client_id(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for c in id.chars() {
        match c {
            '%' | '+' | '$' | '#' | '/' => out.push_str(&format!("%{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn client_ids_reach_the_broker_escaped_and_distinct() {
        use super::broker_client_id as b;
        assert_eq!(b("bus 1 unit A"), "bus 1 unit A");
        assert_eq!(b("a/b#c+d$e%f"), "a%2Fb%23c%2Bd%24e%25f");
        assert_ne!(
            b("a/b"),
            b("a%2Fb"),
            "an id that looks escaped stays distinct"
        );
        assert!(!"+$#/".chars().any(|c| b("x+$#/y").contains(c)));
    }
}
