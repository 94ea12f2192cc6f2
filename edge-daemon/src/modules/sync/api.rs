//! sync's HTTP route: `/api/v1/sync/status` (link state, backlog, dead letters).

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::get;
use axum::{Json, Router};
use parking_lot::Mutex;

use super::dead_letters;
use super::enrol::load_enrolment;
use super::outbox::backlog_estimate;
use crate::http::ApiError;
use crate::modules::auth::service::People;
use crate::modules::framework::Services;
use crate::store::Store;

/// What `/api/v1/sync/status` reports about the link.
#[derive(Default, Clone, serde::Serialize)]
pub(super) struct LinkState {
    pub(super) online: bool,
    pub(super) last_success_ms: Option<i64>,
    pub(super) last_error: Option<String>,
    pub(super) pushed_total: u64,
    pub(super) pulled_total: u64,
    pub(super) unknown_record_changes: u64,
    pub(super) dead_letters: u64,
    /// Entries acknowledged per second, smoothed over recent pushes.
    pub(super) drain_rate: f64,
}

#[derive(Clone)]
pub(super) struct AppState {
    pub(super) store: Store,
    pub(super) link: Arc<Mutex<LinkState>>,
    /// People (auth) is looked up per request, not at start: auth depends on sync, so
    /// it starts after this module.
    pub(super) services: Services,
}

/// Who sees the error texts and dead letters; the wall board's banner (no session) sees
/// the link state, backlog and counts only.
const STAFF: &[&str] = &["dispatcher", "depot_manager", "mechanic"];

pub(super) async fn status(
    State(s): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    let staff = match s.services.get::<People>() {
        Some(p) => p.require(&headers, STAFF).await.is_ok(),
        None => false,
    };
    let (b, enrolled, (dead_kept, dead_newest), (thinned, dropped)) = s
        .store
        .read(|c| {
            Ok((
                backlog_estimate(c)?,
                load_enrolment(c)?.map(|e| e.depot_id),
                dead_letters::summary(c, 5)?,
                super::outbox::quota_totals(c)?,
            ))
        })
        .await
        .map_err(ApiError::internal)?;
    let mut link = s.link.lock().clone();
    let mut dead_newest = dead_newest;
    if !staff {
        link.last_error = link
            .last_error
            .map(|_| "sign in to see the error".to_string());
        dead_newest = Default::default();
    }
    let state = match (&enrolled, link.online) {
        (None, _) => "not_enrolled",
        (Some(_), true) => "online",
        (Some(_), false) => "offline",
    };
    // ETA only while draining: offline, nothing drains.
    let eta_s = (link.online && b.entries() > 0 && link.drain_rate > 0.0)
        .then(|| (b.entries() as f64 / link.drain_rate).ceil());
    Ok(Json(serde_json::json!({
        "link": state,
        "depot_id": enrolled,
        "last_success": link.last_success_ms.map(crate::util::rfc3339),
        "last_error": link.last_error,
        "backlog": {
            "entries": b.entries(),
            "bytes": b.bytes(),
            "changes": b.changes,
            "stream_rows": b.stream_rows,
            "oldest_change": b.oldest_change_ms.map(crate::util::rfc3339),
        },
        "drain_rate_per_s": (link.drain_rate * 10.0).round() / 10.0,
        "eta_s": eta_s,
        "pushed_total": link.pushed_total,
        "pulled_total": link.pulled_total,
        // Since the depot began (kept in its store), not since this start.
        "quota": {
            "stream_rows_thinned": thinned,
            "stream_rows_dropped": dropped,
        },
        "unknown_record_changes": link.unknown_record_changes,
        "dead_letters": {
            "since_start": link.dead_letters,
            "kept": dead_kept,
            "newest": dead_newest,
        },
    })))
}

/// The status route.
pub(super) fn routes(store: Store, link: Arc<Mutex<LinkState>>, services: Services) -> Router {
    Router::new()
        .route("/api/v1/sync/status", get(status))
        .with_state(AppState {
            store,
            link,
            services,
        })
}
