//! Operations: liveness (`/healthz`), Prometheus metrics (`/metrics`) and a depot's
//! telemetry as it arrived (admin).

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
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

/// The most samples one page holds (a larger `limit` gets this many; page on with
/// `next`). A page of 50,000 built as a JSON tree took the cloud from 11 to 323 MiB, and
/// the allocator kept it.
pub const TELEMETRY_PAGE_MAX: i64 = 5_000;

/// One sample as the page lists it.
#[derive(serde::Serialize)]
struct PageSample<'a> {
    seq: i64,
    sample: &'a streams::TelemetrySampleV1,
}

/// A depot's telemetry as it arrived (decoded), oldest seq first; `next` is the `after`
/// to ask from next time. Written straight into the body, sample by sample, so a page
/// costs about its own size.
async fn depot_telemetry<S: ReadModel>(
    State(s): State<AppState<S>>,
    Query(q): Query<TelemetryQuery>,
    _: Admin,
    KnownDepot(depot): KnownDepot,
) -> Result<Response, ApiError> {
    let after = q.after.unwrap_or(0).max(0);
    let limit = q.limit.unwrap_or(1000).clamp(1, TELEMETRY_PAGE_MAX);
    let rows = s
        .store
        .stream_rows(&depot, streams::TELEMETRY_V1, after, limit)
        .await?;
    let next = rows.last().map_or(after, |r| r.seq);
    let mut body = Vec::with_capacity(rows.len() * 256 + 32);
    body.extend_from_slice(b"{\"samples\":[");
    for (i, r) in rows.iter().enumerate() {
        let sample = streams::TelemetrySampleV1::decode(&r.payload)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        if i > 0 {
            body.push(b',');
        }
        serde_json::to_writer(
            &mut body,
            &PageSample {
                seq: r.seq,
                sample: &sample,
            },
        )
        .map_err(|e| ApiError::internal(e.to_string()))?;
    }
    // The limit used: a client asking for more than a page sees it was cut.
    body.extend_from_slice(format!("],\"next\":{next},\"limit\":{limit}}}").as_bytes());
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}
