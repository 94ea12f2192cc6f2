//! Dispatch decisions, with no I/O: energy a block needs, the state of charge a vehicle
//! will have at pull-out, the auto-assign proposal, conflicts, and ranked replacements
//! when a vehicle drops out. Kept pure so they are unit-tested and benchmarked directly.
//!
//! Rules:
//! - energy needed = distance x the vehicle's kWh/km (the depot default when unknown)
//!   + a reserve, a percentage of the vehicle's battery.
//! - forecast SoC at pull-out = last reported SoC, plus the energy the charging plan puts
//!   into it until pull-out (charging module); without a plan, while the vehicle reports
//!   that it is charging, the depot's charger power for the time until pull-out (capped
//!   at 100 %). A vehicle that never reported a SoC has no forecast and is not proposed.
//! - a vehicle may run several blocks of a day when they do not overlap; each earlier
//!   block's energy is taken off what it has for the later ones (no charging assumed
//!   in between, which errs on the safe side).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// Configurable figures (see `DispatchConfig`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Params {
    /// Reserve kept in the battery, % of capacity.
    pub reserve_pct: f64,
    /// kWh/km for vehicles without their own figure.
    pub default_kwh_per_km: f64,
    /// Charger power assumed for a vehicle that reports charging.
    pub charger_kw: f64,
    /// A pull-out this late (ms) is late.
    pub late_grace_ms: i64,
    /// Longest a driver may be assigned in one service day (ms).
    pub max_driver_ms: i64,
    /// From this long before pull-out (ms), a driver who has not signed on is flagged.
    pub signon_before_ms: i64,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            reserve_pct: 10.0,
            default_kwh_per_km: 1.3,
            charger_kw: 60.0,
            late_grace_ms: 5 * 60_000,
            max_driver_ms: 10 * 3_600_000,
            signon_before_ms: 30 * 60_000,
        }
    }
}

/// One trip of a block, as the cloud published it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default)]
pub struct Trip {
    pub trip: String,
    pub route: String,
    pub headsign: Option<String>,
    pub start: String,
    pub end: String,
    pub start_ms: i64,
    pub end_ms: i64,
    pub from: String,
    pub to: String,
    pub km: f64,
}

/// A block on one service day (a `block` master record).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default)]
pub struct Block {
    /// Record id (service day + block id).
    #[serde(skip_deserializing)]
    pub id: String,
    pub service_date: String,
    pub block: String,
    pub routes: String,
    pub pull_out_ms: i64,
    pub pull_in_ms: i64,
    pub first_departure_ms: i64,
    pub last_arrival_ms: i64,
    pub distance_km: f64,
    pub vehicle_type: Option<String>,
    #[serde(skip_deserializing)]
    pub trips: Vec<Trip>,
}

impl Block {
    /// Distance still to run after `at_ms` (trips that have not ended).
    pub fn remaining_km(&self, at_ms: i64) -> f64 {
        if self.trips.is_empty() {
            return if at_ms < self.pull_in_ms {
                self.distance_km
            } else {
                0.0
            };
        }
        self.trips
            .iter()
            .filter(|t| t.end_ms > at_ms)
            .map(|t| t.km)
            .sum()
    }
}

/// An assignment (operational record `assignment`, one per block and day).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default)]
pub struct Assignment {
    pub service_date: String,
    pub vehicle: Option<String>,
    pub driver: Option<String>,
    pub bay: Option<String>,
    pub assigned_by: Option<String>,
    pub assigned_ms: Option<i64>,
    pub pull_out_actual_ms: Option<i64>,
    pub pull_in_actual_ms: Option<i64>,
    pub late_min: Option<i64>,
    pub disrupted_ms: Option<i64>,
    pub disruption: Option<String>,
    pub swapped_from: Option<String>,
}

/// What dispatch knows about a vehicle right now.
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct VehicleState {
    pub id: String,
    pub label: String,
    pub battery_kwh: f64,
    pub kwh_per_km: Option<f64>,
    pub vehicle_type: Option<String>,
    /// Operational status (in_service, out_of_service, in_maintenance), if ever set.
    pub status: Option<String>,
    pub soc_pct: Option<f64>,
    pub charging: bool,
    /// The charging plan's limits for its connector, `(from_ms, watts)` each until the
    /// next; when set, the forecast follows it.
    #[serde(skip)]
    pub charge_plan: Option<Vec<(i64, i64)>>,
}

