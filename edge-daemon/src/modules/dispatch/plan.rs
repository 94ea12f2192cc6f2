//! Dispatch decisions, with no I/O: energy a block needs, the state of charge a vehicle
//! will have at pull-out, the auto-assign proposal, conflicts, and ranked replacements
//! when a vehicle drops out. Kept pure so they are unit-tested and benchmarked directly.
//!
//! Rules:
//! - energy needed = distance x the vehicle's kWh/km (the depot default when unknown)
//!   + a reserve, a percentage of the vehicle's battery.
//! - forecast SoC at pull-out = last reported SoC, plus, while the vehicle reports that
//!   it is charging, the depot's charger power for the time until pull-out (capped at
//!   100 %). A vehicle that never reported a SoC has no forecast and is not proposed.
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
    if !v.charging || at_ms <= now_ms || v.battery_kwh <= 0.0 {
        return Some(soc);
    }
    let hours = (at_ms - now_ms) as f64 / 3_600_000.0;
    Some((soc + p.charger_kw * hours / v.battery_kwh * 100.0).min(100.0))
}

fn overlaps(a: (i64, i64), b: (i64, i64)) -> bool {
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
type Taken = HashMap<String, Vec<(i64, i64, f64)>>;

fn taken_by_existing(
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
fn available_kwh(v: &VehicleState, at: i64, now: i64, taken: &Taken, p: &Params) -> Option<f64> {
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

/// A problem on one block's row.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Conflict {
    pub code: &'static str,
    pub message: String,
}

fn conflict(code: &'static str, message: String) -> Conflict {
    Conflict { code, message }
}

/// What conflict checks need about the day.
pub struct DayContext<'a> {
    pub blocks: &'a [Block],
    pub assignments: &'a HashMap<String, Assignment>,
    pub vehicles: &'a HashMap<String, VehicleState>,
    /// Drivers signed on for this service day.
    pub signed_on: &'a std::collections::HashSet<String>,
    /// Whether this service day is today at the depot.
    pub is_today: bool,
    pub now_ms: i64,
    pub params: &'a Params,
}

/// Conflicts of one block: double assignment (vehicle or driver), not enough charge,
/// vehicle out of service or of the wrong type, driver not signed on or over hours, late
/// pull-out, disrupted.
pub fn conflicts(b: &Block, ctx: &DayContext<'_>) -> Vec<Conflict> {
    let mut out = Vec::new();
    let Some(a) = ctx.assignments.get(&b.id) else {
        if ctx.is_today && ctx.now_ms > b.pull_out_ms {
            out.push(conflict(
                "unassigned",
                "pull-out time has passed and no vehicle is assigned".into(),
            ));
        }
        return out;
    };
    let span = (b.pull_out_ms, b.pull_in_ms);
    let others = || {
        ctx.blocks
            .iter()
            .filter(move |o| o.id != b.id && overlaps(span, (o.pull_out_ms, o.pull_in_ms)))
            .filter_map(|o| ctx.assignments.get(&o.id).map(|oa| (o, oa)))
    };
    if let Some(v) = &a.vehicle {
        if let Some((o, _)) = others().find(|(_, oa)| oa.vehicle.as_ref() == Some(v)) {
            out.push(conflict(
                "double_vehicle",
                format!("{v} is also assigned to block {} at the same time", o.block),
            ));
        }
        match ctx.vehicles.get(v) {
            None => out.push(conflict(
                "unknown_vehicle",
                format!("{v} is not in the depot's registry"),
            )),
            Some(vs) => {
                if !vs.usable() {
                    out.push(conflict(
                        "vehicle_out_of_service",
                        format!(
                            "{} is {}",
                            vs.label,
                            vs.status.as_deref().unwrap_or("").replace('_', " ")
                        ),
                    ));
                }
                if !vs.type_fits(b.vehicle_type.as_deref()) {
                    out.push(conflict(
                        "vehicle_type",
                        format!(
                            "the block needs a {} vehicle; {} is {}",
                            b.vehicle_type.as_deref().unwrap_or("?"),
                            vs.label,
                            vs.vehicle_type.as_deref().unwrap_or("of no recorded type")
                        ),
                    ));
                }
                let at = if a.pull_out_actual_ms.is_some() {
                    ctx.now_ms
                } else {
                    b.pull_out_ms
                };
                let km = if a.pull_out_actual_ms.is_some() {
                    b.remaining_km(ctx.now_ms)
                } else {
                    b.distance_km
                };
                let need = energy_kwh(km, Some(vs), ctx.params);
                match forecast_soc(vs, at, ctx.now_ms, ctx.params) {
                    None => out.push(conflict(
                        "no_charge_data",
                        format!("{} has not reported its state of charge", vs.label),
                    )),
                    Some(soc) if soc / 100.0 * vs.battery_kwh < need => out.push(conflict(
                        "low_charge",
                        format!(
                            "forecast {soc:.0}% = {:.0} kWh at pull-out; the block needs {need:.0} kWh",
                            soc / 100.0 * vs.battery_kwh
                        ),
                    )),
                    Some(_) => {}
                }
            }
        }
    }
    if let Some(d) = &a.driver {
        if let Some((o, _)) = others().find(|(_, oa)| oa.driver.as_ref() == Some(d)) {
            out.push(conflict(
                "double_driver",
                format!("{d} is also assigned to block {} at the same time", o.block),
            ));
        }
        let total: i64 = ctx
            .blocks
            .iter()
            .filter(|o| {
                ctx.assignments
                    .get(&o.id)
                    .is_some_and(|oa| oa.driver.as_ref() == Some(d))
            })
            .map(|o| o.pull_in_ms - o.pull_out_ms)
            .sum();
        if total > ctx.params.max_driver_ms {
            out.push(conflict(
                "driver_over_hours",
                format!(
                    "{d} is assigned {:.1} h this day; the limit is {:.1} h",
                    total as f64 / 3_600_000.0,
                    ctx.params.max_driver_ms as f64 / 3_600_000.0
                ),
            ));
        }
        if ctx.is_today
            && !ctx.signed_on.contains(d)
            && a.pull_out_actual_ms.is_none()
            && ctx.now_ms >= b.pull_out_ms - ctx.params.signon_before_ms
        {
            out.push(conflict(
                "driver_not_signed_on",
                format!("{d} has not signed on"),
            ));
        }
    }
    match a.pull_out_actual_ms {
        Some(t) if t > b.pull_out_ms + ctx.params.late_grace_ms => out.push(conflict(
            "late_pull_out",
            format!("pulled out {} min late", (t - b.pull_out_ms) / 60_000),
        )),
        None if ctx.is_today && ctx.now_ms > b.pull_out_ms + ctx.params.late_grace_ms => {
            out.push(conflict(
                "late_pull_out",
                format!(
                    "not pulled out yet, {} min after the pull-out time",
                    (ctx.now_ms - b.pull_out_ms) / 60_000
                ),
            ))
        }
        _ => {}
    }
    if a.disrupted_ms.is_some() && a.pull_in_actual_ms.is_none() {
        let left = b
            .trips
            .iter()
            .filter(|t| t.end_ms > a.disrupted_ms.unwrap_or(0))
            .count();
        out.push(conflict(
            "disrupted",
            format!(
                "{}: {left} trip(s) left to cover",
                a.disruption.as_deref().unwrap_or("vehicle out of service")
            ),
        ));
    }
    out
}

/// A candidate to take over a block.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Replacement {
    pub vehicle: String,
    pub label: String,
    pub forecast_soc_pct: f64,
    pub need_kwh: f64,
    pub available_kwh: f64,
}

