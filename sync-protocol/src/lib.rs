//! garasi-sync-protocol: what edge and cloud agree on, with no I/O. The replicated record
//! model (operational records as automerge documents), the deterministic merge rule
//! ("a concurrent value written by the cloud wins, otherwise automerge's winner"), and the
//! versioned, compressed, size-bounded wire format of sync batches.
//!
//! Both sides compute the visible state of a record with [`record::Record::visible`], so
//! every replica that has the same changes shows the same values.

// Long functions hide several concerns; tests may be long (see clippy.toml).
#![cfg_attr(not(test), warn(clippy::too_many_lines))]

pub mod actor;
pub mod ids;
pub mod people;
pub mod record;
pub mod records;
pub mod rules;
pub mod streams;
pub mod tariff;
pub mod text;
pub mod wire;
