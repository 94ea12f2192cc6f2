//! telemetry module: vehicle samples, latest state, connection status, faults and dead
//! letters. Fed by the embedded broker through a local link; feeds the board, the API,
//! the live stream and (through the bus) other modules.

mod board;
pub mod ingest;
pub mod live;
pub mod query;
pub mod writer;

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::routing::get;
use axum::{Json, Router};
use futures::Stream;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::modules::fleet::service::{FleetApi, LiveState, LiveStateSource};
use crate::modules::framework::{Module, ModuleContext, ModuleError, Services, Started};
use crate::bus::{Bus, Event};
use crate::http::ApiError;
use crate::store::migrate::Migration;
use crate::store::{Role, Store};
use crate::util::{now_ms, parse_time};

/// Items between ingest and the writer.
pub const QUEUE_CAPACITY: usize = 8192;

pub(crate) const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "samples, latest, faults, dead letters, rollups",
    sql: "CREATE TABLE telemetry_samples (
            vehicle_id TEXT NOT NULL,
            ts_ms INTEGER NOT NULL,
            received_ms INTEGER NOT NULL,
            lat REAL, lon REAL, heading REAL, speed_kmh REAL, soc_pct REAL, odometer_km REAL,
            battery_temp_c REAL, power_w REAL, charging INTEGER,
            extra TEXT,
            PRIMARY KEY (vehicle_id, ts_ms)
          ) WITHOUT ROWID;
          CREATE TABLE telemetry_latest (
            vehicle_id TEXT PRIMARY KEY,
            ts_ms INTEGER, received_ms INTEGER,
            lat REAL, lon REAL, heading REAL, speed_kmh REAL, soc_pct REAL, odometer_km REAL,
            battery_temp_c REAL, power_w REAL, charging INTEGER,
            online INTEGER, status_ms INTEGER, firmware TEXT
          );
          CREATE TABLE telemetry_faults (
            vehicle_id TEXT NOT NULL, spn INTEGER NOT NULL, fmi INTEGER NOT NULL,
            active INTEGER NOT NULL, severity TEXT, occurrences INTEGER, description TEXT,
            first_seen_ms INTEGER NOT NULL, last_seen_ms INTEGER NOT NULL,
            PRIMARY KEY (vehicle_id, spn, fmi)
          ) WITHOUT ROWID;
          CREATE TABLE telemetry_dead_letters (
            id INTEGER PRIMARY KEY,
            received_ms INTEGER NOT NULL,
            topic TEXT NOT NULL,
            reason TEXT NOT NULL,
            detail TEXT NOT NULL,
            payload BLOB NOT NULL,
            payload_len INTEGER NOT NULL
          );
          CREATE TABLE telemetry_rollup_1m (
            vehicle_id TEXT NOT NULL, bucket_ms INTEGER NOT NULL, samples INTEGER NOT NULL,
            speed_sum REAL, speed_n INTEGER, speed_max REAL, soc_min REAL, soc_max REAL,
            odometer_max REAL, battery_temp_max REAL, power_sum REAL, power_n INTEGER,
            PRIMARY KEY (vehicle_id, bucket_ms)
          ) WITHOUT ROWID;
          CREATE TABLE telemetry_rollup_state (
            vehicle_id TEXT PRIMARY KEY,
            rolled_until_ms INTEGER NOT NULL
          );",
}];

/// Telemetry's public API: the live view (fleet shows it next to each vehicle).
pub struct TelemetryApi {
    pub live: Arc<live::Live>,
}

impl LiveState for TelemetryApi {
    fn live(&self, vehicle_id: &str) -> Option<serde_json::Value> {
        Some(self.live.view(vehicle_id, now_ms()))
    }
}

pub struct TelemetryModule;