/// Vehicles that can take over `block` from `from_ms` (its remaining trips): usable, of
/// the right type, not busy then, with enough energy; most charge to spare first.
pub fn replacements(
    block: &Block,
    blocks: &[Block],
    assignments: &HashMap<String, Assignment>,
    vehicles: &[VehicleState],
    from_ms: i64,
    now_ms: i64,
    p: &Params,
) -> Vec<Replacement> {
    let by_id: HashMap<&str, &VehicleState> = vehicles.iter().map(|v| (v.id.as_str(), v)).collect();
    let taken = taken_by_existing(blocks, assignments, &by_id, p);
    let current = assignments.get(&block.id).and_then(|a| a.vehicle.clone());
    let km = block.remaining_km(from_ms);
    let window = (from_ms.max(block.pull_out_ms), block.pull_in_ms);
    let mut out: Vec<Replacement> = vehicles
        .iter()
        .filter(|v| Some(&v.id) != current.as_ref())
        .filter(|v| v.usable() && v.type_fits(block.vehicle_type.as_deref()))
        .filter(|v| {
            !taken
                .get(&v.id)
                .is_some_and(|t| t.iter().any(|(s, e, _)| overlaps((*s, *e), window)))
        })
        .filter_map(|v| {
            let avail = available_kwh(v, window.0, now_ms, &taken, p)?;
            let need = energy_kwh(km, Some(v), p);
            (avail >= need).then(|| Replacement {
                vehicle: v.id.clone(),
                label: v.label.clone(),
                forecast_soc_pct: forecast_soc(v, window.0, now_ms, p).unwrap_or(0.0).round(),
                need_kwh: (need * 10.0).round() / 10.0,
                available_kwh: (avail * 10.0).round() / 10.0,
            })
        })
        .collect();
    out.sort_by(|a, b| {
        (b.available_kwh - b.need_kwh)
            .total_cmp(&(a.available_kwh - a.need_kwh))
            .then(a.vehicle.cmp(&b.vehicle))
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    fn block(id: &str, from_h: i64, to_h: i64, km: f64) -> Block {
        Block {
            id: id.into(),
            service_date: "2026-11-22".into(),
            block: id.into(),
            pull_out_ms: from_h * H,
            pull_in_ms: to_h * H,
            distance_km: km,
            ..Default::default()
        }
    }

    fn bus(id: &str, soc: Option<f64>) -> VehicleState {
        VehicleState {
            id: id.into(),
            label: id.into(),
            battery_kwh: 300.0,
            kwh_per_km: Some(1.0),
            soc_pct: soc,
            ..Default::default()
        }
    }

    #[test]
    fn energy_and_forecast() {
        let p = Params::default();
        let v = bus("a", Some(50.0));
        assert!(
            (energy_kwh(100.0, Some(&v), &p) - 130.0).abs() < 1e-9,
            "100 km x 1.0 + 10% of 300"
        );
        assert_eq!(
            forecast_soc(&v, 10 * H, 0, &p),
            Some(50.0),
            "not charging: as reported"
        );
        let charging = VehicleState {
            charging: true,
            ..v.clone()
        };
        // 60 kW for 2 h = 120 kWh = 40 % of 300 kWh.
        assert_eq!(forecast_soc(&charging, 2 * H, 0, &p), Some(90.0));
        assert_eq!(
            forecast_soc(&charging, 10 * H, 0, &p),
            Some(100.0),
            "capped"
        );
        assert_eq!(forecast_soc(&bus("b", None), H, 0, &p), None);
    }

    #[test]
    fn auto_assign_respects_charge_type_status_and_time() {
        let p = Params::default();
        let blocks = vec![
            block("long", 6, 14, 200.0), // needs 230 kWh
            block("short", 7, 9, 40.0),  // needs 70 kWh
            block("typed", 6, 8, 10.0),
        ];
        let mut blocks = blocks;
        blocks[2].vehicle_type = Some("18m".into());
        let vehicles = vec![
            bus("low", Some(30.0)),   // 90 kWh: short only
            bus("full", Some(100.0)), // 300 kWh: long
            VehicleState {
                status: Some("out_of_service".into()),
                ..bus("broken", Some(100.0))
            },
            VehicleState {
                vehicle_type: Some("18m".into()),
                ..bus("artic", Some(80.0))
            },
            bus("unknown", None),
        ];
        let r = auto_assign(&blocks, &HashMap::new(), &vehicles, 0, &p);
        let got: HashMap<&str, &str> = r
            .proposals
            .iter()
            .map(|x| (x.block.as_str(), x.vehicle.as_str()))
            .collect();
        assert_eq!(got.get("long"), Some(&"full"), "{r:?}");
        assert_eq!(got.get("short"), Some(&"low"), "best fit, {r:?}");
        assert_eq!(got.get("typed"), Some(&"artic"));
        for prop in &r.proposals {
            assert!(prop.available_kwh >= prop.need_kwh, "{prop:?}");
            assert_ne!(prop.vehicle, "broken");
            assert_ne!(prop.vehicle, "unknown");
        }
        assert!(r.unassigned.is_empty());
        // Not enough charge anywhere: refused with the reason.
        let r = auto_assign(
            &[block("huge", 6, 20, 400.0)],
            &HashMap::new(),
            &vehicles,
            0,
            &p,
        );
        assert!(r.proposals.is_empty());
        assert!(r.unassigned[0].1.contains("enough charge"), "{r:?}");
    }

    #[test]
    fn a_vehicle_runs_two_blocks_only_if_it_has_energy_for_both() {
        let p = Params::default();
        let blocks = vec![block("am", 6, 9, 100.0), block("pm", 15, 18, 100.0)];
        // 300 kWh: am needs 130 (100 + 30 reserve), leaving 170 for pm which needs 130.
        let r = auto_assign(&blocks, &HashMap::new(), &[bus("one", Some(100.0))], 0, &p);
        assert_eq!(r.proposals.len(), 2, "{r:?}");
        let r = auto_assign(&blocks, &HashMap::new(), &[bus("one", Some(80.0))], 0, &p);
        assert_eq!(
            r.proposals.len(),
            1,
            "240 kWh covers one block, not both: {r:?}"
        );
    }

    #[test]
    fn conflicts_are_flagged() {
        let p = Params::default();
        let blocks = vec![block("a", 6, 10, 100.0), block("b", 8, 12, 10.0)];
        let mut assignments = HashMap::new();
        for id in ["a", "b"] {
            assignments.insert(
                id.to_string(),
                Assignment {
                    vehicle: Some("v1".into()),
                    driver: Some("d1".into()),
                    ..Default::default()
                },
            );
        }
        let vehicles: HashMap<String, VehicleState> = [(
            "v1".to_string(),
            VehicleState {
                status: Some("out_of_service".into()),
                ..bus("v1", Some(20.0))
            },
        )]
        .into();
        let signed = Default::default();
        let ctx = DayContext {
            blocks: &blocks,
            assignments: &assignments,
            vehicles: &vehicles,
            signed_on: &signed,
            is_today: true,
            now_ms: 6 * H + 20 * 60_000,
            params: &p,
        };
        let codes: Vec<&str> = conflicts(&blocks[0], &ctx).iter().map(|c| c.code).collect();
        for want in [
            "double_vehicle",
            "double_driver",
            "vehicle_out_of_service",
            "low_charge",
            "driver_not_signed_on",
            "late_pull_out",
        ] {
            assert!(codes.contains(&want), "{want} missing from {codes:?}");
        }
    }

    #[test]
    fn replacements_rank_by_spare_energy_and_skip_busy_ones() {
        let p = Params::default();
        let blocks = vec![block("a", 6, 10, 50.0), block("b", 7, 9, 10.0)];
        let mut assignments = HashMap::new();
        assignments.insert(
            "a".to_string(),
            Assignment {
                vehicle: Some("x".into()),
                ..Default::default()
            },
        );
        assignments.insert(
            "b".to_string(),
            Assignment {
                vehicle: Some("busy".into()),
                ..Default::default()
            },
        );
        let vehicles = vec![
            bus("x", Some(90.0)),
            bus("busy", Some(100.0)),
            bus("mid", Some(50.0)),
            bus("top", Some(95.0)),
            bus("flat", Some(5.0)),
        ];
        let r = replacements(
            &blocks[0],
            &blocks,
            &assignments,
            &vehicles,
            6 * H,
            6 * H,
            &p,
        );
        let ids: Vec<&str> = r.iter().map(|x| x.vehicle.as_str()).collect();
        assert_eq!(ids, vec!["top", "mid"], "{r:?}");
    }
}
