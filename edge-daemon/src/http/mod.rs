//! The HTTP surface: health, readiness, metrics, the OpenAPI document, JSON errors, and
//! serving every module's routes on already-bound listeners (plain HTTP and, when
//! configured, HTTPS) through `garasi-net`'s loop with its caps and timeouts.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

pub mod assets;
mod client;
pub mod config;
mod guard;
pub mod i18n;
pub mod limits;
pub mod tls;
pub use client::ClientIp;
pub use guard::{check as guard_check, Hosts};

/// The OpenAPI document; the file in `schemas/` is the single source.
pub const OPENAPI: &str = include_str!("../../../schemas/openapi.json");

/// A JSON error: `{"error": {"status": 404, "message": "..."}}`. Messages say what to do.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorInner<'a>,
}
#[derive(Serialize)]
struct ErrorInner<'a> {
    status: u16,
    message: &'a str,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }
    pub fn bad_request(m: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, m)
    }
    pub fn not_found(m: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, m)
    }
    /// Logs the detail; the client gets a generic message (details may be internal).
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error in HTTP handler");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error: see the node's log",
        )
    }
    pub fn from_json_rejection(r: axum::extract::rejection::JsonRejection) -> Self {
        Self::new(r.status(), format!("invalid JSON body: {}", r.body_text()))
    }
}

/// A failed store call in a handler is the node's fault, never the client's: 500, with
/// the detail in the log only.
impl From<crate::store::StoreCallError> for ApiError {
    fn from(e: crate::store::StoreCallError) -> Self {
        ApiError::internal(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorInner {
                status: self.status.as_u16(),
                message: &self.message,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

/// Whether the node has finished starting and is not draining.
#[derive(Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::SeqCst);
    }
    pub fn get(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

#[derive(Clone)]
struct CoreState {
    metrics: Arc<Metrics>,
    ready: Readiness,
    openapi: Arc<str>,
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(s): State<CoreState>) -> Response {
    if s.ready.get() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting or draining\n").into_response()
    }
}

async fn metrics(State(s): State<CoreState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
        .into_response()
}

/// `schemas/openapi.json` with the paths of every module that documents its routes in
/// its own folder (`Module::openapi`), so a new module never edits the shared file.
pub fn merged_openapi(fragments: &[&str]) -> String {
    if fragments.is_empty() {
        return OPENAPI.to_string();
    }
    let Ok(mut doc) = serde_json::from_str::<serde_json::Value>(OPENAPI) else {
        return OPENAPI.to_string();
    };
    for f in fragments {
        match serde_json::from_str::<serde_json::Value>(f) {
            Ok(serde_json::Value::Object(mut frag)) => {
                if let (Some(serde_json::Value::Object(paths)), Some(all)) = (
                    frag.remove("paths"),
                    doc.get_mut("paths").and_then(|p| p.as_object_mut()),
                ) {
                    for (path, item) in paths {
                        // A module may add paths, never replace another's.
                        if all.contains_key(&path) {
                            tracing::error!(
                                path,
                                "a module's openapi.json repeats a documented path; left out"
                            );
                        } else {
                            all.insert(path, item);
                        }
                    }
                }
            }
            _ => tracing::error!("a module's openapi.json is not a JSON object; left out"),
        }
    }
    doc.to_string()
}

async fn openapi(State(s): State<CoreState>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        s.openapi.to_string(),
    )
        .into_response()
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint: see /api/openapi.json")
}

/// Core routes merged with the modules' routes.
pub fn router(modules: Router, spec: Arc<str>, metrics: Arc<Metrics>, ready: Readiness) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(self::metrics))
        .route("/api/openapi.json", get(openapi))
        .with_state(CoreState {
            metrics,
            ready,
            openapi: spec,
        })
        .merge(assets::routes())
        .merge(modules)
        .fallback(not_found)
        // A request body is never legitimately large here.
        .layer(axum::extract::DefaultBodyLimit::max(256 * 1024))
}

/// The layers every request passes besides the host guard: live-stream caps and
/// `Secure` cookies over TLS.
pub fn protect(
    app: Router,
    streams: Arc<limits::Streams>,
    sessions: Option<Arc<SessionCheck>>,
) -> Router {
    app.layer(axum::middleware::from_fn_with_state(
        streams,
        limits::cap_streams,
    ))
    .layer(axum::middleware::from_fn(tls::secure_cookies))
    .layer(axum::middleware::from_fn_with_state(
        sessions,
        mark_signed_in,
    ))
}

/// Whether a request's headers carry a live session (the auth module provides it in
/// `Services`; the HTTP layer does not know how sessions are kept).
pub type SignedInFn = dyn Fn(axum::http::HeaderMap) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>>
    + Send
    + Sync;

/// See [`SignedInFn`].
pub struct SessionCheck(pub Box<SignedInFn>);

/// Tells the connection layer that a request comes from a signed-in person before any
/// handler reads its body: their body is then not a stranger's (no shared budget, no
/// eviction while it arrives) and their responses are written out even under a flood.
async fn mark_signed_in(
    State(sessions): State<Option<Arc<SessionCheck>>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let h = req.headers();
    let carries = h.contains_key(header::AUTHORIZATION)
        || h.get(header::COOKIE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|c| c.contains("garasi_session="));
    if let (true, Some(check)) = (carries, sessions) {
        if (check.0)(h.clone()).await {
            if let Some(a) = req.extensions().get::<garasi_net::ConnActivity>() {
                a.authenticated();
            }
        }
    }
    next.run(req).await
}

/// Serves `app` on listeners bound earlier (each with its TLS acceptor, if any) under
/// one set of connection limits, until `cancel` fires; open streams end then.
pub async fn serve(
    listeners: Vec<(std::net::TcpListener, Option<tokio_rustls::TlsAcceptor>)>,
    app: Router,
    cancel: CancellationToken,
    limits: garasi_net::ConnLimits,
    metrics: Arc<limits::HttpMetrics>,
) -> std::io::Result<()> {
    let mut bound = Vec::with_capacity(listeners.len());
    for (l, tls) in listeners {
        l.set_nonblocking(true)?;
        bound.push((tokio::net::TcpListener::from_std(l)?, tls));
    }
    garasi_net::serve_all(bound, app, cancel, limits, Some(metrics)).await
}
