//! The namespace rule on a device's packets, answered the way MQTT allows: a SUBSCRIBE
//! filter outside the device's namespace (or a `$` topic) gets a failure code in the
//! SUBACK (0x80 on 3.1.1, 0x87 "not authorized" on 5) while its other filters are
//! subscribed; a PUBLISH outside it gets PUBACK/PUBREC 0x87 on 5 (dropped silently at
//! QoS 0, which has no answer). MQTT 3.1.1 has no way to refuse a PUBLISH, so there the
//! connection is closed, as before. `$share/<group>/<filter>` is a shared subscription
//! and follows the rule on `<filter>`, its group made the device's own.
//!
//! SUBSCRIBE and UNSUBSCRIBE are judged on rumqttd's own decoding and forwarded
//! re-encoded, so the broker acts on exactly what was judged.
//!
//! A v5 topic alias set by a refused PUBLISH is remembered as refused, so a later PUBLISH
//! that names only the alias is refused too (the broker never saw that alias set).

use std::collections::HashSet;

use bytes::BytesMut;
use rumqttd::protocol::{v4::V4, v5::V5, Packet, Protocol};

use super::mqtt_packets::{frame_len, read_u16, utf8, GateError};

/// Reason codes: 3.1.1's only SUBACK failure, and MQTT 5's "not authorized".
const FAILURE_V4: u8 = 0x80;
const NOT_AUTHORIZED: u8 = 0x87;

/// What to do with one packet from a device.
#[derive(Debug, PartialEq)]
pub(super) enum Verdict {
    /// Forward it unchanged (`publish`: a PUBLISH, which ingest will receive).
    Forward { publish: bool },
    /// Do not forward; send `answer` (if any) back to the device. `refused` names the
    /// first topic or filter refused, for the log.
    Refuse {
        refused: String,
        answer: Option<Vec<u8>>,
    },
    /// Do not forward; answer the device with this (nothing was refused).
    Answer(Vec<u8>),
    /// Forward `frame` instead (a SUBSCRIBE or UNSUBSCRIBE as the broker decoded it,
    /// re-encoded; a SUBSCRIBE with only its allowed filters) and, when `refused` names
    /// a refused filter, merge `codes` (Some: the gate's failure code; None: the
    /// broker's answer, in order) into the broker's SUBACK for `pkid`.
    Partial {
        refused: Option<String>,
        frame: Vec<u8>,
        pkid: u16,
        codes: Vec<Option<u8>>,
    },
}

/// One connection's namespace rule.
pub(super) struct Acl {
    ns: String,
    device: String,
    v5: bool,
    /// Topic aliases whose last topic was refused.
    refused_aliases: HashSet<u16>,
    /// QoS 2 publishes refused with PUBREC 0x87 (a client may still send PUBREL).
    refused_qos2: HashSet<u16>,
}

/// A topic name a device may publish to: inside its namespace, no wildcards.
pub(super) fn topic_allowed(ns: &str, topic: &str) -> bool {
    // A namespace without a trailing `/` is one exact topic (a panel meter's): a longer
    // topic that starts with it (`DATA/PM/P10` for `DATA/PM/P1`) is someone else's.
    if !ns.ends_with('/') {
        return topic == ns;
    }
    topic.len() > ns.len() && topic.starts_with(ns) && !topic.contains(['+', '#'])
}

/// A filter a device may subscribe to: inside its namespace (wildcards only below it),
/// directly or shared (`$share/<group>/<filter>`, the group without `/ + #`).
pub(super) fn filter_allowed(ns: &str, filter: &str) -> bool {
    // A device with one exact topic only publishes (a meter subscribes to nothing).
    if !ns.ends_with('/') {
        return false;
    }
    if let Some(rest) = filter.strip_prefix("$share/") {
        return match rest.split_once('/') {
            Some((group, inner)) if !group.is_empty() && !group.contains(['+', '#']) => {
                inner.len() > ns.len() && inner.starts_with(ns)
            }
            _ => false,
        };
    }
    filter.len() > ns.len() && filter.starts_with(ns)
}

impl Acl {
    pub fn new(ns: String, device: &str, v5: bool) -> Self {
        Acl {
            ns,
            device: device.to_string(),
            v5,
            refused_aliases: HashSet::new(),
            refused_qos2: HashSet::new(),
        }
    }

    /// Judges one complete packet (`frame`, fixed header of `h` bytes).
    pub fn judge(&mut self, frame: &[u8], h: usize) -> Result<Verdict, GateError> {
        match frame[0] >> 4 {
            1 => Err(GateError::Reconnect),
            3 => self.publish(frame, h),
            6 => self.pubrel(frame, h),
            8 => self.subscribe(frame),
            10 => self.unsubscribe(frame),
            _ => Ok(Verdict::Forward { publish: false }),
        }
    }

