//! What the edge assumes a charger holds, so that every round can tell a cut from a
//! rise and the plan never counts on power that might already be drawn. Known: what
//! the charger accepted. Unknown (never sent, reconnected, a CALL that timed out and
//! may still be applied): full power, the worst case, so the edge's next profile for it
//! counts as a cut and goes in the first phase. A connector whose transaction has no
//! profile of its own yet follows the charger's TxDefaultProfile.

use std::collections::HashMap;

use super::planner::{Connector, Periods, Sent};
use super::profiles::Job;

/// The limits of a charger whose profiles the edge does not know: no limit at all.
pub(super) fn full() -> Periods {
    vec![(i64::MIN, i64::MAX)]
}

/// The limit in force at `t` of periods `(from_ms, watts)` (None before the first).
pub(super) fn limit_at(periods: &[(i64, i64)], t: i64) -> Option<i64> {
    periods.iter().take_while(|p| p.0 <= t).last().map(|p| p.1)
}

/// What `charger` holds where `job` would go, as far as the edge knows.
pub(super) fn held(sent: &HashMap<Connector, Sent>, charger: &str, job: &Job) -> Sent {
    let unknown = Sent {
        tx: None,
        periods: full(),
        at_ms: 0,
    };
    if let Some(s) = sent.get(&job.key(charger)) {
        if job.connector == 0 || s.tx == job.tx {
            return s.clone();
        }
    }
    if job.connector > 0 {
        // No profile of this transaction: the charger's default governs it.
        if let Some(d) = sent.get(&(charger.to_string(), -2)) {
            return Sent {
                tx: None,
                periods: d.periods.clone(),
                at_ms: d.at_ms,
            };
        }
    }
    unknown
}

/// The most a charger the edge cannot steer now (offline, or failing its profiles) may
/// draw from `now` on: what its connectors with a running transaction hold, within what
/// the charger-wide maximum holds, at the worst moment of what it holds (a step up
/// planned for later counts now); at most `max_w`.
pub(super) fn uncontrolled_draw(
    sent: &HashMap<Connector, Sent>,
    charger: &str,
    max_w: i64,
    running: &[(i64, Option<i64>)],
    now: i64,
) -> i64 {
    let periods = |key: i64, tx: Option<i64>| -> Option<&Periods> {
        match sent.get(&(charger.to_string(), key)) {
            Some(s) if key <= 0 || s.tx == tx => Some(&s.periods),
            _ if key > 0 => sent.get(&(charger.to_string(), -2)).map(|d| &d.periods),
            _ => None,
        }
    };
    let connectors: Vec<Option<&Periods>> =
        running.iter().map(|(k, tx)| periods(*k, *tx)).collect();
    let whole = periods(-1, None);
    let at = |p: Option<&Periods>, t: i64| p.and_then(|p| limit_at(p, t)).unwrap_or(i64::MAX);
    let later = connectors
        .iter()
        .chain([&whole])
        .flatten()
        .flat_map(|p| p.iter().map(|x| x.0))
        .filter(|t| *t > now);
    std::iter::once(now)
        .chain(later)
        .map(|t| {
            let sum = connectors
                .iter()
                .map(|p| at(*p, t))
                .fold(0i64, i64::saturating_add);
            sum.min(at(whole, t))
        })
        .max()
        .unwrap_or(i64::MAX)
        .clamp(0, max_w.max(0))
}

/// What the plan sets aside for a charger it cannot steer (`planner::set_aside`; the
/// night test uses the same rule). `connectors`: each connector and the transaction the
/// edge knows on it. Online (failing its profiles): every connector counts (a bus may
/// plug in, under its default) and at least the share it is held to. Offline: the
/// transactions the edge knows of (one started while the charger cannot reach the edge
/// is not counted), at most its share once the last ChargePointMaxProfile the edge saw
/// it take has stepped down to it; unknown (never confirmed, or the edge restarted
/// since), what it holds, up to its rating.
pub(super) fn set_aside_w(
    sent: &HashMap<Connector, Sent>,
    charger: &str,
    max_w: i64,
    connectors: &[(i64, Option<i64>)],
    online: bool,
    share: i64,
    now: i64,
) -> i64 {
    let running: Vec<(i64, Option<i64>)> = connectors
        .iter()
        .copied()
        .filter(|(_, tx)| online || tx.is_some())
        .collect();
    if running.is_empty() {
        return 0;
    }
    let held = uncontrolled_draw(sent, charger, max_w, &running, now);
    let fallen = sent
        .get(&(charger.to_string(), -1))
        .filter(|m| m.periods != full())
        .is_some_and(|m| now - m.at_ms >= super::planner::FALLBACK_AFTER_S * 1000);
    if online {
        held.max(share.min(max_w))
    } else if fallen {
        held.min(share)
    } else {
        held
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(tx: Option<i64>, periods: Periods) -> Sent {
        Sent {
            tx,
            periods,
            at_ms: 1,
        }
    }

    #[test]
    fn an_offline_charger_counts_as_what_it_holds_within_its_maximum() {
        let mut m: HashMap<Connector, Sent> = HashMap::new();
        let c = |k: i64| ("CP".to_string(), k);
        // Nothing known: its full power.
        assert_eq!(
            uncontrolled_draw(&m, "CP", 150_000, &[(1, Some(7))], 100),
            150_000
        );
        m.insert(c(-1), sent(None, vec![(0, 150_000), (1_000, 30_000)]));
        m.insert(c(-2), sent(None, vec![(0, 0), (1_000, 15_000)]));
        m.insert(c(1), sent(Some(7), vec![(0, 60_000)]));
        // Transaction 7 at 60 kW, a new one (8) under the default (0 W, then 15 kW).
        assert_eq!(
            uncontrolled_draw(&m, "CP", 150_000, &[(1, Some(7)), (2, Some(8))], 100),
            60_000
        );
        // After the fallback step, the charger-wide 30 kW bounds both.
        assert_eq!(
            uncontrolled_draw(&m, "CP", 150_000, &[(1, Some(7)), (2, Some(8))], 2_000),
            30_000
        );
        // A profile for another transaction on the connector does not count for this
        // one: the default does, its later share included.
        assert_eq!(
            uncontrolled_draw(&m, "CP", 150_000, &[(1, Some(9))], 100),
            15_000
        );
        // A step up it holds for later counts now.
        m.insert(
            c(1),
            sent(Some(7), vec![(0, 20_000), (500, 90_000), (800, 0)]),
        );
        assert_eq!(
            uncontrolled_draw(&m, "CP", 150_000, &[(1, Some(7))], 100),
            90_000
        );
    }
}
