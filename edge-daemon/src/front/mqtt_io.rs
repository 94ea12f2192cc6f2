//! Reading whole MQTT packets from a device for the gate (`mqtt.rs`): the first CONNECT,
//! within the connection's deadline, then the device-to-broker pump that checks each
//! packet's topics before forwarding it.

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{timeout_at, Instant};

use super::mqtt::Gate;
use super::mqtt_packets::{check_packet, frame_len, GateError};
use crate::modules::auth::service::DeviceIdentity;

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

impl Gate {
    /// Device -> broker: forwards whole packets after checking their topics.
    pub(super) async fn pump_up<R, W>(
        &self,
        rd: &mut R,
        wr: &mut W,
        mut buf: BytesMut,
        id: &DeviceIdentity,
        v5: bool,
    ) -> Result<(), GateError>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let ns = id.namespace();
        let bp = &self.broker.backpressure;
        let mut publishes = 0u64;
        loop {
            let mut end = 0;
            while let Some((h, rl)) = frame_len(&buf[end..])? {
                let total = h + rl;
                if total > self.max_packet_bytes {
                    return Err(GateError::Oversized(total));
                }
                if buf.len() - end < total {
                    break;
                }
                if check_packet(&buf[end..end + total], h, &ns, v5)? {
                    publishes += 1;
                }
                end += total;
            }
            if end > 0 {
                let chunk = buf.split_to(end);
                wr.write_all(&chunk).await?;
                bp.forwarded(publishes);
                publishes = 0;
            }
            // Flow control: read no more from this device while ingest is behind.
            bp.wait_for_room().await;
            if rd.read_buf(&mut buf).await? == 0 {
                return Ok(());
            }
        }
    }
}
