//! `trips.txt`: each trip with its route and service, checked against what routes.txt
//! and the calendars kept.

use std::collections::{BTreeMap, HashSet};

use super::{heap, table, Files, MAP_ENTRY};
use crate::gtfs::{Feed, GtfsError, Report, Trip};

/// `trips.txt`: the trips whose route and service exist, by id (no stop times yet).
pub(super) fn trips(
    files: &mut Files<'_>,
    feed: &Feed,
    route_ids: &HashSet<String>,
    report: &mut Report,
) -> Result<BTreeMap<String, Trip>, GtfsError> {
    let mut trips: BTreeMap<String, Trip> = BTreeMap::new();
    let budget = files.budget();
    if let Some((t, mut rows)) = table(
        files,
        "trips.txt",
        &["route_id", "service_id", "trip_id"],
        report,
    )? {
        while let Some((line, r)) = rows.next(report)? {
            let (Some(id), Some(route), Some(service)) = (
                t.get(r, "trip_id"),
                t.get(r, "route_id"),
                t.get(r, "service_id"),
            ) else {
                report.error(
                    t.name,
                    Some(line),
                    None,
                    "trip_id, route_id and service_id are required".into(),
                );
                continue;
            };
            if !route_ids.contains(route) {
                report.error(
                    t.name,
                    Some(line),
                    Some("route_id"),
                    format!("trip {id:?}: route {route:?} is not in routes.txt"),
                );
                continue;
            }
            if !feed.services.contains_key(service) {
                report.error(t.name, Some(line), Some("service_id"), format!("trip {id:?}: service {service:?} is not in calendar.txt or calendar_dates.txt"));
                continue;
            }
            if trips.contains_key(id) {
                report.error(
                    t.name,
                    Some(line),
                    Some("trip_id"),
                    format!("duplicate trip_id {id:?}"),
                );
                continue;
            }
            let trip = Trip {
                id: id.into(),
                route_id: route.into(),
                service_id: service.into(),
                block_id: t.get(r, "block_id").map(String::from),
                shape_id: t.get(r, "shape_id").map(String::from),
                direction_id: t.get(r, "direction_id").and_then(|v| v.parse().ok()),
                headsign: t.get(r, "trip_headsign").map(String::from),
                stop_times: Vec::new(),
                from_frequency: None,
            };
            budget.hold(trip_bytes(&trip), t.name)?;
            trips.insert(id.into(), trip);
        }
    }
    Ok(trips)
}

/// Estimated bytes a kept trip (without its stop times) takes, with its map entry.
pub(super) fn trip_bytes(t: &Trip) -> usize {
    let opt = |s: &Option<String>| s.as_deref().map_or(0, heap);
    size_of::<(String, Trip)>()
        + MAP_ENTRY
        + 2 * heap(&t.id)
        + heap(&t.route_id)
        + heap(&t.service_id)
        + opt(&t.block_id)
        + opt(&t.shape_id)
        + opt(&t.headsign)
        + opt(&t.from_frequency)
}
