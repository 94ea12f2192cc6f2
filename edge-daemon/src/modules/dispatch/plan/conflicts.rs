//! Conflict checks of a block's row and ranked replacements when a vehicle drops out
//! (pure functions, no I/O).

use std::collections::HashMap;

use serde::Serialize;

use super::{
    available_kwh, energy_kwh, forecast_soc, overlaps, taken_by_existing, Assignment, Block,
    Params, VehicleState,
};

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
                            "forecast {soc:.0}% = {:.0} kWh at pull-out{}; the block needs {need:.0} kWh",
                            soc / 100.0 * vs.battery_kwh,
                            if vs.charge_plan.is_some() { " with the charging plan" } else { "" }
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
