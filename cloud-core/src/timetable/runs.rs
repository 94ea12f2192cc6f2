//! A feed's TODS runs turned into `run` master records for one service day: the runs
//! whose service runs that day and that drive on a block published to the depot, each
//! with its events on the clock (ms), the block records they drive and the employees
//! `employee_run_dates.txt` puts on it. Pure, like `records.rs`.

use std::collections::{BTreeSet, HashMap};

use garasi_sync_protocol::record::FieldValue;

use super::records::at;
use super::{record_id, Edit, Prepared, RUN_RECORD};
use crate::gtfs::tods::Run;

/// The id of a run's record on `date` (a run is a service and run id pair; the service
/// id's length keeps `a/b`+`c` and `a`+`b/c` apart).
pub fn run_record_id(date: jiff::civil::Date, run: &Run) -> String {
    record_id(
        &format!("{}-run-", date.strftime("%Y%m%d")),
        &format!("{}:{}/{}", run.service_id.len(), run.service_id, run.run_id),
    )
}

/// The block records published on one day, by the feed's block id and by trip.
#[derive(Default)]
pub(super) struct PublishedBlocks {
    pub by_block: HashMap<String, String>,
    pub by_trip: HashMap<String, String>,
}

impl PublishedBlocks {
    /// The block record an event drives on: its trip's, or its feed block's.
    fn of(&self, e: &crate::gtfs::tods::RunEvent) -> Option<&String> {
        e.trip_id
            .as_ref()
            .and_then(|t| self.by_trip.get(t))
            .or_else(|| e.block_id.as_ref().and_then(|b| self.by_block.get(b)))
    }
}

/// The `run` records of `date`: runs that drive on one of the `blocks` published that
/// day (a feed block, or a block built from the trips it works). Their places are added
/// to `stops_used`.
pub(super) fn run_records(
    feed: &Prepared,
    tz: &jiff::tz::TimeZone,
    date: jiff::civil::Date,
    blocks: &PublishedBlocks,
    stops_used: &mut BTreeSet<String>,
) -> Vec<Edit> {
    let mut employees: HashMap<(&str, &str), Vec<&str>> = HashMap::new();
    for e in feed
        .feed
        .tods
        .employee_run_dates
        .iter()
        .filter(|e| e.date == date)
    {
        employees
            .entry((e.service_id.as_str(), e.run_id.as_str()))
            .or_default()
            .push(e.employee_id.as_str());
    }
    let mut out = Vec::new();
    for run in &feed.feed.tods.runs {
        let runs_today = feed
            .feed
            .services
            .get(&run.service_id)
            .is_some_and(|s| s.runs_on(date));
        let drives: BTreeSet<&String> = run.events.iter().filter_map(|e| blocks.of(e)).collect();
        if !runs_today || drives.is_empty() {
            continue;
        }
        let events: Vec<serde_json::Value> = run
            .events
            .iter()
            .map(|e| {
                stops_used.insert(e.start_location.clone());
                stops_used.insert(e.end_location.clone());
                serde_json::json!({
                    "seq": e.event_sequence,
                    "piece": e.piece_id,
                    "type": e.event_type,
                    "job": e.job_type,
                    "trip": e.trip_id,
                    "block": blocks.of(e),
                    "from": record_id("stop-", &e.start_location),
                    "to": record_id("stop-", &e.end_location),
                    "start_ms": at(date, e.start_s, tz),
                    "end_ms": at(date, e.end_s, tz),
                    "start_mid_trip": e.start_mid_trip,
                    "end_mid_trip": e.end_mid_trip,
                })
            })
            .collect();
        let block_ids: Vec<&str> = drives.iter().map(|b| b.as_str()).collect();
        let who = employees
            .get(&(run.service_id.as_str(), run.run_id.as_str()))
            .map(|v| v.join(","));
        out.push(Edit {
            record_type: RUN_RECORD,
            record_id: run_record_id(date, run),
            fields: vec![
                ("service_date", FieldValue::Text(date.to_string())),
                ("run", FieldValue::Text(run.run_id.clone())),
                ("service", FieldValue::Text(run.service_id.clone())),
                ("start_ms", FieldValue::Int(at(date, run.start_s(), tz))),
                ("end_ms", FieldValue::Int(at(date, run.end_s(), tz))),
                ("blocks", FieldValue::Text(block_ids.join(","))),
                (
                    "employees",
                    who.map(FieldValue::Text).unwrap_or(FieldValue::Null),
                ),
                (
                    "events",
                    FieldValue::Text(serde_json::Value::Array(events).to_string()),
                ),
            ],
        });
    }
    out
}
