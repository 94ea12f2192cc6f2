//! TODS files read after the GTFS ones (`gtfs/tods.rs` has the model): `run_events.txt`
//! checked against the trips, stops and services kept, `employee_run_dates.txt` against
//! the runs kept, `vehicles.txt`. A row that cannot be used is reported with its line and
//! skipped; a run whose trips overlap in time (one driver on two trips at once) is
//! reported and not imported.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::{heap, parse_date, parse_time, table, Files};
use crate::gtfs::tods::{EmployeeRunDate, FeedVehicle, Run, RunEvent};
use crate::gtfs::{format_time, Feed, GtfsError, Report, Trip};

/// TODS files this importer does not read yet (reported as such, not as strangers).
pub(super) const NOT_READ: &[&str] = &["vehicle_assignments.txt", "chargers.txt"];
/// TODS files it reads.
pub(super) const READ: &[&str] = &["run_events.txt", "employee_run_dates.txt", "vehicles.txt"];

pub(super) fn read(
    files: &mut Files<'_>,
    feed: &mut Feed,
    report: &mut Report,
) -> Result<(), GtfsError> {
    run_events(files, feed, report)?;
    employee_run_dates(files, feed, report)?;
    vehicles(files, feed, report)?;
    for name in NOT_READ {
        if files.contains_key(name) {
            report.warning(name, None, None, "TODS file not read yet; ignored".into());
        }
    }
    Ok(())
}

/// The columns `run_events.txt` must have and every row must fill.
const REQUIRED: [&str; 8] = [
    "service_id",
    "run_id",
    "event_sequence",
    "event_type",
    "start_location",
    "start_time",
    "end_location",
    "end_time",
];

fn run_events(
    files: &mut Files<'_>,
    feed: &mut Feed,
    report: &mut Report,
) -> Result<(), GtfsError> {
    let budget = files.budget();
    let stops: HashSet<&str> = feed.stops.iter().map(|s| s.id.as_str()).collect();
    let trips: HashMap<&str, &Trip> = feed.trips.iter().map(|t| (t.id.as_str(), t)).collect();
    let mut runs: BTreeMap<(String, String), Vec<(u64, RunEvent)>> = BTreeMap::new();
    let mut seqs: HashSet<(String, String, u32)> = HashSet::new();
    let mut on_trip: HashMap<&str, HashSet<&str>> = HashMap::new();
    // (run's service, trip's service) -> a day the run runs and the trip does not.
    let mut apart: HashMap<(String, String), Option<jiff::civil::Date>> = HashMap::new();
    let Some((t, mut rows)) = table(files, "run_events.txt", &REQUIRED, report)? else {
        return Ok(());
    };
    while let Some((line, r)) = rows.next(report)? {
        let get = |c: &str| t.get(r, c);
        let missing: Vec<&str> = REQUIRED
            .iter()
            .copied()
            .filter(|c| get(c).is_none())
            .collect();
        if !missing.is_empty() {
            let why = format!("required field(s) empty: {}", missing.join(", "));
            report.error(t.name, Some(line), None, why);
            continue;
        }
        let (service, run) = (
            get("service_id").unwrap_or_default(),
            get("run_id").unwrap_or_default(),
        );
        let ev = match event_of(&get, &feed.services, &stops, &trips, &mut on_trip) {
            Ok((ev, warnings)) => {
                for (field, w) in warnings {
                    report.warning(
                        t.name,
                        Some(line),
                        Some(field),
                        format!("run {run:?} ({service}): {w}"),
                    );
                }
                ev
            }
            Err((field, why)) => {
                report.error(
                    t.name,
                    Some(line),
                    Some(field),
                    format!("run {run:?} ({service}): {why}"),
                );
                continue;
            }
        };
        if let Some(tr) = ev.trip_id.as_deref().and_then(|id| trips.get(id)) {
            let pair = (service.to_string(), tr.service_id.clone());
            let day = *apart
                .entry(pair)
                .or_insert_with(|| run_without_trip(&feed.services, service, &tr.service_id));
            if let Some(day) = day {
                let why = format!("run {run:?} ({service}): the run is on {day}, when trip {:?} does not run (a run's service must not run on days its trips do not)", tr.id);
                report.warning(t.name, Some(line), Some("service_id"), why);
            }
        }
        if !seqs.insert((service.to_string(), run.to_string(), ev.event_sequence)) {
            let why = format!(
                "run {run:?} ({service}): event_sequence {} appears twice",
                ev.event_sequence
            );
            report.error(t.name, Some(line), Some("event_sequence"), why);
            continue;
        }
        let texts = [&ev.event_type, &ev.start_location, &ev.end_location];
        let optional = [&ev.piece_id, &ev.job_type, &ev.block_id, &ev.trip_id];
        let bytes = size_of::<RunEvent>()
            + 2 * (heap(service) + heap(run))
            + texts.iter().map(|t| heap(t)).sum::<usize>()
            + optional
                .iter()
                .map(|t| t.as_deref().map_or(0, heap))
                .sum::<usize>();
        budget.hold(bytes, t.name)?;
        runs.entry((service.to_string(), run.to_string()))
            .or_default()
            .push((line, ev));
    }
    let events_kept = keep_runs(runs, feed, report);
    report.imported.insert("runs", feed.tods.runs.len() as u64);
    report.imported.insert("run_events", events_kept);
    Ok(())
}

