//! Request bodies, before any handler reads one: a body longer than its route takes is
//! refused by its declared length (413, unread); a JSON body takes its share of a byte
//! budget for as long as its request runs (503 when the budget stays spent) and must
//! arrive within the body timeout. Push and timetable upload read their own bodies
//! after authentication ([`read_limited`], [`read_to_file`]): a push within the push
//! budget, an upload streamed to a temporary file, never into memory.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::io::AsyncWriteExt;

use super::limits::{kib, ENROL_BODY_BYTES, PUSH_BODY_BYTES};
use super::{ApiError, AppState};

/// How long an enrolment body (4 KiB at most, unauthenticated) may take to arrive.
pub(super) const ENROL_BODY_TIMEOUT: Duration = Duration::from_secs(3);

/// How long a JSON request waits for its share of the body budget.
const BUDGET_WAIT: Duration = Duration::from_secs(5);

/// The routes whose bodies are not JSON read them themselves.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Json,
    Enrol,
    Push,
    Upload,
}

fn class(method: &Method, path: &str) -> Class {
    match (method, path) {
        (&Method::POST, "/api/v1/enroll") => Class::Enrol,
        (&Method::POST, "/api/v1/sync/push") => Class::Push,
        (&Method::POST, "/api/v1/admin/timetables") => Class::Upload,
        _ => Class::Json,
    }
}

pub(super) fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

fn too_large(limit: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the body is larger than this route takes ({limit} bytes): send less"),
    )
}

/// The middleware in front of every route (see the module documentation).
pub(super) async fn guard<S: Send + Sync + 'static>(
    State(s): State<AppState<S>>,
    req: Request,
    next: Next,
) -> Response {
    let class = class(req.method(), req.uri().path());
    let limit = match class {
        Class::Json => s.limits.json_body_bytes as u64,
        Class::Enrol => ENROL_BODY_BYTES as u64,
        Class::Push => PUSH_BODY_BYTES as u64,
        Class::Upload => s.limits.upload_bytes,
    };
    let declared = content_length(req.headers());
    if declared.is_some_and(|n| n > limit) {
        s.metrics.refused("body_too_large");
        return too_large(limit).into_response();
    }
    if matches!(class, Class::Push | Class::Upload) || req.body().is_end_stream() {
        return next.run(req).await;
    }
    let weight =
        kib(declared.unwrap_or(limit).min(limit)).min(kib(s.limits.json_budget_bytes as u64));
    let permit =
        tokio::time::timeout(BUDGET_WAIT, s.bodies.clone().acquire_many_owned(weight)).await;
    let Ok(Ok(permit)) = permit else {
        s.metrics.refused("busy");
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the cloud is reading too many request bodies: retry in a few seconds",
        )
        .into_response();
    };
    let (parts, body) = req.into_parts();
    // An enrolment body is read before anything is authenticated: a short deadline for
    // its few bytes, and its connection stays evictable while it arrives.
    let (after, unauthenticated) = if class == Class::Enrol {
        let guard = parts
            .extensions
            .get::<crate::net::ConnActivity>()
            .map(crate::net::ConnActivity::unauthenticated_body);
        (s.limits.body_timeout.min(ENROL_BODY_TIMEOUT), guard)
    } else {
        (s.limits.body_timeout, None)
    };
    let mut deadline = Deadline::new(body, after, s.metrics.clone());
    deadline.unauthenticated = unauthenticated;
    let body = Body::new(deadline);
    let response = next.run(Request::from_parts(parts, body)).await;
    drop(permit);
    response
}

/// The body did not arrive in time.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0:?}: send it faster, or less of it")]
pub(super) struct BodyTimeout(Duration);

/// A body that fails with [`BodyTimeout`] once its deadline passes.
struct Deadline {
    inner: Body,
    sleep: Pin<Box<tokio::time::Sleep>>,
    after: Duration,
    metrics: std::sync::Arc<crate::metrics::CloudMetrics>,
    /// Held while an unauthenticated body arrives (see [`crate::net::ConnActivity`]).
    unauthenticated: Option<crate::net::UnauthenticatedBody>,
}

impl Deadline {
    fn new(
        inner: Body,
        after: Duration,
        metrics: std::sync::Arc<crate::metrics::CloudMetrics>,
    ) -> Self {
        Deadline {
            inner,
            sleep: Box::pin(tokio::time::sleep(after)),
            after,
            metrics,
            unauthenticated: None,
        }
    }
}

