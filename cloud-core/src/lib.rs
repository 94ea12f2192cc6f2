//! garasi-cloud: the fleet's central service. So far: the storage layer behind one
//! trait with SQLite (embedded default) and PostgreSQL implementations, proven by one
//! conformance suite (`tests/conformance.rs`). The HTTP service, sync endpoint and admin
//! dashboard build on it (issue 3, not yet built).

pub mod http;
pub mod store;
