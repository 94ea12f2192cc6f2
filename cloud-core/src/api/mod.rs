//! The cloud's HTTP API, one file per area around one router: `sync` (enrolment, push,
//! pull: depots), `records` (any depot record, quarantine: admin), `master` (depots,
//! vehicles, devices: admin), `planning` (timetables, plans, people, a depot's day:
//! admin), `ops` (health, metrics, telemetry). `auth` holds the extractors that
//! authenticate a request (`Admin`, `Depot`, `KnownDepot`); `error` the one error type.
//! Route paths stay string literals in `.route` calls (no nesting): the tidy test checks
//! them against `schemas/cloud-openapi.json`.

mod auth;
mod error;
mod master;
mod ops;
mod planning;
mod records;
mod sync;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::Router;
use garasi_sync_protocol::wire;

use crate::materialise::Materialiser;
use crate::store::CloudStore;

pub use auth::{Admin, Depot, KnownDepot};
pub use error::ApiError;

/// Batches decoded at once: a decode may hold its 64 MiB body and entries in memory, so
/// the number in flight bounds what hostile batches can make the cloud allocate.
const CONCURRENT_DECODES: usize = 2;
/// Stripes of the record edit lock (edits of one record are serialised, so each admin
/// request sees the one before it; different records rarely share a stripe).
const EDIT_STRIPES: usize = 64;

pub struct AppState<S> {
    pub store: Arc<S>,
    /// Keeps the `records` table (merged documents, visible fields) up to date.
    pub materialiser: Arc<Materialiser<S>>,
    /// Bearer token for admin routes (from the cloud's configuration).
    pub admin_token: Arc<str>,
    /// Timetable imports in flight and parsed feeds (planning API, publisher).
    pub timetables: Arc<crate::timetable::Timetables>,
    /// Bounds concurrent batch decodes ([`CONCURRENT_DECODES`]).
    pub decodes: Arc<tokio::sync::Semaphore>,
    /// Serialises edits of one record ([`EDIT_STRIPES`]).
    pub edit_locks: Arc<Vec<tokio::sync::Mutex<()>>>,
    pub metrics: Arc<crate::metrics::CloudMetrics>,
}

impl<S: CloudStore> AppState<S> {
    pub fn new(store: Arc<S>, admin_token: Arc<str>) -> Result<Self, prometheus::Error> {
        Ok(AppState {
            materialiser: Arc::new(Materialiser::new(store.clone())),
            store,
            admin_token,
            timetables: Arc::default(),
            decodes: Arc::new(tokio::sync::Semaphore::new(CONCURRENT_DECODES)),
            edit_locks: Arc::new(
                (0..EDIT_STRIPES)
                    .map(|_| tokio::sync::Mutex::new(()))
                    .collect(),
            ),
            metrics: Arc::new(crate::metrics::CloudMetrics::new()?),
        })
    }
}

impl<S> Clone for AppState<S> {
    fn clone(&self) -> Self {
        AppState {
            materialiser: self.materialiser.clone(),
            store: self.store.clone(),
            admin_token: self.admin_token.clone(),
            timetables: self.timetables.clone(),
            decodes: self.decodes.clone(),
            edit_locks: self.edit_locks.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

/// The whole API: every area's routes, with the sync body limit on all of them (the
/// timetable upload raises its own).
pub fn router<S: CloudStore + 'static>(state: AppState<S>) -> Router {
    Router::new()
        .merge(ops::routes::<S>())
        .merge(records::routes::<S>())
        .merge(master::routes::<S>())
        .merge(planning::routes::<S>())
        .merge(sync::routes::<S>())
        .layer(DefaultBodyLimit::max(wire::MAX_WIRE_BYTES))
        .with_state(state)
}
