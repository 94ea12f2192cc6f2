//! The smart charging plan, with no I/O: shares the site's power cap among the plugged-in
//! buses so each reaches the energy its next block needs by its pull-out. Time is cut
//! into slots; in each slot the buses with the least slack (time left minus the time
//! their remaining energy takes at full power) are served first, each up to what its
//! connector can take and what its charger has left (a charger's connectors share its
//! power). Watts are integers; a bus whose energy cannot be met in time is
//! reported with what it will have, so the board can say so hours before pull-out.

use std::collections::HashMap;

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
    /// Most the whole charger gives, W: its connectors share it (a lone bus may take
    /// all of it).
    pub charger_max_w: i64,
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
        // Slots fall on whole multiples of `slot_ms` (the first one from now, shorter):
        // plans made a minute apart then agree on their steps, so a charger is only sent
        // a profile again when its limits change (`profiles::Job::due`).
        let next = (t.div_euclid(slot_ms) + 1) * slot_ms;
        let len = next - t;
        let mut order: Vec<usize> = (0..needs.len()).filter(|i| left[*i] > 0).collect();
        // Time to spare (ms) if the bus got the most it can ever get from `from` on: its
        // connector, its charger, the site.
        let spare = |i: usize, from: i64| {
            let most = needs[i].max_w.min(needs[i].charger_max_w).min(cap_w).max(1);
            needs[i].deadline_ms.clamp(now_ms, far) - from - left[i] * 3_600_000 / most
        };
        let dropped = cannot_all_make_it(&order, needs, &left, t, cap_w, far);
        // Least slack first, reckoned at the slot's end (a bus that would be late if
        // skipped now is served now); ties by deadline, then input order (stable). A bus
        // that cannot make it even alone from now, or that the site's energy cannot
        // cover beside the others (`cannot_all_make_it`), goes after those that still
        // can: it must not starve a bus that would be ready.
        order.sort_by_key(|i| {
            (
                spare(*i, t) < 0 || dropped[*i],
                spare(*i, next),
                needs[*i].deadline_ms,
            )
        });
        let mut cap = cap_w;
        let mut give = vec![0i64; needs.len()];
        // What each charger has left to give in this slot.
        let mut pool: HashMap<&str, i64> = HashMap::new();
        for n in needs {
            let p = pool
                .entry(n.charger.as_str())
                .or_insert(n.charger_max_w.max(0));
            *p = (*p).min(n.charger_max_w.max(0));
        }
        for i in order {
            // Not more than it still needs in this slot (rounded up to a whole watt); in
            // the slot its pull-out falls in, what is left must go in before the
            // pull-out, not spread over the whole slot (a bus 8 kWh short 9 minutes
            // before leaving needs 55 kW, not the 33 kW of 15 minutes).
            let d = needs[i].deadline_ms;
            let span = if d > t && d < next { d - t } else { len };
            let want = ceil_div(left[i] * 3_600_000, span);
            let charger = pool.entry(needs[i].charger.as_str()).or_insert(0);
            let w = want
                .min(needs[i].max_w.clamp(0, cap_w.max(0)))
                .min(cap)
                .min(*charger)
                .max(0);
            give[i] = w;
            cap -= w;
            *charger -= w;
        }
        for (i, w) in give.iter().enumerate() {
            let s = &mut out[i];
            if s.periods.last().map(|p| p.1) != Some(*w) {
                s.periods.push((t, *w));
            }
            if *w == 0 {
                continue;
            }
            let wh = (w * len / 3_600_000).min(left[i]);
            left[i] -= wh;
            // Counted only up to the deadline (a slot across it, in part).
            let within = (s.deadline_ms.clamp(now_ms, far).min(next) - t).clamp(0, len);
            // What goes in before the deadline: at `w` from the slot's start, up to `wh`.
            s.planned_wh += (w * within / 3_600_000).min(wh);
            if left[i] == 0 && s.ready_ms.is_none() {
                // Within the slot: when the last watt-hour went in.
                s.ready_ms = Some(t + ceil_div(wh * 3_600_000, *w));
            }
        }
        t = next;
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

/// The buses to give up on first when the site's energy cannot cover every need by its
/// deadline: in deadline order, whenever what the buses so far need is more than the cap
/// can give by the latest of their deadlines, the one needing the most is dropped
/// (Moore and Hodgson's rule: as few buses late as possible).
fn cannot_all_make_it(
    order: &[usize],
    needs: &[Need],
    left: &[i64],
    t: i64,
    cap_w: i64,
    far: i64,
) -> Vec<bool> {
    let mut by_deadline = order.to_vec();
    by_deadline.sort_by_key(|i| needs[*i].deadline_ms);
    let mut kept: Vec<usize> = Vec::new();
    // Indexed by need: looked up in the sort's key, so no search per comparison.
    let mut dropped = vec![false; needs.len()];
    let mut wh: i128 = 0;
    for i in by_deadline {
        kept.push(i);
        wh += i128::from(left[i]);
        let room = i128::from(cap_w.max(0))
            * i128::from((needs[i].deadline_ms.min(far).max(t) - t).max(0))
            / 3_600_000;
        if wh > room {
            if let Some((k, _)) = kept.iter().enumerate().max_by_key(|(_, j)| left[**j]) {
                let j = kept.remove(k);
                wh -= i128::from(left[j]);
                dropped[j] = true;
            }
        }
    }
    dropped
}

/// The site's total planned draw at `ms`.
pub fn site_load_at(plan: &[Schedule], ms: i64) -> i64 {
    plan.iter().map(|s| s.limit_at(ms)).sum()
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
