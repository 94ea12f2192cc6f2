//! garasi-cloud: the fleet's central service. The storage layer behind one trait with
//! SQLite (embedded default) and PostgreSQL implementations, proven by one conformance
//! suite (`tests/conformance.rs`), with a read model for views; the HTTP API by area
//! (`api`: sync, enrolment, records, master data, planning, ops) served over TLS
//! (`tls`); the materialiser that keeps every record's merged state; and the GTFS
//! importer (timetables in, blocks built where the feed has none) and the publisher that
//! sends each depot its blocks for a rolling window as master data (`timetable`).

// Long functions hide several concerns; tests may be long (see clippy.toml).
#![cfg_attr(not(test), warn(clippy::too_many_lines))]

pub mod admin_token;
pub mod api;
pub mod bulk;
pub mod cli;
pub mod gtfs;
pub mod http;
pub mod materialise;
pub mod metrics;
pub mod net;
pub mod push_check;
pub mod store;
pub mod timetable;
pub mod tls;
