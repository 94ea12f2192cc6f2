//! A plan turned into master records for some service days: one `block` record per
//! block with a trip on a planned route, a `run` record per TODS run driving on one of
//! those blocks (`runs.rs`), and the `stop` and `shape` records they use. Pure: no store, so it runs in the blocking pool.

use std::collections::{BTreeSet, HashMap};

use garasi_sync_protocol::record::FieldValue;

use super::runs::{run_records, PublishedBlocks};
use super::{record_id, Edit, Plan, Prepared, BLOCK_RECORD, SHAPE_RECORD, STOP_RECORD};
use crate::gtfs::{self, blocks};

/// Unix ms of `secs` after the start of service day `date` (GTFS: noon minus 12 h, so
/// daylight-saving days are right).
pub(super) fn at(date: jiff::civil::Date, secs: u32, tz: &jiff::tz::TimeZone) -> i64 {
    let noon = date
        .at(12, 0, 0, 0)
        .to_zoned(tz.clone())
        .map(|z| z.timestamp().as_millisecond())
        .unwrap_or(0);
    noon - 12 * 3_600_000 + i64::from(secs) * 1000
}

/// The master records for `dates`: blocks with a trip on a planned route, and the
/// stops and shapes their trips use.
pub fn plan_records(
    plan: &Plan,
    feed: &Prepared,
    tz: &jiff::tz::TimeZone,
    dates: &[jiff::civil::Date],
) -> Vec<Edit> {
    let routes: HashMap<&str, Option<&str>> = plan
        .routes
        .iter()
        .map(|r| (r.route.as_str(), r.vehicle_type.as_deref()))
        .collect();
    let opts = blocks::BlockOptions {
        min_layover_s: plan.min_layover_s,
    };
    let mut edits = Vec::new();
    let mut stops_used = BTreeSet::new();
    let mut shapes_used = BTreeSet::new();
    for &date in dates {
        // Blocks published this day, for the runs that drive on them: by the feed's
        // block id, and by trip (a built block has no id in the feed).
        let mut published = PublishedBlocks::default();
        for b in blocks::blocks_for(&feed.feed, date, opts) {
            let trips: Vec<&gtfs::Trip> = b
                .trip_ids
                .iter()
                .filter_map(|id| feed.trips.get(id).map(|&i| &feed.feed.trips[i]))
                .collect();
            if !trips
                .iter()
                .any(|t| routes.contains_key(t.route_id.as_str()))
            {
                continue;
            }
            let mut km = 0.0;
            let mut trip_json = Vec::with_capacity(trips.len());
            let mut route_list: Vec<&str> = Vec::new();
            let mut vehicle_type = None;
            for t in &trips {
                let tkm = feed.trip_km(t);
                km += tkm;
                if !route_list.contains(&t.route_id.as_str()) {
                    route_list.push(&t.route_id);
                }
                if let Some(Some(vt)) = routes.get(t.route_id.as_str()) {
                    vehicle_type = Some(*vt);
                }
                stops_used.insert(t.first_stop().to_string());
                stops_used.insert(t.last_stop().to_string());
                if let Some(s) = &t.shape_id {
                    if feed.feed.shapes.contains_key(s) {
                        shapes_used.insert(s.clone());
                    }
                }
                trip_json.push(serde_json::json!({
                    "trip": t.id,
                    "route": t.route_id,
                    "headsign": t.headsign,
                    "start": gtfs::format_time(t.start_s()),
                    "end": gtfs::format_time(t.end_s()),
                    "start_ms": at(date, t.start_s(), tz),
                    "end_ms": at(date, t.end_s(), tz),
                    "from": record_id("stop-", t.first_stop()),
                    "to": record_id("stop-", t.last_stop()),
                    "km": (tkm * 100.0).round() / 100.0,
                    "shape": t.shape_id.as_ref().filter(|s| feed.feed.shapes.contains_key(*s)).map(|s| record_id("shape-", s)),
                }));
            }
            let block_record = record_id(&format!("{}-", date.strftime("%Y%m%d")), &b.id);
            if !b.built {
                published
                    .by_block
                    .insert(b.id.clone(), block_record.clone());
            }
            for t in &b.trip_ids {
                published.by_trip.insert(t.clone(), block_record.clone());
            }
            let first = at(date, b.start_s, tz);
            let last = at(date, b.end_s, tz);
            let date_s = date.to_string();
            edits.push(Edit {
                record_type: BLOCK_RECORD,
                record_id: record_id(&format!("{}-", date.strftime("%Y%m%d")), &b.id),
                fields: vec![
                    ("service_date", FieldValue::Text(date_s)),
                    ("block", FieldValue::Text(b.id.clone())),
                    ("built", FieldValue::Bool(b.built)),
                    ("routes", FieldValue::Text(route_list.join(","))),
                    ("first_departure_ms", FieldValue::Int(first)),
                    ("last_arrival_ms", FieldValue::Int(last)),
                    (
                        "pull_out_ms",
                        FieldValue::Int(first - i64::from(plan.pull_out_lead_s) * 1000),
                    ),
                    (
                        "pull_in_ms",
                        FieldValue::Int(last + i64::from(plan.pull_in_lag_s) * 1000),
                    ),
                    (
                        "distance_km",
                        FieldValue::Float((km * 100.0).round() / 100.0),
                    ),
                    (
                        "vehicle_type",
                        vehicle_type
                            .map(|v| FieldValue::Text(v.to_string()))
                            .unwrap_or(FieldValue::Null),
                    ),
                    (
                        "trips",
                        FieldValue::Text(serde_json::Value::Array(trip_json).to_string()),
                    ),
                ],
            });
        }
        edits.extend(run_records(feed, tz, date, &published, &mut stops_used));
    }
    let stops: HashMap<&str, &gtfs::Stop> =
        feed.feed.stops.iter().map(|s| (s.id.as_str(), s)).collect();
    for id in stops_used {
        if let Some(s) = stops.get(id.as_str()) {
            edits.push(Edit {
                record_type: STOP_RECORD,
                record_id: record_id("stop-", id.as_str()),
                fields: vec![
                    ("stop", FieldValue::Text(s.id.clone())),
                    ("name", FieldValue::Text(s.name.clone())),
                    ("lat", FieldValue::Float(s.lat)),
                    ("lon", FieldValue::Float(s.lon)),
                ],
            });
        }
    }
    for id in shapes_used {
        if let Some(points) = feed.feed.shapes.get(&id) {
            let text: Vec<String> = points
                .iter()
                .map(|(la, lo)| format!("{la:.5},{lo:.5}"))
                .collect();
            edits.push(Edit {
                record_type: SHAPE_RECORD,
                record_id: record_id("shape-", &id),
                fields: vec![
                    ("shape", FieldValue::Text(id.clone())),
                    ("points", FieldValue::Text(text.join(";"))),
                ],
            });
        }
    }
    edits
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_day_clock_handles_past_midnight_and_dst() {
        let tz = jiff::tz::TimeZone::get("America/Los_Angeles").unwrap();
        let d = jiff::civil::date(2026, 3, 8); // DST starts at 02:00
        let t = at(d, 8 * 3600, &tz);
        let z = jiff::Timestamp::from_millisecond(t)
            .unwrap()
            .to_zoned(tz.clone());
        // Noon-minus-12h: times after the 02:00 jump are on the clock as written.
        assert_eq!((z.hour(), z.minute()), (8, 0));
        let utc = jiff::tz::TimeZone::UTC;
        let late = at(jiff::civil::date(2026, 1, 1), 25 * 3600, &utc);
        let z = jiff::Timestamp::from_millisecond(late)
            .unwrap()
            .to_zoned(utc);
        assert_eq!((z.day(), z.hour()), (2, 1), "25:00 is 01:00 the next day");
    }
}
