//! The sync routes depots call: enrol (trade the one-time token for credentials), push a
//! batch, pull changes. Push and pull authenticate one depot ([`Depot`]) and act only on
//! that depot's data; a bad batch gets a clear error and changes nothing. A push body is
//! read only after authentication, within the push budget and the body timeout.

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use garasi_sync_protocol::wire::{self, Batch, Entry};
use serde::Deserialize;

use super::limits::{kib, ENROL_BODY_BYTES, PUSH_BODY_BYTES};
use super::{body, ApiError, AppState, Depot};
use crate::push_check::{self, Checked};
use crate::store::{CloudStore, SyncReport};

pub(super) fn routes<S: CloudStore + 'static>() -> Router<AppState<S>> {
    // Outside the `.route` call: keeps each route's methods readable by the tidy test.
    let enrol_limit = DefaultBodyLimit::max(ENROL_BODY_BYTES);
    Router::new()
        .route("/api/v1/enroll", post(enroll::<S>).layer(enrol_limit))
        .route("/api/v1/sync/push", post(push::<S>))
        .route("/api/v1/sync/pull", get(pull::<S>))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnrollBody {
    token: String,
}

async fn enroll<S: CloudStore>(
    State(s): State<AppState<S>>,
    body: Result<Json<EnrollBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Json(b) =
        body.map_err(|e| ApiError::bad_request(format!("invalid JSON body: {}", e.body_text())))?;
    let c = s.store.enroll(&b.token).await?;
    Ok(Json(
        serde_json::json!({ "depot_id": c.depot_id, "secret": c.secret }),
    ))
}

async fn push<S: CloudStore + 'static>(
    State(s): State<AppState<S>>,
    headers: HeaderMap,
    Depot(depot): Depot,
    body: Body,
) -> Result<Json<serde_json::Value>, ApiError> {
    // A push declares its length (depots always do): its share of the push budget is
    // known before a byte is read, and held until the batch is stored; then the body
    // within the timeout.
    let Some(declared) = body::content_length(&headers) else {
        return Err(ApiError::new(
            StatusCode::LENGTH_REQUIRED,
            "a push must declare its Content-Length",
        ));
    };
    let want = declared.min(PUSH_BODY_BYTES as u64);
    let weight = kib(want).min(kib(s.limits.push_budget_bytes as u64));
    let budget = tokio::time::timeout(
        s.limits.body_timeout,
        s.push_bodies.clone().acquire_many_owned(weight),
    )
    .await
    .map_err(|_| {
        s.metrics.refused("busy");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the cloud is receiving too many pushes: retry in a few seconds",
        )
    })?
    .map_err(|_| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting down"))?;
    let body = body::read_limited(&s, body, PUSH_BODY_BYTES, s.limits.body_timeout).await?;
    // Decoding and checking run on the bulk threads, at most CONCURRENT_DECODES at once:
    // together they bound what hostile batches can make the cloud allocate and compute.
    let checked = {
        // The permit moves into the blocking task: a client that hangs up cannot free
        // its slot while its batch is still being decoded.
        let permit = permit_of(&s.decodes).await?;
        let authenticated = depot.clone();
        crate::bulk::spawn_blocking(move || {
            let _permit = permit;
            push_check::check(&body, &authenticated)
        })
        .await?
    };
    let Checked {
        batch_seq,
        changes,
        rows,
    } = checked.map_err(|r| {
        if let Some(reason) = r.reason {
            s.metrics.sync_refused.with_label_values(&[reason]).inc();
            tracing::warn!(depot = %depot, reason, error = %r.message, "sync batch refused");
        }
        ApiError::new(r.status, r.message)
    })?;
    // Stores at once are bounded: past the cores, more transactions only queue for
    // them, and every one queued is one more a person's read waits behind. The store
    // runs as a task of its own holding its slot and the body's share of the push
    // budget: a depot that hangs up mid-store (and sends the batch again) cannot free
    // either while its transaction still runs.
    let slot = permit_of(&s.stores).await?;
    // The secret again, now that the body is in and its slot taken: a depot revoked (or
    // re-enrolled) while its push was arriving, being checked or waiting must not land
    // it.
    let still = match super::auth::bearer(&headers) {
        Some(secret) => s.store.authenticate(&depot, secret).await?,
        None => false,
    };
    if !still {
        s.metrics.refused("unauthenticated");
        return Err(ApiError::unauthorized(
            "the depot's secret was revoked or replaced while the push arrived: enrol again",
        ));
    }
    // The sync report and the materialiser's wake-up belong to the store: done even if
    // the depot hung up meanwhile.
    let (store, materialiser) = (s.store.clone(), s.materialiser.clone());
    let report = sync_report(&headers);
    // On the main runtime, not the bulk threads: a PostgreSQL connection opened in a task
    // is driven by that task's runtime for its whole life, and the write pool also serves
    // authentication and the materialiser's saves, which must not run at nice +10.
    let out = tokio::spawn(async move {
        let _held = (slot, budget);
        let out = store.push(&depot, batch_seq, &changes, &rows).await?;
        store.record_sync(&depot, report).await?;
        if out.new_changes > 0 {
            materialiser.wake.notify_one();
        }
        Ok::<_, crate::store::StoreError>(out)
    })
    .await??;
    Ok(Json(
        serde_json::json!({ "replayed": out.replayed, "new_changes": out.new_changes, "new_rows": out.new_rows }),
    ))
}