impl VehicleState {
    pub fn usable(&self) -> bool {
        !matches!(
            self.status.as_deref(),
            Some("out_of_service") | Some("in_maintenance")
        )
    }
    pub fn kwh_per_km(&self, p: &Params) -> f64 {
        self.kwh_per_km.unwrap_or(p.default_kwh_per_km)
    }
    fn type_fits(&self, needed: Option<&str>) -> bool {
        needed.is_none_or(|t| self.vehicle_type.as_deref() == Some(t))
    }
}

/// Energy (kWh) `km` takes this vehicle (or a default vehicle), reserve included.
pub fn energy_kwh(km: f64, v: Option<&VehicleState>, p: &Params) -> f64 {
    let (kpk, battery) = match v {
        Some(v) => (v.kwh_per_km(p), v.battery_kwh),
        None => (p.default_kwh_per_km, 0.0),
    };
    km * kpk + p.reserve_pct / 100.0 * battery
}

/// Forecast state of charge (%) at `at_ms`.
pub fn forecast_soc(v: &VehicleState, at_ms: i64, now_ms: i64, p: &Params) -> Option<f64> {
    let soc = v.soc_pct?;
    if let Some(periods) = &v.charge_plan {
        if at_ms <= now_ms || v.battery_kwh <= 0.0 {
            return Some(soc);
        }
        let kwh = planned_wh(periods, now_ms, at_ms) as f64 / 1000.0;
        return Some((soc + kwh / v.battery_kwh * 100.0).min(100.0));
    }
    if !v.charging || at_ms <= now_ms || v.battery_kwh <= 0.0 {
        return Some(soc);
    }
    let hours = (at_ms - now_ms) as f64 / 3_600_000.0;
    Some((soc + p.charger_kw * hours / v.battery_kwh * 100.0).min(100.0))
}

/// Energy (Wh) a plan of `(from_ms, watts)` periods puts in between `from` and `to`; the
/// last period lasts on.
pub fn planned_wh(periods: &[(i64, i64)], from: i64, to: i64) -> i64 {
    let mut wh = 0i64;
    for (i, (start, w)) in periods.iter().enumerate() {
        let end = periods.get(i + 1).map_or(to, |p| p.0);
        let (a, b) = ((*start).max(from), end.min(to));
        if b > a {
            wh += w * (b - a) / 3_600_000;
        }
    }
    wh
}

pub(super) fn overlaps(a: (i64, i64), b: (i64, i64)) -> bool {
    a.0 < b.1 && b.0 < a.1
}

/// One proposed assignment.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Proposal {
    pub block: String,
    pub vehicle: String,
    pub forecast_soc_pct: f64,
    pub need_kwh: f64,
    pub available_kwh: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct AutoAssign {
    pub proposals: Vec<Proposal>,
    /// Blocks still without a vehicle, with the reason.
    pub unassigned: Vec<(String, String)>,
}

/// Per vehicle: intervals already taken and the energy they use.
pub(super) type Taken = HashMap<String, Vec<(i64, i64, f64)>>;

pub(super) fn taken_by_existing(
    blocks: &[Block],
    assignments: &HashMap<String, Assignment>,
    vehicles: &HashMap<&str, &VehicleState>,
    p: &Params,
) -> Taken {
    let mut taken: Taken = HashMap::new();
    for b in blocks {
        if let Some(v) = assignments.get(&b.id).and_then(|a| a.vehicle.as_ref()) {
            let e = energy_kwh(b.distance_km, vehicles.get(v.as_str()).copied(), p);
            taken
                .entry(v.clone())
                .or_default()
                .push((b.pull_out_ms, b.pull_in_ms, e));
        }
    }
    taken
}

