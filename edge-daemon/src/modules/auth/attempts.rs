//! Per-person guessing defence: at most one password or PIN check in flight per person,
//! reserved under the lock before the hash is computed, and a lock after five wrong
//! answers in a row. Only people who exist are tracked (the caller looks the person up
//! first), so the map is bounded by the depot's staff, and a locked person is never
//! forgotten to make room.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

pub(super) const LOCK_AFTER: u32 = 5;
pub(super) const LOCK_FOR: Duration = Duration::from_secs(300);

#[derive(Debug, Default)]
struct Entry {
    failures: u32,
    locked_until: Option<Instant>,
    in_flight: bool,
    /// Locks since the last right answer: each lock lasts twice the one before.
    locks: u32,
}

/// The `n`th lock in a row (from 0): 5 min, 10, 20, ... at most a day.
fn lock_for(n: u32) -> Duration {
    LOCK_FOR
        .saturating_mul(1 << n.min(9))
        .min(Duration::from_secs(24 * 3600))
}

/// Why a person's secret is not checked now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum NotNow {
    Locked(u64),
    Busy,
}

#[derive(Clone, Default)]
pub(super) struct Attempts {
    map: Arc<Mutex<HashMap<String, Entry>>>,
}

/// A reserved check for one person; dropped without an outcome, it only frees the slot.
pub(super) struct Reserved {
    attempts: Attempts,
    id: String,
}

impl Attempts {
    /// Reserves the person's one in-flight check. `id` must be a person who exists.
    pub(super) fn reserve(&self, id: &str) -> Result<Reserved, NotNow> {
        let now = Instant::now();
        let mut m = self.map.lock();
        let e = m.entry(id.to_string()).or_default();
        if let Some(until) = e.locked_until {
            if until > now {
                return Err(NotNow::Locked(until.duration_since(now).as_secs().max(1)));
            }
            // The lock is over but the count is not: until a right answer, one more
            // wrong one locks again, for longer.
            e.locked_until = None;
            e.failures = LOCK_AFTER - 1;
        }
        if e.in_flight {
            return Err(NotNow::Busy);
        }
        e.in_flight = true;
        Ok(Reserved {
            attempts: self.clone(),
            id: id.to_string(),
        })
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.map.lock().len()
    }
}

impl Reserved {
    /// A right answer: the person's count starts again.
    pub(super) fn succeeded(self) {
        self.attempts.map.lock().remove(&self.id);
    }

    /// A wrong answer. Returns true when this one locked the person.
    pub(super) fn failed(self) -> bool {
        let mut m = self.attempts.map.lock();
        let e = m.entry(self.id.clone()).or_default();
        e.failures += 1;
        if e.failures >= LOCK_AFTER {
            e.locked_until = Some(Instant::now() + lock_for(e.locks));
            e.locks += 1;
            true
        } else {
            false
        }
    }
}

impl Drop for Reserved {
    fn drop(&mut self) {
        let mut m = self.attempts.map.lock();
        let forget = match m.get_mut(&self.id) {
            Some(e) => {
                e.in_flight = false;
                e.failures == 0 && e.locked_until.is_none() && e.locks == 0
            }
            None => false,
        };
        if forget {
            m.remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_check_at_a_time_and_a_lock_after_five() {
        let a = Attempts::default();
        let r = a.reserve("ani").unwrap();
        assert_eq!(a.reserve("ani").err(), Some(NotNow::Busy));
        assert!(!r.failed());
        for _ in 0..3 {
            assert!(!a.reserve("ani").unwrap().failed());
        }
        assert!(a.reserve("ani").unwrap().failed());
        assert!(matches!(a.reserve("ani"), Err(NotNow::Locked(s)) if s > 290));
        assert_eq!(
            lock_for(1),
            Duration::from_secs(600),
            "the next lock is longer"
        );
        assert_eq!(lock_for(30), Duration::from_secs(24 * 3600));
        // Others are unaffected; a success forgets the person.
        a.reserve("budi").unwrap().succeeded();
        assert_eq!(a.tracked(), 1);
        // An abandoned reservation frees the slot and leaves nothing behind.
        drop(a.reserve("citra").unwrap());
        assert_eq!(a.tracked(), 1);
    }
}
