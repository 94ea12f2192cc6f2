//! The MQTT gate: device-facing listeners (plain and TLS, MQTT 3.1.1 and 5) in front of
//! rumqttd. It authenticates CONNECT against the store, then forwards the connection to
//! rumqttd's internal listener for that protocol version, inspecting every packet the
//! device sends: a PUBLISH or SUBSCRIBE outside `garasi/v1/vehicles/{own id}/` is
//! refused the way MQTT allows (`mqtt_acl.rs`: SUBACK failure codes, PUBACK 0x87 on 5,
//! a closed connection for a PUBLISH on 3.1.1) and counted; a last will outside it
//! refuses the CONNECT. The broker's packets reach the device unchanged but for the
//! SUBACK of a SUBSCRIBE forwarded in part (`mqtt_down.rs`). Slow and idle strangers are bounded:
//! one deadline from accept to CONNECT, caps on connections (`admit.rs`) that close the
//! oldest pending connection to make room, and rate-limited log lines.
//!
//! Trade-off (see ARCHITECTURE.md): one extra loopback hop per connection, in exchange
//! for ACLs that hold for password-authenticated devices on every listener, which
//! rumqttd's certificate-only tenant prefixes cannot give.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use rumqttd::protocol::{v4::V4, v5::V5, Login, Packet, Protocol};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::admit::{Admission, Slot};
use super::mqtt_acl::{topic_allowed, Acl};
use super::mqtt_down::{pump_down, Pending};
use super::mqtt_io::{read_connect, relay_connack, Upstream};
use super::mqtt_packets::read_u16;
use super::mqtt_packets::{connack_refused, GateError, Refusal};
use super::sessions::Start;
use super::to_broker::for_broker;
use crate::broker::BrokerHandle;
use crate::lograte::LogRate;
use crate::metrics::Metrics;
use crate::modules::auth::service::DeviceAuth;

/// From accept to a complete CONNECT, TLS handshake included: one deadline, so a slow
/// client cannot take 10 s for each step. Generous for a device on a poor cellular link
/// (a CONNECT is one small packet); pending connections are also closed earlier when
/// newer ones need their place (`admit.rs`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// From a complete CONNECT to the credentials' verdict. The verdict waits behind the
/// client address's earlier attempts; past this the device is told to come back.
const AUTH_TIMEOUT: Duration = Duration::from_secs(10);

// Lines any stranger can cause at will: a few a minute, then one summary (`lograte.rs`).
static AUTH_FAILED: LogRate = LogRate::warn("mqtt.device_auth_failed", 10);
pub(super) static ACL_REFUSED: LogRate = LogRate::warn("mqtt.acl_refused", 10);
static ACCEPT_FAILED: LogRate = LogRate::warn("mqtt.accept_failed", 5);

/// Shared state of all gate listeners.
pub struct Gate {
    pub auth: Arc<DeviceAuth>,
    pub broker: BrokerHandle,
    pub metrics: Arc<Metrics>,
    pub max_packet_bytes: usize,
    /// Connection caps shared by all listeners (`admit.rs`).
    pub admission: Arc<Admission>,
    pub shutdown: CancellationToken,
    pub tracker: TaskTracker,
    /// MQTT 5 session expiry, which the broker does not keep (`sessions.rs`).
    pub sessions: super::sessions::Sessions,
}