/// Energy a vehicle has left for a block pulling out at `at`, after the blocks it runs
/// earlier that day.
pub(super) fn available_kwh(
    v: &VehicleState,
    at: i64,
    now: i64,
    taken: &Taken,
    p: &Params,
) -> Option<f64> {
    let soc = forecast_soc(v, at, now, p)?;
    let used: f64 = taken
        .get(&v.id)
        .map(|t| {
            t.iter()
                .filter(|(s, _, _)| *s < at)
                .map(|(_, _, e)| e)
                .sum()
        })
        .unwrap_or(0.0);
    Some(soc / 100.0 * v.battery_kwh - used)
}

/// Proposes a vehicle for every block that has none: the hardest blocks first (a needed
/// type, then most energy), each to the usable vehicle of the right type, free for the block's hours,
/// whose forecast energy covers the block with the least to spare (best fit keeps big
/// batteries for big blocks).
pub fn auto_assign(
    blocks: &[Block],
    assignments: &HashMap<String, Assignment>,
    vehicles: &[VehicleState],
    now_ms: i64,
    p: &Params,
) -> AutoAssign {
    let by_id: HashMap<&str, &VehicleState> = vehicles.iter().map(|v| (v.id.as_str(), v)).collect();
    let mut taken = taken_by_existing(blocks, assignments, &by_id, p);
    let mut todo: Vec<&Block> = blocks
        .iter()
        .filter(|b| assignments.get(&b.id).is_none_or(|a| a.vehicle.is_none()))
        .collect();
    // Most constrained first: blocks that need a vehicle type (few vehicles fit), then
    // the most energy, then the earliest.
    todo.sort_by(|a, b| {
        b.vehicle_type
            .is_some()
            .cmp(&a.vehicle_type.is_some())
            .then(b.distance_km.total_cmp(&a.distance_km))
            .then(a.pull_out_ms.cmp(&b.pull_out_ms))
    });
    let mut out = AutoAssign::default();
    for b in todo {
        let mut best: Option<(f64, &VehicleState, f64, f64, f64)> = None;
        // The most telling reason wins (charge, then time, then missing data).
        let mut why = (0, "no vehicle of the right type is in service");
        let mut note = |rank: u8, text: &'static str| {
            if rank > why.0 {
                why = (rank, text);
            }
        };
        for v in vehicles {
            if !v.usable() || !v.type_fits(b.vehicle_type.as_deref()) {
                continue;
            }
            if taken.get(&v.id).is_some_and(|t| {
                t.iter()
                    .any(|(s, e, _)| overlaps((*s, *e), (b.pull_out_ms, b.pull_in_ms)))
            }) {
                note(2, "every suitable vehicle is busy at that time");
                continue;
            }
            let Some(avail) = available_kwh(v, b.pull_out_ms, now_ms, &taken, p) else {
                note(
                    1,
                    "no suitable free vehicle has reported its state of charge",
                );
                continue;
            };
            let need = energy_kwh(b.distance_km, Some(v), p);
            if avail < need {
                note(3, "no free vehicle will have enough charge at pull-out");
                continue;
            }
            let surplus = avail - need;
            if best
                .as_ref()
                .is_none_or(|(s, bv, ..)| surplus < *s || (surplus == *s && v.id < bv.id))
            {
                let soc = forecast_soc(v, b.pull_out_ms, now_ms, p).unwrap_or(0.0);
                best = Some((surplus, v, need, avail, soc));
            }
        }
        match best {
            Some((_, v, need, avail, soc)) => {
                taken
                    .entry(v.id.clone())
                    .or_default()
                    .push((b.pull_out_ms, b.pull_in_ms, need));
                out.proposals.push(Proposal {
                    block: b.id.clone(),
                    vehicle: v.id.clone(),
                    forecast_soc_pct: (soc * 10.0).round() / 10.0,
                    need_kwh: (need * 10.0).round() / 10.0,
                    available_kwh: (avail * 10.0).round() / 10.0,
                });
            }
            None => out.unassigned.push((b.id.clone(), why.1.to_string())),
        }
    }
    out.proposals.sort_by(|a, b| a.block.cmp(&b.block));
    out
}

mod conflicts;
pub mod runs;
#[cfg(test)]
mod tests;

pub use conflicts::{conflicts, replacements, Conflict, DayContext, Replacement};
