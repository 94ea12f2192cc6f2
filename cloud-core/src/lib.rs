//! garasi-cloud: the fleet's central service. The storage layer behind one trait with
//! SQLite (embedded default) and PostgreSQL implementations, proven by one conformance
//! suite (`tests/conformance.rs`); the HTTP API (sync, enrolment, admin, master data,
//! ops view); the materialiser that keeps every record's merged state; and the GTFS
//! importer (timetables in, blocks built where the feed has none) and the publisher that
//! sends each depot its blocks for a rolling window as master data.

pub mod cli;
pub mod gtfs;
pub mod http;
pub mod materialise;
pub mod metrics;
pub mod planning;
pub mod push_check;
pub mod store;
pub mod timetable;
