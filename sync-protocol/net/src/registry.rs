//! Who is connected: every open connection with its client address, whether it has a
//! request in flight, and when it last moved a byte. Admitting a connection past the
//! per-client cap closes that client's oldest idle connection (or refuses the new one
//! when all of them are busy); past the total cap, the oldest idle connection of anyone
//! makes room. Idle means no request in flight (a response still being sent is in
//! flight), or only unauthenticated bodies arriving: a slow client that never finishes
//! its headers or its enrolment body is idle, a depot whose push or pull is being served
//! never is, so new connections push out stalled ones, never requests being served. A
//! client is its IPv4 address, or its IPv6 /64 (one host can hold a whole /64).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use crate::ConnMetrics;

/// One connection's state, shared by its task, its I/O and its requests.
pub(super) struct ConnState {
    /// Requests being served now (until their response body is sent).
    pub in_flight: AtomicUsize,
    /// Of those, requests whose body is still arriving before anything authenticated
    /// them (enrolment): they do not make the connection busy.
    pub unauthenticated: AtomicUsize,
    /// A request on this connection authenticated (a depot or the admin).
    pub authenticated: AtomicBool,
    /// An authenticated response's last bytes are handed to the connection but not yet
    /// flushed to the socket (the client reads slowly): busy until they are.
    pub unflushed: AtomicBool,
    /// Requests started on this connection.
    pub requests: AtomicU64,
    /// When the connection last read or wrote a byte (ms since the registry started).
    pub last_io_ms: AtomicU64,
    /// Fired when the registry closes this connection to make room.
    pub evicted: CancellationToken,
    started: Instant,
    epoch: Instant,
}

impl ConnState {
    pub fn touch(&self) {
        self.last_io_ms
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// How long since the last byte moved.
    pub fn idle_for(&self) -> std::time::Duration {
        let last = self.last_io_ms.load(Ordering::Relaxed);
        self.epoch
            .elapsed()
            .saturating_sub(std::time::Duration::from_millis(last))
    }

    pub fn age(&self) -> std::time::Duration {
        self.started.elapsed()
    }

    /// No request being served but, perhaps, unauthenticated bodies still arriving.
    fn idle(&self) -> bool {
        let unauthenticated = self.unauthenticated.load(Ordering::Acquire);
        self.in_flight
            .load(Ordering::Acquire)
            .saturating_sub(unauthenticated)
            == 0
            && !self.unflushed.load(Ordering::Acquire)
    }
}

struct Entry {
    ip: IpAddr,
    state: Arc<ConnState>,
}

#[derive(Default)]
struct Inner {
    next: u64,
    /// By admission order (oldest first).
    conns: BTreeMap<u64, Entry>,
    per_client: HashMap<IpAddr, usize>,
}

impl Inner {
    fn remove(&mut self, id: u64) -> Option<Entry> {
        let e = self.conns.remove(&id)?;
        if let Some(n) = self.per_client.get_mut(&e.ip) {
            *n -= 1;
            if *n == 0 {
                self.per_client.remove(&e.ip);
            }
        }
        Some(e)
    }

    /// Closes the oldest idle connection (of `ip` only, if given); false if none is idle.
    fn evict_oldest_idle(&mut self, ip: Option<IpAddr>) -> bool {
        let victim = self
            .conns
            .iter()
            .find(|(_, e)| ip.is_none_or(|ip| e.ip == ip) && e.state.idle())
            .map(|(id, _)| *id);
        match victim.and_then(|id| self.remove(id)) {
            Some(e) => {
                e.state.evicted.cancel();
                true
            }
            None => false,
        }
    }
}

/// The address a per-client cap counts: IPv4 (also when mapped into IPv6), or the /64
/// of an IPv6 address (for programs' own per-client caps too).
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// Every open connection, and the caps they are admitted under.
pub(super) struct Registry {
    inner: Mutex<Inner>,
    max_total: usize,
    max_per_client: usize,
    epoch: Instant,
    metrics: Option<Arc<dyn ConnMetrics>>,
    last_warning_ms: AtomicU64,
}

/// A connection's place in the registry; leaving it (drop) frees the place.
pub(super) struct Slot {
    registry: Arc<Registry>,
    id: u64,
    pub state: Arc<ConnState>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.registry.inner.lock().remove(self.id);
        if let Some(m) = &self.registry.metrics {
            m.closed();
        }
    }
}

impl Registry {
    /// `max_per_client` 0: no per-client cap (e.g. behind a proxy that hides clients).
    pub fn new(
        max_total: usize,
        max_per_client: usize,
        metrics: Option<Arc<dyn ConnMetrics>>,
    ) -> Arc<Self> {
        Arc::new(Registry {
            inner: Mutex::default(),
            max_total: max_total.max(1),
            max_per_client,
            epoch: Instant::now(),
            metrics,
            last_warning_ms: AtomicU64::new(0),
        })
    }

