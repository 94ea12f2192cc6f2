//! Rate limits for log lines that strangers can trigger at will (wrong device passwords,
//! refused sign-ins, garbage badge lines, accept errors): each call site keeps a small
//! budget of lines per window, and what it holds back is reported as one summary line
//! ("suppressed K similar lines") when the window ends. Under password guessing the log
//! stays readable and the disk is not filled by the attacker; metrics still count every
//! event, so nothing is lost but the repetition.
//!
//! Use one `static` per call site:
//! ```ignore
//! static AUTH_FAILED: LogRate = LogRate::warn("gate.device_auth_failed", 10);
//! if AUTH_FAILED.allow() {
//!     tracing::warn!(%peer, "device authentication failed");
//! }
//! ```

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Every line written, none held back (`GARASI_LOG_EVERY_LINE=1`): for an operator
/// investigating an attack, and for tests that count what the node logged.
static EVERY_LINE: AtomicBool = AtomicBool::new(false);

/// Turns the limits off (or on again) for the whole process.
pub fn set_every_line(on: bool) {
    EVERY_LINE.store(on, Ordering::Relaxed);
}

/// One window: long enough that a burst is summarised in one line, short enough that an
/// operator sees a summary while the attack is still going on.
const WINDOW: Duration = Duration::from_secs(60);

/// The level the summary line is written at (the level of the lines it stands for).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
}

/// A per-call-site budget of log lines per minute.
pub struct LogRate {
    /// Names the call site in the summary line (a constant, never client input).
    site: &'static str,
    per_window: u32,
    level: Level,
    window: Duration,
    state: Mutex<State>,
}

struct State {
    /// Start of the current window; None before the first line.
    started: Option<Instant>,
    logged: u32,
    suppressed: u64,
    /// A task will write the summary when the window ends (so the last burst of an
    /// attack is reported even if nothing else is logged afterwards).
    flush_pending: bool,
}

impl LogRate {
    /// A call site whose lines are WARN: `per_window` lines a minute, then a summary.
    pub const fn warn(site: &'static str, per_window: u32) -> Self {
        Self::new(site, per_window, Level::Warn, WINDOW)
    }

    /// A call site whose lines are INFO.
    pub const fn info(site: &'static str, per_window: u32) -> Self {
        Self::new(site, per_window, Level::Info, WINDOW)
    }

    const fn new(site: &'static str, per_window: u32, level: Level, window: Duration) -> Self {
        LogRate {
            site,
            per_window,
            level,
            window,
            state: parking_lot::const_mutex(State {
                started: None,
                logged: 0,
                suppressed: 0,
                flush_pending: false,
            }),
        }
    }

    /// True when the caller may write its line now; false when it is to be left out
    /// (counted for the summary).
    pub fn allow(&'static self) -> bool {
        if EVERY_LINE.load(Ordering::Relaxed) {
            return true;
        }
        self.allow_at(Instant::now())
    }

    fn allow_at(&'static self, now: Instant) -> bool {
        let mut s = self.state.lock();
        let summary = match s.started {
            Some(t) if now.duration_since(t) < self.window => None,
            // A new window: the old one's count is reported (if no task did yet).
            _ => {
                let k = std::mem::take(&mut s.suppressed);
                s.started = Some(now);
                s.logged = 0;
                s.flush_pending = false;
                Some(k).filter(|k| *k > 0)
            }
        };
        let allowed = s.logged < self.per_window;
        if allowed {
            s.logged += 1;
        } else {
            s.suppressed += 1;
            if !s.flush_pending {
                s.flush_pending = self.schedule_flush(now, s.started.unwrap_or(now));
            }
        }
        drop(s);
        if let Some(k) = summary {
            self.summary(k);
        }
        allowed
    }

    /// Writes the summary when the window ends, from a task of the current runtime;
    /// false when there is no runtime (the next line after the window reports it).
    fn schedule_flush(&'static self, now: Instant, started: Instant) -> bool {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return false;
        };
        let wait = (started + self.window).saturating_duration_since(now);
        rt.spawn(async move {
            tokio::time::sleep(wait).await;
            let k = {
                let mut s = self.state.lock();
                if !s.flush_pending || s.started != Some(started) {
                    return; // a line in a later window already reported it
                }
                s.flush_pending = false;
                std::mem::take(&mut s.suppressed)
            };
            if k > 0 {
                self.summary(k);
            }
        });
        true
    }

    fn summary(&self, suppressed: u64) {
        let (site, window_secs) = (self.site, self.window.as_secs());
        match self.level {
            Level::Warn => tracing::warn!(
                site,
                suppressed,
                window_secs,
                "suppressed {suppressed} similar log lines"
            ),
            Level::Info => tracing::info!(
                site,
                suppressed,
                window_secs,
                "suppressed {suppressed} similar log lines"
            ),
        }
    }

    /// Lines held back in the current window (for tests).
    pub fn suppressed(&self) -> u64 {
        self.state.lock().suppressed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_lines_pass_then_the_rest_are_counted_until_the_window_ends() {
        static SITE: LogRate = LogRate::warn("test.site", 3);
        let t0 = Instant::now();
        let passed = (0..100).filter(|_| SITE.allow_at(t0)).count();
        assert_eq!(passed, 3);
        assert_eq!(SITE.suppressed(), 97);
        // The next window reports the 97 (as a summary line) and lets lines through again.
        assert!(SITE.allow_at(t0 + WINDOW));
        assert_eq!(SITE.suppressed(), 0);
    }

    #[tokio::test]
    async fn the_summary_is_written_when_the_window_ends_even_if_nothing_follows() {
        static SITE: LogRate =
            LogRate::new("test.flush", 1, Level::Info, Duration::from_millis(200));
        assert!(SITE.allow());
        assert!(!SITE.allow());
        assert!(!SITE.allow());
        assert_eq!(SITE.suppressed(), 2);
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(SITE.suppressed(), 0, "the flush task took the count");
        assert!(!SITE.state.lock().flush_pending);
    }
}
