//! charging module: an OCPP 1.6J central system at the edge. Chargers connect over
//! WebSocket (`ocpp/`), authenticated like any device (auth's `DeviceAuth`, kind
//! `charger`); their transactions and meter values are kept so that replays after an
//! outage or an edge restart never lose or invent energy (`sessions.rs`). People see and
//! command chargers through `api.rs`; other modules use `service.rs`.

mod api;
mod binding;
mod charger_energy;
mod cli;
mod commands_api;
pub mod config;
mod efficiency;
pub mod energy;
mod energy_api;
mod held;
mod load;
mod master;
pub mod meters;
mod metrics;
pub mod ocpp;
mod pages;
pub mod plan;
pub mod planner;
mod profiles;
mod records;
mod requests;
mod retention;
mod samples;
pub mod service;
pub mod sessions;
mod site_cap;
pub mod store;

use std::sync::Arc;

use crate::modules::auth::service::{DeviceAuth, People};
use crate::modules::fleet::service::FleetApi;
use crate::modules::framework::{CliContext, Module, ModuleContext, ModuleError, Started};
use crate::modules::sync::service::Appliers;
use crate::store::migrate::Migration;
use garasi_sync_protocol::records::CHARGING_SESSION;
use metrics::ChargingMetrics;
use service::ChargingApi;

pub struct ChargingModule;

inventory::submit! { crate::modules::framework::Registration(|| Box::new(ChargingModule)) }

impl Module for ChargingModule {
    fn name(&self) -> &'static str {
        "charging"
    }
    fn depends_on(&self) -> &'static [&'static str] {
        &["auth", "fleet", "sync", "dispatch"]
    }
    fn migrations(&self) -> &'static [Migration] {
        store::MIGRATIONS
    }
    fn openapi(&self) -> Option<&'static str> {
        Some(include_str!("openapi.json"))
    }
    fn check_config(&self, section: &toml::Table) -> Vec<String> {
        config::parse(section).err().unwrap_or_default()
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
        let err = |e: &dyn std::fmt::Display| ModuleError::start("charging", e);
        let people = ctx
            .services
            .get::<People>()
            .ok_or_else(|| err(&"the auth module is not running"))?;
        let devices = ctx
            .services
            .get::<DeviceAuth>()
            .ok_or_else(|| err(&"the auth module is not running"))?;
        let fleet = ctx.services.get::<FleetApi>();
        let metrics = ChargingMetrics::register(&ctx.metrics.registry).map_err(|e| err(&e))?;
        let cfg = config::parse(&ctx.config.module(self.name())).map_err(|e| err(&e.join("; ")))?;
        let api = Arc::new(
            ChargingApi::new(
                ctx.store.clone(),
                metrics,
                cfg,
                devices,
                fleet,
                ctx.bus.clone(),
            )
            .map_err(|e| err(&e))?,
        );
        ctx.services.provide(api.clone());
        // Registered in start itself: the first pull waits for every module's start.
        if let Some(appliers) = ctx.services.get::<Appliers>() {
            let actor = api.actor.clone();
            appliers.register(
                CHARGING_SESSION,
                Arc::new(
                    move |t: &rusqlite::Transaction<'_>, id: &str, changes: &[Vec<u8>]| {
                        records::apply(t, &actor, id, changes)
                    },
                ),
            );
            appliers.register(
                garasi_sync_protocol::records::CHARGER,
                Arc::new(master::apply_charger),
            );
            appliers.register(
                garasi_sync_protocol::records::TARIFF,
                Arc::new(master::apply_tariff),
            );
        }
        ctx.services.provide(Arc::new(
            crate::modules::dispatch::service::ChargePlanSource(api.board.clone()),
        ));
        ctx.tracker
            .spawn(retention::run(api.clone(), ctx.cancel.clone()));
        if let Some(broker) = &ctx.broker {
            // Panel meters: the topic map with `+` for the id (a whole level, checked).
            let template = api.devices.meter_topic().to_string();
            let (mut link_tx, link_rx) = broker.link("garasi-meters").map_err(|e| err(&e))?;
            link_tx
                .subscribe(template.replace("{id}", "+"))
                .map_err(|e| err(&e))?;
            let (a, bp, stop) = (api.clone(), broker.backpressure.clone(), ctx.cancel.clone());
            let t = std::thread::Builder::new()
                .name("garasi-meters".into())
                .spawn(move || meters::run(link_rx, a, template, bp, stop))
                .map_err(|e| err(&e))?;
            // Joined when the module stops (its token ends the loop within 200 ms).
            ctx.tracker.spawn_blocking(move || {
                let _ = t.join();
            });
        }
        ctx.tracker.spawn(planner::run(
            api.clone(),
            ctx.services.clone(),
            ctx.cancel.clone(),
        ));
        pages::check().map_err(|e| err(&e))?;
        let routes = api::routes(api.clone(), people.clone(), ctx.services.clone())
            .merge(pages::routes(api.clone(), people, ctx.services.clone()))
            .merge(ocpp::door::routes(api, ctx.shutdown.clone()));
        Ok(Started {
            routes: Some(routes),
        })
    }
}
