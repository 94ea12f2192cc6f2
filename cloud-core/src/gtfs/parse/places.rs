//! `agency.txt` (names, the feed's time zone), `stops.txt` and `routes.txt`: what trips
//! refer to.

use std::collections::HashSet;

use super::{table, Files};
use crate::gtfs::{Feed, Report, Route, Stop};

/// `agency.txt`: the agencies' names and the one time zone the feed's times are on.
pub(super) fn agency(files: &Files<'_>, feed: &mut Feed, report: &mut Report) {
    if let Some(t) = table(files, "agency.txt", &["agency_name"], report) {
        feed.agency_names = t
            .rows
            .iter()
            .filter_map(|(_, r)| t.get(r, "agency_name").map(String::from))
            .collect();
        // Every agency of a feed must share one timezone (GTFS rule); times are local to it.
        feed.timezone = t
            .rows
            .iter()
            .find_map(|(_, r)| t.get(r, "agency_timezone").map(String::from));
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
}

/// `stops.txt`: returns the ids of the stops kept (for stop_times.txt's checks).
pub(super) fn stops(files: &Files<'_>, feed: &mut Feed, report: &mut Report) -> HashSet<String> {
    let mut stop_ids = HashSet::new();
    if let Some(t) = table(files, "stops.txt", &["stop_id"], report) {
        for (line, r) in &t.rows {
            let Some(id) = t.get(r, "stop_id") else {
                report.error(t.name, Some(*line), Some("stop_id"), "empty stop_id".into());
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
                        Some(*line),
                        Some("stop_lat/stop_lon"),
                        format!("stop \"{id}\" has no valid coordinates"),
                    );
                    (f64::NAN, f64::NAN)
                }
            };
            if !stop_ids.insert(id.to_string()) {
                let same = feed.stops.iter().any(|s| {
                    s.id == id
                        && s.name == t.get(r, "stop_name").unwrap_or(id)
                        && (s.lat == lat || (s.lat.is_nan() && lat.is_nan()))
                        && (s.lon == lon || (s.lon.is_nan() && lon.is_nan()))
                });
                if same {
                    report.warning(t.name, Some(*line), Some("stop_id"), format!("stop \"{id}\" is listed twice with the same values; second copy ignored"));
                } else {
                    report.error(t.name, Some(*line), Some("stop_id"), format!("duplicate stop_id \"{id}\" with different values; the first one is kept"));
                }
                continue;
            }
            feed.stops.push(Stop {
                id: id.into(),
                name: t.get(r, "stop_name").unwrap_or(id).into(),
                lat,
                lon,
            });
        }
    }
    stop_ids
}

/// `routes.txt`: returns the ids of the routes kept (for trips.txt's checks).
pub(super) fn routes(files: &Files<'_>, feed: &mut Feed, report: &mut Report) -> HashSet<String> {
    let mut route_ids = HashSet::new();
    if let Some(t) = table(files, "routes.txt", &["route_id", "route_type"], report) {
        for (line, r) in &t.rows {
            let Some(id) = t.get(r, "route_id") else {
                report.error(
                    t.name,
                    Some(*line),
                    Some("route_id"),
                    "empty route_id".into(),
                );
                continue;
            };
            let Some(rt) = t.get(r, "route_type").and_then(|v| v.parse().ok()) else {
                report.error(
                    t.name,
                    Some(*line),
                    Some("route_type"),
                    format!("route \"{id}\": route_type is not a number"),
                );
                continue;
            };
            if !route_ids.insert(id.to_string()) {
                report.error(
                    t.name,
                    Some(*line),
                    Some("route_id"),
                    format!("duplicate route_id \"{id}\""),
                );
                continue;
            }
            feed.routes.push(Route {
                id: id.into(),
                short_name: t.get(r, "route_short_name").unwrap_or("").into(),
                long_name: t.get(r, "route_long_name").unwrap_or("").into(),
                route_type: rt,
            });
        }
    }
    route_ids
}
