//! Unit tests of the namespace rule (`mqtt_acl.rs`) on hand-built packets.

use super::*;
use bytes::BytesMut;
use rumqttd::protocol::{v5::V5, Packet, Protocol};

const NS: &str = "garasi/v1/vehicles/bus-1/";

fn publish(topic: &str, qos: u8, pkid: u16, props: Option<&[u8]>) -> Vec<u8> {
    let mut body = (topic.len() as u16).to_be_bytes().to_vec();
    body.extend_from_slice(topic.as_bytes());
    if qos > 0 {
        body.extend_from_slice(&pkid.to_be_bytes());
    }
    if let Some(p) = props {
        body.push(p.len() as u8);
        body.extend_from_slice(p);
    }
    body.extend_from_slice(b"{}");
    packet(0x30 | (qos << 1), &body)
}

fn subscribe(pkid: u16, filters: &[&str], v5: bool) -> Vec<u8> {
    let mut body = pkid.to_be_bytes().to_vec();
    if v5 {
        body.push(0);
    }
    for f in filters {
        body.extend_from_slice(&(f.len() as u16).to_be_bytes());
        body.extend_from_slice(f.as_bytes());
        body.push(1);
    }
    packet(0x82, &body)
}

fn judge(v5: bool, frame: &[u8]) -> Result<Verdict, GateError> {
    Acl::new(NS.into(), "bus-1", v5).judge(frame, 2)
}

#[test]
fn publishes_inside_are_forwarded_outside_refused_by_version() {
    let inside = publish("garasi/v1/vehicles/bus-1/telemetry", 1, 7, None);
    assert_eq!(
        judge(false, &inside).unwrap(),
        Verdict::Forward { publish: true }
    );
    for bad in [
        "garasi/v1/vehicles/bus-2/telemetry",
        "garasi/v1/vehicles/bus-1",
        "garasi/v1/vehicles/bus-10/x",
        "garasi/v1/vehicles/bus-1/+",
        "other",
    ] {
        // 3.1.1: no way to refuse a PUBLISH but to close.
        assert!(
            matches!(
                judge(false, &publish(bad, 1, 7, None)),
                Err(GateError::Acl(_))
            ),
            "{bad}"
        );
        // 5: PUBACK 0x87 at QoS 1, PUBREC 0x87 at QoS 2, nothing at QoS 0.
        let answer = |qos| match judge(true, &publish(bad, qos, 7, Some(&[]))).unwrap() {
            Verdict::Refuse { answer, refused } => {
                assert_eq!(refused, bad);
                answer
            }
            v => panic!("{bad}: {v:?}"),
        };
        assert_eq!(answer(0), None);
        assert_eq!(answer(1), Some(vec![0x40, 3, 0, 7, 0x87]));
        assert_eq!(answer(2), Some(vec![0x50, 3, 0, 7, 0x87]));
    }
}

#[test]
fn a_topic_alias_set_by_a_refused_publish_stays_refused() {
    let mut acl = Acl::new(NS.into(), "bus-1", true);
    let alias = |n: u8| vec![0x23, 0, n];
    let ok = publish("garasi/v1/vehicles/bus-1/a", 1, 1, Some(&alias(1)));
    let bad = publish("garasi/v1/vehicles/bus-2/a", 1, 2, Some(&alias(2)));
    let by_alias = |n: u8, id: u16| publish("", 1, id, Some(&alias(n)));
    assert!(matches!(
        acl.judge(&ok, 2).unwrap(),
        Verdict::Forward { .. }
    ));
    assert!(matches!(
        acl.judge(&bad, 2).unwrap(),
        Verdict::Refuse { .. }
    ));
    assert!(matches!(
        acl.judge(&by_alias(1, 3), 2).unwrap(),
        Verdict::Forward { .. }
    ));
    assert!(matches!(
        acl.judge(&by_alias(2, 4), 2).unwrap(),
        Verdict::Refuse { .. }
    ));
    // Alias 1 re-pointed outside, then back inside.
    let bad1 = publish("other", 1, 5, Some(&alias(1)));
    assert!(matches!(
        acl.judge(&bad1, 2).unwrap(),
        Verdict::Refuse { .. }
    ));
    assert!(matches!(
        acl.judge(&by_alias(1, 6), 2).unwrap(),
        Verdict::Refuse { .. }
    ));
    assert!(matches!(
        acl.judge(&ok, 2).unwrap(),
        Verdict::Forward { .. }
    ));
    assert!(matches!(
        acl.judge(&by_alias(1, 7), 2).unwrap(),
        Verdict::Forward { .. }
    ));
    // Other properties are skipped correctly around the alias.
    let mut props = vec![0x02, 0, 0, 0, 60, 0x26, 0, 1, b'k', 0, 1, b'v'];
    props.extend(alias(2));
    assert!(matches!(
        acl.judge(&publish("", 1, 8, Some(&props)), 2).unwrap(),
        Verdict::Refuse { .. }
    ));
    // A property the gate does not know in a PUBLISH is malformed.
    assert!(matches!(
        acl.judge(
            &publish("garasi/v1/vehicles/bus-1/a", 1, 9, Some(&[0x7f])),
            2
        ),
        Err(GateError::Malformed)
    ));
}