impl HttpBody for Deadline {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            if !matches!(frame, Some(Ok(_))) {
                this.unauthenticated = None;
            }
            return Poll::Ready(frame);
        }
        if this.sleep.as_mut().poll(cx).is_ready() {
            this.metrics.refused("body_timeout");
            return Poll::Ready(Some(Err(axum::Error::new(BodyTimeout(this.after)))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// The next chunk of data (trailers skipped), None at the end.
async fn next_chunk(body: &mut Body) -> Option<Result<Bytes, axum::Error>> {
    loop {
        let frame = std::future::poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await?;
        match frame {
            Ok(f) => {
                if let Ok(data) = f.into_data() {
                    return Some(Ok(data));
                }
            }
            Err(e) => return Some(Err(e)),
        }
    }
}

/// Why a body could not be read.
enum ReadFailed {
    TooLarge,
    Broken(String),
}

fn read_error<S>(s: &AppState<S>, e: ReadFailed, limit: u64) -> ApiError {
    match e {
        ReadFailed::TooLarge => {
            s.metrics.refused("body_too_large");
            too_large(limit)
        }
        ReadFailed::Broken(why) => {
            ApiError::bad_request(format!("the body could not be read: {why}"))
        }
    }
}

fn timed_out<S>(s: &AppState<S>, after: Duration) -> ApiError {
    s.metrics.refused("body_timeout");
    ApiError::new(StatusCode::REQUEST_TIMEOUT, BodyTimeout(after).to_string())
}

/// Reads a body of at most `limit` bytes into memory within `after`.
pub(super) async fn read_limited<S>(
    s: &AppState<S>,
    mut body: Body,
    limit: usize,
    after: Duration,
) -> Result<Bytes, ApiError> {
    let read = async {
        let mut buf = Vec::with_capacity(body.size_hint().lower().min(limit as u64) as usize);
        while let Some(chunk) = next_chunk(&mut body).await {
            let chunk = chunk.map_err(|e| ReadFailed::Broken(e.to_string()))?;
            if buf.len() + chunk.len() > limit {
                return Err(ReadFailed::TooLarge);
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(Bytes::from(buf))
    };
    match tokio::time::timeout(after, read).await {
        Ok(r) => r.map_err(|e| read_error(s, e, limit as u64)),
        Err(_) => Err(timed_out(s, after)),
    }
}

/// Streams a body of at most `limit` bytes to a new temporary file within `after`;
/// the file is removed when the returned path is dropped.
pub(super) async fn read_to_file<S>(
    s: &AppState<S>,
    mut body: Body,
    limit: u64,
    after: Duration,
) -> Result<(tempfile::TempPath, u64), ApiError> {
    let dir = s
        .limits
        .upload_dir
        .clone()
        .unwrap_or_else(std::env::temp_dir);
    let tmp = tempfile::Builder::new()
        .prefix(super::upload_sweep::UPLOAD_PREFIX)
        .tempfile_in(&dir)
        .map_err(|e| {
            tracing::error!(dir = %dir.display(), error = %e, "cannot create an upload file");
            ApiError::internal("cannot keep the upload: see the cloud's log (--upload-dir)")
        })?;
    let (file, path) = tmp.into_parts();
    let mut file = tokio::fs::File::from_std(file);
    let write = async {
        let mut written = 0u64;
        while let Some(chunk) = next_chunk(&mut body).await {
            let chunk = chunk.map_err(|e| ReadFailed::Broken(e.to_string()))?;
            written += chunk.len() as u64;
            if written > limit {
                return Err(ReadFailed::TooLarge);
            }
            file.write_all(&chunk)
                .await
                .map_err(|e| ReadFailed::Broken(format!("writing the upload: {e}")))?;
        }
        file.flush()
            .await
            .map_err(|e| ReadFailed::Broken(format!("writing the upload: {e}")))?;
        Ok(written)
    };
    match tokio::time::timeout(after, write).await {
        Ok(Ok(n)) => Ok((path, n)),
        Ok(Err(e)) => Err(read_error(s, e, limit)),
        Err(_) => Err(timed_out(s, after)),
    }
}
