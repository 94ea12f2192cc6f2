//! The embedded MQTT broker: rumqttd in-process, reachable by devices only through the
//! authenticating gate (`gate.rs`), and by modules through in-process local links.
//!
//! rumqttd has no topic ACLs and no publish hook, and its tenant prefixes need client
//! certificates. So devices never reach rumqttd directly: the gate terminates their
//! connections, checks the CONNECT credentials against argon2 hashes in the encrypted
//! store, and forwards only packets whose topics lie in the device's own namespace to
//! rumqttd's internal listeners on loopback, which accept nothing but a per-process secret.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream as StdStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rand::RngCore;
use rumqttd::local::{LinkRx, LinkTx};
use rumqttd::{Broker, Config as RumqttdConfig, ConnectionSettings, RouterConfig, ServerSettings};

use crate::config::BrokerConfig;
use crate::metrics::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("cannot reserve a loopback port for the internal broker listener: {0}")]
    Reserve(std::io::Error),
    #[error("the internal broker listener on {0} did not come up within 5 s (rumqttd only logs bind failures; is the port taken?)")]
    NotListening(SocketAddr),
    #[error("cannot open a local broker link: {0}")]
    Link(String),
    #[error("local links must be opened before the broker starts listening")]
    AlreadyStarted,
    #[error("could not start broker thread: {0}")]
    Thread(std::io::Error),
}

/// End-to-end flow control between device connections and ingest.
///
/// rumqttd acknowledges a QoS 1 publish as soon as it is in the router's log and drops
/// the oldest log segment when a subscriber falls behind, so a flood from devices would
/// be acknowledged and then lost. The gate counts the PUBLISH packets it forwards, ingest
/// counts what it receives; while the difference (messages sitting in the router) is
/// above `limit`, the gate stops reading device sockets. TCP and MQTT flow control then
/// slow the devices down instead.
pub struct Backpressure {
    forwarded: AtomicU64,
    ingested: AtomicU64,
    /// Forwarded messages the router will never deliver to ingest (e.g. an empty retained
    /// payload that only clears a retained message), written off so they cannot block.
    written_off: AtomicU64,
    limit: u64,
}

impl Backpressure {
    pub fn new(limit: u64) -> Self {
        Backpressure {
            forwarded: AtomicU64::new(0),
            ingested: AtomicU64::new(0),
            written_off: AtomicU64::new(0),
            limit,
        }
    }

    pub fn forwarded(&self, n: u64) {
        self.forwarded.fetch_add(n, Ordering::Relaxed);
    }

    pub fn ingested(&self, n: u64) {
        self.ingested.fetch_add(n, Ordering::Relaxed);
    }

    /// Messages forwarded to the router that ingest has not received yet.
    pub fn backlog(&self) -> u64 {
        let done = self.ingested.load(Ordering::Relaxed) + self.written_off.load(Ordering::Relaxed);
        self.forwarded.load(Ordering::Relaxed).saturating_sub(done)
    }

    /// Waits while the backlog is over the limit. If ingest makes no progress for 2 s the
    /// backlog cannot be real (those messages are not coming): it is written off and
    /// logged, so a counting mismatch can slow devices but never stall them.
    pub async fn wait_for_room(&self) {
        if self.backlog() <= self.limit {
            return;
        }
        let mut seen = self.ingested.load(Ordering::Relaxed);
        let mut since = Instant::now();
        while self.backlog() > self.limit {
            tokio::time::sleep(Duration::from_millis(1)).await;
            let now = self.ingested.load(Ordering::Relaxed);
            if now != seen {
                seen = now;
                since = Instant::now();
            } else if since.elapsed() > Duration::from_secs(2) {
                let b = self.backlog();
                self.written_off.fetch_add(b, Ordering::Relaxed);
                tracing::warn!(
                    backlog = b,
                    "ingest made no progress for 2 s; backlog written off"
                );
                return;
            }
        }
    }
}

/// Handle modules use to open in-process links before the broker starts listening.
#[derive(Clone)]
pub struct BrokerHandle {
    inner: Arc<Mutex<Option<Broker>>>,
    pub internal_v4: SocketAddr,
    pub internal_v5: SocketAddr,
    secret: Arc<String>,
    pub backpressure: Arc<Backpressure>,
}

fn reserve_port() -> Result<SocketAddr, BrokerError> {
    // rumqttd binds by address itself; reserve a free port and hand it over. The short
    // window in which another process could take it is caught by `wait_listening`.
    let l = StdListener::bind("127.0.0.1:0").map_err(BrokerError::Reserve)?;
    l.local_addr().map_err(BrokerError::Reserve)
}

