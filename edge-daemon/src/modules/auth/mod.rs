//! auth module: device credentials and people. Passwords and PINs are argon2id hashes in
//! the encrypted store; the MQTT gate asks [`DeviceAuth`] who a connecting device is and
//! which topic namespace it may use; the pages and dispatch ask [`people::People`] who a
//! person is (password, PIN, badge) and who is signed in.

pub mod api;
mod attempts;
mod cli;
pub mod config;
mod device_admin;
mod devices;
mod known_clients;
mod metrics;
mod people;
mod people_store;
pub mod service;
mod sessions;
mod store;

use std::sync::Arc;

use crate::modules::framework::{CliContext, Module, ModuleContext, ModuleError, Started};
use crate::modules::sync::service::Appliers;
use crate::store::migrate::Migration;
use devices::{apply_master_device, DeviceAuth, DEVICE_RECORD};
use metrics::AuthMetrics;
use people::People;
use people_store::{apply_master_person, PERSON_RECORD};

pub struct AuthModule;

inventory::submit! { crate::modules::framework::Registration(|| Box::new(AuthModule)) }

impl Module for AuthModule {
    fn name(&self) -> &'static str {
        "auth"
    }
    fn migrations(&self) -> &'static [Migration] {
        store::MIGRATIONS
    }
    fn depends_on(&self) -> &'static [&'static str] {
        &["sync"]
    }
    fn check_config(&self, section: &toml::Table) -> Vec<String> {
        config::parse(section).err().unwrap_or_default()
    }
    fn commands(&self) -> Vec<clap::Command> {
        cli::commands()
    }
    fn run_command(
        &self,
        name: &str,
        args: &clap::ArgMatches,
        ctx: &CliContext<'_>,
    ) -> anyhow::Result<()> {
        cli::run(name, args, ctx)
    }
    fn start(&self, ctx: &ModuleContext) -> Result<Started, ModuleError> {
        // Checked when the configuration was read; parsed again here to get the values.
        let cfg = config::parse(&ctx.config.module(self.name()))
            .map_err(|e| ModuleError::start("auth", e.join("; ")))?;
        ctx.services.provide(Arc::new(DeviceAuth::new(
            ctx.store.clone(),
            &cfg.meter_topic,
        )));
        let metrics = AuthMetrics::register(&ctx.metrics.registry)
            .map_err(|e| ModuleError::start("auth", e))?;
        let people = Arc::new(People::new(ctx.store.clone(), Arc::new(metrics), cfg));
        ctx.services.provide(people.clone());
        let p = people.clone();
        ctx.services
            .provide(Arc::new(crate::http::SessionCheck(Box::new(move |h| {
                let p = p.clone();
                Box::pin(async move { p.session_of(&h).await.is_some() })
            }))));
        if let Some(appliers) = ctx.services.get::<Appliers>() {
            appliers.register(
                PERSON_RECORD,
                Arc::new(
                    |tx: &rusqlite::Transaction<'_>, id: &str, changes: &[Vec<u8>]| {
                        apply_master_person(tx, id, changes)
                    },
                ),
            );
            appliers.register(
                DEVICE_RECORD,
                Arc::new(
                    |tx: &rusqlite::Transaction<'_>, id: &str, changes: &[Vec<u8>]| {
                        apply_master_device(tx, id, changes)
                    },
                ),
            );
        }
        Ok(Started {
            routes: Some(api::routes(people)),
        })
    }
}
