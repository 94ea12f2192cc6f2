//! Domain modules of this build. Each is a folder of the same shape (ARCHITECTURE.md,
//! `cargo xtask new-module NAME`) and is registered here with one line; the framework
//! (`framework.rs`) orders, starts and stops them.

pub mod framework;
/// Compiled and tested, never registered: what `cargo xtask new-module` copies.
pub mod template;

pub use framework::{Module, ModuleContext, ModuleError, Runner, Services, Shared, Started};

/// Declares the module folders and lists them in declaration order (one line each).
macro_rules! modules {
    ($($name:ident => $module:ident,)*) => {
        $(pub mod $name;)*
        /// Every module of this build, in declaration order.
        pub fn all() -> Vec<Box<dyn Module>> {
            vec![$(Box::new($name::$module)),*]
        }
    };
}

modules! {
    auth => AuthModule,
    sync => SyncModule,
    fleet => FleetModule,
    telemetry => TelemetryModule,
    dispatch => DispatchModule,
}
