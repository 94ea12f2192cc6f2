//! The module framework: the `Module` trait (deps, migrations, start), the typed
//! `Services` registry modules publish their APIs in, dependency ordering, and the
//! `Runner` that starts modules in order and stops them in reverse.

use std::any::{Any, TypeId};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::broker::BrokerHandle;
use crate::bus::Bus;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::store::migrate::{self, Migration, Outcome};
use crate::store::{Store, StoreCallError, StoreError};

/// A domain module: one room of the house. It owns its tables (through its migrations),
/// talks to other modules only through the bus or their public APIs in [`Services`].
pub trait Module: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    /// Modules that must start before this one (their public APIs are then in `Services`).
    fn depends_on(&self) -> &'static [&'static str] {
        &[]
    }
    fn migrations(&self) -> &'static [Migration] {
        &[]
    }
    /// Starts the module's tasks on `ctx.tracker` and returns its HTTP routes. Must not
    /// block for long: heavy work belongs in spawned tasks.
    fn start(&self, ctx: &ModuleContext) -> Result<Started, ModuleError>;
    /// The module's own OpenAPI paths (`{"paths": {...}}`, usually
    /// `include_str!("openapi.json")` from its folder), merged into `/api/openapi.json`.
    /// Modules whose routes are in `schemas/openapi.json` return None.
    fn openapi(&self) -> Option<&'static str> {
        None
    }
    /// Checks the module's `[modules.NAME]` section of the config file (called only when
    /// the file has one); each problem is one message saying what to write instead, all
    /// reported at once (exit 64). Messages name keys, never values: a setting may be a
    /// secret. A module that takes no settings refuses the section, so a typo never
    /// keeps a default.
    fn check_config(&self, _section: &toml::Table) -> Vec<String> {
        vec![format!("module {} takes no settings here", self.name())]
    }
    /// The module's own top-level subcommands of `garasi-edge` (e.g. `dispatch ...`),
    /// added to the command line by `cli` so a new module never edits it.
    fn commands(&self) -> Vec<clap::Command> {
        Vec::new()
    }
    /// Runs the subcommand `name` (one of [`Module::commands`]) with its arguments.
    fn run_command(
        &self,
        name: &str,
        _args: &clap::ArgMatches,
        _ctx: &CliContext<'_>,
    ) -> anyhow::Result<()> {
        anyhow::bail!("module {} has no command {name}", self.name())
    }
}

/// Where a module command's store is: the same flags and environment as every command.
#[derive(Debug, Clone, clap::Args)]
pub struct StoreArgs {
    #[arg(long, env = "GARASI_DATA_DIR")]
    pub data_dir: std::path::PathBuf,
    #[arg(long, env = "GARASI_DB_KEY_FILE")]
    pub key_file: Option<std::path::PathBuf>,
}

/// What the command line gives a module command.
pub struct CliContext<'a> {
    /// Opens the store with every module's schema up to date.
    pub open: &'a dyn Fn(&StoreArgs) -> anyhow::Result<Store>,
}

/// One module of this build. A module registers itself in its own `mod.rs` with
/// `inventory::submit! { Registration(|| Box::new(FooModule)) }`, so adding a module
/// touches no shared list; `modules::all()` collects them.
pub struct Registration(pub fn() -> Box<dyn Module>);

inventory::collect!(Registration);

/// What a started module hands back to the node.
#[derive(Default)]
pub struct Started {
    pub routes: Option<axum::Router>,
}

