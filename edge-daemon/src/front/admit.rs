//! Which device connections the MQTT gate keeps: a total cap kept below the process's
//! open-files limit (less a reserve for SQLite, HTTP and the broker), and a cap on
//! connections that have not sent a complete CONNECT yet ("pending"), overall and per
//! client (IPv4 address or IPv6 /64). A full pending cap never refuses the newcomer: the
//! oldest pending connection of the client holding the most pending ones is closed
//! instead, so an attacker holding slow sockets pushes out its own sockets first and
//! cannot starve a real device, which sends its CONNECT at once. Among clients holding
//! as many, one that misbehaved in the last minute (a slow connection closed to make
//! room, wrong credentials, no CONNECT in time, a malformed one, all before
//! authenticating) loses first, so many attacking addresses with one slow socket each
//! cannot push out a device that just connected from a clean address; a device that
//! authenticates clears its address. Connections past CONNECT are never closed to make
//! room.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use prometheus::{IntCounterVec, IntGauge, Opts, Registry};
use tokio_util::sync::CancellationToken;

use crate::config::BrokerConfig;
use crate::limit::client_key;
use garasi_net::{open_files, open_files_limit};

/// Descriptors one accepted device costs this process: its socket, the gate's loopback
/// connection to rumqttd, and rumqttd's end of that connection.
pub const FDS_PER_DEVICE: usize = 3;
/// How often the process's open descriptors are counted (a /proc directory read).
const FD_SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// How long a client's misbehaviour puts its pending connections first in line to close.
const STRIKE_FOR: Duration = Duration::from_secs(60);
/// Clients with a recent strike remembered at most: bounded memory whatever the number
/// of addresses. When full, expired strikes are forgotten, else the oldest eighth.
const MAX_STRIKES: usize = 4096;
/// A connection closed to make room strikes its client only if it had been pending this
/// long: a device sends its CONNECT within a round trip, so a fresh connection closed in
/// a flood is the flood's victim, not a suspect (its retry must not go first).
const SLOW_PENDING: Duration = Duration::from_secs(1);

/// The caps in force (configured values lowered to what the descriptor limit allows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    pub total: usize,
    pub pending: usize,
    pub pending_per_client: usize,
    /// Open descriptors (the whole process: HTTP too) above which the gate takes no new
    /// connection: the open-files limit less the reserve. None when the limit is unknown.
    pub fd_ceiling: Option<usize>,
}

impl Caps {
    /// The configured caps, lowered so that every admitted connection, fully connected,
    /// still leaves `fd_reserve` descriptors free (measured from what is open now) for
    /// HTTP and the store. The process-wide ceiling keeps only `store_reserve` free: the
    /// HTTP server's own cap already leaves the gate its share (see `node`), so the
    /// ceiling only guards against what neither cap counts.
    pub fn from_config(cfg: &BrokerConfig, store_reserve: usize) -> Caps {
        let mut total = cfg.max_connections;
        let limit = open_files_limit();
        if let Some(limit) = limit {
            let room = limit.saturating_sub(cfg.fd_reserve + open_files().unwrap_or(64));
            let by_fds = (room / FDS_PER_DEVICE).max(1);
            if by_fds < total {
                tracing::warn!(
                    max_connections = total,
                    effective = by_fds,
                    nofile = limit,
                    fd_reserve = cfg.fd_reserve,
                    "the open-files limit allows fewer MQTT connections than configured: \
                     raise `ulimit -n` (LimitNOFILE=) to serve more devices"
                );
                total = by_fds;
            }
        }
        let pending = cfg.max_pending_connects.clamp(1, total.max(1));
        Caps {
            total: total.max(1),
            pending,
            pending_per_client: cfg.max_pending_per_client.clamp(1, pending),
            fd_ceiling: limit.map(|l| l.saturating_sub(store_reserve.min(cfg.fd_reserve))),
        }
    }
}

struct Pending {
    client: IpAddr,
    evict: CancellationToken,
    since: Instant,
}

#[derive(Default)]
struct Inner {
    next_id: u64,
    total: usize,
    /// By admission order: the first entry is the oldest.
    pending: BTreeMap<u64, Pending>,
    per_client: HashMap<IpAddr, usize>,
    /// Clients (by `client_key`) and when they last misbehaved.
    strikes: HashMap<IpAddr, Instant>,
    /// The process's open descriptors when last counted.
    fds_open: usize,
    fds_counted: Option<Instant>,
}

