//! `AllStarted` appears in `Services` only after the last module's `start` returned:
//! the sync worker waits for it before it pulls, so a pulled change never meets a record
//! type whose module has not registered its applier yet (the start-up race that left
//! depots diverged in the chaos test). A slow last module stands in for a slow start.

#![allow(clippy::unwrap_used)]

use std::sync::OnceLock;

use parking_lot::Mutex;

use garasi_edge::config::Settings;
use garasi_edge::modules::framework::{
    AllStarted, Module, ModuleContext, ModuleError, Services, Started,
};
use garasi_edge::node::{self, Node};
use garasi_edge::store::DataDir;

/// What the probe saw during its start, and the services to look at afterwards.
static SEEN: OnceLock<Mutex<Option<(bool, Services)>>> = OnceLock::new();

struct SlowLast;
impl Module for SlowLast {
    fn name(&self) -> &'static str {
        // Starts after every built-in module (no dependency between them: name order).
        "zzz_slow_probe"
    }
    fn start(&self, ctx: &ModuleContext) -> Result<Started, ModuleError> {
        std::thread::sleep(std::time::Duration::from_millis(300));
        let during = ctx.services.get::<AllStarted>().is_some();
        *SEEN.get_or_init(Default::default).lock() = Some((during, ctx.services.clone()));
        Ok(Started::default())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_started_is_published_after_the_last_module() {
    let tmp = tempfile::tempdir().unwrap();
    DataDir::new(tmp.path(), None).init().unwrap();
    let settings = Settings {
        http_listen: Some("127.0.0.1:0".into()),
        mqtt_listen: Some("127.0.0.1:0".into()),
        mqtt5_listen: Some("127.0.0.1:0".into()),
        ..Default::default()
    };
    let cfg = settings.resolve(tmp.path()).unwrap();
    let bound = node::bind(&cfg).unwrap();
    let mut modules = node::all_modules();
    modules.push(Box::new(SlowLast));
    let node = Node::start_with(cfg, bound, modules).await.unwrap();
    let (during, services) = SEEN.get().unwrap().lock().take().unwrap();
    let after = services.get::<AllStarted>().is_some();
    assert!(node.stop(std::time::Duration::from_secs(10)).await);
    assert!(
        !during,
        "AllStarted was there while the last module was still starting"
    );
    assert!(after, "AllStarted missing once every module started");
}
