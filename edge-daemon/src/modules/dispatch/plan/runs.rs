//! TODS runs at the depot (pure, no I/O): a driver's day across blocks, as the cloud
//! published it (`run` master records), the driver the dispatcher put on it
//! (`run_assignment`), the reliefs where two runs hand one block over, and the conflicts
//! of a run: a relief at the wrong place or time, its driver on something else at the
//! same time, or over the day's hours. A day without runs keeps one driver per block.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::{overlaps, Assignment, Block, Conflict, Params};

/// One event of a run, as published.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default)]
pub struct RunEvent {
    pub seq: u32,
    pub piece: Option<String>,
    #[serde(rename = "type")]
    pub kind: String,
    pub job: Option<String>,
    pub trip: Option<String>,
    /// The block record it drives (None: signing on, a break, a report time).
    pub block: Option<String>,
    /// Stop record ids.
    pub from: String,
    pub to: String,
    pub start_ms: i64,
    pub end_ms: i64,
    pub start_mid_trip: bool,
    pub end_mid_trip: bool,
}

/// A run on one service day (a `run` master record).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default)]
pub struct Run {
    #[serde(skip_deserializing)]
    pub id: String,
    pub service_date: String,
    pub run: String,
    pub service: String,
    pub start_ms: i64,
    pub end_ms: i64,
    /// Block record ids it drives, comma separated.
    pub blocks: String,
    /// The feed's employee ids on it that day, comma separated.
    pub employees: Option<String>,
    #[serde(skip_deserializing)]
    pub events: Vec<RunEvent>,
}

/// A driver on a run (operational record `run_assignment`, id = the run's record id).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default)]
pub struct RunAssignment {
    pub service_date: String,
    pub driver: Option<String>,
    pub assigned_by: Option<String>,
    pub assigned_ms: Option<i64>,
}

/// Where one run hands a block to the next: the leaving event's end and the taking
/// event's start.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Relief {
    pub block: String,
    pub from_run: String,
    pub to_run: String,
    pub leaves_at: String,
    pub leaves_ms: i64,
    pub taken_at: String,
    pub taken_ms: i64,
}

/// How far apart the leaving and the taking times of a relief may be: TODS event times
/// may differ from the trip's by a couple of minutes (a driver counted as working a little
/// before departure).
pub const RELIEF_SLACK_MS: i64 = 5 * 60_000;

impl Relief {
    /// Same place, and the times within [`RELIEF_SLACK_MS`]: the bus never stands without
    /// a driver, nor has two.
    pub fn fits(&self) -> bool {
        self.leaves_at == self.taken_at && (self.taken_ms - self.leaves_ms).abs() <= RELIEF_SLACK_MS
    }
}

/// The reliefs of the day: on each block, where a driving event of one run ends and one
/// of another run continues. Two runs working the same stretch together (a driver and a
/// conductor: one starts with or ends inside the other) are not a relief.
pub fn reliefs(runs: &[Run]) -> Vec<Relief> {
    let mut by_block: HashMap<&str, Vec<(&Run, &RunEvent)>> = HashMap::new();
    for r in runs {
        for e in &r.events {
            if let Some(b) = &e.block {
                by_block.entry(b.as_str()).or_default().push((r, e));
            }
        }
    }
    let mut out = Vec::new();
    for (block, mut evs) in by_block {
        evs.sort_by_key(|(r, e)| (e.start_ms, e.end_ms, r.id.clone()));
        // The event that reaches furthest so far; the next one continues from it.
        let mut last: Option<(&Run, &RunEvent)> = None;
        for (r2, e2) in evs {
            if let Some((r1, e1)) = last {
                let together = e2.start_ms <= e1.start_ms || e2.end_ms <= e1.end_ms;
                if r1.id != r2.id && !together {
                    out.push(Relief {
                        block: block.to_string(),
                        from_run: r1.id.clone(),
                        to_run: r2.id.clone(),
                        leaves_at: e1.to.clone(),
                        leaves_ms: e1.end_ms,
                        taken_at: e2.from.clone(),
                        taken_ms: e2.start_ms,
                    });
                }
                if e2.end_ms <= e1.end_ms {
                    continue; // inside the one before: that one still reaches furthest
                }
            }
            last = Some((r2, e2));
        }
    }
    out.sort_by(|a, b| (a.leaves_ms, &a.block).cmp(&(b.leaves_ms, &b.block)));
    out
}

/// What run conflict checks need about the day, indexed once so a day's checks stay
/// linear in its runs.
pub struct RunContext<'a> {
    pub run_assignments: &'a HashMap<String, RunAssignment>,
    /// Drivers signed on for this service day.
    pub signed_on: &'a std::collections::HashSet<String>,
    pub is_today: bool,
    pub now_ms: i64,
    /// A stop record id's name, for messages.
    pub place: &'a dyn Fn(&str) -> String,
    /// A time on the depot's clock, for messages.
    pub clock: &'a dyn Fn(i64) -> String,
    pub params: &'a Params,
    run_names: HashMap<&'a str, &'a str>,
    block_names: HashMap<&'a str, &'a str>,
    reliefs_of: HashMap<&'a str, Vec<&'a Relief>>,
    /// Per driver: spans of their runs (id, run name, start, end) and blocks.
    runs_of: HashMap<&'a str, Vec<(&'a str, &'a str, i64, i64)>>,
    blocks_of: HashMap<&'a str, Vec<&'a Block>>,
}