impl Inner {
    fn forget_pending(&mut self, id: u64) -> Option<Pending> {
        let p = self.pending.remove(&id)?;
        if let Some(n) = self.per_client.get_mut(&p.client) {
            *n -= 1;
            if *n == 0 {
                self.per_client.remove(&p.client);
            }
        }
        Some(p)
    }

    /// Remembers that `client` misbehaved now. When the memory is full, expired strikes
    /// are forgotten, else the oldest eighth: one scan of `MAX_STRIKES` per that many
    /// new addresses, not one per strike.
    fn strike(&mut self, client: IpAddr, now: Instant) {
        if self.strikes.len() >= MAX_STRIKES && !self.strikes.contains_key(&client) {
            self.strikes
                .retain(|_, t| now.saturating_duration_since(*t) < STRIKE_FOR);
            if self.strikes.len() >= MAX_STRIKES {
                let mut times: Vec<Instant> = self.strikes.values().copied().collect();
                let cut = *times.select_nth_unstable(MAX_STRIKES / 8).1;
                self.strikes.retain(|_, t| *t > cut);
            }
        }
        self.strikes.insert(client, now);
    }

    fn suspect(&self, client: &IpAddr, now: Instant) -> bool {
        self.strikes
            .get(client)
            .is_some_and(|t| now.saturating_duration_since(*t) < STRIKE_FOR)
    }

    /// Closes the oldest pending connection of `client` (or, with None, of the client
    /// ranked first: the one holding the most pending connections; among equals, one
    /// that misbehaved recently before one that did not). Its slot is released now; the
    /// client gets a strike if the connection had been pending `SLOW_PENDING`.
    fn evict(&mut self, client: Option<IpAddr>, now: Instant) -> bool {
        // One pass in age order: the first entry of the best rank is the oldest of it.
        let mut best: Option<(u64, (usize, bool))> = None;
        for (id, p) in &self.pending {
            let rank = match client {
                Some(c) if p.client == c => {
                    best = Some((*id, (0, false)));
                    break;
                }
                Some(_) => continue,
                None => (
                    self.per_client.get(&p.client).copied().unwrap_or(0),
                    self.suspect(&p.client, now),
                ),
            };
            if best.is_none_or(|(_, b)| rank > b) {
                best = Some((*id, rank));
            }
        }
        match best.and_then(|(id, _)| self.forget_pending(id)) {
            Some(p) => {
                p.evict.cancel();
                self.total -= 1;
                if now.saturating_duration_since(p.since) >= SLOW_PENDING {
                    self.strike(p.client, now);
                }
                true
            }
            None => false,
        }
    }
}

/// The gate's connection registry, shared by all its listeners.
pub struct Admission {
    caps: Caps,
    inner: Mutex<Inner>,
    evicted: IntCounterVec,
    refused: IntCounterVec,
    pending_gauge: IntGauge,
}

/// One admitted connection; dropping it frees its place.
pub struct Slot {
    admission: Arc<Admission>,
    id: u64,
    evict: CancellationToken,
}

impl Admission {
    /// The registry, its metrics registered in the node's registry.
    pub fn new(caps: Caps, registry: &Registry) -> Result<Arc<Admission>, prometheus::Error> {
        use crate::metrics::register;
        let evicted = register(
            registry,
            IntCounterVec::new(
                Opts::new(
                    "mqtt_connections_evicted_total",
                    "Device connections without a complete CONNECT closed to make room, by cap",
                ),
                &["reason"],
            )?,
        )?;
        let refused = register(
            registry,
            IntCounterVec::new(
                Opts::new(
                    "mqtt_connections_refused_total",
                    "Device connections closed at accept, by cap",
                ),
                &["reason"],
            )?,
        )?;
        let pending_gauge = register(
            registry,
            IntGauge::new(
                "mqtt_pending_connections",
                "Device connections that have not sent a complete CONNECT yet",
            )?,
        )?;
        let limit = register(
            registry,
            IntGauge::new(
                "mqtt_connection_limit",
                "Device connections the gate keeps at most (after the open-files limit)",
            )?,
        )?;
        limit.set(i64::try_from(caps.total).unwrap_or(i64::MAX));
        Ok(Arc::new(Admission {
            caps,
            inner: Mutex::new(Inner::default()),
            evicted,
            refused,
            pending_gauge,
        }))
    }

