//! MQTT 5 Session Expiry, kept by the gate: the broker behind it keeps a session that
//! did not start clean for ever (it ignores the Session Expiry Interval). The gate
//! remembers when each such session's connection ended and for how long it may be
//! resumed; a device coming back later than that (or at all, after an interval of 0, the
//! MQTT 5 default) is forwarded with Clean Start, so the broker drops the old session
//! and its queued messages, and the device is told there is no session. MQTT 3.1.1
//! sessions are not touched (they do not expire).

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use parking_lot::Mutex;

/// Sessions remembered at most (oldest forgotten first: such a session may then be
/// resumed after its expiry, the broker's own behaviour).
const MAX_REMEMBERED: usize = 20_000;

/// "The session does not expire" (MQTT 5: 0xFFFFFFFF).
const NEVER: u32 = u32::MAX;

#[derive(Default)]
pub struct Sessions {
    /// Broker client id -> when its last connection ended, and its expiry interval (s).
    ended: Mutex<HashMap<String, (Instant, u32)>>,
}

impl Sessions {
    /// Whether the session `id` ended longer ago than its expiry allows (false: never
    /// seen, still connected, or still within its interval).
    pub fn expired(&self, id: &str, now: Instant) -> bool {
        match self.ended.lock().get(id) {
            Some(&(_, NEVER)) => false,
            Some(&(at, secs)) => {
                now.saturating_duration_since(at) >= Duration::from_secs(u64::from(secs))
            }
            None => false,
        }
    }

    /// A connection of session `id` with this expiry interval began: it is live again.
    pub fn began(&self, id: &str) {
        self.ended.lock().remove(id);
    }

    /// A connection of session `id` ended; it may be resumed for `secs`.
    pub fn ended(&self, id: &str, secs: u32, now: Instant) {
        let mut m = self.ended.lock();
        if m.len() >= MAX_REMEMBERED && !m.contains_key(id) {
            if let Some(oldest) = m
                .iter()
                .min_by_key(|(_, (at, _))| *at)
                .map(|(k, _)| k.clone())
            {
                m.remove(&oldest);
            }
        }
        m.insert(id.to_string(), (now, secs));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_after_their_interval() {
        let s = Sessions::default();
        let t0 = Instant::now();
        assert!(!s.expired("a", t0), "never seen");
        s.ended("a", 0, t0);
        assert!(s.expired("a", t0), "interval 0: gone at disconnect");
        s.ended("b", 60, t0);
        assert!(!s.expired("b", t0 + Duration::from_secs(59)));
        assert!(s.expired("b", t0 + Duration::from_secs(60)));
        s.ended("c", NEVER, t0);
        assert!(!s.expired("c", t0 + Duration::from_secs(10_000_000)));
        s.began("a");
        assert!(!s.expired("a", t0), "connected again");
    }
}
