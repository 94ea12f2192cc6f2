//! The API's one error type: every handler and extractor fails with an [`ApiError`], and
//! its one `IntoResponse` turns it into `{"error": {"status", "message"}}`. The `From`
//! impls decide, in one place, which failures a client may read about and which are
//! logged and answered with a generic 500 (store and task failures say nothing useful to
//! a client and may name internals).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use garasi_sync_protocol::wire::WireError;

use crate::materialise::MaterialiseError;
use crate::store::StoreError;
use crate::timetable::PlanError;

/// Shown instead of an internal failure's details (which go to the log).
const SEE_THE_LOG: &str = "internal error: see the cloud's log";

/// A refused or failed request: the HTTP status and the message the client reads.
#[derive(Debug, thiserror::Error)]
#[error("{status}: {message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }

    /// A 500 whose message the client sees (it names nothing internal).
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// A 500 whose cause is logged, not shown.
    fn logged(what: &'static str, error: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %error, "{what}");
        Self::internal(SEE_THE_LOG)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(serde_json::json!({ "error": { "status": self.status.as_u16(), "message": self.message } })),
        )
            .into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::BadToken | StoreError::TokenExpired => Self::unauthorized(e.to_string()),
            StoreError::NoSuchDepot(_) => Self::not_found(e.to_string()),
            other => Self::logged("store error", &other),
        }
    }
}

impl From<MaterialiseError> for ApiError {
    fn from(e: MaterialiseError) -> Self {
        match e {
            MaterialiseError::Store(e) => e.into(),
            other @ MaterialiseError::Task(_) => Self::logged("materialiser error", &other),
        }
    }
}

impl From<WireError> for ApiError {
    fn from(e: WireError) -> Self {
        Self::new(
            crate::push_check::wire_status(&e),
            crate::push_check::wire_message(&e),
        )
    }
}

impl From<PlanError> for ApiError {
    fn from(e: PlanError) -> Self {
        match e {
            PlanError::Store(e) => e.into(),
            PlanError::Materialise(e) => e.into(),
            PlanError::NoTimetable(_) => Self::not_found(e.to_string()),
            PlanError::Broken(..) | PlanError::Record(_) => {
                // Shown (it names the timetable, not internals) and logged.
                tracing::error!(error = %e, "publishing failed");
                Self::internal(e.to_string())
            }
            other => Self::bad_request(other.to_string()),
        }
    }
}

/// A task (hashing, decoding, a push's store) that panicked or was cancelled: logged,
/// not shown (a panic's message may hold anything).
impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> Self {
        Self::logged("a background task failed", &e)
    }
}
