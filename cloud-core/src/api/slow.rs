//! Slow answers logged with where their time went, so an operator (and the storm
//! benchmark) can tell a wait for a read connection or a busy database from the cloud's
//! own work: one `warn` line per answer over `SLOW`.

use std::time::Duration;

/// An answer slower than this is logged (an admin page waits on it).
const SLOW: Duration = Duration::from_millis(40);

/// One record list's stages: the snapshot read (a read connection, the query, and the
/// handler's wake-up after it), the wait for a blocking thread, and applying the
/// unfolded changes. `total` runs from the read to the overlay built; the request's
/// queueing, authentication and the response's serialisation are not in it (the
/// route's histogram has the whole).
pub(super) struct ListTimes<'a> {
    pub depot: &'a str,
    pub read: Duration,
    pub waited: Duration,
    pub applied: Duration,
    pub pending: usize,
    pub total: Duration,
}

pub(super) fn note(t: &ListTimes<'_>) {
    if t.total < SLOW {
        return;
    }
    let ms = |d: Duration| (d.as_secs_f64() * 10_000.0).round() / 10.0;
    tracing::warn!(
        // Debug-quoted: the id comes from the path, and is not checked yet.
        depot = ?t.depot,
        total_ms = ms(t.total),
        read_ms = ms(t.read),
        blocking_wait_ms = ms(t.waited),
        apply_ms = ms(t.applied),
        pending = t.pending,
        "slow record list"
    );
}
