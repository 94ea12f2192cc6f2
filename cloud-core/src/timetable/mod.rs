//! Timetables as master data: imported GTFS feeds are kept as uploaded, each depot has a
//! plan (which timetable, which routes, how many days ahead), and the publisher turns a
//! plan into master records the depot pulls: one `block` record per block and service
//! day in the rolling window (today + N days, in the feed's time zone), plus the `stop`
//! and `shape` records those blocks use. Publishing is idempotent: a record whose fields
//! did not change produces no change, so the publisher can run as often as it likes.
//!
//! `prepared.rs`: a parsed feed with its look-ups, and record ids; `records.rs`: a plan
//! turned into records (`runs.rs`: its TODS runs); `publish.rs`: writing them (and the publisher loop);
//! `imports.rs`: imports in flight and the feeds they parsed.

mod imports;
mod prepared;
mod publish;
mod records;
mod runs;

use garasi_sync_protocol::ids::valid_id;
use garasi_sync_protocol::record::FieldValue;
use serde::{Deserialize, Serialize};

use crate::gtfs::blocks;
use crate::materialise::MaterialiseError;
use crate::store::StoreError;

pub use imports::{ImportJob, ImportOutcome, ImportZip, QueueSlot, Timetables, MAX_QUEUED_IMPORTS};
pub use prepared::{record_id, Prepared};
pub use publish::{apply_edits, publish, publish_all, publisher, Published};
pub use records::plan_records;
pub use runs::run_record_id;

/// Record types the publisher writes (the depot's dispatch module applies them).
pub const BLOCK_RECORD: &str = garasi_sync_protocol::records::BLOCK;
pub const STOP_RECORD: &str = garasi_sync_protocol::records::STOP;
pub const SHAPE_RECORD: &str = garasi_sync_protocol::records::SHAPE;
pub const RUN_RECORD: &str = garasi_sync_protocol::records::RUN;
/// Record type of a person (master data; the depot's auth module applies it).
pub const PERSON_RECORD: &str = garasi_sync_protocol::records::PERSON;
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
