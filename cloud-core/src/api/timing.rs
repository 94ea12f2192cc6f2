//! How long the cloud takes to answer, per route: a middleware that observes every
//! request's time to its response head in `garasi_cloud_http_request_seconds`, labelled
//! by the route's template (never the path itself, which holds depot and record ids).

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use super::AppState;

/// Times one request; requests no route matched share the label `unmatched`, and
/// methods outside the standard few share `other` (a client names its own method: as
/// a label it would make a new series per name).
pub(super) async fn observe<S: Send + Sync + 'static>(
    State(s): State<AppState<S>>,
    req: Request,
    next: Next,
) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    // The route templates are the router's own: a fixed few.
    let method = method_label(req.method());
    let started = Instant::now();
    let response = next.run(req).await;
    s.metrics
        .requests
        .with_label_values(&[method, &route])
        .observe(started.elapsed().as_secs_f64());
    response
}

fn method_label(m: &axum::http::Method) -> &'static str {
    match m.as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    }
}
