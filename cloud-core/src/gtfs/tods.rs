//! TODS (Transit Operational Data Standard) beside a GTFS feed: drivers' runs
//! (`run_events.txt`), who works them on which dates (`employee_run_dates.txt`) and the
//! fleet (`vehicles.txt`). A run is a (service_id, run_id) pair; its events in
//! `event_sequence` order; a piece is the part of a run on one block, and where two
//! runs' pieces meet on one block is a relief: one driver hands the bus to the next at a
//! place and a time. A feed without TODS keeps one run per block (dispatch assigns a
//! driver to the whole block).

use serde::Serialize;

/// One event of a run (a row of `run_events.txt`), checked.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunEvent {
    pub service_id: String,
    pub run_id: String,
    pub event_sequence: u32,
    pub piece_id: Option<String>,
    /// The block the event works on: given, or the trip's.
    pub block_id: Option<String>,
    pub job_type: Option<String>,
    pub event_type: String,
    pub trip_id: Option<String>,
    pub start_location: String,
    /// Seconds from the service day's midnight, as GTFS times.
    pub start_s: u32,
    pub end_location: String,
    pub end_s: u32,
    /// The driver takes over (or leaves) the trip between its ends: a relief point.
    pub start_mid_trip: bool,
    pub end_mid_trip: bool,
}

impl RunEvent {
    /// Whether the event drives (works a trip or a block), as opposed to a sign-on, a
    /// break or a report time.
    pub fn drives(&self) -> bool {
        self.trip_id.is_some() || self.block_id.is_some()
    }
}

/// A run's events, in sequence.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Run {
    pub service_id: String,
    pub run_id: String,
    pub events: Vec<RunEvent>,
}

impl Run {
    pub fn start_s(&self) -> u32 {
        self.events.iter().map(|e| e.start_s).min().unwrap_or(0)
    }
    pub fn end_s(&self) -> u32 {
        self.events.iter().map(|e| e.end_s).max().unwrap_or(0)
    }
}

/// An employee scheduled on a run on a date (`employee_run_dates.txt`).
#[derive(Debug, Clone, PartialEq)]
pub struct EmployeeRunDate {
    pub date: jiff::civil::Date,
    pub service_id: String,
    pub run_id: String,
    pub employee_id: String,
}

/// A fleet vehicle (`vehicles.txt`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FeedVehicle {
    pub vehicle_id: String,
    pub label: Option<String>,
    pub license_plate: Option<String>,
}

/// The TODS files of a feed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tods {
    pub runs: Vec<Run>,
    pub employee_run_dates: Vec<EmployeeRunDate>,
    pub vehicles: Vec<FeedVehicle>,
}
