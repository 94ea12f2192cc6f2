//! telemetry's HTTP routes: history, the live event stream (SSE), dead letters, and
//! the board page's state.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::routing::get;
use axum::{Json, Router};
use futures::Stream;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::{board, live, query};
use crate::bus::{Bus, Event};
use crate::http::ApiError;
use crate::modules::auth::service::People;
use crate::modules::fleet::service::FleetApi;
use crate::modules::framework::Services;
use crate::store::Store;
use crate::util::{now_ms, parse_time};

#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) store: Store,
    pub(crate) bus: Bus,
    pub(crate) services: Services,
    /// Looked up once at start.
    pub(crate) fleet: Arc<FleetApi>,
    pub(crate) live: Arc<live::Live>,
    pub(crate) raw_retention_ms: i64,
    pub(crate) shutdown: CancellationToken,
    /// Looked up once at start: GPS history and dead letters need a session.
    pub(crate) people: Arc<People>,
}

/// Who may read GPS history and rejected messages.
const STAFF: &[&str] = &["dispatcher", "depot_manager", "mechanic"];

#[derive(Debug, Deserialize)]
struct HistoryQuery {
    from: Option<String>,
    to: Option<String>,
    bucket: Option<String>,
}

async fn history(
    State(s): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Query(q): Query<HistoryQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    s.people.require(&headers, STAFF).await?;
    let fleet = s.fleet.clone();
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
                        let data = serde_json::json!({ "vehicle_id": u.vehicle_id, "sample": u, "status": live.view(&u.vehicle_id, now_ms()).status });
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
    headers: HeaderMap,
    Query(q): Query<DeadQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    s.people.require(&headers, STAFF).await?;
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

/// The board and telemetry routes.
pub(super) fn routes(state: AppState) -> Router {
    Router::new()
        .route("/", get(board::page))
        .route("/api/v1/vehicles/{id}/telemetry", get(history))
        .route("/api/v1/telemetry/stream", get(stream))
        .route("/api/v1/telemetry/dead-letters", get(dead_letters))
        .with_state(state)
}