    /// A place for a new connection from `ip`, making room by closing pending
    /// connections; None (counted) only when every place is taken by a connection past
    /// CONNECT.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Slot> {
        let client = client_key(ip);
        let mut m = self.inner.lock();
        // Taken under the lock: another thread's sample time is never after it.
        let now = Instant::now();
        if m.per_client.get(&client).copied().unwrap_or(0) >= self.caps.pending_per_client
            && m.evict(Some(client), now)
        {
            self.evicted
                .with_label_values(&["client_pending_cap"])
                .inc();
        }
        if m.pending.len() >= self.caps.pending && m.evict(None, now) {
            self.evicted.with_label_values(&["pending_cap"]).inc();
        }
        // The gate's own cap, or the whole process near its descriptor limit (the HTTP
        // server shares it): only a pending connection may make room.
        let fds_short = self.fds_short(&mut m, now);
        if m.total >= self.caps.total || fds_short {
            let reason = if fds_short {
                "fd_reserve"
            } else {
                "connection_cap"
            };
            if !m.evict(None, now) {
                self.refused.with_label_values(&[reason]).inc();
                return None;
            }
            self.evicted.with_label_values(&[reason]).inc();
        }
        m.next_id += 1;
        let id = m.next_id;
        let evict = CancellationToken::new();
        m.pending.insert(
            id,
            Pending {
                client,
                evict: evict.clone(),
                since: now,
            },
        );
        *m.per_client.entry(client).or_default() += 1;
        m.total += 1;
        self.pending_gauge.set(m.pending.len() as i64);
        Some(Slot {
            admission: self.clone(),
            id,
            evict,
        })
    }

    /// `ip` misbehaved (wrong credentials, no CONNECT in time, a malformed or oversized
    /// one): its pending connections are closed first for a while.
    pub fn strike(&self, ip: IpAddr) {
        let mut m = self.inner.lock();
        m.strike(client_key(ip), Instant::now());
    }

    /// A device authenticated from `ip`: its address is trusted again (a device closed
    /// once to make room is not first in line for the next minute).
    pub fn forgive(&self, ip: IpAddr) {
        self.inner.lock().strikes.remove(&client_key(ip));
    }

    /// True when one more device would eat into the descriptor reserve.
    fn fds_short(&self, m: &mut Inner, now: Instant) -> bool {
        let Some(ceiling) = self.caps.fd_ceiling else {
            return false;
        };
        if m.fds_counted
            .is_none_or(|t| now.saturating_duration_since(t) >= FD_SAMPLE_EVERY)
        {
            m.fds_open = open_files().unwrap_or(0);
            m.fds_counted = Some(now);
        }
        m.fds_open + FDS_PER_DEVICE > ceiling
    }

    /// (all, pending) connections held now.
    pub fn counts(&self) -> (usize, usize) {
        let m = self.inner.lock();
        (m.total, m.pending.len())
    }
}

impl Slot {
    /// The connection sent its CONNECT: it can no longer be closed to make room.
    pub fn connected(&self) {
        let mut m = self.admission.inner.lock();
        m.forget_pending(self.id);
        self.admission.pending_gauge.set(m.pending.len() as i64);
    }

    /// True until the connection authenticated (or repeated a password the gate knows),
    /// or was closed.
    pub fn is_pending(&self) -> bool {
        self.admission.inner.lock().pending.contains_key(&self.id)
    }

    /// Fires when the connection was closed to make room for a newer one.
    pub async fn evicted(&self) {
        self.evict.cancelled().await;
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut m = self.admission.inner.lock();
        // An evicted slot was released when it was evicted.
        if !self.evict.is_cancelled() {
            m.forget_pending(self.id);
            m.total -= 1;
        }
        self.admission.pending_gauge.set(m.pending.len() as i64);
    }
}

#[cfg(test)]
#[path = "admit_tests.rs"]
mod tests;