    /// A PUBREL for a QoS 2 publish the gate refused is answered here with PUBCOMP, which
    /// ends the exchange as Mosquitto does (the PUBREC already said "not authorized"): the
    /// broker never saw that publish and would close the connection. Some clients (Paho)
    /// send PUBREL despite the PUBREC's failure code.
    fn pubrel(&mut self, frame: &[u8], h: usize) -> Result<Verdict, GateError> {
        let pkid = read_u16(frame, h)?;
        if !self.refused_qos2.remove(&pkid) {
            return Ok(Verdict::Forward { publish: false });
        }
        let [hi, lo] = pkid.to_be_bytes();
        Ok(Verdict::Answer(vec![0x70, 0x02, hi, lo]))
    }

    fn publish(&mut self, frame: &[u8], h: usize) -> Result<Verdict, GateError> {
        let qos = (frame[0] >> 1) & 3;
        if qos == 3 {
            return Err(GateError::Malformed);
        }
        let len = read_u16(frame, h)? as usize;
        let topic = utf8(frame.get(h + 2..h + 2 + len).ok_or(GateError::Malformed)?)?;
        let mut pos = h + 2 + len;
        let pkid = if qos > 0 {
            pos += 2;
            Some(read_u16(frame, pos - 2)?)
        } else {
            None
        };
        let alias = if self.v5 {
            topic_alias(frame, pos)?
        } else {
            None
        };
        let allowed = match (topic.is_empty(), alias) {
            // A v5 PUBLISH naming only its alias: refused if the alias was.
            (true, Some(a)) if self.v5 => !self.refused_aliases.contains(&a),
            (true, None) if self.v5 => true, // the broker refuses it (protocol error)
            _ => topic_allowed(&self.ns, topic),
        };
        if let Some(a) = alias.filter(|_| !topic.is_empty()) {
            if allowed {
                self.refused_aliases.remove(&a);
            } else {
                self.refused_aliases.insert(a);
            }
        }
        if allowed {
            // MQTT 5 frees a packet id after a failed PUBREC: a reused id is the broker's
            // exchange now, and its PUBREL must reach the broker.
            if let Some(id) = pkid.filter(|_| qos == 2) {
                self.refused_qos2.remove(&id);
            }
            return Ok(Verdict::Forward { publish: true });
        }
        let refused = if topic.is_empty() {
            format!("(topic alias {})", alias.unwrap_or_default())
        } else {
            topic.to_string()
        };
        if !self.v5 {
            return Err(GateError::Acl(refused));
        }
        // PUBACK (QoS 1) or PUBREC (QoS 2) with "not authorized"; nothing at QoS 0.
        if let Some(id) = pkid.filter(|_| qos == 2) {
            self.refused_qos2.insert(id);
        }
        let answer = pkid.map(|id| {
            let kind = if qos == 1 { 0x40 } else { 0x50 };
            let [hi, lo] = id.to_be_bytes();
            vec![kind, 0x03, hi, lo, NOT_AUTHORIZED]
        });
        Ok(Verdict::Refuse { refused, answer })
    }

    /// A SUBSCRIBE is judged on the broker's own decoding of it and forwarded as that
    /// decoding re-encoded: were the gate to read one packet differently from rumqttd
    /// (rumqttd 0.20 misread Subscription Identifiers; a property running past its
    /// declared length is another way), the broker could subscribe a filter the gate never
    /// saw. A shared subscription's group is made the device's own
    /// (`$share/{device}.{group}/...`): rumqttd keys groups by name alone, so two devices
    /// using one group name would otherwise take turns on each other's messages.
    fn subscribe(&mut self, frame: &[u8]) -> Result<Verdict, GateError> {
        let (mut sub, props) = match self.decode(frame)? {
            Packet::Subscribe(sub, props) => (sub, props),
            _ => return Err(GateError::Malformed),
        };
        let fail = if self.v5 { NOT_AUTHORIZED } else { FAILURE_V4 };
        let mut refused = None;
        let mut codes = Vec::with_capacity(sub.filters.len());
        let mut allowed = Vec::with_capacity(sub.filters.len());
        for mut f in std::mem::take(&mut sub.filters) {
            if f.path.is_empty() {
                return Err(GateError::Malformed); // MQTT: a filter is at least one character
            }
            if filter_allowed(&self.ns, &f.path) {
                f.path = self.own_group(&f.path)?;
                allowed.push(f);
                codes.push(None);
            } else {
                refused.get_or_insert_with(|| f.path.clone());
                codes.push(Some(fail));
            }
        }
        let pkid = sub.pkid;
        if allowed.is_empty() {
            let codes: Vec<u8> = codes.into_iter().flatten().collect();
            return Ok(Verdict::Refuse {
                refused: refused.unwrap_or_default(),
                answer: Some(suback(pkid, &[0], &codes, self.v5)),
            });
        }
        sub.filters = allowed;
        Ok(Verdict::Partial {
            refused,
            frame: self.encode(Packet::Subscribe(sub, props))?,
            pkid,
            codes,
        })
    }