/// One permit of a push's bounds, owned so it can move into the task doing the work (the
/// semaphores are closed only when the cloud shuts down).
async fn permit_of(
    bound: &std::sync::Arc<tokio::sync::Semaphore>,
) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
    bound
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting down"))
}

/// Parses `x-garasi-backlog: entries=N;bytes=N;oldest_change_ms=N` (absent or malformed:
/// no report; the ops view then keeps the previous one).
fn sync_report(headers: &HeaderMap) -> Option<SyncReport> {
    let v = headers.get("x-garasi-backlog")?.to_str().ok()?;
    let mut r = SyncReport::default();
    for part in v.split(';') {
        let (k, n) = part.split_once('=')?;
        let n: i64 = n.trim().parse().ok()?;
        match k.trim() {
            "entries" => r.backlog_entries = n,
            "bytes" => r.backlog_bytes = n,
            "oldest_change_ms" => r.oldest_change_ms = (n > 0).then_some(n),
            _ => {}
        }
    }
    Some(r)
}

#[derive(Deserialize)]
struct PullQuery {
    cursor: Option<i64>,
    limit: Option<i64>,
}

/// Returns a wire batch of the depot's changes after `cursor`; `batch_seq` carries the
/// cursor to ask from next time (unchanged when there is nothing new).
async fn pull<S: CloudStore>(
    State(s): State<AppState<S>>,
    headers: HeaderMap,
    Query(q): Query<PullQuery>,
    Depot(depot): Depot,
) -> Result<Response, ApiError> {
    let cursor = q.cursor.unwrap_or(0).max(0);
    let limit = q.limit.unwrap_or(1000).clamp(1, 10_000);
    let changes = s.store.pull(&depot, cursor, limit).await?;
    s.store.record_sync(&depot, sync_report(&headers)).await?;
    let next = changes.last().map(|c| c.cursor).unwrap_or(cursor);
    let batch = Batch {
        depot,
        batch_seq: next as u64,
        entries: changes
            .into_iter()
            .map(|c| Entry::Change {
                record_type: c.record_type,
                record_id: c.record_id,
                change: c.change,
            })
            .collect(),
    };
    let bytes = wire::encode(&batch)?;
    Ok((
        [(header::CONTENT_TYPE, "application/vnd.garasi.sync-batch")],
        bytes,
    )
        .into_response())
}
