//! fleet module: the vehicle registry (id, label, plate, battery capacity). Managed by CLI
//! and API for now; it becomes cloud master data when sync lands. Other modules ask
//! [`FleetApi`] whether a vehicle exists; the vehicle list can be enriched with live state
//! by whichever module registers a [`LiveStateSource`] (telemetry does).

pub mod api;
mod cli;
pub mod service;
mod status;
mod store;
mod watch;

use std::sync::Arc;

use crate::modules::auth::service::People;
use crate::modules::framework::{CliContext, Module, ModuleContext, ModuleError, Started};
use crate::modules::sync::service::{Appliers, ApplyError};
use crate::store::migrate::Migration;
use service::{FleetApi, STATUS_RECORD, VEHICLE_RECORD};
use status::apply_remote_status;

pub struct FleetModule;

inventory::submit! { crate::modules::framework::Registration(|| Box::new(FleetModule)) }

impl Module for FleetModule {
    fn name(&self) -> &'static str {
        "fleet"
    }
    fn depends_on(&self) -> &'static [&'static str] {
        &["sync", "auth"]
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
        let api = Arc::new(FleetApi::new(ctx.store.clone(), ctx.bus.clone())?);
        let people = ctx
            .services
            .get::<People>()
            .ok_or_else(|| ModuleError::start("fleet", "the auth module is not running"))?;
        if let Some(appliers) = ctx.services.get::<Appliers>() {
            let a = api.actor.clone();
            appliers.register(
                STATUS_RECORD,
                Arc::new(
                    move |tx: &rusqlite::Transaction<'_>, id: &str, changes: &[Vec<u8>]| {
                        apply_remote_status(tx, &a, id, changes).map_err(ApplyError::refused)
                    },
                ),
            );
        }
        if let Some(appliers) = ctx.services.get::<Appliers>() {
            let api = api.clone();
            appliers.register(
                VEHICLE_RECORD,
                Arc::new(
                    move |tx: &rusqlite::Transaction<'_>, id: &str, changes: &[Vec<u8>]| {
                        api.apply_master(tx, id, changes)
                    },
                ),
            );
        }
        tracing::info!(vehicles = api.list().len(), "vehicle registry loaded");
        ctx.services.provide(api.clone());
        let routes = api::routes(api.clone(), ctx.services.clone(), ctx.store.clone(), people);
        ctx.tracker.spawn(watch::take_faulty_out_of_service(
            api,
            ctx.bus.subscribe(),
            ctx.cancel.clone(),
        ));
        Ok(Started {
            routes: Some(routes),
        })
    }
}
