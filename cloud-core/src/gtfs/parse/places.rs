//! `agency.txt` (names, the feed's time zone), `stops.txt` and `routes.txt`: what trips
//! refer to.

use std::collections::{HashMap, HashSet};

use super::{heap, table, Files, MAP_ENTRY};
use crate::gtfs::{Feed, GtfsError, Report, Route, Stop};

/// `agency.txt`: the agencies' names and the one time zone the feed's times are on.
pub(super) fn agency(
    files: &mut Files<'_>,
    feed: &mut Feed,
    report: &mut Report,
) -> Result<(), GtfsError> {
    let budget = files.budget();
    if let Some((t, mut rows)) = table(files, "agency.txt", &["agency_name"], report)? {
        while let Some((_, r)) = rows.next(report)? {
            if let Some(name) = t.get(r, "agency_name") {
                budget.hold(size_of::<String>() + heap(name), t.name)?;
                feed.agency_names.push(name.to_string());
            }
            // Every agency of a feed must share one timezone (GTFS rule); times are local
            // to it.
            if feed.timezone.is_none() {
                feed.timezone = t.get(r, "agency_timezone").map(String::from);
            }
        }
        match &feed.timezone {
            None => report.warning(
                t.name,
                None,
                Some("agency_timezone"),
                "no agency_timezone: times cannot be placed on a clock until the depot plan names one".into(),
            ),
            Some(tz) if jiff::tz::TimeZone::get(tz).is_err() => report.warning(
                t.name,
                None,
                Some("agency_timezone"),
                format!("agency_timezone {tz:?} is not a known IANA time zone"),
            ),
            Some(_) => {}
        }
    }
    Ok(())
}

/// `stops.txt`: returns the stops kept, id -> index in `feed.stops` (for stop_times.txt).
pub(super) fn stops(
    files: &mut Files<'_>,
    feed: &mut Feed,
    report: &mut Report,
) -> Result<HashMap<String, u32>, GtfsError> {
    let mut stop_ids: HashMap<String, u32> = HashMap::new();
    let budget = files.budget();
    if let Some((t, mut rows)) = table(files, "stops.txt", &["stop_id"], report)? {
        while let Some((line, r)) = rows.next(report)? {
            let Some(id) = t.get(r, "stop_id") else {
                report.error(t.name, Some(line), Some("stop_id"), "empty stop_id".into());
                continue;
            };
            let coord = |c: &str| t.get(r, c).and_then(|v| v.parse::<f64>().ok());
            let (lat, lon) = (coord("stop_lat"), coord("stop_lon"));
            let (lat, lon) = match (lat, lon) {
                (Some(a), Some(o))
                    if (-90.0..=90.0).contains(&a) && (-180.0..=180.0).contains(&o) =>
                {
                    (a, o)
                }
                _ => {
                    // Stations' children may lack coordinates; keep the stop, say so.
                    report.warning(
                        t.name,
                        Some(line),
                        Some("stop_lat/stop_lon"),
                        format!("stop {id:?} has no valid coordinates"),
                    );
                    (f64::NAN, f64::NAN)
                }
            };
            if let Some(&kept) = stop_ids.get(id) {
                let same = feed.stops.get(kept as usize).is_some_and(|s| {
                    s.name == t.get(r, "stop_name").unwrap_or(id)
                        && (s.lat == lat || (s.lat.is_nan() && lat.is_nan()))
                        && (s.lon == lon || (s.lon.is_nan() && lon.is_nan()))
                });
                if same {
                    report.warning(
                        t.name,
                        Some(line),
                        Some("stop_id"),
                        format!(
                            "stop {id:?} is listed twice with the same values; second copy ignored"
                        ),
                    );
                } else {
                    report.error(
                        t.name,
                        Some(line),
                        Some("stop_id"),
                        format!(
                            "duplicate stop_id {id:?} with different values; the first one is kept"
                        ),
                    );
                }
                continue;
            }
            let name = t.get(r, "stop_name").unwrap_or(id);
            budget.hold(
                size_of::<Stop>()
                    + size_of::<(String, u32)>()
                    + MAP_ENTRY
                    + 2 * heap(id)
                    + heap(name),
                t.name,
            )?;
            stop_ids.insert(id.to_string(), feed.stops.len() as u32);
            feed.stops.push(Stop {
                id: id.into(),
                name: name.into(),
                lat,
                lon,
            });
        }
    }
    Ok(stop_ids)
}

/// `routes.txt`: returns the ids of the routes kept (for trips.txt's checks).
pub(super) fn routes(
    files: &mut Files<'_>,
    feed: &mut Feed,
    report: &mut Report,
) -> Result<HashSet<String>, GtfsError> {
    let mut route_ids = HashSet::new();
    let budget = files.budget();
    if let Some((t, mut rows)) = table(files, "routes.txt", &["route_id", "route_type"], report)? {
        while let Some((line, r)) = rows.next(report)? {
            let Some(id) = t.get(r, "route_id") else {
                report.error(
                    t.name,
                    Some(line),
                    Some("route_id"),
                    "empty route_id".into(),
                );
                continue;
            };
            let Some(rt) = t.get(r, "route_type").and_then(|v| v.parse().ok()) else {
                report.error(
                    t.name,
                    Some(line),
                    Some("route_type"),
                    format!("route {id:?}: route_type is not a number"),
                );
                continue;
            };
            if !route_ids.insert(id.to_string()) {
                report.error(
                    t.name,
                    Some(line),
                    Some("route_id"),
                    format!("duplicate route_id {id:?}"),
                );
                continue;
            }
            let (short_name, long_name) = (
                t.get(r, "route_short_name").unwrap_or(""),
                t.get(r, "route_long_name").unwrap_or(""),
            );
            budget.hold(
                size_of::<Route>()
                    + size_of::<String>()
                    + MAP_ENTRY
                    + 2 * heap(id)
                    + heap(short_name)
                    + heap(long_name),
                t.name,
            )?;
            feed.routes.push(Route {
                id: id.into(),
                short_name: short_name.into(),
                long_name: long_name.into(),
                route_type: rt,
            });
        }
    }
    Ok(route_ids)
}
