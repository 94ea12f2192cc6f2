//! `frequencies.txt` (template trips expanded into concrete ones a bus can be assigned
//! to) and `shapes.txt` (the path a trip drives, for distances).

use std::collections::{BTreeMap, HashMap, HashSet};

use super::trips::trip_bytes;
use super::{format_time, heap, parse_time, table, Files, MAP_ENTRY};
use crate::gtfs::{Feed, GtfsError, Report, StopTime, Trip};

/// `frequencies.txt`: each template trip becomes `{trip_id}@{HH:MM:SS}` trips from
/// start_time (inclusive) to end_time (exclusive) every headway_secs.
pub(super) fn frequencies(
    files: &mut Files<'_>,
    trips: &mut BTreeMap<String, Trip>,
    report: &mut Report,
) -> Result<(), GtfsError> {
    let budget = files.budget();
    if let Some((t, mut rows)) = table(
        files,
        "frequencies.txt",
        &["trip_id", "start_time", "end_time", "headway_secs"],
        report,
    )? {
        let mut expanded: Vec<Trip> = Vec::new();
        let mut templates = HashSet::new();
        while let Some((line, r)) = rows.next(report)? {
            let Some(id) = t.get(r, "trip_id") else {
                continue;
            };
            let Some(template) = trips.get(id) else {
                report.error(
                    t.name,
                    Some(line),
                    Some("trip_id"),
                    format!("trip {id:?} is not an imported trip"),
                );
                continue;
            };
            let (start, end, headway) = (
                t.get(r, "start_time").and_then(parse_time),
                t.get(r, "end_time").and_then(parse_time),
                t.get(r, "headway_secs").and_then(|v| v.parse::<u32>().ok()),
            );
            let (Some(start), Some(end), Some(headway)) = (start, end, headway) else {
                report.error(t.name, Some(line), None, format!("trip {id:?}: start_time, end_time (H:MM:SS) and headway_secs (seconds) are required"));
                continue;
            };
            if headway == 0 || end <= start {
                report.error(
                    t.name,
                    Some(line),
                    Some("headway_secs"),
                    format!("trip {id:?}: needs headway_secs > 0 and end_time after start_time"),
                );
                continue;
            }
            templates.insert(id.to_string());
            let base = template.start_s();
            // Each copy costs its trip and its stop times: counted before it is made, so
            // a tiny headway over a long span is refused, not expanded.
            let copy_bytes = trip_bytes(template)
                + heap(id)
                + template
                    .stop_times
                    .iter()
                    .map(|s| size_of::<StopTime>() + heap(&s.stop_id))
                    .sum::<usize>();
            let mut dep = start;
            while dep < end {
                budget.hold(copy_bytes, t.name)?;
                let shift = dep as i64 - base as i64;
                let mut trip = template.clone();
                trip.id = format!("{id}@{}", format_time(dep));
                trip.from_frequency = Some(id.to_string());
                for st in &mut trip.stop_times {
                    st.arrival_s = (st.arrival_s as i64 + shift).max(0) as u32;
                    st.departure_s = (st.departure_s as i64 + shift).max(0) as u32;
                }
                expanded.push(trip);
                dep += headway;
            }
        }
        for id in templates {
            trips.remove(&id);
        }
        for trip in expanded {
            trips.insert(trip.id.clone(), trip);
        }
    }
    Ok(())
}

/// `shapes.txt` (optional): each shape's points in sequence.
pub(super) fn shapes(
    files: &mut Files<'_>,
    feed: &mut Feed,
    report: &mut Report,
) -> Result<(), GtfsError> {
    let budget = files.budget();
    if let Some((t, mut rows)) = table(
        files,
        "shapes.txt",
        &[
            "shape_id",
            "shape_pt_lat",
            "shape_pt_lon",
            "shape_pt_sequence",
        ],
        report,
    )? {
        let mut pts: HashMap<String, Vec<(u32, f64, f64)>> = HashMap::new();
        while let Some((line, r)) = rows.next(report)? {
            let p = (
                t.get(r, "shape_id"),
                t.get(r, "shape_pt_sequence")
                    .and_then(|v| v.parse::<u32>().ok()),
                t.get(r, "shape_pt_lat").and_then(|v| v.parse::<f64>().ok()),
                t.get(r, "shape_pt_lon").and_then(|v| v.parse::<f64>().ok()),
            );
            match p {
                (Some(id), Some(seq), Some(lat), Some(lon)) => {
                    // Each point is counted twice: read with its sequence, then kept.
                    budget.hold(
                        size_of::<(u32, f64, f64)>() + size_of::<(f64, f64)>(),
                        t.name,
                    )?;
                    match pts.get_mut(id) {
                        Some(v) => v.push((seq, lat, lon)),
                        None => {
                            budget.hold(
                                2 * (size_of::<(String, Vec<(f64, f64)>)>() + MAP_ENTRY + heap(id)),
                                t.name,
                            )?;
                            pts.insert(id.to_string(), vec![(seq, lat, lon)]);
                        }
                    }
                }
                _ => report.error(
                    t.name,
                    Some(line),
                    None,
                    "shape point needs shape_id, numeric sequence, lat and lon".into(),
                ),
            }
        }
        for (id, mut v) in pts {
            v.sort_by_key(|p| p.0);
            feed.shapes
                .insert(id, v.into_iter().map(|(_, a, o)| (a, o)).collect());
        }
    }
    Ok(())
}
