//! The MQTT gate: device-facing listeners (plain and TLS, MQTT 3.1.1 and 5) in front of
//! rumqttd. It authenticates CONNECT against the store, then forwards the connection to
//! rumqttd's internal listener for that protocol version, inspecting every packet the
//! device sends: a PUBLISH or SUBSCRIBE outside `garasi/v1/vehicles/{own id}/` (and a
//! last-will topic outside it) closes the connection and is counted. Bytes from the
//! broker to the device are copied untouched.
//!
//! Trade-off (see ARCHITECTURE.md): one extra loopback hop per connection, in exchange
//! for ACLs that hold for password-authenticated devices on every listener, which
//! rumqttd's certificate-only tenant prefixes cannot give.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use rumqttd::protocol::{v4::V4, v5::V5, Login, Packet, Protocol};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::BrokerHandle;
use crate::metrics::Metrics;
use crate::modules::auth::{DeviceAuth, DeviceIdentity};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
enum GateError {
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
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Shared state of all gate listeners.
pub struct Gate {
    pub auth: Arc<DeviceAuth>,
    pub broker: BrokerHandle,
    pub metrics: Arc<Metrics>,
    pub max_packet_bytes: usize,
    pub shutdown: CancellationToken,
    pub tracker: TaskTracker,
}

/// Loads a rustls acceptor from PEM files.
pub fn tls_acceptor(cert: &std::path::Path, key: &std::path::Path) -> Result<TlsAcceptor, String> {
    use tokio_rustls::rustls;
    let read = |p: &std::path::Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let certs: Vec<_> = rustls_pemfile::certs(&mut &read(cert)?[..])
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: not a PEM certificate chain: {e}", cert.display()))?;
    let key_der = rustls_pemfile::private_key(&mut &read(key)?[..])
        .map_err(|e| format!("{}: {e}", key.display()))?
        .ok_or_else(|| format!("{}: no private key found in the PEM file", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| format!("TLS certificate/key rejected: {e}"))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

impl Gate {
    /// Accepts device connections on an already-bound listener until shutdown.
    pub async fn serve(
        self: Arc<Self>,
        listener: std::net::TcpListener,
        tls: Option<TlsAcceptor>,
    ) -> std::io::Result<()> {
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        loop {
            let (stream, peer) = tokio::select! {
                _ = self.shutdown.cancelled() => return Ok(()),
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let _ = stream.set_nodelay(true);
            let gate = self.clone();
            let tls = tls.clone();
            self.tracker.spawn(async move {
                gate.metrics.mqtt_connections.inc();
                let result = match tls {
                    None => gate.clone().handle(stream, peer).await,
                    Some(acc) => {
                        match tokio::time::timeout(CONNECT_TIMEOUT, acc.accept(stream)).await {
                            Ok(Ok(s)) => gate.clone().handle(s, peer).await,
                            Ok(Err(e)) => Err(GateError::Io(e)),
                            Err(_) => Err(GateError::Timeout),
                        }
                    }
                };
                gate.metrics.mqtt_connections.dec();
                if let Err(e) = result {
                    let reason = match &e {
                        GateError::Malformed | GateError::Reconnect => Some("malformed"),
                        GateError::Oversized(_) => Some("oversized"),
                        GateError::Timeout => Some("timeout"),
                        GateError::Acl(_) => None,
                        GateError::Io(_) => None,
                    };
                    if let Some(r) = reason {
                        gate.metrics
                            .mqtt_protocol_errors_total
                            .with_label_values(&[r])
                            .inc();
                    }
                    tracing::debug!(%peer, error = %e, "device connection closed");
                }
            });
        }
    }

    async fn handle<S>(self: Arc<Self>, stream: S, peer: SocketAddr) -> Result<(), GateError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (mut rd, mut wr) = tokio::io::split(stream);
        let mut buf = BytesMut::with_capacity(8 * 1024);
        // 1. Read one complete CONNECT.
        let (hdr, total) = tokio::time::timeout(CONNECT_TIMEOUT, async {
            loop {
                // The first packet must be CONNECT (0x10): anything else (an HTTP
                // request, a PUBLISH) is refused at once, not after the timeout.
                if buf.first().is_some_and(|b| *b != 0x10) {
                    return Err(GateError::Malformed);
                }
                if let Some((h, rl)) = frame_len(&buf)? {
                    let total = h + rl;
                    if total > self.max_packet_bytes {
                        return Err(GateError::Oversized(total));
                    }
                    if buf.len() >= total {
                        return Ok((h, total));
                    }
                }
                if rd.read_buf(&mut buf).await? == 0 {
                    return Err(GateError::Io(std::io::ErrorKind::UnexpectedEof.into()));
                }
            }
        })
        .await
        .map_err(|_| GateError::Timeout)??;
        if buf[0] >> 4 != 1 {
            return Err(GateError::Malformed);
        }
        // Variable header: protocol name (u16 length + bytes), then the level byte.
        let name_len = read_u16(&buf, hdr)? as usize;
        let level = *buf.get(hdr + 2 + name_len).ok_or(GateError::Malformed)?;
        let v5 = match (
            &buf[hdr + 2..hdr + 2 + name_len.min(buf.len() - hdr - 2)],
            level,
        ) {
            (b"MQTT", 4) => false,
            (b"MQTT", 5) => true,
            _ => {
                // MQTT 3.1 ("MQIsdp") or garbage: answer in 3.1.1 form, then close.
                let _ = wr.write_all(&[0x20, 0x02, 0x00, 0x01]).await;
                self.count("unsupported_protocol");
                return Ok(());
            }
        };
        let mut frame = buf.split_to(total);
        let packet = if v5 {
            V5.read_mut(&mut frame, self.max_packet_bytes)
        } else {
            V4.read_mut(&mut frame, self.max_packet_bytes)
        }
        .map_err(|_| GateError::Malformed)?;
        let Packet::Connect(mut connect, props, will, will_props, login) = packet else {
            return Err(GateError::Malformed);
        };
        // 2. Authenticate.
        let identity = match &login {
            Some(Login { username, password }) => self.auth.verify(username, password).await,
            None => None,
        };
        let Some(identity) = identity else {
            let user = login.as_ref().map(|l| l.username.as_str()).unwrap_or("");
            tracing::warn!(%peer, username = user, "device authentication failed");
            self.count("bad_credentials");
            let _ = wr
                .write_all(&connack_refused(v5, Refusal::BadCredentials))
                .await;
            return Ok(());
        };
        let ns = identity.namespace();
        if let Some(w) = &will {
            let topic = std::str::from_utf8(&w.topic).unwrap_or("");
            if !topic_allowed(&ns, topic) {
                tracing::warn!(%peer, device = %identity.id, topic, "last will outside namespace refused");
                self.count("not_authorized");
                self.metrics.mqtt_acl_denied_total.inc();
                let _ = wr
                    .write_all(&connack_refused(v5, Refusal::NotAuthorized))
                    .await;
                return Ok(());
            }
        }
        // 3. Rewrite credentials for the internal listener; namespace the client id so
        //    two devices can never take over each other's session (device ids have no dots).
        if !connect.client_id.is_empty() {
            connect.client_id = format!("{}.{}", identity.id, connect.client_id);
        }
        let login = Some(Login {
            username: identity.id.clone(),
            password: self.broker.secret().to_string(),
        });
        let mut out = BytesMut::with_capacity(total + 64);
        let packet = Packet::Connect(connect, props, will, will_props, login);
        if v5 {
            V5.write(packet, &mut out)
        } else {
            V4.write(packet, &mut out)
        }
        .map_err(|_| GateError::Malformed)?;
        let upstream_addr = if v5 {
            self.broker.internal_v5
        } else {
            self.broker.internal_v4
        };
        let upstream = match TcpStream::connect(upstream_addr).await {
            Ok(s) => s,
            Err(e) => {
                self.count("broker_unavailable");
                let _ = wr
                    .write_all(&connack_refused(v5, Refusal::Unavailable))
                    .await;
                return Err(e.into());
            }
        };
        let _ = upstream.set_nodelay(true);
        let (mut up_rd, mut up_wr) = upstream.into_split();
        up_wr.write_all(&out).await?;
        self.count("accepted");
        tracing::info!(%peer, device = %identity.id, protocol = if v5 { "5" } else { "3.1.1" }, "device connected");
        // 4. Pump both ways until either side closes, a rule is broken, or shutdown.
        let down = async {
            tokio::io::copy(&mut up_rd, &mut wr).await?;
            let _ = wr.shutdown().await;
            Ok::<(), GateError>(())
        };
        let up = self.pump_up(&mut rd, &mut up_wr, buf, &identity, v5);
        let result = tokio::select! {
            r = up => r,
            r = down => r,
            _ = self.shutdown.cancelled() => Ok(()),
        };
        if let Err(GateError::Acl(topic)) = &result {
            self.metrics.mqtt_acl_denied_total.inc();
            tracing::warn!(%peer, device = %identity.id, topic, "publish/subscribe outside the device namespace: connection closed");
        }
        result
    }

    /// Device -> broker: forwards whole packets after checking their topics.
    async fn pump_up<R, W>(
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

    fn count(&self, result: &str) {
        self.metrics
            .mqtt_connects_total
            .with_label_values(&[result])
            .inc();
    }
}

enum Refusal {
    BadCredentials,
    NotAuthorized,
    Unavailable,
}

fn connack_refused(v5: bool, r: Refusal) -> Vec<u8> {
    if v5 {
        let code = match r {
            Refusal::BadCredentials => 0x86,
            Refusal::NotAuthorized => 0x87,
            Refusal::Unavailable => 0x88,
        };
        vec![0x20, 0x03, 0x00, code, 0x00]
    } else {
        let code = match r {
            Refusal::BadCredentials => 0x04,
            Refusal::NotAuthorized => 0x05,
            Refusal::Unavailable => 0x03,
        };
        vec![0x20, 0x02, 0x00, code]
    }
}

/// Length of the fixed header and of the rest of the packet, once the header is complete.
fn frame_len(buf: &[u8]) -> Result<Option<(usize, usize)>, GateError> {
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

fn read_u16(buf: &[u8], at: usize) -> Result<u16, GateError> {
    match (buf.get(at), buf.get(at + 1)) {
        (Some(a), Some(b)) => Ok(u16::from_be_bytes([*a, *b])),
        _ => Err(GateError::Malformed),
    }
}

/// A topic name a device may publish to: inside its namespace, no wildcards.
fn topic_allowed(ns: &str, topic: &str) -> bool {
    topic.len() > ns.len() && topic.starts_with(ns) && !topic.contains(['+', '#'])
}

/// A filter a device may subscribe to: inside its namespace (wildcards only below it).
fn filter_allowed(ns: &str, filter: &str) -> bool {
    filter.len() > ns.len() && filter.starts_with(ns)
}

fn utf8(b: &[u8]) -> Result<&str, GateError> {
    std::str::from_utf8(b).map_err(|_| GateError::Malformed)
}

/// Checks one complete packet (`frame`, fixed header of `h` bytes) from a device; true
/// when it is a PUBLISH (which ingest will receive).
fn check_packet(frame: &[u8], h: usize, ns: &str, v5: bool) -> Result<bool, GateError> {
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