#[test]
fn subscribes_are_answered_per_filter() {
    for v5 in [false, true] {
        let fail = if v5 { 0x87 } else { 0x80 };
        let props: &[u8] = if v5 { &[0] } else { &[] };
        let inside = "garasi/v1/vehicles/bus-1/cmd/#";
        // Forwarded as the broker decoded it, re-encoded (here: the same bytes).
        assert_eq!(
            judge(v5, &subscribe(3, &[inside], v5)).unwrap(),
            Verdict::Partial {
                refused: None,
                frame: subscribe(3, &[inside], v5),
                pkid: 3,
                codes: vec![None],
            }
        );
        // All refused: the gate answers the SUBACK itself.
        let mut want = vec![0, 3];
        want.extend_from_slice(props);
        want.extend([fail, fail]);
        assert_eq!(
            judge(v5, &subscribe(3, &["#", "$SYS/#"], v5)).unwrap(),
            Verdict::Refuse {
                refused: "#".into(),
                answer: Some(packet(0x90, &want)),
            }
        );
        // Mixed: the allowed filters go on, the codes wait for the broker's SUBACK.
        match judge(v5, &subscribe(9, &["garasi/v1/vehicles/+/x", inside], v5)).unwrap() {
            Verdict::Partial {
                refused,
                frame,
                pkid,
                codes,
            } => {
                assert_eq!(refused.as_deref(), Some("garasi/v1/vehicles/+/x"));
                assert_eq!(frame, subscribe(9, &[inside], v5));
                assert_eq!((pkid, codes), (9, vec![Some(fail), None]));
            }
            v => panic!("{v:?}"),
        }
    }
}

#[test]
fn shared_subscriptions_follow_the_rule_on_their_filter() {
    for (filter, ok) in [
        ("$share/g/garasi/v1/vehicles/bus-1/cmd/#", true),
        ("$share/g/garasi/v1/vehicles/bus-2/cmd/#", false),
        ("$share//garasi/v1/vehicles/bus-1/cmd/#", false),
        ("$share/g+/garasi/v1/vehicles/bus-1/cmd/#", false),
        ("$share/g", false),
        ("$share/g/garasi/v1/vehicles/bus-1/", false),
        ("$SYS/broker/uptime", false),
    ] {
        assert_eq!(filter_allowed(NS, filter), ok, "{filter}");
    }
}

/// The review's escape: properties `0B 01 01` (declared length 3: a Subscription
/// Identifier, then a byte), which rumqttd 0.20 read as two bytes (it counted the
/// identifier's property byte twice), taking the third as the start of the filters: it
/// saw a filter `#` inside what the gate read as one long filter of the device's own.
/// Judged on rumqttd's decoding (fixed in the vendored copy) that packet is malformed (a
/// 0x01 property has no place in a SUBSCRIBE) and closes the connection; a well-formed
/// one with the same filter is forwarded re-encoded, so the broker gets exactly the
/// filter judged.
#[test]
fn the_broker_subscribes_exactly_what_was_judged() {
    let filter = format!("{NS}{}\0\0\x01#", "a".repeat(231));
    let sub = |props: &[u8]| {
        let mut body = vec![0, 5];
        body.extend_from_slice(props);
        body.extend_from_slice(&(filter.len() as u16).to_be_bytes());
        body.extend_from_slice(filter.as_bytes());
        body.push(0);
        packet(0x82, &body)
    };
    assert!(matches!(
        judge(true, &sub(&[3, 0x0B, 1, 1])),
        Err(GateError::Malformed)
    ));
    let Verdict::Partial {
        frame: out, codes, ..
    } = judge(true, &sub(&[2, 0x0B, 1])).unwrap()
    else {
        panic!("allowed")
    };
    assert_eq!(codes, vec![None]);
    let mut bytes = BytesMut::from(&out[..]);
    let Packet::Subscribe(sub, props) = V5.read_mut(&mut bytes, out.len()).unwrap() else {
        panic!("a SUBSCRIBE")
    };
    let paths: Vec<&str> = sub.filters.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, [filter.as_str()], "one filter, the one judged");
    assert_eq!(props.and_then(|p| p.id), Some(1), "the identifier kept");
}

