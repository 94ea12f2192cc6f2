//! The cloud's HTTP API, one file per area around one router: `sync` (enrolment, push,
//! pull: depots), `records` (any depot record, quarantine: admin), `master` (depots,
//! vehicles, devices: admin), `master_charging` (chargers, the tariff: admin),
//! `planning` (timetables, plans, people, a depot's day: admin), `credentials` (rotating and revoking depot, device and admin credentials:
//! admin), `ops` (health, metrics, telemetry). `auth` holds the extractors that
//! authenticate a request (`Admin`, `Depot`, `KnownDepot`); `error` the one error type;
//! `body` what a request body may be before a handler reads it; `limits` the settings;
//! `timing` each route's answer time.
//! Route paths stay string literals in `.route` calls (no nesting): the tidy test checks
//! them against `schemas/cloud-openapi.json`.

mod auth;
mod body;
mod credentials;
mod error;
mod limits;
mod master;
mod master_charging;
mod ops;
mod overlay_kept;
mod planning;
mod record_list;
mod records;
mod slow;
mod sync;
mod timing;
pub mod upload_sweep;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::Router;

use crate::admin_token::AdminToken;
use crate::materialise::Materialiser;
use crate::store::CloudStore;

pub use auth::{Admin, Depot, KnownDepot};
pub use error::ApiError;
pub use limits::{ApiLimits, ENROL_BODY_BYTES, PUSH_BODY_BYTES};

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
    /// Bearer token for admin routes (from the cloud's configuration; rotatable).
    pub admin_token: Arc<AdminToken>,
    /// Timetable imports in flight and parsed feeds (planning API, publisher).
    pub timetables: Arc<crate::timetable::Timetables>,
    /// Bounds concurrent batch decodes ([`CONCURRENT_DECODES`]).
    pub decodes: Arc<tokio::sync::Semaphore>,
    /// Bounds pushes being stored at once ([`ApiLimits::concurrent_pushes`]).
    pub stores: Arc<tokio::sync::Semaphore>,
    /// Record lists applying unfolded changes at once ([`record_list`]); past it a list
    /// answers with the materialised fields and says it is not up to date.
    pub overlays: Arc<tokio::sync::Semaphore>,
    /// What record lists applied, kept while the materialiser is behind ([`overlay_kept`]).
    pub kept_overlays: Arc<overlay_kept::KeptOverlays>,
    /// Serialises edits of one record ([`EDIT_STRIPES`]).
    pub edit_locks: Arc<Vec<tokio::sync::Mutex<()>>>,
    pub metrics: Arc<crate::metrics::CloudMetrics>,
    /// Request limits.
    pub limits: Arc<ApiLimits>,
    /// JSON bodies buffered at once (KiB permits, [`ApiLimits::json_budget_bytes`]).
    pub bodies: Arc<tokio::sync::Semaphore>,
    /// Push bodies buffered at once (KiB permits, [`ApiLimits::push_budget_bytes`]).
    pub push_bodies: Arc<tokio::sync::Semaphore>,
    /// Timetable uploads being received (one at a time).
    pub uploads: Arc<tokio::sync::Semaphore>,
}

impl<S: CloudStore> AppState<S> {
    /// Default limits and a fixed admin token (tests, embedding).
    pub fn new(store: Arc<S>, admin_token: Arc<str>) -> Result<Self, prometheus::Error> {
        Self::with_limits(
            store,
            AdminToken::fixed(admin_token),
            ApiLimits::default(),
            crate::gtfs::Limits::default(),
        )
    }

    pub fn with_limits(
        store: Arc<S>,
        admin_token: AdminToken,
        limits: ApiLimits,
        gtfs: crate::gtfs::Limits,
    ) -> Result<Self, prometheus::Error> {
        let metrics = Arc::new(crate::metrics::CloudMetrics::new()?);
        Ok(AppState {
            materialiser: Arc::new(Materialiser::new(store.clone())),
            store,
            admin_token: Arc::new(admin_token),
            timetables: Arc::new(crate::timetable::Timetables::new(
                gtfs,
                Some(metrics.clone()),
            )),
            decodes: Arc::new(tokio::sync::Semaphore::new(CONCURRENT_DECODES)),
            stores: Arc::new(tokio::sync::Semaphore::new(
                limits.concurrent_pushes.clamp(1, 1024),
            )),
            overlays: Arc::new(tokio::sync::Semaphore::new(
                record_list::CONCURRENT_OVERLAYS,
            )),
            kept_overlays: Arc::default(),
            edit_locks: Arc::new(
                (0..EDIT_STRIPES)
                    .map(|_| tokio::sync::Mutex::new(()))
                    .collect(),
            ),
            metrics,
            bodies: Arc::new(limits::budget(limits.json_budget_bytes)),
            push_bodies: Arc::new(limits::budget(limits.push_budget_bytes)),
            uploads: Arc::new(tokio::sync::Semaphore::new(1)),
            limits: Arc::new(limits),
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
            stores: self.stores.clone(),
            overlays: self.overlays.clone(),
            kept_overlays: self.kept_overlays.clone(),
            edit_locks: self.edit_locks.clone(),
            metrics: self.metrics.clone(),
            limits: self.limits.clone(),
            bodies: self.bodies.clone(),
            push_bodies: self.push_bodies.clone(),
            uploads: self.uploads.clone(),
        }
    }
}

/// The whole API: every area's routes, the JSON body limit on all of them (enrolment
/// lowers it; push and timetable upload read their own bodies), the body guard in
/// front of them all and the timing of each (`timing`) in front of that.
pub fn router<S: CloudStore + 'static>(state: AppState<S>) -> Router {
    let guard = axum::middleware::from_fn_with_state(state.clone(), body::guard::<S>);
    let timed = axum::middleware::from_fn_with_state(state.clone(), timing::observe::<S>);
    Router::new()
        .merge(ops::routes::<S>())
        .merge(records::routes::<S>())
        .merge(master::routes::<S>())
        .merge(master_charging::routes::<S>())
        .merge(credentials::routes::<S>())
        .merge(planning::routes::<S>())
        .merge(sync::routes::<S>())
        .layer(DefaultBodyLimit::max(state.limits.json_body_bytes))
        .layer(guard)
        .layer(timed)
        .with_state(state)
}
