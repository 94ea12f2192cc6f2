//! `stop_times.txt`: each trip's stops in sequence with their times; untimed stops
//! between timed ones are interpolated, and a trip whose times cannot be used is
//! rejected (with the line that says why) rather than imported wrong.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::{heap, parse_time, table, Files};
use crate::gtfs::{GtfsError, Report, Stop, StopTime, Trip};

/// `stop_times.txt`: gives each trip its stop times; drops the trips left without any.
/// `stop_ids` maps each kept stop's id to its index in `stops`.
pub(super) fn stop_times(
    files: &mut Files<'_>,
    trips: &mut BTreeMap<String, Trip>,
    stop_ids: &HashMap<String, u32>,
    stops: &[Stop],
    report: &mut Report,
) -> Result<(), GtfsError> {
    let mut raw: HashMap<String, Vec<RawStopTime>> = HashMap::new();
    let mut rows_total = 0u64;
    let mut rows_untimed = 0u64;
    let budget = files.budget();
    if let Some((t, mut rows)) = table(
        files,
        "stop_times.txt",
        &["trip_id", "stop_id", "stop_sequence"],
        report,
    )? {
        if !t.has("arrival_time") && !t.has("departure_time") {
            report.error(
                t.name,
                Some(t.header_line),
                Some("arrival_time/departure_time"),
                "no time columns at all".into(),
            );
        }
        while let Some((line, r)) = rows.next(report)? {
            rows_total += 1;
            if t.get(r, "arrival_time").is_none() && t.get(r, "departure_time").is_none() {
                rows_untimed += 1;
            }
            let (Some(trip), Some(stop)) = (t.get(r, "trip_id"), t.get(r, "stop_id")) else {
                report.error(
                    t.name,
                    Some(line),
                    None,
                    "trip_id and stop_id are required".into(),
                );
                continue;
            };
            if !trips.contains_key(trip) {
                report.error(
                    t.name,
                    Some(line),
                    Some("trip_id"),
                    format!("trip {trip:?} is not in trips.txt (or was rejected)"),
                );
                continue;
            }
            let Some(&stop) = stop_ids.get(stop) else {
                report.error(
                    t.name,
                    Some(line),
                    Some("stop_id"),
                    format!("stop {stop:?} is not in stops.txt"),
                );
                continue;
            };
            let Some(seq) = t
                .get(r, "stop_sequence")
                .and_then(|v| v.parse::<u32>().ok())
            else {
                report.error(
                    t.name,
                    Some(line),
                    Some("stop_sequence"),
                    "not a non-negative integer".into(),
                );
                continue;
            };
            let time = |c: &str, report: &mut Report| -> Option<u32> {
                let v = t.get(r, c)?;
                let parsed = parse_time(v);
                if parsed.is_none() {
                    report.error(
                        t.name,
                        Some(line),
                        Some(c),
                        format!("{v:?} is not a time (H:MM:SS, hours may pass 24)"),
                    );
                }
                parsed
            };
            let (arr, dep) = (
                time("arrival_time", &mut *report),
                time("departure_time", &mut *report),
            );
            let row = RawStopTime {
                line,
                seq,
                stop,
                arrival: arr.or(dep),
                departure: dep.or(arr),
            };
            budget.hold(size_of::<RawStopTime>(), t.name)?;
            match raw.get_mut(trip) {
                Some(v) => v.push(row),
                None => {
                    budget.hold(size_of::<(String, Vec<RawStopTime>)>() + heap(trip), t.name)?;
                    raw.insert(trip.to_string(), vec![row]);
                }
            }
        }
    }
    if rows_total > 0 && rows_untimed == rows_total {
        report.error(
            "stop_times.txt",
            None,
            Some("arrival_time/departure_time"),
            format!("none of the {rows_total} rows has an arrival or departure time: a trip needs at least its first and last stop timed, so no trip can be scheduled"),
        );
    }
    let had_rows: HashSet<String> = raw.keys().cloned().collect();
    for (id, mut rows) in raw {
        rows.sort_by_key(|r| r.seq);
        let Some(trip) = trips.get_mut(&id) else {
            continue;
        };
        match build_stop_times(&rows, stops) {
            Ok(st) => {
                let bytes: usize = st
                    .iter()
                    .map(|s| size_of::<StopTime>() + heap(&s.stop_id))
                    .sum();
                budget.hold(bytes, "stop_times.txt")?;
                trip.stop_times = st;
            }
            Err((line, msg)) => {
                report.error(
                    "stop_times.txt",
                    Some(line),
                    Some("arrival_time/departure_time"),
                    format!("trip {id:?} rejected: {msg}"),
                );
            }
        }
    }
    let untimed: Vec<String> = trips
        .values()
        .filter(|t| t.stop_times.is_empty())
        .map(|t| t.id.clone())
        .collect();
    for id in untimed {
        trips.remove(&id);
        // Trips rejected for their stop times were reported with the line above.
        if !had_rows.contains(&id) {
            report.error(
                "trips.txt",
                None,
                Some("trip_id"),
                format!("trip {id:?} has no stop times; not imported"),
            );
        }
    }
    Ok(())
}

