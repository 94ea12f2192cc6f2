//! Reading whole MQTT packets from a device for the gate (`mqtt.rs`): the first CONNECT,
//! within the connection's deadline, then the device-to-broker pump that judges each
//! packet by the namespace rule (`mqtt_acl`) before forwarding it.

use std::net::SocketAddr;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::{timeout_at, Instant};

use super::mqtt::{Gate, ACL_REFUSED};
use super::mqtt_acl::{Acl, Verdict};
use super::mqtt_down::Pending;
use super::mqtt_packets::{frame_len, GateError};

/// Reads until `buf` holds one complete CONNECT; returns its fixed header length and its
/// total length. Anything else first is refused at once.
pub(super) async fn read_connect<R: AsyncRead + Unpin>(
    rd: &mut R,
    buf: &mut BytesMut,
    max_packet_bytes: usize,
    deadline: Instant,
) -> Result<(usize, usize), GateError> {
    timeout_at(deadline, async {
        loop {
            // The first packet must be CONNECT (0x10): anything else (an HTTP
            // request, a PUBLISH) is refused at once, not after the timeout.
            if buf.first().is_some_and(|b| *b != 0x10) {
                return Err(GateError::Malformed);
            }
            if let Some((h, rl)) = frame_len(buf)? {
                let total = h + rl;
                if total > max_packet_bytes {
                    return Err(GateError::Oversized(total));
                }
                if buf.len() >= total {
                    return Ok((h, total));
                }
            }
            if rd.read_buf(buf).await? == 0 {
                return Err(GateError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
        }
    })
    .await
    .map_err(|_| GateError::Timeout)?
}

/// What the device -> broker pump shares with the rest of the connection.
pub(super) struct Upstream<'a> {
    pub acl: Acl,
    /// The gate's own answers to the device (written by `mqtt_down`).
    pub answers: mpsc::Sender<Vec<u8>>,
    pub pending: Pending,
    pub device: &'a str,
    pub peer: SocketAddr,
    /// The MQTT 5 Session Expiry Interval, which a DISCONNECT may change.
    pub session_expiry: std::sync::Arc<std::sync::atomic::AtomicU32>,
}

impl Gate {
    /// Device -> broker: forwards whole packets after the namespace rule (`mqtt_acl`);
    /// what it refuses is answered, not forwarded.
    pub(super) async fn pump_up<R, W>(
        &self,
        rd: &mut R,
        wr: &mut W,
        mut buf: BytesMut,
        mut ctx: Upstream<'_>,
    ) -> Result<(), GateError>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let bp = &self.broker.backpressure;
        loop {
            // Bytes at the front of `buf` to forward as they are, and PUBLISHes among them.
            let mut end = 0;
            let mut publishes = 0u64;
            while let Some((h, rl)) = frame_len(&buf[end..])? {
                let total = h + rl;
                if total > self.max_packet_bytes {
                    return Err(GateError::Oversized(total));
                }
                if buf.len() - end < total {
                    break;
                }
                if buf[end] == 0xE0 {
                    // A session that had interval 0 cannot be given one at DISCONNECT
                    // (MQTT 5 3.14.2.2.2): only a non-zero interval changes.
                    let now = ctx
                        .session_expiry
                        .load(std::sync::atomic::Ordering::Relaxed);
                    if let Some(secs) = disconnect_expiry(&buf[end..end + total], h) {
                        if now != 0 {
                            ctx.session_expiry
                                .store(secs, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                }
                let verdict = ctx.acl.judge(&buf[end..end + total], h);
                let verdict = match verdict {
                    Err(GateError::Acl(topic)) => {
                        self.acl_refused(&ctx, &topic, true);
                        return Err(GateError::Acl(topic));
                    }
                    v => v?,
                };
                match verdict {
                    Verdict::Forward { publish } => {
                        publishes += u64::from(publish);
                        end += total;
                        continue;
                    }
                    Verdict::Refuse { refused, answer } => {
                        forward(wr, &mut buf, end, publishes, bp).await?;
                        let _ = buf.split_to(total);
                        self.acl_refused(&ctx, &refused, false);
                        if let Some(a) = answer {
                            // Closed only when the connection is ending anyway.
                            let _ = ctx.answers.send(a).await;
                        }
                    }
                    Verdict::Answer(a) => {
                        forward(wr, &mut buf, end, publishes, bp).await?;
                        let _ = buf.split_to(total);
                        let _ = ctx.answers.send(a).await;
                    }
                    Verdict::Partial {
                        refused,
                        frame,
                        pkid,
                        codes,
                    } => {
                        forward(wr, &mut buf, end, publishes, bp).await?;
                        let _ = buf.split_to(total);
                        if let Some(refused) = refused {
                            self.acl_refused(&ctx, &refused, false);
                            // Before the broker can answer: registered, then forwarded.
                            ctx.pending.lock().insert(pkid, codes);
                        }
                        wr.write_all(&frame).await?;
                    }
                }
                end = 0;
                publishes = 0;
            }
            forward(wr, &mut buf, end, publishes, bp).await?;
            // Flow control: read no more from this device while ingest is behind.
            bp.wait_for_room().await;
            if rd.read_buf(&mut buf).await? == 0 {
                return Ok(());
            }
        }
    }

    /// Counts a refusal by the namespace rule and logs it (rate-limited).
    fn acl_refused(&self, ctx: &Upstream<'_>, topic: &str, closed: bool) {
        self.metrics.mqtt_acl_denied_total.inc();
        if ACL_REFUSED.allow() {
            let peer = ctx.peer;
            let device = ctx.device;
            if closed {
                tracing::warn!(%peer, device, topic, "publish outside the device namespace on MQTT 3.1.1: connection closed");
            } else {
                tracing::warn!(%peer, device, topic, "publish/subscribe outside the device namespace: refused");
            }
        }
    }
}

/// Forwards the first `end` bytes of `buf` (holding `publishes` PUBLISHes) to the broker.
async fn forward<W: AsyncWrite + Unpin>(
    wr: &mut W,
    buf: &mut BytesMut,
    end: usize,
    publishes: u64,
    bp: &crate::broker::Backpressure,
) -> Result<(), GateError> {
    if end > 0 {
        let chunk = buf.split_to(end);
        wr.write_all(&chunk).await?;
        bp.forwarded(publishes);
    }
    Ok(())
}

/// Relays the broker's answer to a forwarded CONNECT to the device and says whether it
/// accepted (CONNACK with code 0, on 3.1.1 and 5 alike: the code follows the
/// acknowledge flags, right after the fixed header).
/// None: the broker closed or sent something else first, or took longer than `within`;
/// then nothing was sent to the device.
pub(super) async fn relay_connack<R, W>(
    up: &mut R,
    down: &mut W,
    within: std::time::Duration,
    v5: bool,
) -> Result<Option<bool>, GateError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = BytesMut::with_capacity(64);
    let read = tokio::time::timeout(within, async {
        loop {
            if let Some((h, rl)) = frame_len(&buf)? {
                if buf.len() >= h + rl {
                    return Ok::<_, GateError>(Some((h, rl)));
                }
            }
            if buf.len() > 1024 || up.read_buf(&mut buf).await? == 0 {
                return Ok(None);
            }
        }
    })
    .await;
    let Ok(Ok(Some((h, rl)))) = read else {
        return Ok(None);
    };
    if buf.first().map(|b| b >> 4) != Some(2) || rl < 2 {
        return Ok(None);
    }
    let accepted = buf[h + 1] == 0;
    // The CONNACK and anything the broker sent right after it; an MQTT 5 CONNACK that
    // accepts says how many unacknowledged QoS 1/2 messages the node takes (the broker
    // says nothing; Mosquitto says 20).
    if v5 && accepted {
        let frame = buf.split_to(h + rl);
        down.write_all(&with_receive_maximum(&frame, h)?).await?;
    }
    down.write_all(&buf).await?;
    Ok(Some(accepted))
}

/// The Session Expiry Interval property of an MQTT 5 DISCONNECT (fixed header of `h`
/// bytes), if it has one: reason code, then properties.
fn disconnect_expiry(frame: &[u8], h: usize) -> Option<u32> {
    let (vh, plen) = frame_len(frame.get(h..)?).ok()??;
    let mut at = h + vh;
    let end = (at + plen).min(frame.len());
    while at < end {
        let id = frame[at];
        at += 1;
        match id {
            0x11 => {
                let b = frame.get(at..at + 4)?;
                return Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
            }
            // Reason String, Server Reference: a length-prefixed string.
            0x1F | 0x1C => {
                at += 2 + usize::from(u16::from_be_bytes([*frame.get(at)?, *frame.get(at + 1)?]))
            }
            // User Property: two strings.
            0x26 => {
                let k = 2 + usize::from(u16::from_be_bytes([*frame.get(at)?, *frame.get(at + 1)?]));
                at += k
                    + 2
                    + usize::from(u16::from_be_bytes([
                        *frame.get(at + k)?,
                        *frame.get(at + k + 1)?,
                    ]));
            }
            _ => return None,
        }
    }
    None
}

/// The Receive Maximum the node advertises to MQTT 5 devices (MQTT 5 3.2.2.3.3).
pub(super) const RECEIVE_MAXIMUM: u16 = 100;

/// An accepting MQTT 5 CONNACK (fixed header of `h` bytes) with the node's Receive
/// Maximum added to its properties (the broker never sets one).
fn with_receive_maximum(frame: &[u8], h: usize) -> Result<Vec<u8>, GateError> {
    // Acknowledge flags and reason code, then the property length (a varint).
    let (vh, plen) =
        frame_len(frame.get(h + 1..).ok_or(GateError::Malformed)?)?.ok_or(GateError::Malformed)?;
    let props = frame
        .get(h + 1 + vh..h + 1 + vh + plen)
        .ok_or(GateError::Malformed)?;
    let mut added = props.to_vec();
    added.push(0x21);
    added.extend_from_slice(&RECEIVE_MAXIMUM.to_be_bytes());
    // The property block: its length as a varint (a packet's body, minus the type byte).
    let block = super::mqtt_acl::packet(0, &added);
    let mut body = frame[h..h + 2].to_vec();
    body.extend_from_slice(&block[1..]);
    Ok(super::mqtt_acl::packet(0x20, &body))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    async fn relay(bytes: &[u8]) -> (Option<bool>, Vec<u8>) {
        let mut down = Vec::new();
        let mut up = bytes;
        let v5 = bytes.get(1).is_some_and(|&l| l > 2);
        let r = relay_connack(&mut up, &mut down, std::time::Duration::from_secs(1), v5)
            .await
            .unwrap();
        (r, down)
    }

    #[tokio::test]
    async fn connacks_are_read_on_both_versions() {
        // 3.1.1 accepted, 3.1.1 refused (2: identifier rejected), 5 accepted with a
        // property, a 5 CONNACK whose remaining length takes two bytes (refused, 0x87).
        assert_eq!(relay(&[0x20, 2, 0, 0]).await.0, Some(true));
        assert_eq!(relay(&[0x20, 2, 0, 2]).await.0, Some(false));
        assert_eq!(
            relay(&[0x20, 6, 0, 0, 3, 0x22, 0x10, 0]).await.0,
            Some(true)
        );
        let mut long = vec![0x20, 0x83, 0x01, 0x00, 0x87, 0x7f];
        long.extend(std::iter::repeat_n(0u8, 128));
        long.push(0);
        let (r, down) = relay(&long[..3 + 131]).await;
        assert_eq!((r, down.len()), (Some(false), 134));
        // A CONNACK and a retained message right behind it: both reach the device.
        let (r, down) = relay(&[0x20, 2, 0, 0, 0x30, 3, 0, 1, b't']).await;
        assert_eq!((r, down.len()), (Some(true), 9));
        // Not a CONNACK, or the broker closed: nothing reaches the device.
        assert_eq!(relay(&[0x30, 3, 0, 1, b't']).await, (None, vec![]));
        assert_eq!(relay(&[]).await, (None, vec![]));
    }

    #[test]
    fn an_accepting_v5_connack_advertises_the_receive_maximum() {
        let none = with_receive_maximum(&[0x20, 0x03, 0x00, 0x00, 0x00], 2).unwrap();
        assert_eq!(none, [0x20, 0x06, 0x00, 0x00, 0x03, 0x21, 0x00, 100]);
        // Existing properties (Maximum QoS 1) are kept.
        let some = with_receive_maximum(&[0x20, 0x05, 0x00, 0x00, 0x02, 0x24, 0x01], 2).unwrap();
        assert_eq!(
            some,
            [0x20, 0x08, 0x00, 0x00, 0x05, 0x24, 0x01, 0x21, 0x00, 100]
        );
        assert!(with_receive_maximum(&[0x20, 0x03, 0x00, 0x00, 0x05], 2).is_err());
    }
}
