//! Which device connections the MQTT gate keeps: a total cap kept below the process's
//! open-files limit (less a reserve for SQLite, HTTP and the broker), and a cap on
//! connections that have not sent a complete CONNECT yet ("pending"), overall and per
//! client (IPv4 address or IPv6 /64). A full pending cap never refuses the newcomer: the
//! oldest pending connection of the client holding the most pending ones is closed
//! instead, so an attacker holding slow sockets pushes out its own sockets first and
//! cannot starve a real device, which sends its CONNECT at once. Connections past
//! CONNECT are never closed to make room.

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
}

#[derive(Default)]
struct Inner {
    next_id: u64,
    total: usize,
    /// By admission order: the first entry is the oldest.
    pending: BTreeMap<u64, Pending>,
    per_client: HashMap<IpAddr, usize>,
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

    /// Closes the oldest pending connection of `client` (or, with None, of the client
    /// holding the most pending connections). Its slot is released now.
    fn evict(&mut self, client: Option<IpAddr>) -> bool {
        let client = client.or_else(|| {
            let most = self.per_client.values().copied().max()?;
            // Oldest first, so with one connection per client this is the oldest overall.
            self.pending
                .values()
                .find(|p| self.per_client.get(&p.client) == Some(&most))
                .map(|p| p.client)
        });
        let Some(client) = client else {
            return false;
        };
        let id = self
            .pending
            .iter()
            .find(|(_, p)| p.client == client)
            .map(|(id, _)| *id);
        match id.and_then(|id| self.forget_pending(id)) {
            Some(p) => {
                p.evict.cancel();
                self.total -= 1;
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
        if m.per_client.get(&client).copied().unwrap_or(0) >= self.caps.pending_per_client
            && m.evict(Some(client))
        {
            self.evicted
                .with_label_values(&["client_pending_cap"])
                .inc();
        }
        if m.pending.len() >= self.caps.pending && m.evict(None) {
            self.evicted.with_label_values(&["pending_cap"]).inc();
        }
        // The gate's own cap, or the whole process near its descriptor limit (the HTTP
        // server shares it): only a pending connection may make room.
        let fds_short = self.fds_short(&mut m);
        if m.total >= self.caps.total || fds_short {
            let reason = if fds_short {
                "fd_reserve"
            } else {
                "connection_cap"
            };
            if !m.evict(None) {
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

    /// True when one more device would eat into the descriptor reserve.
    fn fds_short(&self, m: &mut Inner) -> bool {
        let Some(ceiling) = self.caps.fd_ceiling else {
            return false;
        };
        let now = Instant::now();
        if m.fds_counted
            .is_none_or(|t| now.duration_since(t) >= FD_SAMPLE_EVERY)
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
