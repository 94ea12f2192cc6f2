//! MQTT 5 Session Expiry, kept by the gate: the broker behind it keeps a session that
//! did not start clean for ever (it ignores the Session Expiry Interval). The gate
//! remembers when each such session's last connection ended and for how long it may be
//! resumed (the CONNECT's interval, or the one its DISCONNECT set). A device coming back
//! later than that (or at all, after an interval of 0, the MQTT 5 default) has the old
//! session purged first (a short Clean Start connection of the gate's own), so it is
//! told there is no session and gets none of the messages queued for the old one, while
//! its new session is kept like any other. MQTT 3.1.1 sessions are not touched (they do
//! not expire).
//!
//! A connection taken over by a newer one with the same client id does not end the
//! session (a generation per connection). Memory is bounded per device and in total.

use std::collections::HashMap;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

/// Sessions remembered per device and in all (oldest forgotten first: such a session
/// may then be resumed after its expiry, the broker's own behaviour).
const MAX_PER_DEVICE: usize = 64;
const MAX_REMEMBERED: usize = 20_000;

/// "The session does not expire" (MQTT 5: 0xFFFFFFFF).
const NEVER: u32 = u32::MAX;

#[derive(Clone, Copy, Debug, PartialEq)]
enum State {
    /// Connected, by the connection of this generation.
    Live(u64),
    /// The last connection ended then; resumable for this many seconds.
    Ended(Instant, u32),
}

#[derive(Default)]
pub struct Sessions {
    /// Device id -> broker client id -> state.
    by_device: Mutex<HashMap<String, HashMap<String, State>>>,
    generation: std::sync::atomic::AtomicU64,
}

impl Sessions {
    /// Whether the session `id` of `device` ended longer ago than its expiry allows
    /// (false: never seen, connected, or still within its interval).
    pub fn expired(&self, device: &str, id: &str, now: Instant) -> bool {
        let m = self.by_device.lock();
        match m.get(device).and_then(|s| s.get(id)) {
            Some(State::Ended(_, NEVER)) | Some(State::Live(_)) | None => false,
            Some(&State::Ended(at, secs)) => {
                now.saturating_duration_since(at) >= Duration::from_secs(u64::from(secs))
            }
        }
    }

    /// A connection of session `id` was accepted by the broker: the session is live.
    /// Returns the connection's generation, for [`Sessions::ended`].
    pub fn began(&self, device: &str, id: &str) -> u64 {
        let generation = self
            .generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.set(device, id, State::Live(generation));
        generation
    }

    /// The connection of `generation` ended; the session may be resumed for `secs`. A
    /// connection taken over by a newer one changes nothing.
    pub fn ended(&self, device: &str, id: &str, generation: u64, secs: u32, now: Instant) {
        let live = {
            let m = self.by_device.lock();
            m.get(device).and_then(|s| s.get(id).copied()) == Some(State::Live(generation))
        };
        if live {
            self.set(device, id, State::Ended(now, secs));
        }
    }

    fn set(&self, device: &str, id: &str, state: State) {
        let mut m = self.by_device.lock();
        let total: usize = m.values().map(HashMap::len).sum();
        let sessions = m.entry(device.to_string()).or_default();
        if !sessions.contains_key(id)
            && (sessions.len() >= MAX_PER_DEVICE || total >= MAX_REMEMBERED)
        {
            let oldest = sessions
                .iter()
                .filter_map(|(k, s)| match s {
                    State::Ended(at, _) => Some((*at, k.clone())),
                    State::Live(_) => None,
                })
                .min()
                .map(|(_, k)| k);
            match oldest {
                Some(k) => {
                    sessions.remove(&k);
                }
                // All of this device's remembered sessions are live: not remembered.
                None => return,
            }
        }
        sessions.insert(id.to_string(), state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_after_their_interval() {
        let s = Sessions::default();
        let t0 = Instant::now();
        assert!(!s.expired("d", "a", t0), "never seen");
        let g = s.began("d", "a");
        assert!(
            !s.expired("d", "a", t0 + Duration::from_secs(100)),
            "connected"
        );
        s.ended("d", "a", g, 0, t0);
        assert!(s.expired("d", "a", t0), "interval 0: gone at disconnect");
        let g = s.began("d", "b");
        s.ended("d", "b", g, 60, t0);
        assert!(!s.expired("d", "b", t0 + Duration::from_secs(59)));
        assert!(s.expired("d", "b", t0 + Duration::from_secs(60)));
        let g = s.began("d", "c");
        s.ended("d", "c", g, NEVER, t0);
        assert!(!s.expired("d", "c", t0 + Duration::from_secs(10_000_000)));
    }

    #[test]
    fn a_connection_taken_over_does_not_end_the_session() {
        let s = Sessions::default();
        let t0 = Instant::now();
        let a = s.began("d", "x");
        let b = s.began("d", "x"); // B takes over from A
        s.ended("d", "x", a, 0, t0); // A's end comes later
        assert!(
            !s.expired("d", "x", t0 + Duration::from_secs(5)),
            "B is still connected"
        );
        s.ended("d", "x", b, 0, t0);
        assert!(s.expired("d", "x", t0));
    }

    #[test]
    fn one_device_cannot_push_out_anothers_sessions() {
        let s = Sessions::default();
        let t0 = Instant::now();
        let g = s.began("bus-1", "keep");
        s.ended("bus-1", "keep", g, 1, t0);
        for i in 0..1_000 {
            let g = s.began("bus-2", &format!("spam-{i}"));
            s.ended("bus-2", &format!("spam-{i}"), g, 1, t0);
        }
        assert!(s.expired("bus-1", "keep", t0 + Duration::from_secs(2)));
        assert!(s.by_device.lock()["bus-2"].len() <= MAX_PER_DEVICE);
    }
}