    /// Admits a connection from `ip`, closing an idle one to make room if a cap is
    /// reached; Err(reason) when there is no room (the caller closes the new one).
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, &'static str> {
        let ip = client_key(ip);
        let mut g = self.inner.lock();
        if self.max_per_client > 0
            && g.per_client.get(&ip).copied().unwrap_or(0) >= self.max_per_client
        {
            let made_room = g.evict_oldest_idle(Some(ip));
            self.refused("client_connection_cap", g.conns.len());
            if !made_room {
                return Err("client_connection_cap");
            }
        }
        if g.conns.len() >= self.max_total {
            let made_room = g.evict_oldest_idle(None);
            self.refused("connection_cap", g.conns.len());
            if !made_room {
                return Err("connection_cap");
            }
        }
        g.next += 1;
        let id = g.next;
        let state = Arc::new(ConnState {
            in_flight: AtomicUsize::new(0),
            unauthenticated: AtomicUsize::new(0),
            authenticated: AtomicBool::new(false),
            unflushed: AtomicBool::new(false),
            requests: AtomicU64::new(0),
            last_io_ms: AtomicU64::new(self.epoch.elapsed().as_millis() as u64),
            evicted: CancellationToken::new(),
            started: Instant::now(),
            epoch: self.epoch,
        });
        g.conns.insert(
            id,
            Entry {
                ip,
                state: state.clone(),
            },
        );
        *g.per_client.entry(ip).or_default() += 1;
        drop(g);
        if let Some(m) = &self.metrics {
            m.opened();
        }
        Ok(Slot {
            registry: self.clone(),
            id,
            state,
        })
    }

    /// Counts a connection closed by a timeout (`reason` is a metric label).
    pub fn closed(&self, reason: &'static str) {
        if let Some(m) = &self.metrics {
            m.refused(reason);
        }
    }

    /// Counts a cap reached; warns at most once a minute (an attack must not flood the
    /// log).
    fn refused(&self, reason: &'static str, open: usize) {
        self.closed(reason);
        let now = self.epoch.elapsed().as_millis() as u64;
        let last = self.last_warning_ms.load(Ordering::Relaxed);
        if (last == 0 || now.saturating_sub(last) >= 60_000)
            && self
                .last_warning_ms
                .compare_exchange(last, now.max(1), Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                reason,
                open,
                max_total = self.max_total,
                max_per_client = self.max_per_client,
                "connection limit reached: idle connections are closed to make room \
                 (logged at most once a minute; counted by reason in the refusal metric)"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_close_the_oldest_idle_connection_never_a_busy_one() {
        let r = Registry::new(3, 2, None);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let a1 = r.admit(ip("10.0.0.1")).unwrap();
        let a2 = r.admit(ip("10.0.0.1")).unwrap();
        a1.state.in_flight.store(1, Ordering::Release);
        // Client cap: a1 is busy, so a2 (idle) makes room.
        let a3 = r.admit(ip("10.0.0.1")).unwrap();
        assert!(!a1.state.evicted.is_cancelled() && a2.state.evicted.is_cancelled());
        // Every a-connection busy: the client gets no more.
        a3.state.in_flight.store(1, Ordering::Release);
        assert_eq!(r.admit(ip("10.0.0.1")).err(), Some("client_connection_cap"));
        // Total cap (3): a2's place is free again, b1 fits; then b2 closes b1 (idle).
        let b1 = r.admit(ip("2001:db8::1")).unwrap();
        let b2 = r.admit(ip("2001:db8::2")).unwrap();
        assert!(b1.state.evicted.is_cancelled() && !b2.state.evicted.is_cancelled());
        // One /64 is one client; another /64 is another.
        let r6 = Registry::new(10, 1, None);
        let c1 = r6.admit(ip("2001:db8:0:1::1")).unwrap();
        let c2 = r6.admit(ip("2001:db8:0:1::2")).unwrap();
        let d1 = r6.admit(ip("2001:db8:0:2::1")).unwrap();
        assert!(c1.state.evicted.is_cancelled());
        assert!(!c2.state.evicted.is_cancelled() && !d1.state.evicted.is_cancelled());
        // A request whose unauthenticated body is still arriving does not make its
        // connection busy: it makes room like an idle one.
        let r2 = Registry::new(1, 0, None);
        let e1 = r2.admit(ip("10.0.0.9")).unwrap();
        e1.state.in_flight.store(1, Ordering::Release);
        e1.state.unauthenticated.store(1, Ordering::Release);
        let e2 = r2.admit(ip("10.0.0.8")).unwrap();
        assert!(e1.state.evicted.is_cancelled());
        e2.state.in_flight.store(1, Ordering::Release);
        assert_eq!(r2.admit(ip("10.0.0.7")).err(), Some("connection_cap"));
        drop((e1, e2));
        let b3 = c2;
        drop((a1, a2, a3, b1, b2, b3));
        assert!(r.inner.lock().conns.is_empty() && r.inner.lock().per_client.is_empty());
    }
}