impl Module for TelemetryModule {
    fn name(&self) -> &'static str {
        "telemetry"
    }
    fn depends_on(&self) -> &'static [&'static str] {
        &["fleet", "sync"]
    }
    fn migrations(&self) -> &'static [Migration] {
        MIGRATIONS
    }

    fn start(&self, ctx: &ModuleContext) -> Result<Started, ModuleError> {
        let name = self.name();
        let cfg = ctx.config.telemetry.clone();
        let fleet = ctx
            .services
            .get::<FleetApi>()
            .ok_or_else(|| ModuleError::start(name, "fleet API not available"))?;
        let fleet_for_gauges = fleet.clone();
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
            metrics: ctx.metrics.clone(),
            interval: Duration::from_millis(cfg.commit_interval_ms),
        };
        ctx.tracker.spawn_blocking(move || writer.run(rx));
        {
            let ingest = ingest::Ingest {
                schemas,
                fleet,
                metrics: ctx.metrics.clone(),
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
                ctx.metrics.clone(),
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
                            let mut c = store.connect(Role::Writer).map_err(|e| e.to_string())?;
                            query::housekeeping(
                                &mut c,
                                now_ms(),
                                cfg.raw_retention_days,
                                cfg.rollup_retention_days,
                                cfg.dead_letter_keep,
                            )
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

        let state = AppState {
            store: ctx.store.clone(),
            bus: ctx.bus.clone(),
            services: ctx.services.clone(),
            live,
            raw_retention_ms: cfg.raw_retention_days as i64 * query::DAY_MS,
            shutdown: ctx.shutdown.clone(),
        };
        let routes = Router::new()
            .route("/", get(board::page))
            .route("/api/v1/vehicles/{id}/telemetry", get(history))
            .route("/api/v1/telemetry/stream", get(stream))
            .route("/api/v1/telemetry/dead-letters", get(dead_letters))
            .with_state(state);
        Ok(Started {
            routes: Some(routes),
        })
    }
}

