//! template module: the module every new one is copied from (`cargo xtask new-module
//! NAME`). It is compiled and tested with the rest, so the copy starts from code that
//! builds and passes: a table, a typed service, a write route attributed to the
//! signed-in person, a read route, a page, a bus reaction, its own metric, command and
//! settings (`[modules.template]`).

pub mod api;
mod cli;
pub mod config;
mod metrics;
mod pages;
pub mod service;
mod store;
mod watch;

use std::sync::Arc;

use crate::modules::auth::service::People;
use crate::modules::framework::{CliContext, Module, ModuleContext, ModuleError, Started};
use crate::store::migrate::Migration;
use metrics::TemplateMetrics;
use service::TemplateApi;

pub struct TemplateModule;

// The template is never registered; `cargo xtask new-module` uncomments this in the copy.
// inventory::submit! { crate::modules::framework::Registration(|| Box::new(TemplateModule)) }

impl Module for TemplateModule {
    fn name(&self) -> &'static str {
        "template"
    }
    fn depends_on(&self) -> &'static [&'static str] {
        &["auth"]
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
        // Dependencies are looked up once, here, never per request.
        let people = ctx
            .services
            .get::<People>()
            .ok_or_else(|| ModuleError::start("template", "the auth module is not running"))?;
        let metrics = TemplateMetrics::register(&ctx.metrics.registry)
            .map_err(|e| ModuleError::start("template", e))?;
        // Checked when the configuration was read; parsed again here to get the values.
        let cfg = config::parse(&ctx.config.module(self.name()))
            .map_err(|e| ModuleError::start("template", e.join("; ")))?;
        let api = Arc::new(TemplateApi::new(ctx.store.clone(), metrics, cfg));
        ctx.services.provide(api.clone());
        ctx.tracker.spawn(watch::watch(
            api.clone(),
            ctx.bus.subscribe(),
            ctx.cancel.clone(),
        ));
        Ok(Started {
            routes: Some(api::routes(api, people)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn its_section_is_checked_through_the_framework_hook() {
        let ok: toml::Table = "max_label_chars = 40".parse().unwrap();
        assert!(TemplateModule.check_config(&ok).is_empty());
        let bad: toml::Table = "max_label_chars = 0\n".parse().unwrap();
        let e = TemplateModule.check_config(&bad);
        assert!(e.len() == 1 && e[0].contains("out of range"), "{e:?}");
        let typo: toml::Table = "max_lable_chars = 40\n".parse().unwrap();
        let e = TemplateModule.check_config(&typo);
        assert!(e.len() == 1 && e[0].contains("max_lable_chars"), "{e:?}");
    }
}
