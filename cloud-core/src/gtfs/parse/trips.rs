//! `trips.txt`: each trip with its route and service, checked against what routes.txt
//! and the calendars kept.

use std::collections::{BTreeMap, HashSet};

use super::{table, Files};
use crate::gtfs::{Feed, Report, Trip};

/// `trips.txt`: the trips whose route and service exist, by id (no stop times yet).
pub(super) fn trips(
    files: &Files<'_>,
    feed: &Feed,
    route_ids: &HashSet<String>,
    report: &mut Report,
) -> BTreeMap<String, Trip> {
    let mut trips: BTreeMap<String, Trip> = BTreeMap::new();
    if let Some(t) = table(
        files,
        "trips.txt",
        &["route_id", "service_id", "trip_id"],
        report,
    ) {
        for (line, r) in &t.rows {
            let (Some(id), Some(route), Some(service)) = (
                t.get(r, "trip_id"),
                t.get(r, "route_id"),
                t.get(r, "service_id"),
            ) else {
                report.error(
                    t.name,
                    Some(*line),
                    None,
                    "trip_id, route_id and service_id are required".into(),
                );
                continue;
            };
            if !route_ids.contains(route) {
                report.error(
                    t.name,
                    Some(*line),
                    Some("route_id"),
                    format!("trip \"{id}\": route \"{route}\" is not in routes.txt"),
                );
                continue;
            }
            if !feed.services.contains_key(service) {
                report.error(t.name, Some(*line), Some("service_id"), format!("trip \"{id}\": service \"{service}\" is not in calendar.txt or calendar_dates.txt"));
                continue;
            }
            if trips.contains_key(id) {
                report.error(
                    t.name,
                    Some(*line),
                    Some("trip_id"),
                    format!("duplicate trip_id \"{id}\""),
                );
                continue;
            }
            trips.insert(
                id.into(),
                Trip {
                    id: id.into(),
                    route_id: route.into(),
                    service_id: service.into(),
                    block_id: t.get(r, "block_id").map(String::from),
                    shape_id: t.get(r, "shape_id").map(String::from),
                    direction_id: t.get(r, "direction_id").and_then(|v| v.parse().ok()),
                    headsign: t.get(r, "trip_headsign").map(String::from),
                    stop_times: Vec::new(),
                    from_frequency: None,
                },
            );
        }
    }
    trips
}