fn wait_listening(addr: SocketAddr) -> Result<(), BrokerError> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if StdStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(BrokerError::NotListening(addr))
}

impl BrokerHandle {
    /// Creates the router (running) and picks internal listener ports (not yet listening).
    pub fn new(cfg: &BrokerConfig) -> Result<BrokerHandle, BrokerError> {
        let mut raw = [0u8; 32];
        rand::rng().fill_bytes(&mut raw);
        let secret = Arc::new(hex::encode(raw));
        let internal_v4 = reserve_port()?;
        let internal_v5 = reserve_port()?;
        let mut conn = ConnectionSettings {
            connection_timeout_ms: 10_000,
            max_payload_size: cfg.max_packet_bytes,
            max_inflight_count: 500,
            auth: None,
            external_auth: None,
            // Off: a publish to a topic nobody subscribes to is dropped instead of
            // growing a new router log per topic (unbounded memory).
            dynamic_filters: false,
        };
        let s = secret.clone();
        conn.set_auth_handler(move |_client, _user, pass: String| {
            let ok = subtle::ConstantTimeEq::ct_eq(pass.as_bytes(), s.as_bytes()).into();
            async move { ok }
        });
        let server = |name: &str, listen| ServerSettings {
            name: name.into(),
            listen,
            tls: None,
            next_connection_delay_ms: 0,
            connections: conn.clone(),
        };
        let config = RumqttdConfig {
            id: 0,
            router: RouterConfig {
                max_connections: cfg.max_connections + 16,
                max_outgoing_packet_count: 1000,
                max_segment_size: cfg.segment_bytes,
                max_segment_count: cfg.segment_count,
                custom_segment: None,
                initialized_filters: None,
                shared_subscriptions_strategy: Default::default(),
            },
            v4: Some(HashMap::from([(
                "internal-v4".to_string(),
                server("internal-v4", internal_v4),
            )])),
            v5: Some(HashMap::from([(
                "internal-v5".to_string(),
                server("internal-v5", internal_v5),
            )])),
            ..Default::default()
        };
        let broker = Broker::new(config);
        // Well under what the ingest filter's log holds (segment_bytes x segment_count at a
        // few hundred bytes per message), so the router never has to drop for ingest.
        let limit = (cfg.segment_bytes * cfg.segment_count / 1024).clamp(1000, 20_000) as u64;
        Ok(BrokerHandle {
            inner: Arc::new(Mutex::new(Some(broker))),
            internal_v4,
            internal_v5,
            secret,
            backpressure: Arc::new(Backpressure::new(limit)),
        })
    }

    /// Opens an in-process link (before [`BrokerHandle::start`]).
    pub fn link(&self, client_id: &str) -> Result<(LinkTx, LinkRx), BrokerError> {
        let guard = self.inner.lock();
        let broker = guard.as_ref().ok_or(BrokerError::AlreadyStarted)?;
        broker
            .link(client_id)
            .map_err(|e| BrokerError::Link(e.to_string()))
    }

    /// Starts rumqttd's internal listeners on their own thread and waits until they accept.
    /// Cursor-jump alerts (ingest fell behind the router log) are counted.
    pub fn start(&self, metrics: Arc<Metrics>) -> Result<(), BrokerError> {
        let mut broker = self
            .inner
            .lock()
            .take()
            .ok_or(BrokerError::AlreadyStarted)?;
        let alerts = broker
            .alerts()
            .map_err(|e| BrokerError::Link(e.to_string()))?;
        std::thread::Builder::new()
            .name("broker-alerts".into())
            .spawn(move || {
                while let Ok(batch) = alerts.recv() {
                    for a in batch {
                        // rumqttd exports `Alert` but not its kind enum; read it through serde.
                        let kind = serde_json::to_value(&a.kind).unwrap_or_default();
                        if let Some(lost) = kind.pointer("/CursorJump/lost").and_then(|v| v.as_u64()) {
                            metrics.broker_cursor_jumps_total.inc_by(lost);
                            tracing::warn!(lost, client = %a.client_id, "a subscriber fell behind the broker log; messages dropped");
                        }
                    }
                }
            })
            .map_err(BrokerError::Thread)?;
        std::thread::Builder::new()
            .name("broker".into())
            .spawn(move || {
                if let Err(e) = broker.start() {
                    tracing::error!(error = %e, "embedded broker stopped");
                }
            })
            .map_err(BrokerError::Thread)?;
        wait_listening(self.internal_v4)?;
        wait_listening(self.internal_v5)?;
        Ok(())
    }

    pub(crate) fn secret(&self) -> &str {
        &self.secret
    }
}
