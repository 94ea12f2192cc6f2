//! How long the cloud takes to answer, per route: a middleware that observes every
//! request's time to its response head in `garasi_cloud_http_request_seconds`, labelled
//! by the route's template (never the path itself, which holds depot and record ids).

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use super::AppState;

/// Times one request; requests no route matched share the label `unmatched`.
pub(super) async fn observe<S: Send + Sync + 'static>(
    State(s): State<AppState<S>>,
    req: Request,
    next: Next,
) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = req.method().clone();
    let started = Instant::now();
    let response = next.run(req).await;
    s.metrics
        .requests
        .with_label_values(&[method.as_str(), &route])
        .observe(started.elapsed().as_secs_f64());
    response
}
