//! TODS runs at the depot, stored and shown: `run` master records and `run_assignment`
//! operational records in `dispatch_records` (like blocks and assignments), the day's
//! runs with their drivers, pieces, reliefs and conflicts for the day view, and the
//! dispatcher putting a driver on a run. The decisions are in `plan/runs.rs`.

use std::collections::HashMap;

use garasi_sync_protocol::actor::ActorId;
use garasi_sync_protocol::record::FieldValue;
use rusqlite::Connection;

use super::plan::runs::{reliefs, run_conflicts, Run, RunAssignment, RunContext, RunDay, RunEvent};
use super::plan::{Assignment, Block, Params};
use super::service::{RUN_ASSIGNMENT_RECORD, RUN_RECORD, STOP_RECORD};
use super::store::{edit, fields, rows_of_day};

/// A day's runs (by start) and their assignments (by run record id), with the names of
/// the places their events use.
pub(super) struct DayRuns {
    pub runs: Vec<Run>,
    pub assignments: HashMap<String, RunAssignment>,
    pub places: HashMap<String, String>,
}

fn run_of(id: String, v: &serde_json::Value) -> Option<Run> {
    let mut r: Run = serde_json::from_value(v.clone()).ok()?;
    r.id = id;
    r.events = v["events"]
        .as_str()
        .and_then(|t| serde_json::from_str::<Vec<RunEvent>>(t).ok())
        .unwrap_or_default();
    Some(r)
}

pub(super) fn load(c: &Connection, date: &str) -> rusqlite::Result<DayRuns> {
    let mut runs: Vec<Run> = rows_of_day(c, RUN_RECORD, date)?
        .into_iter()
        .filter_map(|(id, v)| run_of(id, &v))
        .collect();
    runs.sort_by(|a, b| (a.start_ms, &a.run).cmp(&(b.start_ms, &b.run)));
    let assignments = rows_of_day(c, RUN_ASSIGNMENT_RECORD, date)?
        .into_iter()
        .filter_map(|(id, v)| Some((id, serde_json::from_value(v).ok()?)))
        .collect();
    let mut places = HashMap::new();
    for e in runs.iter().flat_map(|r| &r.events) {
        for p in [&e.from, &e.to] {
            if !places.contains_key(p) {
                let name = fields(c, STOP_RECORD, p)?
                    .and_then(|f| f["name"].as_str().map(String::from))
                    .unwrap_or_else(|| p.trim_start_matches("stop-").to_string());
                places.insert(p.clone(), name);
            }
        }
    }
    Ok(DayRuns {
        runs,
        assignments,
        places,
    })
}

/// Puts a driver on a run of `date` (None clears). False when the run is not in the
/// day's plan.
pub(super) fn assign(
    c: &mut Connection,
    actor: &ActorId,
    date: &str,
    run: &str,
    driver: Option<&str>,
    by: &str,
) -> rusqlite::Result<bool> {
    let tx = c.transaction()?;
    match fields(&tx, RUN_RECORD, run)? {
        Some(r) if r["service_date"].as_str() == Some(date) => {}
        _ => return Ok(false),
    }
    let values = [
        (
            "driver",
            driver.map_or(FieldValue::Null, |d| FieldValue::Text(d.into())),
        ),
        ("assigned_by", FieldValue::Text(by.into())),
        ("assigned_ms", FieldValue::Int(crate::util::now_ms())),
    ];
    edit(&tx, actor, RUN_ASSIGNMENT_RECORD, run, date, &values)?;
    tx.commit()?;
    Ok(true)
}

/// What the day view shows of the runs: each run with its driver, events and conflicts,
/// the reliefs, and for each block the pieces different runs drive.
/// When the view is made: sign-ons of the day, whether it is today, now.
pub(super) struct At<'a> {
    pub signed_on: &'a std::collections::HashSet<String>,
    pub is_today: bool,
    pub now_ms: i64,
}

#[allow(clippy::too_many_arguments)]
pub(super) fn view(
    day: &DayRuns,
    blocks: &[Block],
    block_assignments: &HashMap<String, Assignment>,
    names: &HashMap<&str, &str>,
    tz: &jiff::tz::TimeZone,
    params: &Params,
    at: At<'_>,
) -> serde_json::Value {
    let reliefs = reliefs(&day.runs);
    let place = |p: &str| day.places.get(p).cloned().unwrap_or_else(|| p.to_string());
    let clock = |ms: i64| {
        jiff::Timestamp::from_millisecond(ms)
            .map(|t| t.to_zoned(tz.clone()).strftime("%H:%M").to_string())
            .unwrap_or_default()
    };
    let ctx = RunContext::new(
        RunDay {
            runs: &day.runs,
            reliefs: &reliefs,
            run_assignments: &day.assignments,
            blocks,
            assignments: block_assignments,
            signed_on: at.signed_on,
            is_today: at.is_today,
            now_ms: at.now_ms,
        },
        &place,
        &clock,
        params,
    );
    let runs: Vec<serde_json::Value> = day
        .runs
        .iter()
        .map(|r| {
            let driver = day.assignments.get(&r.id).and_then(|a| a.driver.clone());
            let events: Vec<serde_json::Value> = r
                .events
                .iter()
                .map(|e| {
                    serde_json::json!({
                        "seq": e.seq, "type": e.kind, "piece": e.piece, "trip": e.trip,
                        "block": e.block, "from": e.from, "from_name": place(&e.from),
                        "to": e.to, "to_name": place(&e.to),
                        "start_ms": e.start_ms, "end_ms": e.end_ms,
                    })
                })
                .collect();
            serde_json::json!({
                "id": r.id,
                "run": r.run,
                "service": r.service,
                "start_ms": r.start_ms,
                "end_ms": r.end_ms,
                "blocks": r.blocks.split(',').filter(|b| !b.is_empty()).collect::<Vec<_>>(),
                "employees": r.employees,
                "driver": driver,
                "driver_name": driver.as_deref().and_then(|d| names.get(d).copied()),
                "events": events,
                "conflicts": run_conflicts(r, &ctx),
            })
        })
        .collect();
    let mut pieces: HashMap<&str, Vec<serde_json::Value>> = HashMap::new();
    for r in &day.runs {
        let driver = day.assignments.get(&r.id).and_then(|a| a.driver.as_deref());
        for e in &r.events {
            if let Some(b) = &e.block {
                pieces
                    .entry(b.as_str())
                    .or_default()
                    .push(serde_json::json!({
                        "run": r.run, "run_id": r.id, "driver": driver,
                        "from_name": place(&e.from), "to_name": place(&e.to),
                        "start_ms": e.start_ms, "end_ms": e.end_ms,
                    }));
            }
        }
    }
    for v in pieces.values_mut() {
        v.sort_by_key(|p| p["start_ms"].as_i64().unwrap_or(0));
    }
    serde_json::json!({
        "runs": runs,
        "reliefs": reliefs,
        "pieces": pieces,
    })
}
