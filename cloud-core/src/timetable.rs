//! Timetables as master data: imported GTFS feeds are kept as uploaded, each depot has a
//! plan (which timetable, which routes, how many days ahead), and the publisher turns a
//! plan into master records the depot pulls: one `block` record per block and service
//! day in the rolling window (today + N days, in the feed's time zone), plus the `stop`
//! and `shape` records those blocks use. Publishing is idempotent: a record whose fields
//! did not change produces no change, so the publisher can run as often as it likes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use garasi_sync_protocol::actor::{new_actor, Side};
use garasi_sync_protocol::ids::valid_id;
use garasi_sync_protocol::record::{FieldValue, Record};
use serde::{Deserialize, Serialize};

use crate::gtfs::{self, blocks, Feed};
use crate::materialise::{MaterialiseError, Materialiser};
use crate::store::{ChangeIn, CloudStore, RecordKey, StoreError};

/// Record types the publisher writes (the depot's dispatch module applies them).
pub const BLOCK_RECORD: &str = "block";
pub const STOP_RECORD: &str = "stop";
pub const SHAPE_RECORD: &str = "shape";
/// Longest rolling window: two weeks of blocks is plenty to plan with.
pub const MAX_WINDOW_DAYS: u32 = 14;

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("timetable {0} does not exist: list them with GET /api/v1/admin/timetables")]
    NoTimetable(i64),
    #[error("the stored timetable {0} no longer imports: {1}")]
    Broken(i64, String),
    #[error("route(s) not in timetable {timetable}: {routes}. Known routes: {known}")]
    UnknownRoutes {
        timetable: i64,
        routes: String,
        known: String,
    },
    #[error("a plan needs at least one route")]
    NoRoutes,
    #[error("window_days {0} is out of range: use 0 to {MAX_WINDOW_DAYS}")]
    Window(u32),
    #[error(
        "time zone {0:?} is unknown: give an IANA name such as Asia/Jakarta in the plan's timezone"
    )]
    TimeZone(String),
    #[error("the timetable names no agency_timezone: give one in the plan's timezone")]
    NoTimeZone,
    #[error("vehicle_type {0:?} is invalid: use 1-64 letters, digits, '-' or '_'")]
    VehicleType(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Materialise(#[from] MaterialiseError),
    #[error("record: {0}")]
    Record(String),
}

/// What a depot operates.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    pub timetable: i64,
    pub routes: Vec<RoutePlan>,
    /// Days after today to publish (0 = today only).
    #[serde(default = "default_window")]
    pub window_days: u32,
    /// Minimum layover when blocks are built (the feed has no block_id).
    #[serde(default = "default_layover")]
    pub min_layover_s: u32,
    /// Time from pull-out to the first departure (yard to first stop, checks).
    #[serde(default = "default_lead")]
    pub pull_out_lead_s: u32,
    /// Time from the last arrival back to the yard.
    #[serde(default = "default_lead")]
    pub pull_in_lag_s: u32,
    /// Overrides the feed's agency_timezone.
    #[serde(default)]
    pub timezone: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RoutePlan {
    pub route: String,
    /// The vehicle type this route's blocks need (e.g. a 12 m bus for a tight route).
    #[serde(default)]
    pub vehicle_type: Option<String>,
}

fn default_window() -> u32 {
    2
}
fn default_layover() -> u32 {
    blocks::BlockOptions::default().min_layover_s
}
fn default_lead() -> u32 {
    600
}

/// One record the publisher wants to exist with these fields.
pub struct Edit {
    pub record_type: &'static str,
    pub record_id: String,
    pub fields: Vec<(&'static str, FieldValue)>,
}

/// Turns an external id into a record id (the sync id rule): kept as is when valid,
/// otherwise unsafe characters become '_' and a short digest keeps it unique.
pub fn record_id(prefix: &str, raw: &str) -> String {
    let candidate = format!("{prefix}{raw}");
    if valid_id(&candidate) {
        return candidate;
    }
    let clean: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(40)
        .collect();
    use blake2::{Blake2b512, Digest};
    let d = Blake2b512::digest(raw.as_bytes());
    let suffix: String = d[..4].iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}{clean}-{suffix}")
}

fn haversine_km(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (la1, lo1, la2, lo2) = (
        a.0.to_radians(),
        a.1.to_radians(),
        b.0.to_radians(),
        b.1.to_radians(),
    );
    let h = ((la2 - la1) / 2.0).sin().powi(2)
        + la1.cos() * la2.cos() * ((lo2 - lo1) / 2.0).sin().powi(2);
    2.0 * 6371.0 * h.sqrt().asin()
}

fn path_km(points: &[(f64, f64)]) -> f64 {
    points.windows(2).map(|w| haversine_km(w[0], w[1])).sum()
}

/// A parsed feed with the look-ups publishing needs.
pub struct Prepared {
    pub feed: Feed,
    stops: HashMap<String, (f64, f64)>,
    trips: HashMap<String, usize>,
}

impl Prepared {
    pub fn new(feed: Feed) -> Self {
        let stops = feed
            .stops
            .iter()
            .map(|s| (s.id.clone(), (s.lat, s.lon)))
            .collect();
        let trips = feed
            .trips
            .iter()
            .enumerate()
            .map(|(i, t)| (t.id.clone(), i))
            .collect();
        Prepared { feed, stops, trips }
    }

    /// Trip length: along its shape where the feed has one, else stop to stop.
    fn trip_km(&self, t: &gtfs::Trip) -> f64 {
        if let Some(points) = t.shape_id.as_ref().and_then(|s| self.feed.shapes.get(s)) {
            if points.len() >= 2 {
                return path_km(points);
            }
        }
        let pts: Vec<(f64, f64)> = t
            .stop_times
            .iter()
            .filter_map(|st| self.stops.get(&st.stop_id).copied())
            .collect();
        path_km(&pts)
    }

    pub fn route_ids(&self) -> BTreeSet<&str> {
        self.feed.routes.iter().map(|r| r.id.as_str()).collect()
    }
}

/// Checks a plan against its timetable; returns the time zone to publish in.
pub fn check_plan(plan: &Plan, feed: &Prepared) -> Result<jiff::tz::TimeZone, PlanError> {
    if plan.routes.is_empty() {
        return Err(PlanError::NoRoutes);
    }
    if plan.window_days > MAX_WINDOW_DAYS {
        return Err(PlanError::Window(plan.window_days));
    }
    let known = feed.route_ids();
    let unknown: Vec<&str> = plan
        .routes
        .iter()
        .map(|r| r.route.as_str())
        .filter(|r| !known.contains(r))
        .collect();
    if !unknown.is_empty() {
        return Err(PlanError::UnknownRoutes {
            timetable: plan.timetable,
            routes: unknown.join(", "),
            known: known.into_iter().take(30).collect::<Vec<_>>().join(", "),
        });
    }
    for r in &plan.routes {
        if let Some(t) = &r.vehicle_type {
            if !valid_id(t) {
                return Err(PlanError::VehicleType(t.clone()));
            }
        }
    }
    let name = plan
        .timezone
        .clone()
        .or_else(|| feed.feed.timezone.clone())
        .ok_or(PlanError::NoTimeZone)?;
    jiff::tz::TimeZone::get(&name).map_err(|_| PlanError::TimeZone(name))
}

/// Unix ms of `secs` after the start of service day `date` (GTFS: noon minus 12 h, so
/// daylight-saving days are right).
fn at(date: jiff::civil::Date, secs: u32, tz: &jiff::tz::TimeZone) -> i64 {
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

/// Writes edits as the cloud's changes to a depot's records, in one store call; returns
/// how many records changed.
pub async fn apply_edits<S: CloudStore>(
    store: &S,
    materialiser: &Materialiser<S>,
    depot: &str,
    edits: &[Edit],
) -> Result<usize, PlanError> {
    materialiser.catch_up().await?;
    // A fresh cloud actor per edit: two runs at once (the publisher and an admin
    // request), or one record twice in a run, can never produce two changes with one
    // (actor, seq) pair, a fork automerge cannot apply.
    let mut changes = Vec::new();
    for chunk in edits.chunks(1000) {
        let keys: Vec<RecordKey> = chunk
            .iter()
            .map(|e| RecordKey {
                depot: depot.into(),
                record_type: e.record_type.into(),
                record_id: e.record_id.clone(),
            })
            .collect();
        let docs = store.load_records(&keys).await?;
        for (e, doc) in chunk.iter().zip(docs) {
            let mut record = match doc {
                Some(d) => Record::load(&d, new_actor(Side::Cloud)),
                None => Ok(Record::new(new_actor(Side::Cloud))),
            }
            .map_err(|e| PlanError::Record(e.to_string()))?;
            let fields: Vec<(&str, FieldValue)> =
                e.fields.iter().map(|(k, v)| (*k, v.clone())).collect();
            if let Some(change) = record
                .set_changed(&fields)
                .map_err(|e| PlanError::Record(e.to_string()))?
            {
                changes.push(ChangeIn {
                    record_type: e.record_type.into(),
                    record_id: e.record_id.clone(),
                    change,
                });
            }
        }
    }
    for chunk in changes.chunks(5000) {
        store.add_changes(depot, chunk).await?;
    }
    if !changes.is_empty() {
        materialiser.catch_up().await?;
    }
    Ok(changes.len())
}

/// A running or finished import, for `GET /api/v1/admin/imports/{id}`.
pub struct ImportJob {
    pub name: String,
    pub progress: Arc<gtfs::Progress>,
    pub outcome: Option<ImportOutcome>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ImportOutcome {
    Imported {
        timetable: i64,
        report: serde_json::Value,
    },
    Refused {
        reason: String,
        report: serde_json::Value,
    },
    Failed {
        reason: String,
    },
}

/// Imports in flight and the parsed feeds publishing uses (a feed is parsed once per
/// process, then reused by every publish run).
#[derive(Default)]
pub struct Timetables {
    pub imports: Mutex<BTreeMap<u64, ImportJob>>,
    next_import: std::sync::atomic::AtomicU64,
    feeds: Mutex<HashMap<i64, Arc<Prepared>>>,
}

impl Timetables {
    pub fn start_import(&self, name: &str) -> (u64, Arc<gtfs::Progress>) {
        let id = self
            .next_import
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        let progress = Arc::new(gtfs::Progress::default());
        if let Ok(mut m) = self.imports.lock() {
            // Finished imports are kept for inspection; the oldest go beyond 100.
            while m.len() >= 100 {
                let Some(first) = m.keys().next().copied() else {
                    break;
                };
                m.remove(&first);
            }
            m.insert(
                id,
                ImportJob {
                    name: name.to_string(),
                    progress: progress.clone(),
                    outcome: None,
                },
            );
        }
        (id, progress)
    }

    pub fn finish_import(&self, id: u64, outcome: ImportOutcome) {
        if let Ok(mut m) = self.imports.lock() {
            if let Some(j) = m.get_mut(&id) {
                j.outcome = Some(outcome);
            }
        }
    }

    /// The parsed timetable `id` (parsed from the stored zip on first use).
    pub async fn feed<S: CloudStore>(
        &self,
        store: &S,
        id: i64,
    ) -> Result<Arc<Prepared>, PlanError> {
        if let Some(f) = self.feeds.lock().ok().and_then(|m| m.get(&id).cloned()) {
            return Ok(f);
        }
        let zip = store
            .timetable_zip(id)
            .await?
            .ok_or(PlanError::NoTimetable(id))?;
        let prepared = tokio::task::spawn_blocking(move || {
            gtfs::import_zip(&zip).map(|(feed, _)| Prepared::new(feed))
        })
        .await
        .map_err(|e| PlanError::Broken(id, e.to_string()))?
        .map_err(|e| PlanError::Broken(id, e.to_string()))?;
        let prepared = Arc::new(prepared);
        if let Ok(mut m) = self.feeds.lock() {
            m.insert(id, prepared.clone());
        }
        Ok(prepared)
    }
}

/// What one publish run did for a depot.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Published {
    pub dates: Vec<String>,
    pub blocks: usize,
    pub stops: usize,
    pub shapes: usize,
    /// Records that changed (0 when the depot already has all of it).
    pub changed: usize,
}

/// Publishes `plan` for `depot`: the window starting today in the plan's time zone.
pub async fn publish<S: CloudStore>(
    store: &S,
    materialiser: &Materialiser<S>,
    timetables: &Timetables,
    depot: &str,
    plan: &Plan,
) -> Result<Published, PlanError> {
    let feed = timetables.feed(store, plan.timetable).await?;
    let tz = check_plan(plan, &feed)?;
    let today = jiff::Timestamp::now().to_zoned(tz.clone()).date();
    let dates: Vec<jiff::civil::Date> = (0..=plan.window_days)
        .filter_map(|d| today.checked_add(jiff::Span::new().days(d)).ok())
        .collect();
    let (plan2, feed2, tz2, dates2) = (plan.clone(), feed.clone(), tz.clone(), dates.clone());
    let edits = tokio::task::spawn_blocking(move || plan_records(&plan2, &feed2, &tz2, &dates2))
        .await
        .map_err(|e| PlanError::Record(e.to_string()))?;
    let count = |t: &str| edits.iter().filter(|e| e.record_type == t).count();
    let out = Published {
        dates: dates.iter().map(|d| d.to_string()).collect(),
        blocks: count(BLOCK_RECORD),
        stops: count(STOP_RECORD),
        shapes: count(SHAPE_RECORD),
        changed: 0,
    };
    let changed = apply_edits(store, materialiser, depot, &edits).await?;
    Ok(Published { changed, ..out })
}

/// Publishes every depot's plan (the rolling window moves at midnight; run it often).
pub async fn publish_all<S: CloudStore>(
    store: &S,
    materialiser: &Materialiser<S>,
    timetables: &Timetables,
) -> Result<(), StoreError> {
    for (depot, plan_json) in store.depot_plans().await? {
        let plan: Plan = match serde_json::from_str(&plan_json) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(depot = %depot, error = %e, "stored depot plan does not parse");
                continue;
            }
        };
        match publish(store, materialiser, timetables, &depot, &plan).await {
            Ok(p) if p.changed > 0 => {
                tracing::info!(depot = %depot, blocks = p.blocks, changed = p.changed, "published the depot's rolling window")
            }
            Ok(_) => {}
            Err(e) => {
                tracing::error!(depot = %depot, error = %e, "publishing the depot's plan failed")
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_ids_follow_the_sync_rule() {
        assert_eq!(record_id("stop-", "S1"), "stop-S1");
        let odd = record_id("stop-", "Main St / 3rd");
        assert!(valid_id(&odd), "{odd}");
        assert_ne!(
            odd,
            record_id("stop-", "Main St _ 3rd"),
            "digest keeps them apart"
        );
        let long = record_id("20260101-", &"x".repeat(200));
        assert!(valid_id(&long), "{long}");
    }

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

    #[test]
    fn distance_uses_haversine() {
        // One degree of latitude is ~111.2 km.
        let d = path_km(&[(0.0, 0.0), (1.0, 0.0)]);
        assert!((d - 111.19).abs() < 0.1, "{d}");
    }
}