#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    /// Every missing dependency at once, like every configuration error.
    #[error("{}", .0.join("; "))]
    MissingDependencies(Vec<String>),
    #[error("modules depend on each other in a cycle: {0}")]
    Cycle(String),
    #[error("module {0} is listed twice")]
    Duplicate(&'static str),
    #[error("unknown module {0:?} in the disabled list: known modules are {1}")]
    UnknownDisabled(String, String),
    #[error("module {module} failed to start: {reason}")]
    Start {
        module: &'static str,
        reason: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    StoreCall(#[from] StoreCallError),
}

impl ModuleError {
    pub fn start(module: &'static str, reason: impl std::fmt::Display) -> Self {
        ModuleError::Start {
            module,
            reason: reason.to_string(),
        }
    }
}

/// Typed registry of module public APIs (one value per type). A module publishes its API
/// at start; dependants fetch it by type.
#[derive(Clone, Default)]
pub struct Services {
    map: Arc<RwLock<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>>,
}

impl Services {
    pub fn provide<T: Any + Send + Sync>(&self, value: Arc<T>) {
        self.map.write().insert(TypeId::of::<T>(), value);
    }

    pub fn get<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        let m = self.map.read();
        m.get(&TypeId::of::<T>())
            .cloned()
            .and_then(|a| a.downcast::<T>().ok())
    }
}

/// Everything a module may use while starting and running.
pub struct ModuleContext {
    pub config: Arc<Config>,
    pub store: Store,
    pub bus: Bus,
    pub services: Services,
    pub metrics: Arc<Metrics>,
    pub broker: Option<BrokerHandle>,
    /// Fires first on node shutdown (stop intake, end live streams); `cancel` fires later,
    /// in reverse start order, when the module itself must stop.
    pub shutdown: CancellationToken,
    /// Cancelled when this module must stop.
    pub cancel: CancellationToken,
    /// Every task of this module runs on this tracker so stop can wait for it.
    pub tracker: TaskTracker,
}

/// Orders modules so each comes after its dependencies; refuses missing ones and cycles.
pub fn order(
    modules: Vec<Box<dyn Module>>,
    disabled: &[String],
) -> Result<Vec<Box<dyn Module>>, ModuleError> {
    let known: Vec<&'static str> = modules.iter().map(|m| m.name()).collect();
    for d in disabled {
        if !known.contains(&d.as_str()) {
            return Err(ModuleError::UnknownDisabled(d.clone(), known.join(", ")));
        }
    }
    let mut by_name: BTreeMap<&'static str, Box<dyn Module>> = BTreeMap::new();
    for m in modules {
        let name = m.name();
        if by_name.insert(name, m).is_some() {
            return Err(ModuleError::Duplicate(name));
        }
    }
    let enabled: Vec<&'static str> = known
        .iter()
        .copied()
        .filter(|n| !disabled.iter().any(|d| d == n))
        .collect();
    let mut missing = Vec::new();
    for name in &enabled {
        let Some(m) = by_name.get(name) else { continue };
        for dep in m.depends_on() {
            let why = if !known.contains(dep) {
                Some("not part of this build")
            } else if !enabled.contains(dep) {
                Some("disabled in the configuration")
            } else {
                None
            };
            if let Some(why) = why {
                missing.push(format!(
                    "module {name} depends on {dep}, which is {why}: enable {dep} or disable {name}"
                ));
            }
        }
    }
    if !missing.is_empty() {
        return Err(ModuleError::MissingDependencies(missing));
    }
    // Depth-first topological sort in the given order (by name from `modules::all`), so
    // start order is stable: dependencies first, independent modules by name.
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Visiting,
        Done,
    }
    fn visit(
        name: &'static str,
        by_name: &BTreeMap<&'static str, Box<dyn Module>>,
        marks: &mut HashMap<&'static str, Mark>,
        path: &mut Vec<&'static str>,
        out: &mut Vec<&'static str>,
    ) -> Result<(), ModuleError> {
        match marks.get(name) {
            Some(Mark::Done) => return Ok(()),
            Some(Mark::Visiting) => {
                path.push(name);
                let start = path.iter().position(|n| *n == name).unwrap_or(0);
                return Err(ModuleError::Cycle(path[start..].join(" -> ")));
            }
            None => {}
        }
        marks.insert(name, Mark::Visiting);
        path.push(name);
        if let Some(m) = by_name.get(name) {
            for dep in m.depends_on() {
                if let Some((dep_name, _)) = by_name.get_key_value(dep) {
                    visit(dep_name, by_name, marks, path, out)?;
                }
            }
        }
        path.pop();
        marks.insert(name, Mark::Done);
        out.push(name);
        Ok(())
    }
    let mut marks = HashMap::new();
    let mut sorted = Vec::new();
    for name in &enabled {
        visit(name, &by_name, &mut marks, &mut Vec::new(), &mut sorted)?;
    }
    Ok(sorted
        .into_iter()
        .filter_map(|n| by_name.remove(n))
        .collect())
}

/// A started module, kept so the node can stop it.
struct Running {
    name: &'static str,
    cancel: CancellationToken,
    tracker: TaskTracker,
}

/// The started set of modules, stopped in reverse start order.
pub struct Runner {
    running: Vec<Running>,
    pub routes: axum::Router,
    /// The started modules' own OpenAPI fragments.
    pub openapi: Vec<&'static str>,
}

/// In [`Services`] once every module has started (and registered what it provides).
pub struct AllStarted;

/// Shared pieces every module context is built from.
pub struct Shared {
    pub config: Arc<Config>,
    pub store: Store,
    pub bus: Bus,
    pub services: Services,
    pub metrics: Arc<Metrics>,
    pub broker: Option<BrokerHandle>,
    pub shutdown: CancellationToken,
}