    /// An UNSUBSCRIBE, re-encoded with shared groups named as `subscribe` named them.
    fn unsubscribe(&mut self, frame: &[u8]) -> Result<Verdict, GateError> {
        let (mut unsub, props) = match self.decode(frame)? {
            Packet::Unsubscribe(u, props) => (u, props),
            _ => return Err(GateError::Malformed),
        };
        for f in &mut unsub.filters {
            *f = self.own_group(f)?;
        }
        Ok(Verdict::Partial {
            refused: None,
            frame: self.encode(Packet::Unsubscribe(unsub, props))?,
            pkid: 0,
            codes: Vec::new(),
        })
    }

    /// `$share/{group}/{filter}` -> `$share/{device}.{group}/{filter}` (device ids have
    /// no '.', so two devices' groups never meet); other filters unchanged.
    /// Malformed when the result no longer fits an MQTT string (64 KiB): the broker's
    /// writer would store a wrapped 16-bit length and read the rest as more filters.
    fn own_group(&self, filter: &str) -> Result<String, GateError> {
        let out = match filter.strip_prefix("$share/") {
            Some(rest) => format!("$share/{}.{rest}", self.device),
            None => filter.to_string(),
        };
        if out.len() > usize::from(u16::MAX) {
            return Err(GateError::Malformed);
        }
        Ok(out)
    }

    fn decode(&self, frame: &[u8]) -> Result<Packet, GateError> {
        let mut bytes = BytesMut::from(frame);
        let packet = if self.v5 {
            V5.read_mut(&mut bytes, frame.len())
        } else {
            V4.read_mut(&mut bytes, frame.len())
        };
        packet.map_err(|_| GateError::Malformed)
    }

    /// The packet in the broker's encoding, checked by decoding it again: what the broker
    /// will read must be exactly what was judged (a field the writer cannot hold, such as
    /// an over-long string, would otherwise change the packet's meaning).
    fn encode(&self, packet: Packet) -> Result<Vec<u8>, GateError> {
        let mut out = BytesMut::new();
        if self.v5 {
            V5.write(packet.clone(), &mut out)
        } else {
            V4.write(packet.clone(), &mut out)
        }
        .map_err(|_| GateError::Malformed)?;
        let bytes = out.to_vec();
        if self.decode(&bytes)? != packet {
            return Err(GateError::Malformed);
        }
        Ok(bytes)
    }
}

/// A packet from its first byte and its body (remaining length encoded between).
pub(super) fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 5);
    out.push(first);
    let mut n = body.len();
    loop {
        let b = (n % 128) as u8;
        n /= 128;
        out.push(if n > 0 { b | 0x80 } else { b });
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}

/// A SUBACK for `pkid` with these codes; `props` is the v5 property block (with its
/// length), ignored on 3.1.1.
pub(super) fn suback(pkid: u16, props: &[u8], codes: &[u8], v5: bool) -> Vec<u8> {
    let mut body = pkid.to_be_bytes().to_vec();
    if v5 {
        body.extend_from_slice(props);
    }
    body.extend_from_slice(codes);
    packet(0x90, &body)
}

/// The Topic Alias property of a v5 PUBLISH whose properties start at `pos`.
fn topic_alias(frame: &[u8], pos: usize) -> Result<Option<u16>, GateError> {
    let (vh, plen) = frame_len(
        frame
            .get(pos.wrapping_sub(1)..)
            .ok_or(GateError::Malformed)?,
    )?
    .ok_or(GateError::Malformed)?;
    let mut at = pos + vh - 1;
    let end = at + plen;
    if end > frame.len() {
        return Err(GateError::Malformed);
    }
    let mut alias = None;
    while at < end {
        let id = frame[at];
        at += 1;
        let skip = match id {
            0x01 => 1, // payload format
            0x02 => 4, // message expiry
            0x23 => {
                alias = Some(read_u16(frame, at)?);
                2
            }
            0x03 | 0x08 | 0x09 => 2 + read_u16(frame, at)? as usize, // string / binary
            0x26 => {
                let k = 2 + read_u16(frame, at)? as usize;
                k + 2 + read_u16(frame, at + k)? as usize
            }
            0x0B => {
                // subscription identifier (a varint): at most 4 bytes
                let (v, _) = frame_len(frame.get(at - 1..).ok_or(GateError::Malformed)?)?
                    .ok_or(GateError::Malformed)?;
                v - 1
            }
            _ => return Err(GateError::Malformed),
        };
        at += skip;
    }
    if at != end {
        return Err(GateError::Malformed);
    }
    Ok(alias)
}

#[cfg(test)]
#[path = "mqtt_acl_tests.rs"]
mod tests;