/// One row of `run_events.txt` checked (every required field is filled): the event and
/// its warnings, or the field and why it cannot be used.
#[allow(clippy::type_complexity)]
fn event_of<'r, 'f>(
    get: &dyn Fn(&str) -> Option<&'r str>,
    services: &HashMap<String, crate::gtfs::Service>,
    stops: &HashSet<&str>,
    trips: &HashMap<&str, &'f Trip>,
    on_trip: &mut HashMap<&'f str, HashSet<&'f str>>,
) -> Result<(RunEvent, Vec<(&'static str, String)>), (&'static str, String)> {
    let field = |c: &str| get(c).unwrap_or_default();
    let service = field("service_id");
    if !services.contains_key(service) {
        return Err((
            "service_id",
            format!("service {service:?} is not in calendar.txt or calendar_dates.txt"),
        ));
    }
    let seq = field("event_sequence")
        .parse::<u32>()
        .map_err(|_| ("event_sequence", "not a non-negative integer".to_string()))?;
    let (from, to) = (field("start_location"), field("end_location"));
    if let Some(place) = [from, to].into_iter().find(|p| !stops.contains(p)) {
        return Err((
            "start_location/end_location",
            format!("{place:?} is not in stops.txt"),
        ));
    }
    let (Some(start), Some(end)) = (
        parse_time(field("start_time")),
        parse_time(field("end_time")),
    ) else {
        return Err((
            "start_time/end_time",
            "not a time (H:MM:SS, hours may pass 24)".into(),
        ));
    };
    if end < start {
        return Err(("end_time", "ends before it starts".into()));
    }
    let trip = match get("trip_id") {
        None => None,
        Some(id) => Some(*trips.get(id).ok_or_else(|| {
            (
                "trip_id",
                format!("trip {id:?} is not in trips.txt (or was not imported)"),
            )
        })?),
    };
    let mut block = get("block_id").map(String::from);
    if let Some((tr, tb)) = trip.and_then(|tr| tr.block_id.as_ref().map(|b| (tr, b))) {
        match &block {
            Some(b) if b != tb => {
                return Err((
                    "block_id",
                    format!("block {b:?} differs from trip {:?}'s block {tb:?}", tr.id),
                ));
            }
            _ => block = Some(tb.clone()),
        }
    }
    let (mid_start, mid_end) = (
        get("start_mid_trip") == Some("1"),
        get("end_mid_trip") == Some("1"),
    );
    let mut warnings = Vec::new();
    if let Some(tr) = trip {
        // The trip's stops as a set, built once per trip (a long trip checked by many
        // rows would otherwise be scanned each time).
        let stops_on = on_trip
            .entry(tr.id.as_str())
            .or_insert_with(|| tr.stop_times.iter().map(|st| st.stop_id.as_str()).collect());
        for (error, f, msg) in trip_places(tr, stops_on, (from, mid_start), (to, mid_end)) {
            if error {
                return Err((f, msg));
            }
            warnings.push((f, msg));
        }
    }
    let ev = RunEvent {
        service_id: service.to_string(),
        run_id: field("run_id").to_string(),
        event_sequence: seq,
        piece_id: get("piece_id").map(String::from),
        block_id: block,
        job_type: get("job_type").map(String::from),
        event_type: field("event_type").to_string(),
        trip_id: trip.map(|tr| tr.id.clone()),
        start_location: from.to_string(),
        start_s: start,
        end_location: to.to_string(),
        end_s: end,
        start_mid_trip: mid_start,
        end_mid_trip: mid_end,
    };
    Ok((ev, warnings))
}

/// A day (within two years of the run's service's first) the run's service runs and the
/// trip's does not, if any.
fn run_without_trip(
    services: &HashMap<String, crate::gtfs::Service>,
    run: &str,
    trip: &str,
) -> Option<jiff::civil::Date> {
    if run == trip {
        return None;
    }
    let (r, t) = (services.get(run)?, services.get(trip)?);
    // At most 800 days are tried, added dates included (a service may add a million).
    let mut days: Vec<jiff::civil::Date> = r.added.iter().copied().collect();
    days.sort();
    days.truncate(800);
    if let (Some(mut d), Some(end)) = (r.start, r.end) {
        while d <= end && days.len() < 800 {
            days.push(d);
            d = d.tomorrow().ok()?;
        }
    }
    days.sort();
    days.into_iter().find(|&d| r.runs_on(d) && !t.runs_on(d))
}

/// Keeps the runs whose trips never overlap (touching is fine); returns the events kept.
fn keep_runs(
    runs: BTreeMap<(String, String), Vec<(u64, RunEvent)>>,
    feed: &mut Feed,
    report: &mut Report,
) -> u64 {
    let mut events_kept = 0u64;
    for ((service, run), mut events) in runs {
        events.sort_by_key(|(_, e)| e.event_sequence);
        // One driver cannot work two trips at once (touching is fine).
        let mut on_trips: Vec<&(u64, RunEvent)> =
            events.iter().filter(|(_, e)| e.trip_id.is_some()).collect();
        on_trips.sort_by_key(|(_, e)| (e.start_s, e.end_s));
        let clash = on_trips.windows(2).find(|w| w[1].1.start_s < w[0].1.end_s);
        if let Some(w) = clash {
            let (a, b) = (&w[0].1, &w[1].1);
            report.error("run_events.txt", Some(w[1].0), None, format!(
                "run {run:?} ({service}): trips {:?} ({}-{}) and {:?} ({}-{}) overlap in time; one driver cannot work both. The run is not imported",
                a.trip_id.as_deref().unwrap_or_default(), format_time(a.start_s), format_time(a.end_s),
                b.trip_id.as_deref().unwrap_or_default(), format_time(b.start_s), format_time(b.end_s)));
            continue;
        }
        events_kept += events.len() as u64;
        feed.tods.runs.push(Run {
            service_id: service,
            run_id: run,
            events: events.into_iter().map(|(_, e)| e).collect(),
        });
    }
    events_kept
}

/// What is wrong with an event's places on its trip: (an error that refuses the event,
/// the field, the message). A relief mid-trip must be at one of the trip's stops; at the
/// trip's ends the event should start (end) where the trip does (a warning).
fn trip_places(
    tr: &Trip,
    stops: &HashSet<&str>,
    start: (&str, bool),
    end: (&str, bool),
) -> Vec<(bool, &'static str, String)> {
    let on_trip = |p: &str| stops.contains(p);
    let mut out = Vec::new();
    for ((place, mid), end_stop, field, verb, flag) in [
        (
            start,
            tr.first_stop(),
            "start_location",
            "starts",
            "start_mid_trip",
        ),
        (end, tr.last_stop(), "end_location", "ends", "end_mid_trip"),
    ] {
        if mid && !on_trip(place) {
            out.push((
                true,
                field,
                format!(
                    "relief at {place:?}, which is not a stop of trip {:?}",
                    tr.id
                ),
            ));
        } else if !mid && place != end_stop {
            out.push((false, field, format!("{place:?} is not where trip {:?} {verb} ({end_stop:?}); set {flag}=1 for a relief", tr.id)));
        }
    }
    out
}

fn employee_run_dates(
    files: &mut Files<'_>,
    feed: &mut Feed,
    report: &mut Report,
) -> Result<(), GtfsError> {
    let budget = files.budget();
    let runs: HashSet<(&str, &str)> = feed
        .tods
        .runs
        .iter()
        .map(|r| (r.service_id.as_str(), r.run_id.as_str()))
        .collect();
    let mut kept = Vec::new();
    if let Some((t, mut rows)) = table(
        files,
        "employee_run_dates.txt",
        &["date", "service_id", "run_id", "employee_id"],
        report,
    )? {
        while let Some((line, r)) = rows.next(report)? {
            let (Some(date), Some(service), Some(run), Some(employee)) = (
                t.get(r, "date").and_then(parse_date),
                t.get(r, "service_id"),
                t.get(r, "run_id"),
                t.get(r, "employee_id"),
            ) else {
                report.error(
                    t.name,
                    Some(line),
                    None,
                    "date (YYYYMMDD), service_id, run_id and employee_id are required".into(),
                );
                continue;
            };
            if !runs.contains(&(service, run)) {
                report.error(
                    t.name,
                    Some(line),
                    Some("run_id"),
                    format!(
                        "run {run:?} ({service}) is not in run_events.txt (or was not imported)"
                    ),
                );
                continue;
            }
            budget.hold(
                size_of::<EmployeeRunDate>() + heap(service) + heap(run) + heap(employee),
                t.name,
            )?;
            kept.push(EmployeeRunDate {
                date,
                service_id: service.into(),
                run_id: run.into(),
                employee_id: employee.into(),
            });
        }
    }
    report
        .imported
        .insert("employee_run_dates", kept.len() as u64);
    feed.tods.employee_run_dates = kept;
    Ok(())
}

fn vehicles(files: &mut Files<'_>, feed: &mut Feed, report: &mut Report) -> Result<(), GtfsError> {
    let budget = files.budget();
    let mut seen = HashSet::new();
    if let Some((t, mut rows)) = table(files, "vehicles.txt", &["vehicle_id"], report)? {
        while let Some((line, r)) = rows.next(report)? {
            let Some(id) = t.get(r, "vehicle_id") else {
                report.error(
                    t.name,
                    Some(line),
                    Some("vehicle_id"),
                    "empty vehicle_id".into(),
                );
                continue;
            };
            if !seen.insert(id.to_string()) {
                report.error(
                    t.name,
                    Some(line),
                    Some("vehicle_id"),
                    format!("duplicate vehicle_id {id:?}"),
                );
                continue;
            }
            let texts = ["vehicle_label", "license_plate"].map(|c| t.get(r, c).map_or(0, heap));
            budget.hold(
                size_of::<FeedVehicle>() + heap(id) + texts.iter().sum::<usize>(),
                t.name,
            )?;
            feed.tods.vehicles.push(FeedVehicle {
                vehicle_id: id.into(),
                label: t.get(r, "vehicle_label").map(String::from),
                license_plate: t.get(r, "license_plate").map(String::from),
            });
        }
        report
            .imported
            .insert("vehicles", feed.tods.vehicles.len() as u64);
    }
    Ok(())
}
