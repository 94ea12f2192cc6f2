//! Per-client limits for guessable secrets (people's passwords and PINs, device
//! passwords): each client address may have one verification in flight and a budget of
//! failures that refills slowly. Shared by the HTTP sign-in routes and the MQTT gate, so
//! one attacker cannot guess fast, cannot run many guesses at once, and cannot queue
//! ahead of other clients. Also what counts as one client for the gate's connection caps
//! (`front/admit.rs`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// One client: an IPv4 address, or an IPv6 /64 (one host on a LAN can take any number of
/// addresses in its /64); IPv4-mapped IPv6 counts as the IPv4 address. Also the MQTT
/// gate's unit for per-client connection caps.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
        v4 => v4,
    }
}

/// Failures a client may make in a burst, then one more per `refill`.
#[derive(Debug, Clone, Copy)]
pub struct LimitPolicy {
    pub burst: u32,
    pub refill: Duration,
    /// Most clients tracked at once: bounded memory whatever the number of addresses.
    pub max_clients: usize,
}

impl Default for LimitPolicy {
    fn default() -> Self {
        LimitPolicy {
            burst: 10,
            refill: Duration::from_secs(6),
            max_clients: 4096,
        }
    }
}

/// Attempts of one client waiting behind its running one in `begin_queued` at most.
pub const MAX_QUEUED: usize = 8;

/// Why a client may not try now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// Its failure budget is spent: try again after this long.
    Wait(Duration),
    /// One of its attempts is being checked right now.
    Busy,
}

struct Client {
    /// Failures still allowed; one failure costs `refill` of time to earn back.
    tokens: f64,
    updated: Instant,
    /// Held while one of this client's attempts is checked; others from the same
    /// address wait behind it (devices) or are told to retry (people).
    slot: Arc<tokio::sync::Mutex<()>>,
}

#[derive(Clone)]
pub struct ClientLimiter {
    policy: LimitPolicy,
    clients: Arc<Mutex<HashMap<IpAddr, Client>>>,
}

/// One reserved attempt; dropping it without `failed()` counts nothing.
pub struct Attempt {
    limiter: ClientLimiter,
    ip: IpAddr,
    _slot: tokio::sync::OwnedMutexGuard<()>,
}