impl Runner {
    /// Migrates and starts `modules` (already ordered by [`order`]).
    pub fn start(
        modules: Vec<Box<dyn Module>>,
        shared: &Shared,
        parent: &CancellationToken,
    ) -> Result<Runner, ModuleError> {
        let mut running: Vec<Running> = Vec::new();
        let mut routes = axum::Router::new();
        let mut openapi = Vec::new();
        // A module that fails to start stops those started before it (and its own tasks):
        // left running, the sync worker would go on pulling for a node that never started.
        let abort = |running: &[Running], ctx: Option<&ModuleContext>| {
            for r in running
                .iter()
                .map(|r| (&r.cancel, &r.tracker))
                .chain(ctx.map(|c| (&c.cancel, &c.tracker)))
            {
                r.0.cancel();
                r.1.close();
            }
        };
        for m in modules {
            let name = m.name();
            let t0 = Instant::now();
            let outcome: Result<_, ModuleError> = shared
                .store
                .write_blocking(|conn| Ok(migrate::run(conn, name, m.migrations())))
                .map_err(ModuleError::from)
                .and_then(|r| Ok(r.map_err(StoreError::from)?));
            let outcome = match outcome {
                Ok(o) => o,
                Err(e) => {
                    abort(&running, None);
                    return Err(e);
                }
            };
            match outcome {
                Outcome::UpToDate { version } => {
                    tracing::info!(module = name, version, "schema up to date")
                }
                Outcome::Applied { from, to } => {
                    tracing::info!(module = name, from, to, "schema migrated")
                }
            }
            let ctx = ModuleContext {
                config: shared.config.clone(),
                store: shared.store.clone(),
                bus: shared.bus.clone(),
                services: shared.services.clone(),
                metrics: shared.metrics.clone(),
                broker: shared.broker.clone(),
                shutdown: shared.shutdown.clone(),
                cancel: parent.child_token(),
                tracker: TaskTracker::new(),
            };
            let started = match m.start(&ctx) {
                Ok(s) => s,
                Err(e) => {
                    abort(&running, Some(&ctx));
                    return Err(e);
                }
            };
            openapi.extend(m.openapi());
            if let Some(r) = started.routes {
                routes = routes.merge(r);
            }
            let secs = t0.elapsed().as_secs_f64();
            shared
                .metrics
                .module_start_seconds
                .with_label_values(&[name])
                .set(secs);
            tracing::info!(
                module = name,
                duration_ms = format!("{:.1}", secs * 1000.0),
                "module started"
            );
            running.push(Running {
                name,
                cancel: ctx.cancel,
                tracker: ctx.tracker,
            });
        }
        // Published last: a module waiting for its peers (sync's worker, whose pulled
        // changes need every module's applier) knows they are all registered now.
        shared.services.provide(Arc::new(AllStarted));
        Ok(Runner {
            running,
            routes,
            openapi,
        })
    }

    /// Stops modules in reverse start order, each given what is left of `grace`.
    /// Returns false if some module did not finish in time.
    pub async fn stop(self, grace: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + grace;
        let mut clean = true;
        for r in self.running.into_iter().rev() {
            r.cancel.cancel();
            r.tracker.close();
            if tokio::time::timeout_at(deadline, r.tracker.wait())
                .await
                .is_err()
            {
                tracing::warn!(
                    module = r.name,
                    "module did not stop within the grace period"
                );
                clean = false;
            } else {
                tracing::info!(module = r.name, "module stopped");
            }
        }
        clean
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake(&'static str, &'static [&'static str]);
    impl Module for Fake {
        fn name(&self) -> &'static str {
            self.0
        }
        fn depends_on(&self) -> &'static [&'static str] {
            self.1
        }
        fn start(&self, _: &ModuleContext) -> Result<Started, ModuleError> {
            Ok(Started::default())
        }
    }

    fn names(v: &[Box<dyn Module>]) -> Vec<&'static str> {
        v.iter().map(|m| m.name()).collect()
    }

    #[test]
    fn orders_by_dependency() {
        let ms: Vec<Box<dyn Module>> = vec![
            Box::new(Fake("telemetry", &["fleet"])),
            Box::new(Fake("fleet", &["auth"])),
            Box::new(Fake("auth", &[])),
        ];
        assert_eq!(
            names(&order(ms, &[]).unwrap()),
            ["auth", "fleet", "telemetry"]
        );
    }

    #[test]
    fn missing_dependency_is_named() {
        let ms: Vec<Box<dyn Module>> = vec![Box::new(Fake("telemetry", &["fleet"]))];
        let e = order(ms, &[]).err().unwrap().to_string();
        assert!(e.contains("telemetry depends on fleet"), "{e}");
        let ms: Vec<Box<dyn Module>> = vec![
            Box::new(Fake("telemetry", &["fleet"])),
            Box::new(Fake("fleet", &[])),
        ];
        let e = order(ms, &["fleet".into()]).err().unwrap().to_string();
        assert!(e.contains("disabled in the configuration"), "{e}");
    }

    #[test]
    fn cycle_is_refused() {
        let ms: Vec<Box<dyn Module>> = vec![
            Box::new(Fake("a", &["b"])),
            Box::new(Fake("b", &["c"])),
            Box::new(Fake("c", &["a"])),
        ];
        let e = order(ms, &[]).err().unwrap().to_string();
        assert!(e.contains("a -> b -> c -> a"), "{e}");
    }

    #[test]
    fn disabling_a_leaf_is_fine_and_unknown_names_refused() {
        let ms: Vec<Box<dyn Module>> = vec![
            Box::new(Fake("telemetry", &["fleet"])),
            Box::new(Fake("fleet", &[])),
        ];
        assert_eq!(names(&order(ms, &["telemetry".into()]).unwrap()), ["fleet"]);
        let ms: Vec<Box<dyn Module>> = vec![Box::new(Fake("fleet", &[]))];
        assert!(matches!(
            order(ms, &["telemtry".into()]),
            Err(ModuleError::UnknownDisabled(..))
        ));
    }
}
