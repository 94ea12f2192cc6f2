//! Operations: liveness (`/healthz`), Prometheus metrics (`/metrics`) and a depot's
//! telemetry as it arrived (admin).

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use garasi_sync_protocol::streams;
use serde::Deserialize;

use super::{Admin, ApiError, AppState, KnownDepot};
use crate::store::{CloudStore, ReadModel};

pub(super) fn routes<S: CloudStore + 'static>() -> Router<AppState<S>> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics::<S>))
        .route(
            "/api/v1/admin/depots/{depot}/telemetry",
            get(depot_telemetry::<S>),
        )
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// Prometheus metrics (low-cardinality labels; no depot ids, nothing personal).
async fn metrics<S>(State(s): State<AppState<S>>) -> Response {
    let quarantined = s
        .materialiser
        .quarantined_total
        .load(std::sync::atomic::Ordering::Relaxed);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(quarantined),
    )
        .into_response()
}

#[derive(Deserialize)]
struct TelemetryQuery {
    after: Option<i64>,
    limit: Option<i64>,
}

/// A depot's telemetry as it arrived (decoded), oldest seq first; `next` is the `after`
/// to ask from next time.
async fn depot_telemetry<S: ReadModel>(
    State(s): State<AppState<S>>,
    Query(q): Query<TelemetryQuery>,
    _: Admin,
    KnownDepot(depot): KnownDepot,
) -> Result<Json<serde_json::Value>, ApiError> {
    let after = q.after.unwrap_or(0).max(0);
    let limit = q.limit.unwrap_or(1000).clamp(1, 50_000);
    let rows = s
        .store
        .stream_rows(&depot, streams::TELEMETRY_V1, after, limit)
        .await?;
    let next = rows.last().map_or(after, |r| r.seq);
    let mut samples = Vec::with_capacity(rows.len());
    for r in rows {
        let sample = streams::TelemetrySampleV1::decode(&r.payload)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        samples.push(serde_json::json!({ "seq": r.seq, "sample": sample }));
    }
    Ok(Json(
        serde_json::json!({ "samples": samples, "next": next }),
    ))
}
