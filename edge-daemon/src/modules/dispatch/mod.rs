//! dispatch module: the depot's day. Blocks arrive from the cloud as master data (or are
//! imported locally by a depot without a cloud); the dispatcher assigns a vehicle and a
//! driver to each (by hand or from the auto-assign proposal), drivers sign on with a
//! badge or a PIN, telemetry against the depot geofence records pull-out and pull-in,
//! and a vehicle that drops out gets a ranked list of replacements and a one-action
//! swap. Assignments, sign-ons and events are operational records that sync to the
//! cloud, so the cloud sees each depot's day. Everything works with the cloud away.
//! Where the timetable has TODS runs, drivers are put on runs instead (a run may span
//! blocks, a block may be split between runs at a relief point; `runs.rs`).
//!
//! Owns `dispatch_records`; reads people through auth's [`People`], vehicles through
//! fleet's [`FleetApi`] and live state through [`LiveStateSource`].

pub mod badge;
pub mod charge_need;
mod events;
mod local;
mod pages;
pub mod plan;
mod runs;
mod store;

mod api;
mod cli;
pub mod config;
mod metrics;
pub mod service;
mod watch;

use std::sync::Arc;

use garasi_sync_protocol::actor::{new_actor, Side};

use crate::modules::auth::service::People;
use crate::modules::fleet::service::FleetApi;
use crate::modules::framework::{CliContext, Module, ModuleContext, ModuleError, Started};
use crate::modules::sync::service::Appliers;
use crate::store::migrate::Migration;
use config::DispatchConfig;
use metrics::DispatchMetrics;
use service::{
    Dispatch, ASSIGNMENT_RECORD, BLOCK_RECORD, EVENT_RECORD, RUN_ASSIGNMENT_RECORD, RUN_RECORD,
    SHAPE_RECORD, SIGNON_RECORD, STOP_RECORD,
};

pub struct DispatchModule;

inventory::submit! { crate::modules::framework::Registration(|| Box::new(DispatchModule)) }

impl Module for DispatchModule {
    fn name(&self) -> &'static str {
        "dispatch"
    }
    fn depends_on(&self) -> &'static [&'static str] {
        &["sync", "auth", "fleet"]
    }
    fn migrations(&self) -> &'static [Migration] {
        store::MIGRATIONS
    }
    fn commands(&self) -> Vec<clap::Command> {
        cli::commands()
    }
    fn run_command(
        &self,
        _name: &str,
        args: &clap::ArgMatches,
        ctx: &CliContext<'_>,
    ) -> anyhow::Result<()> {
        cli::run(args, ctx)
    }
    fn start(&self, ctx: &ModuleContext) -> Result<Started, ModuleError> {
        let cfg: &DispatchConfig = &ctx.config.dispatch;
        let tz = match &cfg.timezone {
            Some(name) => {
                jiff::tz::TimeZone::get(name).map_err(|e| ModuleError::start("dispatch", e))?
            }
            None => jiff::tz::TimeZone::system(),
        };
        let d =
            Arc::new(Dispatch {
                store: ctx.store.clone(),
                bus: ctx.bus.clone(),
                metrics: DispatchMetrics::register(&ctx.metrics.registry)
                    .map_err(|e| ModuleError::start("dispatch", e))?,
                services: ctx.services.clone(),
                people: ctx.services.get::<People>().ok_or_else(|| {
                    ModuleError::start("dispatch", "the auth module is not running")
                })?,
                fleet: ctx.services.get::<FleetApi>().ok_or_else(|| {
                    ModuleError::start("dispatch", "the fleet module is not running")
                })?,
                actor: new_actor(Side::Depot),
                params: cfg.params,
                tz,
                geofence: cfg.geofence,
            });
        if let Some(appliers) = ctx.services.get::<Appliers>() {
            for t in [BLOCK_RECORD, STOP_RECORD, SHAPE_RECORD, RUN_RECORD] {
                appliers.register(
                    t,
                    Arc::new(
                        move |tx: &rusqlite::Transaction<'_>, id: &str, changes: &[Vec<u8>]| {
                            store::apply_master(tx, t, id, changes)
                        },
                    ),
                );
            }
            for t in [
                ASSIGNMENT_RECORD,
                SIGNON_RECORD,
                EVENT_RECORD,
                RUN_ASSIGNMENT_RECORD,
            ] {
                let actor = d.actor.clone();
                appliers.register(
                    t,
                    Arc::new(
                        move |tx: &rusqlite::Transaction<'_>, id: &str, changes: &[Vec<u8>]| {
                            store::apply_operational(tx, &actor, t, id, changes)
                        },
                    ),
                );
            }
        }
        ctx.tracker.spawn(watch::watch(
            d.clone(),
            d.bus.subscribe(),
            ctx.cancel.clone(),
        ));
        for path in &cfg.badge_readers {
            badge::spawn_reader(
                d.clone(),
                path.clone(),
                cfg.badge_baud,
                &ctx.tracker,
                ctx.shutdown.clone(),
            );
        }
        ctx.services.provide(d.clone());
        let routes = api::routes(d);
        Ok(Started {
            routes: Some(routes),
        })
    }
}