#[test]
fn shared_groups_are_made_the_devices_own_and_unsubscribe_follows() {
    let shared = "$share/g/garasi/v1/vehicles/bus-1/cmd/#";
    let own = "$share/bus-1.g/garasi/v1/vehicles/bus-1/cmd/#";
    for v5 in [false, true] {
        let Verdict::Partial { frame, .. } = judge(v5, &subscribe(4, &[shared], v5)).unwrap()
        else {
            panic!("allowed")
        };
        assert_eq!(frame, subscribe(4, &[own], v5));
        let mut body = 6u16.to_be_bytes().to_vec();
        if v5 {
            body.push(0);
        }
        let unsub = |f: &str| {
            let mut b = body.clone();
            b.extend_from_slice(&(f.len() as u16).to_be_bytes());
            b.extend_from_slice(f.as_bytes());
            packet(0xA2, &b)
        };
        let Verdict::Partial { frame, refused, .. } = judge(v5, &unsub(shared)).unwrap() else {
            panic!("forwarded")
        };
        assert_eq!((frame, refused), (unsub(own), None));
    }
}

#[test]
fn a_pubrel_for_a_refused_qos2_publish_is_answered_here() {
    let mut acl = Acl::new(NS.into(), "bus-1", true);
    let bad = publish("other", 2, 11, Some(&[]));
    assert!(matches!(
        acl.judge(&bad, 2).unwrap(),
        Verdict::Refuse { .. }
    ));
    let pubrel = |id: u16| packet(0x62, &id.to_be_bytes());
    assert_eq!(
        acl.judge(&pubrel(11), 2).unwrap(),
        Verdict::Answer(vec![0x70, 2, 0, 11])
    );
    // Once: a second PUBREL, or one for another publish, goes to the broker.
    assert_eq!(
        acl.judge(&pubrel(11), 2).unwrap(),
        Verdict::Forward { publish: false }
    );
    assert_eq!(
        acl.judge(&pubrel(12), 2).unwrap(),
        Verdict::Forward { publish: false }
    );
}

#[test]
fn malformed_packets_are_errors() {
    // QoS 3, and an empty filter.
    assert!(matches!(
        judge(true, &publish("other", 3, 1, Some(&[]))),
        Err(GateError::Malformed)
    ));
    assert!(matches!(
        judge(false, &subscribe(1, &[""], false)),
        Err(GateError::Malformed)
    ));
    assert!(matches!(
        judge(false, &[0x30, 0x01, 0x00]),
        Err(GateError::Malformed)
    ));
    assert!(matches!(
        judge(true, &[0x82, 0x02, 0x00, 0x01]),
        Err(GateError::Malformed)
    ));
    assert!(matches!(
        judge(false, &[0x10, 0x00]),
        Err(GateError::Reconnect)
    ));
}

/// The second review's escape: a shared filter that the device's group prefix grows past
/// 65,535 bytes. rumqttd's writer stores a wrapped 16-bit length and its reader then
/// finds more filters (one of them `#`) in the tail the gate judged as one filter of the
/// device's own. Refused as malformed, SUBSCRIBE and UNSUBSCRIBE alike.
#[test]
fn a_shared_filter_too_long_for_its_group_prefix_is_malformed() {
    let long = format!("$share/g/{NS}{}", "x".repeat(65_535 - 9 - NS.len()));
    assert_eq!(long.len(), 65_535);
    for v5 in [false, true] {
        assert!(
            matches!(
                judge(v5, &subscribe(2, &[&long], v5)),
                Err(GateError::Malformed)
            ),
            "v5 {v5}"
        );
        let mut body = 3u16.to_be_bytes().to_vec();
        if v5 {
            body.push(0);
        }
        body.extend_from_slice(&(long.len() as u16).to_be_bytes());
        body.extend_from_slice(long.as_bytes());
        assert!(matches!(
            judge(v5, &packet(0xA2, &body)),
            Err(GateError::Malformed)
        ));
    }
}

/// MQTT 5 frees a packet id after PUBREC 0x87, and clients reuse it: the PUBREL of an
/// allowed QoS 2 publish that reuses it goes to the broker (before, the gate kept
/// answering it, and the broker's QoS 2 messages were held back one exchange each).
#[test]
fn a_reused_packet_id_after_a_refused_qos2_publish_is_the_brokers() {
    let mut acl = Acl::new(NS.into(), "bus-1", true);
    let pubrel = packet(0x62, &7u16.to_be_bytes());
    let bad = publish("other", 2, 7, Some(&[]));
    assert!(matches!(
        acl.judge(&bad, 2).unwrap(),
        Verdict::Refuse { .. }
    ));
    let ok = publish("garasi/v1/vehicles/bus-1/a", 2, 7, Some(&[]));
    assert_eq!(
        acl.judge(&ok, 2).unwrap(),
        Verdict::Forward { publish: true }
    );
    assert_eq!(
        acl.judge(&pubrel, 2).unwrap(),
        Verdict::Forward { publish: false }
    );
}
