//! sync module: the outbox every replicated write goes through, enrolment with the
//! cloud, and the worker that pushes the outbox and pulls the cloud's changes.
//!
//! Invariants:
//! - A local write and its outbox entry commit in the same SQLite transaction: owning
//!   modules call [`append_change`] with *their* open transaction.
//! - Cursors are durable and advance only after the matching commit: the push cursor
//!   after the cloud acknowledged the batch (a crash before that re-sends it, and the
//!   cloud recognises the replay), the pull cursor in the same transaction that applied
//!   the pulled changes.
//! - Pulled changes are applied by the module that owns the record type, through the
//!   [`Appliers`] it registered; sync never touches another module's tables.
//! - A pulled change that cannot be applied (refused by its module, or of a type this
//!   build lacks) is kept in `sync_dead_letters` and passed over ([`dead_letters`]): the
//!   pull never stalls on it.

pub mod dead_letters;

pub mod api;
mod enrol;
pub mod error;
mod metrics;
mod outbox;
mod pull;
mod push;
pub mod service;
mod store;
#[cfg(test)]
mod tests;
mod thinned;
mod worker;

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::modules::framework::{Module, ModuleContext, ModuleError, Started};
use crate::store::migrate::Migration;
use api::LinkState;
use metrics::SyncMetrics;
use service::Appliers;
use worker::Worker;

pub struct SyncModule;

inventory::submit! { crate::modules::framework::Registration(|| Box::new(SyncModule)) }

impl Module for SyncModule {
    fn name(&self) -> &'static str {
        "sync"
    }
    fn migrations(&self) -> &'static [Migration] {
        store::MIGRATIONS
    }
    fn start(&self, ctx: &ModuleContext) -> Result<Started, ModuleError> {
        let appliers = Arc::new(Appliers::default());
        ctx.services.provide(appliers.clone());
        let link = Arc::new(Mutex::new(LinkState::default()));
        let worker = Worker {
            store: ctx.store.clone(),
            appliers,
            link: link.clone(),
            services: ctx.services.clone(),
            metrics: Arc::new(
                SyncMetrics::register(&ctx.metrics.registry)
                    .map_err(|e| ModuleError::start("sync", e))?,
            ),
            interval: Duration::from_millis(ctx.config.sync_interval_ms),
            quota_bytes: i64::try_from(ctx.config.sync_outbox_quota_mb.saturating_mul(1 << 20))
                .unwrap_or(i64::MAX),
        };
        ctx.tracker.spawn(worker.run(ctx.cancel.clone()));
        let routes = api::routes(ctx.store.clone(), link, ctx.services.clone());
        Ok(Started {
            routes: Some(routes),
        })
    }
}
