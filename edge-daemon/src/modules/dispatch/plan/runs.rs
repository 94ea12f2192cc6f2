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

impl Relief {
    /// Same place and same time: the bus never stands without a driver.
    pub fn fits(&self) -> bool {
        self.leaves_at == self.taken_at && self.leaves_ms == self.taken_ms
    }
}

/// The reliefs of the day: on each block, consecutive driving events of different runs.
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
        for w in evs.windows(2) {
            let ((r1, e1), (r2, e2)) = (w[0], w[1]);
            if r1.id == r2.id {
                continue;
            }
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
    }
    out.sort_by(|a, b| (a.leaves_ms, &a.block).cmp(&(b.leaves_ms, &b.block)));
    out
}

/// What run conflict checks need about the day.
pub struct RunContext<'a> {
    pub runs: &'a [Run],
    pub reliefs: &'a [Relief],
    pub run_assignments: &'a HashMap<String, RunAssignment>,
    pub blocks: &'a [Block],
    pub assignments: &'a HashMap<String, Assignment>,
    /// A stop record id's name, for messages.
    pub place: &'a dyn Fn(&str) -> String,
    /// A time on the depot's clock, for messages.
    pub clock: &'a dyn Fn(i64) -> String,
    pub params: &'a Params,
}

/// Conflicts of one run: a relief into or out of it at another place or time than the
/// other run's, its driver on another run or block at the same time, its driver over the
/// day's hours.
pub fn run_conflicts(run: &Run, ctx: &RunContext<'_>) -> Vec<Conflict> {
    let mut out = Vec::new();
    let (place, clock) = (ctx.place, ctx.clock);
    let name = |id: &str| {
        ctx.runs
            .iter()
            .find(|r| r.id == id)
            .map_or_else(|| id.to_string(), |r| r.run.clone())
    };
    for rl in ctx
        .reliefs
        .iter()
        .filter(|rl| rl.from_run == run.id || rl.to_run == run.id)
    {
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
                block_name(ctx.blocks, &rl.block),
                name(&rl.from_run),
                place(&rl.leaves_at),
                clock(rl.leaves_ms),
                name(&rl.to_run),
                place(&rl.taken_at),
                clock(rl.taken_ms),
            ),
        });
    }
    let Some(driver) = ctx
        .run_assignments
        .get(&run.id)
        .and_then(|a| a.driver.as_deref())
    else {
        return out;
    };
    let span = (run.start_ms, run.end_ms);
    let mut hours = 0i64;
    for other in ctx.runs {
        let theirs = ctx
            .run_assignments
            .get(&other.id)
            .and_then(|a| a.driver.as_deref());
        if theirs != Some(driver) {
            continue;
        }
        hours += other.end_ms - other.start_ms;
        if other.id != run.id && overlaps(span, (other.start_ms, other.end_ms)) {
            out.push(Conflict {
                code: "double_driver",
                message: format!("{driver} is also on run {} at the same time", other.run),
            });
        }
    }
    for b in ctx.blocks {
        let on_block = ctx.assignments.get(&b.id).and_then(|a| a.driver.as_deref()) == Some(driver);
        if on_block {
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

fn block_name(blocks: &[Block], id: &str) -> String {
    blocks
        .iter()
        .find(|b| b.id == id)
        .map_or_else(|| id.to_string(), |b| b.block.clone())
}

#[cfg(test)]
#[path = "runs_tests.rs"]
mod tests;