/// One stop_times row, kept small (32 bytes, no allocation) until its trip is built:
/// the stop is an index into the feed's stops.
#[derive(Debug, Clone, Copy)]
struct RawStopTime {
    line: u64,
    seq: u32,
    stop: u32,
    arrival: Option<u32>,
    departure: Option<u32>,
}

/// Orders a trip's stops, checks its times and interpolates untimed stops between timed
/// ones. Err((line, why)) rejects the trip.
fn build_stop_times(rows: &[RawStopTime], stops: &[Stop]) -> Result<Vec<StopTime>, (u64, String)> {
    let stop_id = |r: &RawStopTime| {
        stops
            .get(r.stop as usize)
            .map(|s| s.id.clone())
            .unwrap_or_default()
    };
    let (first, last) = match (rows.first(), rows.last()) {
        (Some(f), Some(l)) if rows.len() >= 2 => (f, l),
        (Some(f), _) => return Err((f.line, "a trip needs at least two stops".into())),
        _ => return Err((0, "no stops".into())),
    };
    if first.arrival.is_none() {
        return Err((first.line, "its first stop has no time".into()));
    }
    if last.arrival.is_none() {
        return Err((last.line, "its last stop has no time".into()));
    }
    for w in rows.windows(2) {
        if w[0].seq == w[1].seq {
            return Err((
                w[1].line,
                format!("stop_sequence {} appears twice", w[1].seq),
            ));
        }
    }
    let mut out: Vec<StopTime> = Vec::with_capacity(rows.len());
    let mut prev_timed: Option<(usize, u32)> = None;
    for (i, r) in rows.iter().enumerate() {
        if let (Some(arr), Some(dep)) = (r.arrival, r.departure) {
            if dep < arr {
                return Err((r.line, "departure before arrival".into()));
            }
            if let Some((_, prev)) = prev_timed {
                if arr < prev {
                    return Err((r.line, "time goes backwards along the trip".into()));
                }
            }
            // Interpolate the untimed stops since the previous timed one.
            if let Some((pi, pt)) = prev_timed {
                let gap = (i - pi) as u32;
                for (k, st) in out.iter_mut().enumerate().skip(pi + 1) {
                    let t = pt + (arr - pt) * (k - pi) as u32 / gap;
                    st.arrival_s = t;
                    st.departure_s = t;
                }
            }
            prev_timed = Some((i, dep));
            out.push(StopTime {
                stop_id: stop_id(r),
                arrival_s: arr,
                departure_s: dep,
                timed: true,
            });
        } else {
            out.push(StopTime {
                stop_id: stop_id(r),
                arrival_s: 0,
                departure_s: 0,
                timed: false,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untimed_intermediate_stops_are_interpolated() {
        let stops: Vec<Stop> = ["A", "B", "C", "D"]
            .iter()
            .map(|id| Stop {
                id: id.to_string(),
                name: id.to_string(),
                lat: 0.0,
                lon: 0.0,
            })
            .collect();
        let row = |seq: u32, line: u64, stop: u32, t: Option<(u32, u32)>| RawStopTime {
            line,
            seq,
            stop,
            arrival: t.map(|t| t.0),
            departure: t.map(|t| t.1),
        };
        let rows = vec![
            row(1, 2, 0, Some((100, 100))),
            row(2, 3, 1, None),
            row(3, 4, 2, None),
            row(4, 5, 3, Some((400, 410))),
        ];
        let st = build_stop_times(&rows, &stops).unwrap();
        let t: Vec<u32> = st.iter().map(|s| s.arrival_s).collect();
        assert_eq!(t, vec![100, 200, 300, 400]);
        assert!(!st[1].timed && st[3].timed);
        assert_eq!(st[2].stop_id, "C");
        let mut no_end = rows.clone();
        no_end[3].arrival = None;
        no_end[3].departure = None;
        assert_eq!(build_stop_times(&no_end, &stops).unwrap_err().0, 5);
    }
}