impl ClientLimiter {
    pub fn new(policy: LimitPolicy) -> Self {
        ClientLimiter {
            policy,
            clients: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    fn client(ip: IpAddr) -> IpAddr {
        client_key(ip)
    }

    /// The client's slot, after refilling its budget; `Wait` when the budget is spent or
    /// no more clients can be tracked.
    fn slot(&self, ip: IpAddr) -> Result<Arc<tokio::sync::Mutex<()>>, Held> {
        let ip = Self::client(ip);
        let now = Instant::now();
        let burst = f64::from(self.policy.burst);
        let refill = self.policy.refill.as_secs_f64();
        let mut m = self.clients.lock();
        if !m.contains_key(&ip) && m.len() >= self.policy.max_clients {
            // Forget clients that are idle with a full budget; a client still limited or
            // checking is kept (forgetting it would hand it a fresh budget).
            m.retain(|_, c| {
                let tokens = c.tokens + now.duration_since(c.updated).as_secs_f64() / refill;
                Arc::strong_count(&c.slot) > 1 || tokens < burst
            });
            if m.len() >= self.policy.max_clients {
                // Fail closed: too many clients are failing at once to track another.
                return Err(Held::Wait(self.policy.refill));
            }
        }
        let c = m.entry(ip).or_insert_with(|| Client {
            tokens: burst,
            updated: now,
            slot: Arc::default(),
        });
        c.tokens = (c.tokens + now.duration_since(c.updated).as_secs_f64() / refill).min(burst);
        c.updated = now;
        if c.tokens < 1.0 {
            let wait = (1.0 - c.tokens) * refill;
            return Err(Held::Wait(Duration::from_secs_f64(wait.max(0.001))));
        }
        Ok(c.slot.clone())
    }

    /// Reserves the client's one in-flight attempt now, or says why not (people: a
    /// second sign-in from the same address while one is checked is told to retry).
    pub fn begin(&self, ip: IpAddr) -> Result<Attempt, Held> {
        let slot = self.slot(ip)?;
        let guard = slot.try_lock_owned().map_err(|_| Held::Busy)?;
        Ok(Attempt {
            limiter: self.clone(),
            ip,
            _slot: guard,
        })
    }

    /// Waits for the client's slot in arrival order (devices: many may share one
    /// address), then checks the budget again: what failed meanwhile counts.
    /// At most `MAX_QUEUED` wait per client; more are refused at once (`Busy`), so one
    /// address cannot park hundreds of connections in the queue.
    pub async fn begin_queued(&self, ip: IpAddr) -> Result<Attempt, Held> {
        let slot = self.slot(ip)?;
        // The map holds one reference, each waiting or running attempt one more.
        if Arc::strong_count(&slot) > MAX_QUEUED + 2 {
            return Err(Held::Busy);
        }
        let guard = slot.lock_owned().await;
        self.slot(ip)?;
        Ok(Attempt {
            limiter: self.clone(),
            ip,
            _slot: guard,
        })
    }

    /// Clients tracked now (for tests and the attack suite's memory bound).
    pub fn tracked(&self) -> usize {
        self.clients.lock().len()
    }
}

impl Attempt {
    /// The attempt failed: it costs the client one failure.
    pub fn failed(self) {
        let mut m = self.limiter.clients.lock();
        if let Some(c) = m.get_mut(&ClientLimiter::client(self.ip)) {
            c.tokens -= 1.0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, n])
    }

    #[test]
    fn one_in_flight_then_budget_then_wait() {
        let l = ClientLimiter::new(LimitPolicy {
            burst: 3,
            refill: Duration::from_secs(60),
            max_clients: 10,
        });
        let a = l.begin(ip(1)).unwrap();
        assert_eq!(l.begin(ip(1)).err(), Some(Held::Busy));
        // Another client is not held up by the first.
        drop(l.begin(ip(2)).unwrap());
        a.failed();
        l.begin(ip(1)).unwrap().failed();
        l.begin(ip(1)).unwrap().failed();
        match l.begin(ip(1)) {
            Err(Held::Wait(d)) => assert!(d > Duration::from_secs(50), "{d:?}"),
            _ => panic!("a client with no budget left must wait"),
        }
        // Successes cost nothing.
        for _ in 0..10 {
            drop(l.begin(ip(2)).unwrap());
        }
    }

    #[tokio::test]
    async fn one_address_queues_at_most_max_queued() {
        let l = ClientLimiter::new(LimitPolicy::default());
        let running = l.begin_queued(ip(3)).await.unwrap();
        let mut waiting = Vec::new();
        for _ in 0..MAX_QUEUED {
            let l2 = l.clone();
            waiting.push(tokio::spawn(async move {
                l2.begin_queued(ip(3)).await.map(drop)
            }));
        }
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(matches!(l.begin_queued(ip(3)).await, Err(Held::Busy)));
        assert!(
            l.begin_queued(ip(4)).now_or_never().is_some(),
            "others unaffected"
        );
        drop(running);
        for w in waiting {
            assert_eq!(w.await.unwrap(), Ok(()));
        }
    }

    #[tokio::test]
    async fn queued_attempts_from_one_address_take_turns() {
        let l = ClientLimiter::new(LimitPolicy {
            burst: 2,
            refill: Duration::from_secs(3600),
            max_clients: 10,
        });
        let first = l.begin_queued(ip(1)).await.unwrap();
        let l2 = l.clone();
        let second = tokio::spawn(async move { l2.begin_queued(ip(1)).await.map(|_| ()) });
        tokio::task::yield_now().await;
        assert!(!second.is_finished(), "the second waits for the first");
        first.failed();
        assert_eq!(second.await.unwrap(), Ok(()));
        l.begin_queued(ip(1)).await.unwrap().failed();
        // Budget spent: a waiting attempt is refused, not run.
        assert!(matches!(l.begin_queued(ip(1)).await, Err(Held::Wait(_))));
    }

    #[test]
    fn memory_is_bounded_and_limited_clients_are_never_forgotten() {
        let l = ClientLimiter::new(LimitPolicy {
            burst: 1,
            refill: Duration::from_secs(3600),
            max_clients: 4,
        });
        for n in 0..4 {
            l.begin(ip(n)).unwrap().failed();
        }
        // All four are limited: a fifth client is refused rather than evicting one.
        assert!(matches!(l.begin(ip(9)), Err(Held::Wait(_))));
        assert_eq!(l.tracked(), 4);
        assert!(matches!(l.begin(ip(0)), Err(Held::Wait(_))));
        // Idle clients with a full budget make room.
        let l = ClientLimiter::new(LimitPolicy {
            burst: 2,
            refill: Duration::from_secs(3600),
            max_clients: 2,
        });
        drop(l.begin(ip(1)).unwrap());
        drop(l.begin(ip(2)).unwrap());
        drop(l.begin(ip(3)).unwrap());
        assert!(l.tracked() <= 2);
    }
}
