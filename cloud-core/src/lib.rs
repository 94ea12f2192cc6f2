//! garasi-cloud: the fleet's central service. The storage layer behind one trait with
//! SQLite (embedded default) and PostgreSQL implementations, proven by one conformance
//! suite (`tests/conformance.rs`); the HTTP API (sync, enrolment, admin, master data,
//! ops view); and the materialiser that keeps every record's merged state.

pub mod cli;
pub mod http;
pub mod materialise;
pub mod store;