/// An accepted device connection, for the pumps.
struct Device<'a> {
    identity: &'a crate::modules::auth::service::DeviceIdentity,
    peer: SocketAddr,
    v5: bool,
    /// Its MQTT 5 session (broker client id, Session Expiry Interval, claim), if kept.
    session: Option<(String, u32, Start)>,
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
                        if ACCEPT_FAILED.allow() {
                            tracing::warn!(error = %e, "accept failed");
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            // Every place is held by a connected device: closed at once (counted).
            let Some(slot) = self.admission.admit(peer.ip()) else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let gate = self.clone();
            let tls = tls.clone();
            self.tracker.spawn(async move {
                gate.metrics.mqtt_connections.inc();
                let result = tokio::select! {
                    r = gate.clone().open(stream, peer, tls, &slot) => r,
                    () = slot.evicted() => Err(GateError::Evicted),
                };
                let before_connect = slot.is_pending();
                drop(slot);
                gate.metrics.mqtt_connections.dec();
                if let Err(e) = result {
                    if let Some(r) = e.protocol_reason() {
                        // The client's own fault before it authenticated: its pending
                        // connections go first among equals (`admit.rs`).
                        if before_connect {
                            gate.admission.strike(peer.ip());
                        }
                        gate.metrics
                            .mqtt_protocol_errors_total
                            .with_label_values(&[r])
                            .inc();
                    }
                    tracing::debug!(%peer, error = %e, "device connection closed");
                }
            });
            // Let the new connection read a CONNECT that is already there before the
            // next accept (tokio runs a just-spawned task next): in a burst, devices
            // leave the pending set before newer connections could push them out.
            tokio::task::yield_now().await;
        }
    }

    /// One connection: the TLS handshake (if any) and CONNECT within one deadline.
    async fn open(
        self: Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        tls: Option<TlsAcceptor>,
        slot: &Slot,
    ) -> Result<(), GateError> {
        let deadline = Instant::now() + CONNECT_TIMEOUT;
        match tls {
            None => self.handle(stream, peer, slot, deadline).await,
            Some(acc) => match timeout_at(deadline, acc.accept(stream)).await {
                Ok(Ok(s)) => self.handle(s, peer, slot, deadline).await,
                Ok(Err(e)) => Err(GateError::Io(e)),
                Err(_) => Err(GateError::Timeout),
            },
        }
    }

    async fn handle<S>(
        self: Arc<Self>,
        stream: S,
        peer: SocketAddr,
        slot: &Slot,
        deadline: Instant,
    ) -> Result<(), GateError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (mut rd, mut wr) = tokio::io::split(stream);
        let mut buf = BytesMut::with_capacity(8 * 1024);
        // 1. Read one complete CONNECT.
        let (hdr, total) = read_connect(&mut rd, &mut buf, self.max_packet_bytes, deadline).await?;
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
            Some(Login { username, password }) => {
                // A device that connected before with this password is protected at
                // once; others stay evictable until their password is checked.
                if self.auth.recognised(username, password) {
                    slot.connected();
                }
                let verdict = self.auth.verify(peer.ip(), username, password);
                // Not checked (no verdict in time, or too many waiting from this
                // address): come back later, not "bad credentials", which is final.
                let later = match tokio::time::timeout(AUTH_TIMEOUT, verdict).await {
                    Ok(Ok(identity)) => Ok(identity),
                    Ok(Err(crate::limit::Held::Wait(_))) => Ok(None),
                    Ok(Err(crate::limit::Held::Busy)) => Err("auth_busy"),
                    Err(_) => Err("auth_timeout"),
                };
                match later {
                    Ok(identity) => identity,
                    Err(reason) => {
                        self.count(reason);
                        let unavailable = connack_refused(v5, Refusal::Unavailable);
                        let _ = wr.write_all(&unavailable).await;
                        return Ok(());
                    }
                }
            }
            None => None,
        };
        // A charger's password opens the OCPP door only, never the broker.
        let identity = identity.filter(|i| i.kind.uses_mqtt());
        let Some(identity) = identity else {
            // The username is logged only when it could be a device id: an attacker's
            // 64 KiB of garbage never reaches the log.
            let user = login
                .as_ref()
                .map(|l| l.username.as_str())
                .filter(|u| crate::modules::auth::service::valid_id(u))
                .unwrap_or("(not a device id)");
            if AUTH_FAILED.allow() {
                tracing::warn!(%peer, username = user, "device authentication failed");
            }
            self.count("bad_credentials");
            self.admission.strike(peer.ip());
            let _ = wr
                .write_all(&connack_refused(v5, Refusal::BadCredentials))
                .await;
            return Ok(());
        };
        // An authenticated device: from now on this connection is never closed to make
        // room. (Until here it stayed pending, so connections queued for a password
        // check cannot fill the gate's places with nobody's devices.)
        slot.connected();
        self.admission.forgive(peer.ip());
        let ns = identity.namespace();
        if let Some(w) = &will {
            let topic = std::str::from_utf8(&w.topic).unwrap_or("");
            if !topic_allowed(&ns, topic) {
                if ACL_REFUSED.allow() {
                    tracing::warn!(%peer, device = %identity.id, topic, "last will outside namespace refused");
                }
                self.count("not_authorized");
                self.metrics.mqtt_acl_denied_total.inc();
                let _ = wr
                    .write_all(&connack_refused(v5, Refusal::NotAuthorized))
                    .await;
                return Ok(());
            }
        }
        // 3. Rewrite credentials for the internal listener (`for_broker`).
        if !for_broker(&mut connect, &identity.id) {
            self.count("client_id_rejected");
            let _ = wr
                .write_all(&connack_refused(v5, Refusal::ClientIdRejected))
                .await;
            return Ok(());
        }
        let session = self
            .session_start(&mut connect, props.as_ref(), v5, &identity.id)
            .await;
        let claim = super::sessions::Pending::new(&self.sessions, &identity.id, session.as_ref());
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
        // Counted and logged as connected only once the broker accepted: a connection
        // the broker refused or dropped is not a device.
        if !self.broker_accepted(&mut up_rd, &mut wr, v5).await? {
            return Ok(());
        }
        claim.keep();
        self.count("accepted");
        tracing::info!(%peer, device = %identity.id, protocol = if v5 { "5" } else { "3.1.1" }, "device connected");
        // 4. Pump both ways until either side closes, a rule is broken, or shutdown.
        let device = Device {
            identity: &identity,
            peer,
            v5,
            session,
        };
        self.pump(&mut rd, &mut wr, &mut up_rd, &mut up_wr, buf, device)
            .await
    }

    /// Pumps both ways until either side closes, a rule is broken, or shutdown. The
    /// gate's own answers (refusals) reach the device through the down pump, between the
    /// broker's packets.
    async fn pump<R, W, UR, UW>(
        &self,
        rd: &mut R,
        wr: &mut W,
        up_rd: &mut UR,
        up_wr: &mut UW,
        buf: BytesMut,
        device: Device<'_>,
    ) -> Result<(), GateError>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
        UR: AsyncRead + Unpin,
        UW: AsyncWrite + Unpin,
    {
        let (identity, peer, v5) = (device.identity, device.peer, device.v5);
        let session = device.session;
        // The interval a DISCONNECT may change (MQTT 5 3.14.2.2.2).
        let expiry = Arc::new(std::sync::atomic::AtomicU32::new(
            session.as_ref().map_or(0, |(_, e, _)| *e),
        ));
        let (answers, answers_rx) = tokio::sync::mpsc::channel(16);
        let pending = Pending::default();
        let down = pump_down(up_rd, wr, answers_rx, pending.clone(), v5);
        let ctx = Upstream {
            acl: Acl::new(identity.namespace(), &identity.id, v5),
            answers,
            pending,
            device: &identity.id,
            peer,
            session_expiry: expiry.clone(),
        };
        let up = self.pump_up(rd, up_wr, buf, ctx);
        let result = tokio::select! {
            r = up => r,
            r = down => r,
            _ = self.shutdown.cancelled() => Ok(()),
        };
        if let Some((id, _, start)) = session {
            let secs = expiry.load(std::sync::atomic::Ordering::Relaxed);
            self.sessions
                .ended(&identity.id, &id, start.generation, secs, Instant::now());
        }
        result
    }

    /// MQTT 5 Session Expiry (the broker keeps every such session for ever): a session
    /// past its interval is purged before the device's own connection, which then starts
    /// fresh and is kept like any other. Returns the broker client id and the interval.
    async fn session_start(
        &self,
        connect: &mut rumqttd::protocol::Connect,
        props: Option<&rumqttd::protocol::ConnectProperties>,
        v5: bool,
        device: &str,
    ) -> Option<(String, u32, Start)> {
        if !v5 || connect.client_id.is_empty() {
            return None;
        }
        let expiry = props.and_then(|p| p.session_expiry_interval).unwrap_or(0);
        let start = self
            .sessions
            .start(device, &connect.client_id, Instant::now());
        if !connect.clean_session && start.expired {
            if let Err(e) = self.purge_session(device, &connect.client_id).await {
                // Not purged: this connection starts clean instead (its own session is
                // then not kept by the broker, the lesser harm than resuming an old one).
                tracing::warn!(device, error = %e, "could not end an expired MQTT session");
                connect.clean_session = true;
            }
        }
        Some((connect.client_id.clone(), expiry, start))
    }

    /// Ends the broker's session `client_id` with a short Clean Start connection.
    async fn purge_session(&self, device: &str, client_id: &str) -> Result<(), GateError> {
        let connect = rumqttd::protocol::Connect {
            keep_alive: 10,
            client_id: client_id.to_string(),
            clean_session: true,
        };
        let login = Some(Login {
            username: device.to_string(),
            password: self.broker.secret().to_string(),
        });
        let mut out = BytesMut::new();
        V5.write(Packet::Connect(connect, None, None, None, login), &mut out)
            .map_err(|_| GateError::Malformed)?;
        let upstream = TcpStream::connect(self.broker.internal_v5).await?;
        let (mut rd, mut wr) = upstream.into_split();
        wr.write_all(&out).await?;
        let accepted =
            relay_connack(&mut rd, &mut tokio::io::sink(), CONNECT_TIMEOUT, false).await?;
        if accepted != Some(true) {
            return Err(GateError::Io(std::io::ErrorKind::ConnectionRefused.into()));
        }
        // DISCONNECT, normal: the clean session ends and is not kept. Wait for the broker
        // to close it, so the device's own CONNECT never races this connection's end.
        wr.write_all(&[0xE0, 0x00]).await?;
        let mut sink = [0u8; 64];
        let _ = tokio::time::timeout(CONNECT_TIMEOUT, async {
            while matches!(tokio::io::AsyncReadExt::read(&mut rd, &mut sink).await, Ok(n) if n > 0)
            {
            }
        })
        .await;
        Ok(())
    }

    /// Relays the broker's CONNACK; true when it accepted the device (a refusal or no
    /// answer is counted, and the device told "unavailable" when nothing came).
    async fn broker_accepted<R, W>(
        &self,
        up: &mut R,
        down: &mut W,
        v5: bool,
    ) -> Result<bool, GateError>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let answer = tokio::select! {
            r = relay_connack(up, down, CONNECT_TIMEOUT, v5) => r?,
            _ = self.shutdown.cancelled() => return Ok(false),
        };
        match answer {
            Some(true) => return Ok(true),
            Some(false) => self.count("broker_refused"),
            None => {
                self.count("broker_unavailable");
                let _ = down
                    .write_all(&connack_refused(v5, Refusal::Unavailable))
                    .await;
            }
        }
        Ok(false)
    }

    fn count(&self, result: &str) {
        self.metrics
            .mqtt_connects_total
            .with_label_values(&[result])
            .inc();
    }
}
