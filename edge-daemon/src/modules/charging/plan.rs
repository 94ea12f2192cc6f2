//! The smart charging plan, with no I/O: shares the site's power cap among the plugged-in
//! buses so each reaches the energy its next block needs by its pull-out. Time is cut
//! into slots; in each slot the buses with the least slack (time left minus the time
//! their remaining energy takes at full power) are served first, each up to what its
//! connector can take. Watts are integers; a bus whose energy cannot be met in time is
//! reported with what it will have, so the board can say so hours before pull-out.

use serde::Serialize;

/// One plugged-in bus, as the planner needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Need {
    /// The connector it is on (`charger`, connector id).
    pub charger: String,
    pub connector: i64,
    pub vehicle: Option<String>,
    /// Energy still to put in, Wh (target minus what the battery holds now).
    pub need_wh: i64,
    /// When it must be done (its pull-out), ms.
    pub deadline_ms: i64,
    /// Most the connector (and the bus) can take, W.
    pub max_w: i64,
}

/// A connector's limits over time: `(from_ms, limit_w)`, each until the next.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Schedule {
    pub charger: String,
    pub connector: i64,
    pub vehicle: Option<String>,
    pub periods: Vec<(i64, i64)>,
    /// Energy the plan puts in by the deadline, Wh.
    pub planned_wh: i64,
    pub need_wh: i64,
    pub deadline_ms: i64,
    /// When the plan reaches the need (None: not by the deadline).
    pub ready_ms: Option<i64>,
}

impl Schedule {
    pub fn at_risk(&self) -> bool {
        self.ready_ms.is_none_or(|r| r > self.deadline_ms)
    }

    /// The limit in force at `ms` (0 outside the plan).
    pub fn limit_at(&self, ms: i64) -> i64 {
        self.periods
            .iter()
            .take_while(|(from, _)| *from <= ms)
            .last()
            .map_or(0, |(_, w)| *w)
    }

    /// Energy the plan has put in by `ms`, Wh.
    pub fn energy_by(&self, ms: i64, slot_ms: i64) -> i64 {
        let mut wh = 0i64;
        for (i, (from, w)) in self.periods.iter().enumerate() {
            let to = self
                .periods
                .get(i + 1)
                .map_or(from + slot_ms, |p| p.0)
                .min(ms);
            if to > *from {
                wh += w * (to - from) / 3_600_000;
            }
        }
        wh
    }
}

/// How far ahead the plan looks (a deadline beyond counts as then).
const HORIZON_MS: i64 = 48 * 3_600_000;
/// The most energy one bus is planned for, Wh (keeps every product in range).
const MAX_NEED_WH: i64 = 10_000_000;

/// Plans from `now_ms` in slots of `slot_ms` under `cap_w` for the whole site.
pub fn plan(needs: &[Need], now_ms: i64, cap_w: i64, slot_ms: i64) -> Vec<Schedule> {
    let slot_ms = slot_ms.max(60_000);
    // Two days ahead at most (a deadline further out plans as if it were then), and
    // past the latest deadline a day more for buses still short: at most 288 slots.
    let far = now_ms.saturating_add(HORIZON_MS);
    let horizon = needs
        .iter()
        .map(|n| n.deadline_ms.clamp(now_ms, far))
        .max()
        .unwrap_or(now_ms);
    let end = horizon.max(now_ms + slot_ms) + 24 * 3_600_000;
    let mut left: Vec<i64> = needs
        .iter()
        .map(|n| n.need_wh.clamp(0, MAX_NEED_WH))
        .collect();
    let mut out: Vec<Schedule> = needs
        .iter()
        .map(|n| Schedule {
            charger: n.charger.clone(),
            connector: n.connector,
            vehicle: n.vehicle.clone(),
            periods: Vec::new(),
            planned_wh: 0,
            need_wh: n.need_wh.clamp(0, MAX_NEED_WH),
            deadline_ms: n.deadline_ms,
            ready_ms: (n.need_wh <= 0).then_some(now_ms),
        })
        .collect();
    let mut t = now_ms;
    while t < end && left.iter().any(|l| *l > 0) {
        let mut order: Vec<usize> = (0..needs.len()).filter(|i| left[*i] > 0).collect();
        // Least slack first; ties by deadline, then input order (stable).
        let slack = |i: usize| {
            let full = left[i] * 3_600_000 / needs[i].max_w.max(1);
            needs[i].deadline_ms.clamp(now_ms, far) - t - full
        };
        order.sort_by_key(|i| (slack(*i), needs[*i].deadline_ms));
        let mut cap = cap_w;
        let mut give = vec![0i64; needs.len()];
        for i in order {
            // Not more than it still needs in this slot (rounded up to a whole watt).
            let want = ceil_div(left[i] * 3_600_000, slot_ms);
            let w = want
                .min(needs[i].max_w.clamp(0, cap_w.max(0)))
                .min(cap)
                .max(0);
            give[i] = w;
            cap -= w;
        }
        for (i, w) in give.iter().enumerate() {
            let s = &mut out[i];
            if s.periods.last().map(|p| p.1) != Some(*w) {
                s.periods.push((t, *w));
            }
            if *w == 0 {
                continue;
            }
            let wh = (w * slot_ms / 3_600_000).min(left[i]);
            left[i] -= wh;
            // Counted only up to the deadline (a slot across it, in part).
            let within = (s.deadline_ms.clamp(now_ms, far).min(t + slot_ms) - t).clamp(0, slot_ms);
            s.planned_wh += wh * within / slot_ms;
            if left[i] == 0 && s.ready_ms.is_none() {
                // Within the slot: when the last watt-hour went in.
                s.ready_ms = Some(t + ceil_div(wh * 3_600_000, *w));
            }
        }
        t += slot_ms;
    }
    for s in &mut out {
        if s.periods.last().is_some_and(|p| p.1 != 0) {
            s.periods.push((t, 0));
        }
    }
    out
}

/// a / b rounded up, for b > 0 and a >= 0 (i64::div_ceil is not stable yet).
fn ceil_div(a: i64, b: i64) -> i64 {
    (a + b - 1) / b
}

/// The site's total planned draw at `ms`.
pub fn site_load_at(plan: &[Schedule], ms: i64) -> i64 {
    plan.iter().map(|s| s.limit_at(ms)).sum()
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
