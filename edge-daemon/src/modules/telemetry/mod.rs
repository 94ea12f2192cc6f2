//! telemetry module: vehicle samples, latest state, connection status, faults and dead
//! letters. Fed by the embedded broker through a local link; feeds the board, the API,
//! the live stream and (through the bus) other modules.

mod board;
pub mod config;
pub mod ingest;
pub mod live;
pub mod metrics;
pub mod query;
pub mod writer;

mod api;
pub mod service;
mod store;
mod travel;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::modules::auth::service::People;
use crate::modules::fleet::service::{FleetApi, LiveStateSource, TravelSource};
use crate::modules::framework::{Module, ModuleContext, ModuleError, Started};
use crate::store::migrate::Migration;
use crate::store::Role;
use crate::util::now_ms;
use api::AppState;
use metrics::TelemetryMetrics;
use service::TelemetryApi;

/// Items between ingest and the writer.
pub const QUEUE_CAPACITY: usize = 8192;

pub struct TelemetryModule;

inventory::submit! { crate::modules::framework::Registration(|| Box::new(TelemetryModule)) }

impl Module for TelemetryModule {
    fn name(&self) -> &'static str {
        "telemetry"
    }
    fn depends_on(&self) -> &'static [&'static str] {
        &["fleet", "sync", "auth"]
    }
    fn migrations(&self) -> &'static [Migration] {
        store::MIGRATIONS
    }

    fn start(&self, ctx: &ModuleContext) -> Result<Started, ModuleError> {
        let name = self.name();
        let cfg = ctx.config.telemetry.clone();
        let fleet = ctx
            .services
            .get::<FleetApi>()
            .ok_or_else(|| ModuleError::start(name, "fleet API not available"))?;
        let fleet_for_gauges = fleet.clone();
        let fleet_for_state = fleet.clone();
        let broker = ctx
            .broker
            .as_ref()
            .ok_or_else(|| ModuleError::start(name, "the embedded broker is not running"))?;
        let schemas = ingest::Schemas::load()
            .map_err(|e| ModuleError::start(name, format!("bad schema: {e}")))?;
        let live = Arc::new(live::Live::new(
            cfg.stale_after_secs as i64 * 1000,
            cfg.offline_after_secs as i64 * 1000,
        ));
        let metrics = Arc::new(
            TelemetryMetrics::register(&ctx.metrics.registry)
                .map_err(|e| ModuleError::start(name, e))?,
        );
        let conn = ctx.store.connect(Role::Writer)?;
        let known = live.load(&conn).map_err(|e| ModuleError::start(name, e))?;
        tracing::info!(vehicles = known, "telemetry live state loaded");

        let (mut link_tx, link_rx) = broker
            .link("garasi-ingest")
            .map_err(|e| ModuleError::start(name, e))?;
        link_tx
            .subscribe(ingest::FILTER)
            .map_err(|e| ModuleError::start(name, e))?;

        // Bounded: when the writer is behind, ingest blocks and the gate's backpressure
        // slows devices. The ring is allocated up front, so keep it modest.
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE_CAPACITY);
        let draining = Arc::new(AtomicBool::new(false));
        let writer = writer::Writer {
            conn,
            live: live.clone(),
            bus: ctx.bus.clone(),
            metrics: metrics.clone(),
            interval: Duration::from_millis(cfg.commit_interval_ms),
        };
        ctx.tracker.spawn_blocking(move || writer.run(rx));
        {
            let ingest = ingest::Ingest {
                schemas,
                fleet,
                metrics: metrics.clone(),
                max_payload: cfg.max_payload_bytes,
                draining: draining.clone(),
                backpressure: broker.backpressure.clone(),
            };
            ctx.tracker.spawn_blocking(move || {
                let _keep_tx_alive = link_tx;
                ingest::run(link_rx, tx, ingest);
            });
        }
        // Stop: drain what the broker holds for us, then the writer commits and exits.
        {
            let cancel = ctx.cancel.clone();
            ctx.tracker.spawn(async move {
                cancel.cancelled().await;
                draining.store(true, Ordering::SeqCst);
            });
        }
        // Status gauges every 10 s; rollups and retention every minute. Both touch the
        // store, so they run in the blocking pool.
        {
            let (store, cancel, cfg, metrics, live, fleet) = (
                ctx.store.clone(),
                ctx.cancel.clone(),
                cfg.clone(),
                metrics.clone(),
                live.clone(),
                fleet_for_gauges,
            );
            ctx.tracker.spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(10));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                for round in 0u64.. {
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tick.tick() => {}
                    }
                    let (store, cfg, metrics, live, fleet) = (
                        store.clone(),
                        cfg.clone(),
                        metrics.clone(),
                        live.clone(),
                        fleet.clone(),
                    );
                    let r = tokio::task::spawn_blocking(
                        move || -> Result<Option<(usize, usize)>, String> {
                            update_status_gauges(&live, &fleet, &metrics);
                            if round % 6 != 0 {
                                return Ok(None);
                            }
                            // Through the node's shared writer, one short step at a time:
                            // the sync push (and every other write) queues between steps
                            // rather than against SQLite's busy timeout ("database is
                            // locked" after a long backlog, issue 14).
                            let steps = store
                                .read_blocking(|c| {
                                    query::housekeeping_steps(
                                        c,
                                        now_ms(),
                                        cfg.raw_retention_days,
                                        cfg.rollup_retention_days,
                                        cfg.dead_letter_keep,
                                    )
                                })
                                .map_err(|e| e.to_string())?;
                            query::run_housekeeping(&steps, |s| {
                                store.write_blocking(|c| query::housekeeping_step(c, s))
                            })
                            .map(Some)
                            .map_err(|e| e.to_string())
                        },
                    )
                    .await;
                    match r {
                        Ok(Ok(Some((rolled, deleted)))) => {
                            tracing::debug!(rolled, deleted, "telemetry housekeeping")
                        }
                        Ok(Ok(None)) => {}
                        Ok(Err(e)) => {
                            tracing::warn!(error = %e, "telemetry housekeeping failed; will retry")
                        }
                        Err(e) => tracing::warn!(error = %e, "telemetry housekeeping task failed"),
                    }
                }
            });
        }
        let api = Arc::new(TelemetryApi { live: live.clone() });
        ctx.services.provide(api.clone());
        ctx.services.provide(Arc::new(LiveStateSource(api)));
        let travel = travel::TravelReader {
            store: ctx.store.clone(),
        };
        ctx.services
            .provide(Arc::new(TravelSource(Arc::new(travel))));

        let state = AppState {
            store: ctx.store.clone(),
            bus: ctx.bus.clone(),
            services: ctx.services.clone(),
            fleet: fleet_for_state,
            live,
            raw_retention_ms: cfg.raw_retention_days as i64 * query::DAY_MS,
            shutdown: ctx.shutdown.clone(),
            people: ctx
                .services
                .get::<People>()
                .ok_or_else(|| ModuleError::start(name, "the auth module is not running"))?,
        };
        let routes = api::routes(state);
        Ok(Started {
            routes: Some(routes),
        })
    }
}

/// Sets the `garasi_vehicles{status}` gauges over registered vehicles.
fn update_status_gauges(live: &live::Live, fleet: &FleetApi, metrics: &TelemetryMetrics) {
    let now = now_ms();
    let mut counts = std::collections::HashMap::new();
    for v in fleet.list() {
        let st = live
            .get(&v.id)
            .map(|l| live.status_of(&l, now))
            .unwrap_or(live::Status::Unknown);
        *counts.entry(st.as_str()).or_insert(0i64) += 1;
    }
    for st in [
        live::Status::Online,
        live::Status::Stale,
        live::Status::Offline,
        live::Status::Unknown,
    ] {
        metrics
            .vehicles_by_status
            .with_label_values(&[st.as_str()])
            .set(counts.get(st.as_str()).copied().unwrap_or(0));
    }
}
