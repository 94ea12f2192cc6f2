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

/// A connection's claim on its session, from [`Sessions::start`].
#[derive(Clone)]
pub struct Start {
    pub generation: u64,
    /// The session's interval had run out: purge it before this connection.
    pub expired: bool,
    previous: Option<State>,
}

impl Sessions {
    /// A connection of session `id` of `device` starts: whether the session expired, and
    /// the connection's claim, taken in the same step, so two connections at once never
    /// both purge (the second sees the first's claim, as a takeover of a live session).
    pub fn start(&self, device: &str, id: &str, now: Instant) -> Start {
        let generation = self
            .generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut m = self.by_device.lock();
        let previous = m.get(device).and_then(|s| s.get(id).copied());
        let expired = match previous {
            Some(State::Ended(at, secs)) if secs != NEVER => {
                now.saturating_duration_since(at) >= Duration::from_secs(u64::from(secs))
            }
            _ => false,
        };
        set(&mut m, device, id, State::Live(generation));
        Start {
            generation,
            expired,
            previous,
        }
    }

    /// The broker did not take the connection of `start`: the session is as it was.
    pub fn abandon(&self, device: &str, id: &str, start: &Start) {
        let mut m = self.by_device.lock();
        let ours =
            m.get(device).and_then(|s| s.get(id).copied()) == Some(State::Live(start.generation));
        if ours {
            match start.previous {
                Some(p) => set(&mut m, device, id, p),
                None => {
                    if let Some(s) = m.get_mut(device) {
                        s.remove(id);
                    }
                }
            }
        }
    }

    /// The connection of `generation` ended; the session may be resumed for `secs`. A
    /// connection taken over by a newer one changes nothing.
    pub fn ended(&self, device: &str, id: &str, generation: u64, secs: u32, now: Instant) {
        let mut m = self.by_device.lock();
        if m.get(device).and_then(|s| s.get(id).copied()) == Some(State::Live(generation)) {
            set(&mut m, device, id, State::Ended(now, secs));
        }
    }
}

/// Gives a claim back (the session as it was) when dropped before [`Pending::keep`]: a
/// connection the broker did not take leaves no trace.
pub struct Pending<'a> {
    sessions: &'a Sessions,
    claim: Option<(String, String, Start)>,
}

impl<'a> Pending<'a> {
    pub fn new(
        sessions: &'a Sessions,
        device: &str,
        session: Option<&(String, u32, Start)>,
    ) -> Self {
        Pending {
            sessions,
            claim: session.map(|(id, _, st)| (device.to_string(), id.clone(), st.clone())),
        }
    }

    /// The broker took the connection: the claim stays.
    pub fn keep(mut self) {
        self.claim = None;
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if let Some((device, id, start)) = self.claim.take() {
            self.sessions.abandon(&device, &id, &start);
        }
    }
}

/// Sets a session's state within the bounds (the caller holds the lock).
fn set(m: &mut HashMap<String, HashMap<String, State>>, device: &str, id: &str, state: State) {
    let total: usize = m.values().map(HashMap::len).sum();
    let sessions = m.entry(device.to_string()).or_default();
    if !sessions.contains_key(id) && (sessions.len() >= MAX_PER_DEVICE || total >= MAX_REMEMBERED) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn expired(s: &Sessions, d: &str, id: &str, now: Instant) -> bool {
        let st = s.start(d, id, now);
        let e = st.expired;
        s.abandon(d, id, &st);
        e
    }

    fn session(s: &Sessions, d: &str, id: &str, secs: u32, at: Instant) {
        let st = s.start(d, id, at);
        s.ended(d, id, st.generation, secs, at);
    }

    #[test]
    fn sessions_expire_after_their_interval() {
        let s = Sessions::default();
        let t0 = Instant::now();
        assert!(!expired(&s, "d", "a", t0), "never seen");
        session(&s, "d", "a", 0, t0);
        assert!(expired(&s, "d", "a", t0), "interval 0: gone at disconnect");
        session(&s, "d", "b", 60, t0);
        assert!(!expired(&s, "d", "b", t0 + Duration::from_secs(59)));
        assert!(expired(&s, "d", "b", t0 + Duration::from_secs(60)));
        session(&s, "d", "c", NEVER, t0);
        assert!(!expired(&s, "d", "c", t0 + Duration::from_secs(10_000_000)));
    }

    #[test]
    fn a_connection_taken_over_does_not_end_the_session_and_two_at_once_purge_once() {
        let s = Sessions::default();
        let t0 = Instant::now();
        let a = s.start("d", "x", t0);
        let b = s.start("d", "x", t0); // B takes over from A
        s.ended("d", "x", a.generation, 0, t0); // A's end comes later
        assert!(
            !expired(&s, "d", "x", t0 + Duration::from_secs(5)),
            "B is still connected"
        );
        s.ended("d", "x", b.generation, 0, t0);
        assert!(expired(&s, "d", "x", t0));
        // Two connections at once after expiry: only the first purges.
        let (c, d) = (s.start("d", "x", t0), s.start("d", "x", t0));
        assert!(c.expired && !d.expired);
    }

    #[test]
    fn one_device_cannot_push_out_anothers_sessions() {
        let s = Sessions::default();
        let t0 = Instant::now();
        session(&s, "bus-1", "keep", 1, t0);
        for i in 0..1_000 {
            session(&s, "bus-2", &format!("spam-{i}"), 1, t0);
        }
        assert!(expired(&s, "bus-1", "keep", t0 + Duration::from_secs(2)));
        assert!(s.by_device.lock()["bus-2"].len() <= MAX_PER_DEVICE);
    }
}
