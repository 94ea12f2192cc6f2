//! Client addresses someone signed in from before, and a few password checks kept for
//! them: when strangers from many addresses keep the node's sign-in queue full, a
//! dispatcher at the tablet they always use still gets in (a stranger cannot join this
//! set without a right answer). Bounded: the most recent addresses only.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::limit::client_key;

/// Addresses remembered at most (a depot's tablets and consoles, with room to spare).
const MAX_KNOWN: usize = 1024;
/// Checks that only remembered addresses may use when the main queue is full.
const SPARE_CHECKS: usize = 2;

pub(super) struct KnownClients {
    seen: Mutex<HashMap<IpAddr, Instant>>,
    spare: Arc<Semaphore>,
}

impl Default for KnownClients {
    fn default() -> Self {
        KnownClients {
            seen: Mutex::new(HashMap::new()),
            spare: Arc::new(Semaphore::new(SPARE_CHECKS)),
        }
    }
}

impl KnownClients {
    /// Someone signed in from `ip`.
    pub(super) fn remember(&self, ip: IpAddr) {
        let mut m = self.seen.lock();
        if m.len() >= MAX_KNOWN && !m.contains_key(&client_key(ip)) {
            if let Some(oldest) = m.iter().min_by_key(|(_, t)| **t).map(|(k, _)| *k) {
                m.remove(&oldest);
            }
        }
        m.insert(client_key(ip), Instant::now());
    }

    /// One of the spare checks, for an address someone signed in from before.
    pub(super) fn spare_check(&self, ip: IpAddr) -> Option<OwnedSemaphorePermit> {
        if !self.seen.lock().contains_key(&client_key(ip)) {
            return None;
        }
        self.spare.clone().try_acquire_owned().ok()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn only_remembered_addresses_get_spare_checks() {
        let k = KnownClients::default();
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.5".parse().unwrap(), "10.0.0.6".parse().unwrap());
        assert!(k.spare_check(a).is_none());
        k.remember(a);
        let p1 = k.spare_check(a).unwrap();
        let _p2 = k.spare_check(a).unwrap();
        assert!(k.spare_check(a).is_none(), "two spare checks at most");
        drop(p1);
        assert!(k.spare_check(a).is_some());
        assert!(k.spare_check(b).is_none());
        for n in 0..MAX_KNOWN as u32 + 10 {
            k.remember(IpAddr::from(std::net::Ipv4Addr::from(0x0b00_0000 + n)));
        }
        assert!(k.seen.lock().len() <= MAX_KNOWN);
    }
}