/// Sets the `garasi_vehicles{status}` gauges over registered vehicles.
fn update_status_gauges(live: &live::Live, fleet: &FleetApi, metrics: &crate::metrics::Metrics) {
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

#[derive(Clone)]
pub(crate) struct AppState {
    store: Store,
    bus: Bus,
    services: Services,
    live: Arc<live::Live>,
    raw_retention_ms: i64,
    shutdown: CancellationToken,
}

#[derive(Debug, Deserialize)]
struct HistoryQuery {
    from: Option<String>,
    to: Option<String>,
    bucket: Option<String>,
}

async fn history(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let fleet = s
        .services
        .get::<FleetApi>()
        .ok_or_else(|| ApiError::internal("fleet API missing"))?;
    let known = {
        let (fleet, id) = (fleet.clone(), id.clone());
        tokio::task::spawn_blocking(move || fleet.is_known(&id))
            .await
            .unwrap_or(false)
    };
    if !known {
        return Err(ApiError::not_found(format!(
            "vehicle {id} is not registered"
        )));
    }
    let now = now_ms();
    let time = |v: &Option<String>, name: &str, default: i64| -> Result<i64, ApiError> {
        match v {
            None => Ok(default),
            Some(s) => parse_time(s).ok_or_else(|| {
                ApiError::bad_request(format!("{name}={s:?} is not a time: use RFC 3339 (2026-11-21T05:00:00Z) or epoch milliseconds"))
            }),
        }
    };
    let to = time(&q.to, "to", now + 1)?;
    let from = time(&q.from, "from", to - 3_600_000)?;
    if from >= to {
        return Err(ApiError::bad_request("from must be before to"));
    }
    let bucket_name = q.bucket.clone().unwrap_or_else(|| "raw".into());
    let bucket = query::bucket_ms(&bucket_name).ok_or_else(|| {
        ApiError::bad_request(format!(
            "bucket={bucket_name:?} is unknown: use raw, 1m, 5m, 15m, 1h, 6h or 1d"
        ))
    })?;
    let from_raw = from >= now - s.raw_retention_ms;
    let idc = id.clone();
    let body = match bucket {
        None => {
            // Raw samples exist only within raw retention: start there (the answer says
            // so in from_ms); older history is available bucketed from rollups.
            let from = from.max(now - s.raw_retention_ms);
            if from >= to {
                return Err(ApiError::bad_request("raw samples are kept only for the raw retention period: ask for a bucket (e.g. bucket=1h) for older data"));
            }
            let mut rows = s
                .store
                .read(move |c| query::raw(c, &idc, from, to))
                .await
                .map_err(|e| ApiError::internal(e.to_string()))?;
            let truncated = rows.len() > query::MAX_RAW_ROWS;
            rows.truncate(query::MAX_RAW_ROWS);
            let next_from = if truncated {
                rows.last().map(|r| r.ts_ms + 1)
            } else {
                None
            };
            serde_json::json!({ "vehicle_id": id, "from_ms": from, "to_ms": to, "bucket": "raw", "samples": rows, "truncated": truncated, "next_from_ms": next_from })
        }
        Some(b) => {
            let rows = s
                .store
                .read(move |c| query::bucketed(c, &idc, from, to, b, from_raw))
                .await
                .map_err(|e| ApiError::internal(e.to_string()))?;
            serde_json::json!({ "vehicle_id": id, "from_ms": from, "to_ms": to, "bucket": bucket_name, "source": if from_raw { "raw" } else { "rollup_1m" }, "buckets": rows })
        }
    };
    Ok(Json(body))
}

#[derive(Debug, Deserialize)]
struct StreamQuery {
    vehicle: Option<String>,
}

/// Server-sent events: `telemetry` (one committed sample), `status` (birth / last will),
/// `faults` (active set changed), `lagged` (this client missed N events).
async fn stream(
    State(s): State<AppState>,
    Query(q): Query<StreamQuery>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let mut rx = s.bus.subscribe();
    let shutdown = s.shutdown.clone();
    let live = s.live.clone();
    let filter = q.vehicle;
    let wanted = move |id: &str| filter.as_deref().is_none_or(|f| f == id);
    let stream = async_stream(move |yield_| async move {
        loop {
            let ev = tokio::select! {
                _ = shutdown.cancelled() => return,
                ev = rx.recv() => ev,
            };
            match ev {
                Ok(Event::TelemetryCommitted(batch)) => {
                    for u in batch.iter().filter(|u| wanted(&u.vehicle_id)) {
                        let data = serde_json::json!({ "vehicle_id": u.vehicle_id, "sample": u, "status": live.view(&u.vehicle_id, now_ms())["status"] });
                        if yield_
                            .send(
                                SseEvent::default()
                                    .event("telemetry")
                                    .data(data.to_string()),
                            )
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                }
                Ok(Event::VehicleConnection {
                    vehicle_id,
                    online,
                    ts_ms,
                }) if wanted(&vehicle_id) => {
                    let data = serde_json::json!({ "vehicle_id": vehicle_id, "online": online, "ts_ms": ts_ms, "view": live.view(&vehicle_id, now_ms()) });
                    if yield_
                        .send(SseEvent::default().event("status").data(data.to_string()))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Ok(Event::FaultsChanged {
                    vehicle_id,
                    active,
                    critical,
                }) if wanted(&vehicle_id) => {
                    let data = serde_json::json!({ "vehicle_id": vehicle_id, "active": active, "critical": critical, "view": live.view(&vehicle_id, now_ms()) });
                    if yield_
                        .send(SseEvent::default().event("faults").data(data.to_string()))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    if yield_
                        .send(SseEvent::default().event("lagged").data(n.to_string()))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

/// Runs `f` on its own task with a sender and streams what it sends; the task ends when
/// the client goes away (send fails) or on shutdown.
fn async_stream<F, Fut>(f: F) -> impl Stream<Item = Result<SseEvent, Infallible>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<SseEvent>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(256);
    tokio::spawn(f(tx));
    futures::StreamExt::map(tokio_stream::wrappers::ReceiverStream::new(rx), Ok)
}

#[derive(Debug, Deserialize)]
struct DeadQuery {
    limit: Option<u32>,
}

async fn dead_letters(
    State(s): State<AppState>,
    Query(q): Query<DeadQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let limit = q.limit.unwrap_or(100).min(1000);
    let (rows, counts) = s
        .store
        .read(move |c| {
            let mut st = c.prepare(
                "SELECT id, received_ms, topic, reason, detail, payload, payload_len FROM telemetry_dead_letters ORDER BY id DESC LIMIT ?1",
            )?;
            let rows = st
                .query_map([limit], |r| {
                    let payload: Vec<u8> = r.get(5)?;
                    Ok(serde_json::json!({
                        "id": r.get::<_, i64>(0)?,
                        "received": crate::util::rfc3339(r.get(1)?),
                        "topic": r.get::<_, String>(2)?,
                        "reason": r.get::<_, String>(3)?,
                        "detail": r.get::<_, String>(4)?,
                        "payload_preview": String::from_utf8_lossy(&payload[..payload.len().min(512)]),
                        "payload_len": r.get::<_, i64>(6)?,
                    }))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut st = c.prepare("SELECT reason, count(*) FROM telemetry_dead_letters GROUP BY reason")?;
            let counts = st
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?
                .collect::<rusqlite::Result<std::collections::BTreeMap<_, _>>>()?;
            Ok((rows, counts))
        })
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Json(
        serde_json::json!({ "kept_by_reason": counts, "dead_letters": rows }),
    ))
}