/// The day, for [`RunContext::new`].
pub struct RunDay<'a> {
    pub runs: &'a [Run],
    pub reliefs: &'a [Relief],
    pub run_assignments: &'a HashMap<String, RunAssignment>,
    pub blocks: &'a [Block],
    pub assignments: &'a HashMap<String, Assignment>,
    pub signed_on: &'a std::collections::HashSet<String>,
    pub is_today: bool,
    pub now_ms: i64,
}

impl<'a> RunContext<'a> {
    pub fn new(
        day: RunDay<'a>,
        place: &'a dyn Fn(&str) -> String,
        clock: &'a dyn Fn(i64) -> String,
        params: &'a Params,
    ) -> Self {
        let mut reliefs_of: HashMap<&str, Vec<&Relief>> = HashMap::new();
        for rl in day.reliefs {
            reliefs_of.entry(rl.from_run.as_str()).or_default().push(rl);
            reliefs_of.entry(rl.to_run.as_str()).or_default().push(rl);
        }
        let mut runs_of: HashMap<&str, Vec<(&str, &str, i64, i64)>> = HashMap::new();
        for r in day.runs {
            if let Some(d) = day
                .run_assignments
                .get(&r.id)
                .and_then(|a| a.driver.as_deref())
            {
                runs_of
                    .entry(d)
                    .or_default()
                    .push((&r.id, &r.run, r.start_ms, r.end_ms));
            }
        }
        let mut blocks_of: HashMap<&str, Vec<&Block>> = HashMap::new();
        for b in day.blocks {
            if let Some(d) = day.assignments.get(&b.id).and_then(|a| a.driver.as_deref()) {
                blocks_of.entry(d).or_default().push(b);
            }
        }
        RunContext {
            run_assignments: day.run_assignments,
            signed_on: day.signed_on,
            is_today: day.is_today,
            now_ms: day.now_ms,
            place,
            clock,
            params,
            run_names: day
                .runs
                .iter()
                .map(|r| (r.id.as_str(), r.run.as_str()))
                .collect(),
            block_names: day
                .blocks
                .iter()
                .map(|b| (b.id.as_str(), b.block.as_str()))
                .collect(),
            reliefs_of,
            runs_of,
            blocks_of,
        }
    }

    fn run_name(&self, id: &'a str) -> &'a str {
        self.run_names.get(id).copied().unwrap_or(id)
    }

    fn block_name(&self, id: &'a str) -> &'a str {
        self.block_names.get(id).copied().unwrap_or(id)
    }
}

/// Conflicts of one run: a relief into or out of it at another place or time than the
/// other run's; no driver, or a driver not signed on, near its start; its driver on
/// another run or block at the same time, or over the day's hours.
pub fn run_conflicts<'a>(run: &'a Run, ctx: &RunContext<'a>) -> Vec<Conflict> {
    let mut out = Vec::new();
    let (place, clock) = (ctx.place, ctx.clock);
    for rl in ctx.reliefs_of.get(run.id.as_str()).into_iter().flatten() {
        if rl.fits() {
            continue;
        }
        let (code, what) = if rl.leaves_at != rl.taken_at {
            ("relief_place", "at another place")
        } else if rl.taken_ms > rl.leaves_ms {
            ("relief_gap", "later: the bus waits without a driver")
        } else {
            ("relief_overlap", "earlier: two drivers on one bus")
        };
        out.push(Conflict {
            code,
            message: format!(
                "relief on block {}: run {} leaves it at {} {}, run {} takes it at {} {} ({what})",
                ctx.block_name(&rl.block),
                ctx.run_name(&rl.from_run),
                place(&rl.leaves_at),
                clock(rl.leaves_ms),
                ctx.run_name(&rl.to_run),
                place(&rl.taken_at),
                clock(rl.taken_ms),
            ),
        });
    }
    let starting = ctx.is_today && ctx.now_ms >= run.start_ms - ctx.params.signon_before_ms;
    let Some(driver) = ctx
        .run_assignments
        .get(&run.id)
        .and_then(|a| a.driver.as_deref())
    else {
        if starting {
            out.push(Conflict {
                code: "run_unassigned",
                message: format!(
                    "run {} starts at {} and has no driver",
                    run.run,
                    clock(run.start_ms)
                ),
            });
        }
        return out;
    };
    if starting && !ctx.signed_on.contains(driver) {
        out.push(Conflict {
            code: "driver_not_signed_on",
            message: format!(
                "{driver} has not signed on; the run starts at {}",
                clock(run.start_ms)
            ),
        });
    }
    let span = (run.start_ms, run.end_ms);
    let mut hours = 0i64;
    for &(id, name, start, end) in ctx.runs_of.get(driver).into_iter().flatten() {
        hours += end - start;
        if id != run.id && overlaps(span, (start, end)) {
            out.push(Conflict {
                code: "double_driver",
                message: format!("{driver} is also on run {name} at the same time"),
            });
        }
    }
    for b in ctx.blocks_of.get(driver).into_iter().flatten() {
        hours += b.pull_in_ms - b.pull_out_ms;
        if overlaps(span, (b.pull_out_ms, b.pull_in_ms)) {
            out.push(Conflict {
                code: "double_driver",
                message: format!(
                    "{driver} is also assigned to block {} at the same time",
                    b.block
                ),
            });
        }
    }
    if hours > ctx.params.max_driver_ms {
        out.push(Conflict {
            code: "driver_hours",
            message: format!(
                "{driver} would work {:.1} h this day (at most {:.1} h)",
                hours as f64 / 3_600_000.0,
                ctx.params.max_driver_ms as f64 / 3_600_000.0
            ),
        });
    }
    out
}

#[cfg(test)]
#[path = "runs_tests.rs"]
mod tests;
